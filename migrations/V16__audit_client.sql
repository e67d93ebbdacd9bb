-- The client an audited request came from, as the server resolved it (behind a trusted
-- reverse proxy, the client the proxy reported): NULL for the command line and Solobase's own
-- actions.
ALTER TABLE solobase.audit_log ADD COLUMN client inet;
