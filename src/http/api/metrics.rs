//! `GET /metrics`: the Prometheus exposition text (see [`crate::metrics`]). Administrators only
//! on the main server; without authentication on `[metrics] bind`, a separate listener.

use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::http::{AppState, CurrentUser};
use crate::runtime::host::ExtensionHost;

fn exposition(state: &AppState, host: &ExtensionHost) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body({
            host.export_metrics(&state.metrics);
            state
                .metrics
                .export_auth(&state.throttle, &state.auth_cache);
            state.metrics.render()
        })
}

/// Prometheus metrics
///
/// The Prometheus text exposition format. Also served without authentication on
/// `[metrics] bind`, a separate listener, when configured.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    operation_id = "metrics",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "Metrics in the Prometheus text format", content_type = "text/plain", body = String))
)]
pub(crate) async fn for_admins(
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
) -> Result<HttpResponse, ApiError> {
    if !user.0.is_admin() {
        return Err(ApiError::forbidden(
            "administrators only; or serve metrics on a private address with [metrics] bind",
        ));
    }
    Ok(exposition(&state, &host))
}

/// On the metrics listener.
pub(crate) async fn open(
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
) -> HttpResponse {
    exposition(&state, &host)
}
