#!/usr/bin/perl
# Analytics: one event per stream request, POST /api/analytics/events,
# per-episode stats, and no loss under load while the analytics daemon is
# killed with SIGKILL and PostgreSQL restarts.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use List::Util qw(min max);
use Time::HiRes qw(sleep time);
use POSIX ();
use MediaTest;

my $dir = MediaTest::tempdir('analytics-origin');
MediaTest::gen_mp3("$dir/small.mp3", seconds => 2);
my $origin = MediaTest::Origin->start(dir => $dir);

my $s = MediaTest->start(workers => 2,
                         extra_http => 'media_origin_allow_private on;');
my $admin = $s->admin_token;

sub create_episode {
    my ($name) = @_;
    my $r = $s->req(POST => '/api/episodes', token => $admin,
                    json => { mp3_url => $origin->url('small.mp3'),
                              name => $name, author => 'load' });
    is($r->{status}, 201, "episode $name created") or diag $r->{body};
    return $r->{json}{id};
}

sub stats {
    my ($id) = @_;
    my $r = $s->req(GET => "/api/analytics/episodes/$id", token => $admin);
    return $r->{json};
}

sub wait_requests {
    my ($id, $n, $timeout) = @_;
    my $st;
    $s->wait_for(sub { $st = stats($id); $st && $st->{requests} >= $n },
                 $timeout);
    return stats($id);
}

# --- one event per request, with its fields --------------------------------

my $ep = create_episode('fields');
my $r = $s->req(GET => "/stream/$ep", headers => {
    'User-Agent' => 'media-test/1.0', 'Referer' => 'http://example.test/p',
    'Range' => 'bytes=0-99' });
is($r->{status}, 206, 'ranged stream');
my $rid = $r->{headers}{'x-request-id'};
ok($rid, 'response carries X-Request-Id');
$s->req(GET => "/stream/$ep.mp3");
$s->req(GET => '/stream/999999');

my $st = wait_requests($ep, 2, 20);
is($st->{requests}, 2, 'two requests recorded for the episode');
is($st->{streams}, 2, 'both were 2xx streams');

my ($row) = $s->psql("SELECT status, bytes, range, auth, client, user_agent,"
                     . " referrer, source FROM events"
                     . " WHERE request_id = '$rid'");
ok($row, 'event stored under the response request id');
is_deeply($row, [206, 100, 'bytes=0-99', 'public', '127.0.0.1',
                 'media-test/1.0', 'http://example.test/p', 'nginx'],
          'event fields');
$s->wait_for(sub {
    ($s->psql("SELECT count(*) FROM events WHERE episode_id = 999999"))[0][0]
        == 1 }, 10);
is(($s->psql("SELECT status FROM events WHERE episode_id = 999999"))[0][0],
   404, 'a 404 on the stream route is an event too');

# --- events from other producers ------------------------------------------

my $svc = $s->req(POST => '/api/tokens', token => $admin,
                  json => { role => 'service', name => 'producer' });
my $user = $s->req(POST => '/api/tokens', token => $admin,
                   json => { role => 'user', name => 'u' });
my $ep2 = create_episode('external');
my @batch = map { { request_id => "ext-$_", episode_id => $ep2 + 0,
                    status => 200, bytes => 1000, source => 'cdn' } } 1 .. 50;

$r = $s->req(POST => '/api/analytics/events', token => $svc->{json}{token},
             json => \@batch);
is($r->{status}, 202, 'service token posts events: 202') or diag $r->{body};
is($r->{json}{accepted}, 50, 'accepted count');

$r = $s->req(POST => '/api/analytics/events', token => $svc->{json}{token},
             json => \@batch);
is($r->{status}, 202, 'replaying the same batch is accepted');

$r = $s->req(POST => '/api/analytics/events', token => $user->{json}{token},
             json => \@batch);
is($r->{status}, 403, 'user token may not post events');

$r = $s->req(POST => '/api/analytics/events', token => $admin,
             body => '[{"request_id":"x","episode_id":1');
is($r->{status}, 400, 'malformed JSON: 400');
$r = $s->req(POST => '/api/analytics/events', token => $admin,
             json => [ { request_id => 'ok-1', episode_id => 1, status => 200 },
                       { episode_id => 1, status => 200 } ]);
is($r->{status}, 400, 'an event without request_id: 400');
like($r->{json}{message}, qr/event 1/, 'the error names the bad event');
$r = $s->req(POST => '/api/analytics/events', token => $admin,
             json => [ { request_id => "bad'id", episode_id => 1,
                         status => 200 } ]);
is($r->{status}, 400, 'request_id with SQL metacharacters refused');
is(($s->psql("SELECT count(*) FROM events WHERE request_id = 'ok-1'"))[0][0],
   0, 'a rejected batch stores nothing');

$st = wait_requests($ep2, 50, 20);
is($st->{requests}, 50, 'replayed batch counted once (dedup by request_id)');
is($st->{bytes}, 50_000, 'bytes summed');

$r = $s->req(GET => "/api/analytics/episodes/$ep2",
             token => $user->{json}{token});
is($r->{status}, 403, 'stats are admin only');
$r = $s->req(GET => '/api/analytics/episodes/987654', token => $admin);
is($r->{status}, 404, 'stats of an unknown episode: 404');

# --- no loss under load, kill -9 of the daemon, PostgreSQL restart ---------

my $load = create_episode('load');
# warm the cache so the load is served locally
$s->req(GET => "/stream/$load") for 1 .. 3;
my $out = "$dir/ab.out";

# size the load to last about 6 s on this machine (the kill comes at 1 s,
# the PostgreSQL restart at 2.5 s): time 20000 requests first. ab -t would
# cut requests in flight, which the server may still log.
my $tc = time;
system('ab -q -k -n 20000 -c 32 ' . $s->url("/stream/$load") . ' >/dev/null')
    == 0 or BAIL_OUT('ab failed');
my $crps = 20000 / (time - $tc);
my $before = wait_requests($load, 20003, 60)->{requests};
is($before, 20003, 'the calibration load is recorded');
my $n = $ENV{MEDIA_LOAD_REQUESTS}
        || min(2_000_000, max(80000, int($crps * 6)));
my $t0 = time;
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    open STDOUT, '>', $out or die;
    open STDERR, '>&', \*STDOUT;
    { exec 'ab', '-q', '-k', '-r', '-n', $n, '-c', '32',
           $s->url("/stream/$load") };
    POSIX::_exit(127);
}

my $old = $s->_pid_of('analytics');
sleep 1.0;
is(waitpid($pid, POSIX::WNOHANG()), 0, 'load still running at the kill');
ok($s->kill_daemon('analytics', 'KILL'), 'analytics daemon killed (-9)');
sleep 1.5;
is(waitpid($pid, POSIX::WNOHANG()), 0, 'load still running at the restart');
ok($s->restart_pg, 'PostgreSQL restarted mid-load');
waitpid($pid, 0);
my $elapsed = time - $t0;
is($? >> 8, 0, 'ab finished') or diag `cat $out`;

$s->wait_for(sub { my $p = $s->_pid_of('analytics');
                   $p && $p != $old && kill 0, $p }, 10);
isnt($s->_pid_of('analytics'), $old, 'the launcher restarted the daemon');

my $ab = do { local (@ARGV, $/) = $out; <> };
my ($complete) = $ab =~ /Complete requests:\s+(\d+)/;
my ($non2xx) = $ab =~ /Non-2xx responses:\s+(\d+)/;
$non2xx //= 0;
my ($rps) = $ab =~ /Requests per second:\s+([\d.]+)/;
is($complete, $n, "clients received $n responses");
diag(sprintf "load: %d requests in %.1f s (%s req/s per ab), %d non-2xx",
             $complete, $elapsed, $rps // '?', $non2xx);
cmp_ok($rps, '>=', 1000, 'thousands of stream requests per second')
    if defined $rps;

$st = wait_requests($load, $before + $complete, 120);
is($st->{requests}, $before + $complete,
   'every response is recorded exactly once');
is($st->{streams}, $before + $complete - $non2xx,
   'streams equal the 2xx responses clients received');

my $m = $s->req(GET => '/metrics');
my ($dropped) = $m->{body} =~ /^media_analytics_dropped_total (\d+)/m;
is($dropped, 0, 'no event dropped by the module');

is_deeply([$s->error_log_clean], [], 'no [alert]/[crit]/[emerg] in the log');

done_testing;
