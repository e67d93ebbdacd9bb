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
pub(crate) fn request_head(req: &HttpRequest, request_id: &str) -> RequestHead {
    let mut head = SPARE_REQUESTS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| RequestHead::new(Method::GET, "/"));
    head.method = method(req.method());
    replace_str(&mut head.path, req.path());
    replace_str(&mut head.query, req.query_string());
    fill_headers(&mut head.headers, req.headers());
    head.peer_addr = crate::http::client_addr::client_addr(req);
    replace_str(&mut head.request_id, request_id);
    head.identity = None;
    head
}

/// The SDK view of a response's status and headers. Give it back with [`recycle_response`].
pub(crate) fn response_head(
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
pub(crate) fn recycle_request(head: RequestHead) {
    SPARE_REQUESTS.with_borrow_mut(|spare| {
        if spare.len() < SPARE_LIMIT {
            spare.push(head);
        }
    });
}

/// Returns a response head to this thread's pool.
pub(crate) fn recycle_response(head: ResponseHead) {
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

pub(crate) fn method(m: &actix_web::http::Method) -> Method {
    Method::from_bytes(m.as_str().as_bytes()).unwrap_or(Method::GET)
}

/// Makes `out` hold the headers of `src`, keeping `out`'s allocations. A pooled head whose
/// headers already equal `src` (clients tend to send the same headers again and again) is
/// left as it is: no copy at all.
fn fill_headers(out: &mut HeaderMap, src: &actix_web::http::header::HeaderMap) {
    if same_headers(out, src) {
        return;
    }
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

/// Whether `dst` already holds the headers of `src`. `src` was filled from `dst` in `dst`'s
/// iteration order, so when no hook changed anything both iterate alike: a pairwise
/// comparison without hashing or allocation. Any other order merely takes the slower path.
fn same_headers(src: &HeaderMap, dst: &actix_web::http::header::HeaderMap) -> bool {
    // One pass (actix's `len` would walk the map once more).
    let (mut a, mut b) = (src.iter(), dst.iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some((n1, v1)), Some((n2, v2)))
                if n1.as_str() == n2.as_str() && v1.as_bytes() == v2.as_bytes() => {}
            _ => return false,
        }
    }
}

/// Makes `dst` hold exactly the headers of `src`, touching only what differs.
pub(crate) fn sync_headers(src: &HeaderMap, dst: &mut actix_web::http::header::HeaderMap) {
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

pub(crate) fn status(s: actix_web::http::StatusCode) -> StatusCode {
    StatusCode::from_u16(s.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn actix_status(s: StatusCode) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(s.as_u16())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// An SDK response as an actix response.
pub(crate) fn response(res: Response) -> HttpResponse {
    use actix_web::http::header::{HeaderName as AName, HeaderValue as AValue};
    let mut out = HttpResponse::with_body(
        actix_status(res.status),
        actix_web::body::BoxBody::new(res.body),
    );
    let headers = out.headers_mut();
    for (name, value) in &res.headers {
        // Both are valid already (the SDK's types): these conversions do not fail.
        if let (Ok(n), Ok(v)) = (
            AName::from_bytes(name.as_str().as_bytes()),
            AValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderMap as AMap, HeaderName as AName, HeaderValue as AValue};

    use super::*;

    fn actix_map(pairs: &[(&'static str, &'static str)]) -> AMap {
        let mut map = AMap::new();
        for (n, v) in pairs {
            map.append(AName::from_static(n), AValue::from_static(v));
        }
        map
    }

    fn pairs(map: &AMap) -> Vec<(String, String)> {
        let mut out: Vec<_> = map
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn unchanged_heads_compare_equal_and_changes_are_written_back() {
        let original = [
            ("host", "a"),
            ("accept", "x"),
            ("cookie", "1"),
            ("cookie", "2"),
            ("x-custom", "v"),
        ];
        let mut dst = actix_map(&original);
        let mut head = HeaderMap::new();
        fill_headers(&mut head, &dst);
        assert!(same_headers(&head, &dst));

        // A changed value, a removed header, an added one and a second value.
        head.insert("accept", HeaderValue::from_static("y"));
        head.remove("x-custom");
        head.insert("x-new", HeaderValue::from_static("n"));
        head.append("host", HeaderValue::from_static("b"));
        assert!(!same_headers(&head, &dst));
        sync_headers(&head, &mut dst);
        let want = [
            ("accept", "y"),
            ("cookie", "1"),
            ("cookie", "2"),
            ("host", "a"),
            ("host", "b"),
            ("x-new", "n"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs(&dst), want);

        // Refilling a pooled map leaves nothing of its earlier contents.
        fill_headers(&mut head, &actix_map(&[("host", "c")]));
        assert_eq!(head.len(), 1);
        assert_eq!(head["host"], "c");
    }

    #[test]
    fn pooled_request_heads_carry_nothing_over() {
        let first = actix_web::test::TestRequest::get()
            .uri("/one?a=1")
            .insert_header(("x-first", "1"))
            .to_http_request();
        let mut head = request_head(&first, "id-1");
        head.identity = Some(solobase_sdk::Identity {
            user_id: uuid::Uuid::nil(),
            email: "a@example.com".into(),
            role: solobase_sdk::Role::Admin,
        });
        recycle_request(head);
        let second = actix_web::test::TestRequest::post()
            .uri("/two")
            .to_http_request();
        let head = request_head(&second, "id-2");
        assert_eq!(head.method, Method::POST);
        assert_eq!((head.path.as_str(), head.query.as_str()), ("/two", ""));
        assert_eq!(head.request_id, "id-2");
        assert!(head.identity.is_none());
        assert!(!head.headers.contains_key("x-first"));
    }
}
