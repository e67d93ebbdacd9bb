//! `POST /api/v1/auth/login`, `…/signup`, `…/logout`, `…/password`, `GET /api/v1/auth/me`,
//! and the [`CurrentUser`] extractor that every authenticated route uses.
//!
//! Whatever checks a password goes through [`Throttle::admit`] first (per client, hashing
//! slot, per account): over a limit, 429 or 503 with `Retry-After` before any hashing.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{self, Actor, Entry, Outcome};
use crate::auth::sessions::{self, SessionError};
use crate::auth::throttle::{ClientKey, Purpose, Throttle};
use crate::auth::users::{self, CreateUserError};
use crate::auth::{Email, Password, Role, User, password};
use crate::error::{ApiError, ErrorCode, ErrorSchema};
use crate::http::AppState;
use crate::http::client_addr::client_addr;
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
/// get the same answer, and are throttled alike. An extension's `user_login` hook may refuse
/// with an answer of its own.
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
        (status = 403, description = "The password is right but an administrator disabled the account (`account_disabled`)", body = ErrorSchema),
        (status = 415, description = "Not JSON (`unsupported_media_type`)", body = ErrorSchema),
        (status = 429, description = "Too many attempts from this client or on this account; see `Retry-After` (`rate_limited`)", body = ErrorSchema),
        (status = 503, description = "Every password-hashing slot is busy; see `Retry-After` (`busy`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "login", skip_all)]
pub(crate) async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    host: web::Data<ExtensionHost>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = body.into_inner();
    let client = client_key(&req);
    let (slot, account) = admit(&state.throttle, Purpose::Login, &email, client).await?;
    let (user, verified) = users::authenticate(&state.pool, slot, &email, &password)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidCredentials, "wrong email or password"))?;
    state.throttle.succeeded(account, client);
    if user.is_disabled() {
        return Err(account_disabled());
    }
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
            Entry::new(
                Actor::User(user.id, client_addr(&req)),
                "auth.admin_login",
                outcome,
            ),
        )
        .await;
    }
    if let Some(refusal) = refused {
        return Ok(convert::response(refusal));
    }
    issue_token(&state, user, Some(&verified)).await
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
        (status = 429, description = "Too many attempts from this client or for this email; see `Retry-After` (`rate_limited`)", body = ErrorSchema),
        (status = 503, description = "Every password-hashing slot is busy; see `Retry-After` (`busy`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "signup", skip_all)]
pub(crate) async fn signup(
    req: HttpRequest,
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
    // Throttled before any extension's hook runs, so an anonymous client cannot make the
    // hooks run without limit.
    let client = client_key(&req);
    let (slot, account) = admit(&state.throttle, Purpose::Signup, email.as_str(), client).await?;
    let info = SignupInfo {
        email: email.to_string(),
    };
    if let Some(refusal) = host
        .refuse(HookPoint::UserSignup, |ext| ext.user_signup(&info))
        .await
    {
        return Ok(convert::response(refusal));
    }
    let hash = slot
        .run(move || password::hash(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let (user, event) = users::create_with_hash(&state.pool, &email, &hash, Role::User)
        .await
        .map_err(|e| match e {
            CreateUserError::EmailTaken(_) => ApiError::new(
                ErrorCode::EmailTaken,
                "this email is already registered; log in instead",
            ),
            other => ApiError::internal(other),
        })?;
    state.throttle.succeeded(account, client);
    state.events.publish(event);
    tracing::info!(user_id = %user.id, "user signed up");
    let mut response = issue_token(&state, user, None).await?;
    *response.status_mut() = actix_web::http::StatusCode::CREATED;
    Ok(response)
}

/// A session for `user`; `verified`: the password hash a login checked (see
/// [`users::open_session`]).
async fn issue_token(
    state: &AppState,
    user: User,
    verified: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let ttl = Duration::from_secs(state.config.auth.token_ttl_secs);
    let (token, expires_at, event) = users::open_session(&state.pool, &user, ttl, verified).await?;
    state.events.publish(event);
    Ok(HttpResponse::Ok().json(TokenResponse {
        token,
        expires_at,
        user,
    }))
}

/// The first administrator, from a setup link and the account to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token": "3b9f…", "email": "owner@example.com", "password": "correct horse battery"}))]
pub(crate) struct Setup {
    /// The token of the setup link the server printed at start (after `#/setup/`).
    token: String,
    email: String,
    password: String,
}

/// Create the first administrator
///
/// With the one-time link Solobase prints at start while no administrator exists (valid for
/// 30 minutes, until used, or until an administrator exists by other means): creates the
/// administrator and logs it in. Audited (`auth.setup`).
#[utoipa::path(
    post,
    path = "/api/v1/auth/setup",
    tag = "auth",
    request_body = Setup,
    responses(
        (status = 200, description = "The administrator is created and logged in", body = TokenResponse),
        (status = 400, description = "A malformed body, an invalid email or a too short password (`invalid_request`)", body = ErrorSchema),
        (status = 403, description = "The link was used, expired, or never issued (`invalid_setup_link`)", body = ErrorSchema),
        (status = 409, description = "An administrator exists already (`admin_exists`)", body = ErrorSchema),
        (status = 429, description = "Too many attempts from this client; see `Retry-After` (`rate_limited`)", body = ErrorSchema),
        (status = 503, description = "Every password-hashing slot is busy; see `Retry-After` (`busy`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "setup", skip_all)]
pub(crate) async fn setup(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Setup>,
) -> Result<HttpResponse, ApiError> {
    use crate::auth::setup::{self, SetupError};
    let Setup {
        token,
        email,
        password,
    } = body.into_inner();
    let refused = |e: SetupError| match e {
        SetupError::InvalidLink => ApiError::new(ErrorCode::InvalidSetupLink, e.to_string()),
        SetupError::AdminExists => ApiError::new(ErrorCode::AdminExists, e.to_string()),
        SetupError::Create(CreateUserError::EmailTaken(_)) => ApiError::new(
            ErrorCode::EmailTaken,
            "this email belongs to an account already: choose another one for the administrator",
        ),
        other => ApiError::internal(other),
    };
    // The link first: without one, nobody costs the server a password hash.
    if !setup::is_valid(&state.pool, &token)
        .await
        .map_err(refused)?
    {
        return Err(refused(SetupError::InvalidLink));
    }
    let email = Email::parse(&email).map_err(ApiError::invalid)?;
    let password = Password::parse(password, state.config.auth.min_password_length)
        .map_err(ApiError::invalid)?;
    let client = client_key(&req);
    let (slot, account) = admit(&state.throttle, Purpose::Signup, email.as_str(), client).await?;
    let hash = slot
        .run(move || password::hash(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let (user, event) = setup::complete(&state.pool, &token, &email, &hash)
        .await
        .map_err(refused)?;
    state.throttle.succeeded(account, client);
    state.events.publish(event);
    audit::record_or_log(
        &state.pool,
        Entry::new(
            Actor::User(user.id, client_addr(&req)),
            "auth.setup",
            Outcome::Ok,
        )
        .detail(serde_json::json!({"email": user.email})),
    )
    .await;
    tracing::info!(user_id = %user.id, "the first administrator was created with the setup link");
    issue_token(&state, user, None).await
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

/// Log out
///
/// Ends the session of the token this request carries: it is refused from now on, on every
/// instance.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The token is revoked"),
        (status = 400, description = "The caller was not identified by a token of this server (`invalid_request`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "logout", skip_all)]
pub async fn logout(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(token) = identity::bearer(&req) else {
        return Err(ApiError::invalid(
            "this request was not authenticated with a token of this server; nothing to end",
        ));
    };
    sessions::revoke_token(&state.pool, &token)
        .await
        .map_err(session_error)?;
    tracing::info!(user_id = %user.0.id, "logged out");
    Ok(HttpResponse::NoContent().finish())
}

/// A password change: the current password, and the new one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery", "new_password": "staple horse battery"}))]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// What ending sessions did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    /// Sessions (tokens) ended.
    pub revoked_sessions: u64,
}

/// Change the password
///
/// Needs the current password (throttled like a login). Ends every other session of the
/// user; the token of this request stays valid.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    tag = "auth",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; the other sessions are ended", body = Revoked),
        (status = 400, description = "A malformed body or a too short new password (`invalid_request`)", body = ErrorSchema),
        (status = 403, description = "The current password is wrong (`wrong_password`)", body = ErrorSchema),
        (status = 415, description = "Not JSON (`unsupported_media_type`)", body = ErrorSchema),
        (status = 429, description = "Too many attempts; see `Retry-After` (`rate_limited`)", body = ErrorSchema),
        (status = 503, description = "Every password-hashing slot is busy; see `Retry-After` (`busy`)", body = ErrorSchema),
    )
)]
#[tracing::instrument(name = "change_password", skip_all)]
pub async fn change_password(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let PasswordChange {
        current_password,
        new_password,
    } = body.into_inner();
    let new = Password::parse(new_password, state.config.auth.min_password_length)
        .map_err(ApiError::invalid)?;
    let client = client_key(&req);
    let (slot, account) = admit(&state.throttle, Purpose::Login, &user.0.email, client).await?;
    let keep = identity::bearer(&req);
    let entry = Entry::new(
        Actor::User(user.0.id, client_addr(&req)),
        "user.password",
        Outcome::Ok,
    );
    let revoked = sessions::change_password(
        &state.pool,
        slot,
        &user.0,
        Some(&current_password),
        &new,
        keep.as_deref(),
        entry,
    )
    .await
    .map_err(session_error)?;
    state.throttle.succeeded(account, client);
    tracing::info!(user_id = %user.0.id, revoked, "password changed");
    Ok(HttpResponse::Ok().json(Revoked {
        revoked_sessions: revoked,
    }))
}

/// `/api/v1/auth/…`.
pub(crate) fn routes(api: &mut crate::http::Api) {
    api.add(__path_login, login)
        .add(__path_signup, signup)
        .add(__path_me, me)
        .add(__path_logout, logout)
        .add(__path_setup, setup)
        .add(__path_change_password, change_password);
}

/// The client a request counts against: its peer address (as the extensions' per-client
/// limits count it).
pub(crate) fn client_key(req: &HttpRequest) -> ClientKey {
    ClientKey::of(crate::http::client_addr::client_addr(req))
}

/// [`Throttle::admit`], refusals answered 429 or 503 with `Retry-After`.
async fn admit(
    throttle: &Throttle,
    purpose: Purpose,
    email: &str,
    client: ClientKey,
) -> Result<
    (
        crate::auth::throttle::Slot,
        crate::auth::throttle::AccountKey,
    ),
    ApiError,
> {
    throttle
        .admit(purpose, email, client)
        .await
        .map_err(|refusal| {
            // Debug, not info: a flood of refusals must not flood the log (they are counted
            // in /metrics).
            tracing::debug!(?refusal, ?purpose, "password attempt refused");
            refusal.to_api_error()
        })
}

/// The 403 for a disabled account.
pub(crate) fn account_disabled() -> ApiError {
    ApiError::new(
        ErrorCode::AccountDisabled,
        "this account is disabled; ask an administrator to enable it",
    )
}

/// The answer for a failure to end sessions or change a password.
pub(crate) fn session_error(e: SessionError) -> ApiError {
    match e {
        SessionError::NoSuchUser => ApiError::not_found("no such user"),
        SessionError::WrongPassword => ApiError::new(
            ErrorCode::WrongPassword,
            "the current password is wrong; nothing changed",
        ),
        other => ApiError::internal(other),
    }
}

/// The authenticated caller. Extracting it fails with 401 when the `Authorization: Bearer`
/// header is missing, malformed, unknown, expired or revoked, or its account is disabled.
#[derive(Debug, Clone)]
pub(crate) struct CurrentUser(pub User, pub Option<std::net::IpAddr>);

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
    /// as; for anyone else 403, with the refused attempt audited — merged with the same
    /// user's other refusals of `action` in a window (`audit::Denials`), so that repeating
    /// it cannot flood the log.
    pub(crate) async fn admin_action(
        &self,
        state: &AppState,
        action: &'static str,
        extension: Option<&str>,
    ) -> Result<Actor, ApiError> {
        let actor = Actor::User(self.0.id, self.1);
        if let Err(e) = self.require_admin() {
            let mut entry = Entry::new(actor, action, Outcome::Denied);
            if let Some(name) = extension {
                entry = entry.extension(name);
            }
            state.denials.record(&state.pool, entry).await;
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
            let client = client_addr(&req);
            match identity::caller(&req, &state).await? {
                identity::Caller::User(user) => Ok(Self(user, client)),
                // An extension's authentication hook established the caller.
                identity::Caller::Extension(found) => users::by_id(&state.pool, found.user_id)
                    .await?
                    .filter(|user| !user.is_disabled())
                    .map(|user| Self(user, client))
                    .ok_or_else(identity::invalid_token),
                identity::Caller::InvalidToken => Err(identity::invalid_token()),
                identity::Caller::Anonymous => Err(identity::unauthenticated()),
            }
        })
    }
}
