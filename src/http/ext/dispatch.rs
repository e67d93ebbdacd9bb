//! Serves `/ext/<name>/…`: finds the extension and its route, checks the route's access rule,
//! reads the body within the size limit and calls the handler inside the extension's span.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use futures_util::{FutureExt, StreamExt};
use solobase_sdk::http::{Identity, Request};
use solobase_sdk::routes::{Access, Lookup, RouteDef};
use solobase_sdk::{ExtensionError, Response};
use tracing::Instrument;

use super::convert;
use crate::error::{ApiError, ErrorCode};
use crate::http::{AppState, RequestId};
use crate::runtime::discovered;
use crate::runtime::host::{ExtensionHost, Loaded, panicked_response};
use crate::runtime::limits::{Client, Metered};

/// The answer for an extension that does not serve: unknown, not compiled in, or inactive.
fn unavailable(host: &ExtensionHost, name: &str) -> ApiError {
    if let Some(l) = host.get(name) {
        let why = if !l.is_enabled() {
            "is disabled".to_owned()
        } else {
            format!(
                "is not running ({})",
                l.failure().unwrap_or_else(|| "starting".into())
            )
        };
        return ApiError::not_found(format!("extension {name} {why}"));
    }
    match discovered().iter().find(|d| d.name == name) {
        Some(d) => ApiError::not_found(format!(
            "extension {name} is not compiled into this binary; rebuild with --features {}",
            d.feature
        )),
        None => ApiError::not_found(format!("no extension named {name}")),
    }
}

/// The request's body, refused with a 413 as soon as it is known to exceed `limit` bytes: by
/// its Content-Length before a byte is read, else when the bytes read pass it.
async fn read_body(
    req: &HttpRequest,
    payload: &mut web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes (extensions.max_body_bytes); send less"),
        )
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| crate::error::payload_error(&e))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `/ext/<name>/<rest>` → (`<name>`, `/<rest>`): the extension and the path its route table
/// looks up (`/` when there is no rest). Anything else has the empty name, which no extension
/// has.
pub fn split_path(path: &str) -> (&str, &str) {
    let rest = path.strip_prefix("/ext/").unwrap_or_default();
    match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    }
}

/// The `route` label of requests under `/ext` in `http_requests_total` (the dispatcher is a
/// default service, which actix does not name): every one of them has this label, each
/// extension's own routes have theirs in `extension_requests_total`.
pub(crate) const ROUTE_LABEL: &str = "/ext/{name}/{tail:.*}";

pub(crate) async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    host: web::Data<ExtensionHost>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let (name, sub) = split_path(req.path());
    // Only extensions that exist get series: the label values stay bounded.
    let Some(l) = host.get(name) else {
        return Err(unavailable(&host, name));
    };
    let mut matched = None;
    let answer = serve(&req, payload, &host, &state, l, sub, &mut matched).await;
    let status = match &answer {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.code.status().as_u16(),
    };
    state.metrics.extension_request(
        name,
        matched.map(|r: &RouteDef| (r.method.as_str(), r.path.as_str())),
        status,
        started.elapsed(),
    );
    answer
}

/// Serves one request to `l`'s route at `sub`; sets `matched` to the route.
async fn serve<'l>(
    req: &HttpRequest,
    mut payload: web::Payload,
    host: &ExtensionHost,
    state: &AppState,
    l: &'l Loaded,
    sub: &str,
    matched: &mut Option<&'l RouteDef>,
) -> Result<HttpResponse, ApiError> {
    let name = l.name.as_str();
    if !(l.is_enabled() && l.is_running()) {
        return Err(unavailable(host, name));
    }
    if !l.breaker.allows() {
        let retry = l.breaker.open_for_ms().unwrap_or(1000).div_ceil(1000);
        return Err(ApiError::new(
            ErrorCode::ExtensionUnavailable,
            format!("the extension {name} failed repeatedly and is paused; try again in {retry} s"),
        )
        .retry_after(retry));
    }
    let Some(table) = l.routes.as_ref() else {
        return Err(unavailable(host, name));
    };
    let method = convert::method(req.method());
    let (route, params) = match table.lookup(&method, sub) {
        Lookup::Found { route, params } => {
            *matched = Some(route);
            (route, params)
        }
        Lookup::MethodNotAllowed(_) => {
            return Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            ));
        }
        Lookup::NotFound => return Err(ApiError::not_found("no such route")),
    };
    let identity = identity(req, state).await?;
    check_access(&route.access, identity.as_ref(), state).await?;
    let client = match (&identity, crate::http::client_addr::client_addr(req)) {
        (Some(who), _) => Client::User(who.user_id),
        (None, Some(addr)) => Client::Address(addr),
        (None, None) => Client::Unknown,
    };
    if let Err(limited) = l.admit(client) {
        let wait = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many requests to the extension {name} ({} limit); try again in {wait} s",
                limited.scope
            ),
        )
        .retry_after(wait)
        .with_header("ratelimit-limit", limited.limit.to_string())
        .with_header("ratelimit-remaining", "0")
        .with_header("ratelimit-reset", wait.to_string()));
    }
    let Some(_slot) = l.enter() else {
        return Err(ApiError::new(
            ErrorCode::ExtensionBusy,
            format!(
                "the extension {name} is serving as many requests as it may at once ({}); \
                 try again in a moment",
                l.max_in_flight()
            ),
        )
        .retry_after(1));
    };

    let body = read_body(req, &mut payload, host.max_body_bytes(name)).await?;
    let mut head = {
        let extensions = req.extensions();
        let request_id = extensions.get::<RequestId>().map_or("", |r| r.0.as_str());
        convert::request_head(req, request_id)
    };
    head.identity = identity;
    let request = Request { head, params, body };
    l.stats.requests.fetch_add(1, Ordering::Relaxed);
    // A panic in the handler (making its future or running it) is caught: this request gets
    // a 500, the server and every other request carry on.
    let handler = &route.handler;
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(request))) {
        Ok(running) => {
            let running = AssertUnwindSafe(running.instrument(l.span.clone())).catch_unwind();
            let budget = l.cpu_budget();
            match Metered::new(running, budget)
                .counting(&l.stats.allocated_bytes)
                .await
            {
                Ok(outcome) => outcome,
                Err(spent) => {
                    l.stats.over_budget.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(extension = %l.name, spent_ms = spent.as_millis() as u64, "handler cancelled: over its time budget");
                    return Err(over_budget(name, budget));
                }
            }
        }
        Err(payload) => Err(payload),
    };
    let response = match outcome {
        Ok(Ok(response)) => {
            l.breaker.success();
            response
        }
        Ok(Err(error)) => {
            // An error the extension chose to return is an answer, not a failure.
            l.breaker.success();
            l.stats.errors.fetch_add(1, Ordering::Relaxed);
            log_error(&l.name.to_string(), &error);
            Response::error(&error)
        }
        Err(payload) => {
            l.stats.errors.fetch_add(1, Ordering::Relaxed);
            l.panicked("handler", payload.as_ref());
            panicked_response()
        }
    };
    Ok(convert::response(response))
}

/// The answer when a handler ran over its time budget and was cancelled.
fn over_budget(name: &str, budget: std::time::Duration) -> ApiError {
    ApiError::new(
        ErrorCode::OverBudget,
        format!(
            "the extension {name} spent more than its {} ms on this request and was stopped",
            budget.as_millis()
        ),
    )
}

fn log_error(extension: &str, error: &ExtensionError) {
    let (status, code) = error.status_and_code();
    if status.is_server_error() {
        tracing::error!(extension, code, %error, "extension handler failed");
    } else {
        tracing::debug!(extension, code, %error, "extension handler refused the request");
    }
}

/// The caller, as [`crate::http::identity`] resolves it for every part of the request.
async fn identity(req: &HttpRequest, state: &AppState) -> Result<Option<Identity>, ApiError> {
    crate::http::identity::caller(req, state).await?.identity()
}

async fn check_access(
    access: &Access,
    identity: Option<&Identity>,
    state: &AppState,
) -> Result<(), ApiError> {
    let who = match (access, identity) {
        (Access::Public, _) => return Ok(()),
        (_, None) => return Err(crate::http::identity::unauthenticated()),
        (_, Some(who)) => who,
    };
    match access {
        Access::Authenticated => Ok(()),
        _ if who.is_admin() => Ok(()),
        Access::Admin => Err(ApiError::forbidden("administrators only")),
        Access::Permission(p) => {
            let held = state
                .auth_cache
                .held(&state.pool, who.role.as_str())
                .await
                .map_err(ApiError::internal)?;
            if held.iter().any(|h| h == p) {
                Ok(())
            } else {
                Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!("this needs the permission {p}, which your role does not hold"),
                ))
            }
        }
        Access::Public => Ok(()),
    }
}
