//! The extension's configuration, `config/extensions/analytics.toml`. The host checks it
//! against the derived JSON Schema (ranges included) before the extension sees it.

use serde::Deserialize;

/// Configuration of the analytics extension.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Page views of the instance's own GET requests are counted unless their path starts
    /// with one of these.
    pub exclude_prefixes: Vec<String>,
    /// When not empty, only paths starting with one of these are counted (then the
    /// exclusions apply).
    pub include_prefixes: Vec<String>,
    /// Origins (`https://example.com`) whose pages may send events to `/api/track`; `*` for
    /// any. Empty: only pages of this instance itself.
    pub allowed_origins: Vec<String>,
    /// Ignore requests that send `DNT: 1` or `Sec-GPC: 1`.
    pub respect_dnt: bool,
    /// No longer used, and refused when `true`: the server resolves the client's address
    /// itself, from the proxies the operator trusts (`[server] trusted_proxies` in
    /// `config/solobase.toml`).
    #[serde(deserialize_with = "retired_forwarded_for")]
    pub trust_forwarded_for: bool,
    /// Days that events are kept; older ones are deleted by the purge task.
    #[serde(alias = "retentionDays")]
    #[schemars(range(min = 1, max = 3650))]
    pub retention_days: u32,
    /// How often the purge task runs, in seconds.
    #[schemars(range(min = 1, max = 86400))]
    pub purge_interval_secs: u64,
    /// Most events waiting to be written; more are dropped (and counted in `/api/ingest`).
    #[schemars(range(min = 1, max = 10000000))]
    pub queue_capacity: usize,
    /// Events per write (one COPY): a batch is written when it is this full …
    #[schemars(range(min = 1, max = 100000))]
    pub batch_size: usize,
    /// … or this many milliseconds after its first event arrived.
    #[schemars(range(min = 1, max = 60000))]
    pub flush_interval_ms: u64,
    /// Largest body `/api/track` accepts, in bytes.
    #[schemars(range(min = 64, max = 65536))]
    pub max_track_bytes: usize,
}

/// `trust_forwarded_for = true` is refused with what replaced it.
fn retired_forwarded_for<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    if bool::deserialize(d)? {
        return Err(serde::de::Error::custom(
            "trust_forwarded_for is no longer read: the server resolves each client's address \
             itself from the proxies it trusts; list yours in [server] trusted_proxies in \
             config/solobase.toml and remove this key",
        ));
    }
    Ok(false)
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            exclude_prefixes: vec!["/api/".into(), "/ext/".into(), "/admin".into()],
            include_prefixes: Vec::new(),
            allowed_origins: Vec::new(),
            respect_dnt: true,
            trust_forwarded_for: false,
            retention_days: 395,
            purge_interval_secs: 3600,
            queue_capacity: 65_536,
            batch_size: 5_000,
            flush_interval_ms: 1_000,
            max_track_bytes: 4_096,
        }
    }
}

impl AnalyticsConfig {
    /// Whether a page view of `path` is counted.
    pub fn counts(&self, path: &str) -> bool {
        (self.include_prefixes.is_empty()
            || self
                .include_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str())))
            && !self
                .exclude_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
    }

    /// Whether a page at `origin` may send events (`host` is this instance's own).
    pub fn allows_origin(&self, origin: &str, host: &str) -> bool {
        let own = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        own || self
            .allowed_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retired_forwarded_for_switch_is_refused_with_what_replaced_it() {
        let off: AnalyticsConfig =
            serde_json::from_value(serde_json::json!({"trust_forwarded_for": false})).unwrap();
        assert!(!off.trust_forwarded_for);
        let on = serde_json::from_value::<AnalyticsConfig>(
            serde_json::json!({"trust_forwarded_for": true}),
        )
        .unwrap_err()
        .to_string();
        assert!(on.contains("trusted_proxies"), "{on}");
    }

    #[test]
    fn prefixes_and_origins() {
        let mut c = AnalyticsConfig::default();
        assert!(c.counts("/") && c.counts("/pricing"));
        assert!(!c.counts("/api/v1/x") && !c.counts("/ext/a") && !c.counts("/admin/"));
        c.include_prefixes = vec!["/blog/".into()];
        assert!(c.counts("/blog/a") && !c.counts("/pricing"));

        assert!(c.allows_origin("http://localhost:8080", "localhost:8080"));
        assert!(!c.allows_origin("https://evil.example", "localhost:8080"));
        c.allowed_origins = vec!["https://Example.com/".into()];
        assert!(c.allows_origin("https://example.com", "localhost:8080"));
        assert!(!c.allows_origin("https://example.com.evil", "localhost:8080"));
        c.allowed_origins = vec!["*".into()];
        assert!(c.allows_origin("https://anything.example", "localhost:8080"));
    }

    #[test]
    fn the_schema_bounds_the_retention() {
        let schema = serde_json::to_value(schemars::schema_for!(AnalyticsConfig)).unwrap();
        let days = &schema["properties"]["retention_days"];
        assert_eq!(days["minimum"], 1, "{days}");
        assert_eq!(days["maximum"], 3650, "{days}");
        let c: AnalyticsConfig =
            serde_json::from_value(serde_json::json!({"retentionDays": 30})).unwrap();
        assert_eq!(c.retention_days, 30);
    }
}
