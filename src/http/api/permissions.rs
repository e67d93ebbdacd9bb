//! `/api/v1/roles/user/permissions[/{permission}]`, administrators only: the named
//! permissions the `user` role holds (extension routes may require one), given and taken
//! away at once, audited (`role.grant`, `role.revoke`).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, Entry, Outcome};
use crate::auth::permissions;
use crate::error::{ApiError, ErrorSchema};
use crate::http::{AppState, CurrentUser};

/// `/api/v1/roles/{role}/permissions[/{permission}]`.
pub(crate) fn routes(api: &mut crate::http::Api) {
    api.add(__path_list, list)
        .add(__path_grant, grant)
        .add(__path_revoke, revoke);
}

/// The permissions a role holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = RolePermissions)]
struct Held {
    /// Always `user`: administrators hold every permission.
    role: &'static str,
    permissions: Vec<String>,
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

/// The permissions of the user role
#[utoipa::path(
    get,
    path = "/api/v1/roles/{role}/permissions",
    tag = "roles",
    operation_id = "role_permissions",
    params(("role" = String, Path, description = "`user` (`admin` holds every permission)")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The permissions the role holds", body = Held),
        (status = 400, description = "The admin role has no list (`invalid_request`)", body = ErrorSchema),
        (status = 404, description = "No such role (`not_found`)", body = ErrorSchema),
    )
)]
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
    Ok(HttpResponse::Ok().json(Held {
        role,
        permissions: held,
    }))
}

/// Give the user role a permission
///
/// Audited (`role.grant`); giving one it holds changes nothing.
#[utoipa::path(
    put,
    path = "/api/v1/roles/{role}/permissions/{permission}",
    tag = "roles",
    operation_id = "grant_role_permission",
    params(
        ("role" = String, Path, description = "`user`"),
        ("permission" = String, Path, description = "A permission name such as `notes.write`"),
    ),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The permissions the role now holds", body = Held),
        (status = 400, description = "Not a permission name, or the admin role (`invalid_request`)", body = ErrorSchema),
        (status = 404, description = "No such role (`not_found`)", body = ErrorSchema),
    )
)]
async fn grant(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let actor = user.admin_action(&state, "role.grant", None).await?;
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
    Ok(HttpResponse::Ok().json(Held {
        role,
        permissions: held,
    }))
}

/// Take a permission from the user role
///
/// Audited (`role.revoke`).
#[utoipa::path(
    delete,
    path = "/api/v1/roles/{role}/permissions/{permission}",
    tag = "roles",
    operation_id = "revoke_role_permission",
    params(
        ("role" = String, Path, description = "`user`"),
        ("permission" = String, Path, description = "A permission the role holds"),
    ),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The permissions the role still holds", body = Held),
        (status = 400, description = "The admin role (`invalid_request`)", body = ErrorSchema),
        (status = 404, description = "No such role, or the role does not hold it (`not_found`)", body = ErrorSchema),
    )
)]
async fn revoke(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let actor = user.admin_action(&state, "role.revoke", None).await?;
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
    Ok(HttpResponse::Ok().json(Held {
        role,
        permissions: held,
    }))
}
