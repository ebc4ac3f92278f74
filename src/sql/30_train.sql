
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
