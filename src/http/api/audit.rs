//! `GET /api/v1/audit`, administrators only: the audit log, newest first, with filters
//! (`extension`, `action`, `since` as RFC 3339) and pagination (`limit`, up to 500, and
//! `before`, the `next` value of the previous page).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::{self, Filter, MAX_PAGE};
use crate::error::{ApiError, ErrorSchema};
use crate::http::{AppState, CurrentUser};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Query {
    /// Only entries about this extension.
    extension: Option<String>,
    /// Only this action, e.g. `extension.enable`.
    action: Option<String>,
    /// Only entries at or after this RFC 3339 time, e.g. `2026-11-26T08:00:00Z`.
    since: Option<String>,
    /// Only entries older than this id: the `next` of the previous page.
    before: Option<i64>,
    /// How many entries, 1 to 500 (default 100).
    limit: Option<i64>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditPage)]
pub(crate) struct Page {
    entries: Vec<audit::Stored>,
    /// The `before` of the next page; null on the last.
    next: Option<i64>,
}

/// Turns the query into a filter; a clear 400 for what does not parse.
pub(crate) fn filter(q: Query) -> Result<Filter, ApiError> {
    let since = q
        .since
        .map(|s| {
            OffsetDateTime::parse(&s, &Rfc3339).map_err(|e| {
                ApiError::invalid(format!(
                    "since={s:?} is not an RFC 3339 time such as 2026-11-26T08:00:00Z: {e}"
                ))
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit={limit}: ask for 1 to {MAX_PAGE} entries"
        )));
    }
    Ok(Filter {
        extension: q.extension,
        action: q.action,
        since,
        before: q.before,
        limit,
    })
}

/// `/api/v1/audit`.
pub(crate) fn routes(api: &mut crate::http::Api) {
    api.add(__path_list, list);
}

/// The audit log
///
/// Newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    operation_id = "audit_log",
    params(Query),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "A page of entries", body = Page),
        (status = 400, description = "A filter that does not parse (`invalid_request`)", body = ErrorSchema),
    )
)]
pub(crate) async fn list(
    user: CurrentUser,
    state: web::Data<AppState>,
    query: Result<web::Query<Query>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let query = query
        .map_err(|e| {
            ApiError::invalid(format!(
                "{e}: the filters are extension, action, since, before and limit"
            ))
        })?
        .into_inner();
    let filter = filter(query)?;
    let entries = audit::list(&state.pool, &filter)
        .await
        .map_err(ApiError::internal)?;
    let next = (entries.len() as i64 == filter.limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(HttpResponse::Ok().json(Page { entries, next }))
}
