#!/usr/bin/perl
# Streaming: GET/HEAD /stream/{id}[.mp3] of public and private episodes,
# ranges within and across slices, auth failures, unknown episodes, origin
# failures, and the proxy cache sparing the origin.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);
use MediaTest qw(slurp is_json_error);

my $dir = MediaTest::tempdir('stream-origin');
MediaTest::gen_mp3("$dir/small.mp3", seconds => 3);
MediaTest::gen_mp3("$dir/cached.mp3", seconds => 2);
MediaTest::gen_mp3("$dir/big.mp3", seconds => 180);
my $origin = MediaTest::Origin->start(dir => $dir);

# 1 MiB slices (the default is 4m): a 2.9 MB file spans three of them
my $s = MediaTest->start(workers => 2, env => { MEDIA_STREAM_SLICE => '1m' },
                         extra_http => 'media_origin_allow_private on;');
my $admin = $s->admin_token;
like(slurp($s->var . '/conf/nginx.conf'), qr/^\s*slice 1m;/m,
     'MEDIA_STREAM_SLICE=1m renders slice 1m');


# compare bodies without printing megabytes on failure
sub same_bytes {
    my ($got, $want, $what) = @_;
    $got //= '';
    my $ok = ok($got eq $want, $what);
    unless ($ok) {
        my $i = 0;
        $i++ while $i < length($got) && $i < length($want)
                   && substr($got, $i, 1) eq substr($want, $i, 1);
        diag sprintf('got %d bytes, want %d; first difference at %d',
                     length $got, length $want, $i);
    }
    return $ok;
}

sub episode {
    my ($name, $url, %o) = @_;
    my $r = $s->req(POST => '/api/episodes', token => $admin,
                    json => { name => $name, author => 'test',
                              mp3_url => $url });
    is($r->{status}, 201, "episode $name created") or diag $r->{body};
    my $id = $r->{json}{id};
    if ($o{private}) {
        $r = $s->req(POST => "/api/episodes/$id/private", token => $admin);
        is($r->{json} && $r->{json}{private}, JSON::PP::true(),
           "episode $name is private");
    }
    return $id;
}

my $small = slurp("$dir/small.mp3");
my $big = slurp("$dir/big.mp3");
my $cached = slurp("$dir/cached.mp3");
ok(length($big) > 2 * 1024 * 1024 + 100_000,
   sprintf('big.mp3 spans three 1 MiB slices (%d bytes)', length $big));

my $pub = episode('public', $origin->url('small.mp3'));
my $priv = episode('private', $origin->url('small.mp3'), private => 1);
my $bigid = episode('big', $origin->url('big.mp3'));
my $down = episode('origin down',
                   'http://127.0.0.1:' . MediaTest::free_port() . '/x.mp3');
my $gone = episode('origin 404', $origin->url('missing.mp3'));
my $cid = episode('cached', $origin->url('cached.mp3'));

my $user = $s->req(POST => '/api/tokens', token => $admin,
                   json => { role => 'user', name => 'listener' })->{json};

# --- public episodes

for my $path ("/stream/$pub", "/stream/$pub.mp3") {
    my $r = $s->req(GET => $path);
    is($r->{status}, 200, "GET $path");
    same_bytes($r->{body}, $small, "GET $path: bytes equal the origin file");
    is($r->{headers}{'content-type'}, 'audio/mpeg',
       "GET $path: Content-Type audio/mpeg");
    is($r->{headers}{'accept-ranges'}, 'bytes', "GET $path: Accept-Ranges");
    is($r->{headers}{'content-length'}, length $small,
       "GET $path: Content-Length");
    ok($r->{headers}{'x-request-id'}, "GET $path: X-Request-Id");

    $r = $s->req(HEAD => $path);
    is($r->{status}, 200, "HEAD $path");
    is($r->{body} // '', '', "HEAD $path: no body");
    is($r->{headers}{'content-type'}, 'audio/mpeg',
       "HEAD $path: Content-Type");
    is($r->{headers}{'content-length'}, length $small,
       "HEAD $path: Content-Length");
}

# request ids: 32 hex digits, never twice (each worker draws 256 at a time,
# so 600 requests cross its refills), laid out as UUIDv7: the time in ms
# first (so ids sort by time), version 7, variant 10
{
    my (%seen, $bad, $badtime, $unordered, $prev);
    for (1 .. 600) {
        my $t0 = int(Time::HiRes::time() * 1000);
        my $id = $s->req(HEAD => "/stream/$pub")->{headers}{'x-request-id'}
                 // '';
        my $t1 = int(Time::HiRes::time() * 1000);
        $bad++ if $id !~ /\A[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}\z/
                  || $seen{$id}++;
        # 48 bits: fine on 64-bit perls, which warn that it is not portable
        my $ms = do { no warnings 'portable'; hex(substr($id, 0, 12)) };
        # nginx's clock is cached per event-loop turn: a few ms behind at most
        $badtime++ if $ms < $t0 - 1000 || $ms > $t1 + 5;
        $unordered++ if defined $prev && $ms + 1000 < $prev;
        $prev = $ms;
    }
    is($bad // 0, 0, '600 requests: 600 distinct X-Request-Id, UUIDv7 layout');
    is($badtime // 0, 0, '  each starts with the time of its request (ms)');
    is($unordered // 0, 0, '  and they follow the clock');
}

my $r = $s->req(GET => "/stream/$pub", headers => { Range => 'bytes=100-199' });
is($r->{status}, 206, 'Range bytes=100-199: 206');
same_bytes($r->{body}, substr($small, 100, 100), '  the right 100 bytes');
is($r->{headers}{'content-range'}, 'bytes 100-199/' . length($small),
   '  Content-Range');
is($r->{headers}{'content-length'}, 100, '  Content-Length');

$r = $s->req(GET => "/stream/$pub", headers => { Range => 'bytes=-50' });
is($r->{status}, 206, 'suffix range bytes=-50: 206');
same_bytes($r->{body}, substr($small, -50), '  the last 50 bytes');

$r = $s->req(GET => "/stream/$pub",
             headers => { Range => 'bytes=' . (length($small) + 10) . '-' });
is($r->{status}, 416, 'a range past the end: 416');

# --- private episodes

$r = $s->req(GET => "/stream/$priv");
is_json_error($r, 401, 'unauthorized', 'private, no credentials');
like($r->{headers}{'www-authenticate'} // '', qr/^Bearer/,
     '  WWW-Authenticate');

$r = $s->req(HEAD => "/stream/$priv.mp3");
is($r->{status}, 401, 'HEAD of a private episode without credentials: 401');

$r = $s->req(GET => "/stream/$priv.mp3", token => $user->{token});
is($r->{status}, 200, 'private, valid Bearer token: 200');
same_bytes($r->{body}, $small, '  bytes equal the origin file');

$r = $s->req(GET => "/stream/$priv", token => $user->{token},
             headers => { Range => 'bytes=0-9' });
is($r->{status}, 206, 'private with a token and a Range: 206');
same_bytes($r->{body}, substr($small, 0, 10), '  the first 10 bytes');

$r = $s->req(GET => "/stream/$priv", token => 'nmt_' . ('A' x 43));
is_json_error($r, 401, 'invalid_token', 'private, unknown token');

$r = $s->req(GET => "/stream/$priv",
             headers => { Authorization => 'Bearer not-a-token' });
is_json_error($r, 401, 'invalid_token', 'private, malformed token');

$r = $s->req(GET => "/stream/$priv",
             headers => { Authorization => 'Basic dTpw' });
is_json_error($r, 401, 'invalid_token', 'private, Basic credentials');

$r = $s->req(GET => "/stream/$pub", token => 'nmt_' . ('A' x 43));
is_json_error($r, 401, 'invalid_token',
              'public episode with an unknown token is refused too');

my $victim = $s->req(POST => '/api/tokens', token => $admin,
                     json => { role => 'user', name => 'revoked' })->{json};
$r = $s->req(GET => "/stream/$priv", token => $victim->{token});
is($r->{status}, 200, 'a token streams before revocation');
$s->req(DELETE => "/api/tokens/$victim->{id}", token => $admin);
my $t0 = time;
$s->wait_for(sub {
    $r = $s->req(GET => "/stream/$priv", token => $victim->{token});
    $r->{status} == 401 }, 6);
is_json_error($r, 401, 'invalid_token', 'private, revoked token');
ok(time - $t0 < 5, sprintf('  refused %.1f s after revocation', time - $t0));

my $m = $s->req(POST => "/api/episodes/$priv/signed-url", token => $admin,
                json => { ttl => 300 });
my ($q) = ($m->{json}{url} // '') =~ /\?(.*)$/;
$r = $s->req(GET => "/stream/$priv.mp3?$q");
is($r->{status}, 200, 'private, signed URL: 200');
same_bytes($r->{body}, $small, '  bytes equal the origin file');
(my $badq = $q) =~ s/sig=(.)/'sig=' . ($1 eq 'A' ? 'B' : 'A')/e;
$r = $s->req(GET => "/stream/$priv.mp3?$badq");
is_json_error($r, 403, 'invalid_signature', 'private, bad signature');
$r = $s->req(GET => "/stream/$pub.mp3?$q");
is_json_error($r, 403, 'invalid_signature',
              "another episode's signature on a public episode");

# --- unknown episodes, bad methods

for my $p ('/stream/999999999', '/stream/999999999.mp3', '/stream/0') {
    $r = $s->req(GET => $p);
    is_json_error($r, 404, 'not_found', "GET $p");
}

for my $p ('/stream/abc', '/stream/1.wav', '/stream/' . ('1' x 19),
           '/stream/abc.mp3')
{
    $r = $s->req(GET => $p);
    is($r->{status}, 404, "GET $p (no such route): 404");
    is($r->{json} && $r->{json}{error}, 'not_found', "  $p: not_found");
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         "  $p: JSON Content-Type");
}

for my $meth (qw(POST PUT DELETE)) {
    $r = $s->req($meth => "/stream/$pub", body => 'x');
    is_json_error($r, 405, 'method_not_allowed', "$meth /stream/$pub");
    like($r->{headers}{allow} // '', qr/GET/, "  $meth: Allow header");
}
$r = $s->req(POST => '/stream/1');
is($r->{status}, 405, 'POST /stream/1: 405');

# --- origin failures

for my $c (["/stream/$down", 'origin down'],
           ["/stream/$down.mp3", 'origin down'],
           ["/stream/$gone", 'origin answers 404'],
           ["/stream/$gone.mp3", 'origin answers 404'])
{
    my ($p, $what) = ($c->[0], "$c->[1] ($c->[0])");
    $r = $s->req(GET => $p);
    is($r->{status}, 502, "$what: 502");
    is($r->{json} && $r->{json}{error}, 'origin_failed',
       "  $what: origin_failed");
    ok($r->{headers}{'x-request-id'}, "  $what: X-Request-Id");
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         "  $what: JSON Content-Type");
}
$r = $s->req(HEAD => "/stream/$gone");
is($r->{status}, 502, 'HEAD when the origin answers 404: 502');
is($origin->hits('/missing.mp3') > 0, 1, 'the origin was asked for it');

# --- an origin given by name, not address

my $byname = episode('by name', 'http://localhost:' . $origin->port
                                . '/small.mp3');
$r = $s->req(GET => "/stream/$byname");
is($r->{status}, 200, 'an origin URL with a host name streams');
same_bytes($r->{body}, $small, '  bytes equal the origin file');
like($origin->last_host // '', qr/^localhost:\d+$/,
     '  the origin is asked with its own name in Host')
    if $origin->can('last_host');

# --- the cache spares the origin

my @status;
for my $i (1 .. 6) {
    $r = $s->req(GET => "/stream/$cid");
    push @status, $r->{headers}{'x-cache-status'} // '-';
    same_bytes($r->{body}, $cached, "cached play $i: bytes equal");
}
is($status[0], 'MISS', 'first play is a MISS');
is($status[-1], 'HIT', 'last play is a HIT') or diag "@status";
my $first_hit = (grep { $status[$_] eq 'HIT' } 0 .. $#status)[0];
ok(defined $first_hit
   && !grep({ $status[$_] ne 'HIT' } $first_hit .. $#status),
   "once a HIT, always a HIT (@status)");
my $hits = $origin->hits('/cached.mp3');
ok($hits >= 1 && $hits <= 2, "6 plays, $hits origin fetches (at most 2)");

$r = $s->req(GET => "/stream/$cid", headers => { Range => 'bytes=10-19' });
is($r->{status}, 206, 'a range of a cached episode');
is($r->{headers}{'x-cache-status'}, 'HIT', '  served from the cache');
same_bytes($r->{body}, substr($cached, 10, 10), '  the right bytes');
is($origin->hits('/cached.mp3'), $hits, '  no new origin fetch');

# --- a multi-slice file

my $MiB = 1024 * 1024;
my $len = length $big;

$r = $s->req(GET => "/stream/$bigid.mp3");
is($r->{status}, 200, 'big file streamed whole');
same_bytes($r->{body}, $big, "  all $len bytes equal the origin file");
is($r->{headers}{'content-length'}, $len, '  Content-Length');

for my $rg ([$MiB - 100, $MiB + 99], [$MiB - 1, $MiB], [0, $MiB],
            [$MiB, 2 * $MiB - 1], [2 * $MiB - 5000, 2 * $MiB + 5000],
            [$MiB - 10, 2 * $MiB + 10], [500, $len - 1],
            [$len - 1, $len - 1])
{
    my ($from, $to) = @$rg;
    $r = $s->req(GET => "/stream/$bigid", headers => {
                     Range => "bytes=$from-$to" });
    my $what = "big file bytes=$from-$to";
    is($r->{status}, 206, "$what: 206");
    is($r->{headers}{'content-range'}, "bytes $from-$to/$len",
       "$what: Content-Range");
    same_bytes($r->{body}, substr($big, $from, $to - $from + 1),
               "$what: bytes equal");
}

$r = $s->req(GET => "/stream/$bigid",
             headers => { Range => 'bytes=' . ($MiB + 7) . '-' });
is($r->{status}, 206, 'big file open-ended range from inside slice 2');
same_bytes($r->{body}, substr($big, $MiB + 7), '  bytes equal');

$r = $s->req(GET => "/stream/$bigid", headers => { Range => 'bytes=-3000' });
is($r->{status}, 206, 'big file suffix range');
same_bytes($r->{body}, substr($big, -3000), '  bytes equal');

$r = $s->req(GET => "/stream/$bigid.mp3");
same_bytes($r->{body}, $big, 'big file again (now partly cached) equal');
$r = $s->req(GET => "/stream/$bigid.mp3");
same_bytes($r->{body}, $big, 'big file a third time equal');
is($r->{headers}{'x-cache-status'}, 'HIT', '  a HIT');

# --- the origin hop: each cache file's body starts on a page boundary
#
# A cache file is nginx's header, "\nKEY: <key>\n", the response header as
# the stream location received it from the origin hop, then the body. The
# hop pads that header (X-Media-Pad) so that the body begins a page in.

my $page = POSIX::sysconf(POSIX::_SC_PAGESIZE()) || 4096;
my @files = grep { -f } split /\n/, `find ${\ $s->var}/cache -type f`;
ok(@files >= 4, scalar(@files) . ' cache files (cached.mp3 and 3 slices)');
my (@body_at, $padded);
for my $f (@files) {
    my ($stored, $at) = MediaTest::cache_file_header($f);
    push @body_at, $at // -1;
    $padded++ if defined $stored && $stored =~ /\r\nX-Media-Pad: x*\z/;
}
is(scalar(grep { $_ > 0 && $_ % $page == 0 } @body_at), scalar @body_at,
   "every cached body starts on a $page-byte boundary (at @body_at)");
is($padded // 0, scalar @files, '  after an X-Media-Pad line, last in the header');
ok(!grep({ /^x-media-/ } keys %{ $r->{headers} }),
   '  clients see no X-Media-* header');

# the hop answers nobody but this nginx: no key, a wrong key, a malformed
# header are 403 (JSON), and the origin is not asked
{
    require IO::Socket::UNIX;
    my $sock = $s->hop_socket;
    ok($sock && -S $sock, "the origin hop listens on $sock");
    my $before = $origin->hits('/small.mp3');
    my $url = $origin->url('small.mp3');
    (my $host = $url) =~ s{^http://([^/]+)/.*}{$1};
    # the reason nginx logs tells which check refused it
    my $elog = $s->var . '/log/nginx-error.log';
    for my $case (['no X-Media-Hop', 'no', undef],
                  ['a wrong key', 'wrong key in', ('A' x 43) . " 0 $host $url"],
                  ['a short key', 'wrong key in', "abc 0 $host $url"],
                  ['no URL', 'malformed', ('A' x 43) . " 0 $host"],
                  ['a header length not a number', 'malformed',
                   ('A' x 43) . " 1x $host $url"],
                  ['a header length over 65535', 'malformed',
                   ('A' x 43) . " 65536 $host $url"],
                  ['a non-HTTP URL', 'malformed',
                   ('A' x 43) . " 0 $host file:///etc/passwd"],
                  ['two headers', 'malformed', ('A' x 43) . " 0 $host $url", 2])
    {
        my ($what, $why, $hdr, $times) = @$case;
        my $c = IO::Socket::UNIX->new(Peer => $sock)
            or do { fail("connect $sock: $!"); next };
        print $c "GET /x HTTP/1.0\r\nHost: hop\r\n"
                 . (defined $hdr ? "X-Media-Hop: $hdr\r\n" x ($times // 1) : '')
                 . "\r\n";
        my $resp = do { local $/; <$c> } // '';
        like($resp, qr{\AHTTP/1\.1 403 }, "origin hop, $what: 403");
        like($resp, qr/\r\n\r\n\{"error":"forbidden"/, '  with a JSON error');
        my ($last) = reverse grep { /media origin hop: / } split /\n/, slurp($elog) // '';
        like($last // '', qr/media origin hop: \Q$why\E X-Media-Hop, refused/,
             "  logged: $why X-Media-Hop");
    }
    is($origin->hits('/small.mp3'), $before, '  and the origin was not asked');
}

is_deeply([$s->error_log_clean], [], 'error log has no [alert]/[crit]');

done_testing();
