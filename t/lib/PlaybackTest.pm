package PlaybackTest;

# Helpers of the browser playback tests (t/70-playback.t with the player
# page's shaka-player, t/71-dashjs.t with dash.js): a packaged generated
# clip, one headless Chromium run of a page (t/lib/playback.mjs) and the
# checks made on its report.

use strict;
use warnings;

use Exporter 'import';
use JSON::PP ();
use MIME::Base64 ();
use Test::More;
use MediaTest qw(slurp);

our @EXPORT_OK = qw($KEY $KID $WRONG b64url need_browser package_clip play
                    explain_report check_plays check_wrong_key
                    check_path_signed);

# the key material of ../shared/media/cbcs-reference/README.md, also
# used for the generated clip
our $KEY   = '00112233445566778899aabbccddeeff';
our $KID   = '0123456789abcdef0123456789abcdef';
our $WRONG = 'ffeeddccbbaa99887766554433221100';

my $ROOT = $MediaTest::ROOT;
my $CHROMIUM = $ENV{CHROMIUM} || '/usr/bin/chromium';
my $JSON = JSON::PP->new->utf8->canonical;

# need_browser(@files under $ROOT): `make test` installs all of these
# (scripts/media-deps, `make web`): a missing one is a failure, not a
# reason to skip
sub need_browser {
    for my $need ("$ROOT/node_modules/playwright-core/package.json",
                  map { "$ROOT/$_" } @_) {
        die "$need missing: run `make web` (npm ci)\n" unless -e $need;
    }
    die "$CHROMIUM missing: run scripts/media-deps\n" unless -x $CHROMIUM;
}

# b64url($hex): unpadded base64url, as ClearKey writes key ids and keys
sub b64url {
    my $b = MIME::Base64::encode_base64(pack('H*', $_[0]), '');
    $b =~ tr{+/}{-_};
    $b =~ s/=+$//;
    return $b;
}

# package_clip($s, $token): a generated 10 s H.264 (High, B-frames) + AAC
# 48 kHz clip, uploaded and packaged with $KEY/$KID through the stack $s;
# returns M and GET /packaged_content/M's JSON ({} when it did not get
# there)
sub package_clip {
    my ($s, $tok) = @_;
    my $clip = MediaTest::tempdir('clip') . '/clip.mp4';
    MediaTest::ffmpeg($clip,
        '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30:duration=10',
        '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=10',
        '-c:v', 'libx264', '-profile:v', 'high', '-bf', '3', '-g', '60',
        '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-ar', '48000', '-b:a', '96k',
        '-movflags', '+faststart');
    my $up = $s->req(POST => '/upload_input_content', token => $tok,
                     body => slurp($clip),
                     headers => { 'Content-Type' => 'video/mp4' });
    is($up->{status}, 200, 'upload') or diag($up->{body});
    my $pk = $s->req(POST => '/packaged_content', token => $tok,
                     json => { input_content_id => $up->{json}{input_content_id},
                               key => $KEY, kid => $KID });
    is($pk->{status}, 200, 'packaging job') or diag($pk->{body});
    my $m = $pk->{json}{packaged_content_id};
    my $done;
    $s->wait_for(sub {
        my $r = $s->req(GET => "/packaged_content/$m", token => $tok);
        $done = $r if $r->{status} != 202;
        $done;
    }, 120);
    is($done && $done->{status}, 200, 'packaged')
        or diag($done ? $done->{body} : 'still running after 120 s');
    return ($m, ($done && $done->{json}) || {});
}

# play($url, %o) -> the JSON report of t/lib/playback.mjs
sub play {
    my ($url, %o) = @_;
    my @cmd = ('node', "$ROOT/t/lib/playback.mjs", '--url', $url,
               '--min-time', $o{min_time} // 3, '--timeout', $o{timeout} // 40);
    push @cmd, '--screenshot', $o{screenshot} if $o{screenshot};
    push @cmd, '--wrong-key', $o{wrong_key} if $o{wrong_key};
    push @cmd, '--video-only' if $o{video_only};
    my $out = '';
    open(my $fh, '-|', @cmd) or die "node: $!";
    { local $/; $out = <$fh> // '' }
    close $fh;
    my $rc = $? >> 8;
    my $r = eval { $JSON->decode((split /\n/, $out)[-1] // '') };
    if (!$r) {
        diag("playback.mjs exited $rc with no report:\n$out");
        return { ok => 0, reason => "playback.mjs failed ($rc)" };
    }
    return $r;
}

sub explain_report {
    my ($r) = @_;
    diag(JSON::PP->new->utf8->canonical->pretty->encode($r));
}

# check_plays($name, $url, $shot, [$w, $h], %o): the page at $url plays
# past 3 s through ClearKey, a moving picture of that size; a licence was
# requested and granted, or with inline_key => 1 none was requested (the
# page gave the player the key itself). Returns the report.
sub check_plays {
    my ($name, $url, $shot, $expect_frames, %o) = @_;
    my $r = play($url, screenshot => $shot);
    ok($r->{ok}, "$name: currentTime past 3 s ($r->{reason})")
        or explain_report($r);
    is($r->{state} && $r->{state}{error}, undef, "$name: no player error");
    is($r->{state} && $r->{state}{keySystem}, 'org.w3.clearkey',
       "$name: played through EME ClearKey");
    my @lic = @{ $r->{license} || [] };
    if ($o{inline_key}) {
        is_deeply([ scalar @lic, $r->{state} && $r->{state}{licenses} ],
                  [0, 0], "$name: no licence request (key given inline)")
            or diag($JSON->encode(\@lic));
    } else {
        ok(@lic >= 1 && !grep({ $_->{status} != 200 } @lic),
           "$name: licence requested and granted")
            or diag($JSON->encode(\@lic));
    }
    ok(($r->{video}{frames} // 0) >= 60,
       "$name: frames decoded ($r->{video}{frames})");
    is_deeply([ $r->{video}{width}, $r->{video}{height} ], $expect_frames,
              "$name: picture size");
    my $f = $r->{frame} || {};
    ok(($f->{stddev} // 0) > 20,
       sprintf("$name: the painted frame is a picture, not black or flat "
               . '(luma stddev %.1f)', $f->{stddev} // 0))
        or diag($JSON->encode($f));
    ok(($f->{motion} // 0) > 0.5,
       sprintf("$name: the painted picture moves (mean luma change %.2f "
               . 'over 0.5 s)', $f->{motion} // 0))
        or diag($JSON->encode($f));
    is_deeply($r->{failed}, [], "$name: no failed request");
    ok(-s $shot, "$name: screenshot $shot");
    return $r;
}

# check_path_signed($name, $r, $m, $signature, $method): every request of
# a path-signed play is under the signed prefix, with no query string, and
# the licence ($method: POST for DASH, the key GET for HLS; none when
# undef) is the one under that prefix
sub check_path_signed {
    my ($name, $r, $m, $ps, $method) = @_;
    my @req = @{ $r->{requests} || [] };
    ok(@req >= 4 && !grep({ !m{^(GET|POST) /packaged/$m/s/\Q$ps\E/[^?]+$} }
                          @req),
       "$name: every request under /packaged/$m/s/<signature>/, no query")
        or diag(join("\n", @req));
    return unless $method;
    ok((grep { $_ eq "$method /packaged/$m/s/$ps/license" } @req),
       "$name: the licence ($method) at the URL the manifest names");
}

# check_wrong_key($name, $url, $shot, %o): with a wrong key the page
# reports a decode error (errorCode matching $o{code}, by default shaka's
# 3016 or the page's media:3) and time does not advance. The browser
# answers every licence request with $WRONG, unless inline_key => 1: the
# page's URL already gives the player the wrong key. With video_only the
# browser drops the audio from the manifest, so that the video decoder,
# not only the audio one, must notice the wrong key.
sub check_wrong_key {
    my ($name, $url, $shot, %o) = @_;
    $name .= $o{video_only} ? ', wrong key, video only' : ', wrong key';
    my $r = play($url, wrong_key => $o{inline_key} ? undef : $WRONG,
                 min_time => 3, timeout => 25, screenshot => $shot,
                 video_only => $o{video_only});
    ok(!$r->{ok}, "$name: does not play ($r->{reason})")
        or explain_report($r);
    if ($o{inline_key}) {
        is(scalar @{ $r->{license} || [] }, 0,
           "$name: no licence request (the wrong key given inline)");
    } else {
        ok(@{ $r->{license} || [] } >= 1, "$name: licence intercepted");
    }
    # shaka's 3016 VIDEO_ERROR wraps the <video> element's MEDIA_ERR_DECODE
    # (3); Chromium says PIPELINE_ERROR_DECODE: the samples were decrypted
    # with the key given, which was wrong
    my $st = $r->{state} || {};
    my $err = $st->{error} // '';
    ok(($st->{errorCode} // '') =~ ($o{code} // qr/^(3016|media:3)$/)
       && $err =~ /DECODE/,
       "$name: decode error reported ($err)")
        or explain_report($r);
    if ($o{video_only}) {
        ok($r->{audioRemoved}, "$name: audio removed from the manifest");
        # Chromium: "Failed to send video packet for decoding: {...}"
        like($err, qr/video packet/, "$name: the video decoder failed");
    }
    cmp_ok($r->{time}, '<', 1, "$name: time does not advance");
    return $r;
}

1;
