# ALTER EXTENSION tst UPDATE from every earlier version to the default one:
#  - in a session that trained and forecast with the old version, the update
#    succeeds, the same forecasts come back, and tst.evaluate and tst.train
#    work in that session;
#  - the updated extension's objects equal a fresh install's: members,
#    function definitions, types, aggregates, tables, comments and the
#    extension's config tables. The comparison is checked to catch a missing
#    function, a changed volatility and a missing comment.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;

my $default = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'tst'});
my @earlier = split /\n/, $node->safe_psql('postgres', qq{
	SELECT version FROM pg_available_extension_versions
	WHERE name = 'tst' AND version <> '$default'
	ORDER BY string_to_array(version, '.')::int[]});
cmp_ok(scalar(@earlier), '>=', 1, 'at least one earlier version is installed');
diag("updating to $default from: @earlier");

# One line per property of every object of the extension, sorted.
my $catalog_sql = q{
WITH ext AS (SELECT * FROM pg_extension WHERE extname = 'tst'),
members AS (
	SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
	WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
ns AS (SELECT 'tst'::regnamespace::oid AS oid),
rels AS (SELECT c.oid FROM pg_class c, ns WHERE c.relnamespace = ns.oid)
SELECT line FROM (
	SELECT 'member ' || pg_describe_object(classid, objid, objsubid) AS line FROM members
	UNION ALL
	SELECT concat_ws(' | ', 'extension', e.extname, e.extrelocatable, e.extnamespace::regnamespace,
		(SELECT string_agg(c.cfg::regclass::text || ' where ' || c.cond, ', ' ORDER BY c.cfg::regclass::text)
		 FROM unnest(e.extconfig, e.extcondition) AS c(cfg, cond)))
	FROM ext e
	UNION ALL
	SELECT concat_ws(' | ', 'schema', n.nspname, n.nspacl, obj_description(n.oid, 'pg_namespace'))
	FROM pg_namespace n, ns WHERE n.oid = ns.oid
	UNION ALL
	SELECT concat_ws(' | ', 'function', p.oid::regprocedure, p.prokind, p.provolatile, p.proparallel,
		p.proisstrict, p.prosecdef, p.proleakproof, p.procost, p.prorows, p.proretset,
		pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), l.lanname, p.prosrc, p.probin,
		p.proconfig, p.proacl, p.prosupport::regproc,
		CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END,
		obj_description(p.oid, 'pg_proc'))
	FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang, ns WHERE p.pronamespace = ns.oid
	UNION ALL
	SELECT concat_ws(' | ', 'aggregate', a.aggfnoid::regprocedure, a.aggkind, a.aggnumdirectargs,
		a.aggtransfn::oid::regprocedure, a.aggfinalfn::oid::regprocedure,
		a.aggcombinefn::oid::regprocedure, a.aggserialfn::oid::regprocedure,
		a.aggdeserialfn::oid::regprocedure, a.aggmtransfn::oid::regprocedure,
		a.aggminvtransfn::oid::regprocedure, a.aggmfinalfn::oid::regprocedure,
		a.aggfinalextra, a.aggmfinalextra, a.aggfinalmodify, a.aggmfinalmodify,
		a.aggsortop::regoperator, a.aggtranstype::regtype, a.aggtransspace,
		a.aggmtranstype::regtype, a.aggmtransspace, a.agginitval, a.aggminitval)
	FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid, ns WHERE p.pronamespace = ns.oid
	UNION ALL
	SELECT concat_ws(' | ', 'type', t.oid::regtype, t.typlen, t.typbyval, t.typtype, t.typcategory,
		t.typispreferred, t.typdelim, t.typinput::oid::regprocedure, t.typoutput::oid::regprocedure,
		t.typreceive::oid::regprocedure, t.typsend::oid::regprocedure, t.typmodin::oid::regprocedure,
		t.typmodout::oid::regprocedure, t.typanalyze::oid::regprocedure,
		t.typsubscript::oid::regprocedure, t.typelem::regtype, t.typarray::regtype, t.typalign,
		t.typstorage, t.typnotnull, t.typbasetype::regtype, t.typcollation, t.typdefault, t.typacl,
		obj_description(t.oid, 'pg_type'))
	FROM pg_type t, ns WHERE t.typnamespace = ns.oid
	UNION ALL
	SELECT concat_ws(' | ', 'operator', o.oid::regoperator, o.oprkind, o.oprcanmerge, o.oprcanhash,
		o.oprresult::regtype, o.oprcode::oid::regprocedure, o.oprcom::regoperator,
		o.oprnegate::regoperator, o.oprrest::oid::regprocedure, o.oprjoin::oid::regprocedure)
	FROM pg_operator o, ns WHERE o.oprnamespace = ns.oid
	UNION ALL
	SELECT concat_ws(' | ', 'cast', c.castsource::regtype, c.casttarget::regtype,
		c.castfunc::regprocedure, c.castcontext, c.castmethod)
	FROM pg_cast c JOIN pg_type s ON s.oid = c.castsource JOIN pg_type t ON t.oid = c.casttarget, ns
	WHERE s.typnamespace = ns.oid OR t.typnamespace = ns.oid
	UNION ALL
	SELECT concat_ws(' | ', 'opclass', c.opcname, am.amname, c.opcintype::regtype, c.opcdefault,
		c.opckeytype::regtype)
	FROM pg_opclass c JOIN pg_am am ON am.oid = c.opcmethod, ns WHERE c.opcnamespace = ns.oid
	UNION ALL
	SELECT concat_ws(' | ', 'relation', c.oid::regclass, c.relkind, c.relpersistence, c.reloptions,
		c.relacl, c.relrowsecurity, c.relreplident, obj_description(c.oid, 'pg_class'),
		CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END)
	FROM pg_class c JOIN rels r ON r.oid = c.oid
	UNION ALL
	SELECT concat_ws(' | ', 'column', a.attrelid::regclass,
		row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum), a.attname,
		format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid),
		a.attidentity, a.attgenerated, a.attstorage, a.attcollation, a.attacl,
		col_description(a.attrelid, a.attnum))
	FROM pg_attribute a JOIN rels r ON r.oid = a.attrelid
	LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	WHERE a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT concat_ws(' | ', 'constraint', c.conrelid::regclass, c.contypid::regtype, c.conname,
		pg_get_constraintdef(c.oid), obj_description(c.oid, 'pg_constraint'))
	FROM pg_constraint c, ns WHERE c.connamespace = ns.oid
	UNION ALL
	SELECT concat_ws(' | ', 'index', pg_get_indexdef(i.indexrelid))
	FROM pg_index i JOIN rels r ON r.oid = i.indrelid
	UNION ALL
	SELECT concat_ws(' | ', 'trigger', pg_get_triggerdef(t.oid))
	FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
	UNION ALL
	SELECT concat_ws(' | ', 'policy', p.schemaname, p.tablename, p.policyname, p.permissive,
		p.roles, p.cmd, p.qual, p.with_check)
	FROM pg_policies p WHERE p.schemaname = 'tst'
	UNION ALL
	SELECT concat_ws(' | ', 'comment', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description)
	FROM pg_description d JOIN members m ON m.classid = d.classoid AND m.objid = d.objoid
) AS lines
ORDER BY line COLLATE "C"};

# The lines of $db's catalog description.
sub catalog_lines
{
	my ($db) = @_;
	return split /\n/, $node->safe_psql($db, $catalog_sql);
}

# Lines only in the fresh install ("-") or only in $db ("+").
sub catalog_diff
{
	my ($fresh, $db) = @_;
	my %in_fresh = map { $_ => 1 } @$fresh;
	my @lines = catalog_lines($db);
	my %in_db = map { $_ => 1 } @lines;
	return join("\n",
		(map { "- $_" } grep { !$in_db{$_} } @$fresh),
		(map { "+ $_" } grep { !$in_fresh{$_} } @lines));
}

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION tst');
my @fresh = catalog_lines('fresh');
cmp_ok(scalar(grep { /^function / } @fresh), '>=', 20, 'fresh install: functions described');
ok((grep { /^aggregate \| tst\.forecast_agg\(text,timestamp with time zone,double precision\) / } @fresh),
	'fresh install: aggregates described');
ok((grep { /^extension \| tst \| f \| tst \| tst\.models where / } @fresh),
	'fresh install: tst.models is a config table');

# Data, a model and the statements run before and after the update.
my $setup_sql = q{
SET client_min_messages = warning;
CREATE TABLE readings AS
SELECT 's' || s AS series, timestamptz '2024-01-01 00:00+00' + h * interval '1 hour' AS ts,
       s + sin(h * 2 * pi() / 24) AS value
FROM generate_series(1, 3) AS s, generate_series(0, 199) AS h;
CREATE TABLE hist AS SELECT series, tst.series_agg(ts, value) AS h FROM readings GROUP BY series;
SELECT tst.train('old', 'public.readings', 'ts', 'value', 'series', 6,
  '{"context": 48, "patch_len": 8, "patch_stride": 8, "d_model": 8, "n_heads": 2,
    "n_layers": 1, "d_ff": 16, "epochs": 2}')};
my $forecast_sql = q{
SELECT string_agg(concat_ws(',', series, step, forecast, lower_bound, upper_bound), ' ' ORDER BY series, step)
FROM hist, LATERAL tst.forecast('old', h);
SELECT string_agg(series || ':' || f::text, ' ' ORDER BY series)
FROM (SELECT series, tst.forecast_agg('old', ts, value) AS f FROM readings GROUP BY series) AS s;
SELECT count(*) FROM tst.forecast_table('old', 'public.readings', 'ts', 'value', 'series')};

foreach my $version (@earlier)
{
	(my $db = "update_$version") =~ s/\W/_/g;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM pg_extension_update_paths('tst')
		WHERE source = '$version' AND target = '$default' AND path IS NOT NULL}),
		'1', "$version: an update path to $default exists");

	# One session: install the old version, train and forecast, update, forecast again.
	my $session = $node->background_psql($db);
	$session->query_safe("CREATE EXTENSION tst VERSION '$version'");
	is($session->query_safe($setup_sql), '1', "$version: tst.train before the update");
	my $before = $session->query_safe($forecast_sql);
	like($before, qr/\n18$/, "$version: forecasts before the update");

	$session->query_safe('ALTER EXTENSION tst UPDATE');
	is($session->query_safe(q{SELECT extversion FROM pg_extension WHERE extname = 'tst'}),
		$default, "$version: updated to $default in the same session");
	is($session->query_safe($forecast_sql), $before, "$version: same forecasts after the update");
	is($session->query_safe(q{SELECT count(*) FROM tst.evaluate('old', 'public.readings', 'ts', 'value', 'series')
		WHERE method = 'model' AND windows > 0}),
		'4', "$version: tst.evaluate after the update (3 series and the overall row)");
	is($session->query_safe(q{SET client_min_messages = warning;
		SELECT tst.train('old', 'public.readings', 'ts', 'value', 'series', 6, '{"context": 48, "epochs": 1}')}),
		'2', "$version: tst.train after the update");
	$session->quit;

	my $diff = catalog_diff(\@fresh, $db);
	is($diff, '', "$version: updated objects equal a fresh install")
	  or diag("catalog lines that differ (- fresh install, + updated):\n$diff");
}

# The comparison fails when an update misses a function, a volatility or a comment.
{
	$node->safe_psql('postgres', 'CREATE DATABASE broken');
	$node->safe_psql('broken', "CREATE EXTENSION tst VERSION '$earlier[0]'; ALTER EXTENSION tst UPDATE");
	is(catalog_diff(\@fresh, 'broken'), '', 'broken: same as fresh before the damage');

	$node->safe_psql('broken', q{
		ALTER EXTENSION tst DROP FUNCTION tst.evaluate(text, text, text, text, text, integer, jsonb);
		DROP FUNCTION tst.evaluate(text, text, text, text, text, integer, jsonb)});
	like(catalog_diff(\@fresh, 'broken'), qr/^- member function tst\.evaluate\(/m,
		'broken: a missing function is reported');

	$node->safe_psql('broken', 'ALTER FUNCTION tst.series_length(tst.series) STABLE');
	like(catalog_diff(\@fresh, 'broken'), qr/^\+ function \| tst\.series_length\(tst\.series\) \| f \| s /m,
		'broken: a changed volatility is reported');

	$node->safe_psql('broken', 'COMMENT ON TABLE tst.models IS NULL');
	like(catalog_diff(\@fresh, 'broken'), qr/^- comment \| table tst\.models \| /m,
		'broken: a missing comment is reported');
}

$node->stop;
done_testing();
