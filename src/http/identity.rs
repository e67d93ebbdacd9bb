//! Who is calling: resolved once per request and kept in the request's extensions, so that
//! the pipeline, the `/ext/` dispatch and the host's `CurrentUser` extractor agree and no
//! token is looked up twice.
//!
//! A request carries the host's bearer token (`Authorization: Bearer …`), or none; when an
//! extension's `authentication` hook establishes a caller instead (only tried when the token
//! does not), the pipeline records that. One policy for everyone: no token is anonymous; a
//! token that is malformed, unknown, expired, revoked or of a disabled account
//! (`users::session_for_token` refuses those) is refused with 401 `invalid_token` wherever a
//! caller matters, unless a hook established the caller.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpMessage, HttpRequest};
use deadpool_postgres::Pool;
use solobase_sdk::Identity;

use crate::auth::{User, token, users};
use crate::error::{ApiError, ErrorCode};

/// The caller of one request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No bearer token was sent.
    Anonymous,
    /// A bearer token was sent and is not a valid session.
    InvalidToken,
    /// The host's session of this user.
    User(User),
    /// Established by an extension's `authentication` hook.
    Extension(Identity),
}

impl Caller {
    /// The caller as the SDK's extensions see it: `None` when anonymous; 401 for a bad token.
    pub(crate) fn identity(&self) -> Result<Option<Identity>, ApiError> {
        match self {
            Self::Anonymous => Ok(None),
            Self::InvalidToken => Err(invalid_token()),
            Self::User(user) => Ok(Some(Identity {
                user_id: user.id,
                email: user.email.clone(),
                role: user.role,
            })),
            Self::Extension(identity) => Ok(Some(identity.clone())),
        }
    }

    /// Whether the host's token established it (no hook needs to try).
    pub(crate) fn is_user(&self) -> bool {
        matches!(self, Self::User(_))
    }
}

/// The request's caller: from the request's extensions when already resolved, else from its
/// bearer token (through the session cache, [`crate::auth::cache`]), then kept there.
pub(crate) async fn caller(
    req: &HttpRequest,
    state: &crate::http::AppState,
) -> Result<Caller, ApiError> {
    if let Some(found) = req.extensions().get::<Caller>() {
        return Ok(found.clone());
    }
    let found = from_token(req.headers().get(AUTHORIZATION), state).await?;
    req.extensions_mut().insert(found.clone());
    Ok(found)
}

/// Records the caller an extension's authentication hook established — unless it is a
/// disabled account of this server, which is refused like that account's tokens (a hook
/// cannot tell: extensions are not shown whether an account is disabled). Whether it was
/// kept. A failure to look the account up refuses it too.
pub(crate) async fn established_by_extension(
    req: &HttpRequest,
    pool: &Pool,
    identity: Identity,
) -> bool {
    let refused = match users::by_id(pool, identity.user_id).await {
        Ok(found) => found.is_some_and(|user| user.is_disabled()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the account an authentication hook named; refusing it");
            true
        }
    };
    req.extensions_mut().insert(if refused {
        Caller::InvalidToken
    } else {
        Caller::Extension(identity)
    });
    !refused
}

async fn from_token(
    header: Option<&actix_web::http::header::HeaderValue>,
    state: &crate::http::AppState,
) -> Result<Caller, ApiError> {
    let Some(header) = header else {
        return Ok(Caller::Anonymous);
    };
    let Some(bearer) = header.to_str().ok().and_then(token::parse_bearer) else {
        return Ok(Caller::InvalidToken);
    };
    Ok(
        match state.auth_cache.user_for_token(&state.pool, bearer).await? {
            Some(user) => Caller::User(user),
            None => Caller::InvalidToken,
        },
    )
}

/// The request's bearer token, if it carries a well-formed one.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    token::parse_bearer(header).map(str::to_owned)
}

/// The 401 for a request that needs a caller and has none.
pub(crate) fn unauthenticated() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        "log in first: send Authorization: Bearer <token> from POST /api/v1/auth/login",
    )
}

/// The 401 for a malformed, unknown, expired or revoked token, or one of a disabled account.
pub(crate) fn invalid_token() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidToken,
        "the bearer token is malformed, unknown, expired or revoked; log in again",
    )
}
