-- Train and score one cell of the ETTh1 protocol: mode S (OT only) or M (all
-- seven columns as seven series) at one horizon.
--
-- Variables, all required:
--   mode     S or M
--   horizon  96, 192, 336 or 720
--   cells     the text of cells.json; the model options of a cell are its
--             "defaults" merged with its entry under "cells" (key mode || horizon)
--   overrides options (jsonb) merged last, '{}' for none
-- Needs ett_long and ett_split from load.sql. Prints "metric NAME VALUE" and
-- "ok - " or "not ok - " lines, which run.sh reads.
\set ON_ERROR_STOP 1
\set QUIET 1
SET TimeZone = 'UTC';

SELECT :'mode' || :'horizon' AS cell,
	   'ett_' || lower(:'mode') || :'horizon' AS model,
	   CASE :'mode' WHEN 'S' THEN 'WHERE col = ''OT''' ELSE '' END AS col_filter,
	   ((:'cells')::jsonb -> 'defaults') || coalesce((:'cells')::jsonb -> 'cells' -> (:'mode' || :'horizon'), '{}')
		   || (:'overrides')::jsonb AS options
\gset

-- Training reads rows [0, 11520). validation_fraction 0.25 holds out the last
-- 2880 rows of each series, so the validation targets are exactly rows
-- [8640, 11520) and no test row is seen.
\echo '== Cell' :cell ': training' :model 'with' :options
SET client_min_messages = notice;
SELECT tst.train(:'model',
				 format('SELECT col, ts, value FROM ett_long %s %s row < 11520',
						:'col_filter', CASE :'mode' WHEN 'S' THEN 'AND' ELSE 'WHERE' END),
				 'ts', 'value', 'col', :horizon,
				 (:'options')::jsonb || '{"validation_fraction": 0.25}') AS version
\gset
SET client_min_messages = warning;

\pset format unaligned
\pset tuples_only on
SELECT format('metric %s %s', key, metrics ->> key)
FROM tst.models, unnest(ARRAY['seconds', 'epochs_run', 'best_epoch', 'train_windows',
							  'validation_windows']) AS key
WHERE name = :'model' AND version = :version;
SELECT format('metric context %s', config ->> 'context')
FROM tst.models WHERE name = :'model' AND version = :version;

-- Every test window: origins at rows 11520 .. 14400 - H, stride 1, context
-- from the rows before each origin, metrics on values standardized with the
-- train rows [0, 8640). The overall row pools every point of every series,
-- which in mode M is the mean over the seven columns (equal counts).
\echo '== Cell' :cell ': scoring every test window'
SELECT clock_timestamp() AS score_start \gset
CREATE TEMP TABLE scores AS
SELECT c.confidence, e.*
FROM ett_split s,
	 (VALUES (0.8), (0.95)) AS c(confidence),
	 LATERAL tst.evaluate(:'model' || '@' || :version,
						  format('SELECT col, ts, value FROM ett_long %s', :'col_filter'),
						  'ts', 'value', 'col', :horizon,
						  jsonb_build_object('test_start', s.test_start, 'test_end', s.test_end,
											 'scaling', 'standard',
											 'train_start', s.train_start, 'train_end', s.train_end,
											 'confidence', c.confidence)) AS e;
SELECT format('metric score_seconds %s',
			  round(extract(epoch FROM clock_timestamp() - :'score_start')::numeric, 1));

SELECT format('metric %s_%s %s', m.method, k.key, round(k.value::numeric, 6))
FROM scores m,
	 LATERAL (VALUES ('mse', m.mse), ('mae', m.mae), ('mase', m.mase), ('smape', m.smape)) AS k(key, value)
WHERE m.series IS NULL AND m.confidence = 0.8
ORDER BY m.method, k.key;
SELECT format('metric %s_%s %s', k.key, round(m.confidence * 100), round(k.value::numeric, 4))
FROM scores m,
	 LATERAL (VALUES ('coverage', m.coverage), ('interval_width', m.interval_width)) AS k(key, value)
WHERE m.series IS NULL AND m.method = 'model'
ORDER BY k.key, m.confidence;
-- The same scoring on the validation range, reading rows before 11520 only:
-- the figure to compare options by, since the test rows must not choose them.
SELECT format('metric validation_mse %s', round(e.mse::numeric, 6))
FROM ett_split s,
	 LATERAL tst.evaluate(:'model' || '@' || :version,
						  format('SELECT col, ts, value FROM ett_long %s %s row < 11520',
								 :'col_filter', CASE :'mode' WHEN 'S' THEN 'AND' ELSE 'WHERE' END),
						  'ts', 'value', 'col', :horizon,
						  jsonb_build_object('test_start', s.validation_start, 'test_end', s.validation_end,
											 'scaling', 'standard',
											 'train_start', s.train_start, 'train_end', s.train_end)) AS e
WHERE e.series IS NULL AND e.method = 'model';
SELECT format('metric windows %s', windows)
FROM scores WHERE series IS NULL AND method = 'model' AND confidence = 0.8;

SELECT CASE WHEN count(*) = count(*) FILTER (WHERE windows = 2881 - :horizon)
				 AND count(DISTINCT series) = CASE :'mode' WHEN 'S' THEN 1 ELSE 7 END
			THEN format('ok - every test window scored (%s per series)', 2881 - :horizon)
			ELSE format('not ok - every test window scored: windows per series %s, expected %s',
						string_agg(DISTINCT windows::text, ', '), 2881 - :horizon)
	   END
FROM scores
WHERE series IS NOT NULL;

SELECT CASE WHEN (metrics ->> 'validation_windows')::int = (2881 - :horizon) * n
			THEN 'ok - validation targets are rows 8640 to 11519'
			ELSE format('not ok - validation targets are rows 8640 to 11519: %s validation windows, expected %s',
						metrics ->> 'validation_windows', (2881 - :horizon) * n)
	   END
FROM tst.models, (SELECT CASE :'mode' WHEN 'S' THEN 1 ELSE 7 END AS n) AS c
WHERE name = :'model' AND version = :version;
