#!/usr/bin/perl
# Packaged content signed in the path (docs/packaging.md "URLs"):
# /packaged/M/s/<exp>.<kid>.<sig>/stream.mpd, so that the MPD's and the
# playlists' relative URLs keep the signature and a player needs no request
# filter.
#
#   - GET /packaged_content/M answers url, hls_url and license_url in that
#     form (player_url keeps the query form);
#   - the MPD, the init and media segments resolved against it (RFC 3986,
#     by Python's urljoin), a Range of a segment; the licence URL in the
#     MPD is the signed one, a full URL on the request's Host (a Host with
#     characters unfit for a URL: the absolute path), and answers a
#     cross-origin POST with the key; the playlists name the key "license",
#     relatively, and that resolves to the signed licence (GET: the raw
#     key, POST: the W3C licence, OPTIONS: CORS);
#   - ffprobe (no request filter) opens url and hls_url;
#   - refused: expired, forged, malformed, unknown kid, over the TTL,
#     another content's signature (403 JSON with CORS), no credentials
#     (401); path traversal (.., %2e%2e, %2f, in the signature segment)
#     never reaches another content's or any other file;
#   - the query form and a Bearer token still work, and serve the files as
#     written;
#   - with another licence URL for the packager (MEDIA_LICENSE_URL), what
#     it writes is replaced the same way, and so is /license/M in content
#     packaged before.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 ();
use MediaTest qw(slurp spew ffmpeg is_json_error curl);

my $KEY = '00112233445566778899aabbccddeeff';
my $KID = '0123456789abcdef0123456789abcdef';

sub b64url { MIME::Base64::encode_base64url($_[0]) }

my $dir = MediaTest::tempdir('signed-path-media');
my $src = ffmpeg("$dir/src.mp4",
    '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=30:duration=4',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=4',
    '-ac', '2', '-c:v', 'libx264', '-g', '60', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-b:a', '64k', '-movflags', '+faststart');

my $s = MediaTest->start(workers => 2);
my $admin = $s->admin_token;
my $var = $s->var;

# ------------------------------------------------------------ packaging

my $r = $s->req(POST => '/upload_input_content', token => $admin,
                body => slurp($src),
                headers => { 'Content-Type' => 'video/mp4' });
is($r->{status}, 200, 'upload') or diag $r->{body};
my $in = $r->{json}{input_content_id};
$s->wait_for(sub {
    ($s->req(GET => "/input_content/$in", token => $admin)->{json}
     // {})->{status} eq 'ready' }, 30);
$r = $s->req(POST => '/packaged_content', token => $admin,
             json => { input_content_id => $in, key => $KEY, kid => $KID });
is($r->{status}, 200, 'POST /packaged_content') or diag $r->{body};
my $m = $r->{json}{packaged_content_id};
$s->wait_for(sub {
    $r = $s->req(GET => "/packaged_content/$m", token => $admin);
    $r->{status} != 202 }, 60);
is($r->{status}, 200, "packaged_content $m done") or diag $r->{body};
my $j = $r->{json} || {};
my $out = "$var/packaged/$m";

# ------------------------------------------------------------ the URLs

my $base = $s->url('');
my $SIGRE = qr/(\d+)\.(k1)\.([A-Za-z0-9_-]{43})/;
my ($ps) = ($j->{url} // '') =~ m{^\Q$base\E/packaged/$m/s/([^/]+)/stream\.mpd$};
ok($ps, "url: /packaged/$m/s/<exp>.<kid>.<sig>/stream.mpd") or diag $j->{url};
$ps //= '';
my ($exp, $kid, $sig) = $ps =~ /^$SIGRE$/;
ok($exp && $exp > time && $exp <= time + 3600 + 5,
   "  <exp>.<kid>.<sig>: exp within the max TTL, kid k1, 43-char sig");
is($j->{hls_url}, "$base/packaged/$m/s/$ps/master.m3u8", 'hls_url: same prefix');
is($j->{license_url}, "$base/packaged/$m/s/$ps/license",
   'license_url: same prefix');
is($j->{player_url}, "$base/player/$m?exp=$exp&kid=k1&sig=$sig",
   'player_url: the query form of the same signature');
my $q = "exp=$exp&kid=k1&sig=$sig";

# RFC 3986 resolution by another implementation than ours
sub resolve {
    my ($b, $rel) = @_;
    my $u = `python3 -c 'import sys, urllib.parse as u; print(u.urljoin(sys.argv[1], sys.argv[2]))' '$b' '$rel'`;
    chomp $u;
    return $u;
}

# ------------------------------------------------------------ DASH

my $mpd_file = slurp("$out/stream.mpd");
$r = $s->req(GET => $j->{url});
is($r->{status}, 200, 'GET url: 200');
is($r->{headers}{'content-type'}, 'application/dash+xml', '  an MPD');
is($r->{headers}{'access-control-allow-origin'}, '*', '  CORS');
my $mpd = $r->{body};
my $lic = "/packaged/$m/s/$ps/license";
my ($laurl) = $mpd =~ m{<dashif:laurl>([^<]*)</dashif:laurl>};
is($laurl, "$base$lic", '  dashif:laurl is the signed licence, a full URL '
   . 'on the host the MPD was asked from (= license_url)');
like($mpd, qr{<clearkey:Laurl Lic_type="EME-1.0">\Q$base$lic\E</clearkey:Laurl>},
     '  clearkey:Laurl too');
unlike($mpd, qr{/license/$m\b}, '  no unsigned /license/M left');
(my $back = $mpd) =~ s{\Q$base$lic\E}{/license/$m}g;
is($back, $mpd_file, '  otherwise the bytes the packager wrote');

# the host and port are the request's (Host), as in the API's url (curl:
# HTTP::Tiny sends the URL's Host)
sub with_host {
    my ($h, $u, @more) = @_;
    return curl("-H 'Host: $h'", @more, "'$u'");
}
for my $h ('media.example.com:8443', 'Media.Example', '[::1]:' . $s->port) {
    my ($l) = with_host($h, $j->{url})->{body}
              =~ m{<dashif:laurl>([^<]*)</dashif:laurl>};
    is($l, "http://$h$lic", "  Host: $h -> dashif:laurl http://$h<path>");
}
# nginx lets such a Host through; the MPD then keeps the absolute path
# (and the API's url is a path too), never the Host's characters
for my $h ('evil"><x>', 'a&b.example', 'a%3cb') {
    my @l = with_host($h, $j->{url})->{body}
            =~ m{<(?:dashif|clearkey):[lL]aurl[^>]*>([^<]*)<}g;
    is_deeply(\@l, [ ($lic) x 4 ], "  Host: $h -> the absolute path");
    $r = with_host($h, $s->url("/packaged_content/$m"),
                   "-H 'Authorization: Bearer $admin'");
    like($r->{json} && $r->{json}{url}, qr{^/packaged/$m/s/[^/]+/stream\.mpd$},
         '    and the API\'s url is a path too') or diag $r->{body};
}

my ($init) = $mpd =~ /initialization="(video[^"]*)"/;
my ($media) = $mpd =~ /media="(video[^"]*)"/;
my ($start) = $mpd =~ /startNumber="(\d+)"/;
$start //= 1;
(my $seg = $media // '') =~ s/\$Number\$/$start/;
my $init_url = resolve($j->{url}, $init // '');
is($init_url, "$base/packaged/$m/s/$ps/video/init.mp4",
   "the MPD's $init resolves under the signed prefix");
$r = $s->req(GET => $init_url);
is($r->{status}, 200, '  GET: 200');
ok($r->{body} eq slurp("$out/video/init.mp4"), '  the init segment\'s bytes');
is($r->{headers}{'content-type'}, 'video/mp4', '  video/mp4');
my $seg_url = resolve($j->{url}, $seg);
$r = $s->req(GET => $seg_url);
is($r->{status}, 200, "the media segment $seg: 200");
my $seg_file = slurp("$out/$seg");
ok(length $seg_file > 1000 && $r->{body} eq $seg_file, '  its bytes');
$r = $s->req(GET => $seg_url, headers => { Range => 'bytes=100-599' });
is($r->{status}, 206, 'a Range of it: 206');
ok($r->{body} eq substr($seg_file, 100, 500), '  the right 500 bytes');
is($r->{headers}{'content-range'}, 'bytes 100-599/' . length($seg_file),
   '  Content-Range');
$r = $s->req(HEAD => $seg_url);
is($r->{status}, 200, 'HEAD: 200');

# the licence under the signed prefix, as the MPD names it, asked by a
# page of another origin
my $w3c = '{"kids":["' . b64url(pack 'H*', $KID) . '"],"type":"temporary"}';
$r = $s->req(POST => $laurl // "$base$lic", body => $w3c,
             headers => { 'Content-Type' => 'application/json',
                          Origin => 'http://elsewhere.example' });
is($r->{status}, 200, 'POST the MPD\'s licence URL: 200') or diag $r->{body};
is($r->{json} && $r->{json}{keys}[0]{k}, b64url(pack 'H*', $KEY),
   '  the W3C ClearKey licence with the key');
is($r->{headers}{'access-control-allow-origin'}, '*', '  CORS');
is($r->{headers}{'cache-control'}, 'no-store', '  Cache-Control: no-store');
$r = $s->req(OPTIONS => "$base$lic",
             headers => { Origin => 'http://elsewhere.example',
                          'Access-Control-Request-Method' => 'POST' });
is($r->{status}, 204, 'OPTIONS (CORS preflight): 204');
like($r->{headers}{'access-control-allow-methods'} // '', qr/POST/,
     '  POST allowed');
like($r->{headers}{'access-control-allow-headers'} // '', qr/Content-Type/,
     '  Content-Type allowed');

# ------------------------------------------------------------ HLS

$r = $s->req(GET => $j->{hls_url});
is($r->{status}, 200, 'GET hls_url: 200');
is($r->{headers}{'content-type'}, 'application/vnd.apple.mpegurl',
   '  a playlist');
my ($vpl) = $r->{body} =~ /^(video[^\s]*\.m3u8)$/m;
ok($vpl, "  names the video playlist ($vpl)");
my $vurl = resolve($j->{hls_url}, $vpl // '');
is($vurl, "$base/packaged/$m/s/$ps/video.m3u8", '  which resolves under the prefix');
$r = $s->req(GET => $vurl);
is($r->{status}, 200, "GET $vpl: 200");
my @keys = $r->{body} =~ /^#EXT-X-KEY:METHOD=SAMPLE-AES,URI="([^"]*)",KEYFORMAT="(identity|urn:uuid:e2719d58[^"]*)"/mg;
is_deeply([ @keys[0, 2] ], [ 'license', 'license' ],
          '  EXT-X-KEY identity and ClearKey: URI="license" (relative)');
unlike($r->{body}, qr{/license/}, '  no absolute /license/ left');
my ($map) = $r->{body} =~ /^#EXT-X-MAP:URI="([^"]+)"/m;
is(resolve($vurl, $map // ''), $init_url, '  EXT-X-MAP resolves to the init segment');
my $key_url = resolve($vurl, 'license');
is($key_url, "$base$lic", '  the key URI resolves to the signed licence');
$r = $s->req(GET => $key_url);
is($r->{status}, 200, 'GET it: 200');
is(unpack('H*', $r->{body}), $KEY, '  the 16-byte key');
is($r->{headers}{'content-type'}, 'application/octet-stream',
   '  application/octet-stream');

# ------------------------------------------------------------ ffprobe

for my $u ($j->{url}, $j->{hls_url}) {
    my $got = `ffprobe -v error -show_entries stream=codec_type -of csv=p=0 '$u' 2>&1`;
    # (the samples are encrypted: ffprobe's decoders complain, and its
    # HLS demuxer cannot open the PSSH data: key; the streams are listed)
    my @types = sort grep { /^(audio|video)$/ } split /[\s,]+/, $got;
    ok("@types" =~ /^audio( audio)* video( video)*$/,
       "ffprobe opens " . ($u =~ s{.*/}{}r) . " as it is (@types)")
        or diag $got;
}

# ------------------------------------------------------------ refusals

my $secret = pack 'H*', (slurp("$var/keys/sign-k1.key") =~ /([0-9a-f]+)/)[0];
sub sign {
    my ($path, $e, $k) = @_;
    $e = int $e;
    return "$e." . ($k // 'k1') . '.'
           . b64url(hmac_sha256("$path\n$e", $secret));
}
sub at { "/packaged/$m/s/$_[0]/" . ($_[1] // 'stream.mpd') }

$r = $s->req(GET => at(sign("/packaged/$m/", time + 600)));
is($r->{status}, 200, 'a path signature made here with the key: 200');

for my $t ([sign("/packaged/$m/", time - 5), 'expired_signature', 'expired'],
           [sign("/packaged/$m/", time + 7200), 'invalid_signature',
            'over the max TTL'],
           [$exp . '.k1.' . ($sig =~ s/^(.)/$1 eq 'A' ? 'B' : 'A'/er),
            'invalid_signature', 'forged (one character changed)'],
           [($exp + 1) . ".k1.$sig", 'invalid_signature', 'exp + 1'],
           ["$exp.k9.$sig", 'invalid_signature', 'unknown kid'],
           ["$exp.k1", 'invalid_signature', 'no sig part'],
           ["$exp.k1.$sig.x", 'invalid_signature', 'a fourth part'],
           ["$exp-k1-$sig", 'invalid_signature', 'no dots'],
           ['garbage', 'invalid_signature', 'garbage'],
           [sign("/packaged/$m/stream.mpd", time + 600), 'invalid_signature',
            'a signature of the file, not the prefix'])
{
    my ($p, $code, $what) = @$t;
    $r = $s->req(GET => at($p));
    is_json_error($r, 403, $code, "path signature $what");
    is($r->{headers}{'access-control-allow-origin'}, '*', '  CORS');
    $r = $s->req(GET => at($p, 'license'));
    is($r->{status}, 403, "  the licence with it: 403");
}

# another content: a real directory, so an escape would show as a 200
my $other = $m + 1000;
make_dir("$var/packaged/$other");
spew("$var/packaged/$other/stream.mpd", "other content\n");
system('chmod', '-R', 'a+rX', "$var/packaged/$other");
sub make_dir { system('mkdir', '-p', $_[0]) }
$r = $s->req(GET => "/packaged/$other/stream.mpd", token => $admin);
is($r->{body}, "other content\n", "(content $other exists: the token reads it)");
is_json_error($s->req(GET => "/packaged/$other/s/$ps/stream.mpd"), 403,
              'invalid_signature', "M's signature on content $other");
is($s->req(POST => "/packaged/$other/s/$ps/license", body => $w3c)->{status},
   403, "  and on its licence");
is_json_error($s->req(GET => "/packaged/$m/stream.mpd"), 401, 'unauthorized',
              'no credentials');
is_json_error($s->req(POST => "/license/$m", body => $w3c), 401,
              'unauthorized', '/license/M without credentials');

# traversal, sent as written (curl --path-as-is)
for my $p ("/packaged/$m/s/$ps/../../$other/stream.mpd",
           "/packaged/$m/s/$ps/../../../$other/stream.mpd",
           "/packaged/$m/s/$ps/%2e%2e/%2e%2e/%2e%2e/$other/stream.mpd",
           "/packaged/$m/s/$ps/%2E%2E%2F%2E%2E%2F%2E%2E%2F$other%2Fstream.mpd",
           "/packaged/$m/s/$ps%2f..%2f..%2f..%2f$other/stream.mpd",
           "/packaged/$m/s/$ps/video/..%2f..%2f..%2f..%2f$other/stream.mpd",
           "/packaged/$m/s/$ps/..%5c..%5c..%5c$other%5cstream.mpd",
           "/packaged/$m/s/$ps/../../../../keys/sign-k1.key",
           "/packaged/$m/s/$ps/%2e%2e/%2e%2e/%2e%2e/%2e%2e/keys/sign-k1.key",
           "/packaged/$m/s/$ps/../../../../../../../../etc/passwd",
           "/packaged/$m/s/$ps/%00/../stream.mpd")
{
    my $c = curl('--path-as-is', "'$base$p'");
    ok($c->{status} =~ /^4\d\d$/ && $c->{body} !~ /other content|root:/
       && $c->{body} !~ /^[0-9a-f]{32,}\s*$/,
       "traversal $p: $c->{status}, nothing served") or diag $c->{body};
}
# .. that stays inside M's own directory is just another name of its file
my $c = curl('--path-as-is', "'$base/packaged/$m/s/$ps/video/../stream.mpd'");
is($c->{status}, 200, 'video/../stream.mpd under the prefix: the MPD (200)');

# ------------------------------------------------------------ old forms

$r = $s->req(GET => "/packaged/$m/stream.mpd?$q");
is($r->{body}, $mpd_file,
   'the query form serves the MPD as the packager wrote it (/license/M)');
for my $t ([GET => "/packaged/$m/video/init.mp4?$q", undef, 'a segment'],
           [GET => "/packaged/$m/stream.mpd", $admin, 'a Bearer token'],
           [POST => "/license/$m?$q", undef, '/license/M, query signature'],
           [GET => "/license/$m", $admin, '/license/M with the token'],
           [GET => "/player/$m?$q", undef, "the player page, player_url's"])
{
    my ($method, $path, $token, $what) = @$t;
    $r = $s->req($method => $path, body => $w3c,
                 defined $token ? (token => $token) : ());
    is($r->{status}, 200, "$method $what: 200");
}

# ------------------------------------------------------------ license_url

# another licence URL for the packager (MEDIA_LICENSE_URL): what it writes
# is replaced under the signed prefix just the same, and content packaged
# before (/license/M) still is
my $LIC2 = 'https://keys.example:8443/drm/$id?v=1;k=2';
$s->restart(env => { MEDIA_LICENSE_URL => $LIC2 });
$r = $s->req(POST => '/packaged_content', token => $admin,
             json => { input_content_id => $in, key => $KEY, kid => $KID });
is($r->{status}, 200, "MEDIA_LICENSE_URL=$LIC2: packaging again")
    or diag $r->{body};
my $m2 = $r->{json}{packaged_content_id} // 0;
$s->wait_for(sub {
    $r = $s->req(GET => "/packaged_content/$m2", token => $admin);
    $r->{status} != 202 }, 60);
is($r->{status}, 200, "  packaged_content $m2 done") or diag $r->{body};
my $j2 = $r->{json} || {};
(my $written = $LIC2) =~ s/\$id/$m2/;
like(slurp("$var/packaged/$m2/stream.mpd") // '',
     qr{<dashif:laurl>\Q$written\E</dashif:laurl>},
     "  the packager wrote $written into the MPD");
my ($ps2) = ($j2->{url} // '') =~ m{/packaged/$m2/s/([^/]+)/stream\.mpd$};
my $lic2 = "$base/packaged/$m2/s/" . ($ps2 // '') . '/license';
$r = $s->req(GET => $j2->{url} // '/');
my @l = $r->{body} =~ m{<(?:dashif|clearkey):[lL]aurl[^>]*>([^<]*)<}g;
is_deeply(\@l, [ ($lic2) x 4 ],
          '  served under the signed prefix: the signed licence URL');
unlike($r->{body}, qr{keys\.example}, '  none of it left');
$r = $s->req(GET => "$base/packaged/$m2/s/$ps2/video.m3u8");
@keys = $r->{body} =~ /^#EXT-X-KEY:METHOD=SAMPLE-AES,URI="([^"]*)",KEYFORMAT="(?:identity|urn:uuid:e2719d58[^"]*)"/mg;
is_deeply(\@keys, [ 'license', 'license' ],
          '  the playlist: URI="license" for both key formats');
$r = $s->req(POST => $l[0] // '/', body => $w3c);
is($r->{json} && $r->{json}{keys}[0]{k}, b64url(pack 'H*', $KEY),
   '  the licence URL answers the key');
$r = $s->req(GET => $j->{url});
($laurl) = $r->{body} =~ m{<dashif:laurl>([^<]*)</dashif:laurl>};
is($laurl, "$base$lic", "content $m, packaged with /license/$m before: "
   . 'still the signed licence URL');

is_deeply([$s->error_log_clean], [], 'nginx error log: no [alert]/[crit]');

done_testing();
