-- tst.forecast, tst.forecast_agg and tst.forecast_table: rows, time steps,
-- intervals, histories with gaps, and every error a caller can cause.
SET client_min_messages = warning;

CREATE TABLE hourly AS
SELECT 'load_' || (g % 3) AS meter,
       timestamptz '2024-03-01 00:00+00' + (g / 3) * interval '1 hour' AS ts,
       20 + 5 * sin((g / 3) * 2 * pi() / 24) + (g % 3) AS kw
FROM generate_series(0, 3 * 300 - 1) AS g;

SELECT tst.train('hourly', 'hourly', 'ts', 'kw', 'meter', 12,
                 '{"context": 48, "patch_len": 8, "patch_stride": 4, "d_model": 16,
                   "n_heads": 2, "n_layers": 1, "d_ff": 32, "window": 4, "epochs": 2}');

CREATE TABLE history AS
SELECT meter, tst.series_agg(ts, kw) AS h FROM hourly GROUP BY meter;

-- One row per step, continuing the hourly grid, with ordered bounds.
SELECT step, ts, forecast < 'Infinity' AS finite,
       lower_bound <= forecast AND forecast <= upper_bound AS ordered
FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_0'));

-- A shorter horizon, wider intervals at 95%, and no bounds for a NULL confidence.
SELECT count(*) AS steps,
       bool_and(w.lower_bound <= n.lower_bound AND w.upper_bound >= n.upper_bound) AS wider
FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_1'), 6, 0.8) AS n
JOIN tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_1'), 6, 0.95) AS w USING (step);
SELECT step, lower_bound, upper_bound
FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_1'), 2, NULL);

-- NULL model or history: no rows.
SELECT count(*) FROM tst.forecast(NULL, (SELECT h FROM history WHERE meter = 'load_1'));
SELECT count(*) FROM tst.forecast('hourly', NULL);

-- The lateral form per series gives the same numbers as forecast_table and
-- forecast_agg. They batch windows differently, and OpenBLAS kernels for
-- some CPUs round a batched product differently in the last bits, so values
-- are compared within 1e-5 relative.
CREATE FUNCTION close(a float8, b float8) RETURNS boolean
LANGUAGE sql IMMUTABLE AS 'SELECT abs(a - b) <= 1e-5 * greatest(1, abs(b))';
CREATE TABLE by_lateral AS
SELECT meter AS series, f.* FROM history, LATERAL tst.forecast('hourly', h) AS f;
CREATE TABLE by_table AS
SELECT * FROM tst.forecast_table('hourly', 'hourly', 'ts', 'kw', 'meter');
SELECT count(*) AS rows, count(*) FILTER (WHERE close(a.forecast, b.forecast)
       AND close(a.lower_bound, b.lower_bound) AND close(a.upper_bound, b.upper_bound)
       AND a.ts = b.ts) AS same
FROM by_lateral a JOIN by_table b USING (series, step);
SELECT meter, (SELECT bool_and(close(x, y)) AND count(*) = 12
               FROM unnest(tst.forecast_agg('hourly', ts, kw ORDER BY ts),
                           (SELECT array_agg(forecast ORDER BY step) FROM by_table t
                            WHERE t.series = meter)) AS u(x, y)) AS same
FROM hourly GROUP BY meter ORDER BY meter;
SELECT meter, array_length(tst.forecast_agg('hourly', ts, kw, 3), 1) AS steps
FROM hourly GROUP BY meter ORDER BY meter;

-- forecast_agg: an empty group gives NULL; NULL values are skipped.
SELECT tst.forecast_agg('hourly', ts, kw) IS NULL AS is_null FROM hourly WHERE false;
SELECT tst.forecast_agg('hourly', ts, NULL::float8) IS NULL AS is_null FROM hourly;

-- Histories shorter than the context are padded; gaps are interpolated.
SELECT count(*) AS steps FROM tst.forecast('hourly',
    (SELECT tst.series_agg(ts, kw) FROM hourly WHERE meter = 'load_0' AND ts < '2024-03-01 08:00+00'));
SELECT count(*) AS steps, bool_and(forecast < 'Infinity') AS finite FROM tst.forecast('hourly',
    (SELECT tst.series_agg(ts, CASE WHEN extract(hour FROM ts) IN (3, 4, 5) THEN 'NaN' ELSE kw END)
     FROM hourly WHERE meter = 'load_0' AND extract(hour FROM ts) <> 9));

-- Monthly data steps by calendar months, quarterly by three, yearly by twelve.
SELECT tst.train('monthly', $$SELECT d, 100 + 10 * sin(extract(month FROM d) * pi() / 6) + n AS v
                              FROM generate_series(timestamptz '2000-01-31', '2019-12-31', '1 month') AS d,
                                   generate_series(1, 3) AS n$$, 'd', 'v', NULL, 3,
                 '{"context": 12, "patch_len": 1, "patch_stride": 1, "d_model": 8, "n_heads": 1,
                   "n_layers": 1, "d_ff": 8, "epochs": 1, "validation_fraction": 0}');
SET TimeZone = 'UTC';
SELECT step, ts FROM tst.forecast('monthly',
    (SELECT tst.series_agg(d, 1) FROM generate_series(timestamptz '2023-01-01', '2023-11-01', '1 month') AS d));
SELECT step, ts FROM tst.forecast('monthly',
    (SELECT tst.series_agg(date_trunc('month', d) + interval '1 month - 1 day', 1)
     FROM generate_series(timestamptz '2023-01-01', '2023-10-01', '1 month') AS d));
SELECT step, ts FROM tst.forecast('monthly',
    (SELECT tst.series_agg(d, 1) FROM generate_series(timestamptz '2020-01-01', '2023-10-01', '3 months') AS d));
SELECT step, ts FROM tst.forecast('monthly',
    (SELECT tst.series_agg(d, 1) FROM generate_series(timestamptz '2001-01-01', '2023-01-01', '1 year') AS d));

-- Daily data keeps local midnight across a daylight-saving change.
SET TimeZone = 'America/New_York';
SELECT step, ts FROM tst.forecast('monthly',
    (SELECT tst.series_agg(d, extract(day FROM d)) FROM generate_series(timestamptz '2024-02-20', '2024-03-09', '1 day') AS d));
RESET TimeZone;

-- forecast_table skips series too short to forecast, with one notice: a
-- series of one point, and one with many points but a sparse last 48 hours.
SET client_min_messages = notice;
SELECT series, count(*) FROM tst.forecast_table('hourly',
    $$SELECT * FROM hourly UNION ALL SELECT 'tiny', '2024-01-01', 1
      UNION ALL SELECT 'offline', ts, kw FROM hourly
                WHERE meter = 'load_0' AND (ts < '2024-03-10' OR ts > '2024-03-13 08:00+00')$$,
    'ts', 'kw', 'meter', 2)
GROUP BY series ORDER BY series;
SET client_min_messages = warning;

-- forecast_agg returns NULL for a group too short to forecast.
SELECT meter, tst.forecast_agg('hourly', ts, kw) IS NULL AS is_null
FROM (SELECT * FROM hourly WHERE ts = '2024-03-02 00:00+00' AND meter = 'load_0'
      UNION ALL
      SELECT 'offline', ts, kw FROM hourly
      WHERE meter = 'load_1' AND (ts < '2024-03-10' OR ts > '2024-03-13 08:00+00')
      UNION ALL
      SELECT * FROM hourly WHERE meter = 'load_2') AS g
GROUP BY meter ORDER BY meter;

-- forecast_table without a series column treats the source as one series.
SELECT series, count(*) FROM tst.forecast_table('hourly', 'SELECT * FROM hourly WHERE meter = ''load_2''', 'ts', 'kw')
GROUP BY series;

-- forecast_table returns its rows by series, in the series column's
-- collation with NULL last, then by step. In "C" order digits come before
-- upper case, which comes before "_" and lower case.
CREATE TABLE forecast_order AS
SELECT (ARRAY['b', 'B', 'a', 'A', '_x', '10', '9', 'Z', 'z', 'm', NULL])[g + 1] COLLATE "C" AS name,
       ts, kw
FROM hourly, generate_series(0, 10) AS g
WHERE meter = 'load_0';
SELECT string_agg(coalesce(series, 'NULL') || ':' || step, ' ')
FROM tst.forecast_table('hourly', 'forecast_order', 'ts', 'kw', 'name', 2);

-- Errors: models.
SELECT * FROM tst.forecast('no_such_model', (SELECT h FROM history WHERE meter = 'load_0'));
SELECT * FROM tst.forecast('hourly@7', (SELECT h FROM history WHERE meter = 'load_0'));
SELECT * FROM tst.forecast('hourly@x', (SELECT h FROM history WHERE meter = 'load_0'));
SELECT * FROM tst.forecast('@1', (SELECT h FROM history WHERE meter = 'load_0'));
SELECT count(*) FROM tst.forecast('hourly@1', (SELECT h FROM history WHERE meter = 'load_0'));

-- Errors: horizons and confidence levels.
SELECT * FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_0'), 0);
SELECT * FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_0'), -3);
SELECT * FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_0'), 13);
SELECT * FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_0'), 1000000);
SELECT * FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_0'), 3, 0);
SELECT * FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_0'), 3, 1);
SELECT * FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_0'), 3, 'NaN');
SELECT * FROM tst.forecast('hourly', (SELECT h FROM history WHERE meter = 'load_0'), 3, 0.5);
SELECT count(*) FROM tst.forecast('monthly', (SELECT h FROM history WHERE meter = 'load_0'), 3, 0.8);

-- An infinite value before the context window is never read.
SELECT count(*) FROM tst.forecast('hourly', (SELECT tst.series_agg(ts, CASE WHEN ts = '2024-03-02 00:00+00' THEN 'Infinity' ELSE kw END) FROM hourly WHERE meter = 'load_0'));

-- Errors: histories.
SELECT * FROM tst.forecast('hourly', '{}');
SELECT * FROM tst.forecast('hourly', '{"2024-01-01 00:00:00+00": 1}');
SELECT * FROM tst.forecast('hourly', (SELECT tst.series_agg(ts, kw) FROM hourly WHERE meter = 'load_0' AND ts < '2024-03-01 05:00+00'));
SELECT * FROM tst.forecast('hourly', (SELECT tst.series_agg(ts, CASE WHEN ts = '2024-03-13 00:00+00' THEN '-Infinity' ELSE kw END) FROM hourly WHERE meter = 'load_0'));
SELECT tst.forecast_agg(CASE WHEN kw > 21 THEN 'hourly' ELSE 'other' END, ts, kw) FROM hourly;
SELECT * FROM tst.forecast_table('hourly', 'hourly', 'ts', 'kw', 'no_such_column');
SELECT * FROM tst.forecast_table('hourly', NULL, 'ts', 'kw');
SELECT * FROM tst.forecast_table('hourly', $$SELECT meter, ts, CASE WHEN ts = '2024-03-13 00:00+00' AND meter = 'load_1' THEN 'Infinity' ELSE kw END AS kw FROM hourly$$, 'ts', 'kw', 'meter');
