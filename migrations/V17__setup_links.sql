-- One-time links that create the first administrator: issued at each start while no
-- administrator exists, printed in the log, valid for 30 minutes, deleted when used and once
-- an administrator exists. Only their SHA-256 is kept.
CREATE TABLE solobase.setup_links (
    token_hash bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
REVOKE ALL ON solobase.setup_links FROM PUBLIC;
