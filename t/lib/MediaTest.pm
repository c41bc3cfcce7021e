package MediaTest;

# Integration-test harness: starts a whole ngx_media stack (PostgreSQL,
# nginx with the module, the daemons) through scripts/media-stack on free
# loopback ports in a fresh directory under t/tmp/, and stops it when the
# test ends, even if it dies. Core Perl only.
#
#   use lib "$FindBin::Bin/lib";
#   use MediaTest;
#   my $s = MediaTest->start(workers => 2, extra_http => '...');
#   my $r = $s->req(POST => '/api/episodes', token => $s->admin_token,
#                   json => { ... });
#   is($r->{status}, 201);
#   is_deeply([$s->error_log_clean], [], 'no [alert]/[crit]/[emerg]');
#
# Helpers the tests import by name: use MediaTest qw(slurp spew ...);
#
# MEDIA_KEEP=1 keeps t/tmp/* (and prints where); MEDIA_BIN picks other
# daemon binaries (build/asan/bin); MEDIA_TEST_VERBOSE=1 shows the
# launcher's output.

use strict;
use warnings;

use Exporter qw(import);
use Cwd qw(abs_path);
use Digest::SHA ();
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Temp ();
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Time::HiRes ();

our $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/../..');
our $TMP = "$ROOT/t/tmp";
our $PGBIN = $ENV{MEDIA_PGBIN} || '/usr/lib/postgresql/15/bin';

our @EXPORT_OK = qw(slurp spew ffmpeg is_json_error curl names_in);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $OWNER = $$;          # END in a forked child must not stop anything
my (@STACKS, @ORIGINS, @TEMPDIRS);

# --------------------------------------------------------------- helpers

sub _log {
    my @msg = @_;
    if (eval { require Test::More; 1 }) {
        Test::More::diag(@msg);
    } else {
        print STDERR "# @msg\n";
    }
}

# slurp($path): the file's bytes, undef when it cannot be read
sub slurp {
    my ($path) = @_;
    open(my $fh, '<:raw', $path) or return undef;
    local $/;
    my $s = <$fh>;
    return $s;
}

# spew($path, $data): (re)writes the file, dies on error
sub spew {
    my ($path, $data) = @_;
    open(my $fh, '>:raw', $path) or die "$path: $!";
    print $fh $data;
    close $fh or die "$path: $!";
}

# names_in($dir): the names in a directory but . and .., sorted
sub names_in {
    my ($d) = @_;
    opendir(my $dh, $d) or return ();
    return sort grep { !/^\.\.?$/ } readdir $dh;
}

# ffmpeg($out, @args): ffmpeg -y @args $out, quietly; dies when it fails
sub ffmpeg {
    my ($out, @args) = @_;
    my @cmd = ('ffmpeg', '-nostdin', '-hide_banner', '-loglevel', 'error',
               '-y', @args, $out);
    system(@cmd) == 0 or die "ffmpeg failed (@cmd): $?";
    return $out;
}

# curl(@args): runs curl with these (shell-quoted) arguments -- for what
# HTTP::Tiny does not do: multipart forms (as a browser would), HTTP/2.
# Returns { status, body, json, headers => { content-type } } like req()
sub curl {
    my (@args) = @_;
    my $out = File::Temp->new(DIR => _tmp());
    my $w = `curl -sS --noproxy '*' -o '$out' -w '%{http_code} %{content_type}' @args 2>&1`;
    my ($code, $type) = $w =~ /^(\d+) ?(.*)$/ ? ($1, $2) : (0, $w);
    my $body = slurp("$out") // '';
    return { status => $code, body => $body,
             json => scalar eval { $JSON->decode($body) },
             headers => { 'content-type' => $type } };
}

sub _tmp { make_path($TMP); return $TMP }

# is_json_error($r, $status, $code, $what): $r (a req() answer) is a JSON
# error with that status and, when $code is defined, that error code
sub is_json_error {
    my ($r, $status, $code, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::is($r->{status}, $status, "$what: $status")
        or Test::More::diag($r->{body});
    Test::More::like($r->{headers}{'content-type'} // '',
                     qr{^application/json}, "$what: JSON body");
    Test::More::is($r->{json} && $r->{json}{error}, $code,
                   "$what: error is $code")
        if defined $code;
}

sub _tail {
    my ($path, $n) = @_;
    my $s = slurp($path);
    return "($path: missing)" unless defined $s;
    my @l = split /\n/, $s;
    splice(@l, 0, @l - $n) if @l > $n;
    return join("\n", @l);
}

# bench_netns(): benches call it first. It re-runs the script (once) in a
# private network namespace of its own, loopback up, with the TCP congestion
# control BENCH_TCP_CC (default cubic, Debian's default) -- both sides of a
# comparison then share that stack, and the machine's own setting (some
# hosts set bbr, whose pacing and spurious retransmits on a loopback with a
# microsecond RTT multiply the kernel's TCP cost per request by several
# times and make it swing between runs) is left alone. BENCH_NETNS=0, or no
# unshare/ip, runs in the host's namespace. Returns what to print about it.
sub bench_netns {
    my $cc = $ENV{BENCH_TCP_CC} || 'cubic';
    my $host = _slurp_line('/proc/sys/net/ipv4/tcp_congestion_control');
    if ($ENV{MEDIA_BENCH_IN_NETNS}) {
        system('ip', 'link', 'set', 'lo', 'up') == 0
            or die "bench: cannot bring up lo in the namespace\n";
        # a namespace may only pick what tcp_allowed_congestion_control
        # (global) lists; when $cc is not there, say so and go on with the
        # namespace's default rather than die
        my $why = '';
        my $cc_file = '/proc/sys/net/ipv4/tcp_congestion_control';
        if (open(my $fh, '>', $cc_file)) {
            print $fh "$cc\n";
            close $fh or $why = $!;
        } else {
            $why = $!;
        }
        my $now = _slurp_line($cc_file);
        my $allowed = _slurp_line('/proc/sys/net/ipv4/tcp_allowed_congestion_control');
        my $note = $now eq $cc ? '' : sprintf(
            '; cannot select %s here (%s; tcp_allowed_congestion_control:'
            . ' %s; as root: echo "%s %s" > /proc/sys/net/ipv4/'
            . 'tcp_allowed_congestion_control)', $cc, $why || 'refused',
            $allowed, $allowed, $cc);
        return "TCP: private network namespace, congestion control $now"
               . " (the host uses $ENV{MEDIA_BENCH_IN_NETNS})$note";
    }
    if (($ENV{BENCH_NETNS} // 1)
        && system('unshare --net true 2>/dev/null') == 0
        && system('command -v ip >/dev/null 2>&1') == 0)
    {
        $ENV{MEDIA_BENCH_IN_NETNS} = $host || '?';
        exec('unshare', '--net', '--', $^X, $0, @ARGV)
            or die "bench: unshare: $!\n";
    }
    return "TCP: host network namespace, congestion control $host";
}

sub _slurp_line {
    my $l = slurp($_[0]) // '';
    $l =~ s/\s+$//;
    return $l;
}

# cache_file_header($path): of a proxy_cache file (nginx's header,
# "\nKEY: <key>\n", the response header as the upstream sent it, the body),
# the stored response header without its blank line, and the byte at which
# the body starts; () when there is no such header in its first 64 KB
sub cache_file_header {
    my ($path) = @_;
    open(my $fh, '<:raw', $path) or die "MediaTest: $path: $!\n";
    read($fh, my $head, 65536);
    my $k = index($head, "\nKEY: ");
    return () if $k < 0;
    my $st = index($head, "\n", $k + 1) + 1;
    my $end = $st > 0 ? index($head, "\r\n\r\n", $st) : -1;
    return () if $end < 0;
    return (substr($head, $st, $end - $st), $end + 4);
}

# a loopback TCP port nobody listens on right now
sub free_port {
    my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                     LocalPort => 0, Proto => 'tcp',
                                     ReuseAddr => 1)
        or die "MediaTest: cannot bind a loopback port: $!";
    my $port = $sock->sockport;
    close $sock;
    return $port;
}

sub _port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# tempdir($name): a fresh directory t/tmp/<name>-XXXXXX (mode 0755, so the
# stack's unprivileged user can read it), removed at the end unless MEDIA_KEEP
sub tempdir {
    my ($name) = @_;
    $name //= 'tmp';
    make_path($TMP);
    my $d = File::Temp::tempdir("$name-XXXXXX", DIR => $TMP, CLEANUP => 0);
    chmod 0755, $d;
    push @TEMPDIRS, $d;
    return $d;
}

# gen_mp3($path, seconds => N, freq => Hz, bitrate => '128k'): a real MP3
# made by ffmpeg from a sine (lavfi), so fixtures are never downloaded
sub gen_mp3 {
    my ($path, %o) = @_;
    my $sec = $o{seconds} // 2;
    my $freq = $o{freq} // 440;
    my $rate = $o{bitrate} // '128k';
    ffmpeg($path, '-f', 'lavfi',
           '-i', "sine=frequency=$freq:sample_rate=44100:duration=$sec",
           '-c:a', 'libmp3lame', '-b:a', $rate);
    -s $path or die "MediaTest: ffmpeg wrote no $path";
    return $path;
}

# detach_child($dir), in a forked child: a session of its own (so a kill
# of the group reaches what it starts), stdin /dev/null, stdout and stderr
# appended to $dir/stderr.log
sub detach_child {
    my ($t) = @_;
    POSIX::setsid();
    open(STDIN, '<', '/dev/null');
    open(STDOUT, '>>', "$t/stderr.log");
    open(STDERR, '>&', \*STDOUT);
}

# spawn_nginx($dir): the stock nginx on $dir/nginx.conf with prefix $dir/
# (a config of "daemon off"), detached (detach_child); returns its pid
sub spawn_nginx {
    my ($t) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        detach_child($t);
        { exec('/usr/sbin/nginx', '-c', "$t/nginx.conf", '-p', "$t/",
               '-e', "$t/error.log") }
        POSIX::_exit(127);
    }
    return $pid;
}

# wait_until(sub {...}, $timeout): polls every 0.1 s; the callback's true
# value, or 0 after $timeout seconds (default 10)
sub wait_until {
    my ($cb, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 10);
    while (1) {
        my $v = $cb->();
        return $v if $v;
        return 0 if Time::HiRes::time() >= $deadline;
        Time::HiRes::sleep(0.1);
    }
}

# --------------------------------------------------------------- the stack

# MediaTest->start(workers => N, extra_server => '...', extra_http => '...',
#                  env => { MEDIA_X => ... }, log_level => 'info',
#                  preload => [ 'build/t/x.so' ], long_var => 1)
# preload: libraries nginx (only) gets in LD_PRELOAD, after the sanitizer
# runtime of MEDIA_NGINX_PRELOAD when that is set (the ASan module)
# long_var: MEDIA_VAR longer than a unix socket's path may be (108 bytes),
# so the launcher must put its sockets elsewhere
sub start {
    my ($class, %opt) = @_;
    my $var = tempdir('stack');
    if ($opt{long_var}) {
        $var .= '/' . ('v' x (120 - length $var));
        make_path($var);
        chmod 0755, $var;
    }
    my $self = bless { opt => \%opt, var => $var }, $class;
    push @STACKS, $self;
    $self->_launch;
    return $self;
}

sub _env {
    my ($self) = @_;
    my $o = $self->{opt};
    return (
        MEDIA_VAR                => $self->{var},
        MEDIA_PORT               => $self->{port},
        MEDIA_ANALYTICS_PORT     => $self->{aport},
        MEDIA_LISTEN             => '127.0.0.1',
        MEDIA_WORKERS            => $o->{workers} // 2,
        MEDIA_LOG_LEVEL          => $o->{log_level} // 'warn',
        MEDIA_NGINX_EXTRA_SERVER => $o->{extra_server} // '',
        MEDIA_NGINX_EXTRA_HTTP   => $o->{extra_http} // '',
        MEDIA_NGINX_PRELOAD      => join(':', grep { $_ }
                                         $ENV{MEDIA_NGINX_PRELOAD},
                                         @{ $o->{preload} || [] }),
        %{ $o->{env} || {} },
    );
}

sub _stack {
    my ($self, $cmd, $out) = @_;
    local %ENV = (%ENV, $self->_env);
    local $?;
    my $rc = system("$ROOT/scripts/media-stack $cmd >>'$out' 2>&1");
    return $rc == 0;
}

sub _launch {
    my ($self) = @_;
    my $out = "$self->{var}.start.log";
    my $ok;
    # a port picked as free may be taken by the time nginx binds it
    for my $try (1 .. 3) {
        $self->{port} //= free_port();
        $self->{aport} = free_port() until $self->{aport} && $self->{aport} != $self->{port};
        if (open(my $fh, '>>', $out)) { close $fh }
        $ok = $self->_stack('start', $out);
        last if $ok;
        my $log = slurp($out) // '';
        last unless $log =~ /port \d+ is in use/;
        delete @$self{qw(port aport)};
    }
    my $log = slurp($out) // '';
    _log("media-stack start:\n$log") if !$ok || $ENV{MEDIA_TEST_VERBOSE};
    die "MediaTest: the stack did not start (MEDIA_VAR=$self->{var})\n"
        unless $ok;
    $self->{running} = 1;
    $self->{token} = undef;
    return $self;
}

sub stop {
    my ($self) = @_;
    return 1 unless $self->{running};
    $self->{running} = 0;
    return $self->_stack('stop', "$self->{var}.start.log");
}

# stop, then start again on the same MEDIA_VAR (database, keys and token
# kept); env => { MEDIA_X => ... } changes settings for this and later starts
sub restart {
    my ($self, %opt) = @_;
    $self->stop;
    $self->{opt}{env} = { %{ $self->{opt}{env} || {} }, %{ $opt{env} } }
        if $opt{env};
    return $self->_launch;
}

sub DESTROY {
    my ($self) = @_;
    return if $$ != $OWNER;
    local ($?, $@, $!);
    $self->stop;
}

sub port          { $_[0]{port} }
sub analytics_port { $_[0]{aport} }
sub var           { $_[0]{var} }

# the origin hop's unix socket, as the rendered nginx.conf listens on it
sub hop_socket {
    my ($self) = @_;
    my ($sock) = (slurp("$self->{var}/conf/nginx.conf") // '')
                 =~ m{^\s*listen\s+unix:(\S+);}m;
    return $sock;
}
sub url           { my ($self, $path) = @_; "http://127.0.0.1:$self->{port}" . ($path // '/') }
sub log_path      { my ($self, $name) = @_; "$self->{var}/log/$name" }

# the nginx the stack runs, as a shell command prefix for `nginx -t` in
# tests: with MEDIA_NGINX_PRELOAD (the ASan module) the sanitizer runtime is
# preloaded (and the stack's preload libraries), as media-stack does, and
# its reports land in log/asan.<pid>
sub nginx_cmd {
    my ($self) = @_;
    my %env = $self->_env;
    my $pre = $env{MEDIA_NGINX_PRELOAD} or return '/usr/sbin/nginx';
    return "env LD_PRELOAD='$pre'"
         . " ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:log_path=$self->{var}/log/asan"
         . " UBSAN_OPTIONS=print_stacktrace=1:log_path=$self->{var}/log/asan"
         . " /usr/sbin/nginx";
}

sub admin_token {
    my ($self) = @_;
    unless ($self->{token}) {
        my $t = slurp("$self->{var}/admin.token")
            // die "MediaTest: no $self->{var}/admin.token";
        ($self->{token}) = $t =~ /^(\S+)/;
    }
    return $self->{token};
}

# (no proxy from the environment: everything here is on loopback)
my $HTTP = HTTP::Tiny->new(timeout => 30, keep_alive => 0,
                           agent => 'MediaTest/1', proxy => undef,
                           http_proxy => undef, https_proxy => undef);

# req($method, $path, token => T, json => DATA | body => STRING,
#     headers => { ... }) -> { status, headers (lower-case), body, json }
sub req {
    my ($self, $method, $path, %o) = @_;
    my %h = %{ $o{headers} || {} };
    $h{Authorization} = "Bearer $o{token}" if defined $o{token};
    my %args = (headers => \%h);
    if (exists $o{json}) {
        $args{content} = $JSON->encode($o{json});
        $h{'Content-Type'} //= 'application/json';
    } elsif (defined $o{body}) {
        $args{content} = $o{body};
    }
    my $url = $path =~ m{^https?://} ? $path : $self->url($path);
    my $res = $HTTP->request($method, $url, \%args);
    my $r = { status => $res->{status}, headers => $res->{headers} || {},
              body => $res->{content} // '', reason => $res->{reason} };
    my $ct = $r->{headers}{'content-type'} // '';
    if (length $r->{body} && ($ct =~ /json/ || $r->{body} =~ /^\s*[\[{]/)) {
        $r->{json} = eval { $JSON->decode($r->{body}) };
    }
    return $r;
}

sub _db {
    my ($self) = @_;
    return @$self{qw(pghost pguser)} if $self->{pghost};
    my $conf = slurp("$self->{var}/conf/nginx.conf")
        // die "MediaTest: no rendered nginx.conf in $self->{var}";
    my ($ci) = $conf =~ /^\s*media_db\s+"([^"]*)"/m
        or die "MediaTest: no media_db in $self->{var}/conf/nginx.conf";
    my %kv = map { split /=/, $_, 2 } split ' ', $ci;
    @$self{qw(pghost pguser)} = ($kv{host}, $kv{user});
    return ($kv{host}, $kv{user});
}

# psql($sql): rows as array refs (NULL is undef; values are the bytes psql
# prints); dies on an SQL error
sub psql {
    my ($self, $sql) = @_;
    my ($host, $user) = $self->_db;
    local $ENV{PGOPTIONS} = '-c client_min_messages=warning';
    my $err = File::Temp->new;
    my $pid = open(my $fh, '-|') // die "MediaTest: fork: $!";
    if (!$pid) {
        open(STDERR, '>&', $err) or POSIX::_exit(126);
        { exec("$PGBIN/psql", '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
               '-F', "\x1f", '-R', "\x1e", '-P', "null=\x1d",
               '-h', $host, '-U', $user, '-d', 'media', '-c', $sql) }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    if ($? != 0) {
        my $e = slurp($err->filename) // '';
        die "MediaTest: psql failed ($sql): $e";
    }
    return () if $out eq '';
    $out =~ s/\n\z//;
    return map { [ map { $_ eq "\x1d" ? undef : $_ } split /\x1f/, $_, -1 ] }
           split /\x1e/, $out, -1;
}

# the nginx error log's [alert], [crit] and [emerg] lines, and every line of
# a sanitizer report of nginx (MEDIA_NGINX_PRELOAD: log/asan.<pid>)
sub error_log_clean {
    my ($self) = @_;
    my $log = slurp("$self->{var}/log/nginx-error.log") // '';
    return (grep({ /\[(?:alert|crit|emerg)\]/ } split /\n/, $log),
            $self->asan_reports);
}

# the lines of the sanitizer reports in the stack's log dir, each prefixed
# with its file's name
sub asan_reports {
    my ($self) = @_;
    my @r;
    for my $f (sort glob("$self->{var}/log/asan.*")) {
        my $n = File::Basename::basename($f);
        push @r, map { "$n: $_" } split /\n/, slurp($f) // '';
    }
    return @r;
}

# upload_rows_in($dir): how many input_content rows refer to a file in $dir
sub upload_rows_in {
    my ($self, $d) = @_;
    return ($self->psql("SELECT count(*) FROM input_content"
                        . " WHERE path LIKE '$d/%'"))[0][0];
}

# is_stored($r, $dir, $bytes, $what): $r (an upload's answer) is a 200 with
# the sha256 of $bytes, $dir holds one file, with those bytes, and one row
sub is_stored {
    my ($self, $r, $d, $bytes, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $sha = Digest::SHA::sha256_hex($bytes);
    Test::More::is($r->{status}, 200, "$what: 200")
        or Test::More::diag($r->{body});
    Test::More::is($r->{json} && $r->{json}{sha256}, $sha, "$what: sha256");
    my @f = names_in($d);
    Test::More::is(scalar @f, 1, "$what: one file in the directory");
    Test::More::is(Digest::SHA::sha256_hex(@f ? slurp("$d/$f[0]") // '' : ''),
                   $sha, "$what: holding the bytes");
    Test::More::is($self->upload_rows_in($d), 1, "$what: and its row");
}

# nginx_fds_in($dir): the descriptors (/proc/<pid>/fd/<n>) this stack's
# nginx (master and workers) holds on files in $dir, unnamed ones included
# (their links read "$dir/#123 (deleted)")
sub nginx_fds_in {
    my ($self, $d) = @_;
    my $master = $self->_pid_of('nginx') // 0;
    my @hits;
    for my $st (glob '/proc/[0-9]*/stat') {
        my $l = slurp($st) // next;
        next unless $l =~ /^(\d+) \(.*\) \S+ (\d+)/;
        next unless $1 == $master || $2 == $master;
        my $pid = $1;
        for my $fd (glob "/proc/$pid/fd/*") {
            my $t = readlink($fd) // next;
            push @hits, $fd if index($t, "$d/") == 0;
        }
    }
    return @hits;
}

sub _pid_of {
    my ($self, $name) = @_;
    my $p = slurp("$self->{var}/run/$name.pid") // return undef;
    return $p =~ /^(\d+)/ ? $1 : undef;
}

# kill_daemon($name, $sig): signals a daemon (or 'nginx') of this stack; the
# launcher restarts it within 2 s. Returns the pid signalled, or 0.
sub kill_daemon {
    my ($self, $name, $sig) = @_;
    $sig //= 'TERM';
    $sig =~ s/^-//;
    $sig =~ s/^SIG//;
    my $pid = $self->_pid_of($name) or return 0;
    return kill($sig, $pid) ? $pid : 0;
}

# wait_daemon($name, $old_pid, $timeout): until a process other than $old_pid
# runs under the pid file; returns its pid or 0
sub wait_daemon {
    my ($self, $name, $old, $timeout) = @_;
    return wait_until(sub {
        my $p = $self->_pid_of($name);
        ($p && (!$old || $p != $old) && kill(0, $p)) ? $p : 0;
    }, $timeout // 10);
}

sub _pg_ctl {
    my ($self, @args) = @_;
    my (undef, $user) = $self->_db;
    my @as = $> == 0 && $user ne 'root'
           ? ('setpriv', "--reuid=$user", "--regid=$user", '--init-groups', '--')
           : ();
    local $?;
    my $rc = system(@as, "$PGBIN/pg_ctl", '-D', "$self->{var}/pg", '-s', @args);
    return $rc == 0;
}

sub stop_pg {
    my ($self) = @_;
    return $self->_pg_ctl('-m', 'fast', '-w', '-t', '60', 'stop');
}

sub start_pg {
    my ($self) = @_;
    return $self->_pg_ctl('-l', "$self->{var}/log/postgresql.log",
                          '-w', '-t', '60', 'start');
}

# restart_pg($down_seconds): stop PostgreSQL (fast), keep it down a while, start it
sub restart_pg {
    my ($self, $down) = @_;
    $self->stop_pg or return 0;
    Time::HiRes::sleep($down) if $down;
    return $self->start_pg;
}

sub wait_for {
    my ($self, $cb, $timeout) = @_;
    return wait_until($cb, $timeout);
}

# wait_healthy($timeout): until /healthz answers 200
sub wait_healthy {
    my ($self, $timeout) = @_;
    return wait_until(sub { $self->req(GET => '/healthz')->{status} == 200 },
                      $timeout // 30);
}

# --------------------------------------------------------------- the end

sub _cleanup {
    my ($exit) = @_;
    return if $$ != $OWNER;
    my $failed = $exit
        || eval { require Test::More; !Test::More->builder->is_passing };
    for my $s (@STACKS) {
        next unless $s;
        if ($failed && !$s->{dumped}++) {
            my $v = $s->{var};
            _log("---- $v (stack of a failing test), log tails:");
            _log("$_:\n" . _tail("$v/log/$_", 15))
                for grep { -e "$v/log/$_" } qw(launcher.log nginx-error.log
                                               analytics.log archiver.log
                                               notifier.log postgresql.log);
        }
        $s->stop;
    }
    $_->stop for grep { $_ } @ORIGINS;
    # a sanitizer report of nginx fails the test, whatever it asserted
    # (the first few in full, then one line per kind)
    my ($reports, %kinds) = (0);
    for my $d (@TEMPDIRS) {
        for my $f (sort glob("$d/log/asan.*")) {
            my $r = slurp($f) // '';
            _log("---- sanitizer report $f:\n$r") if ++$reports <= 3;
            $kinds{$1}++ while $r =~ /^(SUMMARY: .*)$/mg;
        }
    }
    _log("---- $reports sanitizer report(s) in all:\n"
         . join('', map { "$kinds{$_} x $_\n" } sort keys %kinds)) if $reports;
    if ($ENV{MEDIA_KEEP}) {
        _log("MEDIA_KEEP: kept $_") for @TEMPDIRS;
    } else {
        for my $d (@TEMPDIRS) {
            remove_tree($d, { safe => 0 });
            unlink "$d.start.log";
        }
    }
    @STACKS = @ORIGINS = @TEMPDIRS = ();
    return $reports;
}

# a test killed by prove (or Ctrl-C), or whose output pipe closed (prove
# ... | head), still stops its stacks
for my $sig (qw(INT TERM HUP PIPE)) {
    $SIG{$sig} = sub { _log("MediaTest: SIG$sig, stopping"); exit 1 }
        if !defined $SIG{$sig} || $SIG{$sig} eq '' || $SIG{$sig} eq 'DEFAULT';
}

END {
    my $exit = $?;
    my $reports = do { local ($?, $@, $!); _cleanup($exit) };
    if ($reports && !$exit) {
        _log("MediaTest: $reports sanitizer report(s) of nginx: failing");
        $? = 1;
    }
}

# =============================================================== origin

package MediaTest::Origin;

# A stock nginx (no module) serving the files of a directory on a free
# loopback port, with Range support, logging every request so tests can
# count origin fetches.
#
#   my $o = MediaTest::Origin->start(dir => $dir);
#   $o->url('a.mp3');  $o->hits('/a.mp3');  $o->ranges('/a.mp3');

use strict;
use warnings;
use POSIX ();
use Time::HiRes ();

sub start {
    my ($class, %o) = @_;
    my $dir = $o{dir} or die "MediaTest::Origin->start: dir => ... needed";
    $dir = Cwd::abs_path($dir);
    my $self = bless { dir => $dir, tmp => MediaTest::tempdir('origin') },
                     $class;
    push @ORIGINS, $self;
    for my $try (1 .. 5) {
        $self->{port} = MediaTest::free_port();
        return $self if $self->_launch;
    }
    die "MediaTest::Origin: nginx did not start:\n"
        . MediaTest::_tail("$self->{tmp}/error.log", 20) . "\n";
}

sub _launch {
    my ($self) = @_;
    my ($t, $port) = @$self{qw(tmp port)};
    mkdir "$t/$_" for qw(body proxy fastcgi uwsgi scgi);
    my $user = $> == 0 ? "user root;\n" : '';
    open(my $fh, '>', "$t/nginx.conf") or die "$t/nginx.conf: $!";
    print $fh <<"EOF";
# origin for the tests: stock nginx, static files, Range by default
${user}daemon off;
master_process on;
worker_processes 1;
pid $t/nginx.pid;
error_log $t/error.log warn;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    types { audio/mpeg mp3; }
    default_type application/octet-stream;
    log_format origin '\$request_method \$uri \$status "\$http_range" \$body_bytes_sent';
    access_log $t/access.log origin;
    client_body_temp_path $t/body;
    proxy_temp_path $t/proxy;
    fastcgi_temp_path $t/fastcgi;
    uwsgi_temp_path $t/uwsgi;
    scgi_temp_path $t/scgi;
    sendfile on;
    server {
        listen 127.0.0.1:$port;
        root $self->{dir};
        location / { }
    }
}
EOF
    close $fh;
    my $pid = MediaTest::spawn_nginx($t);
    $self->{pid} = $pid;
    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline) {
        return 1 if MediaTest::_port_open($port);
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            delete $self->{pid};
            return 0;
        }
        Time::HiRes::sleep(0.05);
    }
    $self->stop;
    return 0;
}

sub port { $_[0]{port} }
sub dir  { $_[0]{dir} }

sub url {
    my ($self, $file) = @_;
    $file //= '';
    $file =~ s{^/}{};
    return "http://127.0.0.1:$self->{port}/$file";
}

sub _log_lines {
    my ($self, $path) = @_;
    $path = "/$path" unless $path =~ m{^/};
    my $log = MediaTest::slurp("$self->{tmp}/access.log") // '';
    return grep { $_->[1] eq $path }
           map { [ /^(\S+) (\S+) (\d+) "([^"]*)" (\d+)/ ] }
           split /\n/, $log;
}

# requests the origin received for $path ('/a.mp3' or 'a.mp3')
sub hits {
    my ($self, $path) = @_;
    return scalar(my @l = $self->_log_lines($path));
}

# the Range headers of those requests ('' when none)
sub ranges {
    my ($self, $path) = @_;
    return map { $_->[3] eq '-' ? '' : $_->[3] } $self->_log_lines($path);
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return 1;
    local ($?, $!);
    kill 'TERM', $pid;
    my $deadline = Time::HiRes::time() + 5;
    while (Time::HiRes::time() < $deadline) {
        last if waitpid($pid, POSIX::WNOHANG()) == $pid;
        Time::HiRes::sleep(0.05);
    }
    if (kill 0, $pid) {
        kill 'KILL', -$pid;
        waitpid($pid, 0);
    }
    return 1;
}

sub DESTROY {
    my ($self) = @_;
    return if $$ != $OWNER;
    $self->stop;
}

1;
