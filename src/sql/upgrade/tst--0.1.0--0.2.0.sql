-- tst extension upgrade script from version 0.1.0 to 0.2.0: the objects
-- added or changed since 0.1.0, so that ALTER EXTENSION tst UPDATE gives the
-- same objects as a fresh install of 0.2.0.

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION tst UPDATE TO '0.2.0'" to load this file. \quit

CREATE FUNCTION tst.evaluate(
    model text,
    source text,
    time_column text,
    value_column text,
    series_column text DEFAULT NULL,
    horizon integer DEFAULT NULL,
    options jsonb DEFAULT '{}')
RETURNS TABLE(series text, method text, windows integer, mse float8, mae float8,
              rmse float8, mase float8, smape float8, coverage float8,
              interval_width float8)
AS 'MODULE_PATHNAME', 'evaluate'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL RESTRICTED ROWS 30;

COMMENT ON FUNCTION tst.evaluate(text, text, text, text, text, integer, jsonb) IS
'backtest a model and naive forecasts over rolling origins of every series of a source';

-- The transition function of the three-argument tst.forecast_agg reads no
-- table, like its five-argument twin, so both are immutable.
ALTER FUNCTION tst.forecast_agg_transfn(internal, text, timestamptz, float8) IMMUTABLE;

-- A forecast's planner cost (see 40_forecast.sql): the planner may then run
-- the final functions in parallel workers.
ALTER FUNCTION tst.forecast(text, tst.series, integer, float8) COST 10000;
ALTER FUNCTION tst.forecast_agg_finalfn(internal, text, timestamptz, float8, integer) COST 10000;
ALTER FUNCTION tst.forecast_agg_finalfn(internal, text, timestamptz, float8) COST 10000;
