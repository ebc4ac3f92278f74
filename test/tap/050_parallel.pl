# Parallel query: forecasts under max_parallel_workers_per_gather = 2 equal
# those without workers, and the plans really are parallel.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('parallel');
$node->init;
$node->append_conf('postgresql.conf', qq(
max_worker_processes = 8
max_parallel_workers = 4
));
$node->start;

$node->safe_psql('postgres', q(
CREATE EXTENSION tst;
CREATE TABLE readings (series text, ts timestamptz, value float8);
INSERT INTO readings
SELECT 's' || s, timestamptz '2024-01-01 00:00+00' + h * interval '1 hour',
       s + sin(h / 3.0) + 0.01 * ((h * 7 + s) % 11)
FROM generate_series(1, 120) AS s, generate_series(0, 199) AS h;
ANALYZE readings;
CREATE TABLE readings_part (series text, ts timestamptz, value float8) PARTITION BY HASH (series);
CREATE TABLE readings_part_0 PARTITION OF readings_part FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE readings_part_1 PARTITION OF readings_part FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE readings_part_2 PARTITION OF readings_part FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE readings_part_3 PARTITION OF readings_part FOR VALUES WITH (MODULUS 4, REMAINDER 3);
INSERT INTO readings_part SELECT * FROM readings;
ANALYZE readings_part;
SELECT tst.train('m', 'readings', 'ts', 'value', 'series', 4,
  '{"context": 32, "patch_len": 8, "patch_stride": 8, "d_model": 8, "n_heads": 2,
    "n_layers": 1, "d_ff": 16, "epochs": 1, "max_windows_per_epoch": 64}');
));

# Settings that make the planner choose a parallel plan on a small table.
my $parallel = q(
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
);
my $serial = q(SET max_parallel_workers_per_gather = 0;);

my %queries = (
	forecast_agg => q(SELECT series, tst.forecast_agg('m', ts, value)
		FROM readings GROUP BY series ORDER BY series),
	lateral_forecast => q(SELECT s.series, f.step, f.forecast, f.lower_bound, f.upper_bound
		FROM (SELECT series, tst.series_agg(ts, value) AS h FROM readings GROUP BY series) AS s,
		     LATERAL tst.forecast('m', s.h) AS f ORDER BY 1, 2),
);

foreach my $name (sort keys %queries)
{
	my $query = $queries{$name};
	my $plan = $node->safe_psql('postgres', "$parallel EXPLAIN (COSTS OFF) $query");
	like($plan, qr/Partial (Hash|Group)?Aggregate/, "$name: the plan has a partial aggregate");
	like($plan, qr/Parallel Seq Scan/, "$name: the plan has a parallel scan");

	my $with_workers = $node->safe_psql('postgres', "$parallel $query");
	my $without = $node->safe_psql('postgres', "$serial $query");
	isnt($without, '', "$name: forecasts rows");
	is($with_workers, $without, "$name: identical results with and without workers");
}

# On a table partitioned by series, each partition is aggregated whole in
# one process, so the final function (and the model) runs in the workers.
my $partitioned = q(SELECT series, tst.forecast_agg('m', ts, value)
	FROM readings_part GROUP BY series ORDER BY series);
my $partitionwise = q(SET enable_partitionwise_aggregate = on;);
my $plan = $node->safe_psql('postgres', "$parallel $partitionwise EXPLAIN (COSTS OFF) $partitioned");
like($plan, qr/Parallel Append/, 'partitioned forecast_agg: the plan has a parallel append');
is($node->safe_psql('postgres', "$parallel $partitionwise $partitioned"),
	$node->safe_psql('postgres', "$serial $queries{forecast_agg}"),
	'partitioned forecast_agg: identical results to the plain table');

# forecast_table runs its source query to completion, so it may be parallel.
my $table = q(SELECT * FROM tst.forecast_table('m', 'readings', 'ts', 'value', 'series'));
is($node->safe_psql('postgres', "$parallel $table"),
	$node->safe_psql('postgres', "$serial $table"),
	'forecast_table: identical results with and without workers');

# Two engine threads in the backend (OpenBLAS and the other kernels) give
# the same numbers as one.
is($node->safe_psql('postgres', "SET tst.blas_threads = 2; $table"),
	$node->safe_psql('postgres', "SET tst.blas_threads = 1; $table"),
	'forecast_table: identical results with 1 and 2 engine threads');

# auto_explain logs the plan of forecast_table's own source query.
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', qq(
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
$parallel
$table));
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/tst\.series_agg.*?Workers Launched: [12].*?Parallel Seq Scan on readings/s,
	'forecast_table: the source query ran with parallel workers');

# Workers really ran: EXPLAIN ANALYZE reports launched workers.
my $analyze = $node->safe_psql('postgres',
	"$parallel EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) $queries{forecast_agg}");
like($analyze, qr/Workers Launched: [12]/, 'parallel workers were launched');

$node->stop;
done_testing();
