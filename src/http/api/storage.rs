//! `PUT`, `GET`/`HEAD` and `DELETE /api/v1/storage/{bucket}/{path}`.
//!
//! Reading follows the bucket's rule (`storage::access`): the owner and
//! administrators always, any signed-in user in an `authenticated` bucket, anyone (without a
//! token) in a `public` one; an object the caller may not read answers 404 like a missing
//! one. An object may be replaced or deleted by the user who uploaded it or by an admin,
//! decided by the statement that writes (`storage::objects`). The path is taken
//! from the raw request URI and parsed by [`crate::storage::ObjectPath`], never from a
//! router-decoded parameter, so every encoding trick meets the same checks.

use std::io::Write;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode, ErrorSchema};
use crate::http::ext::convert;
use crate::http::identity::{self, Caller};
use crate::http::openapi::Binary;
use crate::http::{AppState, CurrentUser};
use crate::runtime::host::ExtensionHost;
use crate::storage::{self, Bucket, ObjectInfo, ObjectPath, Reader, Writer};
use solobase_sdk::hooks::{DownloadInfo, HookPoint, UploadInfo};

const PREFIX: &str = "/api/v1/storage/";

/// `/api/v1/storage/{bucket}/{path}`; the path may hold `/`.
pub(crate) fn routes(api: &mut crate::http::Api) {
    const PATTERN: &str = "/api/v1/storage/{bucket}/{path:.+}";
    api.add_as(PATTERN, __path_upload, upload)
        .add_as(PATTERN, __path_download, download)
        .add_as(PATTERN, __path_delete, delete);
}

fn target(req: &HttpRequest) -> Result<(Bucket, ObjectPath), ApiError> {
    let rest = req
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .ok_or_else(|| ApiError::not_found("no such route"))?;
    let (bucket, path) = rest
        .split_once('/')
        .ok_or_else(|| ApiError::invalid("expected /api/v1/storage/{bucket}/{path}"))?;
    let bucket = Bucket::parse(bucket).map_err(|e| ApiError::invalid(e.to_string()))?;
    let path = ObjectPath::parse_encoded(path).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((bucket, path))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the upload is larger than the {limit}-byte limit (storage.max_upload_bytes)"),
    )
}

fn content_type(req: &HttpRequest) -> Result<String, ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok("application/octet-stream".into());
    };
    let text = value
        .to_str()
        .ok()
        .filter(|t| t.len() <= 255 && t.contains('/') && !t.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("Content-Type must be a media type such as text/plain"))?;
    Ok(text.trim().to_owned())
}

/// The caller of a read: anonymous when the request carries no credentials at all; a token
/// that is sent must be valid (401 otherwise), never quietly read as anonymous.
async fn reader(req: &HttpRequest, state: &AppState) -> Result<Reader, ApiError> {
    let user = match identity::caller(req, state).await? {
        Caller::Anonymous => return Ok(Reader::Anonymous),
        Caller::InvalidToken => return Err(identity::invalid_token()),
        Caller::User(user) => user,
        // An extension's authentication hook established the caller.
        Caller::Extension(_) => CurrentUser::extract(req).await?.0,
    };
    Ok(Reader::User {
        id: user.id,
        admin: user.is_admin(),
    })
}

/// Not found, or not for this caller: the same answer, so that it tells nothing.
fn no_such_object() -> ApiError {
    ApiError::not_found("no such object, or not one you may read")
}

/// The owner of an existing object, `Some(None)` for an orphaned one, `None` when absent.
async fn current_owner(
    client: &deadpool_postgres::Object,
    bucket: &Bucket,
    path: &str,
) -> Result<Option<Option<Uuid>>, ApiError> {
    Ok(client
        .query_opt(
            "SELECT owner_id FROM solobase.storage_objects WHERE bucket = $1 AND path = $2",
            &[&bucket.as_str(), &path],
        )
        .await?
        .map(|row| row.get(0)))
}

/// The early refusal, before the body arrives; the statement that writes decides again.
fn may_modify(user: &CurrentUser, owner: Option<Uuid>) -> Result<(), ApiError> {
    if user.0.is_admin() || owner == Some(user.0.id) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the uploader or an admin may change this object",
        ))
    }
}

/// Store a file
///
/// Streams the body into the bucket under the path. Replacing an object is for its uploader
/// or an administrator, checked again when the upload is stored: an object someone else
/// created at the path while the body was arriving is not replaced (403). A path cannot be
/// both a file and a folder (`a/b` and `a/b/c`): 409. The Content-Type is kept and served
/// back.
#[utoipa::path(
    put,
    path = "/api/v1/storage/{bucket}/{path}",
    tag = "storage",
    operation_id = "upload",
    params(
        ("bucket" = String, Path, description = "A bucket name: lowercase letters, digits, `-` and `_`"),
        ("path" = String, Path, description = "The object's path in the bucket; may contain `/`, never `.`, `..` or empty segments"),
    ),
    security(("bearer" = [])),
    request_body(content = Binary, content_type = "*/*", description = "The file's bytes, at most storage.max_upload_bytes"),
    responses(
        (status = 200, description = "Replaced", body = ObjectInfo),
        (status = 201, description = "Created", body = ObjectInfo),
        (status = 400, description = "An invalid bucket, path or Content-Type (`invalid_request`)", body = ErrorSchema),
        (status = 403, description = "Someone else's object, even one stored while the body was arriving (`forbidden`)", body = ErrorSchema),
        (status = 409, description = "The path is a file where a folder is needed, or a folder where the file goes (`path_conflict`)", body = ErrorSchema),
        (status = 413, description = "Larger than storage.max_upload_bytes (`payload_too_large`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "storage.upload", skip_all)]
pub(crate) async fn upload(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (bucket, path) = target(&req)?;
    let path_str = path.as_string();
    let limit = state.config.storage.max_upload_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large(limit));
    }
    let media_type = content_type(&req)?;

    let client = state.pool.get().await?;
    let existed = current_owner(&client, &bucket, &path_str).await?;
    // Not held while the body arrives: a slow client must not keep a database connection.
    drop(client);
    if let Some(owner) = existed {
        may_modify(&user, owner)?;
    }
    let mut hook_info = UploadInfo {
        bucket: bucket.as_str().to_owned(),
        path: path_str.clone(),
        size: declared,
        content_type: media_type.clone(),
        user_id: user.0.id,
    };
    if let Some(refusal) = host
        .refuse(HookPoint::StorageBeforeUpload, |ext| {
            ext.storage_before_upload(&hook_info)
        })
        .await
    {
        return Ok(convert::response(refusal));
    }

    // Stream the body to a scratch file, counting bytes against the limit.
    let mut scratch = state.storage.scratch().map_err(ApiError::internal)?;
    let mut file = scratch
        .take_file()
        .ok_or_else(|| ApiError::internal("scratch file taken"))?;
    let mut size: u64 = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| crate::error::payload_error(&e))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large(limit));
        }
        file = web::block(move || file.write_all(&chunk).map(|()| file))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    }
    web::block(move || file.sync_all())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let mut client = state.pool.get().await?;
    let (info, replaced, event) = storage::commit_upload(
        &mut client,
        &state.storage,
        &bucket,
        &path,
        scratch,
        size,
        &media_type,
        Writer::User {
            id: user.0.id,
            admin: user.0.is_admin(),
        },
    )
    .await?;
    state.events.publish(event);
    hook_info.size = Some(size);
    host.observe(HookPoint::StorageAfterUpload, |ext| {
        ext.storage_after_upload(&hook_info)
    })
    .await;
    let mut response = if replaced {
        HttpResponse::Ok()
    } else {
        HttpResponse::Created()
    };
    Ok(response.json(&info))
}

/// Read a file
///
/// As the bucket's rule allows: the object's owner and administrators always; any signed-in
/// user when the bucket is `authenticated`; anyone, without a token, when it is `public`
/// (`private`, the default, allows no one else). An object the caller may not read answers
/// 404 exactly like a missing one, so a refusal does not reveal that it exists. A token that
/// is sent must be valid. Ranges and conditional requests are supported; the answer carries
/// `X-Content-Type-Options: nosniff` and a sandboxing Content-Security-Policy.
#[utoipa::path(
    method(get, head),
    path = "/api/v1/storage/{bucket}/{path}",
    tag = "storage",
    operation_id = "download",
    params(
        ("bucket" = String, Path, description = "A bucket name: lowercase letters, digits, `-` and `_`"),
        ("path" = String, Path, description = "The object's path in the bucket; may contain `/`, never `.`, `..` or empty segments"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The file, with the Content-Type it was stored with", content_type = "*/*", body = Binary),
        (status = 206, description = "The requested range", content_type = "*/*", body = Binary),
        (status = 304, description = "Not modified"),
        (status = 400, description = "An invalid bucket or path (`invalid_request`)", body = ErrorSchema),
        (status = 401, description = "A token was sent and it is malformed, unknown or expired (`invalid_token`)", body = ErrorSchema),
        (status = 404, description = "No such object, or one the bucket's rule does not let the caller read (`not_found`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "storage.download", skip_all)]
pub(crate) async fn download(
    req: HttpRequest,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
) -> Result<HttpResponse, ApiError> {
    let (bucket, path) = target(&req)?;
    let reader = reader(&req, &state).await?;
    let opened = storage::open_for(&state.pool, &state.storage, &bucket, &path, reader)
        .await?
        .ok_or_else(no_such_object)?;
    let info = DownloadInfo {
        bucket: bucket.as_str().to_owned(),
        path: path.as_string(),
        user_id: match reader {
            Reader::User { id, .. } => Some(id),
            Reader::Anonymous => None,
        },
    };
    if let Some(refusal) = host
        .refuse(HookPoint::StorageBeforeDownload, |ext| {
            ext.storage_before_download(&info)
        })
        .await
    {
        return Ok(convert::response(refusal));
    }
    let named = actix_files::NamedFile::from_file(opened.file, opened.location)
        .map_err(ApiError::internal)?
        .disable_content_disposition();
    let mut response = named.into_response(&req);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&opened.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    // Uploaded content is untrusted: never let a browser run it as part of this origin.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    host.observe(HookPoint::StorageAfterDownload, |ext| {
        ext.storage_after_download(&info)
    })
    .await;
    Ok(response)
}

/// Delete a file
///
/// For its uploader or an administrator, decided by the statement that deletes. An object
/// the caller may not even read answers 404, like a missing one.
#[utoipa::path(
    delete,
    path = "/api/v1/storage/{bucket}/{path}",
    tag = "storage",
    operation_id = "delete_object",
    params(
        ("bucket" = String, Path, description = "A bucket name: lowercase letters, digits, `-` and `_`"),
        ("path" = String, Path, description = "The object's path in the bucket; may contain `/`, never `.`, `..` or empty segments"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "An invalid bucket or path (`invalid_request`)", body = ErrorSchema),
        (status = 403, description = "Someone else's object, which the caller may read (`forbidden`)", body = ErrorSchema),
        (status = 404, description = "No such object, or one the caller may not read (`not_found`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "storage.delete", skip_all)]
pub(crate) async fn delete(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (bucket, path) = target(&req)?;
    let mut client = state.pool.get().await?;
    let event = storage::delete_object(
        &mut client,
        &state.storage,
        &bucket,
        &path,
        Writer::User {
            id: user.0.id,
            admin: user.0.is_admin(),
        },
    )
    .await?
    .ok_or_else(no_such_object)?;
    state.events.publish(event);
    Ok(HttpResponse::NoContent().finish())
}
