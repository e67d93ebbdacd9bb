//! [`ExtensionError`]: what an extension returns when something fails. Each kind maps to an
//! HTTP status and a stable error code, so the host answers in its one error shape
//! `{"error":{"code","message"}}` whatever the extension.

use http::StatusCode;

/// The result type of extension code.
pub type Result<T, E = ExtensionError> = std::result::Result<T, E>;

/// A failure inside an extension, typed so that the host can answer it properly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The caller sent something invalid (400, `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The caller is not logged in (401, `unauthenticated`).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this (403, `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing (404, `not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409, `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// The extension called a service it holds no permission for (403, `permission_denied`).
    #[error("permission {permission} is required for this; an administrator can grant it")]
    PermissionDenied {
        /// The permission that was missing.
        permission: String,
    },
    /// A quota or limit was reached (429, `rate_limited`).
    #[error("{0}")]
    RateLimited(String),
    /// Storage space is exhausted (507, `insufficient_storage`).
    #[error("{0}")]
    InsufficientStorage(String),
    /// A dependency (database, remote service) is unavailable (503, `unavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// The extension's configuration is invalid; the message says which key and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A database error.
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// Any other failure (500, `internal`). The message is logged, not shown to clients.
    #[error("{0}")]
    Internal(String),
}

impl ExtensionError {
    /// Any error, as an internal one.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    /// The HTTP status and stable error code the host answers with.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest(_) | Self::Config(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::PermissionDenied { .. } => (StatusCode::FORBIDDEN, "permission_denied"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Database(_) | Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }

    /// The message a client may see: internal details are replaced by a generic text.
    pub fn public_message(&self) -> String {
        match self {
            Self::Database(_) | Self::Internal(_) => {
                "internal error; the server log has the details".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ExtensionError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(format!("database unavailable: {e}"))
    }
}

impl From<serde_json::Error> for ExtensionError {
    fn from(e: serde_json::Error) -> Self {
        Self::InvalidRequest(format!("invalid JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_private() {
        let e = ExtensionError::internal("password=hunter2 in connection string");
        assert_eq!(e.status_and_code().0, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.public_message().contains("hunter2"));
        let e = ExtensionError::InsufficientStorage("quota of 10 MiB reached".into());
        assert_eq!(
            e.status_and_code(),
            (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
        );
        assert!(e.public_message().contains("10 MiB"));
    }
}
