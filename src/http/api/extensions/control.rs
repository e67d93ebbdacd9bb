//! Enable (with grants), disable and revoke, on every instance: `POST
//! /api/v1/extensions/{name}/enable|disable`, `DELETE …/grants/{permission}`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{body_of, compiled};
use crate::audit::{self, Entry, Outcome};
use crate::error::{ApiError, ErrorSchema};
use crate::http::{AppState, CurrentUser};
use crate::runtime::control::{Grant, Permissions};
use crate::runtime::host::ExtensionHost;

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
pub(super) async fn enable(
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
pub(super) async fn disable(
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
pub(super) async fn revoke(
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
