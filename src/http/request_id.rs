//! Gives every request an id — the client's `X-Request-Id` when it is sane, a random one
//! otherwise — echoes it in the response, and runs the request inside a tracing span that
//! carries it, so every log line of a request can be found by its id. It also puts the body
//! deadline on every request body (see [`super::body_deadline`]) and, being the outermost
//! middleware, the security headers on every answer (see [`super::security_headers`]).

use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub(crate) const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, available to handlers as request extension data.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

fn incoming(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(&HEADER)?.to_str().ok()?;
    let sane = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    sane.then(|| value.to_owned())
}

/// A new id: 16 hex digits, unique within the process (a counter mixed with a random seed
/// drawn once), so a request costs no system call and no formatting machinery.
fn fresh() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        u64::from_le_bytes(bytes)
    });
    // splitmix64: a bijection, so distinct counters give distinct ids.
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(16);
    for shift in (0..16).rev() {
        out.push(HEX[((z >> (shift * 4)) & 0xf) as usize] as char);
    }
    out
}

/// The request's client and scheme for its last log line, formatted only when that line is
/// written.
struct ClientField<'a>(&'a actix_web::HttpRequest);

impl std::fmt::Display for ClientField<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let req = self.0;
        let scheme = super::client_addr::scheme(req);
        match super::client_addr::client_addr(req) {
            Some(ip) => write!(f, "{ip} ({scheme})"),
            None => write!(f, "- ({scheme})"),
        }
    }
}

pub(crate) async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let (metrics, body_timeout_ms, body_min_rate, forwarded) = req
        .app_data::<actix_web::web::Data<super::AppState>>()
        .map(|state| {
            let server = &state.config.server;
            let metrics = Some(state.metrics.clone());
            // The client, once for the whole request (nothing to do without trusted proxies).
            let forwarded = if state.proxies.is_empty() {
                None
            } else {
                super::client_addr::resolve(
                    req.peer_addr().map(|a| a.ip()),
                    req.headers(),
                    &state.proxies,
                )
            };
            (
                metrics,
                server.body_timeout_ms,
                server.body_min_rate,
                forwarded,
            )
        })
        .unwrap_or_default();
    if let Some(forwarded) = forwarded {
        req.extensions_mut().insert(forwarded);
    }
    // Every body gets its deadline here, before anything reads it.
    super::body_deadline::guard(&mut req, body_timeout_ms, body_min_rate);
    let id = incoming(&req).unwrap_or_else(fresh);
    req.extensions_mut().insert(RequestId(id.clone()));
    // The span holds the id alone: every line logged while the request is served carries it,
    // and a subscriber formats a span's fields when it is made — each field costs every
    // request (bench/instructions.sh with BENCH_LOG=json). The method, path and client are on
    // the line that ends the request.
    let span = tracing::info_span!("request", request_id = id.as_str());
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let _enter = span.enter();
    let mut res = result?;
    let status = res.status().as_u16();
    let took = started.elapsed();
    if let Some(metrics) = metrics {
        let request = res.request();
        let path = request.path();
        let route = if path == "/ext" || path.starts_with("/ext/") {
            Some(super::ext::dispatch::ROUTE_LABEL.to_owned())
        } else if request.extensions().contains::<super::Unmatched>() {
            None
        } else {
            request.match_pattern()
        };
        metrics.http_request(request.method().as_str(), route, status, took);
    }
    let micros = took.as_micros() as u64;
    let request = res.request();
    let (method, path) = (request.method().as_str(), request.path());
    if status >= 500 {
        let client = ClientField(request);
        tracing::warn!(method, path, client = %client, status, micros, "request failed");
    } else {
        let client = ClientField(request);
        tracing::debug!(method, path, client = %client, status, micros, "request done");
    }
    let headers = res.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HEADER, value);
    }
    // Here, after the extensions' hooks have run, so none of them can leave a page without.
    super::security_headers::apply(headers);
    Ok(res)
}
