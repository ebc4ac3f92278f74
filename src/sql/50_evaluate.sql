
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
