//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers
//! and the host schema is at the version this binary expects).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::db::migrate;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
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
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"database": database, "migrations": migrations},
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
