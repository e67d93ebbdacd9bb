//! `POST /api/track`: page views and custom events sent by `script.js` from pages of this
//! instance or of the allowed origins, and its CORS preflight. The handler validates and
//! queues; it never waits for the database.

use serde::Deserialize;
use solobase_sdk::http::{HeaderValue, Request, RequestHead, Response, StatusCode, header};
use time::OffsetDateTime;

use crate::config::AnalyticsConfig;
use crate::ingest::{Hit, Kind, Text};
use crate::privacy::{self, Address};

/// What `script.js` sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    /// `pageview`, or a custom event's name.
    name: String,
    /// The page's URL.
    url: String,
    /// `document.referrer`.
    #[serde(default)]
    referrer: Option<String>,
    /// A custom event's properties.
    #[serde(default)]
    props: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A refusal: the response to send instead (boxed: the common `Ok` stays small).
pub type Refusal = Box<Response>;

/// Most properties of one event.
const MAX_PROPS: usize = 20;

fn invalid(message: &str) -> Refusal {
    Box::new(Response::error_with(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        message,
    ))
}

/// Checks the origin; `Err` with the 403 when it is not allowed.
fn origin<'a>(
    req: &'a RequestHead,
    config: &AnalyticsConfig,
) -> std::result::Result<Option<&'a str>, Refusal> {
    let Some(origin) = req.header("origin") else {
        // Not from a browser page (or a same-origin GET): nothing to check.
        return Ok(None);
    };
    let host = req.header("host").unwrap_or_default();
    if config.allows_origin(origin, host) {
        Ok(Some(origin))
    } else {
        Err(Box::new(Response::error_with(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            &format!(
                "pages at {origin} may not send analytics here: add the origin to \
                 allowed_origins in config/extensions/analytics.toml"
            ),
        )))
    }
}

fn with_cors(mut res: Response, origin: Option<&str>) -> Response {
    if let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        res.headers
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        res.headers
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    res
}

/// `OPTIONS /api/track`: the CORS preflight (a `fetch` with `Content-Type: application/json`).
pub fn preflight(req: &Request, config: &AnalyticsConfig) -> Response {
    match origin(&req.head, config) {
        Ok(origin) => with_cors(Response::new(StatusCode::NO_CONTENT), origin)
            .with_header(header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS")
            .with_header(header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type")
            .with_header(header::ACCESS_CONTROL_MAX_AGE, "86400"),
        Err(refused) => *refused,
    }
}

/// `POST /api/track`: the hit to queue, or the response that refuses it. `Ok(None)` when the
/// request is accepted but not tracked (Do-Not-Track).
pub fn accept(
    req: &Request,
    config: &AnalyticsConfig,
) -> std::result::Result<(Option<Hit>, Option<String>), Refusal> {
    let origin = origin(&req.head, config)?.map(str::to_owned);
    if req.body.len() > config.max_track_bytes {
        return Err(Box::new(Response::error_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!(
                "the event is larger than {} bytes (max_track_bytes): send fewer or shorter \
                 properties",
                config.max_track_bytes
            ),
        )));
    }
    let payload: Payload = serde_json::from_slice(&req.body).map_err(|e| {
        invalid(&format!(
            "the body must be JSON {{\"name\", \"url\", \"referrer\", \"props\"}}: {e}"
        ))
    })?;
    let name = payload.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-.:/".contains(c))
    {
        return Err(invalid(
            "name must be 1 to 64 letters, digits, spaces or _ - . : / (\"pageview\" for a page view)",
        ));
    }
    let location = privacy::parse_url(&payload.url)
        .filter(|l| !l.host.is_empty())
        .ok_or_else(|| invalid("url must be the page's absolute http(s) URL"))?;
    let props = match payload.props {
        Some(props) if !props.is_empty() => Some(check_props(props)?),
        _ => None,
    };
    if config.respect_dnt && privacy::do_not_track(&req.head) {
        return Ok((None, origin));
    }
    let kind = if name == "pageview" {
        Kind::PageView { status: None }
    } else {
        Kind::Custom {
            name: name.to_owned(),
            props,
        }
    };
    let hit = Hit {
        at: OffsetDateTime::now_utc(),
        kind,
        site: Text::Owned(location.host),
        path: location.path,
        query: location.query,
        referrer: payload.referrer.map(Text::Owned).unwrap_or_default(),
        user_agent: req
            .head
            .headers
            .get(header::USER_AGENT)
            .cloned()
            .map(Text::Header)
            .unwrap_or_default(),
        address: Address::of(&req.head),
    };
    Ok((Some(hit), origin))
}

fn check_props(
    props: serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<serde_json::Value, Refusal> {
    if props.len() > MAX_PROPS {
        return Err(invalid(&format!("props may have at most {MAX_PROPS} keys")));
    }
    for (key, value) in &props {
        // PostgreSQL's jsonb cannot hold \u0000: one such event would lose its whole batch.
        if key.is_empty() || key.len() > 64 || key.contains('\0') {
            return Err(invalid(
                "a prop's key must be 1 to 64 characters, without \\u0000",
            ));
        }
        let ok = match value {
            serde_json::Value::String(s) => s.len() <= 256 && !s.contains('\0'),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => true,
            _ => false,
        };
        if !ok {
            return Err(invalid(&format!(
                "prop {key:?} must be a string (at most 256 characters, without \\u0000), a \
                 number or a boolean"
            )));
        }
    }
    Ok(serde_json::Value::Object(props))
}

/// The response to an accepted event.
pub fn accepted(origin: Option<&str>) -> Response {
    with_cors(Response::new(StatusCode::ACCEPTED), origin)
}

#[cfg(test)]
mod tests {
    use solobase_sdk::http::Method;

    use super::*;

    fn post(body: &str, headers: &[(&'static str, &'static str)]) -> Request {
        let mut req = Request::new(Method::POST, "/api/track");
        req.body = body.to_owned().into();
        req.head
            .headers
            .insert("host", HeaderValue::from_static("stats.example:8080"));
        for (k, v) in headers {
            req.head.headers.insert(*k, HeaderValue::from_static(v));
        }
        req
    }

    fn status(r: std::result::Result<(Option<Hit>, Option<String>), Refusal>) -> StatusCode {
        r.map(|_| StatusCode::ACCEPTED).unwrap_or_else(|e| e.status)
    }

    #[test]
    fn payloads_origins_and_dnt() {
        let c = AnalyticsConfig::default();
        let good =
            r#"{"name":"signup","url":"https://shop.example/p?x=1","props":{"plan":"pro","n":2}}"#;
        let (hit, origin) = accept(&post(good, &[]), &c).unwrap();
        let hit = hit.unwrap();
        assert!(origin.is_none());
        assert_eq!(hit.site.as_str(), "shop.example");
        assert!(matches!(hit.kind, Kind::Custom { ref name, .. } if name == "signup"));
        for bad in [
            "not json",
            r#"{"name":"x"}"#,
            r#"{"name":"","url":"https://a.example/"}"#,
            r#"{"name":"x","url":"/relative"}"#,
            r#"{"name":"x","url":"https://a.example/","extra":1}"#,
            r#"{"name":"x","url":"https://a.example/","props":{"a":{"nested":1}}}"#,
            r#"{"name":"<script>","url":"https://a.example/"}"#,
        ] {
            assert_eq!(
                status(accept(&post(bad, &[]), &c)),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        let big = format!(
            r#"{{"name":"x","url":"https://a.example/","props":{{"a":"{}"}}}}"#,
            "x".repeat(5000)
        );
        assert_eq!(
            status(accept(&post(&big, &[]), &c)),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // Another origin needs allowing; the instance's own does not.
        let from_elsewhere = post(good, &[("origin", "https://shop.example")]);
        assert_eq!(status(accept(&from_elsewhere, &c)), StatusCode::FORBIDDEN);
        let own = post(good, &[("origin", "http://stats.example:8080")]);
        assert_eq!(status(accept(&own, &c)), StatusCode::ACCEPTED);
        let dnt = post(good, &[("dnt", "1")]);
        assert!(accept(&dnt, &c).unwrap().0.is_none());
    }

    /// Found while writing the `track_payload` fuzz target's property (which now checks it):
    /// jsonb refuses `\u0000`, so an accepted event holding one made its whole batch fail.
    #[test]
    fn props_with_nul_are_refused() {
        let c = AnalyticsConfig::default();
        for body in [
            r#"{"name":"x","url":"https://a.example/","props":{"k":"\u0000"}}"#,
            r#"{"name":"x","url":"https://a.example/","props":{"\u0000":1}}"#,
        ] {
            assert_eq!(
                status(accept(&post(body, &[]), &c)),
                StatusCode::BAD_REQUEST,
                "{body}"
            );
        }
    }
}
