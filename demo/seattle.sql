-- Seattle weather demo: one tst model for four daily series, scored on the
-- last 14 days of 2015 against two naive forecasts.
--
-- psql's standard input must be the vega_datasets file seattle-weather.csv
-- (daily, 2012-01-01 to 2015-12-31), because \copy reads it from pstdin:
--   psql -X -v ON_ERROR_STOP=1 -f demo/seattle.sql < seattle-weather.csv
-- demo/run.sh finds the file and runs this in a throwaway cluster.

\set ON_ERROR_STOP 1
\set QUIET 1
\pset null '-'
SET TimeZone = 'UTC';
SET client_min_messages = warning;
SELECT clock_timestamp() AS demo_start \gset

CREATE EXTENSION IF NOT EXISTS tst;

\echo
\echo '== Loading seattle-weather.csv'
DROP TABLE IF EXISTS weather_raw, weather, weather_forecast;
CREATE TABLE weather_raw (
	date text,
	precipitation float8,
	temp_max float8,
	temp_min float8,
	wind float8,
	weather text
);
\copy weather_raw FROM pstdin WITH (FORMAT csv, HEADER true)

-- One long table: four series of one value per day.
CREATE TABLE weather AS
SELECT v.series, to_date(r.date, 'YYYY/MM/DD')::timestamptz AS ts, v.value
FROM weather_raw r
CROSS JOIN LATERAL (VALUES
	('temp_max', r.temp_max),
	('temp_min', r.temp_min),
	('precipitation', r.precipitation),
	('wind', r.wind)) AS v(series, value);

SELECT series, count(*) AS days, min(ts)::date AS first_day, max(ts)::date AS last_day,
	   round(avg(value)::numeric, 2) AS mean
FROM weather
GROUP BY series
ORDER BY series;

-- The last 14 days (2015-12-18 to 2015-12-31) are held out for scoring.
\set holdout_start '2015-12-18'
\set training_source 'SELECT series, ts, value FROM weather WHERE ts < ''2015-12-18'''

\echo
\echo '== Training one model on all four series, up to 2015-12-17 (one NOTICE per epoch)'
SET client_min_messages = notice;
SELECT clock_timestamp() AS train_start \gset
SELECT tst.train(
	'seattle_weather',
	:'training_source',
	'ts', 'value', 'series',
	horizon => 14,
	options => '{
		"context": 84, "patch_len": 7, "patch_stride": 7,
		"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64,
		"dropout": 0.1, "epochs": 30, "patience": 5, "batch_size": 32,
		"learning_rate": 0.001, "validation_fraction": 0.1,
		"max_seconds": 150, "seed": 7
	}'
) AS model_version \gset
SELECT :model_version AS model_version,
	   round(extract(epoch FROM clock_timestamp() - :'train_start')::numeric, 1) AS training_seconds;

SELECT name, version,
	   metrics->'train_windows' AS train_windows,
	   metrics->'validation_windows' AS validation_windows,
	   metrics->'epochs_run' AS epochs_run,
	   metrics->'best_epoch' AS best_epoch,
	   round((metrics->'validation_loss'->((metrics->>'best_epoch')::int - 1))::numeric, 4)
		   AS best_validation_loss
FROM tst.models
WHERE name = 'seattle_weather' AND version = :model_version;

\echo
\echo '== Forecasting 2015-12-18 to 2015-12-31 for every series (80% interval)'
CREATE TABLE weather_forecast AS
SELECT *
FROM tst.forecast_table('seattle_weather', :'training_source', 'ts', 'value', 'series',
						horizon => 14, confidence => 0.8);

PREPARE forecast_vs_actual(text) AS
SELECT f.step, f.ts::date AS day,
	   round(a.value::numeric, 1) AS actual,
	   round(f.forecast::numeric, 1) AS forecast,
	   round(f.lower_bound::numeric, 1) AS lower_80,
	   round(f.upper_bound::numeric, 1) AS upper_80
FROM weather_forecast f
LEFT JOIN weather a ON a.series = f.series AND a.ts = f.ts
WHERE f.series = $1
ORDER BY f.step;

\echo
\echo '-- temp_max (degrees C)'
EXECUTE forecast_vs_actual('temp_max');
\echo '-- temp_min (degrees C)'
EXECUTE forecast_vs_actual('temp_min');
\echo '-- precipitation (mm)'
EXECUTE forecast_vs_actual('precipitation');
\echo '-- wind (m/s)'
EXECUTE forecast_vs_actual('wind');

\echo
\echo '== Mean absolute error over the 14 held-out days'
\echo 'repeat_last: the last training value (2015-12-17) for every day.'
\echo 'seasonal_naive: the value of the same day one year (365 days) earlier.'
\echo 'The model knows nothing of units, so a bound can fall below zero for'
\echo 'precipitation, and over 14 days of weather a naive forecast can win.'
WITH holdout AS (
	SELECT series, ts, value
	FROM weather
	WHERE ts >= :'holdout_start'
),
last_training AS (
	SELECT DISTINCT ON (series) series, value
	FROM weather
	WHERE ts < :'holdout_start'
	ORDER BY series, ts DESC
),
errors AS (
	SELECT h.series,
		   abs(f.forecast - h.value) AS model_error,
		   abs(l.value - h.value) AS repeat_last_error,
		   abs(y.value - h.value) AS seasonal_naive_error
	FROM holdout h
	JOIN weather_forecast f ON f.series = h.series AND f.ts = h.ts
	JOIN last_training l ON l.series = h.series
	JOIN weather y ON y.series = h.series AND y.ts = h.ts - interval '365 days'
)
SELECT series,
	   count(*) AS days,
	   round(avg(model_error)::numeric, 2) AS model,
	   round(avg(repeat_last_error)::numeric, 2) AS repeat_last,
	   round(avg(seasonal_naive_error)::numeric, 2) AS seasonal_naive,
	   CASE
		   WHEN avg(model_error) <= least(avg(repeat_last_error), avg(seasonal_naive_error)) THEN 'model'
		   WHEN avg(repeat_last_error) <= avg(seasonal_naive_error) THEN 'repeat_last'
		   ELSE 'seasonal_naive'
	   END AS best
FROM errors
GROUP BY series
ORDER BY series;

\echo
SELECT round(extract(epoch FROM clock_timestamp() - :'demo_start')::numeric, 1) AS demo_seconds;
