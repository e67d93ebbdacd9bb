-- Who may read a bucket's objects beyond their owner and administrators: 'private' (no one
-- else), 'authenticated' (any signed-in user) or 'public' (anyone, without a token). A bucket
-- without a row is private, including every bucket that existed before this table: objects
-- that any signed-in user could read until now are private until an administrator says
-- otherwise (`solobase storage bucket NAME --access authenticated` restores the old rule).
CREATE TABLE solobase.storage_buckets (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    access     text NOT NULL DEFAULT 'private'
               CHECK (access IN ('private', 'authenticated', 'public')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
