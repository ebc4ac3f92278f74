# pg_dump and pg_restore: a database with models, a tst.series column and
# materialized views of forecasts restores into a fresh cluster with the
# same rows and the same forecasts. pg_restore runs every statement, the
# REFRESH of each materialized view included, with an empty search_path.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $source = PostgreSQL::Test::Cluster->new('dump_source');
$source->init;
$source->start;

$source->safe_psql('postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION tst;
CREATE TABLE readings AS
SELECT 's' || s AS series, timestamptz '2024-01-01 00:00+00' + h * interval '1 hour' AS ts,
       s + sin(h * 2 * pi() / 24) + 0.01 * ((h * 7 + s) % 11) AS value
FROM generate_series(1, 5) AS s, generate_series(0, 199) AS h;
CREATE TABLE hist (id integer PRIMARY KEY, h tst.series);
INSERT INTO hist
SELECT row_number() OVER (ORDER BY series), tst.series_agg(ts, value) FROM readings GROUP BY series;

SELECT tst.train('m', 'public.readings', 'ts', 'value', 'series', 6,
  '{"context": 48, "patch_len": 8, "patch_stride": 8, "d_model": 8, "n_heads": 2,
    "n_layers": 1, "d_ff": 16, "epochs": 2, "seed": 1}');
SELECT tst.train('m', 'public.readings', 'ts', 'value', 'series', 6,
  '{"context": 48, "patch_len": 8, "patch_stride": 8, "d_model": 8, "n_heads": 2,
    "n_layers": 1, "d_ff": 16, "epochs": 2, "seed": 2}');
SELECT tst.train('other', 'SELECT * FROM public.readings WHERE series <> ''s1''', 'ts', 'value', 'series', 4,
  '{"context": 32, "patch_len": 8, "patch_stride": 4, "d_model": 8, "n_heads": 2,
    "n_layers": 1, "d_ff": 16, "epochs": 1, "attention": "logsparse"}');

-- One materialized view per forecast function; the sources are schema-qualified.
CREATE MATERIALIZED VIEW mv_table AS
SELECT * FROM tst.forecast_table('m', 'public.readings', 'ts', 'value', 'series');
CREATE UNIQUE INDEX ON mv_table (series, step);
CREATE MATERIALIZED VIEW mv_agg AS
SELECT series, tst.forecast_agg('m@1', ts, value) AS f FROM readings GROUP BY series;
CREATE MATERIALIZED VIEW mv_lateral AS
SELECT id, f.* FROM hist, LATERAL tst.forecast('other', h, 3) AS f;
});

# Text of every object compared between the two clusters.
my %checks = (
	mv_table => 'SELECT * FROM mv_table ORDER BY series, step',
	mv_agg => 'SELECT * FROM mv_agg ORDER BY series',
	mv_lateral => 'SELECT * FROM mv_lateral ORDER BY id, step',
	models => q{SELECT name, version, md5(weights), config, metrics, created_at
		FROM tst.models ORDER BY name, version},
	hist => 'SELECT id, h FROM hist ORDER BY id',
	fresh_forecast_table => q{SELECT * FROM tst.forecast_table('m@2', 'public.readings', 'ts', 'value', 'series')
		ORDER BY series, step},
	fresh_forecast => q{SELECT id, f.* FROM hist, LATERAL tst.forecast('m@1', h) AS f ORDER BY id, step},
	extension => q{SELECT extversion FROM pg_extension WHERE extname = 'tst'},
);
my %before = map { $_ => $source->safe_psql('postgres', $checks{$_}) } keys %checks;
is(scalar(split /\n/, $before{mv_table}), 30, 'source: the forecast view has 5 series x 6 steps');

my $dump = $source->basedir . '/tst.dump';
command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $source->connstr('postgres') ], 'pg_dump');

my $target = PostgreSQL::Test::Cluster->new('dump_target');
$target->init;
$target->start;
$target->safe_psql('postgres', 'CREATE DATABASE restored');

my ($stdout, $stderr);
my $ok = IPC::Run::run([ 'pg_restore', '--exit-on-error', '-d', $target->connstr('restored'), $dump ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'pg_restore into a fresh cluster');
is($stderr, '', 'pg_restore reported nothing');

foreach my $name (sort keys %checks)
{
	is($target->safe_psql('restored', $checks{$name}), $before{$name}, "restored $name identical");
}

# The restored views refresh to the same rows.
$target->safe_psql('restored', q{
	REFRESH MATERIALIZED VIEW CONCURRENTLY mv_table;
	REFRESH MATERIALIZED VIEW mv_agg;
	REFRESH MATERIALIZED VIEW mv_lateral;
});
foreach my $name (qw(mv_table mv_agg mv_lateral))
{
	is($target->safe_psql('restored', $checks{$name}), $before{$name}, "refreshed $name identical");
}

# Training in the restored database continues the version numbers.
is($target->safe_psql('restored', q{SET client_min_messages = warning;
	SELECT tst.train('m', 'public.readings', 'ts', 'value', 'series', 6,
	  '{"context": 48, "patch_len": 8, "patch_stride": 8, "d_model": 8, "n_heads": 2,
	    "n_layers": 1, "d_ff": 16, "epochs": 1}')}), '3', 'restored: next training is version 3');

# A source without a schema resolves through the search_path when the view
# is refreshed, so under pg_restore's empty search_path it is not found.
$source->safe_psql('postgres', q{
	CREATE DATABASE unqualified;
});
$source->safe_psql('unqualified', q{
	SET client_min_messages = warning;
	CREATE EXTENSION tst;
	CREATE TABLE readings AS SELECT 'a' AS series, timestamptz '2024-01-01 00:00+00' + h * interval '1 hour' AS ts,
	       sin(h / 4.0) AS value FROM generate_series(0, 99) AS h;
	SELECT tst.train('u', 'readings', 'ts', 'value', 'series', 4,
	  '{"context": 16, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
	    "n_layers": 1, "d_ff": 16, "epochs": 1}');
	CREATE MATERIALIZED VIEW mv_unqualified AS
	SELECT * FROM tst.forecast_table('u', 'readings', 'ts', 'value', 'series');
});
my $dump2 = $source->basedir . '/unqualified.dump';
command_ok([ 'pg_dump', '-Fc', '-f', $dump2, '-d', $source->connstr('unqualified') ], 'pg_dump, unqualified source');
$target->safe_psql('postgres', 'CREATE DATABASE unqualified');
$ok = IPC::Run::run([ 'pg_restore', '-d', $target->connstr('unqualified'), $dump2 ],
	'>', \$stdout, '2>', \$stderr);
like($stderr, qr/relation "readings" does not exist/,
	'unqualified source: the REFRESH during pg_restore fails');
is($target->safe_psql('unqualified', q{SELECT count(*) FROM tst.models WHERE name = 'u'}), '1',
	'unqualified source: the model is restored');
is($target->safe_psql('unqualified', q{
	SET search_path = public;
	REFRESH MATERIALIZED VIEW mv_unqualified;
	SELECT count(*) FROM mv_unqualified}), '4',
	'unqualified source: the view refreshes once public is on the search_path');

$source->stop;
$target->stop;
done_testing();
