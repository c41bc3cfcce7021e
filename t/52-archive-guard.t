#!/usr/bin/perl
# The SSRF guard, on by default (no MEDIA_ARCHIVE_ALLOW_PRIVATE): archive
# URLs are accepted when syntactically fine, but the archiver refuses to
# connect to loopback, private, link-local and metadata addresses -- the
# check is on the address actually connected to -- so the origin sees no
# request; a request's webhook_url on loopback is refused the same way,
# while the operator's webhook (trusted configuration) is delivered.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use MediaTest;
use FlakyOrigin;
use ArchiveTest qw(make_file wait_archive create_archive verify_hook);

my $secret = 'guard-test-secret-0123456789';

my $dir = MediaTest::tempdir('guard-origin');
make_file("$dir/a.bin", 10_000);
my $o = FlakyOrigin->start(dir => $dir);
my $port = $o->port;

my $s = MediaTest->start(workers => 1, env => {
    MEDIA_WEBHOOK_URL    => $o->url('hook/operator'),
    MEDIA_WEBHOOK_SECRET => $secret,
});
my $admin = $s->admin_token;

my @urls = ("http://127.0.0.1:$port/f/a.bin",
            "http://localhost:$port/f/a.bin",
            "http://[::1]:$port/f/a.bin",
            "http://127.1.2.3:$port/f/a.bin",
            'http://169.254.169.254/latest/meta-data/',
            'http://10.1.2.3:81/x.bin',
            'http://[::ffff:127.0.0.1]:' . $port . '/f/a.bin');

my $hash = create_archive($s, $admin, {
    urls => \@urls, webhook_url => $o->url('hook/request') });
ok($hash, 'private URLs pass the syntactic check at create time');

my $st = wait_archive($s, $admin, $hash, 30);
is($st->{status}, 'failed', 'the archive failed');
is($st->{error}, 'no file could be fetched', '... nothing could be fetched');

my @f = @{ $st->{files} };
for my $i (0 .. $#urls) {
    like($f[$i]{error} // '', qr/^refused: \S+ is a private address/,
         "refused: $urls[$i]");
    is($f[$i]{attempts}, 1, '... at once, not retried');
}
like($f[0]{error}, qr/^refused: 127\.0\.0\.1 /, 'the address refused is named');
like($f[4]{error}, qr/^refused: 169\.254\.169\.254 /, 'the metadata address');
is(scalar(my @got = $o->requests('/f/')), 0,
   'the origin saw no request for a file');

# webhooks
my @op;
$s->wait_for(sub { @op = $o->hooks('operator'); @op }, 20);
is(scalar @op, 1, "the operator's webhook (trusted) was delivered");
my $ev = eval { JSON::PP->new->decode($op[0]{body}) } || {};
is($ev->{event}, 'archive.failed', '... archive.failed');
is($ev->{archive_hash}, $hash, '... for this archive');
ok(verify_hook($op[0], $secret), '... signed');

my $wr;
$s->wait_for(sub {
    my $j = $s->req(GET => "/api/archive/status/$hash", token => $admin)->{json};
    ($wr) = grep { $_->{target} ne 'operator' } @{ $j->{webhooks} || [] };
    $wr && $wr->{state} eq 'failed';
}, 20);
ok($wr, "the request's webhook is listed");
is($wr->{state}, 'failed', '... refused, not retried');
like($wr->{last_error} // '', qr/^refused: 127\.0\.0\.1 is a private address/,
     '... by the guard');
is(scalar(my @req = $o->hooks('request')), 0, '... the receiver got nothing');

is_deeply([ $s->error_log_clean ], [], 'no [alert]/[crit]/[emerg] in the error log');

done_testing();
