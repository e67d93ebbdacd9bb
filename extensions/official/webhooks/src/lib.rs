//! `webhooks`: durable, signed, retried delivery of system events to HTTP endpoints, by the
//! [Standard Webhooks](https://www.standardwebhooks.com) specification.
//!
//! - [`feed`] turns committed events into delivery rows. "Same transaction" holds end to
//!   end: the host writes an event to its outbox in the transaction of the change it
//!   describes; the feed reads the outbox in order (`ctx.events.read_after`) and inserts a
//!   batch's deliveries in the same transaction that moves its cursor. SIGKILL at any moment
//!   loses nothing: on restart the feed resumes after the last committed cursor.
//! - [`engine`] claims due deliveries (`FOR UPDATE SKIP LOCKED`), sends them signed
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature`), records every attempt, retries
//!   on `retry_schedule_secs` with jitter, and disables endpoints that answer 410 Gone or fail
//!   for `disable_after_failing_secs` (announced as `extension.webhooks.endpoint_disabled`).
//! - Requests leave through the host's `ctx.http` (permission `network.outbound`), which keeps
//!   them off loopback, private, link-local and metadata addresses the operator has not
//!   listed in `[extensions.limits.webhooks] outbound_allow`.
//! - [`api`] is the management API under `/ext/webhooks/api` (administrators, or holders of
//!   `webhooks.manage`), and `/ext/webhooks/` the dashboard.
//!
//! Deliveries live in the extension's own tables rather than in the host's job queue: the
//! workers claim hundreds at a time, keep per-endpoint limits, follow their own retry
//! schedule and record attempts in batches.
//!
//! Outbox retention: the extension never deletes outbox rows (other consumers may need them);
//! its cursor only grows.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use solobase_sdk::prelude::*;
use tokio::sync::watch;

pub mod api;
mod engine;
pub mod feed;
#[cfg(test)]
mod pipeline_tests;
mod retention;

pub use engine::{backoff, message_id};

/// Configuration: `config/extensions/webhooks.toml`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Most endpoints an instance may register.
    pub max_endpoints: u32,
    /// Delays before each attempt, in seconds (the first is the first attempt's); an
    /// attempt's delay gets ±20 % jitter. Its length is the number of attempts.
    #[schemars(length(min = 1, max = 50), inner(range(min = 0, max = 604800)))]
    pub retry_schedule_secs: Vec<f64>,
    /// Time limit of one attempt, in seconds; only a 2xx within it is a success.
    #[schemars(range(min = 1, max = 300))]
    pub timeout_secs: u32,
    /// An endpoint whose deliveries fail this long without a success is disabled.
    pub disable_after_failing_secs: u64,
    /// Requests in flight at once, per instance.
    pub max_concurrency: u32,
    /// Requests in flight at once to one endpoint, per instance.
    pub endpoint_concurrency: u32,
    /// Bytes of a response body that are read and kept; the rest is not read.
    pub response_body_limit: u32,
    /// How often the feed and the workers look for work without being woken, in ms.
    pub poll_interval_ms: u64,
    /// How long the previous secret still signs after a rotation, in seconds (default).
    pub rotation_overlap_secs: u64,
    /// Days a finished delivery (succeeded or failed) is kept with its attempts, counted from
    /// its last attempt (0: for ever). Pending deliveries are never deleted.
    pub retention_days: u32,
    /// Seconds between two looks for finished deliveries past `retention_days`.
    #[schemars(range(min = 1))]
    pub retention_interval_secs: u64,
    /// No longer used, and refused unless empty: the non-public addresses deliveries may
    /// reach are the operator's to list, as `outbound_allow` under
    /// `[extensions.limits.webhooks]` in `config/solobase.toml`.
    #[schemars(length(max = 0))]
    pub allow: Vec<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            max_endpoints: 100,
            retry_schedule_secs: vec![0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
            timeout_secs: 15,
            disable_after_failing_secs: 5 * 24 * 3600,
            max_concurrency: 256,
            endpoint_concurrency: 32,
            response_body_limit: 4096,
            poll_interval_ms: 500,
            rotation_overlap_secs: 24 * 3600,
            retention_days: 30,
            retention_interval_secs: 3600,
            allow: Vec::new(),
        }
    }
}

impl WebhooksConfig {
    /// What the JSON Schema cannot say (the `allow` list's syntax) and, again, what it says.
    /// Public for the fuzz targets, which check that the schema accepts nothing this refuses.
    #[doc(hidden)]
    pub fn check(&self) -> Result<()> {
        if !self.allow.is_empty() {
            return Err(ExtensionError::Config(
                "allow: the addresses deliveries may reach are now the operator's: move the list \
                 to `outbound_allow` under [extensions.limits.webhooks] in config/solobase.toml"
                    .into(),
            ));
        }
        let schedule_ok = !self.retry_schedule_secs.is_empty()
            && self.retry_schedule_secs.len() <= 50
            && self
                .retry_schedule_secs
                .iter()
                .all(|s| s.is_finite() && (0.0..=7.0 * 86400.0).contains(s));
        if !schedule_ok {
            return Err(ExtensionError::Config(
                "retry_schedule_secs: give 1 to 50 delays of 0 to 604800 seconds".into(),
            ));
        }
        if self.retention_interval_secs == 0 {
            return Err(ExtensionError::Config(
                "retention_interval_secs: give at least 1 second (retention_days = 0 keeps \
                 everything)"
                    .into(),
            ));
        }
        if self.timeout_secs == 0 || self.timeout_secs > 300 {
            return Err(ExtensionError::Config(
                "timeout_secs: give 1 to 300 seconds".into(),
            ));
        }
        Ok(())
    }
}

/// The extension.
pub struct Webhooks {
    ctx: InitContext<WebhooksConfig>,
    engine: Arc<engine::Engine>,
    /// Tells its tasks to finish (set by `stop()`, cleared by `start()`).
    stop: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

/// The dashboard page, its script and its style sheet. The page is served under the SDK's
/// strict policy, which runs no inline script or style: they are files of their own.
const DASHBOARD: &str = include_str!("../assets/dashboard.html");
const DASHBOARD_SCRIPT: &str = include_str!("../assets/dashboard.js");
const DASHBOARD_STYLE: &str = include_str!("../assets/dashboard.css");

impl Webhooks {
    async fn dashboard(self: Arc<Self>, _req: Request) -> Result<Response> {
        Ok(Response::html(DASHBOARD))
    }
}

impl Extension for Webhooks {
    type Config = WebhooksConfig;

    async fn initialize(ctx: InitContext<WebhooksConfig>) -> Result<Self> {
        ctx.config.get().check()?;
        let engine = Arc::new(engine::Engine::new(
            ctx.db.clone(),
            ctx.config.clone(),
            ctx.events.clone(),
            ctx.http.clone(),
            &ctx.metrics,
        )?);
        Ok(Self {
            ctx,
            engine,
            stop: Arc::new(watch::channel(false).0),
        })
    }

    /// The feed and the delivery workers run as host tasks: on disable and at shutdown
    /// `stop()` asks them to finish (in-flight sends end and are recorded), and the host waits
    /// for them.
    async fn start(&self) -> Result<()> {
        self.stop.send_replace(false);
        let (engine, stop) = (self.engine.clone(), self.stop.clone());
        self.ctx
            .tasks
            .spawn("feed", move || feed::run(engine.clone(), stop.subscribe()));
        let (engine, stop) = (self.engine.clone(), self.stop.clone());
        self.ctx.tasks.spawn("deliveries", move || {
            engine::run_workers(engine.clone(), stop.subscribe())
        });
        let engine = self.engine.clone();
        self.ctx
            .tasks
            .every("queue", Duration::from_secs(5), move || {
                let engine = engine.clone();
                async move {
                    if let Err(e) = engine.metrics.sample_queue(&engine).await {
                        solobase_sdk::tracing::debug!(error = %e, "cannot read the delivery queue's size");
                    }
                }
            });
        let (engine, every) = (
            self.engine.clone(),
            self.ctx.config.get().retention_interval_secs,
        );
        self.ctx
            .tasks
            .every("retention", Duration::from_secs(every), move || {
                let engine = engine.clone();
                async move {
                    if let Err(e) = retention::run(&engine).await {
                        solobase_sdk::tracing::warn!(error = %e, "cannot delete old deliveries; the next look tries again");
                    }
                }
            });
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        self.stop.send_replace(true);
        Ok(())
    }

    /// Degraded while the feed cannot read events (e.g. `events.subscribe` was revoked):
    /// events then wait in the outbox, and are fanned out once it works again.
    async fn health(&self) -> Health {
        let failure = self
            .engine
            .feed_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match failure {
            None => Health::healthy(),
            Some(e) => Health::degraded(format!("the event feed fails: {e}")),
        }
    }

    fn config_changed(&self, new: &WebhooksConfig) -> Result<()> {
        new.check()
    }

    fn routes(&self, routes: &mut Routes<Self>) {
        // The dashboard holds no data (it fetches it with the token typed in): public.
        routes.get("/", Self::dashboard).public();
        routes
            .get("/dashboard.js", |_: Arc<Self>, _| async {
                Ok(Response::text(
                    "text/javascript; charset=utf-8",
                    DASHBOARD_SCRIPT,
                ))
            })
            .public();
        routes
            .get("/dashboard.css", |_: Arc<Self>, _| async {
                Ok(Response::text("text/css; charset=utf-8", DASHBOARD_STYLE))
            })
            .public();
        api::routes(routes);
    }
}

solobase_sdk::export_extension!(Webhooks);

#[cfg(test)]
mod tests {
    use solobase_sdk::testing::{TestHarness, identity};

    use super::*;

    #[test]
    fn the_dashboard_has_no_inline_code_and_never_parses_data_as_markup() {
        // The page's policy would block inline script, style and event handlers.
        for inline in ["<script>", "<style", "style=", "javascript:"] {
            assert!(!DASHBOARD.contains(inline), "the page holds {inline:?}");
        }
        let handler = DASHBOARD
            .split(|c: char| c.is_whitespace() || c == '<')
            .find(|word| word.starts_with("on") && word.contains('='));
        assert_eq!(handler, None, "an inline event handler");
        assert!(DASHBOARD.contains(r#"src="/ext/webhooks/dashboard.js""#));
        assert!(DASHBOARD.contains(r#"href="/ext/webhooks/dashboard.css""#));
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!DASHBOARD_SCRIPT.contains(sink), "the script uses {sink}");
        }
    }

    #[tokio::test]
    async fn the_dashboard_and_its_files_are_served_under_the_strict_policy() {
        let harness = TestHarness::<Webhooks>::builder("webhooks")
            .build()
            .await
            .unwrap();
        let page = harness.call(Request::new(Method::GET, "/")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(
            page.headers["content-security-policy"],
            solobase_sdk::http::DEFAULT_CONTENT_SECURITY_POLICY
        );
        assert_eq!(page.headers["x-frame-options"], "DENY");
        for (path, content_type) in [
            ("/dashboard.js", "text/javascript; charset=utf-8"),
            ("/dashboard.css", "text/css; charset=utf-8"),
        ] {
            let res = harness.call(Request::new(Method::GET, path)).await;
            assert_eq!(res.status, StatusCode::OK, "{path}");
            assert_eq!(res.headers["content-type"], content_type, "{path}");
        }
    }

    #[tokio::test]
    async fn the_api_needs_the_permission_and_validates_before_storage() {
        let harness = TestHarness::<Webhooks>::builder("webhooks")
            .build()
            .await
            .unwrap();
        let body = serde_json::json!({"url": "ftp://example.com", "event_types": ["user.*"]});
        let user = identity("u@example.com", Role::User);
        let res = harness
            .call(
                Request::new(Method::POST, "/api/endpoints")
                    .with_json(&body)
                    .with_identity(user),
            )
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        let admin = identity("a@example.com", Role::Admin);
        // (Addresses are the host's outbound guard's to judge: tests/api/shipped/webhooks.rs.)
        for bad in [
            body,
            serde_json::json!({"url": "https://example.com", "event_types": ["Nope"]}),
            serde_json::json!({"url": "https://example.com", "event_types": ["*"],
                               "headers": {"webhook-signature": "forged"}}),
        ] {
            let res = harness
                .call(
                    Request::new(Method::POST, "/api/endpoints")
                        .with_json(&bad)
                        .with_identity(admin.clone()),
                )
                .await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        // The dashboard is public; its data is not.
        let res = harness.call(Request::new(Method::GET, "/")).await;
        assert_eq!(res.status, StatusCode::OK);
        let res = harness
            .call(Request::new(Method::GET, "/api/deliveries"))
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_mock_feed_pages_in_order() {
        let harness = TestHarness::<Webhooks>::builder("webhooks")
            .build()
            .await
            .unwrap();
        for i in 0..5 {
            harness.events.record(Event::new(
                solobase_sdk::EventType::USER_LOGIN,
                serde_json::json!({"i": i}),
            ));
        }
        let events = &harness.ext().ctx.events;
        let first = events.read_after(Default::default(), 3).await.unwrap();
        assert_eq!(first.len(), 3);
        let rest = events.read_after(first[2].0, 10).await.unwrap();
        let seen: Vec<_> = first
            .iter()
            .chain(&rest)
            .map(|(_, e)| e.data["i"].clone())
            .collect();
        assert_eq!(
            seen,
            (0..5).map(serde_json::Value::from).collect::<Vec<_>>()
        );
        assert!(events.read_after(Default::default(), 0).await.is_err());
    }

    #[test]
    fn bad_configurations_are_refused_with_the_key() {
        let mut c = WebhooksConfig::default();
        c.check().unwrap();
        c.allow = vec!["127.0.0.1".into()];
        assert!(matches!(c.check(), Err(ExtensionError::Config(m)) if m.starts_with("allow")));
        let mut c = WebhooksConfig {
            retry_schedule_secs: vec![],
            ..Default::default()
        };
        assert!(c.check().is_err());
        c.retry_schedule_secs = vec![f64::NAN];
        assert!(c.check().is_err());
    }
}
