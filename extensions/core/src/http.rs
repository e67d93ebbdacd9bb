//! The HTTP types extensions see: [`RequestHead`] (method, path, headers, caller), [`Request`]
//! (head, route parameters and body) and [`Response`]. They use the `http` crate's `Method`,
//! `StatusCode` and `HeaderMap`, so extensions do not depend on the server framework.
//!
//! HTML is answered with [`Response::html`], which carries the host's strict
//! [`DEFAULT_CONTENT_SECURITY_POLICY`] (scripts and styles from files of this origin only),
//! `X-Frame-Options: DENY` and `X-Content-Type-Options: nosniff`: a page's scripts and styles
//! belong in files the extension serves, not inline.

use std::net::IpAddr;

use bytes::Bytes;
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::ExtensionError;

/// What the browser may load and run on an HTML page of this server — the admin dashboard's
/// and, unless an extension sets its own, every extension page's: only files from this origin,
/// no inline script or style, no plugins, no framing, forms posting nowhere else.
pub const DEFAULT_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// What a user account may do on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds every permission.
    Admin,
    /// An ordinary account.
    User,
}

impl Role {
    /// `"admin"` or `"user"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
        }
    }

    /// The inverse of [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The user's id.
    pub user_id: Uuid,
    /// The user's email.
    pub email: String,
    /// The user's role.
    pub role: Role,
}

impl Identity {
    /// Whether the caller is an administrator.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Everything about a request but its body. Pipeline hooks and middleware receive it; for
/// the lifetime of one request.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The HTTP method.
    pub method: Method,
    /// The path as sent, still percent-encoded, e.g. `/ext/notes/items/42`.
    pub path: String,
    /// The query string without `?`, empty when there is none.
    pub query: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The client's address, when known.
    pub peer_addr: Option<IpAddr>,
    /// The request's id (also in the `x-request-id` response header).
    pub request_id: String,
    /// The caller, once authentication has run; `None` for anonymous requests.
    pub identity: Option<Identity>,
}

impl RequestHead {
    /// A head for `method` and `path` (which may include `?query`), as in tests.
    pub fn new(method: Method, path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Self {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers: HeaderMap::new(),
            peer_addr: None,
            request_id: String::new(),
            identity: None,
        }
    }

    /// A header's value as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request to one of the extension's routes.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, path, headers and caller.
    pub head: RequestHead,
    /// Values of the route's `{name}` segments, in order.
    pub params: Vec<(String, String)>,
    /// The whole body (bounded by the host's body-size limit).
    pub body: Bytes,
}

impl Request {
    /// A request with an empty body, as in tests.
    pub fn new(method: Method, path_and_query: &str) -> Self {
        Self {
            head: RequestHead::new(method, path_and_query),
            params: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Sets a JSON body (and its content type), as in tests.
    pub fn with_json(mut self, value: &impl Serialize) -> Self {
        self.body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        self.head.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self
    }

    /// Sets the caller, as in tests.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.head.identity = Some(identity);
        self
    }

    /// A route parameter by name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The caller, or an `Unauthenticated` error for anonymous requests.
    pub fn identity(&self) -> Result<&Identity, ExtensionError> {
        self.head
            .identity
            .as_ref()
            .ok_or_else(|| ExtensionError::Unauthenticated("log in first".into()))
    }

    /// The body parsed as JSON; a clear `InvalidRequest` error otherwise.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ExtensionError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ExtensionError::InvalidRequest(format!("invalid JSON body: {e}")))
    }
}

/// The status and headers of a response: what `pre_response` hooks may change.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
}

/// A complete response from an extension.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// `200 OK` with `value` as JSON.
    pub fn json(value: &impl Serialize) -> Self {
        Self::json_with(StatusCode::OK, value)
    }

    /// `status` with `value` as JSON.
    pub fn json_with(status: StatusCode, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status)
                .with_header(header::CONTENT_TYPE, "application/json")
                .with_body(body),
            Err(e) => Self::error(&ExtensionError::internal(e)),
        }
    }

    /// `200 OK` with a text body of the given content type.
    pub fn text(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self::new(StatusCode::OK)
            .with_header(header::CONTENT_TYPE, content_type)
            .with_body(body)
    }

    /// `200 OK` with an HTML page, under [`DEFAULT_CONTENT_SECURITY_POLICY`], refusing to be
    /// framed (`X-Frame-Options: DENY`) or sniffed (`nosniff`). For a page that needs another
    /// policy, replace the header with [`Response::with_header`].
    pub fn html(body: impl Into<Bytes>) -> Self {
        Self::text("text/html; charset=utf-8", body)
            .with_header(
                header::CONTENT_SECURITY_POLICY,
                DEFAULT_CONTENT_SECURITY_POLICY,
            )
            .with_header(header::X_FRAME_OPTIONS, "DENY")
            .with_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
    }

    /// The host's error shape `{"error":{"code","message"}}` for `error`.
    pub fn error(error: &ExtensionError) -> Self {
        let (status, code) = error.status_and_code();
        Self::error_with(status, code, &error.public_message())
    }

    /// The host's error shape with an explicit status, code and message.
    pub fn error_with(status: StatusCode, code: &str, message: &str) -> Self {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        Self::new(status)
            .with_header(header::CONTENT_TYPE, "application/json")
            .with_body(body.to_string())
    }

    /// Adds a header; an invalid value is skipped.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The body parsed as JSON, as in tests.
    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

impl From<ExtensionError> for Response {
    fn from(e: ExtensionError) -> Self {
        Self::error(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_carries_the_strict_policy_and_refuses_framing_and_sniffing() {
        let page = Response::html("<p>hi</p>");
        let header = |name: HeaderName| page.headers[name].to_str().unwrap().to_owned();
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(header(header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(
            header(header::CONTENT_SECURITY_POLICY),
            DEFAULT_CONTENT_SECURITY_POLICY
        );
        assert!(!DEFAULT_CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert_eq!(header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let own = Response::html("x").with_header(header::CONTENT_SECURITY_POLICY, "sandbox");
        assert_eq!(own.headers[header::CONTENT_SECURITY_POLICY], "sandbox");
    }
}
