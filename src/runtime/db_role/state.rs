//! What the database holds for an extension's role, read in one query, and what should be
//! there: the role's attributes, defaults and password.

use solobase_sdk::ExtensionName;

use super::{RoleLimits, generate_password};

/// What the database holds for an extension's role, read in one query.
#[derive(Debug)]
pub(super) struct Current {
    /// The stored password (just generated when there was none).
    pub(super) password: String,
    /// The credentials row was created by this read.
    pub(super) new_password: bool,
    /// The password was set on the role in PostgreSQL.
    pub(super) password_set: bool,
    /// `None` when the role does not exist.
    pub(super) role: Option<RoleState>,
    pub(super) host_is_superuser: bool,
    /// Solobase's own login.
    pub(super) login: String,
    /// The owner of the schema `ext_<name>`, when it exists.
    pub(super) schema_owner: Option<String>,
    /// The verifier Solobase last set on the role.
    pub(super) verifier: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct RoleState {
    pub(super) conn_limit: i32,
    pub(super) attributes_ok: bool,
    /// The attributes it must never have and has (`SUPERUSER`, `CREATEROLE` …).
    pub(super) escalated: Vec<String>,
    /// The roles it is a member of (it must be of none).
    pub(super) member_of: Vec<String>,
    /// Its objects outside its schema (by kind and name).
    pub(super) foreign_objects: Vec<String>,
    pub(super) settings: Vec<String>,
    /// The defaults it has in this database (`ALTER ROLE … IN DATABASE … SET`): the host
    /// sets none, so these are the role's own, and they would override the host's.
    pub(super) database_settings: Vec<String>,
    pub(super) host_is_member: bool,
    /// Its password hash as PostgreSQL keeps it: `None` when the host may not read
    /// `pg_authid` (not a superuser), `Some(None)` when it has no password.
    pub(super) password: Option<Option<String>>,
}

impl RoleState {
    /// Whether it holds more than its role should: an attribute, a membership, an object
    /// outside its schema.
    pub(super) fn is_escalated(&self) -> bool {
        !self.escalated.is_empty()
            || !self.member_of.is_empty()
            || !self.foreign_objects.is_empty()
            || !self.database_settings.is_empty()
    }
}

const READ_STATE: &str = "
    WITH fresh AS (
        INSERT INTO solobase.extension_roles (name, password) VALUES ($1, $2)
        ON CONFLICT (name) DO NOTHING RETURNING password
    )
    SELECT coalesce((SELECT password FROM fresh),
                    (SELECT password FROM solobase.extension_roles WHERE name = $1)),
           EXISTS (SELECT 1 FROM fresh),
           (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
           r.rolconnlimit,
           r.rolcanlogin AND NOT r.rolinherit AND NOT r.rolcreatedb AND NOT r.rolcreaterole
               AND NOT r.rolsuper AND NOT r.rolreplication AND NOT r.rolbypassrls,
           coalesce((SELECT array_agg(c ORDER BY c) FROM pg_db_role_setting d, unnest(d.setconfig) c
                     WHERE d.setrole = r.oid AND d.setdatabase = 0), '{}'),
           (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $3),
           r.oid IS NOT NULL AND pg_has_role(current_user, r.oid, 'USAGE'),
           coalesce((SELECT password_set FROM solobase.extension_roles WHERE name = $1), false),
           current_user::text,
           array_remove(ARRAY[
               CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
               CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
               CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
               CASE WHEN r.rolreplication THEN 'REPLICATION' END,
               CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
               CASE WHEN r.rolinherit THEN 'INHERIT' END], NULL),
           coalesce((SELECT array_agg(m.roleid::regrole::text ORDER BY 1) FROM pg_auth_members m
                     WHERE m.member = r.oid), '{}'),
           coalesce((SELECT array_agg(o ORDER BY o) FROM (
                SELECT 'relation ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS o
                  FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relowner = r.oid AND n.nspname <> $3 AND n.nspname NOT LIKE 'pg_temp%'
                    AND n.nspname NOT LIKE 'pg_toast%'
                UNION ALL
                SELECT 'function ' || quote_ident(n.nspname) || '.' || quote_ident(p.proname)
                       || '(' || pg_get_function_identity_arguments(p.oid) || ')'
                  FROM pg_proc p
                  JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE p.proowner = r.oid AND n.nspname <> $3
                UNION ALL
                SELECT 'schema ' || n.nspname::text FROM pg_namespace n
                  WHERE n.nspowner = r.oid AND n.nspname <> $3 AND n.nspname NOT LIKE 'pg_temp%'
                    AND n.nspname NOT LIKE 'pg_toast_temp%'
                UNION ALL
                SELECT 'event trigger ' || e.evtname::text FROM pg_event_trigger e
                  WHERE e.evtowner = r.oid) objects), '{}'),
           coalesce((SELECT array_agg(c ORDER BY c) FROM pg_db_role_setting d, unnest(d.setconfig) c
                     WHERE d.setrole = r.oid
                       AND d.setdatabase = (SELECT oid FROM pg_database
                                            WHERE datname = current_database())), '{}'),
           (SELECT verifier FROM solobase.extension_roles WHERE name = $1)
    FROM (SELECT 1) one LEFT JOIN pg_roles r ON r.rolname = $3";

pub(super) async fn read_state(
    client: &impl deadpool_postgres::GenericClient,
    name: &ExtensionName,
    role: &str,
) -> Result<Option<Current>, tokio_postgres::Error> {
    let row = client
        .query_one(READ_STATE, &[&name.as_str(), &generate_password(), &role])
        .await?;
    // NULL when another instance inserted the credentials after this statement's snapshot
    // was taken: the caller reads again.
    let Some(password) = row.get::<_, Option<String>>(0) else {
        return Ok(None);
    };
    let conn_limit: Option<i32> = row.get(3);
    let host_is_superuser: bool = row.get(2);
    // Only a superuser may read password hashes.
    let role_password = if host_is_superuser && conn_limit.is_some() {
        let row = client
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[&role],
            )
            .await?;
        Some(row.get::<_, Option<String>>(0))
    } else {
        None
    };
    Ok(Some(Current {
        password,
        new_password: row.get(1),
        host_is_superuser,
        password_set: row.get(8),
        login: row.get(9),
        schema_owner: row.get(6),
        verifier: row.get(14),
        role: conn_limit.map(|conn_limit| RoleState {
            conn_limit,
            attributes_ok: row.get(4),
            escalated: row.get(10),
            member_of: row.get(11),
            foreign_objects: row.get(12),
            settings: row.get(5),
            database_settings: row.get(13),
            host_is_member: row.get(7),
            password: role_password,
        }),
    }))
}

/// What the role's password needs at this start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PasswordFix {
    Keep,
    /// Set the verifier of the stored password.
    Set,
    /// Take away a password the role gave itself (a server that needs none).
    Remove,
}

/// On a server that checks passwords (`passwords`), the role's password is the stored one,
/// set again at every start unless the host can read that PostgreSQL holds the verifier it
/// last set; on the embedded cluster, which authenticates its private socket by trust, the
/// role has none.
pub(super) fn password_fix(c: &Current, passwords: bool) -> PasswordFix {
    let Some(role) = &c.role else {
        return if passwords {
            PasswordFix::Set
        } else {
            PasswordFix::Keep
        };
    };
    match (passwords, &role.password) {
        (true, Some(actual)) => {
            if !c.new_password && c.password_set && actual.is_some() && *actual == c.verifier {
                PasswordFix::Keep
            } else {
                PasswordFix::Set
            }
        }
        // Not readable (a CREATEROLE login): set again, since the role may have changed it.
        (true, None) => PasswordFix::Set,
        (false, Some(Some(_))) => PasswordFix::Remove,
        (false, _) => PasswordFix::Keep,
    }
}

/// Whether the role is known to carry a password Solobase did not give it.
pub(super) fn password_planted(c: &Current, passwords: bool) -> bool {
    let Some(Some(Some(actual))) = c.role.as_ref().map(|r| &r.password) else {
        return false;
    };
    if passwords {
        c.verifier.as_ref().is_some_and(|v| v != actual)
    } else {
        true
    }
}

/// The role defaults an extension's role should have, as `pg_db_role_setting` lists them.
pub(super) fn wanted_settings(role: &str, limits: &RoleLimits) -> Vec<String> {
    let mut settings = vec![
        format!(
            "idle_in_transaction_session_timeout={}",
            limits.idle_in_transaction_timeout_ms
        ),
        format!("search_path={role}"),
        format!("statement_timeout={}", limits.statement_timeout_ms),
    ];
    settings.sort();
    settings
}
