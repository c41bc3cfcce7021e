#!/usr/bin/perl
# Archives survive their environment: kill -9 of the archiver mid-job,
# kill -9 of nginx with a PostgreSQL restart mid-job, and a restart of the
# whole stack mid-job each lose nothing -- the job resumes where it stopped
# (entries already in the ZIP stay, finished downloads are not fetched
# again, partial ones resume with Range) and completes with the origin's
# bytes. Then retention: a short media_archive_retention makes a finished
# archive 410 Gone, and the archiver removes its file. And the size
# limits: a file over the per-file limit fails, an archive stops taking
# files at its limit.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use MediaTest;
use FlakyOrigin;
use ArchiveTest qw(make_file wait_archive create_archive fetch_zip
                   check_zip);

my $dir = MediaTest::tempdir('resume-origin');
make_file("$dir/s1.bin", 200_000);
make_file("$dir/s2.bin", 300_000);
make_file("$dir/l1.bin", 6_000_000);
make_file("$dir/l2.bin", 5_000_000);
make_file("$dir/big8.bin", 8_000_000);

my $o = FlakyOrigin->start(dir => $dir);

my $s = MediaTest->start(workers => 2,
                         env => { MEDIA_ARCHIVE_ALLOW_PRIVATE => 1 });
my $admin = $s->admin_token;

# small, large (slow), small, large (slow): the first small one goes into
# the ZIP at once, the second waits (downloaded) behind the first large one
sub job {
    my ($tag) = @_;
    my $q = "k=$tag";
    my @in = ([ "f/s1.bin?$q", 's1.bin', 's1.bin' ],
              [ "f/l1.bin?$q&rate=1500000", 'l1.bin', 'l1.bin' ],
              [ "f/s2.bin?$q", 's2.bin', 's2.bin' ],
              [ "f/l2.bin?$q&rate=1200000", 'l2.bin', 'l2.bin' ]);
    my $hash = create_archive($s, $admin, {
        urls => [ map { $o->url($_->[0]) } @in ], name => "job-$tag" });
    return ($hash, \@in);
}

# until the first file is in the ZIP, the third downloaded, and the large
# ones part-way
sub midway {
    my ($hash) = @_;
    my $st = wait_archive($s, $admin, $hash, 30, sub {
        my $f = $_[0]{files};
        $f->[0]{status} eq 'done' && $f->[2]{status} =~ /downloaded|done/
            && $f->[1]{bytes} > 1_000_000 && $f->[3]{bytes} > 1_000_000
            && $f->[1]{status} ne 'done';
    });
    ok($st && $st->{status} eq 'in-progress' && $st->{files}[0]{status} eq 'done'
       && $st->{files}[1]{bytes} > 0 && $st->{files}[1]{status} ne 'done',
       'mid-job: one entry in the ZIP, large downloads part-way')
        or diag explain $st;
    return $st;
}

sub finished {
    my ($hash, $in, $what) = @_;
    my $st = wait_archive($s, $admin, $hash, 60);
    is($st->{status}, 'completed', "$what: the archive completed")
        or diag explain $st;
    my ($r, $zip) = fetch_zip($s, $admin, $hash);
    is($r->{status}, 200, "$what: downloaded");
    check_zip($zip, [ map { [ $_->[1], "$dir/$_->[2]" ] } @$in ], $what);
    return $st;
}

sub resumed {
    my ($tag, $what) = @_;
    for my $f (qw(l1 l2)) {
        my @r = $o->requests("/f/$f.bin?k=$tag");
        ok(@r >= 2 && (grep { $_->{range} =~ /^bytes=[1-9]\d*-$/
                              && $_->{status} == 206 } @r),
           "$what: $f.bin resumed with a Range request (206)")
            or diag explain \@r;
    }
    is(scalar($o->requests("/f/s1.bin?k=$tag")), 1,
       "$what: s1.bin (in the ZIP) was not fetched again");
    is(scalar($o->requests("/f/s2.bin?k=$tag")), 1,
       "$what: s2.bin (downloaded) was not fetched again");
}

# --- kill -9 of the archiver ------------------------------------------------

my ($h1, $in1) = job('a');
midway($h1);
my $old = $s->kill_daemon('archiver', 'KILL');
ok($old, 'archiver killed with SIGKILL mid-job');
ok($s->wait_daemon('archiver', $old, 15), 'the launcher restarted it');
finished($h1, $in1, 'after kill -9 of the archiver');
resumed('a', 'after kill -9 of the archiver');

# --- kill -9 of nginx, and PostgreSQL away for a while -----------------------

my ($h2, $in2) = job('b');
midway($h2);
ok($s->kill_daemon('nginx', 'KILL'), 'nginx killed with SIGKILL mid-job');
ok($s->restart_pg(1.5), 'PostgreSQL stopped for 1.5 s and started again');
ok($s->wait_healthy(30), 'healthy again');
finished($h2, $in2, 'after kill -9 of nginx and a PostgreSQL restart');

# --- the whole stack, restarted mid-job (with a short retention and size
# limits from now on) --------------------------------------------------------

my ($h3, $in3) = job('c');
midway($h3);
ok($s->restart(env => { MEDIA_ARCHIVE_RETENTION => '3s',
                        MEDIA_ARCHIVE_MAX_FILE_SIZE => 7_000_000,
                        MEDIA_ARCHIVE_MAX_SIZE => 12_000_000 }),
   'the whole stack restarted mid-job');
finished($h3, $in3, 'after a restart of the whole stack');
resumed('c', 'after a restart of the whole stack');

# --- retention: 410 once expired ---------------------------------------------

my $h4 = create_archive($s, $admin, { urls => [ $o->url('f/s1.bin?k=d') ] });
my $st = wait_archive($s, $admin, $h4, 30);
is($st->{status}, 'completed', 'a small archive completed');
my $r = $s->req(GET => "/archive/get/$h4.zip", token => $admin);
is($r->{status}, 200, 'downloadable before it expires');
my $file = $s->var . "/archives/$h4.zip";
ok(-f $file, 'its file is there');
sleep 3.5;
$r = $s->req(GET => "/archive/get/$h4.zip", token => $admin);
is($r->{status}, 410, 'expired (media_archive_retention 3s): 410');
is($r->{json}{error}, 'expired', '... JSON error "expired"');
$st = $s->req(GET => "/api/archive/status/$h4", token => $admin)->{json};
ok($st->{expired}, 'status: expired');
is($st->{url}, undef, 'status: no URL any more');
ok($s->wait_for(sub { !-e $file }, 15), 'the archiver removed the file');
ok($s->wait_for(sub {
       ($s->psql("SELECT purged_at IS NOT NULL FROM archives"
                 . " WHERE hash = '$h4'"))[0][0] eq 't' }, 10),
   '... and recorded it');
$r = $s->req(GET => "/archive/get/$h1.zip", token => $admin);
is($r->{status}, 200, 'an archive made before the change keeps its retention');

# --- size limits ---------------------------------------------------------------

my $h5 = create_archive($s, $admin, {
    urls => [ $o->url('f/s1.bin?k=e'), $o->url('f/big8.bin?k=e') ] });
$st = wait_archive($s, $admin, $h5, 30);
is($st->{status}, 'completed', 'a file over the per-file limit: the archive '
                               . 'completes without it');
like($st->{files}[1]{error} // '',
     qr/^larger than the limit of 7000000 bytes per file/, '... which failed');
my ($zr, $zip) = fetch_zip($s, $admin, $h5);
check_zip($zip, [ [ 's1.bin', "$dir/s1.bin" ] ], 'per-file limit');

my @lim = ([ 'f/l1.bin?k=f', 'l1.bin' ], [ 'f/l2.bin?k=f', 'l2.bin' ],
           [ 'f/l1.bin?k=f2', 'l1.bin' ], [ 'f/s2.bin?k=f', 's2.bin' ]);
my $h6 = create_archive($s, $admin, {
    urls => [ map { $o->url($_->[0]) } @lim ] });
$st = wait_archive($s, $admin, $h6, 30);
is($st->{status}, 'completed', '17.3 MB asked of a 12 MB archive: completed');
my @over = grep { ($_->{error} // '') =~
                  /^the archive would pass its limit of 12000000 bytes/ }
           @{ $st->{files} };
ok(@over >= 1, '... with the file(s) that would pass the limit failed');
ok($st->{progress}{bytes_done} <= 12_000_000, '... the rest within it');
($zr, $zip) = fetch_zip($s, $admin, $h6);
my %seen;
check_zip($zip, [ map { my $n = $lim[$_][1];
                        my $e = $seen{$n}++ ? "l1 (1).bin" : $n;
                        [ $e, "$dir/$n" ] }
                  grep { $st->{files}[$_]{status} eq 'done' } 0 .. 3 ],
          'archive limit');

is_deeply([ $s->error_log_clean ], [], 'no [alert]/[crit]/[emerg] in the error log');

done_testing();
