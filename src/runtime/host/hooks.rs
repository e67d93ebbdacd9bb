//! The hook engine: calling extension code under a time limit, with panics caught and
//! counted ([`HookCall`], [`ExtensionHost::call`], [`ExtensionHost::begin`]), and the
//! request pipeline's refusals and observations ([`ExtensionHost::refuse`],
//! [`ExtensionHost::observe`]).

use super::*;

/// The hook points of the request pipeline.
pub(crate) const PIPELINE: [HookPoint; 7] = [
    HookPoint::PreRequest,
    HookPoint::Authentication,
    HookPoint::Authorization,
    HookPoint::Error,
    HookPoint::PostRequest,
    HookPoint::PreResponse,
    HookPoint::PostResponse,
];

/// How a hook call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome<T> {
    /// It answered.
    Done(T),
    /// It was cut off at its time limit (counted and logged).
    TimedOut,
    /// It panicked (counted, logged and audited): the request it served gets a 500.
    Panicked,
}

/// A request-path hook call after its synchronous part.
#[derive(Debug)]
pub enum Begun<'l, T, F> {
    /// It answered at once.
    Ready(T),
    /// It waits: await the call.
    Waiting(HookCall<'l, F>),
    /// It panicked before answering.
    Panicked,
}

/// One hook call: the hook's future with its time limit. A hook that answers on its first
/// poll (most do) costs no timer and no allocation; the timer starts only when it waits. A
/// panic while polling is caught.
#[derive(Debug)]
#[must_use = "a hook call does nothing unless awaited"]
pub struct HookCall<'l, F> {
    hook: F,
    loaded: &'l Loaded,
    slot: Slot,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When it began, if its duration is measured.
    started: Option<Instant>,
}

impl<F: Future + Unpin> Future for HookCall<'_, F> {
    type Output = HookOutcome<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let since = crate::alloc::allocated();
        let polled =
            std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut this.hook).poll(cx)));
        this.loaded.stats.allocated_since(since);
        match polled {
            Ok(Poll::Ready(value)) => {
                this.loaded.breaker.success();
                this.loaded.hook_took(this.slot, this.started);
                return Poll::Ready(HookOutcome::Done(value));
            }
            Ok(Poll::Pending) => {}
            Err(payload) => {
                this.loaded.panicked(this.slot.name(), payload.as_ref());
                return Poll::Ready(HookOutcome::Panicked);
            }
        }
        let limit = this.loaded.hook_limit();
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.loaded
            .stats
            .hook_timeouts
            .fetch_add(1, Ordering::Relaxed);
        this.loaded.failed();
        tracing::warn!(extension = %this.loaded.name, hook = this.slot.name(), limit_ms = limit.as_millis() as u64, "hook cut off at its time limit");
        Poll::Ready(HookOutcome::TimedOut)
    }
}

impl<'l, T, F> Begun<'l, T, F> {
    /// Its outcome when it is already known, otherwise the call to await.
    #[inline]
    pub fn known(self) -> Result<HookOutcome<T>, HookCall<'l, F>> {
        match self {
            Begun::Ready(answer) => Ok(HookOutcome::Done(answer)),
            Begun::Waiting(call) => Err(call),
            Begun::Panicked => Ok(HookOutcome::Panicked),
        }
    }
}

/// Awaits a begun hook call to its outcome. (The request pipeline awaits only a call that
/// waits, through [`Begun::known`]: this `async fn`'s state machine, built, polled and
/// dropped around every hook, is a cost most hooks, which answer at once, need not pay.)
pub async fn settle<T, F: Future<Output = T> + Unpin>(begun: Begun<'_, T, F>) -> HookOutcome<T> {
    match begun.known() {
        Ok(outcome) => outcome,
        Err(call) => call.await,
    }
}

/// The answer to a request whose extension code panicked.
pub fn panicked_response() -> Response {
    let code = crate::error::ErrorCode::Internal;
    Response::new(solobase_sdk::http::StatusCode::INTERNAL_SERVER_ERROR)
        .with_header(solobase_sdk::http::header::CONTENT_TYPE, "application/json")
        .with_body(crate::error::body(
            code.as_str(),
            "an extension failed while handling this request",
        ))
}

impl ExtensionHost {
    /// Calls one hook of `l` in `place`: `start` makes its future (a panic there or while it
    /// runs is caught), which runs within the time limit. Counts the call and any time-out.
    pub(crate) fn call<'l, F: Future + Unpin>(
        &self,
        l: &'l Loaded,
        slot: Slot,
        start: impl FnOnce() -> F,
    ) -> Begun<'l, F::Output, F> {
        l.stats.hooks[slot.index()].fetch_add(1, Ordering::Relaxed);
        let started = time_this_request().then(Instant::now);
        match std::panic::catch_unwind(AssertUnwindSafe(start)) {
            Ok(hook) => Begun::Waiting(HookCall {
                hook,
                loaded: l,
                slot,
                timer: None,
                started,
            }),
            Err(payload) => {
                l.panicked(slot.name(), payload.as_ref());
                Begun::Panicked
            }
        }
    }

    /// Starts one request-path hook call: the answer when the hook gave it at once (counted,
    /// no timer), otherwise the call to await within the time limit. A panic while `start`
    /// runs unwinds to the caller — the pipeline catches it once per request, which costs far
    /// less than a catch around every hook; panics while a waiting hook runs are caught by the
    /// [`HookCall`].
    #[inline(always)]
    pub fn begin<'l, 'h, T: Unpin>(
        &self,
        l: &'l Loaded,
        slot: Slot,
        timed: bool,
        start: impl FnOnce() -> Hook<'h, T>,
    ) -> Begun<'l, T, Hook<'h, T>> {
        l.stats.hooks[slot.index()].fetch_add(1, Ordering::Relaxed);
        let started = timed.then(Instant::now);
        let since = crate::alloc::allocated();
        let outcome = start().try_ready();
        l.stats.allocated_since(since);
        match outcome {
            Ok(answer) => {
                l.breaker.success();
                l.hook_took(slot, started);
                Begun::Ready(answer)
            }
            Err(waiting) => Begun::Waiting(HookCall {
                hook: waiting,
                loaded: l,
                slot,
                timer: None,
                started,
            }),
        }
    }

    /// Runs the hooks at `point` that may refuse; the first refusal's response is returned. A
    /// hook that panics refuses with a 500.
    pub(crate) async fn refuse<'e, F, Fut>(&'e self, point: HookPoint, f: F) -> Option<Response>
    where
        F: Fn(&'e dyn ErasedExtension) -> Fut,
        Fut: Future<Output = Flow> + Unpin + 'e,
    {
        for l in self.hooked(point) {
            let Some(ext) = l.ext() else { continue };
            match settle(self.call(l, point.into(), || f(ext.as_ref()))).await {
                HookOutcome::Done(Flow::Respond(response)) => return Some(*response),
                HookOutcome::Panicked => return Some(panicked_response()),
                _ => {}
            }
        }
        None
    }

    /// Runs the observing hooks at `point`.
    pub(crate) async fn observe<'e, F, Fut>(&'e self, point: HookPoint, f: F)
    where
        F: Fn(&'e dyn ErasedExtension) -> Fut,
        Fut: Future<Output = ()> + Unpin + 'e,
    {
        for l in self.hooked(point) {
            if let Some(ext) = l.ext() {
                settle(self.call(l, point.into(), || f(ext.as_ref()))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(limit: Duration) -> Loaded {
        Loaded {
            name: ExtensionName::parse("timed").expect("valid name"),
            manifest: None,
            registration: Registration::new::<Nothing>("", "0.1.0"),
            ext: None,
            routes: None,
            hooks: HookSet::new().timeout(limit),
            middleware: Vec::new(),
            config: None,
            pool: None,
            enabled: AtomicBool::new(true),
            running: AtomicBool::new(true),
            failure: Mutex::new(None),
            stats: Stats::default(),
            panics: PanicLog::new(None),
            breaker: Breaker::new(ExtensionsConfig::default().breaker()),
            in_flight: AtomicUsize::new(0),
            limits: arc_swap::ArcSwap::from_pointee(Live {
                max_in_flight: 1,
                ..Live::of(&ExtensionsConfig::default(), "timed")
            }),
            rate_audit: Sampler::default(),
            storage: None,
            grants: None,
            bus: None,
            hook_durations: Vec::new(),
            health: Default::default(),
            config_state: Default::default(),
            disable_pending: Default::default(),
            span: tracing::Span::none(),
            tasks: Arc::new(crate::runtime::tasks::TaskSet::new(
                ExtensionName::parse("timed").expect("valid name"),
                tracing::Span::none(),
            )),
            task_panic: Mutex::new(None),
            start_failed: AtomicBool::new(false),
            own_metrics: Arc::new(crate::runtime::services::HostMetrics::new(Arc::new(
                crate::metrics::Metrics::new(),
            ))),
            outbound: None,
        }
    }

    struct Nothing;
    impl solobase_sdk::Extension for Nothing {
        type Config = ();
        async fn initialize(_: solobase_sdk::InitContext<()>) -> solobase_sdk::Result<Self> {
            Ok(Nothing)
        }
    }

    fn call<'l, T: Unpin>(l: &'l Loaded, hook: Hook<'static, T>) -> HookCall<'l, Hook<'static, T>> {
        HookCall {
            hook,
            loaded: l,
            slot: Slot::from(HookPoint::PreRequest),
            timer: None,
            started: None,
        }
    }

    #[tokio::test]
    async fn hook_calls_cut_off_slow_hooks_and_catch_panics() {
        let l = loaded(Duration::from_millis(20));
        assert_eq!(call(&l, Hook::ready(1)).await, HookOutcome::Done(1));
        let waits = Hook::wait(async {
            tokio::task::yield_now().await;
            2
        });
        assert_eq!(call(&l, waits).await, HookOutcome::Done(2));
        assert_eq!(l.stats.hook_timeouts.load(Ordering::Relaxed), 0);
        let slow = Hook::wait(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            3
        });
        assert_eq!(call(&l, slow).await, HookOutcome::TimedOut);
        assert_eq!(l.stats.hook_timeouts.load(Ordering::Relaxed), 1);
        let panics = Hook::<u8>::wait(async {
            tokio::task::yield_now().await;
            panic!("inside a waiting hook")
        });
        assert_eq!(call(&l, panics).await, HookOutcome::Panicked);
        assert_eq!(l.panics.count(), 1);
    }
}
