#!/usr/bin/perl
# Uploads when an I/O call fails (docs/packaging.md), the errors a full
# tmpfs (t/62) cannot produce: build/t/upload_faults.so
# (t/fault/upload_faults.c), preloaded into nginx after the sanitizer
# runtime when there is one, fails one call on the files of an upload
# directory, a directory per case:
# - EIO at a write (raw, multipart), ENOSPC and EIO at the file's fsync
#   (the first through the page cache: O_DIRECT refused as on a file system
#   without it), EIO and ENOSPC at the linkat, EIO and EDQUOT at the
#   directory's fsync.
# Each answers 507 {"error":"no_space"} (ENOSPC, EDQUOT) or 500
# {"error":"internal"} saying what failed and why, on a connection that
# stays usable (GET /healthz on it: 200), and leaves no input_content row,
# no file in the directory, no unnamed file held open; then an upload to
# the same directory is stored (200, its sha256, its file, its row).
# Failures other than a full disk are logged at [crit], a full disk at
# [error], one line each; nothing else, no [alert], no sanitizer report.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Cwd ();
use Fcntl qw(O_CREAT O_DIRECT O_WRONLY);
use IO::Socket::INET;
use JSON::PP ();
use MediaTest qw(slurp is_json_error names_in);

my $so = "$MediaTest::ROOT/build/t/upload_faults.so";
-f $so or die "no $so: run make all first\n";

# [ directory, the injector's rules there, multipart?, status ]
my @cases = (
    [ 'write-eio',     'write:EIO:after=3',                  0, 500 ],
    [ 'write-eio-mp',  'write:EIO:after=2',                  1, 500 ],
    [ 'fsync-nospc',   'fsync:ENOSPC direct:EINVAL:times=0', 0, 507 ],
    [ 'fsync-eio',     'fsync:EIO',                          1, 500 ],
    [ 'link-eio',      'link:EIO',                           0, 500 ],
    [ 'link-nospc',    'link:ENOSPC',                        1, 507 ],
    [ 'dirsync-eio',   'dirsync:EIO',                        0, 500 ],
    [ 'dirsync-dquot', 'dirsync:EDQUOT',                     1, 507 ],
);

# what the answer says failed, by the rule's operation
my %what = (write => 'writing the upload failed',
            fsync => 'cannot fsync the upload',
            link => 'cannot link the upload into place',
            dirsync => 'cannot fsync the upload directory');

# the stack's user owns the upload directories (nginx workers write there)
my $muser = $ENV{MEDIA_USER} || 'ngxmedia';
my ($uid, $gid) = $> == 0 ? (getpwnam($muser))[2, 3] : ($>, $) + 0);
defined $uid or die "no user $muser\n";

my $base = MediaTest::tempdir('upload-faults');
my (@rules, $extra);
for my $c (@cases) {
    my ($name, $rules) = @$c;
    mkdir "$base/$name" or die "mkdir $base/$name: $!";
    chown($uid, $gid, "$base/$name") or die "chown $base/$name: $!";
    push @rules, map { "$_:in=$name" } split ' ', $rules;
    $extra .= <<"EOF";
        location = /upload_$name {
            client_max_body_size 64m;
            client_body_buffer_size 256k;
            media_upload $base/$name;
        }
EOF
}

# one worker: one set of the injector's counters
my $s = MediaTest->start(workers => 1, extra_server => $extra,
                         preload => [ $so ],
                         env => { MEDIA_FAULT_DIR => $base,
                                  MEDIA_FAULT => join(' ', @rules) });

my $tok = $s->req(POST => '/api/tokens', token => $s->admin_token,
                  json => { role => 'user', name => 'faults' })
            ->{json}{token};
ok($tok, 'a user token');

my $maps = slurp('/proc/' . ((slurp($s->var . '/run/nginx.pid') // '')
                             =~ /(\d+)/)[0] . '/maps') // '';
like($maps, qr/\Q$so\E/, 'nginx runs with the injector');
if (my $asan = $ENV{MEDIA_NGINX_PRELOAD}) {
    $asan = Cwd::abs_path($asan) // $asan;
    ok(index($maps, $asan) >= 0, '  and the sanitizer runtime');
}

# the unnamed files are O_DIRECT where the file system has it
my $direct = sysopen(my $fh, "$base/probe", O_CREAT | O_WRONLY | O_DIRECT)
             ? 1 : 0;
close $fh if $direct;
unlink "$base/probe";

my $JSON = JSON::PP->new->utf8;

# an HTTP/1.1 answer on $sock: { status, body, json, headers }
sub read_answer {
    my ($sock) = @_;
    local $/ = "\r\n";
    my $line = <$sock> // return { status => 0, body => '' };
    my ($status) = $line =~ m{^HTTP/1\.\d (\d+)};
    my %h;
    while (defined(my $l = <$sock>)) {
        last if $l eq "\r\n";
        $h{lc $1} = $2 if $l =~ /^([^:]+):\s*(.*?)\r\n$/;
    }
    my $body = '';
    my $len = $h{'content-length'} // 0;
    while (length $body < $len) {
        read($sock, $body, $len - length $body, length $body) or last;
    }
    return { status => $status // 0, headers => \%h, body => $body,
             json => eval { $JSON->decode($body) } };
}

# POSTs $body to $path (calling $mid once half of it is sent), then GET
# /healthz on the same connection (kept alive: the upload's body read to
# its end); both answers
sub upload {
    my ($path, $type, $body, $mid) = @_;
    my ($r, $h) = ({ status => 0, body => 'timeout' }, { status => 0 });
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 30;
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                         PeerPort => $s->port,
                                         Proto => 'tcp')
            or die "connect: $!\n";
        my $half = int(length($body) / 2);
        print $sock "POST $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  . "Authorization: Bearer $tok\r\nContent-Type: $type\r\n"
                  . 'Content-Length: ' . length($body) . "\r\n\r\n",
                    substr($body, 0, $half);
        $mid->() if $mid;
        print $sock substr($body, $half);
        $r = read_answer($sock);
        print $sock "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  . "Connection: close\r\n\r\n";
        $h = read_answer($sock);
        alarm 0;
        1;
    } or diag "upload to $path: $@";
    alarm 0;
    return ($r, $h);
}

# the raw body or a form with a field before "file"
sub body_of {
    my ($mp, $data) = @_;
    return ('video/mp4', $data) unless $mp;
    my $b = 'upload-faults-7f3a9c';
    return ("multipart/form-data; boundary=$b",
            "--$b\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n"
            . "faults\r\n--$b\r\nContent-Disposition: form-data;"
            . " name=\"file\"; filename=\"a.mp4\"\r\n"
            . "Content-Type: video/mp4\r\n\r\n$data\r\n--$b--\r\n");
}

sub random_bytes {
    my ($n) = @_;
    my $d = '';
    $d .= pack('N', int(rand(2**32))) for 1 .. $n / 4;
    return $d;
}

# whether the unnamed file nginx writes in $d is O_DIRECT (undef: none)
sub direct_in {
    my ($d) = @_;
    my $fd = MediaTest::wait_until(sub { ($s->nginx_fds_in($d))[0] }, 5)
        or return undef;
    (my $info = $fd) =~ s{/fd/}{/fdinfo/};
    my ($flags) = (slurp($info) // '') =~ /^flags:\s*([0-7]+)/m;
    return defined $flags ? (oct($flags) & O_DIRECT ? 1 : 0) : undef;
}

my $big = random_bytes(3 * 1024 * 1024);
my %why = (500 => qr/: Input\/output error$/,
           507 => qr/: no space left on the server's disk, retry later$/);

for my $c (@cases) {
    my ($name, $rules, $mp, $status) = @$c;
    my $what = $what{ ($rules =~ /^(\w+)/)[0] };
    my $d = "$base/$name";
    my $t = "$name ($rules, " . ($mp ? 'multipart' : 'raw') . ')';

    my $dio;
    my ($r, $h) = upload("/upload_$name", body_of($mp, $big),
                         sub { $dio = direct_in($d) });
    is_json_error($r, $status, $status == 507 ? 'no_space' : 'internal', $t);
    is($dio, $rules =~ /direct:/ ? 0 : $direct,
       '  written ' . ($dio ? 'O_DIRECT' : 'through the page cache'));
    like($r->{json}{message} // '', qr/^\Q$what\E$why{$status}/,
         '  the message says what failed and why');
    is($h->{status}, 200, '  GET /healthz on the same connection: 200')
        or diag explain $h;
    is($s->upload_rows_in($d), 0, '  no input_content row');
    is_deeply([names_in($d)], [], '  no file in the directory');
    ok(MediaTest::wait_until(sub { !$s->nginx_fds_in($d) }, 5),
       '  no unnamed file held open')
        or diag explain [map { readlink } $s->nginx_fds_in($d)];

    my $ok = random_bytes(1024 * 1024 + 12345);
    ($r, $h) = upload("/upload_$name", body_of($mp, $ok));
    $s->is_stored($r, $d, $ok, '  then an upload there');
    is($h->{status}, 200, '  then GET /healthz: 200');
}

# EIO is logged at [crit] (an I/O error is ours to look at), a full disk
# at [error]; nothing else reaches [crit]
my $log = slurp($s->log_path('nginx-error.log')) // '';
my @crit = grep { /\[crit\]/ } split /\n/, $log;
ok(scalar(grep { /media upload: .*Input\/output error/ } @crit) >= 5,
   'the EIO failures are logged at [crit]') or diag explain \@crit;
like($log, qr/\[error\].*media upload: cannot .*No space left on device/,
     'a full disk at [error]');
is_deeply([grep { !m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d } } split /\n/, $log], [],
          'one line an entry');
is_deeply([grep { !/\[crit\].*media upload: .*Input\/output error/ }
           $s->error_log_clean], [],
          'no other [crit], no [alert]/[emerg], no sanitizer report');

done_testing;
