
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
