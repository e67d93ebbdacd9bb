//! The HTTP surface of the host: routes, shared state, and the request-id middleware.
//!
//! Handlers are thin: parse the input into domain types, call into `auth`, `storage` or
//! `events`, and map failures to [`crate::error::ApiError`].

mod admin;
mod audit;
mod auth;
mod health;
pub mod metrics;
mod request_id;
mod roles;
mod storage;

use std::sync::Arc;

use actix_web::web;

use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::events::EventBus;
use crate::storage::Storage;

pub use auth::{CurrentUser, invalid_token};
pub use request_id::{RequestId, middleware as request_id_middleware};

/// Shared by every handler; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub config: Arc<Config>,
    pub events: EventBus,
    pub storage: Storage,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Mounts every host route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(64 * 1024)
            .error_handler(crate::error::json_error_handler),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route(
        "/ext/{name}",
        web::to(crate::extensions::dispatch::dispatch),
    )
    .route(
        "/ext/{name}/{tail:.*}",
        web::to(crate::extensions::dispatch::dispatch),
    )
    .configure(crate::extensions::api::configure)
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(metrics::for_admins))
    .configure(admin::configure)
    .service(
        web::scope("/api/v1")
            .service(
                web::scope("/auth")
                    .route("/login", web::post().to(auth::login))
                    .route("/signup", web::post().to(auth::signup))
                    .route("/me", web::get().to(auth::me)),
            )
            .route("/audit", web::get().to(audit::list))
            .configure(roles::configure)
            .service(
                web::resource("/storage/{bucket}/{path:.+}")
                    .route(web::put().to(storage::upload))
                    .route(web::get().to(storage::download))
                    .route(web::head().to(storage::download))
                    .route(web::delete().to(storage::delete))
                    .default_service(web::to(method_not_allowed)),
            ),
    );
}

/// The answer for any path no route matches.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("no such route"))
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    ))
}
