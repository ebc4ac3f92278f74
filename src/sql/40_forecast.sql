
-- COST 10000 instead of 1 lets the planner aggregate a partitioned table's
-- partitions whole in parallel workers, forecasts included (docs/scaling.md).
CREATE FUNCTION tst.forecast(
    model text,
    history tst.series,
    horizon integer DEFAULT NULL,
    confidence float8 DEFAULT 0.8)
RETURNS TABLE(step integer, ts timestamptz, forecast float8,
              lower_bound float8, upper_bound float8)
AS 'MODULE_PATHNAME', 'forecast'
LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE COST 10000 ROWS 24;

COMMENT ON FUNCTION tst.forecast(text, tst.series, integer, float8) IS
'forecast the steps after a history with a trained model, with prediction intervals';

CREATE FUNCTION tst.forecast_agg_finalfn(internal, text, timestamptz, float8, integer)
RETURNS float8[]
AS 'MODULE_PATHNAME', 'forecast_agg_finalfn'
LANGUAGE C STABLE PARALLEL SAFE COST 10000;

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
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION tst.forecast_agg_finalfn(internal, text, timestamptz, float8)
RETURNS float8[]
AS 'MODULE_PATHNAME', 'forecast_agg_finalfn'
LANGUAGE C STABLE PARALLEL SAFE COST 10000;

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
