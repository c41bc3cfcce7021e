package FlakyOrigin;

# A misbehaving HTTP origin for the archive tests (core Perl only): serves
# the files of a directory with Range / If-Range, ETag and Last-Modified,
# and fails on purpose, as told by the query string of each URL:
#
#   /f/<file>?reset=N      the first N answers break the connection (RST)
#                          halfway through the body
#   /f/<file>?fail=CODE&times=N
#                          the first N answers are CODE (429 and 503 carry
#                          Retry-After: 1)
#   /f/<file>?stall=N      the first N answers send part of the body, then
#                          nothing more
#   /f/<file>?norange=1    Range ignored: always 200 and the whole file
#   /f/<file>?novalidators=1   no ETag, no Last-Modified
#   /f/<file>?cd=<name>    Content-Disposition: attachment; filename="<name>"
#   /f/<file>?rate=<B/s>   the body at about this many bytes per second
#   /redirect/<file>?<q>   302 to /f/<file>?<q>
#   /status/<code>         always <code>
#   POST /hook/<name>?fail=N   a webhook receiver: the first N answers are
#                          500; every request is recorded (hooks())
#
# "The first N" counts requests of the same path and query. Each request is
# logged (method, URI, Range, If-Range, status) for requests() / ranges().
#
#   my $o = FlakyOrigin->start(dir => $dir);
#   $o->url('f/a.bin?reset=1');  $o->ranges('/f/a.bin');  $o->hooks('op');

use strict;
use warnings;

use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes ();

my $OWNER = $$;
my @ALL;
my $JSON = JSON::PP->new->utf8->canonical;

my @DAYS = qw(Sun Mon Tue Wed Thu Fri Sat);
my @MONTHS = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);

sub _http_date {
    my @t = gmtime(shift);
    return sprintf('%s, %02d %s %04d %02d:%02d:%02d GMT', $DAYS[$t[6]],
                   $t[3], $MONTHS[$t[4]], $t[5] + 1900, $t[2], $t[1], $t[0]);
}

sub start {
    my ($class, %o) = @_;
    my $dir = $o{dir} or die "FlakyOrigin->start: dir => ... needed";
    my $tmp = MediaTest::tempdir('flaky');
    my $sock = IO::Socket::INET->new(Listen => 128, LocalAddr => '127.0.0.1',
                                     LocalPort => 0, Proto => 'tcp',
                                     ReuseAddr => 1)
        or die "FlakyOrigin: listen: $!";
    my $self = bless { dir => $dir, tmp => $tmp, port => $sock->sockport },
                     $class;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        MediaTest::detach_child($tmp);
        $SIG{CHLD} = 'IGNORE';
        $SIG{PIPE} = 'IGNORE';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        while (1) {
            my $c = $sock->accept or next;
            my $kid = fork;
            if (defined $kid && $kid == 0) {
                close $sock;
                eval { $self->_serve($c) };
                print STDERR "FlakyOrigin: $@" if $@;
                POSIX::_exit(0);
            }
            close $c;
        }
    }
    close $sock;
    $self->{pid} = $pid;
    push @ALL, $self;
    return $self;
}

sub port { $_[0]{port} }

sub url {
    my ($self, $path) = @_;
    $path =~ s{^/}{};
    return "http://127.0.0.1:$self->{port}/$path";
}

# --- the server side (a child per connection) ---

sub _count {
    my ($self, $key) = @_;
    $key =~ s/[^A-Za-z0-9]/_/g;
    my $f = "$self->{tmp}/count-$key";
    open(my $fh, '+>>', $f) or die "$f: $!";
    flock($fh, LOCK_EX);
    seek($fh, 0, 0);
    my $n = <$fh> // 0;
    chomp $n;
    $n = 0 if $n eq '';
    truncate($fh, 0);
    print $fh $n + 1, "\n";
    close $fh;
    return $n + 1;          # this request's number for the key
}

sub _log {
    my ($self, $line) = @_;
    sysopen(my $fh, "$self->{tmp}/access.log", O_WRONLY | O_APPEND | O_CREAT)
        or return;
    syswrite($fh, "$line\n");
    close $fh;
}

sub _reply {
    my ($c, $status, $headers, $body) = @_;
    my %reason = (200 => 'OK', 206 => 'Partial Content', 302 => 'Found',
                  403 => 'Forbidden', 404 => 'Not Found', 410 => 'Gone',
                  416 => 'Range Not Satisfiable', 429 => 'Too Many Requests',
                  500 => 'Internal Server Error', 503 => 'Service Unavailable');
    my $h = "HTTP/1.1 $status " . ($reason{$status} // 'Status') . "\r\n";
    $h .= "$_->[0]: $_->[1]\r\n" for @$headers;
    $h .= "Connection: close\r\n\r\n";
    syswrite($c, $h . ($body // ''));
}

sub _serve {
    my ($self, $c) = @_;
    my $req = '';
    while ($req !~ /\r\n\r\n/) {
        my $n = sysread($c, $req, 65536, length $req);
        return unless $n;
        return if length $req > 1_000_000;
    }
    my ($head, $rest) = split /\r\n\r\n/, $req, 2;
    my ($line, @lines) = split /\r\n/, $head;
    my ($method, $uri) = $line =~ m{^(\S+) (\S+) HTTP/} or return;
    my %h;
    for (@lines) { $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/ }
    my ($path, $query) = split /\?/, $uri, 2;
    my %q;
    for (split /&/, $query // '') {
        my ($k, $v) = split /=/, $_, 2;
        $v //= '';
        $v =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
        $q{$k} = $v;
    }
    my $range = $h{range} // '-';
    my $ifr = $h{'if-range'} // '-';
    my $logit = sub { $self->_log(join "\t", $method, $uri, $range, $ifr,
                                   $_[0]) };

    if ($method eq 'POST' && $path =~ m{^/hook/(\w+)$}) {
        my $name = $1;
        my $len = $h{'content-length'} // 0;
        while (length $rest < $len) {
            my $n = sysread($c, $rest, $len - length $rest, length $rest);
            last unless $n;
        }
        my $nth = $self->_count("hook $uri");
        my $status = $nth <= ($q{fail} // 0) ? 500 : 200;
        sysopen(my $fh, "$self->{tmp}/hooks-$name.log",
                O_WRONLY | O_APPEND | O_CREAT) or die;
        syswrite($fh, $JSON->encode({ headers => \%h, body => $rest,
                                      status => $status, time => time })
                      . "\n");
        close $fh;
        $logit->($status);
        _reply($c, $status, [ [ 'Content-Type', 'text/plain' ],
                              [ 'Content-Length', 3 ] ], "ok\n");
        return;
    }

    if ($path =~ m{^/status/(\d{3})$}) {
        $logit->($1);
        _reply($c, $1, [ [ 'Content-Length', 6 ] ], "status");
        return;
    }

    if ($path =~ m{^/redirect/(.+)$}) {
        my $to = "/f/$1" . (defined $query ? "?$query" : '');
        $logit->(302);
        _reply($c, 302, [ [ 'Location', $to ], [ 'Content-Length', 0 ] ]);
        return;
    }

    my ($file) = $path =~ m{^/f/(.+)$};
    if (!defined $file || $file =~ /\.\./ || !-f "$self->{dir}/$file") {
        $logit->(404);
        _reply($c, 404, [ [ 'Content-Length', 9 ] ], "not found");
        return;
    }

    my $nth = $self->_count("get $uri");

    if ($q{fail} && $nth <= ($q{times} // 1)) {
        my @hh = ([ 'Content-Length', 4 ]);
        push @hh, [ 'Retry-After', 1 ] if $q{fail} == 429 || $q{fail} == 503;
        $logit->($q{fail});
        _reply($c, $q{fail}, \@hh, "fail");
        return;
    }

    my $fpath = "$self->{dir}/$file";
    my @st = stat $fpath;
    my $size = $st[7];
    my $etag = sprintf('"%x-%x"', $size, $st[9]);
    my $lm = _http_date($st[9]);

    my ($from, $to) = (0, $size - 1);
    my $status = 200;
    if (!$q{norange} && defined $h{range}
        && $h{range} =~ /^bytes=(\d+)-(\d*)$/)
    {
        my ($a, $b) = ($1, $2);
        my $ok = 1;
        if (defined $h{'if-range'}) {
            $ok = $h{'if-range'} eq $etag || $h{'if-range'} eq $lm;
        }
        if ($ok) {
            if ($a >= $size) {
                $logit->(416);
                _reply($c, 416, [ [ 'Content-Range', "bytes */$size" ],
                                  [ 'Content-Length', 0 ] ]);
                return;
            }
            ($from, $to) = ($a, $b ne '' && $b < $size ? $b : $size - 1);
            $status = 206;
        }
    }

    my @hh = ([ 'Content-Type', 'application/octet-stream' ],
              [ 'Content-Length', $to - $from + 1 ],
              [ 'Accept-Ranges', $q{norange} ? 'none' : 'bytes' ]);
    push @hh, [ 'ETag', $etag ], [ 'Last-Modified', $lm ]
        unless $q{novalidators};
    push @hh, [ 'Content-Range', "bytes $from-$to/$size" ] if $status == 206;
    push @hh, [ 'Content-Disposition', "attachment; filename=\"$q{cd}\"" ]
        if defined $q{cd};
    $logit->($status);
    _reply($c, $status, \@hh);

    my $len = $to - $from + 1;
    my $cut = $len;
    my $mode = '';
    if ($q{reset} && $nth <= $q{reset}) {
        $cut = int($len / 2);
        $mode = 'reset';
    } elsif ($q{stall} && $nth <= $q{stall}) {
        $cut = int($len / 3);
        $mode = 'stall';
    }

    open(my $fh, '<:raw', $fpath) or return;
    seek($fh, $from, 0);
    my $sent = 0;
    my $chunk = $q{rate} ? 65536 : 262144;
    my $t0 = Time::HiRes::time();
    while ($sent < $cut) {
        my $want = $cut - $sent < $chunk ? $cut - $sent : $chunk;
        my $n = sysread($fh, my $buf, $want) or last;
        my $off = 0;
        while ($off < $n) {
            my $w = syswrite($c, $buf, $n - $off, $off);
            return unless $w;
            $off += $w;
        }
        $sent += $n;
        if ($q{rate}) {
            my $due = $t0 + $sent / $q{rate};
            my $now = Time::HiRes::time();
            Time::HiRes::sleep($due - $now) if $due > $now;
        }
    }

    if ($mode eq 'reset') {
        # RST rather than FIN: the client sees a broken connection
        setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        close $c;
    } elsif ($mode eq 'stall') {
        sleep 600;
    }
}

# --- the test side ---

sub _lines {
    my ($self) = @_;
    open(my $fh, '<', "$self->{tmp}/access.log") or return ();
    my @l;
    while (<$fh>) {
        chomp;
        my ($m, $u, $r, $ir, $s) = split /\t/;
        next unless defined $s;
        push @l, { method => $m, uri => $u, range => $r eq '-' ? '' : $r,
                   if_range => $ir eq '-' ? '' : $ir, status => $s };
    }
    return @l;
}

# requests whose URI starts with $prefix ('/f/a.bin'), in order
sub requests {
    my ($self, $prefix) = @_;
    return grep { index($_->{uri}, $prefix) == 0 } $self->_lines;
}

# their Range headers ('' when none)
sub ranges {
    my ($self, $prefix) = @_;
    return map { $_->{range} } $self->requests($prefix);
}

# what /hook/<name> received: { headers, body, status, time } each
sub hooks {
    my ($self, $name) = @_;
    open(my $fh, '<', "$self->{tmp}/hooks-$name.log") or return ();
    return map { $JSON->decode($_) } <$fh>;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    local ($?, $!);
    kill 'TERM', -$pid;
    kill 'KILL', -$pid;
    waitpid($pid, 0);
}

sub DESTROY {
    my ($self) = @_;
    return if $$ != $OWNER;
    $self->stop;
}

END {
    return if $$ != $OWNER;
    local ($?, $!);
    $_->stop for grep { $_ } @ALL;
}

1;
