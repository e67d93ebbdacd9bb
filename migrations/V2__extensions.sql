-- Extension state that outlives a process: whether an administrator enabled it, and why it
-- last failed. Rows appear when an extension is first seen.
CREATE TABLE solobase.extensions (
    name       text PRIMARY KEY,
    enabled    boolean NOT NULL DEFAULT true,
    -- Why the extension is not running (failed initialize/start/migration), or NULL.
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Permissions held by user roles (admins hold every permission implicitly).
CREATE TABLE solobase.role_permissions (
    role       text NOT NULL CHECK (role IN ('admin', 'user')),
    permission text NOT NULL,
    PRIMARY KEY (role, permission)
);
