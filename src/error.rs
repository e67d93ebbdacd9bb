//! The one error type of the HTTP API and the one table that maps it to a status and a stable
//! code. Every error response has the shape `{"error":{"code":"…","message":"…"}}`: the host's
//! are made by one function, [`body`]; an extension's own errors by the SDK's
//! `Response::error`, in the same shape.
//!
//! Codes are part of the API: clients match on them, so a code is never renamed. Internal
//! causes are logged with the request's id and never sent to the client.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// What went wrong, as a client may act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    /// The request is malformed: bad JSON, a missing field, a value out of range.
    InvalidRequest,
    /// No credentials were given where they are required.
    Unauthenticated,
    /// Email or password is wrong (the same for an unknown email).
    InvalidCredentials,
    /// The bearer token is malformed, unknown or expired.
    InvalidToken,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// Sign-up is turned off in the configuration.
    SignupDisabled,
    NotFound,
    MethodNotAllowed,
    /// The email is already registered.
    EmailTaken,
    /// Enabling an extension needs a decision on permissions it requests and does not hold.
    PermissionsPending,
    /// The extension refused a new configuration.
    ConfigRefused,
    /// The change needs the extension disabled first (e.g. rolling its schema back).
    ExtensionEnabled,
    /// An extension's migrations cannot be applied or reverted as asked; nothing changed.
    MigrationFailed,
    /// `If-Match` names a version that is no longer current.
    PreconditionFailed,
    /// A change that must say which version it replaces (`If-Match`) did not.
    PreconditionRequired,
    /// The body is larger than allowed.
    PayloadTooLarge,
    /// The request's Content-Type is not accepted here.
    UnsupportedMediaType,
    /// The client sent its body too slowly (`server.body_timeout_ms`).
    RequestTimeout,
    /// A storage quota would be exceeded.
    InsufficientStorage,
    /// A storage path would be both a file and a folder (`a/b` stored, then `a/b/c`, or the
    /// other way round).
    PathConflict,
    /// The database cannot be reached right now.
    Unavailable,
    /// An extension's circuit breaker is open after repeated failures.
    ExtensionUnavailable,
    /// An extension's routes are serving as many requests as they may at once.
    ExtensionBusy,
    /// An extension's handler ran over its time budget and was stopped.
    OverBudget,
    /// A rate limit refused the request.
    RateLimited,
    /// The server is doing as much of this work (password hashing) as it may at once; retry
    /// after `Retry-After`.
    Busy,
    /// The account is disabled by an administrator.
    AccountDisabled,
    /// The current password given to change it is wrong.
    WrongPassword,
    /// A first-run setup link that was used, expired or never issued.
    InvalidSetupLink,
    /// The first-run setup was asked for, but an administrator exists.
    AdminExists,
    /// A bug or an unexpected failure; details are in the server log.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order (for the OpenAPI `Error` schema). `Internal` stays
    /// last: the assertion below and the unit test keep this list complete.
    pub(crate) const ALL: [Self; Self::Internal as usize + 1] = [
        Self::InvalidRequest,
        Self::Unauthenticated,
        Self::InvalidCredentials,
        Self::InvalidToken,
        Self::Forbidden,
        Self::SignupDisabled,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::EmailTaken,
        Self::PermissionsPending,
        Self::ConfigRefused,
        Self::ExtensionEnabled,
        Self::MigrationFailed,
        Self::PreconditionFailed,
        Self::PreconditionRequired,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RequestTimeout,
        Self::InsufficientStorage,
        Self::PathConflict,
        Self::Unavailable,
        Self::ExtensionUnavailable,
        Self::ExtensionBusy,
        Self::OverBudget,
        Self::RateLimited,
        Self::Busy,
        Self::AccountDisabled,
        Self::WrongPassword,
        Self::InvalidSetupLink,
        Self::AdminExists,
        Self::Internal,
    ];

    /// The table: HTTP status and stable code string for each error.
    pub(crate) const fn parts(self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            Self::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::SignupDisabled => (StatusCode::FORBIDDEN, "signup_disabled"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
            Self::PermissionsPending => (StatusCode::CONFLICT, "permissions_pending"),
            Self::ConfigRefused => (StatusCode::CONFLICT, "config_refused"),
            Self::ExtensionEnabled => (StatusCode::CONFLICT, "extension_enabled"),
            Self::MigrationFailed => (StatusCode::CONFLICT, "migration_failed"),
            Self::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            Self::PreconditionRequired => {
                (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
            }
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::InsufficientStorage => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
            Self::PathConflict => (StatusCode::CONFLICT, "path_conflict"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::ExtensionUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "extension_unavailable")
            }
            Self::ExtensionBusy => (StatusCode::SERVICE_UNAVAILABLE, "extension_busy"),
            Self::OverBudget => (StatusCode::SERVICE_UNAVAILABLE, "over_budget"),
            Self::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled"),
            Self::WrongPassword => (StatusCode::FORBIDDEN, "wrong_password"),
            Self::InvalidSetupLink => (StatusCode::FORBIDDEN, "invalid_setup_link"),
            Self::AdminExists => (StatusCode::CONFLICT, "admin_exists"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub(crate) const fn status(self) -> StatusCode {
        self.parts().0
    }

    pub(crate) const fn as_str(self) -> &'static str {
        self.parts().1
    }
}

/// An error answered to an API client.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    /// Shown to the client: says what is wrong and, where it helps, what to do.
    pub(crate) message: String,
    /// Headers the answer carries besides its body (`Retry-After`, `RateLimit-*`).
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the answer.
    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Tells the client when to try again, in whole seconds (at least 1).
    pub(crate) fn retry_after(self, secs: u64) -> Self {
        self.with_header("retry-after", secs.max(1).to_string())
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// Logs `cause` (which may hold details unfit for clients) and hides it behind a generic
    /// message.
    pub(crate) fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal error; the server log has the details (look for this request's id)",
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

/// The one error body of every answer the host makes: `{"error":{"code","message"}}`.
/// [`ApiError`] answers with it, and so does the runtime where it answers for an extension
/// (a panic caught in its code).
pub(crate) fn body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&Body {
        error: Detail { code, message },
    })
    .unwrap_or_default()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut answer = HttpResponse::build(self.status_code());
        answer.content_type("application/json");
        for (name, value) in &self.headers {
            answer.insert_header((*name, value.as_str()));
        }
        answer.body(body(self.code.as_str(), &self.message))
    }
}

/// The error shape as the OpenAPI schema `Error`, listing the codes of the table above.
#[derive(Debug)]
pub(crate) struct ErrorSchema;

impl utoipa::PartialSchema for ErrorSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let codes = ErrorCode::ALL
            .iter()
            .map(|c| format!("`{}` ({})", c.as_str(), c.status().as_u16()))
            .collect::<Vec<_>>()
            .join(", ");
        let code = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "Stable; clients match on it. The host's codes: {codes}. Extension routes add \
                 `permission_denied` and codes of their own."
            )))
            .examples(["not_found"]);
        let message = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "What is wrong and, where it helps, what to do; for people, not for matching",
            ));
        ObjectBuilder::new()
            .description(Some("Every error answer of the API"))
            .property(
                "error",
                ObjectBuilder::new()
                    .property("code", code)
                    .required("code")
                    .property("message", message)
                    .required("message"),
            )
            .required("error")
            .into()
    }
}

impl utoipa::ToSchema for ErrorSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Error".into()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() {
            tracing::warn!(error = %e, "database unavailable");
            return Self::new(
                ErrorCode::Unavailable,
                "the database is unavailable; retry shortly",
            );
        }
        Self::internal(e)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(error = %e, "no database connection");
        Self::new(
            ErrorCode::Unavailable,
            "the database is unavailable; retry shortly",
        )
    }
}

/// Turns actix's extractor errors (bad JSON, bad query) into the common shape.
pub(crate) fn json_error_handler(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &err {
        E::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("JSON body larger than {limit} bytes (server.max_json_bytes)"),
        ),
        E::Deserialize(e) => ApiError::invalid(format!("invalid JSON body: {e}")),
        E::Payload(e) => payload_error(e),
        other => ApiError::invalid(format!("unreadable JSON body: {other}")),
    };
    api.into()
}

/// A failure while reading a request body: too slow (408), too large (413), or cut off (400).
pub(crate) fn payload_error(err: &actix_web::error::PayloadError) -> ApiError {
    use actix_web::error::PayloadError as P;
    match err {
        P::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("{e}; send the body faster, or in smaller requests"),
        ),
        P::Overflow => ApiError::new(ErrorCode::PayloadTooLarge, "the body is too large"),
        other => ApiError::invalid(format!("cannot read the body: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_in_declaration_order() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(
                *code as usize, i,
                "{code:?} is out of place in ErrorCode::ALL"
            );
        }
    }

    #[test]
    fn codes_are_unique() {
        let all = ErrorCode::ALL;
        let mut codes: Vec<_> = all.iter().map(|c| c.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
