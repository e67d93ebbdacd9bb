//! Outbound HTTP, `ctx.http`: an extension's requests to other servers leave through the host.
//!
//! At each call the host checks that the extension holds the permission `network.outbound`,
//! refuses any loopback, private, link-local, metadata or otherwise non-public address the
//! operator has not listed in the extension's `outbound_allow` (every address a name resolves
//! to is checked, and is the only one connected to), follows no redirect, reads no more of the
//! answer than [`Request::body_limit`], and counts the call in `/metrics`
//! (`extension_outbound_requests_total{extension,outcome}`).
//!
//! ```no_run
//! # async fn demo(http: &solobase_sdk::outbound::Http) -> Result<(), solobase_sdk::outbound::OutboundError> {
//! use solobase_sdk::outbound::Request;
//! let answer = http
//!     .send(Request::post("http://example.com/hook").header("content-type", "application/json").body("{}"))
//!     .await?;
//! assert!(answer.status < 600);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::ExtensionError;
use crate::services::BoxFuture;

/// The permission every call needs.
pub const PERMISSION: &str = "network.outbound";

/// An outgoing request. Built with [`Request::get`], [`Request::post`] or [`Request::new`].
#[derive(Debug, Clone)]
pub struct Request {
    method: http::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    timeout: Duration,
    body_limit: usize,
}

impl Request {
    /// A request with `method` to `url` (`http://` or `https://`), with no body, a 30 s time
    /// limit and a 1 MiB answer limit.
    pub fn new(method: http::Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(http::Method::GET, url)
    }

    /// `POST url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(http::Method::POST, url)
    }

    /// Adds a header (an invalid name or value is refused when the request is sent).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The time limit of the whole exchange, connection included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most bytes of the answer's body read; the rest is never read
    /// ([`Response::truncated`]).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The method.
    pub fn method(&self) -> &http::Method {
        &self.method
    }

    /// The URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers, in the order given.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body_bytes(&self) -> &Bytes {
        &self.body
    }

    /// The time limit.
    pub fn time_limit(&self) -> Duration {
        self.timeout
    }

    /// The answer limit, in bytes.
    pub fn answer_limit(&self) -> usize {
        self.body_limit
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// Its status code.
    pub status: u16,
    /// Its headers (values that are not text are left out).
    pub headers: Vec<(String, String)>,
    /// Its body, up to the request's [`Request::body_limit`].
    pub body: Bytes,
    /// Whether the body was longer than that (the rest was not read).
    pub truncated: bool,
}

impl Response {
    /// An answer (for the host and for tests' fake clients).
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Bytes, truncated: bool) -> Self {
        Self {
            status,
            headers,
            body,
            truncated,
        }
    }
}

/// Why a request was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The extension does not hold `network.outbound`.
    #[error(
        "permission network.outbound is required for outbound HTTP; an administrator can grant it"
    )]
    PermissionDenied,
    /// The address is one the host does not call: the message says which and why.
    #[error("{0}")]
    Refused(String),
    /// The request itself is wrong (URL, scheme, header).
    #[error("{0}")]
    Invalid(String),
    /// No answer: time limit, connection or protocol failure, with its causes.
    #[error("{0}")]
    Failed(String),
}

impl From<OutboundError> for ExtensionError {
    fn from(e: OutboundError) -> Self {
        match e {
            OutboundError::PermissionDenied => ExtensionError::PermissionDenied {
                permission: PERMISSION.to_owned(),
            },
            OutboundError::Refused(m) | OutboundError::Invalid(m) => {
                ExtensionError::InvalidRequest(m)
            }
            OutboundError::Failed(m) => ExtensionError::Unavailable(m),
        }
    }
}

/// What the host (or a test's fake) implements behind [`Http`].
pub trait HttpClient: Send + Sync {
    /// Sends `request`.
    fn send(&self, request: Request) -> BoxFuture<'_, Result<Response, OutboundError>>;
    /// Whether a request to `url` could be sent: its syntax, scheme and, when its host is an
    /// address, that address (names are judged when they are resolved, at each send).
    fn check(&self, url: &str) -> Result<(), OutboundError>;
}

/// The extension's outbound HTTP (`ctx.http`).
#[derive(Clone)]
pub struct Http(Arc<dyn HttpClient>);

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Http")
    }
}

impl Http {
    /// Wraps a client (the host's, or a test's fake).
    pub fn new(client: Arc<dyn HttpClient>) -> Self {
        Self(client)
    }

    /// Sends `request` and reads its answer.
    pub async fn send(&self, request: Request) -> Result<Response, OutboundError> {
        self.0.send(request).await
    }

    /// Checks `url` without sending anything (see [`HttpClient::check`]).
    pub fn check(&self, url: &str) -> Result<(), OutboundError> {
        self.0.check(url)
    }
}

/// A client that sends nothing: every call fails saying so. The testing kit's default.
#[derive(Debug, Default)]
pub struct NoHttp;

impl HttpClient for NoHttp {
    fn send(&self, request: Request) -> BoxFuture<'_, Result<Response, OutboundError>> {
        Box::pin(async move {
            Err(OutboundError::Failed(format!(
                "no outbound HTTP here: {} {} was not sent",
                request.method(),
                request.url()
            )))
        })
    }

    fn check(&self, _url: &str) -> Result<(), OutboundError> {
        Ok(())
    }
}
