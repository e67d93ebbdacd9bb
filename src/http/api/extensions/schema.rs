//! An extension's schema through the API: `POST /api/v1/extensions/{name}/migrate` and
//! `…/rollback`, with dry runs, as the extension's own role.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{body_of, compiled};
use crate::audit::{self, Entry, Outcome};
use crate::error::{ApiError, ErrorCode, ErrorSchema};
use crate::http::{AppState, CurrentUser};
use crate::runtime::host::{ExtensionHost, Loaded};
use crate::runtime::schema::{self, MigrationError};

/// The body of a migrate: `{"to": 3, "dry_run": true}`, both optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    /// Stop at this version (default: apply all).
    to: Option<u32>,
    /// Only list the files and SQL that would run.
    #[serde(default)]
    dry_run: bool,
}

/// The body of a rollback: `{"to": 1, "dry_run": true}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// Revert every version above this one (0 reverts all).
    to: u32,
    /// Only list the files and SQL that would run.
    #[serde(default)]
    dry_run: bool,
}

/// The answer of a migrate or rollback: what was applied or reverted, or (dry run) what would
/// run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ExtensionMigration)]
struct Migrated {
    name: String,
    /// Versions applied (a migrate).
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<Vec<i32>>,
    /// Versions reverted (a rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    reverted: Option<Vec<i32>>,
    /// A dry run: the role the SQL would run as, and the steps in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<Step>>,
}

/// One file of a dry run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MigrationStep)]
struct Step {
    version: u32,
    file: String,
    sql: String,
}

impl Migrated {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            applied: None,
            reverted: None,
            dry_run: None,
            role: None,
            steps: None,
        }
    }
}

impl From<MigrationError> for ApiError {
    fn from(e: MigrationError) -> Self {
        match e {
            MigrationError::UnknownVersion(..) | MigrationError::Invalid(_) => {
                ApiError::invalid(e.to_string())
            }
            MigrationError::Changed { .. }
            | MigrationError::NotInBuild { .. }
            | MigrationError::Failed { .. } => {
                ApiError::new(ErrorCode::MigrationFailed, e.to_string())
            }
            MigrationError::Pool(_) | MigrationError::Db(_) | MigrationError::Other(_) => {
                ApiError::internal(e)
            }
        }
    }
}

/// Apply an extension's migrations
///
/// Applies its pending migrations (all, or up to `to`) as its own role, in one transaction;
/// with `dry_run`, answers the files and SQL that would run and changes nothing. Audited.
#[utoipa::path(
    post,
    path = "/api/v1/extensions/{name}/migrate",
    tag = "extensions",
    operation_id = "migrate_extension",
    params(("name" = String, Path, description = "The extension's name")),
    request_body(content = Option<MigrateBody>, description = "Optional: a target version, a dry run"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Applied (`applied`), or the plan (`steps`)", body = Migrated),
        (status = 400, description = "An invalid body or unknown version (`invalid_request`)", body = ErrorSchema),
        (status = 408, description = "The body arrived too slowly (`request_timeout`)", body = ErrorSchema),
        (status = 413, description = "A body over server.max_json_bytes (`payload_too_large`)", body = ErrorSchema),
        (status = 415, description = "A body that is not `application/json` (`unsupported_media_type`)", body = ErrorSchema),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
        (status = 409, description = "A migration failed or does not match the database; nothing changed (`migration_failed`)", body = ErrorSchema),
    )
)]
pub(super) async fn migrate(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    body: crate::http::JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state, "extension.migrate", Some(&name))
        .await?;
    let l = compiled(&host, &name)?;
    let body: MigrateBody = body_of(
        &body,
        Some(MigrateBody::default()),
        r#"{"to": 2, "dry_run": true}"#,
    )?;
    let migrations = l.registration.migrations();
    if body.dry_run {
        return dry_run(l, &migrations, body.to, false).await;
    }
    let pool = own_pool(l)?;
    let result = schema::migrate(&state.pool, pool, &l.name, &migrations, body.to).await;
    audit_schema_change(&state, actor, "extension.migrate", &name, &result).await;
    Ok(HttpResponse::Ok().json(Migrated {
        applied: Some(result?),
        ..Migrated::new(&name)
    }))
}

/// Roll an extension's schema back
///
/// Reverts its migrations above `to`, newest first, in one transaction. The extension must be
/// disabled (its code expects the schema it has); enabling it, or the next start, migrates it
/// up again. With `dry_run`, answers what would run. Audited.
#[utoipa::path(
    post,
    path = "/api/v1/extensions/{name}/rollback",
    tag = "extensions",
    operation_id = "rollback_extension",
    params(("name" = String, Path, description = "The extension's name")),
    request_body(content = RollbackBody, description = "The version to go back to; a dry run"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Reverted (`reverted`), or the plan (`steps`)", body = Migrated),
        (status = 400, description = "An invalid body or unknown version (`invalid_request`)", body = ErrorSchema),
        (status = 408, description = "The body arrived too slowly (`request_timeout`)", body = ErrorSchema),
        (status = 413, description = "A body over server.max_json_bytes (`payload_too_large`)", body = ErrorSchema),
        (status = 415, description = "A body that is not `application/json` (`unsupported_media_type`)", body = ErrorSchema),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
        (status = 409, description = "It is enabled (`extension_enabled`), or a down script failed; nothing changed (`migration_failed`)", body = ErrorSchema),
    )
)]
pub(super) async fn rollback(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    body: crate::http::JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state, "extension.rollback", Some(&name))
        .await?;
    let l = compiled(&host, &name)?;
    let body: RollbackBody = body_of(&body, None, r#"{"to": 1, "dry_run": true}"#)?;
    let migrations = l.registration.migrations();
    if body.dry_run {
        return dry_run(l, &migrations, Some(body.to), true).await;
    }
    if l.is_enabled() {
        let refusal = ApiError::new(
            ErrorCode::ExtensionEnabled,
            format!(
                "disable {name} before rolling its schema back: its code expects the schema it \
                 has now (POST /api/v1/extensions/{name}/disable)"
            ),
        );
        let entry = Entry::new(actor, "extension.rollback", Outcome::Failed)
            .extension(&name)
            .detail(json!({"error": refusal.message}));
        audit::record_or_log(&state.pool, entry).await;
        return Err(refusal);
    }
    let pool = own_pool(l)?;
    let result = schema::rollback(
        &state.pool,
        pool,
        &l.name,
        &migrations,
        body.to,
        &mut |_, _, _| {},
    )
    .await;
    audit_schema_change(&state, actor, "extension.rollback", &name, &result).await;
    Ok(HttpResponse::Ok().json(Migrated {
        reverted: Some(result?),
        ..Migrated::new(&name)
    }))
}

async fn dry_run(
    l: &Loaded,
    migrations: &[solobase_sdk::Migration],
    to: Option<u32>,
    down: bool,
) -> Result<HttpResponse, ApiError> {
    // The history table is the extension's: read as its role, never with the host's rights.
    let client = own_pool(l)?.get().await.map_err(ApiError::internal)?;
    let history = schema::applied(&client, &l.name).await?;
    let steps = schema::dry_run(&history, migrations, to, down)?;
    Ok(HttpResponse::Ok().json(Migrated {
        dry_run: Some(true),
        role: Some(l.name.schema()),
        steps: Some(
            steps
                .into_iter()
                .map(|s| Step {
                    version: s.version,
                    file: s.file,
                    sql: s.sql.to_owned(),
                })
                .collect(),
        ),
        ..Migrated::new(l.name.as_str())
    }))
}

/// The extension's own pool: its migrations run as its role, as at start.
fn own_pool(l: &Loaded) -> Result<&deadpool_postgres::Pool, ApiError> {
    l.pool.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "{} is not running ({}); its schema is migrated when it starts",
                l.name,
                l.failure().unwrap_or_default()
            ),
        )
    })
}

async fn audit_schema_change(
    state: &AppState,
    actor: crate::audit::Actor,
    action: &'static str,
    name: &str,
    result: &Result<Vec<i32>, MigrationError>,
) {
    let entry = match result {
        Ok(versions) => {
            Entry::new(actor, action, Outcome::Ok).detail(json!({"versions": versions}))
        }
        Err(e) => {
            Entry::new(actor, action, Outcome::Failed).detail(json!({"error": e.to_string()}))
        }
    };
    audit::record_or_log(&state.pool, entry.extension(name)).await;
}
