//! `/api/v1/roles/user/permissions[/{permission}]`, administrators only: the named
//! permissions the `user` role holds (extension routes may require one), given and taken
//! away at once, audited (`role.grant`, `role.revoke`).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::{AppState, CurrentUser};
use crate::audit::{self, Entry, Outcome};
use crate::auth::permissions;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/roles/{role}/permissions", web::get().to(list))
        .route(
            "/roles/{role}/permissions/{permission}",
            web::put().to(grant),
        )
        .route(
            "/roles/{role}/permissions/{permission}",
            web::delete().to(revoke),
        );
}

/// The role whose permissions can change: `user` (admins hold every permission).
fn user_role(role: &str) -> Result<&'static str, ApiError> {
    match role {
        "user" => Ok("user"),
        "admin" => Err(ApiError::invalid(
            "administrators hold every permission; only the user role has a list",
        )),
        other => Err(ApiError::not_found(format!(
            "no role {other:?}; the roles are admin and user"
        ))),
    }
}

async fn list(
    user: CurrentUser,
    state: web::Data<AppState>,
    role: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require_admin()?;
    let role = user_role(&role)?;
    let held = permissions::held(&state.pool, role)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({"role": role, "permissions": held})))
}

async fn grant(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let actor = user.admin_action(&state.pool, "role.grant", None).await?;
    let (role, permission) = path.into_inner();
    let role = user_role(&role)?;
    let permission = solobase_sdk::Permission::parse(&permission)
        .map_err(ApiError::invalid)?
        .to_string();
    let added = permissions::grant(&state.pool, role, &permission)
        .await
        .map_err(ApiError::internal)?;
    let entry = Entry::new(actor, "role.grant", Outcome::Ok)
        .detail(json!({"role": role, "permission": permission, "new": added}));
    audit::record_or_log(&state.pool, entry).await;
    let held = permissions::held(&state.pool, role)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({"role": role, "permissions": held})))
}

async fn revoke(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let actor = user.admin_action(&state.pool, "role.revoke", None).await?;
    let (role, permission) = path.into_inner();
    let role = user_role(&role)?;
    if !permissions::revoke(&state.pool, role, &permission)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found(format!(
            "the {role} role does not hold {permission:?}"
        )));
    }
    let entry = Entry::new(actor, "role.revoke", Outcome::Ok)
        .detail(json!({"role": role, "permission": permission}));
    audit::record_or_log(&state.pool, entry).await;
    let held = permissions::held(&state.pool, role)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({"role": role, "permissions": held})))
}
