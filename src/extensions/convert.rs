//! Conversions between actix-web's HTTP types and the SDK's (`http` 1.x), kept to one place.

use std::cell::RefCell;

use actix_web::{HttpRequest, HttpResponse};
use solobase_sdk::http::{
    HeaderMap, HeaderName, HeaderValue, Method, RequestHead, Response, ResponseHead, StatusCode,
};

// Heads are taken from a small per-thread pool and returned after the request, so that a
// request through the pipeline reuses the allocations of an earlier one (the strings' and
// header maps' capacity) instead of allocating them anew.
thread_local! {
    static SPARE_REQUESTS: RefCell<Vec<RequestHead>> = const { RefCell::new(Vec::new()) };
    static SPARE_RESPONSES: RefCell<Vec<ResponseHead>> = const { RefCell::new(Vec::new()) };
}

/// How many spare heads of each kind a thread keeps.
const SPARE_LIMIT: usize = 64;

/// The SDK view of an incoming request (without identity). Give it back with
/// [`recycle_request`].
pub fn request_head(req: &HttpRequest, request_id: &str) -> RequestHead {
    let mut head = SPARE_REQUESTS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| RequestHead::new(Method::GET, "/"));
    head.method = method(req.method());
    replace_str(&mut head.path, req.path());
    replace_str(&mut head.query, req.query_string());
    fill_headers(&mut head.headers, req.headers());
    head.peer_addr = req.peer_addr().map(|a| a.ip());
    replace_str(&mut head.request_id, request_id);
    head.identity = None;
    head
}

/// The SDK view of a response's status and headers. Give it back with [`recycle_response`].
pub fn response_head(
    status_code: actix_web::http::StatusCode,
    headers: &actix_web::http::header::HeaderMap,
) -> ResponseHead {
    let mut head = SPARE_RESPONSES
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| ResponseHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        });
    head.status = status(status_code);
    fill_headers(&mut head.headers, headers);
    head
}

/// Returns a request head to this thread's pool.
pub fn recycle_request(head: RequestHead) {
    SPARE_REQUESTS.with_borrow_mut(|spare| {
        if spare.len() < SPARE_LIMIT {
            spare.push(head);
        }
    });
}

/// Returns a response head to this thread's pool.
pub fn recycle_response(head: ResponseHead) {
    SPARE_RESPONSES.with_borrow_mut(|spare| {
        if spare.len() < SPARE_LIMIT {
            spare.push(head);
        }
    });
}

fn replace_str(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

pub fn method(m: &actix_web::http::Method) -> Method {
    Method::from_bytes(m.as_str().as_bytes()).unwrap_or(Method::GET)
}

/// Makes `out` hold the headers of `src` (keeping `out`'s allocation).
fn fill_headers(out: &mut HeaderMap, src: &actix_web::http::header::HeaderMap) {
    out.clear();
    for (name, value) in src {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(n, v);
        }
    }
}

/// Whether `dst` already holds the headers of `src` (no allocation: the common case, where no
/// hook changed anything, stays cheap).
fn same_headers(src: &HeaderMap, dst: &actix_web::http::header::HeaderMap) -> bool {
    src.len() == dst.len()
        && src.iter().all(|(name, value)| {
            dst.get_all(name.as_str())
                .any(|v| v.as_bytes() == value.as_bytes())
        })
}

/// Makes `dst` hold exactly the headers of `src`, touching only what differs.
pub fn sync_headers(src: &HeaderMap, dst: &mut actix_web::http::header::HeaderMap) {
    use actix_web::http::header::{HeaderName as AName, HeaderValue as AValue};
    if same_headers(src, dst) {
        return;
    }
    let stale: Vec<AName> = dst
        .keys()
        .filter(|k| !src.contains_key(k.as_str()))
        .cloned()
        .collect();
    for k in stale {
        dst.remove(k);
    }
    for name in src.keys() {
        let wanted: Vec<&[u8]> = src
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let current: Vec<&[u8]> = dst.get_all(name.as_str()).map(AValue::as_bytes).collect();
        if wanted == current {
            continue;
        }
        let Ok(aname) = AName::from_bytes(name.as_str().as_bytes()) else {
            continue;
        };
        dst.remove(aname.clone());
        for v in wanted {
            if let Ok(v) = AValue::from_bytes(v) {
                dst.append(aname.clone(), v);
            }
        }
    }
}

pub fn status(s: actix_web::http::StatusCode) -> StatusCode {
    StatusCode::from_u16(s.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub fn actix_status(s: StatusCode) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(s.as_u16())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// An SDK response as an actix response.
pub fn response(res: Response) -> HttpResponse {
    let mut out = HttpResponse::build(actix_status(res.status));
    for (name, value) in &res.headers {
        out.append_header((name.as_str(), value.as_bytes()));
    }
    out.body(res.body)
}
