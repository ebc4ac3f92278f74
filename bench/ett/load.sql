-- Load ETTh1.csv (psql's standard input) into ett_long: one row per column
-- and hour, with 0-based row numbers, raw values, rows [0, 14400) only (the
-- protocol never uses later rows).
\set ON_ERROR_STOP 1
\set QUIET 1
SET TimeZone = 'UTC';
CREATE EXTENSION IF NOT EXISTS tst;

DROP TABLE IF EXISTS ett_raw, ett_long;
CREATE TABLE ett_raw (
	date timestamp PRIMARY KEY,
	hufl float8, hull float8, mufl float8, mull float8,
	lufl float8, lull float8, ot float8
);
\copy ett_raw FROM pstdin WITH (FORMAT csv, HEADER true)

CREATE TABLE ett_long AS
WITH numbered AS (
	SELECT (row_number() OVER (ORDER BY date) - 1)::int AS row, *
	FROM ett_raw
)
SELECT c.col, n.row, n.date::timestamptz AS ts, c.value
FROM numbered n
CROSS JOIN LATERAL (VALUES
	('HUFL', n.hufl), ('HULL', n.hull), ('MUFL', n.mufl), ('MULL', n.mull),
	('LUFL', n.lufl), ('LULL', n.lull), ('OT', n.ot)) AS c(col, value)
WHERE n.row < 14400;
ALTER TABLE ett_long ADD PRIMARY KEY (col, row);
ANALYZE ett_long;

-- The split boundaries as timestamps, for tst.evaluate.
CREATE OR REPLACE VIEW ett_split AS
SELECT max(ts) FILTER (WHERE row = 0) AS train_start,
	   max(ts) FILTER (WHERE row = 8639) AS train_end,
	   max(ts) FILTER (WHERE row = 8640) AS validation_start,
	   max(ts) FILTER (WHERE row = 11519) AS validation_end,
	   max(ts) FILTER (WHERE row = 11520) AS test_start,
	   max(ts) FILTER (WHERE row = 14399) AS test_end
FROM ett_long
WHERE col = 'OT';

\pset format unaligned
\pset tuples_only on
SELECT format('metric rows %s', count(*)) FROM ett_long WHERE col = 'OT';
