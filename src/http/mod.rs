//! The HTTP surface of the host: routes, shared state, and the request-id middleware.
//! [`routes()`] lists every host route; [`routes::Api`] mounts and documents them.
//!
//! Handlers are thin: parse the input into domain types, call into `auth`, `storage` or
//! `events`, and map failures to [`crate::error::ApiError`].

pub mod api;
pub mod body_deadline;
mod dashboard;
pub mod ext;
pub mod identity;
mod json_bytes;
pub mod openapi;
mod request_id;
pub mod routes;

use std::sync::Arc;

use actix_web::web;

use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::events::EventBus;
use crate::storage::Storage;

pub use api::auth::CurrentUser;
pub use identity::invalid_token;
pub use json_bytes::JsonBytes;
pub use request_id::{RequestId, middleware as request_id_middleware};
pub use routes::Api;

/// Shared by every handler; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub config: Arc<Config>,
    pub events: EventBus,
    pub storage: Storage,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Login and sign-up limits and the password-hashing slots.
    pub throttle: Arc<crate::auth::throttle::Throttle>,
    /// Refused admin actions being merged before they are audited.
    pub denials: Arc<crate::audit::Denials>,
}

/// Mounts every host route of `api` (built once by [`Api::build`] from [`routes()`]); JSON
/// bodies may be `max_json` bytes long.
pub fn configure(cfg: &mut web::ServiceConfig, api: &Arc<Api>, max_json: usize) {
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
pub fn routes(api: &mut Api) {
    api::routes(api);
}

/// The answer for any path no route matches.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("no such route"))
}

pub(crate) async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    ))
}
