//! `GET /api/v1/audit`, administrators only: the audit log, newest first, with filters
//! (`extension`, `action`, `since` as RFC 3339) and pagination (`limit`, up to 500, and
//! `before`, the `next` value of the previous page).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AppState, CurrentUser};
use crate::audit::{self, Filter, MAX_PAGE};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    extension: Option<String>,
    action: Option<String>,
    since: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// Turns the query into a filter; a clear 400 for what does not parse.
pub fn filter(q: Query) -> Result<Filter, ApiError> {
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

pub async fn list(
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
    Ok(HttpResponse::Ok().json(json!({"entries": entries, "next": next})))
}
