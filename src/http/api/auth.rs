//! `POST /api/v1/auth/login`, `POST /api/v1/auth/signup`, `GET /api/v1/auth/me`, and the
//! [`CurrentUser`] extractor that every authenticated route uses.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{self, Actor, Entry, Outcome};
use crate::auth::users::{self, CreateUserError};
use crate::auth::{Email, Password, Role, User};
use crate::error::{ApiError, ErrorCode, ErrorSchema};
use crate::http::AppState;
use crate::http::ext::convert;
use crate::http::identity;
use crate::runtime::host::ExtensionHost;
use solobase_sdk::hooks::{HookPoint, LoginInfo, SignupInfo};

/// An email and a password.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery"}))]
pub(crate) struct Credentials {
    email: String,
    password: String,
}

/// A new bearer token and the account it belongs to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TokenResponse {
    /// Send it as `Authorization: Bearer <token>`.
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    user: User,
}

/// Log in
///
/// Exchanges an email and password for a bearer token. An unknown email and a wrong password
/// get the same answer. An extension's `user_login` hook may refuse with an answer of its own.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 400, description = "A malformed body (`invalid_request`)", body = ErrorSchema),
        (status = 413, description = "A body over server.max_json_bytes (`payload_too_large`)", body = ErrorSchema),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)", body = ErrorSchema),
        (status = 415, description = "Not JSON (`unsupported_media_type`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "login", skip_all)]
pub(crate) async fn login(
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    let user = users::authenticate(&state.pool, &email, &password)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidCredentials, "wrong email or password"))?;
    let info = LoginInfo {
        user_id: user.id,
        email: user.email.clone(),
    };
    let refused = host
        .refuse(HookPoint::UserLogin, |ext| ext.user_login(&info))
        .await;
    if user.is_admin() {
        let outcome = if refused.is_some() {
            Outcome::Denied
        } else {
            Outcome::Ok
        };
        audit::record_or_log(
            &state.pool,
            Entry::new(Actor::User(user.id), "auth.admin_login", outcome),
        )
        .await;
    }
    if let Some(refusal) = refused {
        return Ok(convert::response(refusal));
    }
    issue_token(&state, user).await
}

/// Sign up
///
/// Creates an account with the `user` role and logs it in, when `auth.signup_enabled`. An
/// extension's `user_signup` hook may refuse with an answer of its own.
#[utoipa::path(
    post,
    path = "/api/v1/auth/signup",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "Created and logged in", body = TokenResponse),
        (status = 400, description = "A malformed body, an invalid email or a too short password (`invalid_request`)", body = ErrorSchema),
        (status = 413, description = "A body over server.max_json_bytes (`payload_too_large`)", body = ErrorSchema),
        (status = 403, description = "Sign-up is disabled (`signup_disabled`)", body = ErrorSchema),
        (status = 409, description = "The email is registered already (`email_taken`)", body = ErrorSchema),
        (status = 415, description = "Not JSON (`unsupported_media_type`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "signup", skip_all)]
pub(crate) async fn signup(
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    if !state.config.auth.signup_enabled {
        return Err(ApiError::new(
            ErrorCode::SignupDisabled,
            "sign-up is disabled on this server; ask an administrator for an account",
        ));
    }
    let Credentials { email, password } = body.into_inner();
    let email = Email::parse(&email).map_err(ApiError::invalid)?;
    let password = Password::parse(password, state.config.auth.min_password_length)
        .map_err(ApiError::invalid)?;
    let info = SignupInfo {
        email: email.to_string(),
    };
    if let Some(refusal) = host
        .refuse(HookPoint::UserSignup, |ext| ext.user_signup(&info))
        .await
    {
        return Ok(convert::response(refusal));
    }
    let (user, event) = users::create(&state.pool, &email, &password, Role::User)
        .await
        .map_err(|e| match e {
            CreateUserError::EmailTaken(_) => ApiError::new(
                ErrorCode::EmailTaken,
                "this email is already registered; log in instead",
            ),
            other => ApiError::internal(other),
        })?;
    state.events.publish(event);
    tracing::info!(user_id = %user.id, "user signed up");
    let mut response = issue_token(&state, user).await?;
    *response.status_mut() = actix_web::http::StatusCode::CREATED;
    Ok(response)
}

async fn issue_token(state: &AppState, user: User) -> Result<HttpResponse, ApiError> {
    let ttl = Duration::from_secs(state.config.auth.token_ttl_secs);
    let (token, expires_at, event) = users::open_session(&state.pool, &user, ttl).await?;
    state.events.publish(event);
    Ok(HttpResponse::Ok().json(TokenResponse {
        token,
        expires_at,
        user,
    }))
}

/// The current user
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "The account the token belongs to", body = User))
)]
pub(crate) async fn me(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(user.0)
}

/// `/api/v1/auth/…`.
pub(crate) fn routes(api: &mut crate::http::Api) {
    api.add(__path_login, login)
        .add(__path_signup, signup)
        .add(__path_me, me);
}

/// The authenticated caller. Extracting it fails with 401 when the `Authorization: Bearer`
/// header is missing, malformed, unknown or expired.
#[derive(Debug, Clone)]
pub(crate) struct CurrentUser(pub User);

impl CurrentUser {
    /// `Ok` for an administrator, 403 for anyone else.
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("administrators only"))
        }
    }

    /// For an administrator's `action` (about `extension`, if any): the actor to audit it
    /// as; for anyone else 403, with the refused attempt audited.
    pub(crate) async fn admin_action(
        &self,
        pool: &deadpool_postgres::Pool,
        action: &'static str,
        extension: Option<&str>,
    ) -> Result<Actor, ApiError> {
        let actor = Actor::User(self.0.id);
        if let Err(e) = self.require_admin() {
            let mut entry = Entry::new(actor, action, Outcome::Denied);
            if let Some(name) = extension {
                entry = entry.extension(name);
            }
            audit::record_or_log(pool, entry).await;
            return Err(e);
        }
        Ok(actor)
    }
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| ApiError::internal("AppState missing"))?;
            match identity::caller(&req, &state.pool).await? {
                identity::Caller::User(user) => Ok(Self(user)),
                // An extension's authentication hook established the caller.
                identity::Caller::Extension(found) => users::by_id(&state.pool, found.user_id)
                    .await?
                    .map(Self)
                    .ok_or_else(identity::invalid_token),
                identity::Caller::InvalidToken => Err(identity::invalid_token()),
                identity::Caller::Anonymous => Err(identity::unauthenticated()),
            }
        })
    }
}
