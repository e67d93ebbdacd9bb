//! Hooks: the points where the host calls into an extension besides its routes.
//!
//! An extension registers each hook it wants, with its priority and the method that runs it,
//! in [`Extension::hooks`](crate::Extension::hooks) (see [`Hooks`]). Hooks of all extensions run in ascending priority, ties broken by extension name —
//! a total, stable order. A hook that overruns its time limit is cut off and counted.
//!
//! Every hook and middleware returns a [`Hook`]: the answer at once, or a future when it must
//! wait ([`Hook::wait`] with an `async` block).
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

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::http::{Response, StatusCode};
use crate::services::BoxFuture;

pub(crate) mod registry;
pub use registry::{ExchangeHook, Hooks, InfoHook, RequestHook, RequestMutHook, ResponseMutHook};

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
    /// Stop here and answer with this response (boxed, so that the common `Continue` stays
    /// small).
    Respond(Box<Response>),
}

impl Flow {
    /// Stop here and answer with `response`.
    pub fn respond(response: Response) -> Self {
        Self::Respond(Box::new(response))
    }

    /// Stop with the host's error shape, e.g. `Flow::reject(StatusCode::INSUFFICIENT_STORAGE,
    /// "quota_exceeded", "the quota of 1 GiB is used up")`.
    pub fn reject(status: StatusCode, code: &str, message: &str) -> Self {
        Self::respond(Response::error_with(status, code, message))
    }
}

/// What a request-path hook or middleware returns: its answer at once, or a future when it
/// has to wait for I/O.
///
/// Request-path hooks run on every request, so the common case — inspect a header, count,
/// decide — costs no allocation: return the answer (`Flow::Continue.into()`, `().into()`).
/// A hook that must wait (a database lookup, a call to another service) returns
/// [`Hook::wait`] with an `async` block; the host awaits it within the hook's time limit.
///
/// ```
/// use solobase_sdk::hooks::Hook;
/// use solobase_sdk::prelude::*;
///
/// // Answers at once.
/// fn pre_request(req: &mut RequestHead) -> Hook<'_, Flow> {
///     if req.header("x-blocked").is_some() {
///         return Flow::reject(StatusCode::FORBIDDEN, "blocked", "blocked").into();
///     }
///     Flow::Continue.into()
/// }
///
/// // Waits for I/O.
/// fn authenticate<'a>(req: &'a RequestHead) -> Hook<'a, Result<Option<Identity>>> {
///     Hook::wait(async move {
///         let _key = req.header("x-api-key");
///         // … look the key up in the extension's database …
///         Ok(None)
///     })
/// }
/// # let _ = (pre_request, authenticate);
/// ```
///
/// A `Hook` is a future, so tests simply `.await` it.
#[must_use = "a hook's answer does nothing unless returned"]
pub struct Hook<'a, T>(HookInner<'a, T>);

enum HookInner<'a, T> {
    Ready(Option<T>),
    Wait(BoxFuture<'a, T>),
}

impl<'a, T> Hook<'a, T> {
    /// The answer, available at once.
    pub fn ready(value: T) -> Self {
        Self(HookInner::Ready(Some(value)))
    }

    /// An answer that needs waiting: `fut` runs within the hook's time limit.
    pub fn wait(fut: impl Future<Output = T> + Send + 'a) -> Self {
        Self(HookInner::Wait(Box::pin(fut)))
    }

    /// Whether the answer is available without waiting.
    pub fn is_ready(&self) -> bool {
        matches!(self.0, HookInner::Ready(Some(_)))
    }

    /// The answer when it is available without waiting; otherwise the hook, to be awaited.
    pub fn try_ready(self) -> std::result::Result<T, Self> {
        match self.0 {
            HookInner::Ready(Some(value)) => Ok(value),
            inner => Err(Self(inner)),
        }
    }
}

impl<T> From<T> for Hook<'_, T> {
    fn from(value: T) -> Self {
        Self::ready(value)
    }
}

impl<T: Unpin> Future for Hook<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            HookInner::Ready(value) => Poll::Ready(
                value
                    .take()
                    .expect("a Hook is not polled after it completed"),
            ),
            HookInner::Wait(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl<T> std::fmt::Debug for Hook<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_ready() {
            "Hook::Ready"
        } else {
            "Hook::Wait"
        })
    }
}

/// Which hooks an extension registered and their priorities (lower runs first): what the host
/// reads of [`Hooks`].
#[doc(hidden)]
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
    /// The reader; `None` for an anonymous read of a public bucket.
    pub user_id: Option<Uuid>,
}
