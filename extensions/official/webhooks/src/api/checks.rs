//! What the management API checks in what it is sent: URLs (through the host's outbound guard),
//! headers, event patterns, rates, times, ids.

use base64::Engine as _;
use solobase_sdk::EventType;
use solobase_sdk::prelude::*;
use time::OffsetDateTime;

use solobase_sdk::outbound::{Http, OutboundError};

pub(super) fn bad(message: impl Into<String>) -> ExtensionError {
    ExtensionError::InvalidRequest(message.into())
}

/// Whether `pattern` is an event type or a `prefix.*`/`*` wildcard.
pub fn valid_pattern(pattern: &str) -> bool {
    pattern == "*" || EventType::parse(pattern.strip_suffix(".*").unwrap_or(pattern)).is_some()
}

/// Headers an endpoint may not set: hop-by-hop ones, those the HTTP client owns, and the
/// signature's.
pub(super) fn refused_header(name: &str) -> bool {
    const HOP: [&str; 12] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-type",
    ];
    let lower = name.to_ascii_lowercase();
    HOP.contains(&lower.as_str()) || lower.starts_with("webhook-")
}

pub(super) fn check_headers(headers: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    if headers.len() > 20 {
        return Err(bad("at most 20 custom headers"));
    }
    for (name, value) in headers {
        let Some(value) = value.as_str() else {
            return Err(bad(format!("header {name:?}: the value must be a string")));
        };
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(bad(format!("{name:?} is not a valid header name")));
        }
        if http::HeaderValue::from_str(value).is_err() || value.len() > 4096 {
            return Err(bad(format!(
                "header {name:?}: the value must be visible ASCII, at most 4096 bytes"
            )));
        }
        if refused_header(name) {
            return Err(bad(format!(
                "header {name:?} cannot be set: hop-by-hop, content and webhook-* headers \
                 belong to the delivery"
            )));
        }
    }
    Ok(())
}

/// An endpoint's URL: absolute `http://` or `https://`, at most 2048 characters, and — judged
/// by the host's outbound guard — without credentials and not an address the operator has
/// not allowed (a name is judged when it is resolved, at each delivery).
pub(super) fn check_url_text(url: &str, http: &Http) -> Result<()> {
    let scheme_ok = ["http://", "https://"].iter().any(|p| {
        url.get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    });
    if !scheme_ok || url.len() > 2048 {
        return Err(bad(
            "url must start with https:// or http:// (at most 2048 characters)",
        ));
    }
    http.check(url).map_err(|e| match e {
        OutboundError::Refused(m) | OutboundError::Invalid(m) => bad(format!("url: {m}")),
        other => other.into(),
    })
}

pub(super) fn check_patterns(patterns: &[String]) -> Result<()> {
    if patterns.is_empty() || patterns.len() > 50 || !patterns.iter().all(|p| valid_pattern(p)) {
        return Err(bad(
            "event_types must list 1 to 50 event types or wildcards such as user.* or *",
        ));
    }
    Ok(())
}

pub(super) fn check_rate(rate: Option<i32>) -> Result<()> {
    match rate {
        Some(r) if !(1..=10_000).contains(&r) => Err(bad(
            "rate_limit is requests per second, 1 to 10000 (or null for none)",
        )),
        _ => Ok(()),
    }
}

/// A new `whsec_` secret of 32 random bytes.
pub fn new_secret() -> Result<String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(ExtensionError::internal)?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

pub(super) fn param_id<T: std::str::FromStr>(req: &Request) -> Result<T> {
    req.param("id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("the id in the path is not valid"))
}

pub(super) fn parse_time(field: &str, value: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(|_| {
        bad(format!(
            "{field} must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z"
        ))
    })
}
