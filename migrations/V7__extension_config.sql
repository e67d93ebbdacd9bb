-- The configuration of each extension as last changed (through the API or a file) on any
-- instance: every instance applies it, and writes it to its own file. Absent: each instance's
-- file (or the defaults).
CREATE TABLE solobase.extension_config (
    name       text PRIMARY KEY REFERENCES solobase.extensions (name) ON DELETE CASCADE,
    config     jsonb NOT NULL,
    etag       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
