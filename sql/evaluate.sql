-- tst.evaluate: exact metrics of the naive methods on small series, overall
-- rows, scaling, the model rows, and every error a caller can cause.
SET client_min_messages = notice;
SET TimeZone = 'UTC';

-- Series a is 1 3 2 4 3 5 4 6 on eight days, c is twice a, and b has three
-- points. With test_start on day 5, horizon 2 and stride 1, the origins are
-- days 5, 6 and 7 (slots 4, 5, 6), three windows per series.
CREATE TABLE eval_days AS
SELECT s AS series, date '2024-01-01' + (i::int - 1) AS day,
       (CASE s WHEN 'c' THEN 2 ELSE 1 END) * v AS v
FROM (VALUES ('a'), ('c')) AS x(s),
     unnest(ARRAY[1, 3, 2, 4, 3, 5, 4, 6]) WITH ORDINALITY AS u(v, i)
UNION ALL
SELECT 'b', date '2024-01-01' + i, i FROM generate_series(0, 2) AS i;

-- Series a, repeat_last: errors 1 -1, -2 -1, 1 -1, so MSE 9/6 = 1.5 and MAE
-- 7/6. Seasonal naive with season 2: every error is -1. The in-sample
-- seasonal-naive MAE before day 5 is 1, so MASE equals the MAE for a; c has
-- twice the errors and twice the scale, so the same MASE. sMAPE of a's
-- repeat_last: 100/6 * (2/7 + 2/9 + 4/8 + 2/7 + 2/10 + 2/11) = 28.2949.
-- b has no complete window: zero windows, NULL metrics and a NOTICE.
-- The overall rows pool the 12 points of a and c: MSE (9 + 36) / 12 = 3.75.
SELECT series, method, windows, round(mse::numeric, 4) AS mse, round(mae::numeric, 4) AS mae,
       round(rmse::numeric, 4) AS rmse, round(mase::numeric, 4) AS mase,
       round(smape::numeric, 4) AS smape, coverage, interval_width
FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2,
                  '{"test_start": "2024-01-05", "season_length": 2}');

-- Standard scaling fitted on days 1 to 4 (a: mean 2.5, std sqrt(1.25)) makes
-- a and c identical: MSE 1.5 / 1.25 = 1.2. sMAPE reads the raw values.
SELECT series, method, windows, round(mse::numeric, 4) AS mse, round(mae::numeric, 4) AS mae,
       round(mase::numeric, 4) AS mase, round(smape::numeric, 4) AS smape
FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2,
                  '{"test_start": "2024-01-05", "season_length": 2, "scaling": "standard",
                    "train_start": "2024-01-01", "train_end": "2024-01-04"}')
WHERE series IS DISTINCT FROM 'b';

-- Defaults: the test range is the last 20% of each series, at least one
-- horizon; a daily step means a season of 7, which falls back to 1 without
-- two seasons before the test range, so seasonal_naive equals repeat_last.
-- Without series_column the source is one series and only overall rows come.
SELECT series, method, windows, round(mse::numeric, 4) AS mse, round(mase::numeric, 4) AS mase
FROM tst.evaluate(NULL, 'SELECT * FROM eval_days WHERE series = ''a''', 'day', 'v', NULL, 1);

-- Stride 2 keeps the origins on days 5 and 7. A gap is not scored: without
-- day 6 of a, repeat_last scores errors 1, -1, and from origin day 7 the
-- interpolated day 6 (3.5) against 4 and 6: MSE (1 + 1 + 0.25 + 6.25) / 4.
SELECT method, windows, round(mse::numeric, 4) AS mse
FROM tst.evaluate(NULL, 'SELECT * FROM eval_days WHERE series = ''a''', 'day', 'v', NULL, 2,
                  '{"test_start": "2024-01-05", "stride": 2, "season_length": 2}');
SELECT method, windows, round(mse::numeric, 4) AS mse
FROM tst.evaluate(NULL, 'SELECT * FROM eval_days WHERE series = ''a'' AND day <> ''2024-01-06''',
                  'day', 'v', NULL, 2, '{"test_start": "2024-01-05", "season_length": 2}');

-- A series too short for one window, alone: overall rows with zero windows.
SELECT series, method, windows, mse
FROM tst.evaluate(NULL, 'SELECT * FROM eval_days WHERE series = ''b''', 'day', 'v', NULL, 5);

-- Errors.
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2,
                           '{"test_start": "2030-01-01"}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2,
                           '{"test_end": "2020-01-01"}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '{"strides": 2}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '{"stride": 0}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '{"stride": "2"}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '{"test_start": 5}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '{"test_start": "soon"}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2,
                           '{"test_start": "2024-01-07", "test_end": "2024-01-05"}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '{"scaling": "minmax"}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '{"train_end": "2024-01-04"}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '{"confidence": 1.5}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '{"season_length": 0}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2, '[1]');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 2,
                           '{"scaling": "standard", "train_end": "2023-12-31"}');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series');
SELECT * FROM tst.evaluate(NULL, 'eval_days', 'day', 'v', 'series', 0);
SELECT * FROM tst.evaluate(NULL, NULL, 'day', 'v');
SELECT * FROM tst.evaluate('eval_no_such_model', 'eval_days', 'day', 'v');

-- The model rows. Numbers that depend on the model are compared, not printed.
CREATE TABLE eval_hourly AS
SELECT 'm' || (g % 2) AS meter,
       timestamptz '2024-03-01 00:00+00' + (g / 2) * interval '1 hour' AS ts,
       20 + 5 * sin((g / 2) * 2 * pi() / 24) + (g % 2) + ((g * 7919) % 13) / 13.0 AS kw
FROM generate_series(0, 2 * 240 - 1) AS g;
SET client_min_messages = warning;
SELECT tst.train('eval_model', 'eval_hourly', 'ts', 'kw', 'meter', 6,
                 '{"context": 48, "patch_len": 8, "patch_stride": 4, "d_model": 16,
                   "n_heads": 2, "n_layers": 1, "d_ff": 32, "window": 4, "epochs": 2}') AS version;
SET client_min_messages = notice;

-- One window per series (test range = the last 6 hours): the model's MSE
-- equals the one computed from tst.forecast on the history before the origin.
CREATE TABLE eval_one AS
SELECT * FROM tst.evaluate('eval_model', 'eval_hourly', 'ts', 'kw', 'meter', NULL,
                           '{"test_start": "2024-03-10 18:00+00"}');
SELECT series, method, windows FROM eval_one ORDER BY series NULLS LAST, method;
SELECT e.series, abs(e.mse - f.mse) < 1e-9 AS same_mse, abs(e.mae - f.mae) < 1e-9 AS same_mae,
       abs(e.interval_width - f.width) < 1e-9 AS same_width
FROM eval_one e
JOIN (SELECT p.meter, avg((p.forecast - a.kw) ^ 2) AS mse, avg(abs(p.forecast - a.kw)) AS mae,
             avg(p.upper_bound - p.lower_bound) AS width
      FROM (SELECT h.meter, x.*
            FROM (SELECT meter, tst.series_agg(ts, kw) AS h FROM eval_hourly
                  WHERE ts < '2024-03-10 18:00+00' GROUP BY meter) AS h,
                 LATERAL tst.forecast('eval_model', h.h) AS x) AS p
      JOIN eval_hourly a ON a.meter = p.meter AND a.ts = p.ts
      GROUP BY p.meter) AS f ON f.meter = e.series
WHERE e.method = 'model'
ORDER BY e.series;

-- Every origin of the last 48 hours, stride 1: 48 - 6 + 1 = 43 windows per
-- series; metrics are finite, coverage a share, and wider at 95%.
CREATE TABLE eval_many AS
SELECT c.confidence, e.*
FROM (VALUES (0.8), (0.95)) AS c(confidence),
     LATERAL tst.evaluate('eval_model', 'eval_hourly', 'ts', 'kw', 'meter', 6,
                          jsonb_build_object('test_start', '2024-03-09 00:00+00',
                                             'confidence', c.confidence)) AS e;
SELECT confidence, series, method, windows,
       mse >= 0 AND mae >= 0 AND rmse = sqrt(mse) AND mase > 0 AND smape >= 0 AS finite,
       coverage BETWEEN 0 AND 1 AS coverage_is_share, interval_width > 0 AS has_width
FROM eval_many ORDER BY confidence, series NULLS LAST, method;
SELECT bool_and(w.interval_width > n.interval_width) AS wider_at_95
FROM eval_many n JOIN eval_many w USING (series, method)
WHERE n.confidence = 0.8 AND w.confidence = 0.95 AND n.method = 'model';

-- A NULL confidence gives NULL coverage; a level the model lacks is an error;
-- a horizon beyond the model's is an error.
SELECT method, coverage, interval_width FROM tst.evaluate('eval_model', 'eval_hourly', 'ts', 'kw',
    NULL, 6, '{"confidence": null, "test_start": "2024-03-09 00:00+00"}') WHERE method = 'model';
SELECT * FROM tst.evaluate('eval_model', 'eval_hourly', 'ts', 'kw', 'meter', 6, '{"confidence": 0.5}');
SELECT * FROM tst.evaluate('eval_model', 'eval_hourly', 'ts', 'kw', 'meter', 7);
