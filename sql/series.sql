-- tst.series type, helpers, tst.series_agg and step detection.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

--
-- Text input and output
--
SELECT '{"2012-01-01 00:00:00+00": 12.8, "2012-01-02 00:00:00+00": NaN}'::tst.series;
SELECT '{}'::tst.series;
SELECT '  {  }  '::tst.series;
SELECT E'{\n  "2012-01-01" :1 ,\t"2012-01-02":-2.5e3\n}'::tst.series;
-- input order does not matter
SELECT '{"2012-01-03": 3, "2012-01-01": 1, "2012-01-02": 2}'::tst.series;
-- duplicate timestamps merge into the mean of their non-NaN values
SELECT '{"2012-01-01": 1, "2012-01-01": NaN, "2012-01-01": 4, "2012-01-02": NaN, "2012-01-02": NaN}'::tst.series;
-- the same instant written in two time zones is a duplicate
SELECT '{"2012-01-01 01:00:00+01": 1, "2012-01-01 00:00:00+00": 3}'::tst.series;
SELECT '{"2012-01-01": Infinity, "2012-01-02": -Infinity, "2012-01-03": -0}'::tst.series;
-- output follows TimeZone and DateStyle like timestamptz
SET timezone = 'America/New_York';
SELECT '{"2012-01-01 00:00:00+00": 1}'::tst.series;
SET datestyle = 'Postgres, MDY';
SELECT '{"2012-01-01 00:00:00+00": 1}'::tst.series;
RESET datestyle;
SET datestyle = 'ISO, YMD';
SET timezone = 'UTC';
-- float8 output round-trips and follows extra_float_digits
SELECT '{"2012-01-01": 0.30000000000000004, "2012-01-02": 1e-300}'::tst.series;
SELECT s::text::tst.series::text = s::text AS round_trip
FROM (SELECT '{"2012-01-01": 0.30000000000000004, "2012-01-02": 1e-300, "2012-01-03": NaN}'::tst.series AS s) q;
SET extra_float_digits = 0;
SELECT '{"2012-01-01": 0.30000000000000004}'::tst.series;
RESET extra_float_digits;

--
-- Malformed text input
--
SELECT ''::tst.series;
SELECT 'x'::tst.series;
SELECT '{'::tst.series;
SELECT '{"2012-01-01": 1'::tst.series;
SELECT '{"2012-01-01": }'::tst.series;
SELECT '{"2012-01-01" 1}'::tst.series;
SELECT '{"2012-01-01": 1,}'::tst.series;
SELECT '{"2012-01-01": 1 "2012-01-02": 2}'::tst.series;
SELECT '{"2012-01-01: 1}'::tst.series;
SELECT '{2012-01-01: 1}'::tst.series;
SELECT '{"2012-01-01": abc}'::tst.series;
SELECT '{"2012-01-01": 1e999}'::tst.series;
SELECT '{"2012-01-01": 1} x'::tst.series;
SELECT '{"2012-01-01": 1}}'::tst.series;
SELECT '{"not a date": 1}'::tst.series;
SELECT '{"infinity": 1}'::tst.series;

--
-- Helpers
--
SELECT tst.series_length(s), tst.series_start(s), tst.series_end(s)
FROM (SELECT '{"2012-01-02": 2, "2012-01-01": 1, "2012-01-05": NaN}'::tst.series AS s) q;
SELECT tst.series_length('{}'), tst.series_start('{}') IS NULL AS no_start,
       tst.series_end('{}') IS NULL AS no_end;
SELECT * FROM tst.series_unnest('{"2012-01-02": 2, "2012-01-01": 1, "2012-01-05": NaN}');
SELECT count(*) FROM tst.series_unnest('{}');

--
-- Binary send and receive, through COPY in binary format
--
CREATE TEMP TABLE series_bin (id int, s tst.series);
INSERT INTO series_bin VALUES
    (1, '{"2012-01-01": 1.5, "2012-01-02": NaN, "2012-01-03": -Infinity}'),
    (2, '{}'),
    (3, NULL);
\copy series_bin TO 'results/series_bin.dat' WITH (FORMAT binary)
CREATE TEMP TABLE series_bin_copy (LIKE series_bin);
\copy series_bin_copy FROM 'results/series_bin.dat' WITH (FORMAT binary)
SELECT a.id, a.s::text IS NOT DISTINCT FROM b.s::text AS same, b.s
FROM series_bin a JOIN series_bin_copy b USING (id) ORDER BY a.id;
-- malformed binary values: a bytea field is copied as raw bytes, so its
-- contents reach tst.series_recv unchanged
CREATE TEMP TABLE series_raw (b bytea);
CREATE TEMP TABLE series_recv_target (s tst.series);
-- one point claimed, none sent
INSERT INTO series_raw VALUES ('\x00000001');
\copy series_raw TO 'results/series_raw.dat' WITH (FORMAT binary)
\copy series_recv_target FROM 'results/series_raw.dat' WITH (FORMAT binary)
-- negative count
TRUNCATE series_raw;
INSERT INTO series_raw VALUES ('\xffffffff');
\copy series_raw TO 'results/series_raw.dat' WITH (FORMAT binary)
\copy series_recv_target FROM 'results/series_raw.dat' WITH (FORMAT binary)
-- timestamps out of order
TRUNCATE series_raw;
INSERT INTO series_raw VALUES ('\x00000002'::bytea || int8send(1000) || float8send(1)
                               || int8send(0) || float8send(2));
\copy series_raw TO 'results/series_raw.dat' WITH (FORMAT binary)
\copy series_recv_target FROM 'results/series_raw.dat' WITH (FORMAT binary)
-- infinite timestamp
TRUNCATE series_raw;
INSERT INTO series_raw VALUES ('\x00000001'::bytea || int8send(9223372036854775807) || float8send(1));
\copy series_raw TO 'results/series_raw.dat' WITH (FORMAT binary)
\copy series_recv_target FROM 'results/series_raw.dat' WITH (FORMAT binary)
-- a valid hand-written value
TRUNCATE series_raw;
INSERT INTO series_raw VALUES ('\x00000002'::bytea || int8send(0) || float8send(1)
                               || int8send(86400000000) || float8send(2));
\copy series_raw TO 'results/series_raw.dat' WITH (FORMAT binary)
\copy series_recv_target FROM 'results/series_raw.dat' WITH (FORMAT binary)
SELECT * FROM series_recv_target;

--
-- tst.series_agg
--
CREATE TABLE series_rows (g int, ts timestamptz, value float8);
INSERT INTO series_rows VALUES
    (1, '2012-01-01', 1), (1, '2012-01-02', 2), (1, '2012-01-03', 3),
    (2, '2012-01-01', NULL), (2, NULL, 5), (2, '2012-01-02', 'NaN'), (2, '2012-01-03', 7),
    (3, '2012-01-01', 'Infinity'), (3, '2012-01-02', '-Infinity'),
    (4, '2012-01-01', 1), (4, '2012-01-01', 2), (4, '2012-01-01', 'NaN'),
    (4, '2012-01-02', 'NaN'), (4, '2012-01-02', 'NaN'),
    (4, '2012-01-03', 'Infinity'), (4, '2012-01-03', 1),
    (5, '2012-01-01', 42),
    (6, NULL, NULL), (6, '2012-01-01', NULL);
SELECT g, tst.series_agg(ts, value) FROM series_rows GROUP BY g ORDER BY g;
-- row order does not change the result
SELECT g, tst.series_agg(ts, value ORDER BY ts DESC)::text = tst.series_agg(ts, value ORDER BY ts)::text AS reverse_same,
       tst.series_agg(ts, value ORDER BY random())::text = tst.series_agg(ts, value ORDER BY ts)::text AS random_same
FROM series_rows GROUP BY g ORDER BY g;
-- no rows, and a FILTER that removes every row of some groups
SELECT tst.series_agg(ts, value) IS NULL AS is_null FROM series_rows WHERE false;
SELECT g, tst.series_agg(ts, value) FILTER (WHERE g % 2 = 1) FROM series_rows GROUP BY g ORDER BY g;
-- infinite timestamps are rejected
SELECT tst.series_agg(ts, 1) FROM (VALUES ('2012-01-01'::timestamptz), ('infinity')) v(ts);
-- the final function leaves the state intact, so a window aggregate can reuse it
SELECT ts, tst.series_agg(ts, value) OVER (ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
FROM series_rows WHERE g = 1 ORDER BY ts;
SELECT ts, tst.series_agg(ts, value) OVER (ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
FROM series_rows WHERE g = 1 ORDER BY ts;

--
-- The tst.forecast_agg state, through a test aggregate with the same
-- support functions
--
CREATE AGGREGATE forecast_state_test(text, timestamptz, float8, integer) (
    SFUNC = tst.forecast_agg_transfn,
    STYPE = internal,
    FINALFUNC = tst.series_agg_finalfn,
    COMBINEFUNC = tst.series_agg_combinefn,
    SERIALFUNC = tst.series_agg_serialfn,
    DESERIALFUNC = tst.series_agg_deserialfn,
    PARALLEL = SAFE
);
SELECT forecast_state_test('m', ts, value, 3) FROM series_rows WHERE g = 2;
SELECT forecast_state_test('m', ts, value, NULL) FROM series_rows WHERE g = 2;
SELECT forecast_state_test(CASE WHEN g = 1 THEN 'a' ELSE 'b' END, ts, value, 3) FROM series_rows;
SELECT forecast_state_test('m', ts, value, g) FROM series_rows;
SELECT forecast_state_test('m', ts, value, CASE WHEN g = 1 THEN 3 END) FROM series_rows;
SELECT forecast_state_test(NULL, ts, value, 3) FROM series_rows;
-- each group has its own model name; a group without points returns NULL
SELECT g, forecast_state_test('m' || g, ts, value, g) FROM series_rows WHERE g IN (5, 6) GROUP BY g ORDER BY g;
--
-- Parallel aggregation returns the same result as serial
--
CREATE TABLE series_big (g int, ts timestamptz, value float8);
INSERT INTO series_big
SELECT i % 7, timestamptz '2012-01-01' + (i / 3) * interval '1 hour',
       CASE WHEN i % 11 = 0 THEN 'NaN' ELSE (i * 37 % 101)::float8 / 4 END
FROM generate_series(1, 60000) i;
ANALYZE series_big;
CREATE TEMP TABLE serial_result AS
SELECT g, tst.series_agg(ts, value)::text AS s,
       tst.series_agg(ts, value) FILTER (WHERE g % 3 <> 0)::text AS f
FROM series_big GROUP BY g;
CREATE TEMP TABLE serial_total AS
SELECT tst.series_agg(ts, value)::text AS s,
       tst.series_agg(ts, value) FILTER (WHERE value < 0)::text AS f
FROM series_big;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT g, tst.series_agg(ts, value) FROM series_big GROUP BY g;
SELECT count(*) AS groups,
       count(*) FILTER (WHERE p.s = r.s) AS same,
       count(*) FILTER (WHERE p.f IS NOT DISTINCT FROM r.f) AS same_filtered,
       count(*) FILTER (WHERE p.f IS NULL) AS filtered_out
FROM (SELECT g, tst.series_agg(ts, value)::text AS s,
             tst.series_agg(ts, value) FILTER (WHERE g % 3 <> 0)::text AS f
      FROM series_big GROUP BY g) p
JOIN serial_result r USING (g);
EXPLAIN (COSTS OFF)
SELECT tst.series_agg(ts, value) FROM series_big;
SELECT p.s = t.s AS same, p.f IS NULL AS filtered_out
FROM (SELECT tst.series_agg(ts, value)::text AS s,
             tst.series_agg(ts, value) FILTER (WHERE value < 0)::text AS f
      FROM series_big) p, serial_total t;
SELECT tst.series_length(tst.series_agg(ts, value)) FROM series_big;

-- partial states with the same arguments combine
EXPLAIN (COSTS OFF)
SELECT forecast_state_test('m', ts, value, 12) FROM series_big;
SELECT tst.series_length(forecast_state_test('m', ts, value, 12)) FROM series_big;
SELECT tst.series_length(forecast_state_test('m', ts, value, NULL)) FROM series_big;
-- different arguments fail, in a worker or when combining; which pair of
-- values the message names depends on the split, so only the SQLSTATE shows
DO $$
BEGIN
    PERFORM forecast_state_test('m' || (g = 0)::text, ts, value, 12) FROM series_big;
EXCEPTION WHEN invalid_parameter_value THEN
    RAISE NOTICE 'different model names rejected';
END
$$;
DO $$
BEGIN
    PERFORM forecast_state_test('m', ts, value, CASE WHEN g = 0 THEN 1 END) FROM series_big;
EXCEPTION WHEN invalid_parameter_value THEN
    RAISE NOTICE 'different horizons rejected';
END
$$;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;
DROP AGGREGATE forecast_state_test(text, timestamptz, float8, integer);
DROP TABLE series_big;

--
-- Step detection
--
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '2012-01-01', '2012-03-01', interval '1 day') t;
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '2012-01-01', '2012-01-08', interval '15 minutes') t;
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '2012-01-01', '2012-03-01', interval '1 week') t;
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '2012-01-01', '2012-03-01', interval '90 minutes 30 seconds') t;
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '2000-01-31', '2012-12-31', interval '1 month') t;
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '2000-01-01', '2012-12-31', interval '3 months') t;
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '1900-01-01', '2012-12-31', interval '1 year') t;
-- a two-point February is still monthly; data every 28 days is too
SELECT tst.series_step('{"2013-02-01": 1, "2013-03-01": 2}');
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '2012-01-01', '2012-12-31', interval '28 days') t;
-- the median ignores a few irregular gaps
SELECT tst.series_step('{"2012-01-01": 1, "2012-01-02": 2, "2012-01-03": 3, "2012-01-10": 4, "2012-01-11": 5}');
-- only the last 1000 differences count: 1000 daily points, then 600 hourly
-- ones (the median of all 1599 differences would be a day)
SELECT tst.series_step(tst.series_agg(t, 1))
FROM (SELECT generate_series(timestamptz '2000-01-01', timestamptz '2000-01-01' + 999 * interval '1 day',
                             interval '1 day') t
      UNION ALL
      SELECT generate_series(timestamptz '2003-01-01', timestamptz '2003-01-01' + 599 * interval '1 hour',
                             interval '1 hour')) q;
-- daily data in a zone with daylight-saving time stays on local midnight
SET timezone = 'Europe/Berlin';
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '2012-03-01', '2012-04-30', interval '1 day') t;
SELECT tst.series_step(tst.series_agg(t, 1))
FROM generate_series(timestamptz '2012-01-01', '2012-12-01', interval '1 month') t;
SET timezone = 'UTC';
SELECT tst.series_step('{"2012-01-01": 1}');
SELECT tst.series_step('{}');

--
-- Windows: regularization onto the step grid
--
SELECT tst.series_window('{"2012-01-01": 1, "2012-01-02": 2, "2012-01-03": 3}', 3);
-- gaps and NaN are interpolated; the front is padded with the first value
SELECT tst.series_window('{"2012-01-01": 1, "2012-01-02": NaN, "2012-01-04": 7, "2012-01-05": 9}', 7);
-- several points on one slot average; points map to the nearest slot
SELECT tst.series_window('{"2012-01-01": 1, "2012-01-02 06:00": 2, "2012-01-01 20:00": 4, "2012-01-03": 3}',
                         3, interval '1 day');
-- a point exactly halfway goes to the later slot
SELECT tst.series_window('{"2012-01-01": 1, "2012-01-01 12:00": 5, "2012-01-03": 3}', 3, interval '1 day');
-- a trailing NaN carries the last observed value forward
SELECT tst.series_window('{"2012-01-01": 1, "2012-01-02": 2, "2012-01-03": NaN}', 3);
-- only the tail is read: an infinite value outside the window is ignored
SELECT tst.series_window('{"2012-01-01": Infinity, "2012-01-02": 2, "2012-01-03": 3}', 2);
SELECT tst.series_window('{"2012-01-01": 1, "2012-01-02": -Infinity, "2012-01-03": 3}', 2);
-- month grid with month-end data
SELECT tst.series_window(tst.series_agg(t, extract(month FROM t)::float8), 4)
FROM generate_series(timestamptz '2012-01-31', '2012-12-31', interval '1 month') t;
-- a long context over a short yearly history is padded, not out of range
SELECT array_length(tst.series_window(tst.series_agg(t, 1), 100000), 1)
FROM generate_series(timestamptz '2000-01-01', '2012-01-01', interval '1 year') t;
-- daily grid across a daylight-saving change keeps local midnight
SET timezone = 'Europe/Berlin';
SELECT tst.series_window(tst.series_agg(t, extract(day FROM t)::float8), 5)
FROM generate_series(timestamptz '2012-03-23', '2012-03-27', interval '1 day') t;
SET timezone = 'UTC';
SELECT tst.series_window('{"2012-01-01": NaN, "2012-01-02": NaN}', 2, interval '1 day');
SELECT tst.series_window('{}', 2, interval '1 day');
SELECT tst.series_window('{"2012-01-01": 1}', 0, interval '1 day');
SELECT tst.series_window('{"2012-01-01": 1}', 2, interval '0 days');
SELECT tst.series_window('{"2012-01-01": 1}', 2);

DROP TABLE series_rows;
