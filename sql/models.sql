-- tst.models: malformed rows are rejected with errors, and the per-backend
-- model cache never serves a version that was replaced or dropped.
SET client_min_messages = warning;

CREATE TABLE daily AS
SELECT timestamptz '2020-01-01 00:00+00' + g * interval '1 day' AS day,
       10 + 3 * sin(g * 2 * pi() / 7) AS v
FROM generate_series(0, 199) AS g;

SELECT tst.train('m', 'daily', 'day', 'v', NULL, 7,
                 '{"context": 28, "patch_len": 7, "patch_stride": 7, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 16, "epochs": 2, "seed": 1}');
SELECT tst.train('m', 'daily', 'day', 'v', NULL, 7,
                 '{"context": 28, "patch_len": 7, "patch_stride": 7, "d_model": 8, "n_heads": 2,
                   "n_layers": 1, "d_ff": 16, "epochs": 2, "seed": 2}');

CREATE TABLE hist AS SELECT tst.series_agg(day, v) AS h FROM daily;
CREATE TABLE snapshot AS SELECT 1 AS round, * FROM tst.forecast('m', (SELECT h FROM hist));

-- Replacing the latest version's weights in place changes the forecast at once.
UPDATE tst.models SET weights = (SELECT weights FROM tst.models WHERE name = 'm' AND version = 1)
WHERE name = 'm' AND version = 2;
INSERT INTO snapshot SELECT 2, * FROM tst.forecast('m', (SELECT h FROM hist));
INSERT INTO snapshot SELECT 3, * FROM tst.forecast('m@1', (SELECT h FROM hist));
SELECT round, count(*) FILTER (WHERE s.forecast = r.forecast) AS same_as_round_1
FROM snapshot s JOIN (SELECT step, forecast FROM snapshot WHERE round = 1) r USING (step)
GROUP BY round ORDER BY round;
SELECT count(DISTINCT forecast) = 7 AS rounds_2_and_3_agree
FROM snapshot WHERE round IN (2, 3);

-- Dropping the latest version falls back to the one before; dropping all is an error.
DELETE FROM tst.models WHERE name = 'm' AND version = 2;
SELECT count(*) FROM tst.forecast('m', (SELECT h FROM hist));
BEGIN;
DELETE FROM tst.models WHERE name = 'm';
SELECT count(*) FROM tst.forecast('m', (SELECT h FROM hist));
ROLLBACK;

-- A model name may not contain "@" or be empty, even when inserted by hand.
INSERT INTO tst.models VALUES ('a@1', 1, '{}', '', '{}', '2024-01-01 00:00+00');
INSERT INTO tst.models VALUES ('', 1, '{}', '', '{}', '2024-01-01 00:00+00');

-- Malformed weights: truncated, a flipped header byte, a wrong version, NaN inside, trailing bytes.
CREATE FUNCTION try_weights(w bytea) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tst.models SET weights = w WHERE name = 'm' AND version = 1;
  PERFORM * FROM tst.forecast('m', (SELECT h FROM hist));
END $$;
CREATE TABLE good AS SELECT weights FROM tst.models WHERE name = 'm' AND version = 1;

SELECT try_weights(substring(weights from 1 for 100)) FROM good;
SELECT try_weights(substring(weights from 1 for 3)) FROM good;
SELECT try_weights(''::bytea) FROM good;
SELECT try_weights(set_byte(weights, 0, 0)) FROM good;
SELECT try_weights(set_byte(weights, 4, 9)) FROM good;
SELECT try_weights(set_byte(weights, 8, 255)) FROM good;
SELECT try_weights(set_byte(weights, 12, 200)) FROM good;
SELECT try_weights(overlay(weights placing '\x0000c07f'::bytea from octet_length(weights) - 3)) FROM good;
SELECT try_weights(weights || '\x00'::bytea) FROM good;
SELECT try_weights(weights) FROM good;

-- Malformed configs: a missing field, a wrong type, negative or overflowing sizes,
-- a config that does not match the weights.
CREATE FUNCTION try_config(c jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tst.models SET config = c WHERE name = 'm' AND version = 1;
  PERFORM * FROM tst.forecast('m', (SELECT h FROM hist));
END $$;
CREATE TABLE good_config AS SELECT config FROM tst.models WHERE name = 'm' AND version = 1;

SELECT try_config(config - 'd_model') FROM good_config;
SELECT try_config(config || '{"d_model": "eight"}') FROM good_config;
SELECT try_config(config || '{"n_layers": -1}') FROM good_config;
SELECT try_config(config || '{"d_model": 1e30}') FROM good_config;
SELECT try_config(config || '{"context": 100000, "patch_len": 1, "patch_stride": 1, "d_model": 4096, "n_heads": 1, "horizon": 10000}') FROM good_config;
SELECT try_config(config || '{"d_ff": 17}') FROM good_config;
SELECT try_config(config || '{"attention": 3}') FROM good_config;
SELECT try_config('[]') FROM good_config;
SELECT try_config(config || '{"comment": "extra fields are ignored"}') FROM good_config;
SELECT try_config(config) FROM good_config;

-- The extension table is dumped by pg_dump.
SELECT e.extname, c.relname FROM pg_extension e, unnest(e.extconfig) AS cfg JOIN pg_class c ON c.oid = cfg;
