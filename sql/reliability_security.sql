-- Privileges and search_path: tst functions run with the caller's
-- privileges, a role needs INSERT on tst.models to train and SELECT on it to
-- forecast, hostile objects in public change nothing, and source and column
-- arguments cannot inject SQL.
SET client_min_messages = warning;
SET TimeZone = 'UTC';

CREATE TABLE sec_data AS
SELECT 'm' || (g % 2) AS meter,
       timestamptz '2024-01-01 00:00+00' + (g / 2) * interval '1 hour' AS ts,
       sin((g / 2) * 2 * pi() / 24) + (g % 2) AS v
FROM generate_series(0, 2 * 200 - 1) AS g;
SELECT tst.train('sec_model', 'sec_data', 'ts', 'v', 'meter', 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 16, "epochs": 1, "seed": 5}');
CREATE TABLE sec_reference AS
SELECT * FROM tst.forecast_table('sec_model', 'sec_data', 'ts', 'v', 'meter');

--
-- Hostile objects in public that shadow what the extension calls, with
-- public searched before pg_catalog. Each one records its call in sec_calls.
--
CREATE TABLE sec_calls (what text);
GRANT INSERT ON sec_calls TO PUBLIC;
CREATE FUNCTION public.sec_text_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('text ='); RETURN true; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.sec_text_eq);
CREATE FUNCTION public.sec_int_eq(a integer, b integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('integer ='); RETURN true; END $$;
CREATE OPERATOR public.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.sec_int_eq);
CREATE FUNCTION public.sec_int_plus(a integer, b integer) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('integer +'); RETURN 1000; END $$;
CREATE OPERATOR public.+ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.sec_int_plus);
CREATE FUNCTION public.hashtext(text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('hashtext'); RETURN 0; END $$;
CREATE FUNCTION public.pg_advisory_xact_lock(integer, integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('pg_advisory_xact_lock'); END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('now'); RETURN '2000-01-01'; END $$;
CREATE FUNCTION public.sec_max_step(integer, integer) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('max'); RETURN 1000; END $$;
CREATE AGGREGATE public.max(integer) (SFUNC = public.sec_max_step, STYPE = integer);
CREATE FUNCTION public.sec_count_step(bigint, float8) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('count'); RETURN 0; END $$;
CREATE AGGREGATE public.count(float8) (SFUNC = public.sec_count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION public.series_agg(timestamptz, float8) RETURNS tst.series LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('series_agg'); RETURN '{}'; END $$;
CREATE FUNCTION public.timestamptz(timestamptz) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sec_calls VALUES ('timestamptz cast'); RETURN $1; END $$;

SET search_path = public, pg_catalog;
SELECT tst.train('sec_model', 'sec_data', 'ts', 'v', 'meter', 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 16, "epochs": 1, "seed": 5}') AS version;
CREATE TABLE sec_shadowed AS
SELECT * FROM tst.forecast_table('sec_model@1', 'sec_data', 'ts', 'v', 'meter');
CREATE TABLE sec_agg AS
SELECT meter, tst.forecast_agg('sec_model@1', ts, v) AS f FROM sec_data GROUP BY meter;
RESET search_path;
SELECT count(*) AS hostile_calls FROM sec_calls;
-- the version written under the hostile path is 2, with a fresh timestamp
SELECT version, created_at > '2020-01-01' AS real_now FROM tst.models WHERE name = 'sec_model' ORDER BY version;
-- Batched and one-series forecasts may differ in the last bits on some
-- CPUs' OpenBLAS kernels, so they are compared within 1e-5 relative.
SELECT count(*) AS rows,
       count(*) FILTER (WHERE abs(r.forecast - s.forecast) <= 1e-5 * greatest(1, abs(r.forecast))) AS same
FROM sec_reference r JOIN sec_shadowed s USING (series, step);
SELECT meter, (SELECT bool_and(abs(x - y) <= 1e-5 * greatest(1, abs(y)))
               FROM unnest(f, (SELECT array_agg(forecast ORDER BY step) FROM sec_reference
                               WHERE series = meter)) AS u(x, y)) AS same
FROM sec_agg ORDER BY meter;
-- the weights of both versions are the same, bit for bit (same seed)
SELECT count(DISTINCT weights) AS distinct_weights FROM tst.models WHERE name = 'sec_model';

--
-- Roles: a reader may forecast but not train, a role without SELECT on
-- tst.models may not forecast, and a role cannot read a source that it has
-- no privilege on through tst.train or tst.forecast_table.
--
CREATE ROLE regress_tst_reader;
CREATE ROLE regress_tst_trainer;
CREATE ROLE regress_tst_nobody;
GRANT USAGE ON SCHEMA tst TO regress_tst_reader, regress_tst_trainer, regress_tst_nobody;
GRANT SELECT ON tst.models TO regress_tst_reader, regress_tst_trainer;
GRANT INSERT ON tst.models TO regress_tst_trainer;
GRANT SELECT ON sec_data TO regress_tst_reader, regress_tst_trainer;
CREATE TABLE sec_private AS SELECT * FROM sec_data;

SET ROLE regress_tst_reader;
SELECT count(*) AS rows FROM tst.forecast_table('sec_model', 'sec_data', 'ts', 'v', 'meter');
SELECT tst.train('sec_reader_model', 'sec_data', 'ts', 'v', 'meter', 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "epochs": 1}');
INSERT INTO tst.models SELECT 'sec_forged', 1, config, weights FROM tst.models WHERE name = 'sec_model' AND version = 1;
UPDATE tst.models SET weights = '' WHERE name = 'sec_model';
DELETE FROM tst.models WHERE name = 'sec_model';
SELECT count(*) FROM tst.forecast_table('sec_model', 'sec_private', 'ts', 'v', 'meter');
SELECT count(*) FROM tst.forecast_table('sec_model', 'SELECT * FROM sec_private', 'ts', 'v', 'meter');
RESET ROLE;

SET ROLE regress_tst_trainer;
SELECT tst.train('sec_trainer_model', 'sec_data', 'ts', 'v', 'meter', 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 16, "epochs": 1}') AS version;
SELECT tst.train('sec_trainer_model', 'sec_private', 'ts', 'v', 'meter', 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "epochs": 1}');
RESET ROLE;

SET ROLE regress_tst_nobody;
SELECT count(*) FROM tst.forecast('sec_model', '{"2024-01-01 00:00+00": 1, "2024-01-01 01:00+00": 2}');
SELECT tst.series_agg(ts, v) IS NOT NULL AS series_works
FROM (VALUES (timestamptz '2024-01-01', 1.0::float8)) AS t(ts, v);
RESET ROLE;

SELECT name, count(*) FROM tst.models WHERE name LIKE 'sec\_%' GROUP BY name ORDER BY name;
-- nothing in the extension is SECURITY DEFINER or owned by a non-superuser
SELECT count(*) AS security_definer FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid
JOIN pg_extension e ON e.oid = d.refobjid
WHERE e.extname = 'tst' AND d.deptype = 'e' AND p.prosecdef;

--
-- Injection: a source that is not a query is looked up as a relation name,
-- column names are quoted identifiers, and a query source must be one
-- SELECT. None of these runs the DROP.
--
SELECT tst.train('sec_x', 'sec_data; DROP TABLE sec_private', 'ts', 'v');
SELECT count(*) FROM tst.forecast_table('sec_model', 'sec_data', 'ts); DROP TABLE sec_private; --', 'v');
SELECT count(*) FROM tst.forecast_table('sec_model', 'sec_data', 'ts', 'v"); DROP TABLE sec_private; --');
SELECT count(*) FROM tst.forecast_table('sec_model', 'sec_data', 'ts', 'v', 'meter" FROM sec_data; DROP TABLE sec_private; --');
SELECT count(*) FROM tst.forecast_table('sec_model', 'SELECT * FROM sec_data) AS s; DROP TABLE sec_private; --', 'ts', 'v');
SELECT count(*) FROM tst.forecast_table('sec_model', 'SELECT * FROM sec_data; DROP TABLE sec_private', 'ts', 'v');
SELECT count(*) FROM tst.forecast_table('sec_model', 'SELECT ts, v FROM sec_data) AS tst_source; DROP TABLE sec_private; --', 'ts', 'v');
SELECT tst.train('sec_x', 'SELECT ts, v FROM sec_data) AS tst_source; DROP TABLE sec_private; --', 'ts', 'v');
SELECT count(*) FROM tst.forecast_table('sec_model', 'WITH d AS (DELETE FROM sec_private RETURNING *) SELECT * FROM d', 'ts', 'v');
SELECT tst.train('sec_x', 'WITH d AS (DELETE FROM sec_private RETURNING *) SELECT * FROM d', 'ts', 'v');
SELECT count(*) FROM tst.forecast('sec_model''; DROP TABLE sec_private; --', '{}');
SELECT count(*) AS private_rows FROM sec_private;
-- quoted mixed-case and odd names work as names, not as SQL
CREATE TABLE "sec Odd ""Name""" AS SELECT ts AS "Time; --", v AS "v""x", meter AS "M" FROM sec_data;
SELECT count(*) AS rows FROM tst.forecast_table('sec_model', 'public."sec Odd ""Name"""', 'Time; --', 'v"x', 'M');

DROP OWNED BY regress_tst_reader, regress_tst_trainer, regress_tst_nobody;
DROP ROLE regress_tst_reader, regress_tst_trainer, regress_tst_nobody;
DROP OPERATOR public.= (text, text);
DROP OPERATOR public.= (integer, integer);
DROP OPERATOR public.+ (integer, integer);
DROP FUNCTION public.hashtext(text), public.pg_advisory_xact_lock(integer, integer), public.now(),
              public.series_agg(timestamptz, float8), public.timestamptz(timestamptz);
DROP AGGREGATE public.max(integer), public.count(float8);
