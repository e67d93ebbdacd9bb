//! The HTTP surface of the host: routes, shared state, and the outermost middleware (request
//! ids, and the security headers of every answer).
//! [`routes()`] lists every host route; [`routes::Api`] mounts and documents them.
//!
//! Handlers parse the input into domain types, call into `auth`, `storage`, `events` or the
//! runtime, and map failures to [`crate::error::ApiError`]; the caller of a request is
//! resolved once, in [`identity`].

pub(crate) mod api;
pub(crate) mod body_deadline;
pub(crate) mod client_addr;
mod dashboard;
pub mod ext;
pub(crate) mod identity;
mod json_bytes;
pub(crate) mod openapi;
mod request_id;
pub(crate) mod routes;
mod security_headers;
pub(crate) mod tls;

use std::sync::Arc;

use actix_web::web;

use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::events::EventBus;
use crate::storage::FileStore;

pub(crate) use api::auth::CurrentUser;
pub(crate) use json_bytes::JsonBytes;
pub(crate) use request_id::{RequestId, middleware as request_id_middleware};
pub(crate) use routes::Api;

/// Shared by every handler; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub config: Arc<Config>,
    pub events: EventBus,
    pub(crate) storage: FileStore,
    pub(crate) metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Login and sign-up limits and the password-hashing slots.
    pub(crate) throttle: Arc<crate::auth::throttle::Throttle>,
    /// Refused admin actions being merged before they are audited.
    pub(crate) denials: Arc<crate::audit::Denials>,
    /// The reverse proxies whose forwarding headers are believed.
    pub(crate) proxies: Arc<crate::config::TrustedProxies>,
    /// Sessions and role permissions, read once and kept while nothing changes them.
    pub(crate) auth_cache: Arc<crate::auth::cache::AuthCache>,
}

/// Mounts every host route of `api` (built once by [`Api::build`] from [`routes()`]); JSON
/// bodies may be `max_json` bytes long.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, api: &Arc<Api>, max_json: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_json)
            .error_handler(crate::error::json_error_handler),
    )
    // The extension API reads its optional JSON bodies as bytes (see `JsonBytes`).
    .app_data(web::PayloadConfig::new(max_json));
    api.mount(cfg);
    dashboard::configure(cfg);
}

/// Every host route: a handler and its `#[utoipa::path]` declaration, which gives the method
/// and path it is mounted at and documents it (see [`routes::Api`]).
pub(crate) fn routes(api: &mut Api) {
    api::routes(api);
}

/// Marks a request no route matched: its metrics label is `unmatched` without asking the
/// router again (actix would walk every route's pattern a second time).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unmatched;

/// The answer for any path no route matches.
pub(crate) async fn not_found(
    req: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, ApiError> {
    use actix_web::HttpMessage;
    req.extensions_mut().insert(Unmatched);
    Err(ApiError::not_found("no such route"))
}

pub(crate) async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    ))
}
