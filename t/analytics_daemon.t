#!/usr/bin/perl
#
# media-analytics end to end: a private PostgreSQL 15 cluster on a unix
# socket, keys from media-keygen, the daemon from build/bin, events from
# media-analytics-send (a producer that resends un-ACKed batches after 1 s,
# like the nginx module).
#
# Self-contained; core modules only. Binaries: $MEDIA_BIN (default
# build/bin; MEDIA_BIN=build/asan/bin runs the sanitized daemon).

use strict;
use warnings;

use Compress::Zlib ();
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(sleep time);


my $root = abs_path(dirname(__FILE__) . '/..');
my $bin = $ENV{MEDIA_BIN} // "$root/build/bin";
$bin = "$root/$bin" if $bin !~ m{^/};
my $pgbin = '/usr/lib/postgresql/15/bin';

for my $b (qw(media-analytics media-keygen media-analytics-send)) {
    plan skip_all => "$bin/$b missing (make daemons)" unless -x "$bin/$b";
}
plan skip_all => "PostgreSQL 15 not installed" unless -x "$pgbin/initdb";


my $tmp = tempdir('analytics-t-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{KEEP});
chmod 0755, $tmp;

my @as_pg = $> == 0 ? ('runuser', '-u', 'postgres', '--') : ();
my $pgdata = "$tmp/pg";
my $sock = "$tmp/sock";
my $log = "$tmp/analytics.log";
my $conf = "$tmp/analytics.conf";
my $keys = "$tmp/keys";
my $endpoint = 'tcp://127.0.0.1:' . free_port();
my ($daemon, $pg_up);


# ---- helpers ---------------------------------------------------------

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "socket: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub quiet {
    my (@cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$tmp/cmd.log";
        open STDERR, '>&', \*STDOUT;
        exec @cmd or exit 127;
    }
    waitpid $pid, 0;
    return $? == 0;
}

# runs a command with stdin from a file; returns (exit code, stdout, stderr)
sub run_cmd {
    my ($stdin, @cmd) = @_;
    my ($out, $err) = ("$tmp/out.$$", "$tmp/err.$$");
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', $stdin // '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>', $err;
        exec @cmd or exit 127;
    }
    waitpid $pid, 0;
    my $rc = $? >> 8;
    return ($rc, slurp($out), slurp($err));
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}

sub spew {
    my ($f, $s) = @_;
    open my $fh, '>', $f or die "$f: $!";
    print $fh $s;
    close $fh;
}

sub psql {
    my ($sql, $db) = @_;
    open my $fh, '-|', "$pgbin/psql", '-X', '-A', '-t', '-q',
        '-v', 'ON_ERROR_STOP=1', '-h', $sock, '-U', 'postgres',
        '-d', $db // 'media', '-c', $sql
        or die "psql: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    $out =~ s/\n\z//;
    return $out;
}

sub pg_start {
    quiet(@as_pg, "$pgbin/pg_ctl", '-D', $pgdata, '-w', '-t', '30',
          '-l', "$pgdata/server.log", '-o',
          "-c listen_addresses='' -k $sock -c fsync=off "
          . "-c synchronous_commit=off -c full_page_writes=off", 'start')
        or BAIL_OUT("pg_ctl start failed:\n" . slurp("$pgdata/server.log"));
    $pg_up = 1;
}

sub pg_stop {
    my ($mode) = @_;
    quiet(@as_pg, "$pgbin/pg_ctl", '-D', $pgdata, '-w', '-t', '30',
          '-m', $mode // 'fast', 'stop');
    $pg_up = 0;
}

sub start_daemon {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        exec "$bin/media-analytics", '-d', '-f', $conf or exit 127;
    }
    # ready once it listens (the log says so)
    my $t = time + 10;
    my $mark = "started, pid $pid";
    while (time < $t) {
        last if index(slurp($log), $mark) >= 0;
        last if waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }
    $daemon = $pid;
    return $pid;
}

# waits up to $timeout s for $pid; returns the wait status or undef
sub wait_exit {
    my ($pid, $timeout) = @_;
    my $t = time + $timeout;
    while (time < $t) {
        my $r = waitpid $pid, WNOHANG;
        return $? if $r == $pid;
        sleep 0.05;
    }
    return undef;
}

sub stop_daemon {
    return unless $daemon;
    kill 'TERM', $daemon;
    my $st = wait_exit($daemon, 10);
    if (!defined $st) {
        kill 'KILL', $daemon;
        waitpid $daemon, 0;
    }
    $daemon = undef;
    return $st;
}

sub wait_for {
    my ($sql, $want, $timeout) = @_;
    my $t = time + ($timeout // 15);
    my $got;
    while (time < $t) {
        $got = eval { psql($sql) } // '';
        return $got if $got eq $want;
        sleep 0.1;
    }
    return $got;
}

# n events "prefix-0" .. "prefix-(n-1)", one JSON object a line
sub events {
    my ($prefix, $n) = @_;
    my $s = '';
    for my $i (0 .. $n - 1) {
        $s .= sprintf '{"request_id":"%s-%d","episode_id":%d,'
            . '"ts":%d,"status":206,"bytes":%d,"range":"bytes=0-%d",'
            . '"auth":"token","cache":"HIT","client":"127.0.0.1",'
            . '"user_agent":"test/1.0","referrer":null,"source":"nginx"}'
            . "\n", $prefix, $i, 1 + $i % 7, 1763900000000 + $i, $i,
            $i;
    }
    return $s;
}

sub send_events {
    my ($file, $key, @opt) = @_;
    return run_cmd($file, "$bin/media-analytics-send", '-e', $endpoint,
                   '-k', "$keys/$key.key", '-s', "$keys/analytics.pub",
                   @opt);
}

# starts a sender in the background; returns its pid
sub send_events_bg {
    my ($file, $key, $out, @opt) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', $file;
        open STDOUT, '>', $out;
        open STDERR, '>>', "$out.err";
        exec "$bin/media-analytics-send", '-e', $endpoint,
            '-k', "$keys/$key.key", '-s', "$keys/analytics.pub", @opt
            or exit 127;
    }
    return $pid;
}

sub count {
    my ($prefix) = @_;
    return psql("SELECT count(*) FROM events "
                . "WHERE request_id LIKE '$prefix-%'");
}

END {
    local $?;
    if ($daemon) {
        kill 'KILL', $daemon;
        waitpid $daemon, 0;
    }
    pg_stop('immediate') if $pg_up;
}


# ---- set up -----------------------------------------------------------

mkdir $_ or die "$_: $!" for $pgdata, $sock;
if ($> == 0) {
    my ($uid, $gid) = (getpwnam 'postgres')[2, 3];
    chown $uid, $gid, $pgdata, $sock;
}
chmod 0700, $pgdata;

quiet(@as_pg, "$pgbin/initdb", '-D', $pgdata, '-A', 'trust', '-U',
      'postgres', '-E', 'UTF8', '--locale=C', '--no-sync')
    or BAIL_OUT("initdb failed:\n" . slurp("$tmp/cmd.log"));
pg_start();
psql('CREATE DATABASE media', 'postgres');
quiet("$pgbin/psql", '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $sock,
      '-U', 'postgres', '-d', 'media', '-f', "$root/db/001_init.sql")
    or BAIL_OUT("db/001_init.sql failed:\n" . slurp("$tmp/cmd.log"));

for my $k (qw(analytics nginx intruder)) {
    my ($rc, $out, $err) = run_cmd(undef, "$bin/media-keygen", $keys, $k);
    is($rc, 0, "media-keygen $k") or diag $err;
}
like(slurp("$keys/analytics.key"),
     qr/\Apublic [\x21-\x7e]{40}\nsecret [\x21-\x7e]{40}\n\z/,
     'key file: public and secret lines');
is((stat "$keys/analytics.key")[2] & 07777, 0600, 'key file mode 0600');
like(slurp("$keys/analytics.pub"), qr/\A[\x21-\x7e]{40}\n\z/,
     'pub file: one Z85 line');
my ($rc, $out, $err) = run_cmd(undef, "$bin/media-keygen", $keys, 'nginx');
isnt($rc, 0, 'media-keygen refuses to overwrite');
like($err, qr/exists/, '... and says so');

spew("$keys/analytics.clients",
     "# producers allowed to send events\n" . slurp("$keys/nginx.pub"));

my $conninfo = "host=$sock dbname=media user=postgres";
spew($conf, <<"EOF");
# test config
db = $conninfo
listen = $endpoint
curve_key_file = $keys/analytics.key
curve_clients_file = $keys/analytics.clients
journal_dir = $tmp/journal/analytics
batch_max = 1000
flush_ms = 100
heartbeat_name = analytics
pid_file = $tmp/analytics.pid
EOF


# ---- config check -----------------------------------------------------

($rc, $out, $err) = run_cmd(undef, "$bin/media-analytics", '-n', '-f', $conf);
is($rc, 0, '-n exits 0 on a good config');
like($out, qr/configuration OK/, '-n prints "configuration OK"');

spew("$tmp/bad.conf", "# bad\ndb = x\nlistne = tcp://127.0.0.1:1\n");
($rc, $out, $err) = run_cmd(undef, "$bin/media-analytics", '-n', '-f',
                            "$tmp/bad.conf");
is($rc, 1, 'an unknown key: exit 1');
like($err, qr{\Q$tmp\E/bad\.conf:3: unknown key "listne"},
     'the error names file:line');

spew("$tmp/bad2.conf", "db = x\n\nflush_ms = soon\n");
($rc, $out, $err) = run_cmd(undef, "$bin/media-analytics", '-n', '-f',
                            "$tmp/bad2.conf");
is($rc, 1, 'a bad integer: exit 1');
like($err, qr{bad2\.conf:3: "flush_ms" must be an integer}, 'file:line');

spew("$tmp/bad3.conf", "db = x\n");
($rc, $out, $err) = run_cmd(undef, "$bin/media-analytics", '-n', '-f',
                            "$tmp/bad3.conf");
like($err, qr{bad3\.conf: missing required key "listen"},
     'a missing required key');

($rc, $out) = run_cmd(undef, "$bin/media-analytics", '-v');
like($out, qr/^media-analytics \d/, '-v prints the version');


# ---- events land exactly once ------------------------------------------

start_daemon();
ok(kill(0, $daemon), 'daemon started');
is(slurp("$tmp/analytics.pid"), "$daemon\n", 'pid file written');

spew("$tmp/basic.jsonl", events('basic', 1000));
my $t0 = time;
($rc, $out, $err) = send_events("$tmp/basic.jsonl", 'nginx', '-b', '100');
is($rc, 0, '1000 events sent and ACKed') or diag "$out $err";
like($out, qr/events 1000 batches 10 acked 10 naked 0/, 'summary');
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE 'basic-%'",
            '1000'), '1000', 'all 1000 events in PostgreSQL');
is(psql("SELECT episode_id, status, bytes, range, auth, cache, client, "
        . "user_agent, referrer IS NULL, source, "
        . "(extract(epoch FROM ts) * 1000)::bigint "
        . "FROM events WHERE request_id = 'basic-9'"),
   "3|206|9|bytes=0-9|token|HIT|127.0.0.1|test/1.0|t|nginx|1763900000009",
   'columns as sent');

like(wait_for("SELECT count(*) FROM daemon_heartbeats WHERE name = "
              . "'analytics' AND pid = $daemon "
              . "AND seen_at > now() - interval '3 seconds'", '1', 5),
     qr/^1$/, 'heartbeat row fresh');
like(psql("SELECT info FROM daemon_heartbeats WHERE name = 'analytics'"),
     qr/"journal_lag_bytes":\d+/, 'heartbeat info has the journal lag');

# escaping, defaults
spew("$tmp/esc.jsonl",
     '{"request_id":"esc-1","episode_id":1,"status":200,'
     . '"user_agent":"tab\\there\\nnl \\\\back\\\\slash\\r \\u00fc \\\\N",'
     . '"referrer":"\\\\N"}' . "\n"
     . '{"request_id":"esc-2","episode_id":2,"status":200,"source":null,'
     . '"bytes":null,"ts":null}' . "\n");
($rc, $out, $err) = send_events("$tmp/esc.jsonl", 'nginx');
is($rc, 0, 'events with special characters ACKed') or diag $err;
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE 'esc-%'",
            '2'), '2', 'inserted');
is(psql("SELECT user_agent = E'tab\\there\\nnl \\\\back\\\\slash\\r "
        . "\\u00fc \\\\N', referrer = E'\\\\N' "
        . "FROM events WHERE request_id = 'esc-1'"),
   't|t', 'tab, newline, CR, backslash, UTF-8 and a literal \\N survive COPY');
is(psql("SELECT source, bytes, range IS NULL, "
        . "abs(extract(epoch FROM ts - received_at)) < 1 "
        . "FROM events WHERE request_id = 'esc-2'"),
   'nginx|0|t|t', 'defaults: source nginx, bytes 0, ts = time received');

# frames: the events of a batch are packed one a line into frames (the
# default); one event a frame (-1, the older form) is still accepted, and
# any JSON whitespace may separate the events of a frame
spew("$tmp/single.jsonl", events('single', 300));
($rc, $out, $err) = send_events("$tmp/single.jsonl", 'nginx', '-b', '100',
                                '-1');
is($rc, 0, 'one event a frame (the older form): ACKed') or diag "$out $err";
like($out, qr/events 300 batches 3 acked 3 naked 0/, '... all 3 batches');
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE 'single-%'",
            '300'), '300', '... and all 300 events inserted');

spew("$tmp/ws.jsonl",
     qq({"request_id":"ws-1","episode_id":1,"status":200} \t)
     . qq({"request_id":"ws-2","episode_id":1,"status":200}{"request_id":)
     . qq("ws-3","episode_id":1,"status":200}\n)
     . qq(\t {"request_id":"ws-4","episode_id":1,"status":200}\t \n));
for my $form ([], ['-1']) {
    ($rc, $out, $err) = send_events("$tmp/ws.jsonl", 'nginx', @$form);
    is($rc, 0, "events apart by spaces, tabs or nothing (@$form): ACKed")
        or diag "$out $err";
}
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE 'ws-%'",
            '4'), '4', 'all four events of those frames inserted');

spew("$tmp/blank.jsonl",
     qq({"request_id":"blank-1","episode_id":1,"status":200}\n \t \n));
($rc, $out, $err) = send_events("$tmp/blank.jsonl", 'nginx', '-1');
is($rc, 3, 'a frame of only whitespace: the batch is NAKed');
like($err, qr/NAK batch 0: event 2: invalid JSON/, '... naming event 2')
    or diag $err;

# a resent batch is not duplicated
($rc, $out, $err) = send_events("$tmp/basic.jsonl", 'nginx', '-b', '100');
is($rc, 0, 'the same 1000 events sent again: ACKed');
sleep 0.5;
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE 'basic-%'",
            '1000', 3), '1000', 'still 1000 rows: resends are deduplicated');
spew("$tmp/dup.jsonl", events('dup', 5) . events('dup', 5));
($rc) = send_events("$tmp/dup.jsonl", 'nginx', '-b', '10');
is($rc, 0, 'a batch with duplicates inside');
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE 'dup-%'",
            '5'), '5', 'inserted once');


# ---- malformed batches are NAKed ----------------------------------------

my @bad = (
    '{"episode_id":1,"status":200}',
    '{"request_id":"bad-x","episode_id":0,"status":200}',
    '{"request_id":"bad-x","episode_id":1,"status":99}',
    '{"request_id":"bad x","episode_id":1,"status":200}',
    '{"request_id":"bad-x","episode_id":1,"status":200,"bytes":-1}',
    '{"request_id":"bad-x","episode_id":1,"status":200,"auth":5}',
    '{"request_id":"bad-x","episode_id":1,"status":200,"client":"'
        . ('a' x 2049) . '"}',
    '{"request_id":"bad-x","episode_id":1,"status":200,"ts":1.5}',
    '{"request_id":"bad-x","episode_id":1,"status":200,"range":"a\\u0000"}',
    '[1,2]',
    '{"request_id":"bad-x",',
);
for my $i (0 .. $#bad) {
    spew("$tmp/bad.jsonl", qq({"request_id":"bad-ok-$i","episode_id":1,)
         . qq("status":200}\n$bad[$i]\n));
    for my $form ([], ['-1']) {
        ($rc, $out, $err) = send_events("$tmp/bad.jsonl", 'nginx', '-b',
                                        '10', @$form);
        is($rc, 3, "malformed event $i (@$form): batch NAKed");
        like($err, qr/NAK batch 0: event 2: /,
             '... with the event and a reason') or diag $err;
    }
}
is(psql("SELECT count(*) FROM events WHERE request_id LIKE 'bad-%'"), '0',
   'nothing of a NAKed batch is inserted');
is(psql("SELECT count(*) FROM events WHERE request_id LIKE 'blank-%'"), '0',
   'nor of the one with a blank frame');


# ---- ZAP: unknown client keys are refused ----------------------------------

spew("$tmp/intruder.jsonl", events('intruder', 10));
$t0 = time;
($rc, $out, $err) = send_events("$tmp/intruder.jsonl", 'intruder', '-t',
                                '2');
is($rc, 1, 'an unknown client key gets no ACK (timeout)');
like($out, qr/acked 0/, 'acked 0');
like(slurp($log), qr/zap: refused unknown client key/, 'ZAP refused it');
sleep 0.3;
is(count('intruder'), '0', 'nothing inserted');

# SIGHUP reloads the clients file
spew("$keys/analytics.clients",
     slurp("$keys/nginx.pub") . slurp("$keys/intruder.pub"));
kill 'HUP', $daemon;
sleep 0.3;
($rc, $out, $err) = send_events("$tmp/intruder.jsonl", 'intruder', '-t',
                                '5');
is($rc, 0, 'after SIGHUP the added key is accepted');
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE "
            . "'intruder-%'", '10'), '10', 'its events are inserted');


# ---- PING ------------------------------------------------------------------

spew("$tmp/ping.jsonl", events('ping', 1));
($rc, $out) = send_events("$tmp/ping.jsonl", 'nginx', '-P', '-t', '5');
is($rc, 0, 'PING answered');
like($out, qr/pong 1/, 'with PONG and the same 8 bytes');


# ---- kill -9 mid-stream loses nothing -------------------------------------

# The daemon is stopped (SIGSTOP) mid-stream so batches pile up unread in
# its sockets, then killed: those are lost and must be resent.
spew("$tmp/k9.jsonl", events('k9', 4000));
my $sender = send_events_bg("$tmp/k9.jsonl", 'nginx', "$tmp/k9.out",
                            '-b', '40', '-p', '20', '-t', '40');
sleep 0.6;
kill 'STOP', $daemon;
sleep 0.3;
kill 'KILL', $daemon;
waitpid $daemon, 0;
$daemon = undef;
my $before = count('k9');
sleep 0.3;
start_daemon();
my $st = wait_exit($sender, 40);
is($st, 0, 'kill -9 mid-stream: the sender still gets every ACK');
like(slurp("$tmp/k9.out"), qr/acked 100 .*resent [1-9]/,
     'all 100 batches, some of them resent')
    or diag slurp("$tmp/k9.out"), slurp("$tmp/k9.out.err");
ok($before > 0 && $before < 4000, "killed mid-stream ($before inserted)");
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE 'k9-%'",
            '4000'), '4000', 'all 4000 events inserted exactly once');

# journaled but not yet in PostgreSQL when killed: replayed on start
pg_stop('fast');
spew("$tmp/replay.jsonl", events('replay', 500));
($rc, $out) = send_events("$tmp/replay.jsonl", 'nginx', '-b', '50',
                          '-t', '10');
is($rc, 0, 'PostgreSQL down: 500 events ACKed from the journal');
kill 'KILL', $daemon;
waitpid $daemon, 0;
$daemon = undef;
pg_start();
is(count('replay'), '0', 'none in PostgreSQL when the daemon died');
start_daemon();
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE "
            . "'replay-%'", '500'), '500',
   'the restarted daemon replays them from the journal');

# journals from before one record held a whole batch (one event a record)
# are replayed the same way
stop_daemon();
{
    opendir my $dh, "$tmp/journal/analytics" or die "journal: $!";
    my ($last) = sort { $b <=> $a }
                 map { /^(\d{16})\.jnl$/ ? $1 + 0 : () } readdir $dh;
    my $seg = '';
    for my $i (0 .. 99) {
        my $rec = "Rold-$i\t1\t2025-11-23 12:13:20.123+00\t200\t$i\t\\N"
                . "\t\\N\t\\N\t\\N\t\\N\t\\N\tnginx"
                . "\t2025-11-23 12:13:20.123+00\n";
        $seg .= pack('NN', length $rec, Compress::Zlib::crc32($rec)) . $rec;
    }
    spew(sprintf('%s/journal/analytics/%016d.jnl', $tmp, $last + 1), $seg);
}
start_daemon();
is(wait_for("SELECT count(*), sum(bytes) FROM events WHERE request_id LIKE "
            . "'old-%'", '100|4950'), '100|4950',
   'a journal of one-event records is replayed');


# ---- PostgreSQL stop/start mid-stream loses nothing -------------------------

spew("$tmp/pgdown.jsonl", events('pgdown', 4000));
$sender = send_events_bg("$tmp/pgdown.jsonl", 'nginx', "$tmp/pgdown.out",
                         '-b', '40', '-p', '20', '-t', '40');
sleep 0.5;
pg_stop('fast');
spew("$tmp/pgsync.jsonl", events('pgsync', 100));
($rc) = send_events("$tmp/pgsync.jsonl", 'nginx', '-b', '10', '-t', '5');
is($rc, 0, 'PostgreSQL down: events are still journaled and ACKed');
sleep 0.5;
pg_start();
$st = wait_exit($sender, 40);
is($st, 0, 'the stream across the restart is ACKed');
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE 'pgdown-%'",
            '4000', 20), '4000', 'all 4000 events inserted after it is back');
is(count('pgsync'), '100', 'and those sent while it was down');
like(slurp($log), qr/connection lost/, 'the daemon noticed');
like(wait_for("SELECT count(*) FROM daemon_heartbeats WHERE name = "
              . "'analytics' AND seen_at > now() - interval '2 seconds'",
              '1', 5), qr/^1$/, 'heartbeats resume');


# ---- throughput ------------------------------------------------------------

spew("$tmp/bulk.jsonl", events('bulk', 20000));
$t0 = time;
($rc, $out) = send_events("$tmp/bulk.jsonl", 'nginx', '-b', '200', '-w',
                          '64');
my $dt = time - $t0;
is($rc, 0, '20000 events ACKed');
is(wait_for("SELECT count(*) FROM events WHERE request_id LIKE 'bulk-%'",
            '20000', 20), '20000', 'all inserted');
my $dt2 = time - $t0;
diag sprintf '20000 events: ACKed in %.2f s (%.0f/s), in PostgreSQL in '
    . '%.2f s', $dt, 20000 / $dt, $dt2;
SKIP: {
    skip 'throughput only measured with build/bin', 1 if $ENV{MEDIA_BIN};
    ok(20000 / $dt > 2000, 'more than 2000 events/s ACKed');
}

# big rows: multi-megabyte COPYs go out as the socket takes them
{
    my $big = 'x' x 2000;
    my $s = '';
    for my $i (0 .. 2999) {
        $s .= qq({"request_id":"big-$i","episode_id":1,"status":200,)
            . qq("user_agent":"$big\\t$i","referrer":"$big"}\n);
    }
    spew("$tmp/big.jsonl", $s);
}
($rc, $out) = send_events("$tmp/big.jsonl", 'nginx', '-b', '100');
is($rc, 0, '3000 events of 4 KB ACKed');
is(wait_for("SELECT count(*), sum(length(user_agent)) FROM events "
            . "WHERE request_id LIKE 'big-%'", '3000|' . (3000 * 2001
            + length(join '', 0 .. 2999)), 20),
   '3000|' . (3000 * 2001 + length(join '', 0 .. 2999)), 'all inserted whole');


# ---- SIGTERM drains and exits 0 promptly --------------------------------------

spew("$tmp/term.jsonl", events('term', 300));
($rc) = send_events("$tmp/term.jsonl", 'nginx', '-b', '100');
is($rc, 0, 'events just before SIGTERM ACKed');
$t0 = time;
my $pid = $daemon;
kill 'TERM', $daemon;
$st = wait_exit($daemon, 6);
$daemon = undef;
is($st, 0, 'SIGTERM: exit status 0');
ok(time - $t0 < 4, sprintf 'within %.2f s', time - $t0);
ok(!-e "$tmp/analytics.pid", 'pid file removed');
is(count('term'), '300', 'ACKed events were written before exiting');
unlike(slurp($log), qr/AddressSanitizer|LeakSanitizer|runtime error/,
       'no sanitizer reports');

done_testing();
