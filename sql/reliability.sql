-- Bad input that the other files do not cover: sizes, non-finite and
-- degenerate values, numeric stability, row order and parallel partial
-- states, irregular time, session TimeZone and lc_numeric. Each case ends
-- with a defined result or a clear error; docs/reliability.md lists where
-- every case of the checklist lives.
SET client_min_messages = warning;
SET TimeZone = 'UTC';

CREATE TABLE rel_base AS
SELECT timestamptz '2024-01-01 00:00+00' + g * interval '1 hour' AS ts,
       sin(g * 2 * pi() / 24) + 0.1 * cos(g * 0.7) AS v
FROM generate_series(0, 399) AS g;

SELECT tst.train('rel_base', 'rel_base', 'ts', 'v', NULL, 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 16, "epochs": 2, "seed": 3}');

--
-- Sizes: empty, one row, two rows, all NULL
--
SELECT tst.train('rel_x', 'SELECT ts, v FROM rel_base WHERE false', 'ts', 'v');
SELECT tst.train('rel_x', 'SELECT ts, v FROM rel_base LIMIT 1', 'ts', 'v');
SELECT tst.train('rel_x', 'SELECT ts, v FROM rel_base ORDER BY ts LIMIT 2', 'ts', 'v');
SELECT tst.train('rel_x', 'SELECT ts, NULL::float8 AS v FROM rel_base', 'ts', 'v');
SELECT tst.train('rel_x', 'SELECT NULL::timestamptz AS ts, v FROM rel_base', 'ts', 'v');
SELECT count(*) FROM tst.forecast_table('rel_base', 'SELECT ts, v FROM rel_base WHERE false', 'ts', 'v');
SELECT count(*) FROM tst.forecast_table('rel_base', 'SELECT ts, NULL::float8 AS v FROM rel_base', 'ts', 'v');
SELECT tst.series_agg(ts, NULL) IS NULL AS all_null FROM rel_base;
SELECT tst.forecast_agg('rel_base', ts, NULL) IS NULL AS all_null FROM rel_base;
SELECT * FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, v) FROM (SELECT * FROM rel_base ORDER BY ts LIMIT 2) s));
-- four points are one patch: padded to the context and forecast
SELECT count(*) FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, v) FROM (SELECT * FROM rel_base ORDER BY ts LIMIT 4) s));

--
-- NaN and infinities
--
SELECT tst.train('rel_x', 'SELECT ts, ''NaN''::float8 AS v FROM rel_base', 'ts', 'v', NULL, 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4}');
SELECT tst.train('rel_x', 'SELECT ts, CASE WHEN ts = ''2024-01-05'' THEN ''-Infinity'' ELSE v END AS v FROM rel_base',
                 'ts', 'v', NULL, 6, '{"context": 24, "patch_len": 4, "patch_stride": 4}');
SELECT * FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, 'NaN') FROM rel_base));
SELECT * FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, CASE WHEN ts > '2024-01-16' THEN 'Infinity' ELSE v END) FROM rel_base));
SELECT tst.forecast_agg('rel_base', ts, CASE WHEN ts > '2024-01-16' THEN '-Infinity' ELSE v END) FROM rel_base;

--
-- Degenerate series: constant and all zero. A constant window has scale 1
-- (docs/model.md), so the forecast is the level plus the model's output for
-- a zero window: the same offsets for every level.
--
CREATE TABLE rel_const AS
SELECT tst.series_agg(ts, 5) AS five, tst.series_agg(ts, 0) AS zero FROM rel_base;
SELECT f.step, round((f.forecast - z.forecast)::numeric, 9) AS difference
FROM tst.forecast('rel_base', (SELECT five FROM rel_const)) f
JOIN tst.forecast('rel_base', (SELECT zero FROM rel_const)) z USING (step) ORDER BY step;
SELECT tst.train('rel_const', 'SELECT ts, 5.0 AS v FROM rel_base', 'ts', 'v', NULL, 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 16, "epochs": 1}');
SELECT tst.train('rel_zero', 'SELECT ts, 0.0 AS v FROM rel_base', 'ts', 'v', NULL, 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 16, "epochs": 1}');
SELECT count(*) AS steps, bool_and(forecast < 'Infinity' AND forecast > '-Infinity') AS finite
FROM tst.forecast('rel_zero', (SELECT zero FROM rel_const));

--
-- Numeric stability. Normalization removes the level and the scale of a
-- window, so a history shifted to 1e7 with a spread of 0.01, or scaled to
-- 1e-7, gives the same normalized forecast as the original within float32
-- rounding of the normalized window.
--
CREATE TABLE rel_scaled AS
SELECT tst.series_agg(ts, v) AS plain,
       tst.series_agg(ts, 1e7 + 0.01 * v) AS near_1e7,
       tst.series_agg(ts, 1e-7 * v) AS near_1e_7,
       tst.series_agg(ts, 1e300 * v) AS huge
FROM rel_base WHERE ts >= '2024-01-10';
SELECT p.step,
       abs((b.forecast - 1e7) / 0.01 - p.forecast) < 1e-3 AS near_1e7_same,
       abs(t.forecast / 1e-7 - p.forecast) < 1e-5 AS near_1e_7_same
FROM tst.forecast('rel_base', (SELECT plain FROM rel_scaled)) p
JOIN tst.forecast('rel_base', (SELECT near_1e7 FROM rel_scaled)) b USING (step)
JOIN tst.forecast('rel_base', (SELECT near_1e_7 FROM rel_scaled)) t USING (step)
ORDER BY step;
-- squared deviations of 1e300 overflow: both functions reject the data
SELECT * FROM tst.forecast('rel_base', (SELECT huge FROM rel_scaled));
SELECT tst.train('rel_x', 'SELECT ts, 1e300 * v AS v FROM rel_base', 'ts', 'v', NULL, 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "epochs": 1}');
-- a constant 1e300 fails too, because the rounding error of its mean
-- (about 1e284) squared overflows; a constant 1e150 works
SELECT count(*) FILTER (WHERE forecast < 'Infinity') AS finite
FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, 1e300) FROM rel_base));
SELECT count(*) FILTER (WHERE forecast < 'Infinity') AS finite
FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, 1e150) FROM rel_base));

--
-- Row order and duplicates: reverse and random order, and duplicate
-- timestamps, give the same series and the same forecast.
--
SELECT tst.series_agg(ts, v ORDER BY ts DESC)::text = tst.series_agg(ts, v ORDER BY ts)::text AS reverse_same,
       tst.series_agg(ts, v ORDER BY md5(ts::text))::text = tst.series_agg(ts, v ORDER BY ts)::text AS random_same,
       tst.forecast_agg('rel_base', ts, v ORDER BY ts DESC) = tst.forecast_agg('rel_base', ts, v ORDER BY ts) AS forecast_same
FROM rel_base;
CREATE TABLE rel_dups AS
SELECT ts, v + d AS v FROM rel_base, (VALUES (-1.0), (0.0), (1.0)) AS dup(d);
SELECT count(*) AS points, bool_and(abs(m.value - b.v) < 1e-12) AS duplicates_merge_to_mean
FROM tst.series_unnest((SELECT tst.series_agg(ts, v) FROM rel_dups)) AS m
JOIN rel_base b USING (ts);

--
-- Parallel plans: duplicates that land in different partial states,
-- overlapping partial states, and groups whose rows a FILTER removes in some
-- or all partial states. Each result equals the serial one.
--
CREATE TABLE rel_par AS
SELECT 'g' || (i % 40) AS g,
       timestamptz '2024-01-01 00:00+00' + ((i / 40) % 300) * interval '1 hour' AS ts,
       sin(i * 0.01) + (i % 40) AS v
FROM generate_series(0, 40 * 600 - 1) AS i;
CREATE TABLE rel_serial AS
SELECT g, tst.series_agg(ts, v)::text AS s,
       tst.forecast_agg('rel_base', ts, v) AS f,
       tst.forecast_agg('rel_base', ts, v) FILTER (WHERE g < 'g2') AS ff,
       tst.series_agg(ts, v) FILTER (WHERE ts < '2024-01-01 03:00+00' AND g = 'g7')::text AS sf
FROM rel_par GROUP BY g;

SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT g, tst.forecast_agg('rel_base', ts, v) FROM rel_par GROUP BY g;
CREATE TABLE rel_parallel AS
SELECT g, tst.series_agg(ts, v)::text AS s,
       tst.forecast_agg('rel_base', ts, v) AS f,
       tst.forecast_agg('rel_base', ts, v) FILTER (WHERE g < 'g2') AS ff,
       tst.series_agg(ts, v) FILTER (WHERE ts < '2024-01-01 03:00+00' AND g = 'g7')::text AS sf
FROM rel_par GROUP BY g;
SELECT count(*) AS groups,
       count(*) FILTER (WHERE p.s = s.s) AS same_series,
       count(*) FILTER (WHERE p.f = s.f) AS same_forecast,
       count(*) FILTER (WHERE p.ff IS NOT DISTINCT FROM s.ff) AS same_filtered,
       count(*) FILTER (WHERE p.ff IS NULL) AS filtered_out,
       count(*) FILTER (WHERE p.sf IS NOT DISTINCT FROM s.sf) AS same_sparse
FROM rel_parallel p JOIN rel_serial s USING (g);
-- a FILTER that keeps no row at all: every partial state is empty
SELECT tst.forecast_agg('rel_base', ts, v) FILTER (WHERE v > 1000) IS NULL AS is_null FROM rel_par;
SELECT tst.series_agg(ts, v) FILTER (WHERE v > 1000) IS NULL AS is_null FROM rel_par;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;

--
-- Irregular timestamps: a fixed pseudo-random jitter of up to 10 minutes
-- around each hour. The median difference is still an hour, every point maps
-- to its nearest hourly slot, and the forecast continues from the last one.
--
CREATE TABLE rel_jitter AS
SELECT ts + (hashtext(ts::text) % 11) * interval '1 minute' AS ts, v FROM rel_base;
SELECT tst.series_step(tst.series_agg(ts, v)) AS step FROM rel_jitter;
SELECT (SELECT max(ts) FROM rel_jitter) AS last_ts;
SELECT step, ts FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, v) FROM rel_jitter)) WHERE step <= 2;

--
-- Time zones. Hourly data is a fixed step of 3600 s, so forecast times stay
-- one hour apart across a daylight-saving change; the forecast values and
-- instants do not depend on the session TimeZone.
--
CREATE TABLE rel_dst AS
SELECT timestamptz '2024-03-29 00:00+00' + g * interval '1 hour' AS ts,
       sin(g * 2 * pi() / 24) AS v
FROM generate_series(0, 47) AS g;
SET TimeZone = 'Europe/Berlin';
SELECT step, ts FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, v) FROM rel_dst));
CREATE TABLE rel_tz AS
SELECT 'berlin' AS zone, * FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, v) FROM rel_dst));
SET TimeZone = 'Asia/Kolkata';
INSERT INTO rel_tz SELECT 'kolkata', * FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, v) FROM rel_dst));
SET TimeZone = 'America/Los_Angeles';
INSERT INTO rel_tz SELECT 'los_angeles', * FROM tst.forecast('rel_base', (SELECT tst.series_agg(ts, v) FROM rel_dst));
SET TimeZone = 'UTC';
SELECT count(DISTINCT (step, ts, forecast, lower_bound, upper_bound)) AS distinct_rows, count(*) AS rows FROM rel_tz;
-- the text form of a series follows TimeZone, and its value does not
SET TimeZone = 'Pacific/Chatham';
CREATE TABLE rel_text AS SELECT (SELECT tst.series_agg(ts, v) FROM rel_dst)::text AS chatham;
SET TimeZone = 'UTC';
SELECT chatham::tst.series::text = (SELECT tst.series_agg(ts, v) FROM rel_dst)::text AS same_series FROM rel_text;

--
-- A comma-decimal lc_numeric changes neither the text form nor the numbers.
--
CREATE TABLE rel_numeric AS
SELECT 'C' AS locale, tst.forecast_agg('rel_base', ts, v) AS f,
       tst.series_agg(ts, v)::text AS s FROM rel_base;
SET lc_numeric = 'de_DE.UTF-8';
SELECT to_char(1.5, '9D9') AS comma_decimal;
INSERT INTO rel_numeric
SELECT 'de_DE', tst.forecast_agg('rel_base', ts, v), tst.series_agg(ts, v)::text FROM rel_base;
SELECT '{"2024-01-01 00:00+00": 1.5}'::tst.series;
SELECT '{"2024-01-01 00:00+00": 1,5}'::tst.series;
SELECT tst.train('rel_x', 'rel_base', 'ts', 'v', options => '{"dropout": 1.5}');
RESET lc_numeric;
SELECT count(DISTINCT f) AS forecasts, count(DISTINCT s) AS texts FROM rel_numeric;

--
-- Stored configs whose sizes overflow 32 bits in a product of fields that
-- are each in range, and a config with a NULL and a nested value.
--
CREATE FUNCTION rel_try_config(c jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tst.models SET config = c WHERE name = 'rel_const';
  PERFORM * FROM tst.forecast('rel_const', (SELECT five FROM rel_const));
END $$;
CREATE TABLE rel_good_config AS SELECT config FROM tst.models WHERE name = 'rel_const';
SELECT rel_try_config(config || '{"d_model": 4096, "n_heads": 1, "d_ff": 16384, "n_layers": 64}') FROM rel_good_config;
SELECT rel_try_config(config || '{"context": 100000, "patch_len": 1, "patch_stride": 1, "d_model": 2048, "n_heads": 1, "attention": "dense"}') FROM rel_good_config;
SELECT rel_try_config(config || '{"horizon": 10000, "quantiles": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.2, 0.21, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29, 0.3, 0.31, 0.32], "context": 100000, "patch_len": 1, "patch_stride": 1, "d_model": 64}') FROM rel_good_config;
SELECT rel_try_config(config || '{"context": 2147483648}') FROM rel_good_config;
SELECT rel_try_config(config || '{"window": null}') FROM rel_good_config;
SELECT rel_try_config(config || '{"quantiles": [[0.5]]}') FROM rel_good_config;
SELECT rel_try_config(config || '{"quantiles": []}') FROM rel_good_config;
SELECT rel_try_config(config || '{"dropout": -0.5}') FROM rel_good_config;
SELECT rel_try_config('"a string"') FROM rel_good_config;
SELECT rel_try_config(config) FROM rel_good_config;

--
-- Finite weights that overflow: FLT_MAX (bytes ff ff 7f 7f) in the last 100
-- values of head.weight, which end 278 bytes before the end of this model's
-- blob (the head.bias record of 6 x 5 values and the calibration record of
-- 6 x 5 offsets follow).
--
CREATE TABLE rel_good_weights AS SELECT weights FROM tst.models WHERE name = 'rel_const';
UPDATE tst.models SET weights = (SELECT overlay(weights placing decode(repeat('ffff7f7f', 100), 'hex')
                                                from octet_length(weights) - 677) FROM rel_good_weights)
WHERE name = 'rel_const';
SELECT * FROM tst.forecast('rel_const', (SELECT five FROM rel_const));
UPDATE tst.models SET weights = (SELECT weights FROM rel_good_weights) WHERE name = 'rel_const';
SELECT count(*) FROM tst.forecast('rel_const', (SELECT five FROM rel_const));

--
-- Malformed and truncated series text beyond the cases in series.sql.
--
SELECT '{"2024-01-01": 1, "2024-01-02": 2, "2024-01-0'::tst.series;
SELECT '{"2024-01-01": 1, "2024-01-02": 2, "2024-01-03"'::tst.series;
SELECT '{"2024-01-01": 1, "2024-01-02": 2, "2024-01-03":'::tst.series;
SELECT '{"2024-01-01": 1, "2024-01-02": 2,'::tst.series;
SELECT '{"": 1}'::tst.series;
SELECT '{"2024-01-01": 1.0.0}'::tst.series;
SELECT '{"2024-01-01": 0x10}'::tst.series;
SELECT '{"2024-01-01": "1"}'::tst.series;
SELECT '{"2024-01-01"": 1}'::tst.series;
SELECT '{{"2024-01-01": 1}}'::tst.series;
SELECT '{"2024-01-01": 1e308, "2024-01-02": 4.9e-324, "2024-01-03": -1e-400}'::tst.series;
SELECT '{"-infinity": 1}'::tst.series;
SELECT '{"294277-01-01": 1}'::tst.series;

-- The server is alive and no failed call left a model behind.
SELECT name, count(*) FROM tst.models WHERE name LIKE 'rel\_%' GROUP BY name ORDER BY name;
