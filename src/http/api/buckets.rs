//! `/api/v1/buckets[/{bucket}]`, administrators only: the storage buckets and who may read
//! their objects (`private`, `authenticated`, `public`; see `storage::access`),
//! changed at once for every instance and audited (`storage.bucket_access`).

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::error::{ApiError, ErrorSchema};
use crate::http::{AppState, CurrentUser};
use crate::storage::{Access, Bucket, BucketSettings, access};

/// `/api/v1/buckets[/{bucket}]`.
pub(crate) fn routes(api: &mut crate::http::Api) {
    api.add(__path_list, list)
        .add(__path_show, show)
        .add(__path_set, set);
}

/// A bucket's new read rule.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BucketAccessBody, example = json!({"access": "authenticated"}))]
struct AccessBody {
    /// Who may read its objects beyond their owner and administrators.
    access: Access,
}

fn bucket(raw: &str) -> Result<Bucket, ApiError> {
    Bucket::parse(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

/// The storage buckets
///
/// Every bucket that holds objects or has a read rule, with the rule (`private` when none
/// was set) and what it holds.
#[utoipa::path(
    get,
    path = "/api/v1/buckets",
    tag = "storage",
    operation_id = "list_buckets",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "The buckets, by name", body = Vec<BucketSettings>))
)]
async fn list(user: CurrentUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let client = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(access::list(&**client).await?))
}

/// A storage bucket
///
/// Its read rule (`private` when none was set) and what it holds; a bucket nothing is known
/// about is private and empty.
#[utoipa::path(
    get,
    path = "/api/v1/buckets/{bucket}",
    tag = "storage",
    operation_id = "show_bucket",
    params(("bucket" = String, Path, description = "A bucket name: lowercase letters, digits, `-` and `_`")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The bucket", body = BucketSettings),
        (status = 400, description = "An invalid bucket name (`invalid_request`)", body = ErrorSchema),
    )
)]
async fn show(
    user: CurrentUser,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let bucket = bucket(&name)?;
    let client = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(access::get(&**client, &bucket).await?))
}

/// Set who may read a bucket
///
/// `private`: only each object's owner and administrators; `authenticated`: any signed-in
/// user; `public`: anyone, without a token. Applies at once, to the host's routes and to
/// the extensions' storage service alike; audited (`storage.bucket_access`).
#[utoipa::path(
    put,
    path = "/api/v1/buckets/{bucket}",
    tag = "storage",
    operation_id = "set_bucket_access",
    params(("bucket" = String, Path, description = "A bucket name: lowercase letters, digits, `-` and `_`")),
    request_body(content = AccessBody),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The bucket as it now is", body = BucketSettings),
        (status = 400, description = "An invalid bucket name or body (`invalid_request`)", body = ErrorSchema),
        (status = 408, description = "The body arrived too slowly (`request_timeout`)", body = ErrorSchema),
        (status = 413, description = "A body over server.max_json_bytes (`payload_too_large`)", body = ErrorSchema),
        (status = 415, description = "A body that is not `application/json` (`unsupported_media_type`)", body = ErrorSchema),
    )
)]
async fn set(
    user: CurrentUser,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: crate::http::JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let actor = user
        .admin_action(&state, "storage.bucket_access", None)
        .await?;
    let bucket = bucket(&name)?;
    let body: AccessBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "invalid body: {e}; send e.g. {{\"access\": \"authenticated\"}} \
             (private, authenticated or public)"
        ))
    })?;
    let mut client = state.pool.get().await?;
    let now = access::set_access(&mut client, &bucket, body.access, actor).await?;
    Ok(HttpResponse::Ok().json(now))
}
