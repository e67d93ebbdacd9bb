//! `/api/v1/users`: accounts as administrators manage them — the list, disabling and enabling
//! an account, and ending all of a user's sessions (also allowed to that user). Every change
//! is audited in the transaction that makes it.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Revoked, session_error};
use crate::audit::{Actor, Entry, Outcome};
use crate::auth::User;
use crate::auth::sessions::{self, Account, MAX_PAGE};
use crate::error::{ApiError, ErrorSchema};
use crate::http::{AppState, CurrentUser};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Only accounts whose e-mail sorts after this one: the last e-mail of the previous page.
    after: Option<String>,
    /// How many accounts, 1 to 500 (default 100).
    limit: Option<i64>,
}

/// The accounts
///
/// In e-mail order (case-insensitive), each with its number of live sessions.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "list_users",
    params(Query),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "A page of accounts", body = Vec<Account>),
        (status = 400, description = "A bad `limit` (`invalid_request`)", body = ErrorSchema),
    )
)]
pub async fn list(
    user: CurrentUser,
    state: web::Data<AppState>,
    query: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let Query { after, limit } = query.into_inner();
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit={limit}: ask for 1 to {MAX_PAGE} accounts"
        )));
    }
    let accounts = sessions::list(&state.pool, after.as_deref(), limit)
        .await
        .map_err(session_error)?;
    Ok(HttpResponse::Ok().json(accounts))
}

/// Disable an account
///
/// Ends every session of the user at once and refuses their logins (`account_disabled`)
/// until an administrator enables the account again. Administrators cannot disable their own
/// account.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/disable",
    tag = "users",
    operation_id = "disable_user",
    params(("id" = Uuid, Path, description = "The user's id")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Disabled; its sessions are ended", body = User),
        (status = 400, description = "Not a user id, or your own account (`invalid_request`)", body = ErrorSchema),
        (status = 404, description = "No such user (`not_found`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "disable_user", skip_all)]
pub async fn disable(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = user.admin_action(&state, "user.disable", None).await?;
    let id = parse_id(&id)?;
    if id == user.0.id {
        return Err(ApiError::invalid(
            "you cannot disable your own account; ask another administrator",
        ));
    }
    set_disabled(&state, actor, id, true).await
}

/// Enable an account
///
/// Lets a disabled user log in again (their old tokens stay ended).
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/enable",
    tag = "users",
    operation_id = "enable_user",
    params(("id" = Uuid, Path, description = "The user's id")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Enabled", body = User),
        (status = 400, description = "Not a user id (`invalid_request`)", body = ErrorSchema),
        (status = 404, description = "No such user (`not_found`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "enable_user", skip_all)]
pub async fn enable(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = user.admin_action(&state, "user.enable", None).await?;
    let id = parse_id(&id)?;
    set_disabled(&state, actor, id, false).await
}

/// End a user's sessions
///
/// Revokes every token of the user, this request's too when they are the caller. Users may
/// end their own sessions; administrators anyone's.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}/sessions",
    tag = "users",
    operation_id = "revoke_user_sessions",
    params(("id" = Uuid, Path, description = "The user's id (your own, unless you are an administrator)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The sessions ended", body = Revoked),
        (status = 400, description = "Not a user id (`invalid_request`)", body = ErrorSchema),
        (status = 403, description = "Another user's sessions, and you are not an administrator (`forbidden`)", body = ErrorSchema),
        (status = 404, description = "No such user (`not_found`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "revoke_user_sessions", skip_all)]
pub async fn revoke_sessions(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let actor = if id == user.0.id {
        Actor::User(id, user.1)
    } else {
        user.admin_action(&state, "user.revoke_sessions", None)
            .await?
    };
    let entry = Entry::new(actor, "user.revoke_sessions", Outcome::Ok);
    let revoked = sessions::revoke_all(&state.pool, id, entry)
        .await
        .map_err(session_error)?;
    tracing::info!(user_id = %id, revoked, "sessions revoked");
    Ok(HttpResponse::Ok().json(Revoked {
        revoked_sessions: revoked,
    }))
}

async fn set_disabled(
    state: &AppState,
    actor: Actor,
    id: Uuid,
    disabled: bool,
) -> Result<HttpResponse, ApiError> {
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    let (user, revoked) = sessions::set_disabled(
        &state.pool,
        id,
        disabled,
        Entry::new(actor, action, Outcome::Ok),
    )
    .await
    .map_err(session_error)?;
    tracing::info!(user_id = %id, disabled, revoked, "account changed");
    Ok(HttpResponse::Ok().json(user))
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid(format!("{raw:?} is not a user id (a UUID)")))
}

/// `/api/v1/users…`.
pub fn routes(api: &mut crate::http::Api) {
    api.add(__path_list, list)
        .add(__path_disable, disable)
        .add(__path_enable, enable)
        .add(__path_revoke_sessions, revoke_sessions);
}
