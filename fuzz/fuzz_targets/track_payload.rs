//! The analytics tracking endpoint (`track::accept`): a hostile body and headers (origin,
//! host, DNT, user agent, forwarded address) against two configurations, then what the
//! flusher makes of an accepted event (`ingest::stored_values`: URL reduction, referrer,
//! `utm_*`, user-agent classes). Accepted events keep the documented limits, every size is
//! bounded, and nothing in a row is something PostgreSQL refuses (one such row would lose its
//! whole batch).
#![no_main]

use libfuzzer_sys::fuzz_target;
use solobase_ext_analytics::config::AnalyticsConfig;
use solobase_ext_analytics::ingest::{self, Kind};
use solobase_ext_analytics::track;
use solobase_sdk::Request;
use solobase_sdk::http::{HeaderValue, Method, StatusCode};

const HEADERS: [&str; 6] = [
    "origin",
    "host",
    "dnt",
    "user-agent",
    "x-forwarded-for",
    "sec-gpc",
];

fuzz_target!(|data: &[u8]| {
    // Header values, one per line, in the order of HEADERS, until an empty line; then the body.
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&b""[..], data),
    };
    let mut req = Request::new(Method::POST, "/api/track");
    req.body = body.to_vec().into();
    req.head.peer_addr = Some([203, 0, 113, 7].into());
    for (name, value) in HEADERS.iter().zip(head.split(|&b| b == b'\n')) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            req.head.headers.insert(*name, value);
        }
    }
    let open = AnalyticsConfig {
        allowed_origins: vec!["*".into()],
        respect_dnt: false,
        max_track_bytes: 65_536,
        ..AnalyticsConfig::default()
    };
    for config in [AnalyticsConfig::default(), open] {
        check(&req, &config);
    }
});

fn check(req: &Request, config: &AnalyticsConfig) {
    let _ = track::preflight(req, config);
    let (hit, _origin) = match track::accept(req, config) {
        Ok(accepted) => accepted,
        Err(refusal) => {
            assert!(
                [
                    StatusCode::BAD_REQUEST,
                    StatusCode::FORBIDDEN,
                    StatusCode::PAYLOAD_TOO_LARGE
                ]
                .contains(&refusal.status),
                "{}",
                refusal.status
            );
            assert!(!refusal.body.is_empty(), "a refusal says why");
            return;
        }
    };
    assert!(req.body.len() <= config.max_track_bytes);
    let Some(hit) = hit else {
        return; // Do-Not-Track: accepted, not kept.
    };
    // The documented limits.
    match &hit.kind {
        Kind::PageView { status } => assert!(status.is_none()),
        Kind::Custom { name, props } => {
            assert!(
                (1..=64).contains(&name.len()) && name != "pageview",
                "{name:?}"
            );
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || " _-.:/".contains(c)),
                "{name:?}"
            );
            if let Some(props) = props {
                let props = props.as_object().expect("props are an object");
                assert!((1..=20).contains(&props.len()));
                for (key, value) in props {
                    assert!((1..=64).contains(&key.len()));
                    match value {
                        serde_json::Value::String(s) => assert!(s.len() <= 256),
                        v => assert!(v.is_number() || v.is_boolean(), "{v}"),
                    }
                }
            }
        }
    }
    assert!(
        hit.path.starts_with('/') && hit.path.len() <= 2048,
        "{:?}",
        hit.path
    );
    assert!(!hit.path.contains(['?', '#']), "{:?}", hit.path);
    assert!(!hit.site.as_str().is_empty() && hit.site.as_str().len() <= 2048);

    // The row the flusher writes.
    let Some((texts, props)) = ingest::stored_values(&hit) else {
        return; // A bot: dropped.
    };
    for text in &texts {
        assert!(text.len() <= 2048, "a stored text of {} bytes", text.len());
        assert!(
            !text.contains('\0'),
            "PostgreSQL text cannot hold NUL: {text:?}"
        );
    }
    if let Some(props) = props {
        // jsonb refuses \u0000 in keys and strings.
        assert!(!props.to_string().contains("\\u0000"), "{props}");
    }
}
