//! The extension admin API, admins only: list extensions (compiled in or not) with their
//! permissions, limits and counters; enable (granting permissions) and disable them, revoke a
//! permission — at once, on every instance.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use serde::Deserialize;

use super::admin::{AdminError, Grant};
use super::discovered;
use super::host::{ExtensionHost, Loaded};
use super::migrate::{self, MigrationError};
use super::reconfigure::{ConfigError, Source};
use crate::audit::{self, Entry, Outcome};
use crate::error::{ApiError, ErrorCode};
use crate::http::{AppState, CurrentUser};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1/extensions")
            .route("", web::get().to(list))
            .route("/{name}", web::get().to(one))
            .route("/{name}/health", web::get().to(health))
            .route("/{name}/metrics", web::get().to(metrics))
            .route("/{name}/enable", web::post().to(enable))
            .route("/{name}/disable", web::post().to(disable))
            .route("/{name}/grants/{permission}", web::delete().to(revoke))
            .route("/{name}/config", web::get().to(get_config))
            .route("/{name}/config", web::put().to(put_config))
            .route("/{name}/migrate", web::post().to(migrate))
            .route("/{name}/rollback", web::post().to(rollback)),
    );
}

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

/// One extension's entry, as in the list.
async fn one(
    user: CurrentUser,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let l = compiled(&host, &name)?;
    Ok(HttpResponse::Ok().json(entry(&host, l)))
}

/// Its health now, and the recent checks.
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

/// Its counters and limits (the Prometheus series of `/metrics`, for this extension, as JSON).
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
        "hooks": crate::extensions::host::Slot::all()
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

/// The body of an enable: which requested permissions to grant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnableBody {
    #[serde(default)]
    grant_all: bool,
    grant: Option<Vec<String>>,
}

fn grant_of(body: &[u8]) -> Result<Grant, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Grant::Unspecified);
    }
    let body: EnableBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "invalid body: {e}; send {{\"grant_all\": true}}, {{\"grant\": [\"users.read\"]}} or nothing"
        ))
    })?;
    match (body.grant_all, body.grant) {
        (true, Some(_)) => Err(ApiError::invalid(
            "give either grant_all or grant, not both",
        )),
        (true, None) => Ok(Grant::All),
        (false, Some(list)) => Ok(Grant::Only(list)),
        (false, None) => Ok(Grant::Unspecified),
    }
}

async fn enable(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state.pool, "extension.enable", Some(&name))
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
    Ok(HttpResponse::Ok().json(json!({
        "name": *name, "enabled": true,
        "permissions": {"granted": permissions.granted, "pending": permissions.pending},
    })))
}

async fn disable(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state.pool, "extension.disable", Some(&name))
        .await?;
    compiled(&host, &name)?;
    host.disable(&name, &actor).await?;
    tracing::info!(admin = %user.0.email, extension = %name, "extension disabled");
    Ok(HttpResponse::Ok().json(json!({"name": *name, "enabled": false})))
}

async fn revoke(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, permission) = path.into_inner();
    let actor = user
        .admin_action(&state.pool, "extension.revoke", Some(&name))
        .await?;
    compiled(&host, &name)?;
    let permissions = host.revoke(&name, &[permission], &actor).await?;
    Ok(HttpResponse::Ok().json(json!({
        "name": name,
        "permissions": {"granted": permissions.granted, "pending": permissions.pending},
    })))
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
        .json(json!({"config": value, "etag": etag}))
}

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

/// Replaces the configuration: the body is the whole new configuration (a JSON object), and
/// `If-Match` must carry the entity tag it replaces.
async fn put_config(
    req: actix_web::HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state.pool, "extension.config", Some(&name))
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    to: Option<u32>,
    #[serde(default)]
    dry_run: bool,
}

/// The body of a rollback: `{"to": 1, "dry_run": true}`; `to` is required (0 reverts all).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to: u32,
    #[serde(default)]
    dry_run: bool,
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

/// Applies the extension's pending migrations (all, or up to `to`) as its own role; with
/// `dry_run`, answers the files and SQL that would run and changes nothing.
async fn migrate(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state.pool, "extension.migrate", Some(&name))
        .await?;
    let l = compiled(&host, &name)?;
    let body: MigrateBody = body_of(
        &body,
        Some(MigrateBody::default()),
        r#"{"to": 2, "dry_run": true}"#,
    )?;
    let migrations = l.registration.migrations();
    if body.dry_run {
        return dry_run(&state, l, &migrations, body.to, false).await;
    }
    let pool = own_pool(l)?;
    let result = migrate::migrate(pool, &l.name, &migrations, body.to).await;
    audit_schema_change(&state, actor, "extension.migrate", &name, &result).await;
    Ok(HttpResponse::Ok().json(json!({"name": *name, "applied": result?})))
}

/// Reverts the extension's migrations above `to`, newest first, in one transaction. The
/// extension must be disabled (its code expects the schema it has); enabling it, or the next
/// start, migrates it up again. With `dry_run`, answers what would run.
async fn rollback(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state.pool, "extension.rollback", Some(&name))
        .await?;
    let l = compiled(&host, &name)?;
    let body: RollbackBody = body_of(&body, None, r#"{"to": 1, "dry_run": true}"#)?;
    let migrations = l.registration.migrations();
    if body.dry_run {
        return dry_run(&state, l, &migrations, Some(body.to), true).await;
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
    let result = migrate::rollback(pool, &l.name, &migrations, body.to, &mut |_, _, _| {}).await;
    audit_schema_change(&state, actor, "extension.rollback", &name, &result).await;
    Ok(HttpResponse::Ok().json(json!({"name": *name, "reverted": result?})))
}

async fn dry_run(
    state: &AppState,
    l: &Loaded,
    migrations: &[solobase_sdk::Migration],
    to: Option<u32>,
    down: bool,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await.map_err(ApiError::internal)?;
    let steps = migrate::dry_run(&client, &l.name, migrations, to, down).await?;
    Ok(HttpResponse::Ok().json(json!({
        "name": l.name.as_str(), "dry_run": true, "role": l.name.schema(), "steps": steps,
    })))
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
