//! `analytics`: counts page views of the instance's own requests.
//!
//! A `post_request` hook records each request that is not excluded by path prefix into a
//! bounded in-memory queue (never blocking the request; when the queue is full the view is
//! dropped and counted); a background task writes the queue to PostgreSQL in batches with
//! one multi-row INSERT. Query strings and client addresses are never stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use solobase_sdk::prelude::*;
use solobase_sdk::tokio_postgres::types::ToSql;
use tokio::sync::{Mutex, mpsc};

/// Configuration: `config/extensions/analytics.toml`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Requests whose path starts with one of these are not counted.
    pub exclude_prefixes: Vec<String>,
    /// Most page views waiting to be written; more are dropped (and counted).
    pub queue_capacity: usize,
    /// How often the queue is written to the database, in milliseconds.
    pub flush_interval_ms: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            exclude_prefixes: vec!["/api/".into(), "/ext/".into(), "/admin".into()],
            queue_capacity: 65_536,
            flush_interval_ms: 1_000,
        }
    }
}

struct View {
    path: String,
    status: i16,
    at: SystemTime,
}

/// The extension.
pub struct Analytics {
    /// Shared with the background flusher.
    inner: Arc<Inner>,
    queue: mpsc::Sender<View>,
    dropped: AtomicU64,
    flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Analytics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics")
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

struct Inner {
    ctx: InitContext<AnalyticsConfig>,
    receiver: Mutex<mpsc::Receiver<View>>,
    written: AtomicU64,
}

/// Rows per INSERT statement.
const BATCH: usize = 1_000;

impl Inner {
    /// Writes everything queued so far; returns how many views were written.
    async fn flush(&self) -> Result<u64> {
        let mut rx = self.receiver.lock().await;
        let mut total = 0;
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(view) => batch.push(view),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            total += self.insert(&batch).await?;
        }
        self.written.fetch_add(total, Ordering::Relaxed);
        Ok(total)
    }

    async fn insert(&self, batch: &[View]) -> Result<u64> {
        let mut sql = String::from("INSERT INTO page_views (path, status, occurred_at) VALUES ");
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(batch.len() * 3);
        for (i, view) in batch.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3));
            params.extend([&view.path as &(dyn ToSql + Sync), &view.status, &view.at]);
        }
        let client = self.ctx.db.client().await?;
        Ok(client.execute(sql.as_str(), &params).await?)
    }
}

impl Analytics {
    async fn stats(self: Arc<Self>, _req: Request) -> Result<Response> {
        self.inner.flush().await?;
        let client = self.inner.ctx.db.client().await?;
        let total: i64 = client
            .query_one("SELECT count(*) FROM page_views", &[])
            .await?
            .get(0);
        let top = client
            .query(
                "SELECT path, count(*) AS views FROM page_views GROUP BY path \
                 ORDER BY views DESC, path LIMIT 10",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let path: String = r.get(0);
                let views: i64 = r.get(1);
                serde_json::json!({"path": path, "views": views})
            })
            .collect::<Vec<_>>();
        Ok(Response::json(&serde_json::json!({
            "page_views": total,
            "top_pages": top,
            "dropped": self.dropped.load(Ordering::Relaxed),
        })))
    }
}

impl Extension for Analytics {
    type Config = AnalyticsConfig;

    async fn initialize(ctx: InitContext<AnalyticsConfig>) -> Result<Self> {
        let (queue, receiver) = mpsc::channel(ctx.config.get().queue_capacity.max(1));
        Ok(Self {
            inner: Arc::new(Inner {
                ctx,
                receiver: Mutex::new(receiver),
                written: AtomicU64::new(0),
            }),
            queue,
            dropped: AtomicU64::new(0),
            flusher: std::sync::Mutex::new(None),
            stop: tokio::sync::watch::channel(false).0,
        })
    }

    async fn start(&self) -> Result<()> {
        let inner = self.inner.clone();
        let mut stop = self.stop.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let every = inner.ctx.config.get().flush_interval_ms.max(10);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(every)) => {}
                    _ = stop.changed() => return,
                }
                if let Err(e) = inner.flush().await {
                    solobase_sdk::tracing::warn!(error = %e, "cannot write page views");
                }
            }
        });
        *self.flusher.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        let _ = self.stop.send(true);
        let handle = self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        self.inner.flush().await?;
        Ok(())
    }

    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/api/stats", Self::stats)
            .permission("analytics.view");
    }

    fn hooks(&self) -> HookSet {
        HookSet::new().on(HookPoint::PostRequest, 100)
    }

    fn post_request(&self, req: &RequestHead, res: &ResponseHead) -> Hook<'_, ()> {
        // Never waits: the view is queued for the background writer.
        if req.method != Method::GET {
            return ().into();
        }
        let config = self.inner.ctx.config.get();
        if config
            .exclude_prefixes
            .iter()
            .any(|p| req.path.starts_with(p.as_str()))
        {
            return ().into();
        }
        let view = View {
            path: req.path.clone(),
            status: res.status.as_u16() as i16,
            at: SystemTime::now(),
        };
        if self.queue.try_send(view).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ().into()
    }

    async fn health(&self) -> Health {
        if self.queue.capacity() == 0 {
            Health::degraded("the page-view queue is full; views are being dropped")
        } else {
            Health::healthy()
        }
    }

    fn migrations() -> Vec<Migration> {
        vec![Migration {
            version: 1,
            name: "page_views",
            up: include_str!("../migrations/V1__page_views.sql"),
            down: include_str!("../migrations/V1__page_views.down.sql"),
        }]
    }
}

solobase_sdk::export_extension!(Analytics);

#[cfg(test)]
mod tests {
    use solobase_sdk::testing::TestHarness;

    use super::*;

    fn ok() -> ResponseHead {
        ResponseHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        }
    }

    #[tokio::test]
    async fn views_of_excluded_paths_are_not_queued_and_a_full_queue_drops() {
        let config = AnalyticsConfig {
            queue_capacity: 1,
            ..AnalyticsConfig::default()
        };
        let harness = TestHarness::<Analytics>::builder("analytics")
            .config(config)
            .build()
            .await
            .unwrap();
        let ext = harness.ext();
        for path in ["/api/v1/auth/me", "/ext/analytics/api/stats", "/admin/x"] {
            ext.post_request(&RequestHead::new(Method::GET, path), &ok())
                .await;
        }
        ext.post_request(&RequestHead::new(Method::POST, "/form"), &ok())
            .await;
        assert_eq!(
            ext.health().await.status,
            solobase_sdk::HealthStatus::Healthy
        );
        ext.post_request(&RequestHead::new(Method::GET, "/pricing?ref=x"), &ok())
            .await;
        assert_eq!(
            ext.health().await.status,
            solobase_sdk::HealthStatus::Degraded
        );
        ext.post_request(&RequestHead::new(Method::GET, "/about"), &ok())
            .await;
        assert_eq!(ext.dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn stats_need_the_permission() {
        let harness = TestHarness::<Analytics>::builder("analytics")
            .build()
            .await
            .unwrap();
        let user = solobase_sdk::testing::identity("u@example.com", Role::User);
        let res = harness
            .call(Request::new(Method::GET, "/api/stats").with_identity(user))
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        let res = harness.call(Request::new(Method::GET, "/api/stats")).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
}
