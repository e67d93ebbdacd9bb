-- Who did what, when, with which result: administrator and command-line actions, admin logins,
-- and what the extension runtime enforced. Append-only: updates, deletes and truncation are
-- refused by trigger; extension roles have no privilege on this schema at all.
CREATE TABLE solobase.audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    -- "user:<uuid>", "cli:<os user>" or "system".
    actor     text NOT NULL,
    -- e.g. extension.enable, extension.migrate, auth.admin_login.
    action    text NOT NULL,
    extension text,
    -- "ok", "denied" or "failed".
    result    text NOT NULL CHECK (result IN ('ok', 'denied', 'failed')),
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON solobase.audit_log (at);
CREATE INDEX audit_log_extension_at ON solobase.audit_log (extension, at);

CREATE FUNCTION solobase.audit_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'solobase.audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON solobase.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION solobase.audit_log_is_append_only();
