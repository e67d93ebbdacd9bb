//! The request pipeline: middleware and the seven pipeline hooks around every request, host
//! routes and extension routes alike.
//!
//! Order, for one request:
//! 1. `pre_request` hooks — may change headers or answer;
//! 2. middleware inbound halves, by (priority, extension, id), for matching paths;
//! 3. identity: the host's bearer token, else `authentication` hooks (first wins);
//! 4. `authorization` hooks — may deny;
//! 5. the handler (skipped when a step above answered);
//! 6. `error` hooks when the status is 5xx — may replace the response;
//! 7. `post_request` hooks — observe;
//! 8. `pre_response` hooks — may change status and headers;
//! 9. middleware outbound halves, in reverse order (only those entered in step 2);
//! 10. `post_response` hooks — after the response is handed over, on a separate task.
//!
//! Header changes made in steps 1–2 reach the handler. Which extensions are active is read
//! once per request (`ActiveSet`): the request sees one consistent set, and a request for
//! which no active extension has a hook or matching middleware costs that one scan.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use futures_util::FutureExt;
use smallvec::SmallVec;
use solobase_sdk::hooks::HookPoint;
use solobase_sdk::http::{RequestHead, ResponseHead};
use solobase_sdk::{Flow, Response};

use super::convert;
use crate::http::RequestId;
use crate::runtime::host::{
    ActiveSet, ExtensionHost, HookOutcome, Loaded, Slot, panicked_response,
};

/// Runs one request-path hook of `l` at `$point` through the host's hook engine
/// (`ExtensionHost::begin`, then `Begun::known`): its answer at once, or awaited within the
/// hook's time limit — a [`HookOutcome`]. The macro only names the hook in `$calling` while
/// its synchronous part runs: a panic there unwinds to [`middleware`], which catches it once
/// per request.
macro_rules! run_hook {
    ($host:expr, $calling:expr, $l:expr, $point:expr, $start:expr) => {{
        let slot = Slot::from($point);
        $calling.set(Some((&**$l, slot)));
        let begun = $host.begin($l, slot, $calling.timed, $start);
        $calling.set(None);
        // Not `settle(begun).await`: most hooks answer at once, and an `async fn` around
        // each of them costs ~140 instructions per hook (bench/instructions.sh).
        match begun.known() {
            Ok(outcome) => outcome,
            Err(call) => call.await,
        }
    }};
}

/// Per request: the extension hook whose synchronous part is running, if any, and whether
/// this request's hook calls are timed (one request in [`crate::metrics::HOOK_SAMPLE`]).
struct Calling<'h> {
    now: Cell<Option<(&'h Loaded, Slot)>>,
    timed: bool,
}

impl<'h> Calling<'h> {
    fn new() -> Self {
        Self {
            now: Cell::new(None),
            timed: crate::runtime::host::time_this_request(),
        }
    }

    fn set(&self, hook: Option<(&'h Loaded, Slot)>) {
        self.now.set(hook);
    }

    fn get(&self) -> Option<(&'h Loaded, Slot)> {
        self.now.get()
    }
}

const MIDDLEWARE_IN: Slot = Slot::MIDDLEWARE_REQUEST;
const MIDDLEWARE_OUT: Slot = Slot::MIDDLEWARE_RESPONSE;

pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let host = req.app_data::<web::Data<ExtensionHost>>().cloned();
    // Which extensions are active is read once: the request sees one consistent set, and a
    // request for which none takes part costs this one scan.
    let snapshot = host.as_ref().map(|h| h.active_now());
    let (Some(shared), Some(active)) = (host, snapshot) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    if !shared.pipeline_active(req.path(), &active) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let host: &ExtensionHost = &shared;
    let active = &active;
    let mut head = {
        let extensions = req.extensions();
        let request_id = extensions.get::<RequestId>().map_or("", |r| r.0.as_str());
        convert::request_head(req.request(), request_id)
    };
    let mut entered = Entered::new();
    // Panics are caught once per phase rather than around every hook: a panic in a hook's
    // synchronous part unwinds to the phase's catch, and `calling` says whose it was.
    let calling = Calling::new();

    // Steps 1-4.
    let mut touched = false;
    let inbound = AssertUnwindSafe(async {
        let mut early = inbound(
            host,
            active,
            &calling,
            &mut head,
            &mut entered,
            &mut touched,
        )
        .await;
        if early.is_none() {
            early = resolve_identity(host, active, &calling, &req, &mut head).await;
        }
        if early.is_none() {
            early = authorize(host, active, &calling, &head).await;
        }
        early
    })
    .catch_unwind()
    .await;
    let early = match inbound {
        Ok(early) => early,
        Err(payload) => Some(caught(&calling, payload)),
    };

    // Step 5.
    let mut res: ServiceResponse<BoxBody> = match early {
        Some(response) => req.into_response(convert::response(response)),
        None => {
            let mut req = req;
            // Only `pre_request` hooks and inbound middleware may change the request.
            if touched {
                convert::sync_headers(&head.headers, req.headers_mut());
            }
            next.call(req).await?.map_into_boxed_body()
        }
    };

    // Steps 6-9.
    let outbound = AssertUnwindSafe(outbound(host, active, &calling, &head, &mut res, &entered))
        .catch_unwind()
        .await;
    let res_head = match outbound {
        Ok(res_head) => res_head,
        Err(payload) => {
            *res.response_mut() = convert::response(caught(&calling, payload));
            None
        }
    };

    // Step 10.
    let Some(res_head) = res_head else {
        convert::recycle_request(head);
        return Ok(res);
    };
    if host.has_hooks_in(HookPoint::PostResponse, active) {
        let host = shared.clone();
        actix_web::rt::spawn(async move {
            let calling = Calling::new();
            let observed = AssertUnwindSafe(async {
                for l in host.hooked(HookPoint::PostResponse) {
                    if let Some(ext) = l.ext() {
                        let point = HookPoint::PostResponse;
                        run_hook!(host, calling, l, point, || ext
                            .post_response(&head, &res_head));
                    }
                }
            })
            .catch_unwind()
            .await;
            if let Err(payload) = observed {
                caught(&calling, payload);
            }
            convert::recycle_request(head);
            convert::recycle_response(res_head);
        });
    } else {
        convert::recycle_request(head);
        convert::recycle_response(res_head);
    }
    Ok(res)
}

/// The response a `Flow` hook's outcome answers with: its own, or a 500 when it panicked.
fn answer_of(outcome: HookOutcome<Flow>) -> Option<Response> {
    match outcome {
        HookOutcome::Done(Flow::Respond(r)) => Some(*r),
        HookOutcome::Panicked => Some(panicked_response()),
        _ => None,
    }
}

/// A panic caught in a phase: recorded against the extension whose hook was running, and the
/// answer for the request. A panic outside extension code is the host's own and goes on
/// unwinding, as it would without extensions.
fn caught(calling: &Calling<'_>, payload: Box<dyn std::any::Any + Send>) -> Response {
    match calling.get() {
        Some((l, slot)) => {
            l.panicked(slot.name(), payload.as_ref());
            panicked_response()
        }
        None => std::panic::resume_unwind(payload),
    }
}

/// Steps 6-9 on `res`: error hooks, then — when any hook or middleware looks at responses —
/// `post_request`, `pre_response` and the outbound middleware, whose changes are written back.
/// Returns the response head for `post_response`, or `None` when nothing needs it.
async fn outbound<'h>(
    host: &'h ExtensionHost,
    active: &'h ActiveSet,
    calling: &Calling<'h>,
    head: &RequestHead,
    res: &mut ServiceResponse<BoxBody>,
    entered: &Entered<'h>,
) -> Option<ResponseHead> {
    if res.status().is_server_error() && host.has_hooks_in(HookPoint::Error, active) {
        let res_head = response_head(res);
        let mut replacement = None;
        for l in host.hooked_in(HookPoint::Error, active) {
            let Some(ext) = l.ext() else { continue };
            let point = HookPoint::Error;
            match run_hook!(host, calling, l, point, || ext.on_error(head, &res_head)) {
                HookOutcome::Done(Some(r)) => {
                    replacement = Some(r);
                    break;
                }
                HookOutcome::Panicked => {
                    replacement = Some(panicked_response());
                    break;
                }
                _ => {}
            }
        }
        convert::recycle_response(res_head);
        if let Some(r) = replacement {
            *res.response_mut() = convert::response(r);
        }
    }

    let needs_head = host.has_hooks_in(HookPoint::PostRequest, active)
        || host.has_hooks_in(HookPoint::PreResponse, active)
        || host.has_hooks_in(HookPoint::PostResponse, active)
        || !entered.is_empty();
    if !needs_head {
        return None;
    }
    let mut res_head = response_head(res);
    // A waiting hook that panics on the way out turns the response into a 500.
    let mut panicked = false;
    for l in host.hooked_in(HookPoint::PostRequest, active) {
        if let Some(ext) = l.ext() {
            let point = HookPoint::PostRequest;
            panicked |= run_hook!(host, calling, l, point, || ext
                .post_request(head, &res_head))
                == HookOutcome::Panicked;
        }
    }
    for l in host.hooked_in(HookPoint::PreResponse, active) {
        if let Some(ext) = l.ext() {
            let point = HookPoint::PreResponse;
            let res_head = &mut res_head;
            panicked |= run_hook!(host, calling, l, point, move || ext
                .pre_response(head, res_head))
                == HookOutcome::Panicked;
        }
    }
    for &(l, declared) in entered.iter().rev() {
        if let Some(ext) = l.ext() {
            let res_head = &mut res_head;
            panicked |= run_hook!(host, calling, l, MIDDLEWARE_OUT, move || ext
                .middleware_response(declared, head, res_head))
                == HookOutcome::Panicked;
        }
    }
    if panicked {
        *res.response_mut() = convert::response(panicked_response());
        return Some(res_head);
    }
    // Only `pre_response` hooks and outbound middleware may change the response; write back
    // only what they changed (comparing costs no allocation).
    if !host.has_hooks_in(HookPoint::PreResponse, active) && entered.is_empty() {
        return Some(res_head);
    }
    if convert::status(res.status()) != res_head.status {
        *res.response_mut().status_mut() = convert::actix_status(res_head.status);
    }
    convert::sync_headers(&res_head.headers, res.response_mut().headers_mut());
    Some(res_head)
}

/// The middleware a request went through on its way in (each by its position in its
/// extension's list), to run their outbound halves.
type Entered<'h> = SmallVec<[(&'h Arc<Loaded>, usize); 8]>;

/// Steps 1 and 2. Returns a response when a hook or middleware answered; sets `touched` when
/// a hook that may change the request ran.
async fn inbound<'h>(
    host: &'h ExtensionHost,
    active: &'h ActiveSet,
    calling: &Calling<'h>,
    head: &mut RequestHead,
    entered: &mut Entered<'h>,
    touched: &mut bool,
) -> Option<Response> {
    for l in host.hooked_in(HookPoint::PreRequest, active) {
        let Some(ext) = l.ext() else { continue };
        *touched = true;
        let h = &mut *head;
        let outcome = run_hook!(host, calling, l, HookPoint::PreRequest, move || ext
            .pre_request(h));
        if let Some(answer) = answer_of(outcome) {
            return Some(answer);
        }
    }
    for (l, declared, spec) in host.middleware_in(active) {
        // Checked one at a time: a middleware's path rule sees the request as changed by the
        // ones before it.
        if !spec.applies_to(&head.path) {
            continue;
        }
        let Some(ext) = l.ext() else { continue };
        *touched = true;
        entered.push((l, declared));
        let h = &mut *head;
        let outcome = run_hook!(host, calling, l, MIDDLEWARE_IN, move || ext
            .middleware_request(declared, h));
        if let Some(answer) = answer_of(outcome) {
            return Some(answer);
        }
    }
    None
}

/// Step 3, only when an extension takes part in authentication or authorization. Returns a
/// response when an authentication hook panicked.
async fn resolve_identity<'h>(
    host: &'h ExtensionHost,
    active: &'h ActiveSet,
    calling: &Calling<'h>,
    req: &ServiceRequest,
    head: &mut RequestHead,
) -> Option<Response> {
    if !host.has_hooks_in(HookPoint::Authentication, active)
        && !host.has_hooks_in(HookPoint::Authorization, active)
    {
        return None;
    }
    // The host's token first (one lookup, kept for the rest of the request).
    let mut identity = None;
    let mut by_token = false;
    if let Some(state) = req.app_data::<web::Data<crate::http::AppState>>()
        && let Ok(caller) = crate::http::identity::caller(req.request(), state).await
        && caller.is_user()
    {
        identity = caller.identity().ok().flatten();
        by_token = true;
    }
    if identity.is_none() {
        for l in host.hooked_in(HookPoint::Authentication, active) {
            let Some(ext) = l.ext() else { continue };
            let h = &*head;
            match run_hook!(host, calling, l, HookPoint::Authentication, || ext
                .authenticate(h))
            {
                HookOutcome::Done(Ok(Some(found))) => {
                    identity = Some(found);
                    break;
                }
                HookOutcome::Done(Err(e)) => {
                    tracing::warn!(extension = %l.name, error = %e, "authentication hook failed");
                }
                HookOutcome::Panicked => return Some(panicked_response()),
                _ => {}
            }
        }
    }
    if !by_token
        && let Some(found) = &identity
        && let Some(state) = req.app_data::<web::Data<crate::http::AppState>>()
        && !crate::http::identity::established_by_extension(
            req.request(),
            &state.pool,
            found.clone(),
        )
        .await
    {
        identity = None;
    }
    head.identity = identity;
    None
}

/// Step 4.
async fn authorize<'h>(
    host: &'h ExtensionHost,
    active: &'h ActiveSet,
    calling: &Calling<'h>,
    head: &RequestHead,
) -> Option<Response> {
    for l in host.hooked_in(HookPoint::Authorization, active) {
        let Some(ext) = l.ext() else { continue };
        let outcome = run_hook!(host, calling, l, HookPoint::Authorization, || ext
            .authorize(head));
        if let Some(answer) = answer_of(outcome) {
            return Some(answer);
        }
    }
    None
}

fn response_head(res: &ServiceResponse<BoxBody>) -> ResponseHead {
    convert::response_head(res.status(), res.headers())
}
