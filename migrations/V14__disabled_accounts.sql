-- Ending sessions: an administrator may disable an account. A disabled account cannot log in,
-- and the token lookup refuses its tokens (its sessions are also deleted when it is disabled).
-- Revoking a token deletes its row from solobase.sessions.
ALTER TABLE solobase.users ADD COLUMN disabled_at timestamptz;
