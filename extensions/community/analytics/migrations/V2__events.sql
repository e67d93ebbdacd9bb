-- Events (page views and custom events) and the daily salts of the visitor hash.
CREATE TABLE salts (
    day  date PRIMARY KEY,
    salt bytea NOT NULL
);
CREATE TABLE events (
    occurred_at  timestamptz NOT NULL,
    site         text NOT NULL,
    visitor      bigint NOT NULL,
    name         text NOT NULL,
    path         text NOT NULL,
    query        text NOT NULL DEFAULT '',
    referrer     text NOT NULL DEFAULT '',
    utm_source   text,
    utm_medium   text,
    utm_campaign text,
    browser      text NOT NULL DEFAULT 'Other',
    os           text NOT NULL DEFAULT 'Other',
    device       text NOT NULL DEFAULT 'desktop',
    props        jsonb,
    status       smallint
);
-- Every query is bounded by time (and the purge deletes by it).
CREATE INDEX events_occurred_at_idx ON events (occurred_at);
-- Custom events are few among page views: found without scanning the views.
CREATE INDEX events_custom_idx ON events (name, occurred_at) WHERE name <> 'pageview';
-- The page views counted before: each its own visitor, as nothing linked them.
INSERT INTO events (occurred_at, site, visitor, name, path, status)
SELECT occurred_at, '', id, 'pageview', path, status FROM page_views;
DROP TABLE page_views;
