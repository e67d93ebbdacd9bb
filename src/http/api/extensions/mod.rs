//! The extension admin API, admins only: list extensions (compiled in or not) with their
//! permissions, limits and counters; enable (granting permissions) and disable them, revoke a
//! permission — at once, on every instance.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::{ApiError, ErrorCode, ErrorSchema};
use crate::http::CurrentUser;
use crate::runtime::control::AdminError;
use crate::runtime::discovered;
use crate::runtime::host::{ExtensionHost, Loaded};

mod config;
mod control;
mod schema;

/// `/api/v1/extensions…`.
pub(crate) fn routes(api: &mut crate::http::Api) {
    api.add(__path_list, list)
        .add(__path_one, one)
        .add(__path_health, health)
        .add(__path_metrics, metrics)
        .add(control::__path_enable, control::enable)
        .add(control::__path_disable, control::disable)
        .add(control::__path_revoke, control::revoke)
        .add(config::__path_get_config, config::get_config)
        .add(config::__path_put_config, config::put_config)
        .add(schema::__path_migrate, schema::migrate)
        .add(schema::__path_rollback, schema::rollback);
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
    let mut list: Vec<_> = host
        .all()
        .iter()
        .map(|l| serde_json::to_value(host.status_of(l)).unwrap_or_default())
        .collect();
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
    Ok(HttpResponse::Ok().json(host.status_of(l)))
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
    Ok(HttpResponse::Ok().json(json!({
        "name": l.name.as_str(),
        "stats": host.stats_of(l),
        "limits": host.limits_of(&name),
        "hooks": crate::runtime::host::Slot::all()
            .map(|slot| (slot.name(), l.stats.hooks[slot.index()].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect::<std::collections::BTreeMap<_, _>>(),
    })))
}

/// The extension `name` of this binary, or 404 saying how to get it.
pub(super) fn compiled<'h>(host: &'h ExtensionHost, name: &str) -> Result<&'h Loaded, ApiError> {
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

/// `body` as `T`; an empty body is `T::default()` when `empty` gives one.
pub(super) fn body_of<T: serde::de::DeserializeOwned>(
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
