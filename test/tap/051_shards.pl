# Sharding: a table split over two more clusters as postgres_fdw foreign
# partitions (tst in the server's extensions option, async_capable) gives
# the same forecasts as a single node, and the per-series work runs on the
# shards. docs/scaling.md explains the setup.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $coordinator = PostgreSQL::Test::Cluster->new('coordinator');
my @shards = map { PostgreSQL::Test::Cluster->new("shard$_") } (0, 1);
foreach my $node ($coordinator, @shards)
{
	$node->init;
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION tst');
}

my $rows = q(
SELECT 's' || s, timestamptz '2024-01-01 00:00+00' + h * interval '1 hour',
       s + sin(h / 3.0) + 0.01 * ((h * 7 + s) % 11)
FROM generate_series(1, 40) AS s, generate_series(0, 199) AS h);

# The single-node copy, and one model trained on it.
$coordinator->safe_psql('postgres', qq(
CREATE TABLE readings_all (series text, ts timestamptz, value float8);
INSERT INTO readings_all $rows;
SELECT tst.train('m', 'readings_all', 'ts', 'value', 'series', 4,
  '{"context": 32, "patch_len": 8, "patch_stride": 8, "d_model": 8, "n_heads": 2,
    "n_layers": 1, "d_ff": 16, "epochs": 1, "max_windows_per_epoch": 64}');
));

# Every shard gets the same model row, since the final function runs there.
my $model = $coordinator->safe_psql('postgres', q(
SELECT format('INSERT INTO tst.models (name, version, config, weights, metrics) VALUES (%L, %s, %L, %L::bytea, %L)',
              name, version, config, weights, metrics)
FROM tst.models WHERE name = 'm'));
foreach my $shard (@shards)
{
	$shard->safe_psql('postgres', qq(
CREATE TABLE readings_part (series text, ts timestamptz, value float8);
$model;
));
}

# The partitioned table on the coordinator, one foreign partition per shard.
my $setup = q(CREATE EXTENSION postgres_fdw;
CREATE TABLE readings (series text, ts timestamptz, value float8) PARTITION BY HASH (series);
);
foreach my $i (0, 1)
{
	my $port = $shards[$i]->port;
	my $host = $shards[$i]->host;
	$setup .= qq(
CREATE SERVER shard$i FOREIGN DATA WRAPPER postgres_fdw
  OPTIONS (host '$host', port '$port', dbname 'postgres', extensions 'tst', async_capable 'true',
           use_remote_estimate 'true');
CREATE USER MAPPING FOR CURRENT_USER SERVER shard$i;
CREATE FOREIGN TABLE readings_$i PARTITION OF readings
  FOR VALUES WITH (MODULUS 2, REMAINDER $i) SERVER shard$i OPTIONS (table_name 'readings_part');
);
}
$setup .= "INSERT INTO readings $rows; ANALYZE readings;";
$coordinator->safe_psql('postgres', $setup);

foreach my $shard (@shards)
{
	my $count = $shard->safe_psql('postgres', 'SELECT count(DISTINCT series) FROM readings_part');
	cmp_ok($count, '>', 0, 'the shard holds some of the series');
}

my $pushdown = q(SET enable_partitionwise_aggregate = on;);

# The shards are scanned in parallel (async append), and the coordinator
# gathers the series and runs the model on them.
my $lateral = q(SELECT s.series, f.step, f.forecast, f.lower_bound, f.upper_bound
	FROM (SELECT series, tst.series_agg(ts, value) AS h FROM %s GROUP BY series) AS s,
	     LATERAL tst.forecast('m', s.h) AS f ORDER BY 1, 2);
my $plan = $coordinator->safe_psql('postgres',
	$pushdown . 'EXPLAIN (VERBOSE, COSTS OFF) ' . sprintf($lateral, 'readings'));
like($plan, qr/Async Foreign Scan/, 'the shards are scanned asynchronously');

my $single = $coordinator->safe_psql('postgres', sprintf($lateral, 'readings_all'));
isnt($single, '', 'the single node forecasts rows');
is($coordinator->safe_psql('postgres', $pushdown . sprintf($lateral, 'readings')),
	$single, 'series_agg and forecast: sharded results equal the single-node results');

# forecast_agg's model name is a text constant, whose collation postgres_fdw
# does not ship, so it aggregates on the coordinator; the results still match.
my $agg = q(SELECT series, tst.forecast_agg('m', ts, value) FROM %s GROUP BY series ORDER BY series);
is($coordinator->safe_psql('postgres', $pushdown . sprintf($agg, 'readings')),
	$coordinator->safe_psql('postgres', sprintf($agg, 'readings_all')),
	'forecast_agg: sharded results equal the single-node results');

# forecast_table reads the partitioned table through its series_agg query.
my $table = q(SELECT * FROM tst.forecast_table('m', '%s', 'ts', 'value', 'series'));
is($coordinator->safe_psql('postgres', $pushdown . sprintf($table, 'readings')),
	$coordinator->safe_psql('postgres', sprintf($table, 'readings_all')),
	'forecast_table: sharded results equal the single-node results');

# A view on each shard that forecasts there moves the model work too.
foreach my $shard (@shards)
{
	$shard->safe_psql('postgres', q(CREATE VIEW forecasts_part AS
		SELECT series, tst.forecast_agg('m', ts, value) AS forecast FROM readings_part GROUP BY series));
}
$coordinator->safe_psql('postgres', q(
CREATE TABLE forecasts (series text, forecast float8[]) PARTITION BY HASH (series);
CREATE FOREIGN TABLE forecasts_0 PARTITION OF forecasts
  FOR VALUES WITH (MODULUS 2, REMAINDER 0) SERVER shard0 OPTIONS (table_name 'forecasts_part');
CREATE FOREIGN TABLE forecasts_1 PARTITION OF forecasts
  FOR VALUES WITH (MODULUS 2, REMAINDER 1) SERVER shard1 OPTIONS (table_name 'forecasts_part');
));
is($coordinator->safe_psql('postgres', 'SELECT series, forecast FROM forecasts ORDER BY series'),
	$coordinator->safe_psql('postgres', sprintf($agg, 'readings_all')),
	'forecasts computed on the shards equal the single-node results');

$_->stop foreach ($coordinator, @shards);
done_testing();
