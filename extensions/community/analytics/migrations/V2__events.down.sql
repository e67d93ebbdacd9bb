CREATE TABLE page_views (
    id          bigserial PRIMARY KEY,
    path        text NOT NULL,
    status      smallint NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX page_views_occurred_at_idx ON page_views (occurred_at);
INSERT INTO page_views (path, status, occurred_at)
SELECT path, coalesce(status, 200), occurred_at FROM events WHERE name = 'pageview';
DROP TABLE events;
DROP TABLE salts;
