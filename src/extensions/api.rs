//! The extension admin API, admins only: list extensions (compiled in or not), enable and
//! disable them at run time.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::discovered;
use super::host::ExtensionHost;
use crate::audit::{self, Actor, Entry, Outcome};
use crate::error::ApiError;
use crate::http::{AppState, CurrentUser};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1/extensions")
            .route("", web::get().to(list))
            .route("/{name}/enable", web::post().to(enable))
            .route("/{name}/disable", web::post().to(disable)),
    );
}

fn require_admin(user: &CurrentUser) -> Result<(), ApiError> {
    if user.0.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("administrators only"))
    }
}

async fn list(user: CurrentUser, host: web::Data<ExtensionHost>) -> Result<HttpResponse, ApiError> {
    require_admin(&user)?;
    let list: Vec<_> = discovered()
        .iter()
        .map(|d| match host.get(d.name) {
            Some(l) => json!({
                "name": d.name, "version": d.version, "tier": d.tier,
                "description": d.description, "compiled": true,
                "enabled": l.is_enabled(), "running": l.is_running(), "active": l.is_active(),
                "error": l.failure(),
                "routes": l.routes.as_ref().map(|t| t.list().into_iter()
                    .map(|(m, p)| format!("{m} /ext/{}{p}", d.name)).collect::<Vec<_>>()),
                "hooks": l.hooks.points().iter().map(|(p, prio)| json!({"hook": p.as_str(), "priority": prio})).collect::<Vec<_>>(),
                "middleware": l.middleware.iter().map(|m| json!({"id": m.id, "priority": m.priority, "paths": m.paths})).collect::<Vec<_>>(),
                "permissions": {
                    "requested": l.manifest.as_ref().map(|m| m.permissions.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                    "granted": l.grants.as_ref().map(|g| g.granted().map(str::to_owned).collect::<Vec<_>>()).unwrap_or_default(),
                    "denied_calls": l.grants.as_ref().map_or(0, |g| g.denied()),
                },
                "stats": {
                    "requests": l.stats.requests.load(Ordering::Relaxed),
                    "errors": l.stats.errors.load(Ordering::Relaxed),
                    "hook_calls": l.stats.hook_calls.load(Ordering::Relaxed),
                    "hook_timeouts": l.stats.hook_timeouts.load(Ordering::Relaxed),
                    "panics": l.panics.count(),
                    "breaker": l.breaker.state(),
                    "in_flight": l.in_flight(),
                    "busy": l.stats.busy.load(Ordering::Relaxed),
                    "rate_limited": l.stats.rate_limited.load(Ordering::Relaxed),
                    "over_budget": l.stats.over_budget.load(Ordering::Relaxed),
                    "storage_bytes": l.storage.as_ref().and_then(|s| s.quota()).map(|(_, used)| used),
                    "storage_quota_bytes": l.storage.as_ref().and_then(|s| s.quota()).map(|(limit, _)| limit),
                },
            }),
            None => json!({
                "name": d.name, "version": d.version, "tier": d.tier,
                "description": d.description, "compiled": false,
                "hint": format!("rebuild with --features {}", d.feature),
            }),
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

async fn set(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    let action = if enabled {
        "extension.enable"
    } else {
        "extension.disable"
    };
    let name = name.into_inner();
    let actor = Actor::User(user.0.id);
    if let Err(e) = require_admin(&user) {
        audit::record_or_log(
            &state.pool,
            Entry::new(actor, action, Outcome::Denied).extension(&name),
        )
        .await;
        return Err(e);
    }
    let changed = host.set_enabled(&name, enabled).await;
    let outcome = match &changed {
        Ok(true) => Outcome::Ok,
        _ => Outcome::Failed,
    };
    audit::record_or_log(
        &state.pool,
        Entry::new(actor, action, outcome).extension(&name),
    )
    .await;
    if !changed.map_err(ApiError::internal)? {
        let hint = discovered()
            .iter()
            .find(|d| d.name == name)
            .map(|d| format!("; rebuild with --features {}", d.feature))
            .unwrap_or_default();
        return Err(ApiError::not_found(format!(
            "extension {name} is not compiled into this binary{hint}"
        )));
    }
    tracing::info!(admin = %user.0.email, extension = %name, enabled, "extension toggled");
    Ok(HttpResponse::Ok().json(json!({"name": name, "enabled": enabled})))
}

async fn enable(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set(user, state, host, name, true).await
}

async fn disable(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set(user, state, host, name, false).await
}
