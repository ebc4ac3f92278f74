-- tst extension install script, version 0.1.0.
-- Assembled by the Makefile from src/sql/*.sql in name order.

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION tst" to load this file. \quit

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

-- Trained models: one row per version. The weights follow docs/model-format.md.
CREATE TABLE tst.models (
    name text NOT NULL
        CONSTRAINT models_name_check
        CHECK (name OPERATOR(pg_catalog.<>) '' AND pg_catalog.strpos(name, '@') OPERATOR(pg_catalog.=) 0),
    version integer NOT NULL
        CONSTRAINT models_version_check CHECK (version OPERATOR(pg_catalog.>) 0),
    config jsonb NOT NULL,
    weights bytea NOT NULL,
    metrics jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (name, version)
);

COMMENT ON TABLE tst.models IS 'trained tst forecasting models, one row per version';

-- pg_dump keeps the rows of this extension table.
SELECT pg_catalog.pg_extension_config_dump('tst.models', '');

CREATE FUNCTION tst.train(
    name text,
    source text,
    time_column text,
    value_column text,
    series_column text DEFAULT NULL,
    horizon integer DEFAULT 24,
    options jsonb DEFAULT '{}')
RETURNS integer
AS 'MODULE_PATHNAME', 'train'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION tst.train(text, text, text, text, text, integer, jsonb) IS
'train a forecasting model on a table, view or SELECT and store it as the next version of name';

CREATE FUNCTION tst.forecast(
    model text,
    history tst.series,
    horizon integer DEFAULT NULL,
    confidence float8 DEFAULT 0.8)
RETURNS TABLE(step integer, ts timestamptz, forecast float8,
              lower_bound float8, upper_bound float8)
AS 'MODULE_PATHNAME', 'forecast'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE ROWS 24;

COMMENT ON FUNCTION tst.forecast(text, tst.series, integer, float8) IS
'forecast the steps after a history with a trained model, with prediction intervals';

CREATE FUNCTION tst.forecast_agg_finalfn(internal, text, timestamptz, float8, integer)
RETURNS float8[]
AS 'MODULE_PATHNAME', 'forecast_agg_finalfn'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE AGGREGATE tst.forecast_agg(model text, ts timestamptz, value float8, horizon integer) (
    SFUNC = tst.forecast_agg_transfn,
    STYPE = internal,
    FINALFUNC = tst.forecast_agg_finalfn,
    FINALFUNC_EXTRA,
    FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = tst.series_agg_combinefn,
    SERIALFUNC = tst.series_agg_serialfn,
    DESERIALFUNC = tst.series_agg_deserialfn,
    PARALLEL = SAFE
);

-- The form without a horizon forecasts the model's own horizon.
CREATE FUNCTION tst.forecast_agg_transfn(internal, text, timestamptz, float8)
RETURNS internal
AS 'MODULE_PATHNAME', 'forecast_agg_transfn_default'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION tst.forecast_agg_finalfn(internal, text, timestamptz, float8)
RETURNS float8[]
AS 'MODULE_PATHNAME', 'forecast_agg_finalfn'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE AGGREGATE tst.forecast_agg(model text, ts timestamptz, value float8) (
    SFUNC = tst.forecast_agg_transfn,
    STYPE = internal,
    FINALFUNC = tst.forecast_agg_finalfn,
    FINALFUNC_EXTRA,
    FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = tst.series_agg_combinefn,
    SERIALFUNC = tst.series_agg_serialfn,
    DESERIALFUNC = tst.series_agg_deserialfn,
    PARALLEL = SAFE
);

CREATE FUNCTION tst.forecast_table(
    model text,
    source text,
    time_column text,
    value_column text,
    series_column text DEFAULT NULL,
    horizon integer DEFAULT NULL,
    confidence float8 DEFAULT 0.8)
RETURNS TABLE(series text, step integer, ts timestamptz, forecast float8,
              lower_bound float8, upper_bound float8)
AS 'MODULE_PATHNAME', 'forecast_table'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL RESTRICTED ROWS 1000;

COMMENT ON FUNCTION tst.forecast_table(text, text, text, text, text, integer, float8) IS
'forecast every series of a table, view or SELECT in one call';
