
-- tst.series: a time series with unique, ascending timestamps.
-- See docs/series.md.

CREATE TYPE tst.series;

CREATE FUNCTION tst.series_in(cstring) RETURNS tst.series
    AS 'MODULE_PATHNAME', 'series_in'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION tst.series_out(tst.series) RETURNS cstring
    AS 'MODULE_PATHNAME', 'series_out'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION tst.series_recv(internal) RETURNS tst.series
    AS 'MODULE_PATHNAME', 'series_recv'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION tst.series_send(tst.series) RETURNS bytea
    AS 'MODULE_PATHNAME', 'series_send'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE tst.series (
    INPUT = tst.series_in,
    OUTPUT = tst.series_out,
    RECEIVE = tst.series_recv,
    SEND = tst.series_send,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = double,
    STORAGE = extended
);

COMMENT ON TYPE tst.series IS
    'time series of (timestamptz, float8) points with unique timestamps; NaN marks a missing value';

CREATE FUNCTION tst.series_length(tst.series) RETURNS integer
    AS 'MODULE_PATHNAME', 'series_length'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION tst.series_start(tst.series) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'series_start'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION tst.series_end(tst.series) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'series_end'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Month and day steps depend on the session TimeZone only when applied;
-- detection itself reads only the stored microsecond timestamps.
CREATE FUNCTION tst.series_step(tst.series) RETURNS interval
    AS 'MODULE_PATHNAME', 'series_step'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The history as the forecast functions pass it to a model: the last "context" steps on the
-- step grid, gaps interpolated. STABLE because day and month steps follow
-- the session TimeZone. A NULL step means the detected one.
CREATE FUNCTION tst.series_window(tst.series, context integer, step interval DEFAULT NULL)
    RETURNS float8[]
    AS 'MODULE_PATHNAME', 'series_window'
    LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE;

CREATE FUNCTION tst.series_unnest(tst.series, OUT ts timestamptz, OUT value float8)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'series_unnest'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 100;

-- Aggregate support. The state is internal: an array of raw points, plus
-- the model name and horizon for tst.forecast_agg.

CREATE FUNCTION tst.series_agg_transfn(internal, timestamptz, float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'series_agg_transfn'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION tst.series_agg_finalfn(internal) RETURNS tst.series
    AS 'MODULE_PATHNAME', 'series_agg_finalfn'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION tst.series_agg_combinefn(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'series_agg_combinefn'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION tst.series_agg_serialfn(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'series_agg_serialfn'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION tst.series_agg_deserialfn(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'series_agg_deserialfn'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Transition function of tst.forecast_agg(model, ts, value, horizon); it
-- shares the combine, serialize and deserialize functions above.
CREATE FUNCTION tst.forecast_agg_transfn(internal, text, timestamptz, float8, integer)
    RETURNS internal
    AS 'MODULE_PATHNAME', 'forecast_agg_transfn'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE tst.series_agg(ts timestamptz, value float8) (
    SFUNC = tst.series_agg_transfn,
    STYPE = internal,
    FINALFUNC = tst.series_agg_finalfn,
    COMBINEFUNC = tst.series_agg_combinefn,
    SERIALFUNC = tst.series_agg_serialfn,
    DESERIALFUNC = tst.series_agg_deserialfn,
    PARALLEL = SAFE
);

COMMENT ON AGGREGATE tst.series_agg(timestamptz, float8) IS
    'collect rows into a tst.series; NULL rows are skipped and duplicate timestamps averaged';
