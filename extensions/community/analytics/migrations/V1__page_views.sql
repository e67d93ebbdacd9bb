CREATE TABLE page_views (
    id          bigserial PRIMARY KEY,
    path        text NOT NULL,
    status      smallint NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX page_views_occurred_at_idx ON page_views (occurred_at);
