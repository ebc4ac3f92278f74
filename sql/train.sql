-- tst.train: options, sources, model rows and every error a caller can cause.
SET client_min_messages = warning;

CREATE TABLE meters AS
SELECT 'load_' || (g % 3) AS meter,
       timestamptz '2024-03-01 00:00+00' + (g / 3) * interval '1 hour' AS ts,
       20 + 5 * sin((g / 3) * 2 * pi() / 24) + (g % 3) AS kw
FROM generate_series(0, 3 * 400 - 1) AS g;

-- A small model: trains in well under a second.
SELECT tst.train('small', 'meters', 'ts', 'kw', 'meter', 12,
                 '{"context": 48, "patch_len": 8, "patch_stride": 4, "d_model": 16,
                   "n_heads": 2, "n_layers": 1, "d_ff": 32, "window": 4,
                   "epochs": 3, "seed": 7}');

-- Training the same name again makes the next version.
SELECT tst.train('small', 'SELECT * FROM meters WHERE meter <> ''load_2''', 'ts', 'kw', 'meter', 12,
                 '{"context": 48, "patch_len": 8, "patch_stride": 4, "d_model": 16,
                   "n_heads": 2, "n_layers": 1, "d_ff": 32, "epochs": 2, "attention": "logsparse"}');

SELECT name, version, config->>'attention' AS attention, config->'quantiles' AS quantiles,
       config->>'context' AS context, config->>'horizon' AS horizon,
       metrics->>'series' AS series, metrics->>'rows' AS rows, metrics->>'epochs_run' AS epochs,
       jsonb_array_length(metrics->'validation_loss') AS history,
       octet_length(weights) > 1000 AS has_weights, substring(weights from 1 for 4) AS magic
FROM tst.models WHERE name = 'small' ORDER BY name, version;

-- A source without a series column is one series; views and schema-qualified names work.
CREATE VIEW one_meter AS SELECT ts AS "Time", kw AS "Value" FROM meters WHERE meter = 'load_0';
SELECT tst.train('single', 'public.one_meter', 'Time', 'Value',
                 options => '{"context": 24, "patch_len": 1, "patch_stride": 1, "d_model": 8,
                              "n_heads": 1, "n_layers": 1, "d_ff": 8, "window": 3, "epochs": 1,
                              "attention": "dense", "quantiles": [0.5]}');
SELECT name, version, config->>'horizon' AS horizon, metrics->>'series' AS series
FROM tst.models WHERE name = 'single';

-- The same seed gives the same weights, bit for bit.
SELECT tst.train('seeded', 'meters', 'ts', 'kw', 'meter', 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 8, "epochs": 2, "seed": 11, "dropout": 0.2}');
SELECT tst.train('seeded', 'meters', 'ts', 'kw', 'meter', 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 8, "epochs": 2, "seed": 11, "dropout": 0.2}');
SELECT count(DISTINCT weights) AS distinct_weights FROM tst.models WHERE name = 'seeded';

-- NULL values are missing points; NaN too.
CREATE TABLE gappy AS SELECT * FROM meters WHERE meter = 'load_1';
UPDATE gappy SET kw = NULL WHERE extract(hour FROM ts) = 5;
UPDATE gappy SET kw = 'NaN' WHERE extract(hour FROM ts) = 6;
SELECT tst.train('gappy', 'gappy', 'ts', 'kw', NULL, 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 8, "epochs": 1}');

-- Errors: arguments.
SELECT tst.train(NULL, 'meters', 'ts', 'kw');
SELECT tst.train('x', NULL, 'ts', 'kw');
SELECT tst.train('', 'meters', 'ts', 'kw');
SELECT tst.train('a@b', 'meters', 'ts', 'kw');
SELECT tst.train('x', 'meters', 'ts', 'kw', horizon => 0);
SELECT tst.train('x', 'meters', 'ts', 'kw', horizon => -5);
SELECT tst.train('x', 'meters', 'ts', 'kw', horizon => NULL);
SELECT tst.train('x', 'meters', 'ts', 'kw', horizon => 1000000);

-- Errors: sources and columns.
SELECT tst.train('x', 'no_such_table', 'ts', 'kw');
SELECT tst.train('x', '', 'ts', 'kw');
SELECT tst.train('x', 'meters; DROP TABLE meters', 'ts', 'kw');
SELECT tst.train('x', 'meters', 'no_such_column', 'kw');
SELECT tst.train('x', 'meters', 'ts', '');
SELECT tst.train('x', 'meters', 'ts', 'kw', 'meter"; DROP TABLE meters; --');
SELECT tst.train('x', 'SELECT * FROM meters WHERE false', 'ts', 'kw', 'meter');
SELECT tst.train('x', 'SELECT * FROM meters WHERE ts < ''2024-03-02''', 'ts', 'kw', 'meter', 12,
                 '{"context": 48}');
SELECT count(*) AS hourly_rows FROM meters;

-- Errors: options.
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '[1, 2]');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"epoch": 3}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"epochs": "3"}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"epochs": 2.5}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"epochs": 0}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"d_model": -4}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"d_model": 30, "n_heads": 4}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"patch_len": 200, "context": 96}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"quantiles": [0.9, 0.1]}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"quantiles": [0, 0.5]}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"quantiles": 0.5}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"attention": "sparse"}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"dropout": 1}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"learning_rate": 0}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"validation_fraction": 1}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"max_seconds": -1}');
SELECT tst.train('x', 'meters', 'ts', 'kw', horizon => 24, options => '{"horizon": 12}');
SELECT tst.train('x', 'meters', 'ts', 'kw', options => '{"d_model": 4096, "d_ff": 16384, "n_layers": 64, "context": 100000, "patch_len": 1, "patch_stride": 1}');

-- Errors: data.
CREATE TABLE bad_values AS SELECT * FROM meters WHERE meter = 'load_0';
UPDATE bad_values SET kw = 'Infinity' WHERE ts = '2024-03-05 10:00+00';
SELECT tst.train('x', 'bad_values', 'ts', 'kw', NULL, 6,
                 '{"context": 24, "patch_len": 4, "patch_stride": 4, "epochs": 1}');

-- No failed call left a model behind.
SELECT name, count(*) FROM tst.models
WHERE name IN ('small', 'single', 'seeded', 'gappy', 'x') GROUP BY name ORDER BY name;

-- Every object states its volatility and parallel safety; nothing is SECURITY DEFINER.
SELECT p.proname, p.provolatile, p.proparallel, p.prosecdef
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'tst' ORDER BY p.proname, p.pronargs;
