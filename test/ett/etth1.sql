-- ETTh1 oil temperature (OT), mode S, look-back L = 336, horizon H = 96,
-- trained and scored through SQL with the standard protocol:
--   rows [0, 8640) train, [8640, 11520) validation, [11520, 14400) test;
--   OT standardized with the mean and population standard deviation of the
--   train rows; MSE and MAE on standardized values; forecast origins
--   t = 11520 .. 14304, each forecasting rows [t, t + 96) from rows
--   [t - 336, t), which is 2785 windows when every origin is scored.
--
-- psql's standard input must be ETTh1.csv (\copy reads it from pstdin).
-- Variables, all required:
--   model          model name to train and score
--   origin_stride  score every origin_stride-th origin (1: every window)
--   options        tst.train options (jsonb) without validation_fraction
--   max_mse_ratio  pass when model MSE < max_mse_ratio * repeat-last MSE
-- Each check prints "ok - NAME" or "not ok - NAME", and the metrics print as
-- "metric NAME VALUE" lines. test/ett/run.sh and bench/etth1.sh run this.

\set ON_ERROR_STOP 1
\set QUIET 1
SET TimeZone = 'UTC';
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS tst;

\echo '== Loading ETTh1.csv'
DROP TABLE IF EXISTS ett_raw, ett_long, ett_ot, ett_windows;
CREATE TABLE ett_raw (
	date timestamp PRIMARY KEY,
	hufl float8, hull float8, mufl float8, mull float8,
	lufl float8, lull float8, ot float8
);
\copy ett_raw FROM pstdin WITH (FORMAT csv, HEADER true)

-- All seven columns in long form, 0-based row numbers, and each column
-- standardized with the statistics of the train rows [0, 8640).
CREATE TABLE ett_long AS
WITH numbered AS (
	SELECT (row_number() OVER (ORDER BY date) - 1)::int AS row, *
	FROM ett_raw
),
long AS (
	SELECT n.row, n.date, c.col, c.value
	FROM numbered n
	CROSS JOIN LATERAL (VALUES
		('HUFL', n.hufl), ('HULL', n.hull), ('MUFL', n.mufl), ('MULL', n.mull),
		('LUFL', n.lufl), ('LULL', n.lull), ('OT', n.ot)) AS c(col, value)
),
stats AS (
	SELECT col, avg(value) AS mean, stddev_pop(value) AS std
	FROM long
	WHERE row < 8640
	GROUP BY col
)
SELECT l.col, l.row, l.date::timestamptz AS ts, (l.value - s.mean) / s.std AS z
FROM long l
JOIN stats s USING (col);
ALTER TABLE ett_long ADD PRIMARY KEY (col, row);

CREATE TABLE ett_ot AS
SELECT row, ts, z FROM ett_long WHERE col = 'OT';
ALTER TABLE ett_ot ADD PRIMARY KEY (row);
ANALYZE ett_long, ett_ot;

SELECT count(*) AS rows, min(ts) AS first_ts, max(ts) AS last_ts,
	   round(avg(z) FILTER (WHERE row < 8640)::numeric, 6) AS train_mean_z,
	   round(stddev_pop(z) FILTER (WHERE row < 8640)::numeric, 6) AS train_std_z
FROM ett_ot;

-- The harness check from the protocol: repeat-last over all seven columns
-- (mode M), H = 96, every window scored, gives MSE 1.294 and MAE 0.713.
-- It checks the row numbering, the standardization and the window bounds.
\echo '== Checking the harness with the mode M repeat-last baseline'
SELECT round(avg((y.z - l.z) ^ 2)::numeric, 4) AS mode_m_mse,
	   round(avg(abs(y.z - l.z))::numeric, 4) AS mode_m_mae
FROM generate_series(11520, 14400 - 96) AS t
JOIN ett_long l ON l.row = t - 1
CROSS JOIN generate_series(0, 95) AS h
JOIN ett_long y ON y.col = l.col AND y.row = t + h
\gset
\pset format unaligned
\pset tuples_only on
SELECT format('metric repeat_last_mode_m_mse %s', :mode_m_mse);
SELECT format('metric repeat_last_mode_m_mae %s', :mode_m_mae);
SELECT CASE WHEN abs(:mode_m_mse - 1.294) < 0.001 AND abs(:mode_m_mae - 0.713) < 0.001
			THEN 'ok - harness repeat-last mode M'
			ELSE format('not ok - harness repeat-last mode M: MSE %s, MAE %s, expected 1.294 and 0.713',
						:mode_m_mse, :mode_m_mae)
	   END;
\pset format aligned
\pset tuples_only off

-- Training reads rows [0, 11520). validation_fraction 0.25 holds out the last
-- 2880 rows, so the validation targets are exactly rows [8640, 11520).
\echo '== Training' :model '(one NOTICE per epoch)'
SET client_min_messages = notice;
SELECT clock_timestamp() AS train_start \gset
SELECT tst.train(
	:'model',
	'SELECT ts, z FROM ett_ot WHERE row < 11520',
	'ts', 'z',
	horizon => 96,
	options => :'options'::jsonb || '{"context": 336, "validation_fraction": 0.25}'
) AS model_version \gset
SELECT extract(epoch FROM clock_timestamp() - :'train_start') AS train_seconds \gset
\x on
SELECT :model_version AS model_version, round(:train_seconds::numeric, 1) AS train_seconds,
	   config, metrics - 'train_loss' - 'validation_loss' AS metrics,
	   metrics->'validation_loss' AS validation_loss
FROM tst.models
WHERE name = :'model' AND version = :model_version;
\x off

\echo '== Forecasting the test windows, origin stride' :origin_stride
SELECT clock_timestamp() AS score_start \gset
CREATE TABLE ett_windows AS
SELECT o.t, f.forecast
FROM generate_series(11520, 14400 - 96, :origin_stride) AS o(t)
CROSS JOIN LATERAL (
	SELECT tst.forecast_agg(:'model', h.ts, h.z, 96) AS forecast
	FROM ett_ot h
	WHERE h.row >= o.t - 336 AND h.row < o.t
) AS f;
SELECT extract(epoch FROM clock_timestamp() - :'score_start') AS score_seconds \gset

-- Errors of the model and of repeat-last (the value at row t - 1) against
-- rows t .. t + 95.
SELECT count(DISTINCT w.t) AS windows,
	   avg((p.value - y.z) ^ 2) AS model_mse,
	   avg(abs(p.value - y.z)) AS model_mae,
	   avg((l.z - y.z) ^ 2) AS repeat_last_mse,
	   avg(abs(l.z - y.z)) AS repeat_last_mae
FROM ett_windows w
CROSS JOIN LATERAL unnest(w.forecast) WITH ORDINALITY AS p(value, step)
JOIN ett_ot y ON y.row = w.t + p.step::int - 1
JOIN ett_ot l ON l.row = w.t - 1
\gset

SELECT count(*) AS expected_windows,
	   count(*) FILTER (WHERE w.forecast IS NOT NULL
						AND cardinality(w.forecast) = 96
						AND NOT EXISTS (SELECT 1 FROM unnest(w.forecast) AS v
										WHERE v IS NULL OR v = 'NaN'
											  OR v IN ('Infinity', '-Infinity'))) AS complete_windows
FROM generate_series(11520, 14400 - 96, :origin_stride) AS o(t)
LEFT JOIN ett_windows w ON w.t = o.t
\gset

\pset format unaligned
\pset tuples_only on
SELECT format('metric windows %s', :windows);
SELECT format('metric model_mse %s', round(:model_mse::numeric, 6));
SELECT format('metric model_mae %s', round(:model_mae::numeric, 6));
SELECT format('metric repeat_last_mse %s', round(:repeat_last_mse::numeric, 6));
SELECT format('metric repeat_last_mae %s', round(:repeat_last_mae::numeric, 6));
SELECT format('metric mse_ratio %s', round((:model_mse / :repeat_last_mse)::numeric, 4));
SELECT format('metric train_seconds %s', round(:train_seconds::numeric, 1));
SELECT format('metric score_seconds %s', round(:score_seconds::numeric, 1));
SELECT format('metric %s %s', key, metrics->>key)
FROM tst.models, unnest(ARRAY['epochs_run', 'best_epoch']) AS key
WHERE name = :'model' AND version = :model_version;

SELECT CASE WHEN count(*) = 1 THEN 'ok - model stored in tst.models'
			ELSE format('not ok - model stored in tst.models: %s rows for %s version %s',
						count(*), :'model', :model_version)
	   END
FROM tst.models
WHERE name = :'model' AND version = :model_version;

-- Training windows have all 96 targets in rows [336, 8640): 8640 - 336 - 96 + 1
-- = 8209. Validation windows have all targets in rows [8640, 11520): 2785.
SELECT CASE WHEN (metrics->>'train_windows')::int = 8209
				 AND (metrics->>'validation_windows')::int = 2785
			THEN 'ok - validation split is rows 8640 to 11519'
			ELSE format('not ok - validation split is rows 8640 to 11519: %s training and %s validation windows, expected 8209 and 2785',
						metrics->>'train_windows', metrics->>'validation_windows')
	   END
FROM tst.models
WHERE name = :'model' AND version = :model_version;

SELECT CASE WHEN :complete_windows = :expected_windows
			THEN format('ok - every window forecast (%s windows of 96 finite values)', :expected_windows)
			ELSE format('not ok - every window forecast: %s of %s windows have 96 finite values',
						:complete_windows, :expected_windows)
	   END;

SELECT CASE WHEN :model_mse < :max_mse_ratio * :repeat_last_mse
			THEN format('ok - model MSE %s below %s x repeat-last MSE %s',
						round(:model_mse::numeric, 4), :max_mse_ratio, round(:repeat_last_mse::numeric, 4))
			ELSE format('not ok - model MSE %s not below %s x repeat-last MSE %s',
						round(:model_mse::numeric, 4), :max_mse_ratio, round(:repeat_last_mse::numeric, 4))
	   END;

SELECT CASE WHEN :model_mae < :repeat_last_mae
			THEN format('ok - model MAE %s below repeat-last MAE %s',
						round(:model_mae::numeric, 4), round(:repeat_last_mae::numeric, 4))
			ELSE format('not ok - model MAE %s not below repeat-last MAE %s',
						round(:model_mae::numeric, 4), round(:repeat_last_mae::numeric, 4))
	   END;
