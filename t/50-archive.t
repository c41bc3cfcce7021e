#!/usr/bin/perl
# Background ZIP archives (docs/archives.md): validation, ownership, and one
# archive whose origin misbehaves in every way the archiver must survive --
# a connection reset mid-body (resumed with Range + If-Range), 500 then
# 200, 429 with Retry-After, a 404 among good files, a stall (low-speed
# timeout, resumed), a server without Range support (restarted), no
# validators (restarted without Range), a redirect, Content-Disposition
# names and duplicate names -- checked with unzip -t and Python's zipfile
# against the origin's bytes; the download (Range, ETag,
# Content-Disposition); signed webhooks with a retried delivery;
# "on_error": "fail"; an archive whose every file fails.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use MediaTest;
use FlakyOrigin;
use ArchiveTest qw(make_file sha_file wait_archive create_archive fetch_zip
                   check_zip verify_hook);

my $secret = 'test-webhook-secret-0123456789';

my $dir = MediaTest::tempdir('archive-origin');
mkdir "$dir/sub";
make_file("$dir/big.bin", 6_000_000);
make_file("$dir/big2.bin", 3_000_000);
make_file("$dir/a.bin", 300_000);
make_file("$dir/same.bin", 1000);
make_file("$dir/sub/same.bin", 2000);
make_file("$dir/b.bin", 50_000);
make_file("$dir/c.bin", 70_000);
make_file("$dir/d.bin", 2_000_000);
make_file("$dir/e.bin", 10_000);
make_file("$dir/g.bin", 1_000_000);

my $o = FlakyOrigin->start(dir => $dir);

my $s = MediaTest->start(workers => 2, env => {
    MEDIA_ARCHIVE_ALLOW_PRIVATE => 1,
    MEDIA_ARCHIVE_STALL_TIMEOUT => 2,
    MEDIA_WEBHOOK_URL           => $o->url('hook/operator'),
    MEDIA_WEBHOOK_SECRET        => $secret,
});
my $admin = $s->admin_token;

my $user = $s->req(POST => '/api/tokens', token => $admin,
                   json => { role => 'user', name => 'u1' })->{json}{token};
my $user2 = $s->req(POST => '/api/tokens', token => $admin,
                    json => { role => 'user', name => 'u2' })->{json}{token};
my $svc = $s->req(POST => '/api/tokens', token => $admin,
                  json => { role => 'service', name => 'svc' })->{json}{token};

# --- validation -----------------------------------------------------------

sub create {
    my ($token, $body, %o) = @_;
    return $s->req(POST => '/api/archive/create', token => $token,
                   (ref $body ? (json => $body) : (body => $body)));
}

my $good = $o->url('f/a.bin');
my $r = $s->req(POST => '/api/archive/create', json => { urls => [$good] });
is($r->{status}, 401, 'create without a token: 401');
like($r->{headers}{'www-authenticate'} // '', qr/^Bearer/, 'WWW-Authenticate');
is(create($svc, { urls => [$good] })->{status}, 403,
   'a service token may not create archives');

my @bad = (
    [ '{"urls":', qr/./, 'malformed JSON' ],
    [ '[]', qr/object/, 'not an object' ],
    [ {}, qr/"urls"/, 'no urls' ],
    [ { urls => [] }, qr/"urls" must be an array of 1 to 1000/, 'no URL' ],
    [ { urls => [ ($good) x 1001 ] }, qr/1 to 1000/, '1001 URLs' ],
    [ { urls => $good }, qr/"urls" must be an array/, 'urls is a string' ],
    [ { urls => [ $good, $good, 'ftp://example.com/x' ] },
      qr/^urls\[2\]: URL scheme must be http or https/, 'ftp URL (entry 2)' ],
    [ { urls => [ 'http://user:pw@example.com/x' ] },
      qr/^urls\[0\]: credentials in URLs are not allowed/,
      'credentials in the URL' ],
    [ { urls => [ $good, 42 ] }, qr/^urls\[1\]: must be a string/,
      'a number among the URLs' ],
    [ { urls => [ 'http:///nohost' ] }, qr/^urls\[0\]: /, 'no host' ],
    [ { urls => [ "http://example.com/a b" ] }, qr/^urls\[0\]: .*whitespace/,
      'whitespace in the URL' ],
    [ { urls => [ 'http://example.com/' . ('x' x 2100) ] },
      qr/^urls\[0\]: URL length/, 'a URL over 2048 bytes' ],
    [ { urls => [ map { 'http://example.com/' . ('y' x 2000) . $_ } 1 .. 600 ] },
      qr/^urls\[\d+\]: the URLs together pass 1048576 bytes/,
      'total length bounded' ],
    [ { urls => [$good], name => 5 }, qr/"name"/, 'name not a string' ],
    [ { urls => [$good], webhook_url => 'gopher://x/' },
      qr/^webhook_url: URL scheme/, 'bad webhook_url' ],
    [ { urls => [$good], on_error => 'ignore' }, qr/"on_error"/,
      'bad on_error' ],
);

for my $b (@bad) {
    my ($body, $re, $what) = @$b;
    $r = create($user, $body);
    is($r->{status}, 400, "400: $what") or diag $r->{body};
    like($r->{json}{message} // '', $re, "the error names it: $what");
}

is(($s->psql('SELECT count(*) FROM archives'))[0][0], 0,
   'nothing was queued by refused requests');

my $unknown = 'A' x 43;
$r = $s->req(GET => "/api/archive/status/$unknown", token => $admin);
is($r->{status}, 404, 'status of an unknown archive: 404');
is($r->{json}{error}, 'not_found', '... JSON error');
$r = $s->req(GET => '/api/archive/status/short', token => $admin);
is($r->{status}, 404, 'status of a malformed hash: 404');
$r = $s->req(GET => "/archive/get/$unknown.zip", token => $admin);
is($r->{status}, 404, 'download of an unknown archive: 404');
like($r->{headers}{'content-type'} // '', qr{application/json}, '... JSON');
$r = $s->req(GET => "/archive/get/$unknown.zip");
is($r->{status}, 401, 'download without a token: 401');
$r = $s->req(POST => "/archive/get/$unknown.zip", token => $admin);
is($r->{status}, 405, 'download with POST: 405');

# --- one archive, every kind of trouble -----------------------------------

my @in = (
    # url, expected entry name (undef: fails), origin file
    [ 'f/big.bin?reset=1', 'big.bin', 'big.bin' ],
    [ 'f/a.bin?fail=500&times=1', 'a.bin', 'a.bin' ],
    [ 'status/404', undef ],
    [ 'f/same.bin', 'same.bin', 'same.bin' ],
    [ 'f/sub/same.bin', 'same (1).bin', 'sub/same.bin' ],
    [ 'f/b.bin?cd=Report%202024.pdf', 'Report 2024.pdf', 'b.bin' ],
    [ 'redirect/c.bin', 'c.bin', 'c.bin' ],
    [ 'f/big2.bin?stall=1', 'big2.bin', 'big2.bin' ],
    [ 'f/d.bin?norange=1&reset=1', 'd.bin', 'd.bin' ],
    [ 'f/e.bin?fail=429&times=1', 'e.bin', 'e.bin' ],
    [ 'f/g.bin?novalidators=1&reset=1', 'g.bin', 'g.bin' ],
    [ 'f/../../etc/passwd', undef ],
);

my $t0 = time;
my $hash = create_archive($s, $user, {
    urls => [ map { $o->url($_->[0]) } @in ],
    name => 'trouble',
    webhook_url => $o->url('hook/request?fail=1'),
});
like($hash, qr/^[A-Za-z0-9_-]{43}$/, 'archive_hash: 43 base64url characters');

$r = $s->req(GET => "/archive/get/$hash.zip", token => $user);
is($r->{status}, 404, 'download before completion: 404');
is($r->{json}{error}, 'not_ready', '... not_ready');

my $st = wait_archive($s, $user, $hash, 60);
is($st->{status}, 'completed', 'the archive completed') or diag explain $st;
diag sprintf('completed in %.1f s', time - $t0);

is($st->{name}, 'trouble.zip', 'name: .zip appended');
is_deeply($st->{progress}, { files_done => 12, files_total => 12,
                             files_failed => 2,
                             bytes_done => $st->{progress}{bytes_done},
                             bytes_total => $st->{progress}{bytes_done} },
          'progress: all 12 done, 2 failed, bytes_done == bytes_total');
my $sum = 0;
$sum += -s "$dir/$_->[2]" for grep { $_->[1] } @in;
is($st->{progress}{bytes_done}, $sum, 'bytes_done is the sum of the files');

my @f = @{ $st->{files} };
is(scalar @f, 12, 'status lists every file');
is($f[2]{status}, 'failed', 'the 404 failed');
is($f[2]{error}, 'HTTP 404', '... with its reason');
is($f[2]{attempts}, 1, '... at once (no retry)');
is($f[11]{status}, 'failed', 'a 404 (path escaping the origin dir) failed');
is($f[0]{attempts}, 2, 'reset mid-body: a second attempt');
is($f[1]{attempts}, 2, '500 then 200: a second attempt');
is($f[9]{attempts}, 2, '429 then 200: a second attempt');
is($f[7]{attempts}, 2, 'stalled: cut by the low-speed timeout, tried again');
ok(!grep({ $_->{status} ne 'done' } @f[0, 1, 3 .. 10]),
   'every other file is done');
is_deeply([ map { $_->{name} } @f[0, 1, 3 .. 10] ],
          [ map { $_->[1] } @in[0, 1, 3 .. 10] ],
          'entry names: URL path, Content-Disposition, redirect target, '
          . 'duplicates numbered');

# what the origin saw
my @big = $o->requests('/f/big.bin');
is(scalar @big, 2, 'big.bin: two requests');
is($big[0]{range}, '', '... the first from the start');
like($big[1]{range}, qr/^bytes=[1-9]\d*-$/, '... the second a Range resume');
is($big[1]{status}, 206, '... answered 206');
like($big[1]{if_range}, qr/^"/, '... with If-Range (the ETag)');
my @stall = $o->requests('/f/big2.bin');
like($stall[1]{range} // '', qr/^bytes=[1-9]\d*-$/,
     'the stalled download resumed with Range');
my @d = $o->requests('/f/d.bin');
like($d[1]{range} // '', qr/^bytes=[1-9]\d*-$/,
     'no Range support: the resume asked for a range');
is($d[1]{status}, 200, '... got the whole file (and started over)');
my @g = $o->requests('/f/g.bin');
is(scalar @g, 2, 'no validators: two requests');
is($g[1]{range}, '', '... the second without Range (nothing to check it by)');
is(scalar($o->requests('/redirect/c.bin')), 1, 'the redirect was followed');

# the ZIP itself
my ($zr, $zip) = fetch_zip($s, $user, $hash);
is($zr->{status}, 200, 'download: 200');
is($zr->{headers}{'content-type'}, 'application/zip', 'application/zip');
is($zr->{headers}{'content-disposition'},
   q{attachment; filename="trouble.zip"; filename*=UTF-8''trouble.zip},
   'Content-Disposition with the archive name');
ok($zr->{headers}{etag}, 'ETag');
is($zr->{headers}{'accept-ranges'}, 'bytes', 'Accept-Ranges');
is(length $zr->{body}, $st->{size}, 'size as in the status');
check_zip($zip, [ map { [ $_->[1], "$dir/$_->[2]" ] }
                  grep { $_->[1] } @in ], 'trouble.zip');

$r = $s->req(GET => "/archive/get/$hash.zip", token => $user,
             headers => { Range => 'bytes=100-299' });
is($r->{status}, 206, 'Range on the download: 206');
is($r->{body}, substr($zr->{body}, 100, 200), '... the right bytes');
$r = $s->req(GET => "/archive/get/$hash.zip", token => $user,
             headers => { 'If-None-Match' => $zr->{headers}{etag} });
is($r->{status}, 304, 'If-None-Match with the ETag: 304');
$r = $s->req(GET => "/archive/get/$hash.zip", token => $user);
is($r->{status}, 200, 'downloadable again');
$r = $s->req(HEAD => "/archive/get/$hash.zip", token => $user);
is($r->{status}, 200, 'HEAD: 200');
like($st->{url}, qr{/archive/get/\Q$hash\E\.zip$}, 'status carries the URL');

# ownership: another user sees nothing, an admin sees all
$r = $s->req(GET => "/api/archive/status/$hash", token => $user2);
is($r->{status}, 404, "another user's archive: status 404");
$r = $s->req(GET => "/archive/get/$hash.zip", token => $user2);
is($r->{status}, 404, "another user's archive: download 404");
$r = $s->req(GET => "/api/archive/status/$hash", token => $admin);
is($r->{status}, 200, 'an admin sees it');
$r = $s->req(GET => "/archive/get/$hash.zip", token => 'nmt_' . ('x' x 43));
is($r->{status}, 401, 'an unknown token: 401');

# --- webhooks -------------------------------------------------------------

my @op;
$s->wait_for(sub { @op = grep { $_->{status} == 200 } $o->hooks('operator');
                   @op >= 1 }, 20);
is(scalar @op, 1, "the operator's webhook got the event once");
my $ev = eval { JSON::PP->new->decode($op[0]{body}) } || {};
is($ev->{event}, 'archive.completed', 'event archive.completed');
is($ev->{archive_hash}, $hash, '... archive_hash');
is($ev->{status}, 'completed', '... status');
is($ev->{url}, "http://127.0.0.1:" . $s->port . "/archive/get/$hash.zip",
   '... the download URL');
ok(verify_hook($op[0], $secret), 'X-Media-Signature verifies (HMAC of '
                                 . 'timestamp.body with the secret)');
ok(!verify_hook($op[0], 'another-secret-0123456789'),
   '... and not with another secret');
like($op[0]{headers}{'x-media-delivery'} // '', qr/^[0-9a-f-]{36}$/,
     'X-Media-Delivery: an idempotency id');
is($op[0]{headers}{'content-type'}, 'application/json', 'JSON body');

my @req;
$s->wait_for(sub { @req = $o->hooks('request');
                   grep { $_->{status} == 200 } @req }, 30);
is(scalar @req, 2, "the request's webhook: a 500, then delivered");
is($req[0]{status}, 500, '... first answer 500');
is($req[1]{status}, 200, '... retried: 200');
is($req[0]{headers}{'x-media-delivery'}, $req[1]{headers}{'x-media-delivery'},
   '... the same delivery id on the retry');
isnt($req[0]{headers}{'x-media-delivery'}, $op[0]{headers}{'x-media-delivery'},
     '... another one than the operator delivery');
ok(verify_hook($req[1], $secret), '... signed');
is($req[1]{body}, $op[0]{body}, '... the same event');

$st = $s->req(GET => "/api/archive/status/$hash", token => $user)->{json};
my ($wo) = grep { $_->{target} eq 'operator' } @{ $st->{webhooks} };
my ($wr) = grep { $_->{target} ne 'operator' } @{ $st->{webhooks} };
is($wo->{state}, 'delivered', 'status: operator delivery delivered');
is($wr->{state}, 'delivered', 'status: request delivery delivered');
is($wr->{attempts}, 2, 'status: the request delivery took 2 attempts');
is($wr->{last_status}, 200, '... last answer 200');
is($wr->{target}, $o->url('hook/request?fail=1'), '... to the request URL');

# --- on_error: fail ---------------------------------------------------------

my $h2 = create_archive($s, $user, {
    urls => [ $o->url('f/e.bin'), $o->url('status/410'),
              $o->url('f/b.bin') ],
    on_error => 'fail',
});
$st = wait_archive($s, $user, $h2, 30);
is($st->{status}, 'failed', 'on_error fail: one 410 fails the archive');
like($st->{error} // '', qr/file 1 .*HTTP 410/, '... naming the file');
is($st->{url}, undef, '... no download URL');
$r = $s->req(GET => "/archive/get/$h2.zip", token => $user);
is($r->{status}, 404, '... download: 404');
is($r->{json}{error}, 'not_ready', '... not_ready');
ok(!-e $s->var . "/archives/$h2.zip", '... no archive file');
ok(!-e $s->var . "/archives/.work/$h2", '... work directory removed');

my @failed;
$s->wait_for(sub { @failed = grep { $_->{body} =~ /"\Q$h2\E"/ }
                              $o->hooks('operator'); @failed }, 20);
my $fev = eval { JSON::PP->new->decode($failed[0]{body}) } || {};
is($fev->{event}, 'archive.failed', 'webhook archive.failed');
is($fev->{url}, undef, '... without a URL');
ok(verify_hook($failed[0], $secret), '... signed');

# --- nothing could be fetched ------------------------------------------------

my $h3 = create_archive($s, $admin, {
    urls => [ $o->url('status/403'), $o->url('status/404') ] });
$st = wait_archive($s, $admin, $h3, 30);
is($st->{status}, 'failed', 'every file failed: the archive failed');
is($st->{error}, 'no file could be fetched', '... saying so');
is_deeply([ map { $_->{error} } @{ $st->{files} } ], [ 'HTTP 403', 'HTTP 404' ],
          '... each file with its reason');

# --- the work area is clean -------------------------------------------------

opendir(my $dh, $s->var . '/archives/.work');
is_deeply([ grep { !/^\./ } readdir $dh ], [], 'no work directories left');
is_deeply([ $s->error_log_clean ], [], 'no [alert]/[crit]/[emerg] in the error log');

done_testing();
