//! [`Hooks`]: where an extension registers each hook and middleware with the method that
//! runs it, as routes are registered with their handlers — so a hook that is declared is
//! always the one that runs, and one that is not declared cannot run.

use std::time::Duration;

use super::{DownloadInfo, Flow, Hook, HookPoint, HookSet, LoginInfo, SignupInfo, UploadInfo};
use crate::error::Result;
use crate::event::Event;
use crate::extension::MiddlewareSpec;
use crate::http::{Identity, RequestHead, Response, ResponseHead};

/// A hook given the request head to change.
pub type RequestMutHook<E, T> = for<'a> fn(&'a E, &'a mut RequestHead) -> Hook<'a, T>;
/// A hook given the request head.
pub type RequestHook<E, T> = for<'a> fn(&'a E, &'a RequestHead) -> Hook<'a, T>;
/// A hook given the request head and the response head.
pub type ExchangeHook<E, T> = for<'a> fn(&'a E, &'a RequestHead, &'a ResponseHead) -> Hook<'a, T>;
/// A hook given the request head and the response head to change.
pub type ResponseMutHook<E> =
    for<'a> fn(&'a E, &'a RequestHead, &'a mut ResponseHead) -> Hook<'a, ()>;
/// A hook given what happens (an account, a file, an event).
pub type InfoHook<E, I, T> = for<'a> fn(&'a E, &'a I) -> Hook<'a, T>;

/// One middleware: where it applies, and its two halves.
pub(crate) struct Middleware<E> {
    pub(crate) spec: MiddlewareSpec,
    pub(crate) on_request: Option<RequestMutHook<E, Flow>>,
    pub(crate) on_response: Option<ResponseMutHook<E>>,
}

/// The methods registered for each hook point.
pub(crate) struct Table<E> {
    pub(crate) pre_request: Option<RequestMutHook<E, Flow>>,
    pub(crate) authentication: Option<RequestHook<E, Result<Option<Identity>>>>,
    pub(crate) authorization: Option<RequestHook<E, Flow>>,
    pub(crate) error: Option<ExchangeHook<E, Option<Response>>>,
    pub(crate) post_request: Option<ExchangeHook<E, ()>>,
    pub(crate) pre_response: Option<ResponseMutHook<E>>,
    pub(crate) post_response: Option<ExchangeHook<E, ()>>,
    pub(crate) user_signup: Option<InfoHook<E, SignupInfo, Flow>>,
    pub(crate) user_login: Option<InfoHook<E, LoginInfo, Flow>>,
    pub(crate) storage_before_upload: Option<InfoHook<E, UploadInfo, Flow>>,
    pub(crate) storage_after_upload: Option<InfoHook<E, UploadInfo, ()>>,
    pub(crate) storage_before_download: Option<InfoHook<E, DownloadInfo, Flow>>,
    pub(crate) storage_after_download: Option<InfoHook<E, DownloadInfo, ()>>,
    pub(crate) on_event: Option<InfoHook<E, Event, ()>>,
    pub(crate) middleware: Vec<Middleware<E>>,
}

/// Where an extension registers its hooks and middleware, in
/// [`Extension::hooks`](crate::Extension::hooks): each with its priority (lower runs first,
/// ties broken by extension name) and the method that runs it.
///
/// ```
/// use solobase_sdk::hooks::{Hook, Hooks};
/// use solobase_sdk::prelude::*;
///
/// struct Stamp;
///
/// impl Stamp {
///     fn stamp(&self, _req: &RequestHead, res: &mut ResponseHead) -> Hook<'_, ()> {
///         res.headers.insert("x-stamp", HeaderValue::from_static("1"));
///         ().into()
///     }
///
///     fn greet<'a>(&'a self, info: &'a SignupInfo) -> Hook<'a, Flow> {
///         Hook::wait(async move {
///             // … look something up …
///             let _ = &info.email;
///             Flow::Continue
///         })
///     }
/// }
///
/// impl Extension for Stamp {
///     type Config = ();
///     async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
///         Ok(Stamp)
///     }
///     fn hooks(&self, hooks: &mut Hooks<Self>) {
///         hooks.pre_response(0, Self::stamp).user_signup(10, Self::greet);
///     }
/// }
/// ```
pub struct Hooks<E> {
    pub(crate) set: HookSet,
    pub(crate) table: Table<E>,
}

impl<E> std::fmt::Debug for Hooks<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("points", &self.set.points)
            .field("events", &self.set.events)
            .finish_non_exhaustive()
    }
}

impl<E> Default for Hooks<E> {
    fn default() -> Self {
        Self {
            set: HookSet::new(),
            table: Table {
                pre_request: None,
                authentication: None,
                authorization: None,
                error: None,
                post_request: None,
                pre_response: None,
                post_response: None,
                user_signup: None,
                user_login: None,
                storage_before_upload: None,
                storage_after_upload: None,
                storage_before_download: None,
                storage_after_download: None,
                on_event: None,
                middleware: Vec::new(),
            },
        }
    }
}

impl<E> Hooks<E> {
    /// Nothing registered.
    pub fn new() -> Self {
        Self::default()
    }

    fn at(&mut self, point: HookPoint, priority: i32) -> &mut Self {
        self.set.points.retain(|(p, _)| *p != point);
        self.set.points.push((point, priority));
        self
    }

    /// `pre_request`, first for every request: may change the request head, or answer.
    pub fn pre_request(&mut self, priority: i32, hook: RequestMutHook<E, Flow>) -> &mut Self {
        self.table.pre_request = Some(hook);
        self.at(HookPoint::PreRequest, priority)
    }

    /// `authentication`, when no host token identified the caller: the caller, when this
    /// extension recognises its credentials.
    pub fn authentication(
        &mut self,
        priority: i32,
        hook: RequestHook<E, Result<Option<Identity>>>,
    ) -> &mut Self {
        self.table.authentication = Some(hook);
        self.at(HookPoint::Authentication, priority)
    }

    /// `authorization`: may deny the (possibly anonymous) caller.
    pub fn authorization(&mut self, priority: i32, hook: RequestHook<E, Flow>) -> &mut Self {
        self.table.authorization = Some(hook);
        self.at(HookPoint::Authorization, priority)
    }

    /// `error`: the handler failed (an error or a 5xx); may replace the response.
    pub fn error(&mut self, priority: i32, hook: ExchangeHook<E, Option<Response>>) -> &mut Self {
        self.table.error = Some(hook);
        self.at(HookPoint::Error, priority)
    }

    /// `post_request`: observes the request and the response status.
    pub fn post_request(&mut self, priority: i32, hook: ExchangeHook<E, ()>) -> &mut Self {
        self.table.post_request = Some(hook);
        self.at(HookPoint::PostRequest, priority)
    }

    /// `pre_response`: may change the response status and headers.
    pub fn pre_response(&mut self, priority: i32, hook: ResponseMutHook<E>) -> &mut Self {
        self.table.pre_response = Some(hook);
        self.at(HookPoint::PreResponse, priority)
    }

    /// `post_response`: observes, after the response was handed to the server.
    pub fn post_response(&mut self, priority: i32, hook: ExchangeHook<E, ()>) -> &mut Self {
        self.table.post_response = Some(hook);
        self.at(HookPoint::PostResponse, priority)
    }

    /// `user.signup`: may refuse an account about to be created.
    pub fn user_signup(&mut self, priority: i32, hook: InfoHook<E, SignupInfo, Flow>) -> &mut Self {
        self.table.user_signup = Some(hook);
        self.at(HookPoint::UserSignup, priority)
    }

    /// `user.login`: may refuse a login whose password matched.
    pub fn user_login(&mut self, priority: i32, hook: InfoHook<E, LoginInfo, Flow>) -> &mut Self {
        self.table.user_login = Some(hook);
        self.at(HookPoint::UserLogin, priority)
    }

    /// `storage.before_upload`: may refuse an upload (e.g. 507 when over a quota).
    pub fn storage_before_upload(
        &mut self,
        priority: i32,
        hook: InfoHook<E, UploadInfo, Flow>,
    ) -> &mut Self {
        self.table.storage_before_upload = Some(hook);
        self.at(HookPoint::StorageBeforeUpload, priority)
    }

    /// `storage.after_upload`: a file was stored.
    pub fn storage_after_upload(
        &mut self,
        priority: i32,
        hook: InfoHook<E, UploadInfo, ()>,
    ) -> &mut Self {
        self.table.storage_after_upload = Some(hook);
        self.at(HookPoint::StorageAfterUpload, priority)
    }

    /// `storage.before_download`: may refuse a download.
    pub fn storage_before_download(
        &mut self,
        priority: i32,
        hook: InfoHook<E, DownloadInfo, Flow>,
    ) -> &mut Self {
        self.table.storage_before_download = Some(hook);
        self.at(HookPoint::StorageBeforeDownload, priority)
    }

    /// `storage.after_download`: a file was sent.
    pub fn storage_after_download(
        &mut self,
        priority: i32,
        hook: InfoHook<E, DownloadInfo, ()>,
    ) -> &mut Self {
        self.table.storage_after_download = Some(hook);
        self.at(HookPoint::StorageAfterDownload, priority)
    }

    /// Committed events whose type matches one of `patterns` (`user.created`, `user.*`, `*`)
    /// go to `hook` (needs the permission `events.subscribe`).
    pub fn on_event(&mut self, patterns: &[&str], hook: InfoHook<E, Event, ()>) -> &mut Self {
        self.table.on_event = Some(hook);
        self.set
            .events
            .extend(patterns.iter().map(|p| (*p).to_owned()));
        self
    }

    /// The time limit of each hook call (default [`super::DEFAULT_HOOK_TIMEOUT`]).
    pub fn timeout(&mut self, limit: Duration) -> &mut Self {
        self.set.timeout = Some(limit);
        self
    }

    /// A middleware: `on_request` runs on matching requests on the way in (may change the
    /// request or answer it), `on_response` on the way out (may change status and headers),
    /// in reverse order. Either may be `None`.
    pub fn middleware(
        &mut self,
        spec: MiddlewareSpec,
        on_request: Option<RequestMutHook<E, Flow>>,
        on_response: Option<ResponseMutHook<E>>,
    ) -> &mut Self {
        self.table.middleware.retain(|m| m.spec.id != spec.id);
        self.table.middleware.push(Middleware {
            spec,
            on_request,
            on_response,
        });
        self
    }

    /// What was registered, as the host reads it.
    pub fn set(&self) -> &HookSet {
        &self.set
    }
}
