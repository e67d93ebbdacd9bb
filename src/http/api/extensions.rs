//! The extension admin API, admins only: list extensions (compiled in or not) with their
//! permissions, limits and counters; enable (granting permissions) and disable them, revoke a
//! permission — at once, on every instance.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use serde::{Deserialize, Serialize};

use crate::audit::{self, Entry, Outcome};
use crate::error::{ApiError, ErrorCode, ErrorSchema};
use crate::http::{AppState, CurrentUser};
use crate::runtime::control::{AdminError, Grant, Permissions};
use crate::runtime::discovered;
use crate::runtime::host::{ExtensionHost, Loaded};
use crate::runtime::reconfigure::{ConfigError, Source};
use crate::runtime::schema::{self, MigrationError};

/// `/api/v1/extensions…`.
pub fn routes(api: &mut crate::http::Api) {
    api.add(__path_list, list)
        .add(__path_one, one)
        .add(__path_health, health)
        .add(__path_metrics, metrics)
        .add(__path_enable, enable)
        .add(__path_disable, disable)
        .add(__path_revoke, revoke)
        .add(__path_get_config, get_config)
        .add(__path_put_config, put_config)
        .add(__path_migrate, migrate)
        .add(__path_rollback, rollback);
}

/// Every extension
///
/// Every extension this binary runs — enabled, running, error, routes, hooks, middleware,
/// permissions (requested, granted, pending, denied calls), configuration state, health,
/// limits and counters — then the discovered ones it lacks (`compiled: false`, with the
/// feature to rebuild with).
#[utoipa::path(
    get,
    path = "/api/v1/extensions",
    tag = "extensions",
    operation_id = "list_extensions",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "One entry per extension", body = [serde_json::Value]))
)]
async fn list(user: CurrentUser, host: web::Data<ExtensionHost>) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    // Every extension this binary runs (also those registered by an embedding program), then
    // the discovered ones it does not contain.
    let mut list: Vec<_> = host.all().iter().map(|l| entry(&host, l)).collect();
    list.extend(
        discovered()
            .iter()
            .filter(|d| host.get(d.name).is_none())
            .map(|d| {
                json!({
                    "name": d.name, "version": d.version, "tier": d.tier,
                    "description": d.description, "compiled": false,
                    "hint": format!("rebuild with --features {}", d.feature),
                })
            }),
    );
    Ok(HttpResponse::Ok().json(list))
}

/// One extension
///
/// Its entry, as in the list.
#[utoipa::path(
    get,
    path = "/api/v1/extensions/{name}",
    tag = "extensions",
    operation_id = "get_extension",
    params(("name" = String, Path, description = "The extension's name")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The extension's entry", body = serde_json::Value),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
    )
)]
async fn one(
    user: CurrentUser,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let l = compiled(&host, &name)?;
    Ok(HttpResponse::Ok().json(entry(&host, l)))
}

/// An extension's health
///
/// Its health now (`healthy`, `degraded`, `critical` or `unknown`, with a message) and its
/// recent checks.
#[utoipa::path(
    get,
    path = "/api/v1/extensions/{name}/health",
    tag = "extensions",
    operation_id = "extension_health",
    params(("name" = String, Path, description = "The extension's name")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "`name`, `now` and `history`", body = serde_json::Value),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
    )
)]
async fn health(
    user: CurrentUser,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let l = compiled(&host, &name)?;
    Ok(HttpResponse::Ok().json(json!({
        "name": l.name.as_str(),
        "now": host.health_report(l),
        "history": l.health.history(),
    })))
}

/// An extension's counters
///
/// Its counters, limits and hook calls: the series of `/metrics` for this extension, as JSON.
#[utoipa::path(
    get,
    path = "/api/v1/extensions/{name}/metrics",
    tag = "extensions",
    operation_id = "extension_metrics",
    params(("name" = String, Path, description = "The extension's name")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "`name`, `stats`, `limits` and `hooks`", body = serde_json::Value),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
    )
)]
async fn metrics(
    user: CurrentUser,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let l = compiled(&host, &name)?;
    let all = entry(&host, l);
    Ok(HttpResponse::Ok().json(json!({
        "name": l.name.as_str(),
        "stats": all["stats"],
        "limits": all["limits"],
        "hooks": crate::runtime::host::Slot::all()
            .map(|slot| (slot.name(), l.stats.hooks[slot.index()].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect::<std::collections::BTreeMap<_, _>>(),
    })))
}

/// One running extension's entry.
fn entry(host: &ExtensionHost, l: &Loaded) -> serde_json::Value {
    let name = l.name.as_str();
    let found = discovered().iter().find(|d| d.name == name);
    let version = l
        .manifest
        .as_ref()
        .map(|m| m.version.to_string())
        .or(found.map(|d| d.version.to_owned()));
    let description = l
        .manifest
        .as_ref()
        .map(|m| m.description.clone())
        .or(found.map(|d| d.description.to_owned()));
    let tier = found.map(|d| d.tier);
    json!({
    "name": name, "version": version, "tier": tier,
    "description": description, "compiled": true,
    "enabled": l.is_enabled(), "running": l.is_running(), "active": l.is_active(),
    "error": l.failure(),
    "routes": l.routes.as_ref().map(|t| t.list().into_iter()
        .map(|(m, p)| format!("{m} /ext/{name}{p}")).collect::<Vec<_>>()),
    "hooks": l.hooks.points().iter().map(|(p, prio)| json!({"hook": p.as_str(), "priority": prio})).collect::<Vec<_>>(),
    "middleware": l.middleware.iter().map(|m| json!({"id": m.id, "priority": m.priority, "paths": m.paths})).collect::<Vec<_>>(),
    "permissions": {
        "requested": l.manifest.as_ref().map(|m| m.permissions.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
        "granted": l.grants.as_ref().map(|g| g.granted()).unwrap_or_default(),
        "pending": l.grants.as_ref().map(|g| g.pending()).unwrap_or_default(),
        "denied_calls": l.grants.as_ref().map_or(0, |g| g.denied()),
    },
    "config": l.config_state.status(),
    "health": {
        "now": host.health_report(l),
        "history": l.health.history(),
    },
    "limits": host.limits_of(name),
    "stats": host.stats_of(l),
        })
}

/// The extension `name` of this binary, or 404 saying how to get it.
fn compiled<'h>(host: &'h ExtensionHost, name: &str) -> Result<&'h Loaded, ApiError> {
    host.get(name).map(|l| &**l).ok_or_else(|| {
        let hint = discovered()
            .iter()
            .find(|d| d.name == name)
            .map(|d| format!("; rebuild with --features {}", d.feature))
            .unwrap_or_default();
        ApiError::not_found(format!(
            "extension {name} is not compiled into this binary{hint}"
        ))
    })
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::PermissionsPending { .. } => {
                ApiError::new(ErrorCode::PermissionsPending, e.to_string())
            }
            AdminError::NotRequested { .. } => ApiError::invalid(e.to_string()),
            AdminError::NotGranted { .. } => ApiError::not_found(e.to_string()),
            AdminError::Database(cause) => ApiError::internal(cause),
        }
    }
}

/// An extension after an enable, a disable or a revoke.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ExtensionChange)]
struct Changed {
    name: String,
    /// Whether it is enabled now (absent after a revoke).
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    /// Its permissions now (absent after a disable).
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<Permissions>,
}

/// An extension's running configuration and its entity tag.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ExtensionConfig)]
struct Configuration {
    /// The whole configuration, as its JSON Schema describes it.
    config: serde_json::Value,
    /// For `If-Match` when replacing it; also in the `ETag` header.
    etag: String,
}

/// The body of an enable: which requested permissions to grant (one of the two, or no body).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnableBody {
    /// Grant every permission the extension requests.
    #[serde(default)]
    grant_all: bool,
    /// Grant these of the requested permissions.
    grant: Option<Vec<String>>,
}

fn grant_of(body: &[u8]) -> Result<Grant, ApiError> {
    let body: EnableBody = body_of(
        body,
        Some(EnableBody::default()),
        r#"{"grant_all": true}, {"grant": ["users.read"]} or nothing"#,
    )?;
    match (body.grant_all, body.grant) {
        (true, Some(_)) => Err(ApiError::invalid(
            "give either grant_all or grant, not both",
        )),
        (true, None) => Ok(Grant::All),
        (false, Some(list)) => Ok(Grant::Only(list)),
        (false, None) => Ok(Grant::Unspecified),
    }
}

/// Enable an extension
///
/// At once on every instance, persisted and audited. When it requests permissions that are
/// not granted, the body decides: `{"grant_all": true}` or `{"grant": [...]}`; without one the
/// answer is 409 `permissions_pending`.
#[utoipa::path(
    post,
    path = "/api/v1/extensions/{name}/enable",
    tag = "extensions",
    operation_id = "enable_extension",
    params(("name" = String, Path, description = "The extension's name")),
    request_body(content = Option<EnableBody>, description = "Optional: which requested permissions to grant"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Enabled, with its permissions", body = Changed),
        (status = 400, description = "An invalid body, or a permission it does not request (`invalid_request`)", body = ErrorSchema),
        (status = 408, description = "The body arrived too slowly (`request_timeout`)", body = ErrorSchema),
        (status = 413, description = "A body over server.max_json_bytes (`payload_too_large`)", body = ErrorSchema),
        (status = 415, description = "A body that is not `application/json` (`unsupported_media_type`)", body = ErrorSchema),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
        (status = 409, description = "Requested permissions await a decision (`permissions_pending`)", body = ErrorSchema),
    )
)]
async fn enable(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    body: crate::http::JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state, "extension.enable", Some(&name))
        .await?;
    compiled(&host, &name)?;
    let grant = match grant_of(&body) {
        Ok(grant) => grant,
        Err(e) => {
            let entry = Entry::new(actor, "extension.enable", Outcome::Failed)
                .extension(&name)
                .detail(json!({"error": e.message}));
            audit::record_or_log(&state.pool, entry).await;
            return Err(e);
        }
    };
    let permissions = host.enable(&name, grant, &actor).await?;
    tracing::info!(admin = %user.0.email, extension = %name, "extension enabled");
    Ok(HttpResponse::Ok().json(Changed {
        name: name.into_inner(),
        enabled: Some(true),
        permissions: Some(permissions),
    }))
}

/// Disable an extension
///
/// At once on every instance, persisted and audited; its data is kept.
#[utoipa::path(
    post,
    path = "/api/v1/extensions/{name}/disable",
    tag = "extensions",
    operation_id = "disable_extension",
    params(("name" = String, Path, description = "The extension's name")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Disabled", body = Changed),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
    )
)]
async fn disable(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state, "extension.disable", Some(&name))
        .await?;
    compiled(&host, &name)?;
    host.disable(&name, &actor).await?;
    tracing::info!(admin = %user.0.email, extension = %name, "extension disabled");
    Ok(HttpResponse::Ok().json(Changed {
        name: name.into_inner(),
        enabled: Some(false),
        permissions: None,
    }))
}

/// Revoke a permission
///
/// At once on every instance; calls needing it fail from then on. Audited.
#[utoipa::path(
    delete,
    path = "/api/v1/extensions/{name}/grants/{permission}",
    tag = "extensions",
    operation_id = "revoke_extension_permission",
    params(("name" = String, Path, description = "The extension's name"), ("permission" = String, Path, description = "A granted permission, e.g. `users.read`")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Revoked: its permissions now", body = Changed),
        (status = 404, description = "Not compiled in, or the permission is not granted (`not_found`)", body = ErrorSchema),
    )
)]
async fn revoke(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, permission) = path.into_inner();
    let actor = user
        .admin_action(&state, "extension.revoke", Some(&name))
        .await?;
    compiled(&host, &name)?;
    let permissions = host.revoke(&name, &[permission], &actor).await?;
    Ok(HttpResponse::Ok().json(Changed {
        name,
        enabled: None,
        permissions: Some(permissions),
    }))
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        let code = match &e {
            ConfigError::Invalid(_) => ErrorCode::InvalidRequest,
            ConfigError::Refused(_) => ErrorCode::ConfigRefused,
            ConfigError::Stale { .. } => ErrorCode::PreconditionFailed,
            ConfigError::Unavailable(_) => ErrorCode::Unavailable,
        };
        ApiError::new(code, e.to_string())
    }
}

fn with_etag(value: serde_json::Value, etag: &str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{etag}\"")))
        .json(Configuration {
            config: value,
            etag: etag.to_owned(),
        })
}

/// An extension's configuration
///
/// The running configuration and its entity tag (also in `ETag`), for `If-Match` on a
/// replacement.
#[utoipa::path(
    get,
    path = "/api/v1/extensions/{name}/config",
    tag = "extensions",
    operation_id = "get_extension_config",
    params(("name" = String, Path, description = "The extension's name")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The configuration", body = Configuration,
            headers(("ETag" = String, description = "The configuration's entity tag"))),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
    )
)]
async fn get_config(
    user: CurrentUser,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let l = compiled(&host, &name)?;
    let (value, etag) = l.config_state.current();
    Ok(with_etag(value, &etag))
}

/// Replace an extension's configuration
///
/// The body is the whole new configuration (a JSON object), checked against the extension's
/// JSON Schema and offered to it; `If-Match` must carry the entity tag it replaces (`*` for
/// whatever is current). Written to its file and applied by every instance.
#[utoipa::path(
    put,
    path = "/api/v1/extensions/{name}/config",
    tag = "extensions",
    operation_id = "put_extension_config",
    params(("name" = String, Path, description = "The extension's name"), ("If-Match" = String, Header, description = "The etag of the configuration being replaced, or `*`")),
    request_body(content = serde_json::Value, description = "The whole new configuration, a JSON object"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Replaced: the configuration and its new etag", body = Configuration,
            headers(("ETag" = String, description = "The new configuration's entity tag"))),
        (status = 400, description = "Not a JSON object, or invalid against the schema (`invalid_request`)", body = ErrorSchema),
        (status = 408, description = "The body arrived too slowly (`request_timeout`)", body = ErrorSchema),
        (status = 413, description = "A body over server.max_json_bytes (`payload_too_large`)", body = ErrorSchema),
        (status = 415, description = "A body that is not `application/json` (`unsupported_media_type`)", body = ErrorSchema),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
        (status = 409, description = "The extension refused it (`config_refused`)", body = ErrorSchema),
        (status = 412, description = "The etag is stale (`precondition_failed`)", body = ErrorSchema),
        (status = 428, description = "No If-Match (`precondition_required`)", body = ErrorSchema),
    )
)]
async fn put_config(
    req: actix_web::HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    body: crate::http::JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state, "extension.config", Some(&name))
        .await?;
    compiled(&host, &name)?;
    let if_match = req
        .headers()
        .get(actix_web::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let v = v.trim();
            v.strip_prefix("W/")
                .unwrap_or(v)
                .trim_matches('"')
                .to_owned()
        })
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::PreconditionRequired,
                "send If-Match with the etag of the configuration you are replacing (GET it first)",
            )
        })?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "send the whole configuration as a JSON object, e.g. {\"max_endpoints\": 20}",
        ));
    }
    // `If-Match: *` replaces whatever is current.
    let expected = (if_match != "*").then_some(if_match.as_str());
    let etag = host
        .reconfigure(&name, value.clone(), expected, true, Source::Api(actor))
        .await?;
    Ok(with_etag(value, &etag))
}

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

/// `body` as `T`; an empty body is `T::default()` when `empty` gives one.
fn body_of<T: serde::de::DeserializeOwned>(
    body: &[u8],
    empty: Option<T>,
    example: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace)
        && let Some(value) = empty
    {
        return Ok(value);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid body: {e}; send e.g. {example}")))
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
async fn migrate(
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
async fn rollback(
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
