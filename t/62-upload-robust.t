#!/usr/bin/perl
# Uploads when things go wrong (docs/packaging.md):
# - a full disk: an upload location on a 4 MB tmpfs; an 8 MB upload (raw,
#   then multipart) is answered 507 with a JSON error, leaves no
#   input_content row, no file in the directory, no unnamed file held open
#   and the space free again; the worker serves on (GET /healthz) and a
#   1 MB upload to the same directory is stored (200). A tmpfs without a
#   free inode fails at O_TMPFILE: 507 before the body is read. Needs root
#   (mount); skipped otherwise, CI runs as root.
# - orphaned uploads: a named file in uploads/ that no row refers to (nginx
#   died between linking it and inserting its row) is removed by the
#   packager's sweep (at start, then every orphan_sweep_s) once past
#   orphan_grace_s; an old upload a row refers to, a young orphan and a
#   file of another name stay. media-packager -n checks the keys.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MediaTest qw(slurp spew is_json_error curl names_in);

my $dir = MediaTest::tempdir('upload-robust');
my $full = MediaTest::tempdir('upload-full');     # 4 MB tmpfs
my $noinode = MediaTest::tempdir('upload-noinode'); # tmpfs, no free inode
my @mounted;

# the stack's user owns the upload directories (nginx workers write there)
my $muser = $ENV{MEDIA_USER} || 'ngxmedia';
my ($uid, $gid) = $> == 0 ? (getpwnam($muser))[2, 3] : ($>, $) + 0);

my $why_not;
if ($> != 0) {
    $why_not = 'not root: cannot mount a tmpfs (CI runs as root)';
} elsif (!defined $uid) {
    $why_not = "no user $muser";
} else {
    for ([$full, 'size=4m'], [$noinode, 'size=4m,nr_inodes=1']) {
        my ($mnt, $o) = @$_;
        system('mount', '-t', 'tmpfs', '-o', "$o,mode=0750,uid=$uid,gid=$gid",
               'tmpfs', $mnt) == 0
            or die "mount -t tmpfs $mnt failed as root: $?\n";
        push @mounted, $mnt;
    }
}

END {
    local $?;
    for my $mnt (@mounted) {
        system('umount', $mnt) == 0 or system('umount', '-l', $mnt);
    }
}

my $extra = @mounted ? <<"EOF" : '';
        location = /upload_full {
            client_max_body_size 64m;
            client_body_buffer_size 1m;
            media_upload $full;
        }
        location = /upload_noinode {
            client_max_body_size 64m;
            media_upload $noinode;
        }
EOF

# one worker: the request after a failed one lands on the same worker
my $s = MediaTest->start(workers => 1, extra_server => $extra);
my $admin = $s->admin_token;
my $var = $s->var;

my $tok = $s->req(POST => '/api/tokens', token => $admin,
                  json => { role => 'user', name => 'uploader' })
            ->{json}{token};
ok($tok, 'a user token');

# KB used on the file system of $d
sub used_kb {
    my ($d) = @_;
    my @l = `df -k --output=used '$d'`;
    return $l[-1] =~ /(\d+)/ ? $1 : -1;
}

# ------------------------------------------------------------ a full disk

SKIP: {
    skip $why_not, 28 if $why_not;

    my $big = '';
    $big .= pack('N', int(rand(2**32))) for 1 .. (8 * 1024 * 1024 / 4);
    spew("$dir/big.bin", $big);
    my $base = used_kb($full);

    my $r = $s->req(POST => '/upload_full', token => $tok, body => $big,
                    headers => { 'Content-Type' => 'video/mp4' });
    is_json_error($r, 507, 'no_space', '8 MB raw upload on a 4 MB tmpfs');
    is($r->{reason}, 'Insufficient Storage', '  status line');
    like($r->{json}{message} // '', qr/no space/, '  message says why');
    is($s->upload_rows_in($full), 0, '  no input_content row');
    is_deeply([names_in($full)], [], '  no file in the directory');
    ok(MediaTest::wait_until(sub { !$s->nginx_fds_in($full) }, 5),
       '  no unnamed file held open')
        or diag explain [map { readlink } $s->nginx_fds_in($full)];
    ok(MediaTest::wait_until(sub { used_kb($full) <= $base }, 5),
       '  the space is free again') or diag `df -k '$full'`;

    # the multipart path (curl's form), the body read to its end
    $r = curl('-H', "'Authorization: Bearer $tok'",
              '-F', "'file=\@$dir/big.bin;type=video/mp4'",
              "'" . $s->url('/upload_full') . "'");
    is_json_error($r, 507, 'no_space', '8 MB multipart upload');
    is($s->upload_rows_in($full), 0, '  no input_content row');
    is_deeply([names_in($full)], [], '  no file in the directory');
    ok(MediaTest::wait_until(sub { used_kb($full) <= $base }, 5),
       '  the space is free again');

    $r = $s->req(GET => '/healthz');
    is($r->{status}, 200, 'the worker serves on: GET /healthz');

    my $small = substr($big, 0, 1024 * 1024);
    $r = $s->req(POST => '/upload_full', token => $tok, body => $small);
    $s->is_stored($r, $full, $small, 'then 1 MB on the same tmpfs');

    # no inode for the unnamed file: refused before the body is read
    $r = $s->req(POST => '/upload_noinode', token => $tok, body => $big);
    is_json_error($r, 507, 'no_space', 'tmpfs without a free inode');
    is($s->upload_rows_in($noinode), 0, '  no row');
    is($s->req(GET => '/healthz')->{status}, 200, '  /healthz after it');

    # a full disk is logged at [error]: the operator's to fix, not ours
    is_deeply([$s->error_log_clean], [], 'no [alert]/[crit]/[emerg]');
    like(slurp($s->log_path('nginx-error.log')) // '',
         qr/\[error\].*media upload: writing the upload failed/,
         '  the failed write is logged');
}

# ------------------------------------------------------------ orphan sweep

my $up = "$var/uploads";
my $old = time - 2 * 3600;              # past orphan_grace_s (3600)

my $body = join '', map { chr(($_ * 7) & 255) } 0 .. 65535;
my $r = $s->req(POST => '/upload_input_content', token => $tok,
                body => $body);
is($r->{status}, 200, 'a real upload') or diag $r->{body};
my ($path) = map { $_->[0] } $s->psql("SELECT path FROM input_content"
                                      . " WHERE id = $r->{json}{input_content_id}");
ok($path && -f $path, '  its file') or diag $path;
utime($old, $old, $path) or die "utime $path: $!";

sub fake {
    my ($name, $mtime) = @_;
    spew("$up/$name", "not an upload anyone recorded\n");
    chown($uid, $gid, "$up/$name") if $> == 0;
    utime($mtime, $mtime, "$up/$name") or die "utime: $!" if $mtime;
    return "$up/$name";
}

my $orphan = fake(('a1' x 16) . '.mp4', $old);
my $young = fake(('b2' x 16) . '.mp4', 0);
my $other = fake('notes.mp4', $old);               # not a name nginx gives
my $upper = fake(('C3' x 16) . '.mp4', $old);      # nor this

# the packager swept at its start, before these existed: a new one sweeps
sleep 1;
ok(-e $orphan, 'the old orphan is there while no sweep runs');
my $pid = $s->kill_daemon('packager', 'TERM');
ok($pid, 'packager stopped');
ok($s->wait_daemon('packager', $pid, 15), '  and restarted by the launcher');
ok(MediaTest::wait_until(sub { !-e $orphan }, 15),
   'the new packager removed the old orphan at start');
ok(-e $path, '  kept the old upload its row refers to');
ok(-e $young, '  kept the young orphan (grace period)');
ok(-e $other && -e $upper, '  kept files of other names');
my $plog = slurp($s->log_path('packager.log')) // '';
like($plog, qr{orphan sweep: removed \Q$orphan\E \(\d+ s old}, '  logged');

# periodically: every orphan_sweep_s (1 s here)
$s->restart(env => { MEDIA_PACKAGER_ORPHAN_SWEEP_S => 1 });
like(slurp("$var/conf/packager.conf") // '', qr/^orphan_sweep_s = 1$/m,
     'orphan_sweep_s from MEDIA_PACKAGER_ORPHAN_SWEEP_S');
sleep 2;                                 # past the start sweep
my $orphan2 = fake(('d4' x 16) . '.mp4', $old);
ok(MediaTest::wait_until(sub { !-e $orphan2 }, 10),
   'an orphan made later goes at a periodic sweep');
ok(-e $path && -e $young, '  the referenced upload and the young one stay');
is($s->req(GET => "/input_content/$r->{json}{input_content_id}",
           token => $tok)->{status}, 200, '  the row is untouched');

# the keys' checks (media-packager -n)
my $bin = $ENV{MEDIA_BIN} || "$MediaTest::ROOT/build/bin";
my $conf = slurp("$var/conf/packager.conf");
for ([ 'orphan_grace_s = 10', 0 ], [ 'orphan_sweep_s = -1', 0 ],
     [ 'orphan_sweep_s = 0', 1 ], [ 'orphan_grace_s = 86400', 1 ])
{
    my ($line, $good) = @$_;
    my ($key) = $line =~ /^(\w+)/;
    (my $c = $conf) =~ s/^\Q$key\E = .*$/$line/m;
    spew("$dir/packager.conf", $c);
    my $out = `'$bin/media-packager' -n -f '$dir/packager.conf' 2>&1`;
    is($? == 0 ? 1 : 0, $good, "media-packager -n with $line: "
       . ($good ? 'ok' : 'refused')) or diag $out;
}

is_deeply([$s->error_log_clean], [],
          'no [alert]/[crit]/[emerg] in nginx\'s log, no sanitizer report');

done_testing;
