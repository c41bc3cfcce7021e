#!/usr/bin/perl
# The launcher (scripts/media-stack) and this harness: the stack comes up
# healthy, its state is private, a dead daemon or nginx is restarted, start
# is idempotent, stop leaves nothing running, a restart keeps keys and token.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep time);
use File::Path ();
use MediaTest;

my $stack = "$MediaTest::ROOT/scripts/media-stack";

my $s = MediaTest->start(
    workers      => 2,
    extra_server => "        location = /t-extra {\n"
                  . "            return 200 \"extra \@NOT_A_PLACEHOLDER\@\\n\";\n"
                  . "        }",
);
my $var = $s->var;

sub stack_cmd {
    my ($cmd) = @_;
    local $ENV{MEDIA_VAR} = $var;
    local $ENV{MEDIA_PORT} = $s->port;
    my $out = `$stack $cmd 2>&1`;
    return ($? >> 8, $out);
}

sub alive { my ($pid) = @_; $pid && kill(0, $pid) }

sub pidfile {
    my ($name) = @_;
    open(my $fh, '<', "$var/run/$name.pid") or return undef;
    my ($pid) = <$fh> =~ /^(\d+)/;
    return $pid;
}

sub state_of {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/stat") or return undef;
    my ($state) = <$fh> =~ /\)\s+(\S)/;
    return $state;
}

sub uid_of {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/status") or return undef;
    while (<$fh>) { return $1 if /^Uid:\s+(\d+)/ }
    return undef;
}

# --- healthy

my $r = $s->req(GET => '/healthz');
is($r->{status}, 200, '/healthz 200') or diag $r->{body};
like($r->{headers}{'content-type'} // '', qr{^application/json},
     '/healthz is JSON');
is($r->{json} && $r->{json}{status}, 'ok', '/healthz status ok');

$r = $s->req(GET => '/metrics');
is($r->{status}, 200, '/metrics 200');
like($r->{headers}{'content-type'} // '', qr{^text/plain}, '/metrics is text');
like($r->{body}, qr/^media_\w+/m, '/metrics has media_ series');

$r = $s->req(GET => '/t-extra');
is($r->{status}, 200, 'extra_server config is injected');
is($r->{body}, "extra \@NOT_A_PLACEHOLDER\@\n",
   '  verbatim, @WORDS@ in injected text left alone');

# --- rendered configs

for my $conf (glob "$var/conf/*.conf") {
    open(my $fh, '<', $conf) or die "$conf: $!";
    my @left = grep { !/^\s*#/ && /\@[A-Z][A-Z0-9_]*\@/ && !/NOT_A_PLACEHOLDER/ }
               <$fh>;
    is_deeply(\@left, [], "no placeholder left in $conf");
}

# --- state: token, keys, users

my $tokfile = "$var/admin.token";
ok(-f $tokfile, 'admin.token exists');
is((stat $tokfile)[2] & 07777, 0600, 'admin.token is mode 0600');
my $tok = $s->admin_token;
like($tok, qr/^nmt_[A-Za-z0-9_-]{43}$/, 'admin token: nmt_ + 43 base64url');
my @row = $s->psql("SELECT name, role, revoked_at FROM tokens"
                   . " WHERE hash = '" . sha256_hex($tok) . "'");
is_deeply(\@row, [[ 'bootstrap-admin', 'admin', undef ]],
          'its sha256 is in tokens as bootstrap-admin, role admin');
is_deeply([ $s->psql('SELECT version FROM schema_migrations ORDER BY 1') ]->[0],
          ['001_init'], 'migrations recorded');

$r = $s->req(GET => '/api/tokens', token => $tok);
is($r->{status}, 200, 'the admin token works on the API') or diag $r->{body};

for my $k (qw(nginx analytics)) {
    is((stat "$var/keys/$k.key")[2] & 07777, 0600, "keys/$k.key mode 0600");
}
is((stat "$var/keys/sign-k1.key")[2] & 07777, 0600, 'keys/sign-k1.key mode 0600');
open(my $kfh, '<', "$var/keys/sign-k1.key") or die;
like(scalar <$kfh>, qr/^[0-9a-f]{64}$/, 'signing key: 32 random bytes as hex');
my $nginx_pub = do { local (@ARGV, $/) = "$var/keys/nginx.pub"; <> };
my $clients = do { local (@ARGV, $/) = "$var/keys/analytics.clients"; <> };
ok(index($clients, $nginx_pub) >= 0, 'analytics.clients holds nginx.pub');

my $apid = pidfile('analytics');
my $npid = pidfile('nginx');
ok(alive($apid), "analytics runs (pid $apid)");
ok(alive($npid), "nginx runs (pid $npid)");
if ($> == 0) {
    my $uid = getpwnam($ENV{MEDIA_USER} // 'ngxmedia');
    is(uid_of($apid), $uid, 'the daemon runs as MEDIA_USER');
    is(uid_of($npid), 0, 'the nginx master runs as root');
    chomp(my @w = `pgrep -P $npid`);
    ok(@w >= 2, scalar(@w) . ' nginx workers (and cache processes)');
    is(scalar(grep { (uid_of($_) // -1) == $uid } @w), scalar(@w),
       '  all as MEDIA_USER');
}

# --- start is idempotent

my $lpid = pidfile('launcher');
my ($rc, $out) = stack_cmd('start');
is($rc, 0, 'start again exits 0') or diag $out;
like($out, qr/already running/, '  and says it is already running');
is(pidfile('launcher'), $lpid, '  same launcher');
($rc, $out) = stack_cmd('status');
is($rc, 0, 'status exits 0');
like($out, qr/analytics: running/, '  status lists the daemon') or diag $out;
like($out, qr/healthz: 200/, '  and the health answer');

# --- supervision

ok($s->kill_daemon('analytics', 'KILL'), 'analytics killed (-9)');
my $t0 = time;
my $new = $s->wait_daemon('analytics', $apid, 5);
ok($new, "  restarted (pid $new)");
ok(time - $t0 < 2.5, sprintf('  within %.1f s', time - $t0));

ok($s->kill_daemon('nginx', 'KILL'), 'nginx master killed (-9)');
$t0 = time;
$new = $s->wait_daemon('nginx', $npid, 5);
ok($new, "  nginx restarted (pid $new)");
ok(time - $t0 < 2.5, sprintf('  within %.1f s', time - $t0));
ok($s->wait_healthy(20), '  healthy again');
if ($> == 0) {
    # (a killed worker may linger a moment as a zombie of init)
    my @orphans;
    $s->wait_for(sub {
        chomp(@orphans = `pgrep -s $npid`);
        @orphans = grep { (state_of($_) // 'Z') ne 'Z' } @orphans;
        !@orphans }, 3);
    is_deeply(\@orphans, [], '  no worker of the killed master left');
}

is_deeply([$s->error_log_clean], [], 'no [alert]/[crit]/[emerg] in the log');

# --- the stream slice: MEDIA_STREAM_SLICE, 4m by default

{
    open(my $fh, '<', "$var/conf/nginx.conf") or die;
    my $conf = do { local $/; <$fh> };
    like($conf, qr/^\s*slice 4m;/m, 'rendered nginx.conf: slice 4m by default');
    like($conf, qr/^\s*proxy_temp_file_write_size 512k;/m,
         '  cache files written up to 512 KB at a time');
    local $ENV{MEDIA_STREAM_SLICE} = '4 MB';
    my ($rc, $out) = stack_cmd('status');
    isnt($rc, 0, 'MEDIA_STREAM_SLICE="4 MB": the launcher refuses');
    like($out, qr/MEDIA_STREAM_SLICE must be a size like 512k or 4m/,
         '  and says why');
}

# --- stop leaves nothing

my %pids = (launcher => $lpid, analytics => pidfile('analytics'),
            nginx => pidfile('nginx'));
open(my $pm, '<', "$var/pg/postmaster.pid") or die;
($pids{postgres}) = <$pm> =~ /^(\d+)/;
close $pm;
ok($s->stop, 'stop');
is_deeply([ grep { alive($pids{$_}) } sort keys %pids ], [],
          '  no process left (' . join(' ', map { "$_ $pids{$_}" } sort keys %pids) . ')');
ok(!-e "$var/run/launcher.pid", '  launcher.pid removed');
ok(!-e "$var/pg/postmaster.pid", '  PostgreSQL stopped');
is($s->req(GET => '/healthz')->{status}, 599, '  the port is closed');
($rc, $out) = stack_cmd('stop');
is($rc, 0, 'stop when nothing runs exits 0');
like($out, qr/nothing runs/, '  and says so');

# --- a restart keeps the database, keys and token

my $key_before = do { local (@ARGV, $/) = "$var/keys/nginx.key"; <> };
$s->restart;
is($s->req(GET => '/healthz')->{status}, 200, 'restarted: healthy');
is($s->admin_token, $tok, '  same admin token');
is($s->req(GET => '/api/tokens', token => $tok)->{status}, 200,
   '  which still works');
is(do { local (@ARGV, $/) = "$var/keys/nginx.key"; <> }, $key_before,
   '  same keys');
is(scalar(my @t = $s->psql("SELECT 1 FROM tokens WHERE name = 'bootstrap-admin'")),
   1, '  one bootstrap token row');
$s->stop;

# --- a MEDIA_VAR too long for unix socket paths: PostgreSQL's socket, the
# daemons' doorbells and nginx's origin hop go to /tmp/ngx_media-<hash>,
# and a stream still goes through the hop

{
    my $odir = MediaTest::tempdir('stack-origin');
    MediaTest::gen_mp3("$odir/a.mp3", seconds => 2);
    my $origin = MediaTest::Origin->start(dir => $odir);
    my $l = MediaTest->start(long_var => 1,
                             extra_http => 'media_origin_allow_private on;');
    my $lvar = $l->var;
    cmp_ok(length("$lvar/run/origin-hop.sock"), '>', 108,
           'long MEDIA_VAR (' . length($lvar) . ' bytes): the stack starts');
    is($l->req(GET => '/healthz')->{status}, 200, '  healthy');
    my $hop = $l->hop_socket;
    like($hop // '', qr{^/tmp/ngx_media-[0-9a-f]{16}/origin-hop\.sock\z},
         '  the origin hop socket is under /tmp/ngx_media-<hash>');
    ok($hop && -S $hop, '  and nginx listens on it');
    my $r = $l->req(POST => '/api/episodes', token => $l->admin_token,
                    json => { name => 'long', author => 't',
                              mp3_url => $origin->url('a.mp3') });
    is($r->{status}, 201, '  episode created') or diag $r->{body};
    my $want = MediaTest::slurp("$odir/a.mp3");
    $r = $l->req(GET => "/stream/$r->{json}{id}");
    ok($r->{status} == 200 && $r->{body} eq $want,
       '  streamed through the hop: 200, the origin\'s bytes')
        or diag "status $r->{status}";
    ok($l->stop, '  stop');
    ok(!-e $hop, '  the hop socket is gone');
    File::Path::remove_tree($1) if $hop && $hop =~ m{^(/tmp/ngx_media-[0-9a-f]{16})/};
}

done_testing();
