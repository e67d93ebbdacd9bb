//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers
//! and the host schema is at the version this binary expects; each extension's health is
//! reported beside, without making the server unready).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db::migrate;
use crate::http::AppState;

/// The process is alive
///
/// Answers as long as the process serves requests; it does not look at the database.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = serde_json::Value))
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The server is ready to serve
///
/// Ready when the database answers and the host schema is migrated. Every extension's health
/// is reported under `extensions`; an unhealthy extension does not make the server unready.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready: `status`, `checks` (database, migrations) and `extensions` (health of each)", body = serde_json::Value),
        (status = 503, description = "Not ready, with the same details", body = serde_json::Value),
    )
)]
pub(crate) async fn readyz(
    state: web::Data<AppState>,
    host: web::Data<crate::runtime::host::ExtensionHost>,
) -> HttpResponse {
    let expected = migrate::latest_version();
    let (database, migrations) = match state.pool.get().await {
        Err(e) => (format!("unreachable: {e}"), "unknown".to_owned()),
        Ok(client) => match migrate::applied_version(&client).await {
            Err(e) => (format!("error: {e}"), "unknown".to_owned()),
            Ok(Some(v)) if v >= expected => ("ok".to_owned(), "ok".to_owned()),
            Ok(v) => (
                "ok".to_owned(),
                format!("pending: at {} of {expected}", v.unwrap_or(0)),
            ),
        },
    };
    let ready = database == "ok" && migrations == "ok";
    // Extensions' health is reported, not required: an unhealthy extension leaves the rest of
    // the server ready.
    let extensions: serde_json::Map<String, serde_json::Value> = host
        .all()
        .iter()
        .map(|l| {
            let report = serde_json::to_value(host.health_report(l)).unwrap_or_default();
            (l.name.to_string(), report)
        })
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"database": database, "migrations": migrations},
        "extensions": extensions,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
