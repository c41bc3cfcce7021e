#!/usr/bin/env perl
# Playback proof in a real browser: headless Chromium (Debian's, driven by
# playwright-core through t/lib/playback.mjs) loads the player page
# (web/player.html + web/player.js + shaka-player from node_modules) and
#
#  1. reference: plays ../shared/media/cbcs-reference/cbcs_{v,a}.mp4 (an
#     independent packager's cbcs output) from a stock nginx laid out like
#     the module (/player/1, /player/assets/, /packaged/1/, /license/1, all
#     behind a query signature the page must pass on), with a hand-written
#     MPD: time advances past 3 s, frames decode and move on screen, no
#     player error; with a wrong key in the licence (fulfilled by the
#     browser itself) it reports a decode error instead, also with the audio
#     removed from the MPD (so the video decoder is the one that fails).
#  2. end to end: uploads a generated H.264 (High, B-frames) + AAC 48 kHz
#     clip, packages it with a key, opens player_url from the stack: same
#     checks. Skipped (saying why) until the module and packager sides exist.
#     Played again from url alone (&signed=path: no request filter, no
#     licence server configured), from the stack's page and from a page on
#     another origin (the licence URL in the MPD is a full one).
#  3. the same upload as HLS: the key URI of EXT-X-KEY KEYFORMAT="identity"
#     (GET /license/M, the 16 raw bytes, behind the same signature), then
#     player_url&format=hls, which loads hls_url's master playlist: plays
#     (same checks, and no MPD fetched); with a wrong key given for the key
#     URI and the audio taken out of the master playlist, the video decoder
#     fails.
#
# Screenshots are kept in t/tmp/playback-*.png.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use MediaTest qw(slurp spew);
use PlaybackTest qw($KEY $KID b64url need_browser package_clip
                    check_plays check_wrong_key check_path_signed);
use Test::More;
use JSON::PP ();
use POSIX ();

my $ROOT = $MediaTest::ROOT;
my $REF = "$ROOT/../shared/media/cbcs-reference";
my $JSON = JSON::PP->new->utf8->canonical;

need_browser('node_modules/shaka-player/dist/shaka-player.compiled.js');
-r "$REF/cbcs_v.mp4" or plan skip_all => "no reference media in $REF";

# --------------------------------------------------------------- MP4 walk

# boxes($data, $start, $end) -> ([type, offset, size, body_offset], ...)
sub boxes {
    my ($d, $pos, $end) = @_;
    my @b;
    while ($pos + 8 <= $end) {
        my ($size, $type) = unpack('N a4', substr($d, $pos, 8));
        my $hdr = 8;
        if ($size == 1) {
            my ($hi, $lo) = unpack('N N', substr($d, $pos + 8, 8));
            $size = $hi * 4294967296 + $lo;
            $hdr = 16;
        } elsif ($size == 0) {
            $size = $end - $pos;
        }
        last if $size < $hdr || $pos + $size > $end;
        push @b, [$type, $pos, $size, $pos + $hdr];
        $pos += $size;
    }
    return @b;
}

sub child {
    my ($d, $box, $type, $skip) = @_;
    my ($c) = grep { $_->[0] eq $type }
              boxes($d, $box->[3] + ($skip // 0), $box->[1] + $box->[2]);
    return $c;
}

# A fragmented single-track MP4 as a DASH SegmentList: the init range
# (ftyp+moov), and per moof+mdat its byte range, start and duration.
sub fragments {
    my ($d) = @_;
    my @top = boxes($d, 0, length $d);
    my ($moov) = grep { $_->[0] eq 'moov' } @top or die 'no moov';
    my $trak = child($d, $moov, 'trak');
    my $mdhd = child($d, child($d, $trak, 'mdia'), 'mdhd');
    my $v = unpack('C', substr($d, $mdhd->[3], 1));
    my $timescale = unpack('N', substr($d, $mdhd->[3] + ($v ? 20 : 12), 4));
    my $mvex = child($d, $moov, 'mvex');
    my $trex = $mvex && child($d, $mvex, 'trex');
    my $trex_dur = $trex ? unpack('N', substr($d, $trex->[3] + 12, 4)) : 0;
    my $init_end = $moov->[1] + $moov->[2];
    my @frag;
    for my $i (0 .. $#top) {
        next unless $top[$i][0] eq 'moof';
        my ($moof, $mdat) = ($top[$i], $top[$i + 1]);
        die 'moof without mdat' unless $mdat && $mdat->[0] eq 'mdat';
        my $traf = child($d, $moof, 'traf');
        my $tfhd = child($d, $traf, 'tfhd');
        my $tf = unpack('N', substr($d, $tfhd->[3], 4)) & 0xffffff;
        my $o = $tfhd->[3] + 8;
        $o += 8 if $tf & 0x01;
        $o += 4 if $tf & 0x02;
        my $def = $trex_dur;
        $def = unpack('N', substr($d, $o, 4)) if $tf & 0x08;
        my $tfdt = child($d, $traf, 'tfdt');
        my $tv = unpack('C', substr($d, $tfdt->[3], 1));
        my $t = $tv ? do { my ($h, $l) = unpack('N N', substr($d, $tfdt->[3] + 4, 8));
                           $h * 4294967296 + $l }
                    : unpack('N', substr($d, $tfdt->[3] + 4, 4));
        my $dur = 0;
        for my $trun (grep { $_->[0] eq 'trun' }
                      boxes($d, $traf->[3], $traf->[1] + $traf->[2])) {
            my ($vf, $n) = unpack('N N', substr($d, $trun->[3], 8));
            my $f = $vf & 0xffffff;
            my $p = $trun->[3] + 8;
            $p += 4 if $f & 0x001;
            $p += 4 if $f & 0x004;
            for (1 .. $n) {
                if ($f & 0x100) { $dur += unpack('N', substr($d, $p, 4)) }
                else            { $dur += $def }
                $p += 4 * (!!($f & 0x100) + !!($f & 0x200) + !!($f & 0x400)
                           + !!($f & 0x800));
            }
        }
        push @frag, { first => $moof->[1], last => $mdat->[1] + $mdat->[2] - 1,
                      t => $t, d => $dur };
    }
    my $codecs;
    if ((my $i = index($d, 'avcC')) > 0) {
        $codecs = sprintf('avc1.%s', unpack('H6', substr($d, $i + 5, 3)));
    } else {
        $codecs = 'mp4a.40.2';
    }
    return { timescale => $timescale, init => "0-" . ($init_end - 1),
             frags => \@frag, codecs => $codecs };
}

sub representation {
    my ($id, $file, $f, $extra) = @_;
    my $tl = join('', map { qq(          <S t="$_->{t}" d="$_->{d}"/>\n) }
                      @{ $f->{frags} });
    my $urls = join('', map { qq(        <SegmentURL mediaRange="$_->{first}-$_->{last}"/>\n) }
                        @{ $f->{frags} });
    return <<"EOF";
      <Representation id="$id" codecs="$f->{codecs}" $extra>
        <BaseURL>$file</BaseURL>
        <SegmentList timescale="$f->{timescale}">
          <Initialization range="$f->{init}"/>
        <SegmentTimeline>
$tl        </SegmentTimeline>
$urls        </SegmentList>
      </Representation>
EOF
}

# the MPD signalling of docs/packaging.md, over SegmentList byte ranges
sub reference_mpd {
    my ($v, $a, $license) = @_;
    my $dur = 0;
    $dur += $_->{d} for @{ $v->{frags} };
    $dur /= $v->{timescale};
    (my $uuid = $KID) =~ s/^(.{8})(.{4})(.{4})(.{4})(.{12})$/$1-$2-$3-$4-$5/;
    my $cp = <<"EOF";
      <ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cbcs" cenc:default_KID="$uuid"/>
      <ContentProtection schemeIdUri="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e" value="ClearKey1.0">
        <dashif:laurl>$license</dashif:laurl>
      </ContentProtection>
EOF
    my $head = <<"EOF";
<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:cenc="urn:mpeg:cenc:2013"
     xmlns:dashif="https://dashif.org/CPS"
     profiles="urn:mpeg:dash:profile:full:2011" type="static"
     minBufferTime="PT2S" mediaPresentationDuration="PT${dur}S">
  <Period id="0" start="PT0S">
EOF
    return $head
      . qq(    <AdaptationSet contentType="video" mimeType="video/mp4" segmentAlignment="true">\n)
      . $cp
      . representation('v', 'video.mp4', $v,
        'mimeType="video/mp4" width="640" height="360" frameRate="30" bandwidth="800000"')
      . "    </AdaptationSet>\n"
      . (!$a ? '' :
          qq(    <AdaptationSet contentType="audio" mimeType="audio/mp4" lang="und" segmentAlignment="true">\n)
        . $cp
        . representation('a', 'audio.mp4', $a,
          'mimeType="audio/mp4" audioSamplingRate="48000" bandwidth="96000"')
        . "    </AdaptationSet>\n")
      . "  </Period>\n</MPD>\n";
}

# --------------------------------------------------------------- stock nginx

# A stock nginx laid out like the module's player routes: /player/1 is
# web/player.html, /player/assets/ is web/ and shaka-player's dist/,
# /packaged/1/ the media, /license/1 a fixed ClearKey answer. Media and
# licence need ?sig=$SIG (the page must pass its own signature on).
my $SIG = 'refsig' . int(rand(1e9));
my @NGINX;                      # stopped at the end, even if the test dies
END { local $?; stop_nginx($_) for @NGINX }

sub start_nginx {
    my ($dir, $license_json) = @_;
    my $t = MediaTest::tempdir('nginx');
    mkdir "$t/$_" for qw(body proxy fastcgi uwsgi scgi);
    my $user = $> == 0 ? "user root;\n" : '';
    (my $lj = $license_json) =~ s/'/\\'/g;
    for my $try (1 .. 5) {
        my $port = MediaTest::free_port();
        spew("$t/nginx.conf", <<"EOF");
${user}daemon off;
worker_processes 1;
pid $t/nginx.pid;
error_log $t/error.log warn;
events { worker_connections 256; }
http {
    include /etc/nginx/mime.types;
    types { application/dash+xml mpd; text/javascript js mjs; }
    default_type application/octet-stream;
    log_format t '\$request_method \$uri \$status "\$args" "\$http_range"';
    access_log $t/access.log t;
    client_body_temp_path $t/body;
    proxy_temp_path $t/proxy;
    fastcgi_temp_path $t/fastcgi;
    uwsgi_temp_path $t/uwsgi;
    scgi_temp_path $t/scgi;
    server {
        listen 127.0.0.1:$port;
        location ~ ^/player/\\d+\$ {
            default_type text/html;
            alias $ROOT/web/player.html;
        }
        location /player/assets/shaka/ {
            alias $ROOT/node_modules/shaka-player/dist/;
        }
        location /player/assets/ {
            alias $ROOT/web/;
        }
        location /packaged/ {
            if (\$arg_sig != "$SIG") { return 403; }
            alias $dir/;
        }
        location ~ ^/license/\\d+\$ {
            if (\$arg_sig != "$SIG") { return 403; }
            if (\$request_method != POST) { return 405; }
            default_type application/json;
            add_header Cache-Control no-store;
            return 200 '$lj';
        }
    }
}
EOF
        my $pid = MediaTest::spawn_nginx($t);
        if (MediaTest::wait_until(sub {
                waitpid($pid, POSIX::WNOHANG()) == $pid ? -1
              : MediaTest::_port_open($port)           ? 1 : 0 }, 10) == 1) {
            push @NGINX, { pid => $pid, port => $port, dir => $t };
            return $NGINX[-1];
        }
        kill 'TERM', $pid;
        waitpid($pid, 0);
    }
    die "nginx did not start:\n" . MediaTest::_tail("$t/error.log", 20);
}

sub stop_nginx {
    my ($n) = @_;
    return unless $n && $n->{pid};
    kill 'TERM', $n->{pid};
    waitpid($n->{pid}, 0);
    delete $n->{pid};
}

# --------------------------------------------------------------- 1. reference

subtest 'reference cbcs media (Bento4) in Chromium' => sub {
    my $media = MediaTest::tempdir('refmedia');
    my $v = fragments(slurp("$REF/cbcs_v.mp4"));
    my $a = fragments(slurp("$REF/cbcs_a.mp4"));
    is($v->{codecs}, 'avc1.64001e', 'video codecs string from avcC');
    is(scalar @{ $v->{frags} }, 4, 'video: four 2 s fragments');
    mkdir "$media/1" or die $!;
    symlink("$REF/cbcs_v.mp4", "$media/1/video.mp4") or die $!;
    symlink("$REF/cbcs_a.mp4", "$media/1/audio.mp4") or die $!;
    spew("$media/1/stream.mpd", reference_mpd($v, $a, '/license/1'));

    my $license = $JSON->encode({ keys => [{ kty => 'oct', kid => b64url($KID),
                                             k => b64url($KEY) }],
                                  type => 'temporary' });
    my $n = start_nginx($media, $license);
    my $base = "http://127.0.0.1:$n->{port}";
    my $q = "exp=4102444800&kid=k1&sig=$SIG";

    is(MediaTest->req(GET => "$base/packaged/1/stream.mpd")->{status}, 403,
       'the media needs the signature');
    is(MediaTest->req(POST => "$base/license/1")->{status}, 403,
       'the licence needs the signature');
    # nginx logs a request after answering it: wait for the two refusals'
    # lines, so that they do not land in the browser's part of the log
    MediaTest::wait_until(sub {
        my $l = eval { slurp("$n->{dir}/access.log") } // '';
        $l =~ m{^GET /packaged/1/stream\.mpd 403}m
            && $l =~ m{^POST /license/1 403}m }, 5);
    my $log_from = -s "$n->{dir}/access.log" // 0;

    check_plays('reference', "$base/player/1?$q",
                "$MediaTest::TMP/playback-reference.png", [640, 360]);
    my $log = substr(eval { slurp("$n->{dir}/access.log") } // '', $log_from);
    my @media = grep { m{^\S+ /(packaged|license)/1} } split /\n/, $log;
    ok(@media >= 4 && !grep({ !/sig=\Q$SIG\E/ } @media),
       'every manifest, segment and licence request carried the signature')
        or diag($log);

    check_wrong_key('reference', "$base/player/1?$q",
                    "$MediaTest::TMP/playback-reference-wrongkey.png");
    check_wrong_key('reference', "$base/player/1?$q",
                    "$MediaTest::TMP/playback-reference-video-wrongkey.png",
                    video_only => 1);
    stop_nginx($n);
};

# --------------------------------------------------------------- 2. end to end

subtest 'uploaded, packaged and played through the stack' => sub {
    my @missing = grep { !-e "$ROOT/$_" }
        qw(daemons/packager/main.c ngx_media_module/ngx_http_media_packaged.c
           ngx_media_module/ngx_http_media_upload.c);
    plan skip_all => "packager/module side not there yet: missing @missing"
        if @missing;

    my $s = MediaTest->start;
    my $tok = $s->admin_token;
    my @unwired = grep { $s->req(GET => $_)->{status} == 404 }
                  '/player/assets/player.js',
                  '/player/assets/shaka/shaka-player.compiled.js';
    plan skip_all => "the stack does not serve @unwired yet (web/README.md)"
        if @unwired;
    my ($m, $j) = package_clip($s, $tok);
    my $player = $j->{player_url};
    ok($player, 'player_url ' . ($player // '(none)')) or return;
    my $mpd = $s->req(GET => $j->{url});
    is($mpd->{status}, 200, 'the signed MPD URL answers');
    like($mpd->{body}, qr/urn:mpeg:dash:mp4protection:2011"\s+value="cbcs"/,
         'MPD signals cbcs');
    like($s->req(GET => $j->{url} =~ s{/s/[^/]+/}{/}r)->{status},
         qr/^40[134]$/, 'the MPD without the signature is refused')
        if $j->{url};

    check_plays('end to end', $player, "$MediaTest::TMP/playback-e2e.png",
                [640, 360]);
    check_wrong_key('end to end', $player,
                    "$MediaTest::TMP/playback-e2e-wrongkey.png");
    check_wrong_key('end to end', $player,
                    "$MediaTest::TMP/playback-e2e-video-wrongkey.png",
                    video_only => 1);
    is_deeply([$s->error_log_clean], [], 'no [alert]/[crit]/[emerg]');

    # url as it is: the page with &signed=path gives shaka the path-signed
    # MPD with no request filter and no licence server of its own; the
    # segments' relative URLs and the licence URL the MPD names carry the
    # signature
    my ($ps) = ($j->{url} // '') =~ m{/packaged/$m/s/([^/]+)/stream\.mpd$};
    $ps //= '';
    my $pr = check_plays('path-signed DASH', "$player&signed=path",
                         "$MediaTest::TMP/playback-path.png", [640, 360]);
    check_path_signed('path-signed DASH', $pr, $m, $ps, 'POST');

    # the same from a page of another origin (a stock nginx on another
    # port serving web/player.js, shaka and a copy of web/player.html that
    # names url): the MPD's dashif:Laurl is a full URL, so the licence POST
    # goes to the stack (CORS), not to the page's origin
    my $site = MediaTest::tempdir('other-origin');
    symlink("$ROOT/web/player.js", "$site/player.js") or die $!;
    symlink("$ROOT/node_modules/shaka-player/dist/shaka-player.compiled.js",
            "$site/shaka-player.compiled.js") or die $!;
    (my $page = slurp("$ROOT/web/player.html"))
        =~ s{<html lang="en">}{<html lang="en" data-manifest="$j->{url}">};
    $page =~ s{src="/player/assets/(?:shaka/)?}{src="}g;
    spew("$site/player.html", $page);
    my $other = MediaTest::Origin->start(dir => $site);
    my $stack_origin = $s->url('');
    $pr = check_plays('path-signed DASH from another origin',
                      $other->url('player.html?signed=path'),
                      "$MediaTest::TMP/playback-path-cross-origin.png",
                      [640, 360]);
    check_path_signed('path-signed DASH from another origin', $pr, $m, $ps,
                      'POST');
    my @lic_urls = map { $_->{url} } @{ $pr->{license} || [] };
    ok(@lic_urls && !grep({ index($_, "$stack_origin/packaged/$m/s/") != 0 }
                          @lic_urls),
       "path-signed DASH from another origin: the licence asked from the "
       . "stack ($stack_origin), not from the page's origin")
        or diag("@lic_urls");
    ok($other->hits('/player.html') == 1 && $other->hits('/player.js') == 1
       && $other->hits("/packaged/$m/s/$ps/license") == 0,
       '  (the page and player.js came from the other origin, no licence '
       . 'request went there)');
    $other->stop;

    my $hls = $j->{hls_url} // '';
    like($hls, qr{^https?://[^/]+/packaged/$m/s/[^/]+/master\.m3u8$},
         "hls_url $hls");
    # the page plays the query form of the same signature
    my $hls_path = "/packaged/$m/master.m3u8";
    my ($sig) = $player =~ /\?(.*)$/;
    $sig //= '';
    my $media = $s->req(GET => "/packaged/$m/video.m3u8?$sig")->{body};
    like($media, qr{^#EXT-X-KEY:METHOD=SAMPLE-AES,URI="(/license/$m)",KEYFORMAT="identity",KEYFORMATVERSIONS="1"$}m,
         'video.m3u8: EXT-X-KEY "identity" at the license URL');

    # the key URI: GET answers the raw key, as strictly as the licence
    my $key = $s->req(GET => "/license/$m?$sig");
    is($key->{status}, 200, 'GET /license/M with the signature');
    is(unpack('H*', $key->{body}), $KEY, 'answers the 16-byte key');
    is($key->{headers}{'content-type'}, 'application/octet-stream',
       'as application/octet-stream');
    is($key->{headers}{'cache-control'}, 'no-store', 'not for caches');
    is($s->req(GET => "/license/$m")->{status}, 401,
       'GET /license/M without a signature or token: 401');
    (my $bad = $sig) =~ s/sig=[^&]*/sig=AAAA/;
    is($s->req(GET => "/license/$m?$bad")->{status}, 403,
       'GET /license/M with a bad signature: 403');
    is($s->req(GET => '/license/' . ($m + 1000) . "?$sig")->{status}, 403,
       "another content's key with M's signature: 403");
    is(unpack('H*', $s->req(GET => "/license/$m", token => $tok)->{body}),
       $KEY, 'GET /license/M with the token');

    my $hp = "$player&format=hls";
    my $r = check_plays('HLS', $hp, "$MediaTest::TMP/playback-hls.png",
                        [640, 360]);
    my $st = $r->{state} || {};
    is_deeply([ @$st{qw(format manifestType)} ], ['hls', 'HLS'],
              'HLS: the page loaded an HLS manifest');
    my @paths = map { $_->{path} } @{ $r->{manifests} || [] };
    is($paths[0], $hls_path, "HLS: first fetched hls_url's master playlist");
    ok((grep { $_ eq "/packaged/$m/video.m3u8" } @paths)
       && (grep { $_ eq "/packaged/$m/audio.m3u8" } @paths)
       && !grep({ /\.mpd$/ } @paths),
       'HLS: then the video and audio playlists, no MPD') or diag("@paths");
    # shaka makes its ClearKey licence of the "identity" key (a data: URI):
    # the key GET is the one request to /license/, no W3C licence POST
    my @lic = @{ $r->{license} || [] };
    ok(($st->{keys} // 0) >= 1 && @lic
       && !grep({ $_->{method} ne 'GET' || $_->{status} != 200 } @lic),
       "HLS: the identity key GET from /license/$m, no licence POST "
       . "($st->{keys} key requests)") or diag($JSON->encode(\@lic));

    $pr = check_plays('path-signed HLS', "$player&signed=path&format=hls",
                      "$MediaTest::TMP/playback-path-hls.png", [640, 360]);
    check_path_signed('path-signed HLS', $pr, $m, $ps, 'GET');

    $r = check_wrong_key('HLS', $hp,
                         "$MediaTest::TMP/playback-hls-video-wrongkey.png",
                         video_only => 1);
    ok((grep { $_->{method} eq 'GET' } @{ $r->{license} || [] }),
       'HLS, wrong key: the key URI was what the browser answered');
    is_deeply([$s->error_log_clean], [], 'HLS: no [alert]/[crit]/[emerg]');
};

done_testing;
