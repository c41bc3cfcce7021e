#!/usr/bin/perl
# Operator configuration: misconfigurations fail `nginx -t` with a clear
# message; signing keys rotate (an old key still verifies, an unknown key
# id does not).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64);
use MediaTest;

my $dir = MediaTest::tempdir('config-origin');
MediaTest::gen_mp3("$dir/a.mp3", seconds => 1);
my $origin = MediaTest::Origin->start(dir => $dir);

# an old key, still listed after the current one (k1, from the launcher)
my $oldkey = "$dir/sign-k0.key";
my $oldhex = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
open my $kf, '>', $oldkey or die;
print $kf "$oldhex\n";
close $kf;
chmod 0644, $oldkey;

my $s = MediaTest->start(extra_http => "media_origin_allow_private on;\n"
                                       . "    media_sign_key k0 $oldkey;");
my $conf = do { local (@ARGV, $/) = ($s->var . '/conf/nginx.conf'); <> };

sub nginx_t {
    my ($edit, $name, $expect) = @_;
    my $c = $conf;
    $edit->($c);
    my $f = $s->var . '/conf/broken.conf';
    open my $fh, '>', $f or die;
    print $fh $c;
    close $fh;
    my $out = `${\ $s->nginx_cmd} -t -q -c $f -p ${\ $s->var}/nginx/ 2>&1`;
    isnt($? >> 8, 0, "nginx -t fails: $name");
    like($out, $expect, "  and says why: $name") or diag $out;
}

nginx_t(sub { $_[0] =~ s/^\s*media_db .*$//m }, 'stream without media_db',
        qr/"media_\w+" needs "media_db"/);
nginx_t(sub { $_[0] =~ s/media_sign_max_ttl 1h;/media_sign_max_ttl 2h;/ },
        'signed URL TTL over 1 h', qr/media_sign_max_ttl.*between 1s and 1h/);
nginx_t(sub { $_[0] =~ s{media_sign_key k1 (\S+);}{media_sign_key k1 /nonexistent/key;} },
        'unreadable signing key', qr/media_sign_key.*cannot read/);
nginx_t(sub { $_[0] =~ s{media_sign_key k1 }{media_sign_key bad/kid } },
        'invalid key id', qr/invalid key id "bad\/kid"/);
nginx_t(sub { $_[0] =~ s/^\s*media_sign_key .*$//mg;
              $_[0] =~ s/media_protect token_or_signed/media_protect token/g },
        'origin hop without a signing key',
        qr/"media_origin_hop" needs a "media_sign_key"/);
nginx_t(sub { $_[0] =~ s/^\s*media_analytics_keys .*$//m },
        'analytics endpoint without CURVE keys',
        qr/media_analytics_endpoint.*needs "media_analytics_keys"/);

# --- key rotation ---------------------------------------------------------

my $admin = $s->admin_token;
my $r = $s->req(POST => '/api/episodes', token => $admin,
                json => { mp3_url => $origin->url('a.mp3'), name => 'rot',
                          author => 'ops' });
my $id = $r->{json}{id};
$s->req(POST => "/api/episodes/$id/private", token => $admin);

$r = $s->req(POST => "/api/episodes/$id/signed-url", token => $admin,
             json => { ttl => 60 });
like($r->{json}{url}, qr/kid=k1&/, 'new URLs are signed with the first key');

sub sign {
    my ($hex, $path, $exp) = @_;
    my $sig = encode_base64(hmac_sha256("$path\n$exp", pack('H*', $hex)), '');
    $sig =~ tr{+/}{-_};
    $sig =~ s/=+$//;
    return $sig;
}

my $exp = time + 300;
my $sig = sign($oldhex, "/stream/$id", $exp);
$r = $s->req(GET => "/stream/$id?exp=$exp&kid=k0&sig=$sig");
is($r->{status}, 200, 'a URL signed with the previous key still verifies');
$r = $s->req(GET => "/stream/$id?exp=$exp&kid=k9&sig=$sig");
is($r->{status}, 403, 'an unknown key id: 403');
my $far = time + 7200;
$sig = sign($oldhex, "/stream/$id", $far);
$r = $s->req(GET => "/stream/$id?exp=$far&kid=k0&sig=$sig");
is($r->{status}, 403, 'a validly signed URL living over 1 h: 403 (cap '
                      . 'enforced when verifying)');

is_deeply([$s->error_log_clean], [], 'no [alert]/[crit]/[emerg] in the log');

done_testing;
