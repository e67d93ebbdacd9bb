-- The permissions an administrator granted to each extension. An extension may use a host
-- service (user lookups, file storage, events) only with a permission that is both requested by
-- its manifest and granted here.
CREATE TABLE solobase.extension_grants (
    extension  text NOT NULL REFERENCES solobase.extensions (name) ON DELETE CASCADE,
    permission text NOT NULL,
    -- "user:<uuid>", "cli:<os user>" or "system" (granted when first seen, by configuration).
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (extension, permission)
);

-- Whether the first-sight grant policy (extensions.grant_on_first_sight) was applied to the
-- extension: false for an extension seen from now on; NULL for one seen before grants existed,
-- which keeps every permission it requests (it was using them), whatever the policy.
ALTER TABLE solobase.extensions ADD COLUMN grants_decided boolean;
ALTER TABLE solobase.extensions ALTER COLUMN grants_decided SET DEFAULT false;
