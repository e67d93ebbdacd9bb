//! Hooks: the points where the host calls into an extension besides its routes.
//!
//! An extension says which hooks it wants, and with which priority, in
//! [`Extension::hooks`](crate::Extension::hooks); the host then calls the matching trait
//! methods. Hooks of all extensions run in ascending priority, ties broken by extension name —
//! a total, stable order. A hook that overruns its time limit is cut off and counted.
//!
//! | hook | when | may |
//! |---|---|---|
//! | `pre_request` | first, for every request | change the request head, or answer (e.g. 403) |
//! | `authentication` | when no host token identified the caller | establish the caller |
//! | `authorization` | after authentication | deny with a response |
//! | `error` | the handler failed (an error or a 5xx) | replace the response |
//! | `post_request` | after the handler | observe request and status |
//! | `pre_response` | before the response leaves | change status and headers |
//! | `post_response` | after the response was handed to the server | observe; never delays it |
//! | `user_signup` | before an account is created | refuse (e.g. 403) |
//! | `user_login` | after the password matched, before a token is issued | refuse |
//! | `storage_before_upload` | before a file is stored | refuse (e.g. 507) |
//! | `storage_after_upload` | after a file was stored | observe |
//! | `storage_before_download` | before a file is read | refuse |
//! | `storage_after_download` | after a file was sent | observe |
//! | `on_event` | an event matching a subscribed pattern was committed | react |

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::http::{Response, StatusCode};

/// The default time limit of one hook call.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_millis(500);

/// A hook point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    /// First, for every request.
    PreRequest,
    /// Establish the caller when no host token did.
    Authentication,
    /// Allow or deny the identified caller.
    Authorization,
    /// The handler failed.
    Error,
    /// After the handler.
    PostRequest,
    /// Before the response leaves.
    PreResponse,
    /// After the response was handed to the server.
    PostResponse,
    /// Before an account is created.
    UserSignup,
    /// Before a login token is issued.
    UserLogin,
    /// Before a file is stored.
    StorageBeforeUpload,
    /// After a file was stored.
    StorageAfterUpload,
    /// Before a file is read.
    StorageBeforeDownload,
    /// After a file was sent.
    StorageAfterDownload,
}

impl HookPoint {
    /// Every hook point, in pipeline order.
    pub const ALL: [HookPoint; 13] = [
        Self::PreRequest,
        Self::Authentication,
        Self::Authorization,
        Self::Error,
        Self::PostRequest,
        Self::PreResponse,
        Self::PostResponse,
        Self::UserSignup,
        Self::UserLogin,
        Self::StorageBeforeUpload,
        Self::StorageAfterUpload,
        Self::StorageBeforeDownload,
        Self::StorageAfterDownload,
    ];

    /// The name used in metrics and the API, e.g. `pre_request`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreRequest => "pre_request",
            Self::Authentication => "authentication",
            Self::Authorization => "authorization",
            Self::Error => "error",
            Self::PostRequest => "post_request",
            Self::PreResponse => "pre_response",
            Self::PostResponse => "post_response",
            Self::UserSignup => "user.signup",
            Self::UserLogin => "user.login",
            Self::StorageBeforeUpload => "storage.before_upload",
            Self::StorageAfterUpload => "storage.after_upload",
            Self::StorageBeforeDownload => "storage.before_download",
            Self::StorageAfterDownload => "storage.after_download",
        }
    }
}

/// What a hook that may stop things decided.
#[derive(Debug, Clone)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop here and answer with this response.
    Respond(Response),
}

impl Flow {
    /// Stop with the host's error shape, e.g. `Flow::reject(StatusCode::INSUFFICIENT_STORAGE,
    /// "quota_exceeded", "the quota of 1 GiB is used up")`.
    pub fn reject(status: StatusCode, code: &str, message: &str) -> Self {
        Self::Respond(Response::error_with(status, code, message))
    }
}

/// Which hooks an extension wants and their priorities (lower runs first).
#[derive(Debug, Clone, Default)]
pub struct HookSet {
    pub(crate) points: Vec<(HookPoint, i32)>,
    pub(crate) events: Vec<String>,
    pub(crate) timeout: Option<Duration>,
}

impl HookSet {
    /// No hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls the trait method for `point` with `priority`.
    pub fn on(mut self, point: HookPoint, priority: i32) -> Self {
        self.points.retain(|(p, _)| *p != point);
        self.points.push((point, priority));
        self
    }

    /// Calls [`Extension::on_event`](crate::Extension::on_event) for committed events whose
    /// type matches `pattern` (`user.created`, `user.*`, `*`).
    pub fn events(mut self, pattern: &str) -> Self {
        self.events.push(pattern.to_owned());
        self
    }

    /// The time limit for each hook call (default [`DEFAULT_HOOK_TIMEOUT`]).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The requested hook points and priorities.
    pub fn points(&self) -> &[(HookPoint, i32)] {
        &self.points
    }

    /// The subscribed event patterns.
    pub fn event_patterns(&self) -> &[String] {
        &self.events
    }

    /// The per-call time limit.
    pub fn time_limit(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT)
    }
}

/// An account about to be created.
#[derive(Debug, Clone, Serialize)]
pub struct SignupInfo {
    /// The requested email.
    pub email: String,
}

/// A login about to succeed.
#[derive(Debug, Clone, Serialize)]
pub struct LoginInfo {
    /// The user logging in.
    pub user_id: Uuid,
    /// The user's email.
    pub email: String,
}

/// A file being stored or stored.
#[derive(Debug, Clone, Serialize)]
pub struct UploadInfo {
    /// Bucket name.
    pub bucket: String,
    /// Object path within the bucket.
    pub path: String,
    /// Size in bytes: the declared Content-Length before, the stored size after.
    pub size: Option<u64>,
    /// The media type.
    pub content_type: String,
    /// The uploader.
    pub user_id: Uuid,
}

/// A file being read or read.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadInfo {
    /// Bucket name.
    pub bucket: String,
    /// Object path within the bucket.
    pub path: String,
    /// The reader.
    pub user_id: Uuid,
}
