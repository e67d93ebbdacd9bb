-- The latest health check of each extension, as the instance that ran it saw it:
-- {"status": "healthy|degraded|critical|unknown", "message": "...", "at": "<RFC 3339>"}.
ALTER TABLE solobase.extensions ADD COLUMN health jsonb;
