package ArchiveTest;

# Helpers of the archive tests (t/5x-archive*.t): random fixture files,
# waiting for an archive, downloading it, and checking a ZIP with two
# independent readers (Info-ZIP's `unzip -t` and Python's zipfile) against
# the origin's bytes.

use strict;
use warnings;

use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use Exporter 'import';
use File::Temp ();
use JSON::PP ();
use Test::More;

our @EXPORT_OK = qw(make_file sha_file wait_archive create_archive
                    fetch_zip check_zip verify_hook);

my $JSON = JSON::PP->new->utf8->canonical;

# make_file($path, $bytes): random content (openssl rand, fast)
sub make_file {
    my ($path, $bytes) = @_;
    system('openssl', 'rand', '-out', $path, $bytes) == 0
        or die "openssl rand $path: $?";
    chmod 0644, $path;
    return $path;
}

sub sha_file {
    my ($path) = @_;
    my $sha = Digest::SHA->new(256);
    $sha->addfile($path, 'b');
    return $sha->hexdigest;
}

# POST /api/archive/create; returns the hash (dies on anything but 200)
sub create_archive {
    my ($s, $token, $body) = @_;
    my $r = $s->req(POST => '/api/archive/create', token => $token,
                    json => $body);
    die "create: $r->{status} $r->{body}" unless $r->{status} == 200;
    return $r->{json}{archive_hash};
}

# polls the status until it is one of completed/failed (or $until->($st)
# is true); returns the last status JSON
sub wait_archive {
    my ($s, $token, $hash, $timeout, $until) = @_;
    my $st;
    $s->wait_for(sub {
        my $r = $s->req(GET => "/api/archive/status/$hash", token => $token);
        return 0 unless $r->{status} == 200 && $r->{json};
        $st = $r->{json};
        return $until ? $until->($st)
                      : $st->{status} =~ /^(completed|failed)$/;
    }, $timeout // 60);
    return $st;
}

# GET /archive/get/<hash>.zip into a temp file: ($response, $path)
sub fetch_zip {
    my ($s, $token, $hash, %o) = @_;
    my $r = $s->req(GET => "/archive/get/$hash.zip", token => $token,
                    headers => $o{headers} || {});
    my $tmp = File::Temp->new(SUFFIX => '.zip', UNLINK => 1);
    binmode $tmp;
    print $tmp $r->{body};
    close $tmp;
    $r->{file} = $tmp;          # keeps it alive
    return ($r, $tmp->filename);
}

# check_zip($path, [ [name, origin_file], ... ], $what): unzip -t passes,
# and Python's zipfile lists exactly these entries in this order with the
# origin's bytes (SHA-256), the UTF-8 flag on every entry, stored (no
# compression), and CRCs that zipfile verifies (testzip)
sub check_zip {
    my ($path, $want, $what) = @_;
    my $out = `unzip -t '$path' 2>&1`;
    ok($? == 0 && $out =~ /No errors detected/, "$what: unzip -t passes")
        or diag $out;

    my $py = <<'PY';
import hashlib, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
out = {"bad": bad, "entries": []}
for i in z.infolist():
    out["entries"].append({
        "name": i.filename,
        "sha": hashlib.sha256(z.read(i)).hexdigest(),
        "utf8": bool(i.flag_bits & 0x800),
        "stored": i.compress_type == zipfile.ZIP_STORED,
        "size": i.file_size})
print(json.dumps(out))
PY
    my $json = `python3 -c '$py' '$path' 2>&1`;
    my $got = eval { $JSON->decode($json) };
    ok($got, "$what: Python's zipfile reads it") or do { diag $json; return };
    ok(!defined $got->{bad}, "$what: zipfile testzip: every CRC matches");
    is_deeply([ map { $_->{name} } @{ $got->{entries} } ],
              [ map { $_->[0] } @$want ], "$what: entry names and order");
    is_deeply([ map { $_->{sha} } @{ $got->{entries} } ],
              [ map { sha_file($_->[1]) } @$want ],
              "$what: contents are the origin's bytes");
    ok(!grep({ !$_->{utf8} || !$_->{stored} } @{ $got->{entries} }),
       "$what: stored entries flagged UTF-8");
}

# a webhook request as FlakyOrigin recorded it: the signature checks out
sub verify_hook {
    my ($hook, $secret) = @_;
    my $ts = $hook->{headers}{'x-media-timestamp'} // '';
    my $sig = $hook->{headers}{'x-media-signature'} // '';
    my $want = 'sha256=' . hmac_sha256_hex("$ts.$hook->{body}", $secret);
    return $ts =~ /^\d+$/ && abs(time - $ts) < 300 && $sig eq $want;
}

1;
