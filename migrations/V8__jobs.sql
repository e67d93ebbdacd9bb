-- Background jobs of extensions. Any instance may run a job; an instance claims due jobs with
-- FOR UPDATE SKIP LOCKED, so no two instances run the same job at once. A claim expires
-- (locked_until), so a job whose instance died is run again elsewhere.
CREATE TABLE solobase.jobs (
    id           bigserial PRIMARY KEY,
    extension    text NOT NULL,
    kind         text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    run_at       timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 5,
    locked_by    text,
    locked_until timestamptz,
    done_at      timestamptz,
    -- Who ran it last, and why it failed last.
    ran_by       text,
    last_error   text
);
CREATE INDEX jobs_due ON solobase.jobs (run_at) WHERE done_at IS NULL;
