# Cancellation and memory: statement_timeout and pg_cancel_backend stop
# tst.train and a large tst.forecast_table quickly and release their memory,
# forecasting 100,000 groups keeps backend memory flat, and training memory
# does not grow from epoch to epoch.
#
# The one time bound asserted is the cancellation latency, at most 0.5 s
# from the cancel request (or the timeout) to the end of the statement.
# On the 2-core test machine it measured well under 0.1 s; see
# docs/reliability.md for the figures.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $cancel_bound = 0.5;

my $node = PostgreSQL::Test::Cluster->new('cancel_memory');
$node->init;
$node->append_conf('postgresql.conf',
	"work_mem = '4MB'\nmax_parallel_workers_per_gather = 0\nenable_hashagg = off\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tst');

# 100,000 groups of 30 hourly points, and a small model trained on two of them.
$node->safe_psql('postgres', q{
CREATE TABLE big AS
SELECT 'g' || (i % 100000) AS g,
       timestamptz '2024-01-01 00:00+00' + (i / 100000) * interval '1 hour' AS ts,
       sin(i * 0.001) AS v
FROM generate_series(0, 100000 * 30 - 1) AS i;
CREATE TABLE long_series AS
SELECT timestamptz '2020-01-01 00:00+00' + g * interval '1 hour' AS ts,
       sin(g * 2 * pi() / 24) + 0.001 * g AS v
FROM generate_series(0, 19999) AS g;
ANALYZE big;
SET client_min_messages = warning;
SELECT tst.train('small', 'SELECT * FROM big WHERE g IN (''g1'', ''g2'')', 'ts', 'v', 'g', 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 16, "epochs": 1, "validation_fraction": 0}');
});

# A training run that takes minutes unless stopped.
my $long_train = q{SELECT tst.train('long', 'long_series', 'ts', 'v', NULL, 24,
                   '{"epochs": 10000, "patience": 10000, "d_model": 64, "n_layers": 2}')};
my $big_forecast = q{SELECT count(*) FROM tst.forecast_table('small', 'big', 'ts', 'v', 'g')};

# Start psql in the background; returns the harness and its output buffers.
sub start_psql
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	return ($h, \$out, \$err);
}

# Wait until a query that contains $pattern runs, and return its backend pid.
sub running_pid
{
	my ($pattern) = @_;
	$pattern =~ s/'/''/g;
	for (my $i = 0; $i < 600; $i++)
	{
		my $pid = $node->safe_psql('postgres', qq{
			SELECT pid FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE '%$pattern%' AND pid <> pg_backend_pid()});
		return $pid if $pid ne '';
		sleep(0.05);
	}
	die "query with $pattern did not start";
}

# Anonymous resident memory of a process in kB (heap, not shared buffers).
sub rss_anon_kb
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	while (<$fh>)
	{
		return $1 if /^RssAnon:\s+(\d+) kB/;
	}
	return undef;
}

# Run $sql in the background, sample its backend's anonymous RSS every 20 ms,
# and return (peak kB, samples, stdout, stderr).
sub peak_memory
{
	my ($sql, $pattern) = @_;
	my ($h, $out, $err) = start_psql($sql);
	my $pid = running_pid($pattern);
	my ($peak, $samples) = (0, 0);
	while ($h->pumpable)
	{
		my $kb = rss_anon_kb($pid);
		if (defined $kb)
		{
			$peak = $kb if $kb > $peak;
			$samples++;
		}
		$h->pump_nb;
		sleep(0.02);
	}
	$h->finish;
	chomp(my $stdout = $$out);
	return ($peak, $samples, $stdout, $$err);
}

# Cancel a running statement with pg_cancel_backend after $delay seconds and
# return (seconds from the cancel to the end, stderr, backend pid).
sub cancel_after
{
	my ($sql, $pattern, $delay) = @_;
	my ($h, $out, $err) = start_psql($sql);
	my $pid = running_pid($pattern);
	sleep($delay);
	my $t0 = time();
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	$h->finish;
	return (time() - $t0, $$err, $pid);
}

# Run $sql with statement_timeout and return (seconds past the timeout, stderr).
sub timeout_after
{
	my ($sql, $timeout_ms) = @_;
	my $t0 = time();
	my ($ret, $stdout, $stderr) = $node->psql('postgres', "SET statement_timeout = $timeout_ms; $sql");
	return (time() - $t0 - $timeout_ms / 1000.0, $stderr);
}

my %latency;

# pg_cancel_backend during training.
my ($elapsed, $err) = cancel_after($long_train, "tst.train('long'", 1.5);
like($err, qr/canceling statement due to user request/, 'train: cancel reported');
cmp_ok($elapsed, '<', $cancel_bound, 'train: cancel within 0.5 s');
$latency{train_cancel} = $elapsed;

# statement_timeout during training.
($elapsed, $err) = timeout_after($long_train, 1500);
like($err, qr/canceling statement due to statement timeout/, 'train: timeout reported');
cmp_ok($elapsed, '<', $cancel_bound, 'train: timeout within 0.5 s');
$latency{train_timeout} = $elapsed;

# pg_cancel_backend during a forecast_table over 100,000 series.
($elapsed, $err) = cancel_after($big_forecast, "forecast_table('small'", 1.5);
like($err, qr/canceling statement due to user request/, 'forecast_table: cancel reported');
cmp_ok($elapsed, '<', $cancel_bound, 'forecast_table: cancel within 0.5 s');
$latency{forecast_cancel} = $elapsed;

# statement_timeout during the same forecast.
($elapsed, $err) = timeout_after($big_forecast, 1500);
like($err, qr/canceling statement due to statement timeout/, 'forecast_table: timeout reported');
cmp_ok($elapsed, '<', $cancel_bound, 'forecast_table: timeout within 0.5 s');
$latency{forecast_timeout} = $elapsed;

# Memory is released after a cancel: the same session cancelled five times
# in a row ends with the memory it had after the first cancel (within 8 MB).
{
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	my @after;
	for my $round (1 .. 5)
	{
		$session->query("SET statement_timeout = 700; $big_forecast");
		$session->query("SET statement_timeout = 700; $long_train");
		push @after, rss_anon_kb($pid);
	}
	my $contexts = $session->query(
		"SELECT count(*) FROM pg_backend_memory_contexts WHERE name IN ('tst train', 'tst forecast batch')");
	$session->quit;
	chomp($contexts);
	is($contexts, '0', 'cancel: no tst memory context left behind');
	cmp_ok($after[4] - $after[0], '<', 8 * 1024,
		'cancel: anonymous memory flat over five cancels');
	diag(sprintf('memory after each cancel round (kB): %s', join(' ', @after)));
}

# Forecasting 10,000 and 100,000 groups in one query: the peak anonymous
# memory of the backend differs by less than 64 MB, while the input grows by
# about 90 MB. forecast_table's source query sorts (series, ts, value) rows
# (enable_hashagg is off), and a plain ORDER BY of the same three columns
# grows by about 14 MB too, so tst's own growth is bounded against it.
{
	my ($peak_sort_small) = peak_memory(
		q{SELECT count(*) FROM (SELECT g, ts, v FROM big WHERE substr(g, 2)::int < 10000 ORDER BY g OFFSET 0) s},
		'ORDER BY g OFFSET 0');
	my ($peak_sort_large) = peak_memory(
		q{SELECT count(*) FROM (SELECT g, ts, v FROM big ORDER BY g OFFSET 0) s},
		'ORDER BY g OFFSET 0');
	my ($peak_small, $n_small, $out_small) = peak_memory(
		q{SELECT count(*) FROM tst.forecast_table('small', 'SELECT * FROM big WHERE substr(g, 2)::int < 10000', 'ts', 'v', 'g')},
		"forecast_table('small'");
	my ($peak_large, $n_large, $out_large) = peak_memory($big_forecast, "forecast_table('small'");
	is($out_large, '600000', 'memory: 100,000 groups forecast');
	cmp_ok($n_large, '>', 10, 'memory: enough samples');
	cmp_ok($peak_large - $peak_small, '<', 64 * 1024,
		'memory: 100,000 groups use no more than 10,000 groups plus 64 MB');
	cmp_ok(($peak_large - $peak_small) - ($peak_sort_large - $peak_sort_small), '<', 8 * 1024,
		'memory: forecast_table grows at most 8 MB more than a plain sort');
	diag("forecast_table peak RssAnon: ${peak_small} kB for ~10,000 groups, ${peak_large} kB for 100,000 groups");
	diag("plain ORDER BY peak RssAnon: ${peak_sort_small} kB for ~10,000 groups, ${peak_sort_large} kB for 100,000 groups");

	# enable_hashagg is off in this cluster, so GROUP BY sorts and each
	# group's state is freed after its forecast.
	my ($peak_agg_small) = peak_memory(
		q{SELECT count(f) FROM (SELECT g, tst.forecast_agg('small', ts, v) AS f FROM big WHERE substr(g, 2)::int < 10000 GROUP BY g) s},
		'forecast_agg');
	my ($peak_agg, $n_agg, $out_agg, $err_agg) = peak_memory(
		q{SELECT count(f) FROM (SELECT g, tst.forecast_agg('small', ts, v) AS f FROM big GROUP BY g) s},
		'forecast_agg');
	is($out_agg, '100000', 'memory: forecast_agg over 100,000 groups') or diag($err_agg);
	cmp_ok($peak_agg - $peak_agg_small, '<', 64 * 1024,
		'memory: forecast_agg over 100,000 groups stays flat');
	diag("forecast_agg peak RssAnon: ${peak_agg_small} kB for ~10,000 groups, ${peak_agg} kB for 100,000 groups");
}

# Training memory does not grow from epoch to epoch: sample the backend's
# anonymous memory at each epoch NOTICE and compare the last with the second.
{
	my ($h, $out, $err) = start_psql(q{SELECT tst.train('epochs', 'long_series', 'ts', 'v', NULL, 24,
		'{"epochs": 12, "patience": 100, "max_windows_per_epoch": 3000}')});
	my $pid = running_pid("tst.train('epochs'");
	my @per_epoch;
	my $seen = 0;
	while ($h->pumpable)
	{
		$h->pump_nb;
		my $count = () = $$err =~ /NOTICE:  epoch/g;
		if ($count > $seen)
		{
			$seen = $count;
			push @per_epoch, rss_anon_kb($pid) // 0;
		}
		sleep(0.01);
	}
	$h->finish;
	is($seen, 12, 'training: twelve epochs ran');
	cmp_ok($per_epoch[-1] - $per_epoch[1], '<', 4 * 1024,
		'training: memory from epoch 2 to 12 grows by less than 4 MB');
	diag(sprintf('training RssAnon per epoch (kB): %s', join(' ', @per_epoch)));
}

# The server survived everything above.
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server alive');
diag(join(', ', map { sprintf('%s %.3f s', $_, $latency{$_}) } sort keys %latency));

$node->stop;
done_testing();
