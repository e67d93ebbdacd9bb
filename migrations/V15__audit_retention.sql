-- Retention of the audit log. It stays append-only for every change but one: deleting
-- entries older than the cutoff a retention run names in the transaction-local setting
-- `solobase.audit_delete_before` — and never an entry younger than a day. Updates and
-- truncation are still refused for everyone, Solobase's own login included.
DROP TRIGGER audit_log_append_only ON solobase.audit_log;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR TRUNCATE ON solobase.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION solobase.audit_log_is_append_only();

CREATE FUNCTION solobase.audit_log_retention_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    cutoff timestamptz := nullif(current_setting('solobase.audit_delete_before', true), '')::timestamptz;
BEGIN
    IF cutoff IS NULL OR cutoff > now() - interval '1 day' OR OLD.at >= cutoff THEN
        RAISE EXCEPTION 'solobase.audit_log is append-only: only a retention run deletes entries, '
            'and only those older than its cutoff and than a day';
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER audit_log_retention_only
    BEFORE DELETE ON solobase.audit_log
    FOR EACH ROW EXECUTE FUNCTION solobase.audit_log_retention_only();
