-- The host platform: users, login sessions, stored-object metadata and the event outbox.
-- Everything lives in the `solobase` schema, never in `public`.

CREATE TABLE solobase.users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'user')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON solobase.users (lower(email));

-- Opaque bearer tokens; only their SHA-256 is stored.
CREATE TABLE solobase.sessions (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES solobase.users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires_at_idx ON solobase.sessions (expires_at);
CREATE INDEX sessions_user_id_idx ON solobase.sessions (user_id);

CREATE TABLE solobase.storage_objects (
    bucket       text NOT NULL,
    path         text NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),
    content_type text NOT NULL,
    owner_id     uuid REFERENCES solobase.users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, path)
);

-- Durable system events, written in the same transaction as the change they describe.
CREATE TABLE solobase.outbox (
    seq         bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    event_type  text NOT NULL,
    data        jsonb NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_event_type_idx ON solobase.outbox (event_type, seq);

-- Wake listeners (other instances, delivery workers) when an event is committed.
CREATE FUNCTION solobase.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('solobase_outbox', NEW.seq::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON solobase.outbox
    FOR EACH ROW EXECUTE FUNCTION solobase.outbox_notify();
