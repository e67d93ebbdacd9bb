//! An extension's configuration through the API: `GET` and `PUT
//! /api/v1/extensions/{name}/config` (with `If-Match`), shared with every instance.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::compiled;
use crate::error::{ApiError, ErrorCode, ErrorSchema};
use crate::http::{AppState, CurrentUser};
use crate::runtime::host::ExtensionHost;
use crate::runtime::reconfigure::{ChangeError, Source};

/// An extension's running configuration and its entity tag.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ExtensionConfig)]
struct Configuration {
    /// The whole configuration, as its JSON Schema describes it.
    config: serde_json::Value,
    /// For `If-Match` when replacing it; also in the `ETag` header.
    etag: String,
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        let code = match &e {
            ChangeError::Invalid(_) => ErrorCode::InvalidRequest,
            ChangeError::Refused(_) => ErrorCode::ConfigRefused,
            ChangeError::Stale { .. } => ErrorCode::PreconditionFailed,
            ChangeError::Unavailable(_) => ErrorCode::Unavailable,
        };
        ApiError::new(code, e.to_string())
    }
}

fn with_etag(value: serde_json::Value, etag: &str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{etag}\"")))
        .json(Configuration {
            config: value,
            etag: etag.to_owned(),
        })
}

/// An extension's configuration
///
/// The running configuration and its entity tag (also in `ETag`), for `If-Match` on a
/// replacement.
#[utoipa::path(
    get,
    path = "/api/v1/extensions/{name}/config",
    tag = "extensions",
    operation_id = "get_extension_config",
    params(("name" = String, Path, description = "The extension's name")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The configuration", body = Configuration,
            headers(("ETag" = String, description = "The configuration's entity tag"))),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
    )
)]
pub(super) async fn get_config(
    user: CurrentUser,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let l = compiled(&host, &name)?;
    let (value, etag) = l.config_state.current();
    Ok(with_etag(value, &etag))
}

/// Replace an extension's configuration
///
/// The body is the whole new configuration (a JSON object), checked against the extension's
/// JSON Schema and offered to it; `If-Match` must carry the entity tag it replaces (`*` for
/// whatever is current). Written to its file and applied by every instance.
#[utoipa::path(
    put,
    path = "/api/v1/extensions/{name}/config",
    tag = "extensions",
    operation_id = "put_extension_config",
    params(("name" = String, Path, description = "The extension's name"), ("If-Match" = String, Header, description = "The etag of the configuration being replaced, or `*`")),
    request_body(content = serde_json::Value, description = "The whole new configuration, a JSON object"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Replaced: the configuration and its new etag", body = Configuration,
            headers(("ETag" = String, description = "The new configuration's entity tag"))),
        (status = 400, description = "Not a JSON object, or invalid against the schema (`invalid_request`)", body = ErrorSchema),
        (status = 408, description = "The body arrived too slowly (`request_timeout`)", body = ErrorSchema),
        (status = 413, description = "A body over server.max_json_bytes (`payload_too_large`)", body = ErrorSchema),
        (status = 415, description = "A body that is not `application/json` (`unsupported_media_type`)", body = ErrorSchema),
        (status = 404, description = "Not compiled into this binary (`not_found`)", body = ErrorSchema),
        (status = 409, description = "The extension refused it (`config_refused`)", body = ErrorSchema),
        (status = 412, description = "The etag is stale (`precondition_failed`)", body = ErrorSchema),
        (status = 428, description = "No If-Match (`precondition_required`)", body = ErrorSchema),
    )
)]
pub(super) async fn put_config(
    req: actix_web::HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    name: web::Path<String>,
    body: crate::http::JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state, "extension.config", Some(&name))
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
