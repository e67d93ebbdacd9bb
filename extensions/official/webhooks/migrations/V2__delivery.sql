-- Durable, signed, retried delivery: endpoint secrets and settings, the delivery state machine,
-- every attempt, and the cursor of the event feed.

ALTER TABLE endpoints
    ADD COLUMN secret                     text,
    ADD COLUMN previous_secret            text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN headers                    jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN rate_limit                 integer CHECK (rate_limit > 0),
    ADD COLUMN disabled_reason            text,
    ADD COLUMN failing_since              timestamptz,
    ADD COLUMN updated_at                 timestamptz NOT NULL DEFAULT now();
-- Endpoints made before secrets existed get one (32 random bytes).
UPDATE endpoints SET secret = 'whsec_' ||
    encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64');
ALTER TABLE endpoints ALTER COLUMN secret SET NOT NULL;

DROP INDEX deliveries_pending_idx;
ALTER TABLE deliveries
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    -- Attempts made before the retry schedule was last restarted (resend, replay).
    ADD COLUMN retries_from    integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_attempt_at timestamptz,
    ADD COLUMN last_status     integer,
    ADD COLUMN last_error      text,
    ADD COLUMN delivered_at    timestamptz,
    ADD CONSTRAINT deliveries_status_check CHECK (status IN ('pending', 'succeeded', 'failed'));
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_endpoint_idx ON deliveries (endpoint_id, id);
CREATE INDEX deliveries_failed_idx ON deliveries (created_at) WHERE status = 'failed';

CREATE TABLE attempts (
    id            bigserial PRIMARY KEY,
    delivery_id   bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    duration_ms   integer NOT NULL,
    status_code   integer,
    response_body text NOT NULL DEFAULT '',
    error         text,
    succeeded     boolean NOT NULL
);
CREATE INDEX attempts_delivery_idx ON attempts (delivery_id, id);

-- The last outbox position fanned out into deliveries (one row).
CREATE TABLE feed_cursor (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    tx  bigint NOT NULL,
    seq bigint NOT NULL
);
INSERT INTO feed_cursor (tx, seq) VALUES (0, 0);
