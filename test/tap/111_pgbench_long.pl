# pgbench: 8 clients forecast for 60 s with no error. Prints the throughput
# and the latency percentiles, read from pgbench's per-transaction log.
# Runs only with TST_TEST_LONG=1, which make test-long sets.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

plan skip_all => 'the 60 s pgbench run needs TST_TEST_LONG=1 (make test-long)'
  unless $ENV{TST_TEST_LONG};

my $clients = 8;
my $seconds = 60;

my $node = PostgreSQL::Test::Cluster->new('pgbench');
$node->init;
$node->append_conf('postgresql.conf', "max_parallel_workers_per_gather = 0\n");
$node->start;

# 50 hourly series of 400 points, their tst.series, and a model with the
# default context of 96 steps and a horizon of 24.
$node->safe_psql('postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION tst;
CREATE TABLE readings AS
SELECT s AS series, timestamptz '2024-01-01 00:00+00' + h * interval '1 hour' AS ts,
       s + sin(h * 2 * pi() / 24) + 0.01 * ((h * 7 + s) % 11) AS value
FROM generate_series(1, 50) AS s, generate_series(0, 399) AS h;
CREATE INDEX ON readings (series);
CREATE TABLE hist AS SELECT series AS id, tst.series_agg(ts, value) AS h FROM readings GROUP BY series;
CREATE UNIQUE INDEX ON hist (id);
ANALYZE;
SELECT tst.train('bench', 'public.readings', 'ts', 'value', 'series', 24,
  '{"context": 96, "patch_len": 16, "patch_stride": 8, "d_model": 32, "n_heads": 4,
    "n_layers": 2, "d_ff": 64, "epochs": 1, "max_windows_per_epoch": 512}');
});

# Two transaction types, 3:1: tst.forecast on a stored tst.series, and
# tst.forecast_agg over one series' rows.
my $dir = $node->basedir;
my %scripts = (
	forecast => "\\set id random(1, 50)\nSELECT count(*) FROM tst.forecast('bench', (SELECT h FROM hist WHERE id = :id));\n",
	forecast_agg => "\\set id random(1, 50)\nSELECT tst.forecast_agg('bench', ts, value) FROM readings WHERE series = :id;\n",
);
foreach my $name (keys %scripts)
{
	open(my $fh, '>', "$dir/$name.sql") or die "cannot write $dir/$name.sql: $!";
	print $fh $scripts{$name};
	close($fh);
}

my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[ 'pgbench', '-n', '-M', 'prepared', '-c', $clients, '-j', 2, '-T', $seconds, '-P', 10,
	  '--log', "--log-prefix=$dir/txlog",
	  '-f', "$dir/forecast.sql\@3", '-f', "$dir/forecast_agg.sql\@1",
	  $node->connstr('postgres') ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'pgbench exited with status 0') or diag($stderr);
like($stdout, qr/number of failed transactions: 0 /, 'pgbench: no failed transaction');
unlike($stderr, qr/aborted|ERROR/, 'pgbench: no client aborted');
my ($tps) = $stdout =~ /tps = ([\d.]+)/;
ok(defined $tps && $tps > 0, 'pgbench: transactions ran');

# Per-transaction log lines: client, transaction, latency in us, script, epoch s, us.
my (%latencies, $lines);
foreach my $file (glob("$dir/txlog.*"))
{
	open(my $fh, '<', $file) or die "cannot read $file: $!";
	while (<$fh>)
	{
		my @f = split;
		$lines++;
		push @{ $latencies{ $f[3] } }, $f[2];
		push @{ $latencies{all} }, $f[2];
	}
	close($fh);
}
my ($processed) = $stdout =~ /number of transactions actually processed: (\d+)/;
is($lines, $processed, 'pgbench: one log line per transaction');
is(scalar(grep { !/^\d+$/ } @{ $latencies{all} }), 0, 'pgbench: every logged transaction succeeded');

# Latency percentiles in ms, nearest rank.
sub percentiles
{
	my @sorted = sort { $a <=> $b } @_;
	return join(', ', map {
		my $rank = int($_ / 100 * $#sorted + 0.5);
		sprintf('p%s %.2f ms', $_, $sorted[$rank] / 1000)
	} (50, 90, 95, 99, 100));
}
diag("pgbench -c $clients -j 2 -T $seconds, PostgreSQL " . $node->pg_version . ", " . `nproc`);
diag($stdout);
diag("all: " . percentiles(@{ $latencies{all} }));
diag("tst.forecast (script 0): " . percentiles(@{ $latencies{0} }));
diag("tst.forecast_agg (script 1): " . percentiles(@{ $latencies{1} }));

$node->stop;
done_testing();
