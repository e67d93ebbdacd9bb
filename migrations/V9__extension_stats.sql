-- Each running instance's counters per extension, written every stats_interval_ms and removed
-- when the instance stops, for `solobase extensions status|metrics`. `stats` is the "stats"
-- object of GET /api/v1/extensions/{name}. Rows of an instance that died age out (updated_at).
CREATE TABLE solobase.extension_stats (
    instance text NOT NULL,
    name text NOT NULL,
    stats jsonb NOT NULL,
    started_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, name)
);
