//! `analytics`: privacy-friendly analytics of the instance and of the sites that embed its
//! tracker — page views and custom events, sessions, a stats API and a dashboard.
//!
//! - Collection: the `post_request` hook ([`capture_page_view`]) and `POST /api/track`
//!   ([`track`]) capture hits into the bounded queue of [`ingest::Pipeline`] without waiting;
//!   its flusher hashes, reduces and writes them in batches with `COPY`.
//! - Privacy ([`privacy`]): no cookies, no stored address, a visitor id from a daily salt.
//! - Queries ([`stats`]) and the dashboard ([`dashboard`]); the purge task keeps
//!   `retention_days`.

pub mod config;
pub mod dashboard;
pub mod ingest;
#[cfg(test)]
mod pipeline_tests;
pub mod privacy;
pub mod stats;
pub mod track;
pub mod ua;

use std::sync::Arc;
use std::time::Duration;

use solobase_sdk::Database;
use solobase_sdk::prelude::*;
use solobase_sdk::tracing;
use time::OffsetDateTime;
use tokio::sync::watch;

pub use crate::config::AnalyticsConfig;
use crate::ingest::{Hit, Kind, Pipeline, Text};
use crate::stats::Params;

/// The tracking script, served at `/ext/analytics/script.js`.
pub const SCRIPT: &str = include_str!("../assets/script.js");

/// The extension.
pub struct Analytics {
    ctx: InitContext<AnalyticsConfig>,
    /// Shared with the flusher task.
    pipeline: Arc<Pipeline>,
    /// Tells its tasks to finish (set by `stop()`, cleared by `start()`).
    stop: Arc<watch::Sender<bool>>,
    /// Statistics queries at once: one fewer than the extension's database connections, so
    /// that however many dashboards ask, the flusher always finds a connection soon.
    queries: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Analytics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics")
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

/// The hit for a page view of the instance's own `req` answered with `status`, or `None`
/// when it is not counted (not a GET, an error status, an excluded path, Do-Not-Track).
/// Copies the path (and query, when there is one); shares the header values; no I/O.
pub fn capture_page_view(
    req: &RequestHead,
    status: StatusCode,
    config: &AnalyticsConfig,
) -> Option<Hit> {
    if req.method != Method::GET
        || status.as_u16() >= 400
        || !config.counts(&req.path)
        || (config.respect_dnt && privacy::do_not_track(req))
    {
        return None;
    }
    let header = |name| {
        req.headers
            .get(name)
            .cloned()
            .map(Text::Header)
            .unwrap_or_default()
    };
    Some(Hit {
        at: OffsetDateTime::now_utc(),
        kind: Kind::PageView {
            status: Some(status.as_u16() as i16),
        },
        site: header(solobase_sdk::http::header::HOST),
        path: req.path.clone(),
        query: if req.query.is_empty() {
            String::new()
        } else {
            req.query.clone()
        },
        referrer: header(solobase_sdk::http::header::REFERER),
        user_agent: header(solobase_sdk::http::header::USER_AGENT),
        address: privacy::Address::of(req),
    })
}

/// Deletes events older than `days` days and salts older than yesterday; one instance at a
/// time (an advisory lock). Returns the events deleted, `None` when another instance was
/// purging.
pub async fn purge(db: &Database, days: u32) -> Result<Option<u64>> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock(hashtext('solobase.analytics.purge'))",
            &[],
        )
        .await?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let deleted = tx
        .execute(
            "DELETE FROM events WHERE occurred_at < now() - make_interval(days => $1)",
            &[&(days as i32)],
        )
        .await?;
    tx.execute("DELETE FROM salts WHERE day < current_date - 1", &[])
        .await?;
    tx.commit().await?;
    Ok(Some(deleted))
}

/// A page under the SDK's strict policy, revalidated at every load.
fn html(body: impl Into<solobase_sdk::bytes::Bytes>) -> Response {
    Response::html(body).with_header(solobase_sdk::http::header::CACHE_CONTROL, "no-cache")
}

fn asset(content_type: &'static str, body: &'static str, cache: &str) -> Response {
    Response::text(content_type, body)
        .with_header(
            solobase_sdk::http::header::X_CONTENT_TYPE_OPTIONS,
            "nosniff",
        )
        .with_header(solobase_sdk::http::header::CACHE_CONTROL, cache)
}

impl Analytics {
    /// `post_request`: never waits — the view is queued for the flusher (or dropped and
    /// counted).
    fn capture(&self, req: &RequestHead, res: &ResponseHead) -> Hook<'_, ()> {
        if let Some(hit) = capture_page_view(req, res.status, &self.ctx.config.get()) {
            self.pipeline.offer(hit);
        }
        ().into()
    }

    fn params(&self, req: &Request, extra: &[&str]) -> Result<Params> {
        Params::parse(&req.head.query, extra, OffsetDateTime::now_utc())
    }

    async fn track(self: Arc<Self>, req: Request) -> Result<Response> {
        let config = self.ctx.config.get();
        Ok(match track::accept(&req, &config) {
            Ok((hit, origin)) => {
                if let Some(hit) = hit {
                    self.pipeline.offer(hit);
                }
                track::accepted(origin.as_deref())
            }
            Err(refused) => *refused,
        })
    }

    async fn preflight(self: Arc<Self>, req: Request) -> Result<Response> {
        Ok(track::preflight(&req, &self.ctx.config.get()))
    }

    /// Waits for a turn to query the statistics (see `queries`).
    async fn query_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.queries
            .acquire()
            .await
            .map_err(|_| ExtensionError::Unavailable("the extension is stopping".into()))
    }

    async fn summary(self: Arc<Self>, req: Request) -> Result<Response> {
        let p = self.params(&req, &[])?;
        let _slot = self.query_slot().await?;
        Ok(Response::json(&stats::summary(&self.ctx.db, &p).await?))
    }

    async fn timeseries(self: Arc<Self>, req: Request) -> Result<Response> {
        let p = self.params(&req, &["interval"])?;
        let _slot = self.query_slot().await?;
        Ok(Response::json(&stats::timeseries(&self.ctx.db, &p).await?))
    }

    async fn breakdown(self: Arc<Self>, req: Request) -> Result<Response> {
        let p = self.params(&req, &["by", "limit"])?;
        let _slot = self.query_slot().await?;
        Ok(Response::json(&stats::breakdown(&self.ctx.db, &p).await?))
    }

    async fn events(self: Arc<Self>, req: Request) -> Result<Response> {
        let p = self.params(&req, &["property", "limit"])?;
        let _slot = self.query_slot().await?;
        Ok(Response::json(&stats::events(&self.ctx.db, &p).await?))
    }

    async fn realtime(self: Arc<Self>, req: Request) -> Result<Response> {
        let p = self.params(&req, &[])?;
        let site = p
            .filters
            .iter()
            .find(|(c, _)| *c == stats::Column::Site)
            .map(|(_, v)| v.as_str());
        let _slot = self.query_slot().await?;
        let visitors = stats::realtime(&self.ctx.db, site).await?;
        Ok(Response::json(&serde_json::json!({ "visitors": visitors })))
    }

    async fn ingest(self: Arc<Self>, _req: Request) -> Result<Response> {
        let c = &self.pipeline.counters;
        Ok(Response::json(&serde_json::json!({
            "queued": self.pipeline.queued(),
            "capacity": self.pipeline.capacity(),
            "accepted": c.accepted.get(),
            "dropped": c.dropped.get(),
            "bots": c.bots.get(),
            "written": c.written.get(),
            "failed": c.failed.get(),
        })))
    }

    async fn purge_now(self: Arc<Self>, _req: Request) -> Result<Response> {
        let days = self.ctx.config.get().retention_days;
        let deleted = purge(&self.ctx.db, days).await?;
        Ok(Response::json(
            &serde_json::json!({ "deleted": deleted, "retention_days": days }),
        ))
    }

    async fn report(self: Arc<Self>, req: Request) -> Result<Response> {
        let mut p = self.params(&req, &[])?;
        let db = &self.ctx.db;
        let _slot = self.query_slot().await?;
        if p.to - p.from <= time::Duration::days(2) {
            p.interval = stats::Interval::Hour;
        }
        let mut lists = Vec::new();
        for (title, by) in [
            ("Top pages", stats::Column::Page),
            ("Referrers", stats::Column::Referrer),
            ("UTM sources", stats::Column::UtmSource),
            ("Browsers", stats::Column::Browser),
            ("Devices", stats::Column::Device),
            ("Operating systems", stats::Column::Os),
        ] {
            p.by = by;
            lists.push((title, stats::breakdown(db, &p).await?));
        }
        lists.push((dashboard::EVENTS, stats::events(db, &p).await?));
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
        let report = dashboard::Report {
            range: format!(
                "{} – {} UTC",
                p.from.format(&format).unwrap_or_default(),
                p.to.format(&format).unwrap_or_default()
            ),
            summary: stats::summary(db, &p).await?,
            realtime: stats::realtime(db, None).await?,
            series: stats::timeseries(db, &p).await?,
            lists,
        };
        Ok(Response::html(dashboard::render(&report)))
    }
}

impl Extension for Analytics {
    type Config = AnalyticsConfig;

    async fn initialize(ctx: InitContext<AnalyticsConfig>) -> Result<Self> {
        let capacity = ctx.config.get().queue_capacity;
        let slots = ctx.db.pool().status().max_size.saturating_sub(1).max(1);
        let pipeline = Arc::new(Pipeline::new(capacity, &ctx.metrics)?);
        Ok(Self {
            queries: tokio::sync::Semaphore::new(slots),
            ctx,
            pipeline,
            stop: Arc::new(watch::channel(false).0),
        })
    }

    /// Its flusher and its purge run as host tasks: on disable and at shutdown `stop()` asks
    /// the flusher to write what is queued, and the host waits for it.
    async fn start(&self) -> Result<()> {
        self.stop.send_replace(false);
        let (pipeline, db, config, stop) = (
            self.pipeline.clone(),
            self.ctx.db.clone(),
            self.ctx.config.clone(),
            self.stop.clone(),
        );
        self.ctx.tasks.spawn("flusher", move || {
            let (pipeline, db, config) = (pipeline.clone(), db.clone(), config.clone());
            let stop = stop.subscribe();
            async move { pipeline.run(&db, &config, stop).await }
        });
        let (db, config, stop) = (
            self.ctx.db.clone(),
            self.ctx.config.clone(),
            self.stop.clone(),
        );
        self.ctx.tasks.spawn("purge", move || {
            let (db, config) = (db.clone(), config.clone());
            let mut stop = stop.subscribe();
            async move {
                loop {
                    let c = config.get();
                    match purge(&db, c.retention_days).await {
                        Ok(Some(n)) if n > 0 => tracing::info!(deleted = n, "purged old events"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot purge old events"),
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(c.purge_interval_secs.max(1))) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        });
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        self.stop.send_replace(true);
        Ok(())
    }

    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/script.js", |_: Arc<Self>, _| async {
                Ok(asset(
                    "text/javascript; charset=utf-8",
                    SCRIPT,
                    "public, max-age=3600",
                ))
            })
            .public();
        routes
            .get("/dashboard", |_: Arc<Self>, _| async {
                Ok(html(dashboard::PAGE))
            })
            .public();
        routes
            .get("/dashboard.js", |_: Arc<Self>, _| async {
                Ok(asset(
                    "text/javascript; charset=utf-8",
                    dashboard::SCRIPT,
                    "no-cache",
                ))
            })
            .public();
        routes
            .get("/dashboard.css", |_: Arc<Self>, _| async {
                Ok(asset(
                    "text/css; charset=utf-8",
                    dashboard::STYLE,
                    "no-cache",
                ))
            })
            .public();
        routes.post("/api/track", Self::track).public();
        routes
            .route(Method::OPTIONS, "/api/track", Self::preflight)
            .public();
        routes
            .get("/api/stats/summary", Self::summary)
            .permission("analytics.view");
        routes
            .get("/api/stats/timeseries", Self::timeseries)
            .permission("analytics.view");
        routes
            .get("/api/stats/breakdown", Self::breakdown)
            .permission("analytics.view");
        routes
            .get("/api/stats/events", Self::events)
            .permission("analytics.view");
        routes
            .get("/api/stats/realtime", Self::realtime)
            .permission("analytics.view");
        routes
            .get("/api/ingest", Self::ingest)
            .permission("analytics.view");
        routes
            .get("/api/report", Self::report)
            .permission("analytics.view");
        routes.post("/api/purge", Self::purge_now).admin();
    }

    fn hooks(&self, hooks: &mut Hooks<Self>) {
        hooks.post_request(100, Self::capture);
    }

    async fn health(&self) -> Health {
        let c = &self.pipeline.counters;
        if self.pipeline.queued() >= self.pipeline.capacity() {
            Health::degraded("the event queue is full; events are being dropped")
        } else if c.failed.get() > 0 && c.written.get() == 0 {
            Health::degraded("events cannot be written to the database")
        } else {
            Health::healthy()
        }
    }
}

solobase_sdk::export_extension!(Analytics);

#[cfg(test)]
mod tests {
    use solobase_sdk::testing::TestHarness;

    use super::*;

    fn head(method: Method, path: &str) -> RequestHead {
        let mut req = RequestHead::new(method, path);
        req.headers.insert(
            "user-agent",
            HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Firefox/121.0"),
        );
        req
    }

    #[test]
    fn only_counted_page_views_are_captured() {
        let c = AnalyticsConfig::default();
        for path in ["/api/v1/auth/me", "/ext/analytics/api/stats", "/admin/x"] {
            assert!(capture_page_view(&head(Method::GET, path), StatusCode::OK, &c).is_none());
        }
        assert!(capture_page_view(&head(Method::POST, "/form"), StatusCode::OK, &c).is_none());
        assert!(capture_page_view(&head(Method::GET, "/x"), StatusCode::NOT_FOUND, &c).is_none());
        let mut dnt = head(Method::GET, "/about");
        dnt.headers.insert("dnt", HeaderValue::from_static("1"));
        assert!(capture_page_view(&dnt, StatusCode::OK, &c).is_none());
        let without = AnalyticsConfig {
            respect_dnt: false,
            ..AnalyticsConfig::default()
        };
        assert!(capture_page_view(&dnt, StatusCode::OK, &without).is_some());
        let hit =
            capture_page_view(&head(Method::GET, "/pricing?ref=x"), StatusCode::OK, &c).unwrap();
        assert_eq!(
            (hit.path.as_str(), hit.query.as_str()),
            ("/pricing", "ref=x")
        );
    }

    #[tokio::test]
    async fn stats_need_the_permission() {
        let harness = TestHarness::<Analytics>::builder("analytics")
            .build()
            .await
            .unwrap();
        let user = solobase_sdk::testing::identity("u@example.com", Role::User);
        let res = harness
            .call(Request::new(Method::GET, "/api/stats/summary").with_identity(user))
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        let res = harness
            .call(Request::new(Method::GET, "/api/stats/summary"))
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        let res = harness.call(Request::new(Method::GET, "/script.js")).await;
        assert_eq!(res.status, StatusCode::OK);
    }
}
