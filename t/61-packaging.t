#!/usr/bin/perl
# The packager daemon (daemons/packager, docs/packaging.md) end to end:
# upload -> probe (ready) -> POST /packaged_content -> cbcs DASH + HLS.
#
#   - the output: stream.mpd parses and matches the segment files
#     (SegmentTemplate $Number$, timeline, codecs, ContentProtection
#     cbcs + ClearKey laurl + common PSSH), the HLS playlists, init
#     segments with encv/enca, sinf/frma/schm 'cbcs'/tenc (KID, constant
#     IV, pattern 1:9 and 0:0) and a W3C 'pssh', every media segment with
#     senc/saiz/saio; nginx serves it;
#   - decrypting with our decryptor (media-cbcs-decrypt) and remuxing gives
#     packets identical to the source's (ffmpeg -c copy -f framemd5, size
#     and MD5 of every packet of each stream); a wrong key does not;
#   - progress while running; a packaging.completed/failed webhook row;
#   - kill -9 of the packager mid-job: the restarted one takes the job over
#     at once and finishes it; SIGTERM mid-job: the row goes back to the
#     queue and is finished after the restart;
#   - a truncated MP4 that still probes: the job fails with a clear error;
#   - two packagers at once share the queue (SKIP LOCKED).
# ffmpeg reads at twice real time in this stack (MEDIA_PACKAGER_READ_RATE)
# so a 12 s clip takes ~6 s and can be interrupted.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path qw(make_path);
use POSIX ();
use Time::HiRes qw(sleep time);
use MediaTest qw(slurp spew ffmpeg);

my $ROOT = $MediaTest::ROOT;
my $BIN = $ENV{MEDIA_BIN} || "$ROOT/build/bin";
my $DECRYPT = -x "$BIN/media-cbcs-decrypt" ? "$BIN/media-cbcs-decrypt"
                                            : "$ROOT/build/bin/media-cbcs-decrypt";
my $KEY = '00112233445566778899aabbccddeeff';
my $KID = '0123456789abcdef0123456789abcdef';
my $WRONG = 'ffeeddccbbaa99887766554433221100';

my $dir = MediaTest::tempdir('packaging-media');

# 12 s H.264 High (3 B-frames, 2 s GOP) + AAC-LC 48 kHz stereo
my $src = ffmpeg("$dir/src.mp4",
    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30:duration=12',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=12',
    '-ac', '2', '-c:v', 'libx264', '-profile:v', 'high', '-bf', '3',
    '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '96k',
    '-ar', '48000', '-movflags', '+faststart');

# the same with its moov first, cut at 55%: it probes (the moov is whole)
# but the media stops early
my $data = slurp($src);
my $trunc = "$dir/truncated.mp4";
spew($trunc, substr($data, 0, int(length($data) * 0.55)));

my $s = MediaTest->start(workers => 2,
                         env => { MEDIA_PACKAGER_READ_RATE => 2 });
my $admin = $s->admin_token;
my $var = $s->var;

# ------------------------------------------------------------ helpers

sub upload {
    my ($path) = @_;
    my $r = $s->req(POST => '/upload_input_content', token => $admin,
                    body => slurp($path),
                    headers => { 'Content-Type' => 'video/mp4' });
    is($r->{status}, 200, "upload " . ($path =~ s{.*/}{}r)) or diag $r->{body};
    return $r->{json}{input_content_id};
}

sub wait_ready {
    my ($id) = @_;
    my $st = '';
    $s->wait_for(sub {
        my $r = $s->req(GET => "/input_content/$id", token => $admin);
        $st = $r->{json} ? $r->{json}{status} : '';
        $st eq 'ready' || $st eq 'invalid';
    }, 30);
    return $st;
}

sub submit {
    my ($input) = @_;
    my $r = $s->req(POST => '/packaged_content', token => $admin,
                    json => { input_content_id => $input, key => $KEY,
                              kid => $KID });
    is($r->{status}, 200, "POST /packaged_content for input $input")
        or diag $r->{body};
    return $r->{json}{packaged_content_id};
}

sub row {
    my ($id) = @_;
    my ($r) = $s->psql("SELECT status, progress, error, attempts, claimed_by"
                       . " FROM packaged_content WHERE id = $id");
    return { status => $r->[0], progress => $r->[1], error => $r->[2],
             attempts => $r->[3], claimed_by => $r->[4] };
}

sub wait_status {
    my ($id, $want, $timeout) = @_;
    my $row;
    $s->wait_for(sub { $row = row($id); $row->{status} =~ $want },
                 $timeout // 60);
    return $row;
}

# ISO BMFF boxes: [type, offset of the payload, payload length]
my %CONTAINER = map { $_ => 0 } qw(moov trak mdia minf stbl mvex moof traf
                                   sinf schi edts dinf);
$CONTAINER{stsd} = 8;
$CONTAINER{$_} = 78 for qw(encv avc1);
$CONTAINER{$_} = 28 for qw(enca mp4a);

sub boxes {
    my ($buf, $off, $end) = @_;
    my @b;
    while ($off + 8 <= $end) {
        my ($size, $type) = unpack('Na4', substr($$buf, $off, 8));
        my $hdr = 8;
        if ($size == 1) {
            ($size) = unpack('Q>', substr($$buf, $off + 8, 8));
            $hdr = 16;
        }
        $size = $end - $off if $size == 0;
        last if $size < $hdr || $off + $size > $end;
        push @b, [$type, $off + $hdr, $size - $hdr];
        $off += $size;
    }
    return @b;
}

# every box as "path" => [payload offset, length] (first of each path)
sub box_tree {
    my ($buf) = @_;
    my %t;
    my $walk;
    $walk = sub {
        my ($off, $end, $path) = @_;
        for my $b (boxes($buf, $off, $end)) {
            my $p = $path eq '' ? $b->[0] : "$path/$b->[0]";
            $t{$p} //= [$b->[1], $b->[2]];
            $t{_types}{$b->[0]}++;
            if (exists $CONTAINER{$b->[0]}) {
                $walk->($b->[1] + $CONTAINER{$b->[0]}, $b->[1] + $b->[2], $p);
            }
        }
    };
    $walk->(0, length($$buf), '');
    return \%t;
}

sub payload {
    my ($buf, $t, $path) = @_;
    my $b = $t->{$path} or return undef;
    return substr($$buf, $b->[0], $b->[1]);
}

# size and MD5 of every packet, from ffmpeg -c copy -f framemd5
sub packets {
    my (@args) = @_;
    # (fatal: a wrong key makes the parser complain about every frame)
    my @cmd = ('ffmpeg', '-nostdin', '-hide_banner', '-loglevel', 'fatal',
               @args, '-c', 'copy', '-f', 'framemd5', '-');
    open(my $fh, '-|', @cmd) or die "ffmpeg: $!";
    my @p;
    while (<$fh>) {
        next if /^#/;
        chomp;
        my @f = split /\s*,\s*/;
        push @p, "$f[4] $f[5]" if @f >= 6;
    }
    close $fh;
    return \@p;
}

my %SRC = (video => packets('-i', $src, '-map', '0:v:0'),
           audio => packets('-i', $src, '-map', '0:a:0'));
ok(@{ $SRC{video} } == 360 && @{ $SRC{audio} } > 500,
   "source: " . @{ $SRC{video} } . " video, " . @{ $SRC{audio} }
   . " audio packets");

sub segment_files {
    my ($out, $track) = @_;
    opendir(my $d, "$out/$track") or return ();
    my @f = sort { ($a =~ /(\d+)/)[0] <=> ($b =~ /(\d+)/)[0] }
            grep { /^seg-\d+\.m4s$/ } readdir $d;
    return map { "$out/$track/$_" } @f;
}

sub decrypt {
    my ($out, $track, $key, $to) = @_;
    my @cmd = ($DECRYPT, '-k', $key, '-o', $to, "$out/$track/init.mp4",
               segment_files($out, $track));
    return system(@cmd) == 0;
}

# the decrypt-and-compare check of an output directory
sub check_decrypts {
    my ($out, $what) = @_;
    for my $track (qw(video audio)) {
        my $clear = "$dir/$what-$track.mp4";
        ok(decrypt($out, $track, $KEY, $clear),
           "$what: $track decrypts with our decryptor");
        my $got = packets('-i', $clear);
        is(scalar @$got, scalar @{ $SRC{$track} },
           "$what: $track: as many packets as the source");
        is_deeply($got, $SRC{$track},
                  "$what: $track: every packet identical to the source's "
                  . "(framemd5: size + MD5)");
    }
}

sub no_leftovers {
    my ($what) = @_;
    opendir(my $d, "$var/packaged") or return;
    my @tmp = grep { /^\.tmp-/ } readdir $d;
    is_deeply(\@tmp, [], "$what: no temporary directory left");
}

# ------------------------------------------------------------ the job

my $in = upload($src);
is(wait_ready($in), 'ready', "input $in probed by the packager: ready");
my ($probe) = $s->psql("SELECT probe->'video'->>'codec',"
                       . " probe->'audio'->>'codec', probe->>'duration'"
                       . " FROM input_content WHERE id = $in");
is("$probe->[0] $probe->[1]", 'h264 aac', 'probe: h264 + aac');
ok(abs($probe->[2] - 12) < 0.1, "probe: duration $probe->[2]");

my $t0 = time;
my $m = submit($in);
my $mid = 0;
my $seen_running = 0;
$s->wait_for(sub {
    my $r = $s->req(GET => "/packaged_content/$m", token => $admin);
    if ($r->{status} == 202 && ($r->{json}{status} // '') eq 'running') {
        $seen_running = 1;
        $mid = $r->{json}{progress}
            if $r->{json}{progress} > 0 && $r->{json}{progress} < 1;
    }
    $r->{status} != 202;
}, 60);
my $r = $s->req(GET => "/packaged_content/$m", token => $admin);
is($r->{status}, 200, sprintf("packaged_content %d done in %.1f s", $m,
                              time - $t0)) or diag $r->{body};
ok($seen_running, '202 running while packaging');
ok($mid > 0, "progress in between: $mid");
like($r->{json}{url} // '', qr{/packaged/$m/s/[^/]+/stream\.mpd$}, 'url: the MPD');
like($r->{json}{hls_url} // '', qr{/packaged/$m/s/[^/]+/master\.m3u8$},
     'hls_url: the master playlist');

my $out = "$var/packaged/$m";
ok(-d $out, "output directory packaged/$m");
no_leftovers('after the job');
ok(-f "$out/$_", "$_ written")
    for qw(stream.mpd master.m3u8 video.m3u8 audio.m3u8 info.json
           video/init.mp4 audio/init.mp4);

# --- the MPD

my $mpd = slurp("$out/stream.mpd");
my $py = <<'EOF';
import sys, xml.etree.ElementTree as ET
ns = {'d': 'urn:mpeg:dash:schema:mpd:2011', 'cenc': 'urn:mpeg:cenc:2013'}
root = ET.parse(sys.argv[1]).getroot()
for a in root.iter('{urn:mpeg:dash:schema:mpd:2011}AdaptationSet'):
    cps = [c.get('schemeIdUri') for c in a.findall('d:ContentProtection', ns)]
    for rep in a.findall('d:Representation', ns):
        st = rep.find('d:SegmentTemplate', ns)
        n = 0; total = 0; t = None
        for s in st.find('d:SegmentTimeline', ns).findall('d:S', ns):
            r = int(s.get('r', '0')) + 1
            n += r; total += int(s.get('d')) * r
        print(a.get('contentType'), rep.get('id'), rep.get('codecs'),
              st.get('media'), st.get('initialization'), st.get('timescale'),
              n, total, len(cps))
EOF
spew("$dir/mpd.py", $py);
my @reps = map { [split ' '] } split /\n/, `python3 $dir/mpd.py $out/stream.mpd`;
is($?, 0, 'stream.mpd parses as XML');
is(scalar @reps, 2, 'two representations');

my %rep = map { $_->[0] => $_ } @reps;
for my $track (qw(video audio)) {
    my $x = $rep{$track} or next;
    my @segs = segment_files($out, $track);
    is($x->[3], "$track/seg-\$Number\$.m4s", "$track: SegmentTemplate media");
    is($x->[4], "$track/init.mp4", "$track: initialization");
    is($x->[6], scalar @segs, "$track: the timeline lists the " . @segs
       . " segment files");
    ok(abs($x->[7] / $x->[5] - 12) < 0.1,
       "$track: the timeline adds up to " . sprintf('%.3f s', $x->[7] / $x->[5]));
    is($x->[8], 3, "$track: three ContentProtection elements");
}
like($rep{video}[2], qr/^avc1\.64[0-9a-f]{4}$/, "video codecs $rep{video}[2] (High)");
is($rep{audio}[2], 'mp4a.40.2', 'audio codecs mp4a.40.2');
like($mpd, qr{schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cbcs" cenc:default_KID="01234567-89ab-cdef-0123-456789abcdef"},
     'mp4protection cbcs with the KID');
like($mpd, qr{urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e.*<dashif:laurl>/license/$m</dashif:laurl>}s,
     'ClearKey with the license URL');
like($mpd, qr{urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b">\s*<cenc:pssh>AAAANHBzc2gBAAAAEHfv7MCyTQKs4zweUuL7SwAAAAEBI0VniavN7wEjRWeJq83vAAAAAA==</cenc:pssh>},
     'common PSSH with the KID');

# video segments start at keyframes >= 4 s apart: 2 s GOPs give 4 s
like($mpd, qr{timescale="15360"[^>]*>\s*<SegmentTimeline>\s*<S t="0" d="61440" r="2"/>},
     'video: three 4 s segments');

# --- HLS

my $master = slurp("$out/master.m3u8");
like($master, qr{#EXT-X-STREAM-INF:BANDWIDTH=\d+,AVERAGE-BANDWIDTH=\d+,CODECS="avc1\.64[0-9a-f]{4},mp4a\.40\.2",RESOLUTION=640x360,FRAME-RATE=30\.000,AUDIO="audio"\nvideo\.m3u8\n},
     'master: the variant');
like($master, qr{#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio".*URI="audio\.m3u8"},
     'master: the audio rendition');
for my $track (qw(video audio)) {
    my $pl = slurp("$out/$track.m3u8");
    my @inf = ($pl =~ /^#EXTINF:([\d.]+),$/mg);
    is(scalar @inf, scalar segment_files($out, $track),
       "$track.m3u8: one EXTINF per segment");
    like($pl, qr{#EXT-X-KEY:METHOD=SAMPLE-AES,URI="/license/$m",KEYFORMAT="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e",KEYFORMATVERSIONS="1"\n},
         "$track.m3u8: EXT-X-KEY SAMPLE-AES ClearKey");
    like($pl, qr{#EXT-X-MAP:URI="$track/init\.mp4"\n}, "$track.m3u8: EXT-X-MAP");
    like($pl, qr{#EXT-X-ENDLIST\n\z}, "$track.m3u8: VOD, ENDLIST");
}

# --- the boxes

for my $track (qw(video audio)) {
    my $init = slurp("$out/$track/init.mp4");
    my $t = box_tree(\$init);
    my $entry = $track eq 'video' ? 'encv' : 'enca';
    my $sinf = "moov/trak/mdia/minf/stbl/stsd/$entry/sinf";
    ok($t->{"moov/trak/mdia/minf/stbl/stsd/$entry"},
       "$track init: sample entry $entry");
    is(payload(\$init, $t, "$sinf/frma"), $track eq 'video' ? 'avc1' : 'mp4a',
       "$track init: frma " . ($track eq 'video' ? 'avc1' : 'mp4a'));
    my $schm = payload(\$init, $t, "$sinf/schm") // '';
    is(substr($schm, 4, 4), 'cbcs', "$track init: schm cbcs");
    my $tenc = payload(\$init, $t, "$sinf/schi/tenc") // '';
    # version 1: reserved, pattern byte, isProtected, IV size 0, KID,
    # constant IV size, constant IV
    my ($ver, $pattern, $prot, $ivsize, $kid, $csize, $iv) =
        unpack('C x4 C C C a16 C a16', $tenc . ("\0" x 40));
    is($ver, 1, "$track init: tenc version 1");
    is(unpack('H*', $kid), $KID, "$track init: tenc KID is the kid");
    is($prot, 1, "$track init: default_isProtected");
    is("$ivsize/$csize", '0/16', "$track init: a 16-byte constant IV");
    is(sprintf('%d:%d', $pattern >> 4, $pattern & 15),
       $track eq 'video' ? '1:9' : '0:0', "$track init: pattern");
    my $pssh = payload(\$init, $t, 'moov/pssh') // '';
    is(unpack('H*', substr($pssh, 4, 16)), '1077efecc0b24d02ace33c1e52e2fb4b',
       "$track init: W3C common pssh");

    my @segs = segment_files($out, $track);
    my $good = 0;
    for my $f (@segs) {
        my $seg = slurp($f);
        my $st = box_tree(\$seg);
        $good++ if $st->{'moof/traf/senc'} && $st->{'moof/traf/saiz'}
                   && $st->{'moof/traf/saio'} && $st->{mdat};
    }
    is($good, scalar @segs, "$track: every segment (" . @segs
       . ") has senc, saiz, saio");
}

# --- decrypted == source; a wrong key is not

check_decrypts($out, 'job 1');

ok(decrypt($out, 'video', $WRONG, "$dir/wrong-video.mp4"),
   'wrong key: the decryptor runs (cbcs has no integrity check)');
my $wrong = packets('-i', "$dir/wrong-video.mp4");
my $same = grep { $wrong->[$_] eq $SRC{video}[$_] } 0 .. $#$wrong;
ok(@$wrong && $same < @$wrong / 4,
   "wrong key: the video packets differ from the source ($same of "
   . @$wrong . " equal: the clear ones too small to hold an encrypted block)");

# --- served by nginx

my $sig = ($r->{json}{player_url} =~ /\?(.*)$/)[0];
my $g = $s->req(GET => "/packaged/$m/stream.mpd?$sig");
is($g->{status}, 200, 'nginx serves the MPD with the signature');
is($g->{body}, $mpd, '... the same bytes');
$g = $s->req(GET => "/packaged/$m/video/seg-1.m4s?$sig");
is(length($g->{body}), -s "$out/video/seg-1.m4s", 'and a segment');

# --- bookkeeping

my $row = row($m);
is($row->{attempts}, 1, 'one attempt');
like($row->{claimed_by} // '', qr/:\d+$/, "claimed_by $row->{claimed_by}");
my $hb;
$s->wait_for(sub {
    ($hb) = $s->psql("SELECT info FROM daemon_heartbeats"
                     . " WHERE name = 'packager'");
    ($hb->[0] // '') =~ /"packaged":[1-9]/;
}, 5);
like($hb->[0] // '', qr/"packaged":1,/, 'heartbeat row "packager"');
like($hb->[0] // '', qr/"doorbell":[1-9]/,
     'nginx rang the doorbell (media_packager_doorbell)');

my $has_outbox = ($s->psql("SELECT to_regclass('webhook_outbox') IS NOT NULL"))[0][0] eq 't';
SKIP: {
    skip 'no webhook_outbox (db/002)', 2 unless $has_outbox;
    my ($w) = $s->psql("SELECT event, payload FROM webhook_outbox"
                       . " WHERE subject = 'packaged_content:$m'");
    is($w->[0], 'packaging.completed', 'webhook outbox: packaging.completed');
    like($w->[1] // '', qr/"mpd" : "\/packaged\/$m\/stream.mpd"/,
         'payload names the MPD');
}

# ------------------------------------------------------------ kill -9

{
    my $m2 = submit($in);
    my $st = wait_status($m2, qr/^running$/, 30);
    $s->wait_for(sub { row($m2)->{progress} > 0.1 }, 20);
    my $before = row($m2);
    ok($before->{progress} > 0 && $before->{progress} < 1,
       "job $m2 running (progress $before->{progress})");
    my $pid = $s->kill_daemon('packager', 'KILL');
    ok($pid, "kill -9 the packager (pid $pid) mid-job");
    ok($s->wait_daemon('packager', $pid, 10), 'the launcher restarts it');
    my $t1 = time;
    my $after = wait_status($m2, qr/^(done|failed)$/, 60);
    is($after->{status}, 'done', sprintf('job %d taken over and done %.1f s '
                                         . 'after the restart', $m2, time - $t1));
    is($after->{attempts}, 2, 'second attempt');
    isnt($after->{claimed_by}, $before->{claimed_by},
         "claimed by the new packager ($after->{claimed_by})");
    ok(time - $t1 < 25, 'taken over at once (not after the 30 s stale time)');
    check_decrypts("$var/packaged/$m2", 'after kill -9');
    no_leftovers('after kill -9');
}

# ------------------------------------------------------------ SIGTERM

{
    my $m3 = submit($in);
    wait_status($m3, qr/^running$/, 30);
    $s->wait_for(sub { row($m3)->{progress} > 0.1 }, 20);
    my $before = row($m3);
    my $pid = $s->kill_daemon('packager', 'TERM');
    ok($pid, "SIGTERM to the packager mid-job $m3");
    # back in the queue, or already claimed again by the restarted one
    my $back;
    $s->wait_for(sub {
        $back = row($m3);
        $back->{status} eq 'queued'
            || ($back->{claimed_by} // '') ne $before->{claimed_by};
    }, 15);
    ok($back->{status} eq 'queued' || $back->{status} eq 'running'
       || $back->{status} eq 'done', "the job was released ($back->{status})");
    ok($s->wait_daemon('packager', $pid, 10), 'restarted');
    my $done = wait_status($m3, qr/^(done|failed)$/, 60);
    is($done->{status}, 'done', "job $m3 done after the restart");
    is($done->{attempts}, 1, 'the interrupted attempt is not counted');
    like(slurp($s->log_path('packager.log')) // '',
         qr/packaged_content $m3: put back in the queue/,
         'log: put back in the queue');
    no_leftovers('after SIGTERM');
}

# ------------------------------------------------------------ truncated

{
    my $tin = upload($trunc);
    is(wait_ready($tin), 'ready', 'the truncated MP4 still probes (moov first)');
    my $m4 = submit($tin);
    my $row = wait_status($m4, qr/^(done|failed)$/, 60);
    is($row->{status}, 'failed', "job $m4 on the truncated MP4 failed");
    like($row->{error} // '', qr/^the input is truncated or corrupt: /,
         "error: $row->{error}");
    my $g = $s->req(GET => "/packaged_content/$m4", token => $admin);
    is($g->{status}, 422, 'GET /packaged_content: 422');
    like($g->{json} && $g->{json}{error} // '', qr/truncated or corrupt/,
         '... with the error');
    ok(!-e "$var/packaged/$m4", 'nothing published');
    no_leftovers('after a failure');
    SKIP: {
        skip 'no webhook_outbox (db/002)', 1 unless $has_outbox;
        my ($w) = $s->psql("SELECT event FROM webhook_outbox"
                           . " WHERE subject = 'packaged_content:$m4'");
        is($w->[0], 'packaging.failed', 'webhook outbox: packaging.failed');
    }
}

# ------------------------------------------------------------ ladder

{
    # 1080p is above the 360p source: dropped (no upscaling)
    my $lr = $s->req(POST => '/packaged_content', token => $admin,
                     json => { input_content_id => $in, key => $KEY,
                               kid => $KID,
                               ladder => [{ height => 1080 },
                                          { height => 240, bitrate => 400000 },
                                          { height => 180 }] });
    is($lr->{status}, 200, 'POST /packaged_content with a ladder')
        or diag $lr->{body};
    my $ml = $lr->{json}{packaged_content_id};
    my $row = wait_status($ml, qr/^(done|failed)$/, 90);
    is($row->{status}, 'done', "ladder job $ml done") or diag $row->{error};
    my $lo = "$var/packaged/$ml";
    my $lmpd = slurp("$lo/stream.mpd") // '';
    my @ids = ($lmpd =~ /<Representation id="(video[^"]*)"/g);
    is("@ids", 'video video-240 video-180',
       'one AdaptationSet, the source then 240p and 180p (1080p dropped)');
    like($lmpd, qr/contentType="video"[^>]*segmentAlignment="true"/,
         'segments aligned across the ladder');
    my @tl = ($lmpd =~ m{(<SegmentTimeline>.*?</SegmentTimeline>)}gs);
    is($tl[1], $tl[0], '240p: the same timeline as the source');
    is($tl[2], $tl[0], '180p: the same timeline as the source');
    my $lm = slurp("$lo/master.m3u8") // '';
    my @res = ($lm =~ /RESOLUTION=(\d+x\d+)/g);
    is("@res", '640x360 426x240 320x180', 'master: three variants');
    for my $h (240, 180) {
        ok(decrypt($lo, "video-$h", $KEY, "$dir/ladder-$h.mp4"),
           "video-$h decrypts");
        my $info = `ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=height,nb_read_packets,codec_name -of csv=p=0 $dir/ladder-$h.mp4`;
        chomp $info;
        is($info, "h264,$h,360", "video-$h: H.264 ${h}p, 360 frames");
    }
    check_decrypts($lo, 'ladder source rendition');
}

# ------------------------------------------------------------ two packagers

{
    my $conf = slurp("$var/conf/packager.conf");
    $conf =~ s{^listen = .*$}{listen = ipc://$var/run/packager2.bell}m;
    $conf =~ s{^heartbeat_name = .*$}{heartbeat_name = packager2}m;
    $conf =~ s{^pid_file = .*$}{pid_file = $var/run/packager2.pid}m;
    $conf =~ s{^notifier_endpoint = .*$}{notifier_endpoint = none}m;
    spew("$var/conf/packager2.conf", $conf);
    chmod 0644, "$var/conf/packager2.conf";

    my ($user) = $s->psql('SELECT current_user');
    my @as = $> == 0 && $user->[0] ne 'root'
           ? ('setpriv', "--reuid=$user->[0]", "--regid=$user->[0]",
              '--init-groups', '--')
           : ();
    my $pid = fork() // die "fork: $!";
    if (!$pid) {
        open(STDOUT, '>>', "$var/log/packager2.log");
        open(STDERR, '>&', \*STDOUT);
        chdir '/';
        { exec(@as, "$BIN/media-packager", '-f', "$var/conf/packager2.conf") }
        POSIX::_exit(127);
    }
    ok($s->wait_for(sub { ($s->psql("SELECT count(*) FROM daemon_heartbeats"
                                     . " WHERE name = 'packager2'"))[0][0] }, 15),
       'a second packager runs (heartbeat packager2)');

    my @jobs = map { submit($in) } 1 .. 2;
    my @rows = map { wait_status($_, qr/^(done|failed)$/, 60) } @jobs;
    is(join(' ', map { $_->{status} } @rows), 'done done', 'both jobs done');
    my %by = map { $_->{claimed_by} => 1 } @rows;
    is(scalar keys %by, 2, 'one by each packager: ' . join(', ', sort keys %by));
    check_decrypts("$var/packaged/$jobs[1]", 'second packager');

    kill 'TERM', $pid;
    waitpid($pid, 0);
    is($? >> 8, 0, 'the second packager exits cleanly on SIGTERM');
}

# ------------------------------------------------------------ the end

my $log = slurp($s->log_path('packager.log')) // '';
unlike($log, qr/AddressSanitizer|runtime error:/, 'packager log: no sanitizer report');
is_deeply([$s->error_log_clean], [], 'nginx error log: no [alert]/[crit]');

done_testing();
