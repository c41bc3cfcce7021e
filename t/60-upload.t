#!/usr/bin/perl
# Uploads and the module's side of packaging (docs/packaging.md):
# POST /upload_input_content (raw, chunked and multipart, SHA-256, sizes
# around the O_DIRECT block, 413, 0 bytes, HTTP/2 refused, truncated
# uploads and a kill -9 of nginx mid-upload leave nothing, flat RSS for
# ~300 MB), GET
# /input_content/{id}, POST /packaged_content (key/kid validation, probe
# verdicts: not MP4, VP9, no audio), GET /packaged_content/{id} in every
# state, protected serving of /packaged/{id}/ (token, signed prefix,
# MIME types, Range, CORS), the ClearKey license, the player page, the
# packager's real output end to end and nginx -t errors of the directives.
# States past "queued" are made with psql so the test does not depend on
# the packager; the served files are a fake output directory.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex hmac_sha256);
use IO::Socket::INET;
use MIME::Base64 ();
use POSIX ();
use Time::HiRes qw(sleep time);
use MediaTest qw(slurp spew ffmpeg is_json_error curl);

my $dir = MediaTest::tempdir('upload-media');

# a small-limit upload location for 413 (relative to the nginx prefix,
# $MEDIA_VAR/nginx/, so it lands in $MEDIA_VAR/uploads too), and one on an
# HTTP/2 listener
my $h2port = MediaTest::free_port();
my $s = MediaTest->start(workers => 2,
                         extra_server => <<'EOF', extra_http => <<"EOF2");
        location = /upload_small {
            client_max_body_size 64k;
            media_upload ../uploads;
        }
EOF
    server {
        listen 127.0.0.1:$h2port http2;
        location = /upload_input_content { media_upload ../uploads; }
    }
EOF2
my $admin = $s->admin_token;
my $var = $s->var;

sub b64url {
    my $b = MIME::Base64::encode_base64($_[0], '');
    $b =~ tr{+/}{-_};
    $b =~ s/=+$//;
    return $b;
}

my @LAVFI = ('-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25:duration=2',
             '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=2');

# H.264 High with B-frames + AAC 48 kHz; VP9 + AAC in MP4; H.264 alone
my $h264 = ffmpeg("$dir/h264.mp4", @LAVFI, '-c:v', 'libx264',
                  '-profile:v', 'high', '-bf', '2', '-g', '50', '-c:a', 'aac',
                  '-ar', '48000', '-shortest');
my $vp9 = ffmpeg("$dir/vp9.mp4", @LAVFI, '-c:v', 'libvpx-vp9', '-b:v',
                 '200k', '-c:a', 'aac', '-ar', '48000', '-shortest');
my $noaudio = ffmpeg("$dir/noaudio.mp4", @LAVFI[0 .. 3], '-c:v', 'libx264',
                     '-profile:v', 'high');

my $user = $s->req(POST => '/api/tokens', token => $admin,
                   json => { role => 'user', name => 'uploader' })->{json};
my $other = $s->req(POST => '/api/tokens', token => $admin,
                    json => { role => 'user', name => 'someone else' })->{json};
ok($user->{token} && $other->{token}, 'two user tokens');
my $tok = $user->{token};

sub rows { ($s->psql("SELECT count(*) FROM input_content"))[0][0] }

sub body_files {
    opendir(my $d, "$var/nginx/body") or return ();
    return grep { !/^\./ } readdir $d;
}

# every name in uploads/, dot files too
sub upload_files {
    opendir(my $d, "$var/uploads") or return ();
    return sort grep { !/^\.\.?$/ } readdir $d;
}

sub slurp_maybe { my $r = eval { slurp($_[0]) }; $r }

sub nginx_pids {
    my $master = (slurp_maybe("$var/run/nginx.pid") // '') =~ /(\d+)/ ? $1 : 0;
    my @p = ($master);
    for my $st (glob '/proc/[0-9]*/stat') {
        my $l = slurp_maybe($st) // next;
        push @p, $1 if $l =~ /^(\d+) \(.*\) \S+ (\d+)/ && $2 == $master;
    }
    return @p;
}

# the sizes of the unnamed (O_TMPFILE) files in uploads/ nginx holds open
sub unnamed_uploads {
    my @sizes;
    for my $pid (nginx_pids()) {
        for my $fd (glob "/proc/$pid/fd/*") {
            my $l = readlink($fd) // next;
            push @sizes, -s $fd // 0
                if $l =~ m{^\Q$var\E/uploads/#\d+ \(deleted\)$};
        }
    }
    return @sizes;
}

# ------------------------------------------------------------ auth

my $r = $s->req(POST => '/upload_input_content', body => 'x');
is_json_error($r, 401, 'unauthorized', 'upload without a token');
like($r->{headers}{'www-authenticate'} // '', qr/^Bearer/,
     '  WWW-Authenticate');

$r = $s->req(POST => '/upload_input_content', body => 'x',
             token => 'nmt_' . ('A' x 43));
is_json_error($r, 401, 'unauthorized', 'upload with an unknown token');

$r = $s->req(GET => '/upload_input_content', token => $tok);
is_json_error($r, 405, 'method_not_allowed', 'GET /upload_input_content');

# ------------------------------------------------------------ raw body

my $raw = '';
$raw .= pack('N', int(rand(2**32))) for 1 .. (3 * 1024 * 1024 / 4 + 17);
spew("$dir/raw.bin", $raw);

$r = $s->req(POST => '/upload_input_content', token => $tok, body => $raw,
             headers => { 'Content-Type' => 'video/mp4' });
is($r->{status}, 200, 'raw upload of 3 MB: 200') or diag $r->{body};
is($r->{json}{size}, length $raw, '  size');
is($r->{json}{sha256}, sha256_hex($raw), '  sha256 is the body\'s');
my ($sum) = split ' ', `sha256sum '$dir/raw.bin'`;
is($r->{json}{sha256}, $sum, '  sha256 equals sha256sum');
my $raw_id = $r->{json}{input_content_id};
ok($raw_id, "  input_content_id $raw_id");

my ($row) = $s->psql("SELECT path, size, sha256, status, owner = "
                     . "$user->{id} FROM input_content WHERE id = $raw_id");
# (the doorbell may already have the packager probing it)
like($row->[3], qr/^(uploaded|probing|invalid)$/, "  row: status $row->[3]");
is($row->[1], length $raw, '  row: size');
is($row->[2], $sum, '  row: sha256');
is($row->[4], 't', '  row: owned by the token');
like($row->[0], qr{^\Q$var\E/uploads/[0-9a-f]{32}\.mp4$},
     '  row: path under $MEDIA_VAR/uploads');
ok(-f $row->[0] && slurp($row->[0]) eq $raw, '  the stored file is the body');
is_deeply([body_files()], [], '  nothing left in client_body_temp_path');

# chunked transfer encoding
$r = curl("-X POST -H 'Authorization: Bearer $tok'",
          "-H 'Transfer-Encoding: chunked' --data-binary '\@$dir/raw.bin'",
          $s->url('/upload_input_content'));
is($r->{status}, 200, 'raw upload, chunked: 200') or diag $r->{body};
is($r->{json}{sha256}, $sum, '  sha256 equals sha256sum');
is($r->{json}{size}, length $raw, '  size');

# around the O_DIRECT block (4096): the last block is written padded and
# the file cut to its size
for my $n (1, 4095, 4096, 4097, 3 * 65536, 1048576 + 1) {
    my $body = join '', map { chr(($_ * 7 + $n) % 256) } 1 .. $n;
    $r = $s->req(POST => '/upload_input_content', token => $tok,
                 body => $body);
    my ($p) = $r->{json} && $s->psql("SELECT path FROM input_content WHERE id"
                                     . " = $r->{json}{input_content_id}");
    ok($r->{status} == 200 && $r->{json}{sha256} eq sha256_hex($body)
       && $p && -s $p->[0] == $n && slurp($p->[0]) eq $body,
       "raw upload of $n bytes: 200, sha256, the stored file is the body")
        or diag $r->{body};
}

# ------------------------------------------------------------ multipart

$r = curl("-H 'Authorization: Bearer $tok'", "-F 'title=a trailer'",
          "-F 'file=\@$dir/raw.bin;type=video/mp4'", "-F 'after=1'",
          $s->url('/upload_input_content'));
is($r->{status}, 200, 'multipart upload (3 MB, field "file"): 200')
    or diag $r->{body};
is($r->{json}{sha256}, $sum, '  sha256 equals sha256sum of the file');
is($r->{json}{size}, length $raw, '  size is the file\'s, not the body\'s');
($row) = $s->psql("SELECT path FROM input_content WHERE id = "
                  . ($r->{json}{input_content_id} // 0));
ok($row && slurp($row->[0]) eq $raw, '  the stored file is the part');

$r = curl("-H 'Authorization: Bearer $tok'", "-F 'file=\@$h264'",
          $s->url('/upload_input_content'));
is($r->{status}, 200, 'multipart upload of the H.264 clip: 200');
my ($h264sum) = split ' ', `sha256sum '$h264'`;
is($r->{json}{sha256}, $h264sum, '  sha256 equals sha256sum');
my $h264_id = $r->{json}{input_content_id};

my $n = rows();
$r = curl("-H 'Authorization: Bearer $tok'", "-F 'title=no file here'",
          $s->url('/upload_input_content'));
is_json_error($r, 400, 'no_file', 'multipart without a "file" field');
is(rows(), $n, '  no row');

my $bad = "--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
        . "abc\r\n--XX";        # no closing boundary
$r = $s->req(POST => '/upload_input_content', token => $tok, body => $bad,
             headers => { 'Content-Type' => 'multipart/form-data; boundary=XX' });
is_json_error($r, 400, 'invalid_multipart', 'multipart without its end');
like($r->{json}{message} // '', qr/closing boundary/, '  says why');

$r = $s->req(POST => '/upload_input_content', token => $tok, body => 'x',
             headers => { 'Content-Type' => 'multipart/form-data' });
is_json_error($r, 400, 'invalid_multipart', 'multipart without a boundary');

# the body buffers are given to nginx's HTTP/1 body reader (no body sent:
# curl 7.88 may fail on an HTTP/2 answer that comes before the body is read)
$r = curl("--http2-prior-knowledge -X POST -H 'Authorization: Bearer $tok'",
          "http://127.0.0.1:$h2port/upload_input_content");
is($r->{status}, 505, 'an upload over HTTP/2: 505') or diag $r->{body};
is($r->{json} && $r->{json}{error}, 'http_version_not_supported',
   '  JSON error');

spew("$dir/empty.bin", '');
$r = curl("-H 'Authorization: Bearer $tok'", "-F 'file=\@$dir/empty.bin'",
          $s->url('/upload_input_content'));
is_json_error($r, 400, 'empty', 'multipart with an empty file');

# ------------------------------------------------------------ 0 bytes, 413

$n = rows();
$r = $s->req(POST => '/upload_input_content', token => $tok, body => '');
is_json_error($r, 400, 'empty', 'a 0-byte body');

$r = $s->req(POST => '/upload_small', token => $tok, body => 'y' x 70000);
is_json_error($r, 413, 'body_too_large', '70 kB over a 64k limit');

$r = curl("-X POST -H 'Authorization: Bearer $tok'",
          "-H 'Transfer-Encoding: chunked' --data-binary '\@$dir/raw.bin'",
          $s->url('/upload_small'));
is($r->{status}, 413, '3 MB chunked over a 64k limit: 413');
is($r->{json} && $r->{json}{error}, 'body_too_large', '  JSON error');

$r = $s->req(POST => '/upload_small', token => $tok, body => 'z' x 60000);
is($r->{status}, 200, '60 kB under the 64k limit: 200');
$n++;

is(rows(), $n, 'no rows from the refused uploads');
ok(MediaTest::wait_until(sub { !body_files() }, 5),
   'no temp files left behind') or diag join ' ', body_files();

# ------------------------------------------------------------ truncated

# the upload is written to an unnamed file (O_TMPFILE) in uploads/: a client
# killed mid-body, or nginx killed (-9) mid-upload, leaves no row and no
# file (temp or upload), and nothing that would need sweeping

# a client that sends $prefix and 2 MB of the promised $total, then waits
sub partial_upload {
    my ($headers, $prefix, $total) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                         PeerPort => $s->port, Proto => 'tcp')
            or POSIX::_exit(1);
        print $sock "POST /upload_input_content HTTP/1.1\r\n"
                  . "Host: 127.0.0.1\r\nAuthorization: Bearer $tok\r\n"
                  . "Content-Length: $total\r\n$headers\r\n" . $prefix;
        my $chunk = 'q' x 65536;
        print $sock $chunk for 1 .. 32;         # 2 MB of the promised total
        sleep 30;                               # killed here
        POSIX::_exit(0);
    }
    return $pid;
}

sub truncated {
    my ($what, $headers, $prefix, $total) = @_;
    my $before_rows = rows();
    my @before_files = upload_files();
    my $pid = partial_upload($headers, $prefix, $total);
    # until the unnamed file holds the 2 MB, then kill the client
    my $grew = MediaTest::wait_until(sub {
        grep { $_ >= 1024 * 1024 } unnamed_uploads() }, 10);
    ok($grew, "$what: the body is arriving in an unnamed file in uploads/");
    is_deeply([upload_files()], \@before_files, "$what:   and no name there");
    kill 'KILL', $pid;
    waitpid($pid, 0);
    ok(MediaTest::wait_until(sub { !unnamed_uploads() }, 10),
       "$what: the file is gone once the client is");
    is(rows(), $before_rows, "$what: no row");
    is_deeply([upload_files()], \@before_files, "$what: no file in uploads/");
    is_deeply([body_files()], [], "$what: nothing in client_body_temp_path");
}

truncated('raw upload cut at 2 of 10 MB', '', '', 10 * 1024 * 1024);
truncated('multipart upload cut at 2 of 10 MB',
          "Content-Type: multipart/form-data; boundary=BB\r\n",
          "--BB\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n",
          10 * 1024 * 1024);

{
    my $what = 'nginx killed (-9) mid-upload';
    my $before_rows = rows();
    my @before_files = upload_files();
    my $pid = partial_upload('', '', 10 * 1024 * 1024);
    ok(MediaTest::wait_until(sub {
           grep { $_ >= 1024 * 1024 } unnamed_uploads() }, 10),
       "$what: the body is arriving");
    my $old = $s->kill_daemon('nginx', 'KILL');
    ok($old, "$what: master $old killed; the launcher kills its workers");
    my $new = $s->wait_daemon('nginx', $old, 15);
    ok($new, "$what: nginx restarted (pid $new)");
    kill 'KILL', $pid;
    waitpid($pid, 0);
    ok(MediaTest::wait_until(sub {
           $s->req(GET => '/healthz')->{status} == 200 }, 20),
       "$what: /healthz answers again");
    is(rows(), $before_rows, "$what: no row");
    is_deeply([upload_files()], \@before_files,
              "$what: no file in uploads/ (nothing to sweep)");
    is_deeply([body_files()], [], "$what: nothing in client_body_temp_path");
    is_deeply([unnamed_uploads()], [], "$what: no unnamed file held open");
    $r = $s->req(POST => '/upload_input_content', token => $tok, body => $raw);
    is($r->{status}, 200, "$what: the next upload is stored");
    is($r->{json}{sha256}, $sum, '  sha256 equals sha256sum');
}

# ------------------------------------------------------------ RSS

sub workers {
    my $master = slurp("$var/run/nginx.pid") =~ /(\d+)/ ? $1 : 0;
    my @w;
    for my $st (glob '/proc/[0-9]*/stat') {
        my $l = eval { slurp($st) } // next;
        my ($pid, $cmd, $ppid) = $l =~ /^(\d+) \((.*)\) \S+ (\d+)/ or next;
        next unless $ppid == $master;
        my $c = eval { slurp("/proc/$pid/cmdline") } // '';
        push @w, $pid if $c =~ /worker process/;
    }
    return @w;
}

sub vm {
    my ($pid, $field) = @_;
    my $st = eval { slurp("/proc/$pid/status") } // return 0;
    return $st =~ /^$field:\s+(\d+) kB/m ? $1 : 0;
}

{
    my $big = "$dir/big.bin";
    system("head -c 300M /dev/urandom > '$big'") == 0 or die "head: $?";
    my ($bigsum) = split ' ', `sha256sum '$big'`;
    my @w = workers();
    ok(@w >= 2, 'nginx workers found: ' . join(' ', @w));
    my %before = map { $_ => vm($_, 'VmRSS') } @w;
    my $t0 = time;
    $r = curl("-X POST -H 'Authorization: Bearer $tok'",
              "-H 'Content-Type: application/octet-stream'", "-T '$big'",
              $s->url('/upload_input_content'));
    my $secs = time - $t0;
    is($r->{status}, 200, sprintf('300 MB upload: 200 (%.1f s, %.0f MB/s)',
                                  $secs, 300 / ($secs || 1)))
        or diag $r->{body};
    is($r->{json}{sha256}, $bigsum, '  sha256 equals sha256sum');
    is($r->{json}{size}, 300 * 1024 * 1024, '  size');
    for my $pid (@w) {
        my $peak = vm($pid, 'VmHWM');
        my $after = vm($pid, 'VmRSS');
        ok($peak - $before{$pid} < 32 * 1024,
           "  worker $pid: RSS $before{$pid} kB before, $after kB after, "
           . "peak $peak kB (grew < 32 MB)");
    }

    # multipart the same size: the parser keeps no more memory
    %before = map { $_ => vm($_, 'VmHWM') } @w;
    $r = curl("-H 'Authorization: Bearer $tok'", "-F 'file=\@$big'",
              $s->url('/upload_input_content'));
    is($r->{status}, 200, '300 MB multipart upload: 200');
    is($r->{json}{sha256}, $bigsum, '  sha256 equals sha256sum');
    for my $pid (@w) {
        my $peak = vm($pid, 'VmHWM');
        ok($peak - $before{$pid} < 32 * 1024,
           "  worker $pid: peak RSS $before{$pid} -> $peak kB");
    }

    # (the big uploads are not needed any more)
    for my $id ($r->{json}{input_content_id}) {
        my ($p) = $s->psql("SELECT path FROM input_content WHERE id = $id");
        unlink $p->[0] if $p;
    }
    unlink $big;
}

# ------------------------------------------------------------ input_content

$r = $s->req(GET => "/input_content/$raw_id", token => $tok);
is($r->{status}, 200, 'GET /input_content/{id}: 200') or diag $r->{body};
is($r->{json}{id}, $raw_id, '  id');
is($r->{json}{size}, length $raw, '  size');
is($r->{json}{sha256}, $sum, '  sha256');
ok(($r->{json}{status} // '') =~ /^(uploaded|probing|invalid)$/,
   "  status ($r->{json}{status})");

$r = $s->req(GET => '/input_content/999999', token => $tok);
is_json_error($r, 404, 'not_found', 'GET /input_content/999999');
$r = $s->req(GET => "/input_content/$raw_id", token => $other->{token});
is_json_error($r, 404, 'not_found', "another user's upload");
$r = $s->req(GET => "/input_content/$raw_id", token => $admin);
is($r->{status}, 200, 'an admin sees every upload');
$r = $s->req(GET => "/input_content/$raw_id");
is_json_error($r, 401, 'unauthorized', 'GET /input_content without a token');
$r = $s->req(GET => '/input_content/abc', token => $tok);
is_json_error($r, 404, 'not_found', 'GET /input_content/abc');

# ------------------------------------------------------------ packaged_content

my $KEY = '00112233445566778899aabbccddeeff';
my $KID = '0123456789abcdef0123456789abcdef';
my $KEY64 = b64url(pack 'H*', $KEY);
my $KID64 = b64url(pack 'H*', $KID);

sub package_it {
    my (%o) = @_;
    return $s->req(POST => '/packaged_content', token => $o{token} // $tok,
                   defined $o{body} ? (body => $o{body}) : (json => {
                       input_content_id => $o{input} // $h264_id,
                       key => $o{key} // $KEY64, kid => $o{kid} // $KID,
                       exists $o{ladder} ? (ladder => $o{ladder}) : () }));
}

for my $case (
    [ 'not JSON', body => 'nope' ],
    [ 'a JSON array', body => '[]' ],
    [ 'no input_content_id', body => '{"key":"' . $KEY64 . '","kid":"'
                                     . $KID . '"}' ],
    [ 'input_content_id 0', input => 0 ],
    [ 'input_content_id a string', input => 'x' ],
    [ 'key of 21 base64url chars', key => substr($KEY64, 0, 21) ],
    [ 'key of 23 base64url chars', key => $KEY64 . 'A' ],
    [ 'key with "+" (base64, not base64url)', key => substr($KEY64, 0, 21) . '+' ],
    [ 'key with padding', key => $KEY64 . '==' ],
    [ 'kid of 31 hex digits', kid => substr($KID, 0, 31) ],
    [ 'kid of 33 hex digits', kid => $KID . 'a' ],
    [ 'kid with a "g"', kid => substr($KID, 0, 31) . 'g' ],
    [ 'kid as a number', body => '{"input_content_id":' . $h264_id
                                 . ',"key":"' . $KEY64 . '","kid":12}' ],
    [ 'no key', body => '{"input_content_id":' . $h264_id . ',"kid":"'
                        . $KID . '"}' ],
    [ 'ladder not an array', ladder => { height => 720 } ],
    [ 'ladder of numbers', ladder => [ 720 ] ],
) {
    my ($what, %o) = @$case;
    is_json_error(package_it(%o), 400, undef, "POST /packaged_content, $what");
}

is_json_error(package_it(input => 999999), 404, 'not_found',
              'POST /packaged_content, unknown input');
is_json_error(package_it(token => $other->{token}), 404, 'not_found',
              "POST /packaged_content, another user's input");
$r = $s->req(POST => '/packaged_content',
             json => { input_content_id => $h264_id, key => $KEY, kid => $KID });
is_json_error($r, 401, 'unauthorized', 'POST /packaged_content without a token');
$r = $s->req(GET => '/packaged_content', token => $tok);
is_json_error($r, 405, 'method_not_allowed', 'GET /packaged_content');

# inputs that are not H.264 + AAC in MP4
sub upload_file {
    my ($path) = @_;
    my $u = curl("-H 'Authorization: Bearer $tok'", "-F 'file=\@$path'",
                 $s->url('/upload_input_content'));
    is($u->{status}, 200, "upload " . ($path =~ s{.*/}{}r)) or diag $u->{body};
    return $u->{json}{input_content_id};
}

my $vp9_id = upload_file($vp9);
my $noaudio_id = upload_file($noaudio);
spew("$dir/text.mp4", "this is not a video\n" x 100);
my $text_id = upload_file("$dir/text.mp4");

$r = package_it(input => $raw_id);
is_json_error($r, 422, 'unsupported_input', 'random bytes');
like($r->{json}{message} // '', qr/ffprobe|Invalid data|moov/i,
     "  says what ffprobe found ($r->{json}{message})");

$r = package_it(input => $text_id);
is_json_error($r, 422, 'unsupported_input', 'a text file named .mp4');

$r = package_it(input => $vp9_id);
is_json_error($r, 422, 'unsupported_input', 'VP9 in MP4');
like($r->{json}{message} // '', qr/vp9/i, "  names VP9 ($r->{json}{message})");

$r = package_it(input => $noaudio_id);
is_json_error($r, 422, 'unsupported_input', 'MP4 without audio');
like($r->{json}{message} // '', qr/no audio/i,
     "  says there is no audio ($r->{json}{message})");

$r = package_it(input => $vp9_id);
is_json_error($r, 422, 'unsupported_input', 'VP9 again (verdict stored)');

$r = $s->req(GET => "/input_content/$vp9_id", token => $tok);
is($r->{json}{status}, 'invalid', 'GET /input_content of the VP9: invalid');
is($r->{json}{video} && $r->{json}{video}{codec}, 'vp9', '  video codec vp9');
like($r->{json}{error} // '', qr/vp9/i, '  error names it');

# a good one
my $t0 = time;
$r = package_it(ladder => [ { height => 240, bitrate => 300000 } ]);
is($r->{status}, 200, 'POST /packaged_content: 200') or diag $r->{body};
my $pc = $r->{json}{packaged_content_id};
ok($pc, "  packaged_content_id $pc");
ok(time - $t0 < 5, sprintf('  answered at once (%.2f s)', time - $t0));

($row) = $s->psql("SELECT key_hex, kid_hex, ladder->0->>'height', input_id,"
                  . " owner = $user->{id} FROM packaged_content WHERE id = $pc");
is($row->[0], $KEY, '  key stored as hex');
is($row->[1], $KID, '  kid stored as hex');
is($row->[2], '240', '  ladder stored as JSON');
is($row->[3], $h264_id, '  input_id');
is($row->[4], 't', '  owned by the token');

$r = $s->req(GET => "/input_content/$h264_id", token => $tok);
is($r->{json}{status}, 'ready', 'GET /input_content of the H.264 clip: ready');
is($r->{json}{video}{codec}, 'h264', '  video h264');
is($r->{json}{video}{profile}, 'High', '  profile High');
is($r->{json}{video}{width}, 320, '  width');
is($r->{json}{audio}{codec}, 'aac', '  audio aac');
is($r->{json}{audio}{sample_rate}, 48000, '  48 kHz');
ok(abs(($r->{json}{duration} // 0) - 2) < 0.2, "  duration ~2 s");

# hex key and base64url kid work as well
$r = package_it(key => $KEY, kid => $KID64);
is($r->{status}, 200, 'key as hex and kid as base64url: 200');

$r = $s->req(GET => "/packaged_content/$pc", token => $tok);
ok($r->{status} == 202 || $r->{status} == 200 || $r->{status} == 422,
   "GET /packaged_content/$pc right after: $r->{status}");
if ($r->{status} == 202) {
    like($r->{json}{status}, qr/^(queued|running)$/, "  status $r->{json}{status}");
    ok(defined $r->{json}{progress} && $r->{json}{progress} >= 0
       && $r->{json}{progress} <= 1, '  progress 0..1');
} else {
    pass("  (a packager already took it: $r->{json}{status})") for 1 .. 2;
}

# states made by hand (a packager leaves these alone: terminal, or a
# running job with a fresh heartbeat)
sub fake_pc {
    my ($status, %o) = @_;
    my $extra = $o{sql} // '';
    my ($id) = $s->psql("INSERT INTO packaged_content (input_id, owner,"
        . " key_hex, kid_hex, status, progress, error, heartbeat_at,"
        . " claimed_by) VALUES ($h264_id, $user->{id}, '$KEY', '$KID',"
        . " '$status', " . ($o{progress} // 0) . ", "
        . (defined $o{error} ? "'$o{error}'" : 'NULL')
        . ", now() + interval '1 hour', 'test') RETURNING id");
    return $id->[0];
}

my $running = fake_pc('running', progress => 0.5);
$r = $s->req(GET => "/packaged_content/$running", token => $tok);
is($r->{status}, 202, 'running: 202');
is($r->{json}{status}, 'running', '  status running');
is($r->{json}{progress}, 0.5, '  progress 0.5');

my $failed = fake_pc('failed', error => 'ffmpeg exited with status 1');
$r = $s->req(GET => "/packaged_content/$failed", token => $tok);
is($r->{status}, 422, 'failed: 422');
is($r->{json}{status}, 'failed', '  status failed');
is($r->{json}{error}, 'ffmpeg exited with status 1', '  error');

$r = $s->req(GET => '/packaged_content/999999', token => $tok);
is_json_error($r, 404, 'not_found', 'GET /packaged_content/999999');
$r = $s->req(GET => "/packaged_content/$running", token => $other->{token});
is_json_error($r, 404, 'not_found', "another user's packaged content");

# done, with a fake output directory
my $done = fake_pc('done', progress => 1);
my $out = "$var/packaged/$done";
my %files = (
    'stream.mpd'        => "<?xml version=\"1.0\"?>\n<MPD/>\n",
    'master.m3u8'       => "#EXTM3U\n",
    'video.m3u8'        => "#EXTM3U\n#EXT-X-MAP:URI=\"video/init.mp4\"\n",
    'video/init.mp4'    => "\0\0\0\x18ftypiso6" . ('v' x 1000),
    'video/seg-1.m4s'   => join('', map { chr($_ % 251) } 0 .. 99999),
    'audio/init.mp4'    => "\0\0\0\x18ftypiso6" . ('a' x 500),
    'audio/seg-1.m4s'   => 'A' x 5000,
);
for my $f (sort keys %files) {
    (my $d = "$out/$f") =~ s{/[^/]+$}{};
    system('mkdir', '-p', $d);
    spew("$out/$f", $files{$f});
}
system('chmod', '-R', 'a+rX', "$var/packaged");

$r = $s->req(GET => "/packaged_content/$done", token => $tok);
is($r->{status}, 200, 'done: 200') or diag $r->{body};
my $d = $r->{json} // {};
like($d->{url} // '', qr{^http://127\.0\.0\.1:\d+/packaged/$done/s/\d+\.\w+\.[\w-]{43}/stream\.mpd$},
     '  url: the MPD, signed in the path');
like($d->{hls_url} // '', qr{/packaged/$done/s/[^/]+/master\.m3u8$}, '  hls_url');
like($d->{player_url} // '', qr{/player/$done\?exp=\d+&kid=\w+&sig=[\w-]{43}$},
     '  player_url: the query form');
is($d->{key}, $KEY64, '  key in base64url');
is($d->{kid}, b64url(pack 'H*', $KID), '  kid in base64url');
is($d->{key_hex}, $KEY, '  key_hex');
is($r->{headers}{'cache-control'}, 'no-store', '  Cache-Control: no-store');
my ($q) = ($d->{player_url} // '') =~ /\?(.*)$/;
my $exp = $q =~ /exp=(\d+)/ ? $1 : 0;
ok($exp > time && $exp <= time + 3600 + 5, '  expires within the max TTL');

# ------------------------------------------------------------ serving

my %types = (
    'stream.mpd'      => 'application/dash+xml',
    'master.m3u8'     => 'application/vnd.apple.mpegurl',
    'video.m3u8'      => 'application/vnd.apple.mpegurl',
    'video/init.mp4'  => 'video/mp4',
    'video/seg-1.m4s' => 'video/mp4',
    'audio/seg-1.m4s' => 'video/mp4',
);
for my $f (sort keys %types) {
    $r = $s->req(GET => "/packaged/$done/$f?$q");
    is($r->{status}, 200, "signed GET $f: 200");
    is($r->{headers}{'content-type'}, $types{$f}, "  Content-Type $types{$f}");
    ok($r->{body} eq $files{$f}, '  the file\'s bytes');
    is($r->{headers}{'access-control-allow-origin'}, '*', '  CORS');
}

$r = $s->req(GET => "/packaged/$done/video/seg-1.m4s?$q",
             headers => { Range => 'bytes=1000-1999' });
is($r->{status}, 206, 'a Range of a segment: 206');
ok($r->{body} eq substr($files{'video/seg-1.m4s'}, 1000, 1000),
   '  the right bytes');
is($r->{headers}{'content-range'}, 'bytes 1000-1999/100000', '  Content-Range');

$r = $s->req(HEAD => "/packaged/$done/stream.mpd?$q");
is($r->{status}, 200, 'HEAD with a signature: 200');

$r = $s->req(GET => "/packaged/$done/stream.mpd", token => $tok);
is($r->{status}, 200, 'GET with a token: 200');
$r = $s->req(GET => "/packaged/$done/stream.mpd", token => $admin);
is($r->{status}, 200, 'GET with the admin token: 200');

$r = $s->req(GET => "/packaged/$done/stream.mpd");
is_json_error($r, 401, 'unauthorized', 'GET without credentials');
is($r->{headers}{'access-control-allow-origin'}, '*', '  CORS on errors too');

$r = $s->req(GET => "/packaged/$done/stream.mpd", token => 'nmt_' . ('B' x 43));
is_json_error($r, 401, 'invalid_token', 'GET with an unknown token');

(my $badq = $q) =~ s/sig=(.)/'sig=' . ($1 eq 'A' ? 'B' : 'A')/e;
$r = $s->req(GET => "/packaged/$done/stream.mpd?$badq");
is_json_error($r, 403, 'invalid_signature', 'GET with a forged signature');

$r = $s->req(GET => "/packaged/$running/stream.mpd?$q");
is_json_error($r, 403, 'invalid_signature', "another content's signature");

# signatures made here with the stack's key: expired, too long-lived
my $secret = pack 'H*', (slurp("$var/keys/sign-k1.key") =~ /([0-9a-f]+)/)[0];
sub sign {
    my ($path, $e) = @_;
    $e = int $e;
    return "exp=$e&kid=k1&sig=" . b64url(hmac_sha256("$path\n$e", $secret));
}
$r = $s->req(GET => "/packaged/$done/stream.mpd?"
                    . sign("/packaged/$done/", time + 600));
is($r->{status}, 200, 'a signature made with the key: 200');
$r = $s->req(GET => "/packaged/$done/stream.mpd?"
                    . sign("/packaged/$done/", time - 5));
is_json_error($r, 403, 'expired_signature', 'an expired signature');
$r = $s->req(GET => "/packaged/$done/stream.mpd?"
                    . sign("/packaged/$done/", time + 7200));
is_json_error($r, 403, 'invalid_signature', 'a lifetime over the max TTL');
$r = $s->req(GET => "/packaged/$done/stream.mpd?"
                    . sign("/packaged/$done/stream.mpd", time + 600));
is_json_error($r, 403, 'invalid_signature', 'a signature of the file, not the prefix');

$r = $s->req(GET => "/packaged/$done/missing.m4s?$q");
is_json_error($r, 404, 'not_found', 'a missing file');
$r = $s->req(GET => "/packaged/$done/?$q");
is_json_error($r, 404, 'not_found', 'the directory itself');
$r = $s->req(GET => "/packaged/.tmp-$done-1/stream.mpd?$q", token => $tok);
is_json_error($r, 404, 'not_found', 'a packager temp directory');
$r = $s->req(POST => "/packaged/$done/stream.mpd?$q", body => 'x');
is_json_error($r, 405, 'method_not_allowed', 'POST to a packaged file');

$r = $s->req(OPTIONS => "/packaged/$done/stream.mpd",
             headers => { Origin => 'http://elsewhere.example',
                          'Access-Control-Request-Method' => 'GET' });
is($r->{status}, 204, 'CORS preflight: 204');
is($r->{headers}{'access-control-allow-origin'}, '*', '  Allow-Origin');
like($r->{headers}{'access-control-allow-methods'} // '', qr/GET/,
     '  Allow-Methods');

# ------------------------------------------------------------ license

sub license {
    my ($id, %o) = @_;
    return $s->req(POST => "/license/$id" . (defined $o{q} ? "?$o{q}" : ''),
                   defined $o{token} ? (token => $o{token}) : (),
                   body => $o{body} // '{"kids":["' . $KID64 . '"],'
                                       . '"type":"temporary"}',
                   headers => { 'Content-Type' => 'application/json' });
}

$r = license($done, q => $q);
is($r->{status}, 200, 'license with the signature: 200') or diag $r->{body};
is_deeply($r->{json}, { keys => [ { kty => 'oct', kid => $KID64,
                                    k => $KEY64 } ],
                        type => 'temporary' }, '  the ClearKey response');
is($r->{headers}{'cache-control'}, 'no-store', '  Cache-Control: no-store');
is($r->{headers}{'access-control-allow-origin'}, '*', '  CORS');

$r = license($done, token => $tok);
is($r->{status}, 200, 'license with a token: 200');
is($r->{json}{keys}[0]{k}, $KEY64, '  the key');

$r = license($done);
is_json_error($r, 401, 'unauthorized', 'license without credentials');
$r = license($done, q => $badq);
is_json_error($r, 403, 'invalid_signature', 'license with a forged signature');
$r = license($running, q => $q);
is_json_error($r, 403, 'invalid_signature', "license with another content's signature");
$r = license($done, token => 'nmt_' . ('C' x 43));
is_json_error($r, 401, 'unauthorized', 'license with an unknown token');
$r = license($done, q => $q, body => '{"kids":["' . b64url('x' x 16) . '"]}');
is_json_error($r, 404, 'unknown_kid', 'license for another kid');
$r = license($done, q => $q, body => 'not json');
is_json_error($r, 400, 'invalid_license_request', 'a malformed license request');
$r = license($done, q => $q, body => '{"kids":["' . $KID . '"]}');
is_json_error($r, 400, 'invalid_license_request', 'a hex kid in a license request');
$r = license(999999, token => $tok);
is_json_error($r, 404, 'not_found', 'license of unknown content');

$r = $s->req(OPTIONS => "/license/$done",
             headers => { Origin => 'http://elsewhere.example',
                          'Access-Control-Request-Method' => 'POST',
                          'Access-Control-Request-Headers' => 'content-type' });
is($r->{status}, 204, 'license CORS preflight: 204');
is($r->{headers}{'access-control-allow-origin'}, '*', '  Allow-Origin');
like($r->{headers}{'access-control-allow-methods'} // '', qr/POST/,
     '  Allow-Methods');
like($r->{headers}{'access-control-allow-headers'} // '', qr/Content-Type/i,
     '  Allow-Headers');
$r = $s->req(GET => "/license/$done?$q");
is($r->{status}, 200, 'GET /license: 200 (the HLS "identity" key)');
is(length $r->{body}, 16, '  16 bytes');
like($r->{headers}{'content-type'} // '', qr{^application/octet-stream},
     '  application/octet-stream');
$r = $s->req(PUT => "/license/$done?$q");
is_json_error($r, 405, 'method_not_allowed', 'PUT /license');
is($r->{headers}{allow}, 'GET, POST, OPTIONS', '  Allow: GET, POST, OPTIONS');

# ------------------------------------------------------------ player

($q) = ($d->{player_url} // '') =~ /\?(.*)$/;
$r = $s->req(GET => "/player/$done?$q");
is($r->{status}, 200, 'GET player_url: 200');
like($r->{headers}{'content-type'} // '', qr{^text/html}, '  text/html');
like($r->{body}, qr/player\.js/, '  the player page (web/player.html)');
$r = $s->req(GET => "/player/$done");
is_json_error($r, 401, 'unauthorized', 'the player page without a signature');
$r = $s->req(GET => '/player/assets/player.js');
is($r->{status}, 200, '/player/assets/player.js: 200');
SKIP: {
    skip 'node_modules/shaka-player not installed (make web)', 1
        unless -e "$MediaTest::ROOT/node_modules/shaka-player/dist/shaka-player.compiled.js";
    $r = $s->req(GET => '/player/assets/shaka/shaka-player.compiled.js');
    is($r->{status}, 200, '/player/assets/shaka/shaka-player.compiled.js: 200');
}

# ------------------------------------------------------------ end to end

# the packager (woken by the doorbell) packages the good upload; the
# module then serves what it wrote
SKIP: {
    skip 'no daemons/packager in this tree', 9
        unless -d "$MediaTest::ROOT/daemons/packager";
    my $got;
    $s->wait_for(sub {
        $got = $s->req(GET => "/packaged_content/$pc", token => $tok);
        $got->{status} != 202 }, 60);
    is($got->{status}, 200, "packaged_content $pc: done") or diag $got->{body};
    my $u = $got->{json}{url} // '';
    ($q) = ($got->{json}{player_url} // '') =~ /\?(.*)$/;
    $r = $s->req(GET => $u);
    is($r->{status}, 200, '  GET url: 200');
    is($r->{headers}{'content-type'}, 'application/dash+xml', '  an MPD');
    like($r->{body}, qr/value="cbcs"/, '  cbcs signalled');
    my ($base) = $u =~ m{^(https?://[^/]+)};
    like($r->{body}, qr{>\Q${\ ($base // '')}\E/packaged/$pc/s/[^/]+/license<},
         '  the license URL, signed in the path, on the MPD\'s host');
    $r = $s->req(GET => "/packaged/$pc/video/init.mp4?$q");
    ok($r->{status} == 200 && $r->{body} =~ /encv/, '  video/init.mp4 has encv');
    $r = $s->req(GET => $got->{json}{hls_url} // '');
    like($r->{body}, qr/^#EXTM3U/, '  hls_url: a playlist');
    $r = license($pc, q => $q);
    is($r->{json} && $r->{json}{keys}[0]{k}, $KEY64, '  the license: its key');
    $r = $s->req(GET => "/packaged/$pc/stream.mpd?" . sign("/packaged/$done/",
                                                            time + 60));
    is($r->{status}, 403, "  another content's signature: 403");
}

# ------------------------------------------------------------ nginx -t

my $conf = slurp("$var/conf/nginx.conf");

sub nginx_t {
    my ($edit, $name, $expect) = @_;
    my $c = $conf;
    $edit->($c) or die "nginx_t: the edit for '$name' matched nothing";
    my $f = "$var/conf/broken.conf";
    spew($f, $c);
    my $out = `${\ $s->nginx_cmd} -t -q -c $f -p $var/nginx/ 2>&1`;
    isnt($? >> 8, 0, "nginx -t fails: $name");
    like($out, $expect, "  and says why: $name") or diag $out;
}

nginx_t(sub { $_[0] =~ s/media_protect token_or_signed;/media_protect sometimes;/ },
        'an unknown media_protect mode',
        qr/invalid value "sometimes" in "media_protect"/);
nginx_t(sub { $_[0] =~ s/media_protect token_or_signed;/media_protect signed packaged;/ },
        'a media_protect prefix that is not a path',
        qr/"media_protect" prefix "packaged" must begin and end with "\/"/);
nginx_t(sub { $_[0] =~ s/^\s*media_sign_key .*$//mg },
        'signed protection without a signing key',
        qr/"media_protect" with signed URLs needs "media_sign_key"/);
nginx_t(sub { $_[0] =~ s{(media_upload \S+;)}{$1 media_packaging;} },
        'two media handlers in one location', qr/media_packaging.*is duplicate/);
nginx_t(sub { $_[0] =~ s{media_packager_doorbell \S+}{media_packager_doorbell http://x} },
        'a doorbell that is not ZeroMQ', qr/media_packager_doorbell.*tcp:\/\/ or ipc:\/\//);

# ------------------------------------------------------------ the end

is_deeply([$s->error_log_clean], [], 'no [alert], [crit] or [emerg] in the error log');

done_testing();
