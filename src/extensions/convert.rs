//! Conversions between actix-web's HTTP types and the SDK's (`http` 1.x), kept to one place.

use actix_web::{HttpRequest, HttpResponse};
use solobase_sdk::http::{
    HeaderMap, HeaderName, HeaderValue, Method, RequestHead, Response, StatusCode,
};

/// The SDK view of an incoming request (without identity).
pub fn request_head(req: &HttpRequest, request_id: &str) -> RequestHead {
    RequestHead {
        method: method(req.method()),
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        headers: headers_from_actix(req.headers()),
        peer_addr: req.peer_addr().map(|a| a.ip()),
        request_id: request_id.to_owned(),
        identity: None,
    }
}

pub fn method(m: &actix_web::http::Method) -> Method {
    Method::from_bytes(m.as_str().as_bytes()).unwrap_or(Method::GET)
}

pub fn headers_from_actix(src: &actix_web::http::header::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(src.len());
    for (name, value) in src {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(n, v);
        }
    }
    out
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
