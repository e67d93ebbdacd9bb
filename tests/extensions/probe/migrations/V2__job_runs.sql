-- One row per run of a "record" job: a second run of the same job fails on the primary key.
CREATE TABLE job_runs (
    job_id bigint PRIMARY KEY,
    ran_at timestamptz NOT NULL DEFAULT now()
);
