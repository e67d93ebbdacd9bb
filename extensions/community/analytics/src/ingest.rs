//! Ingestion: a bounded queue between the requests that are tracked and PostgreSQL.
//!
//! The request side ([`Pipeline::offer`]) does no I/O and never waits: it captures what it
//! has (a [`Hit`]) and `try_send`s it; when the queue is full the hit is dropped and counted.
//! One flusher task ([`Pipeline::run`]) takes hits in batches — written when a batch is
//! `batch_size` full or `flush_interval_ms` after its first hit — and does the rest off the
//! request path: drops bots, classifies the user agent, hashes the visitor with the day's
//! salt, reduces URLs and referrers, and writes the batch with one binary `COPY`.

use std::collections::HashMap;
use std::time::Duration;

use solobase_sdk::bytes::Bytes;
use solobase_sdk::http::HeaderValue;
use solobase_sdk::metrics::{Counter, Gauge, Metrics};
use solobase_sdk::services::{ConfigHandle, Database};
use solobase_sdk::tokio_postgres::binary_copy::BinaryCopyInWriter;
use solobase_sdk::tokio_postgres::types::{ToSql, Type};
use solobase_sdk::{ExtensionError, Result, tracing};
use time::{Date, OffsetDateTime};
use tokio::sync::{Mutex, mpsc, watch};

use crate::config::AnalyticsConfig;
use crate::privacy::{self, Address, Salt};
use crate::ua;

/// Text a hit carries: a header value shared with the request (no copy), or owned text.
#[derive(Debug, Clone, Default)]
pub enum Text {
    /// Nothing was sent.
    #[default]
    None,
    /// A header's value.
    Header(HeaderValue),
    /// Text from a request body.
    Owned(String),
}

impl Text {
    /// The text, `""` when none or not UTF-8.
    pub fn as_str(&self) -> &str {
        match self {
            Self::None => "",
            Self::Header(v) => v.to_str().unwrap_or_default(),
            Self::Owned(s) => s,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::None => b"",
            Self::Header(v) => v.as_bytes(),
            Self::Owned(s) => s.as_bytes(),
        }
    }
}

/// What happened: a page view, or a custom event.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A page view; the response status when the instance served the page itself.
    PageView {
        /// The status of the instance's own response, `None` for tracked pages elsewhere.
        status: Option<i16>,
    },
    /// A custom event sent by `solobase.track(name, props)`.
    Custom {
        /// The event's name.
        name: String,
        /// Its properties: a flat JSON object of strings, numbers and booleans.
        props: Option<serde_json::Value>,
    },
}

/// One tracked hit as captured on the request path: raw, not yet hashed or reduced. Lives in
/// the queue for at most a flush interval (plus a write).
#[derive(Debug, Clone)]
pub struct Hit {
    /// When it happened (the server's clock).
    pub at: OffsetDateTime,
    /// Page view or custom event.
    pub kind: Kind,
    /// The site's host (a `Host` header, or the host of the tracked URL).
    pub site: Text,
    /// The path, without query or fragment.
    pub path: String,
    /// The query string as sent (reduced to `utm_*` and `ref` by the flusher).
    pub query: String,
    /// The referrer URL.
    pub referrer: Text,
    /// The user agent.
    pub user_agent: Text,
    /// The client's address: hashed, never stored.
    pub address: Address,
}

/// The ingestion counters, as `/api/ingest` shows them and `/metrics` exports them
/// (`solobase_ext_analytics_events_total{fate}`, `solobase_ext_analytics_queue_depth`).
#[derive(Debug)]
pub struct Counters {
    /// Hits queued.
    pub accepted: Counter,
    /// Hits dropped because the queue was full.
    pub dropped: Counter,
    /// Hits dropped as bots.
    pub bots: Counter,
    /// Events written to the database.
    pub written: Counter,
    /// Events lost because their batch could not be written (after retries).
    pub failed: Counter,
    /// Hits waiting in the queue, as the flusher last saw it.
    pub queue_depth: Gauge,
}

impl Counters {
    /// The counters, registered with `metrics`.
    pub fn new(metrics: &Metrics) -> Result<Self> {
        let fates = metrics.counter_vec(
            "events",
            "Tracking events, by fate: accepted (queued), dropped (queue full), bots, written, \
             failed (could not be written)",
            "fate",
            &["accepted", "dropped", "bots", "written", "failed"],
        )?;
        Ok(Self {
            accepted: fates.with("accepted").clone(),
            dropped: fates.with("dropped").clone(),
            bots: fates.with("bots").clone(),
            written: fates.with("written").clone(),
            failed: fates.with("failed").clone(),
            queue_depth: metrics.gauge("queue_depth", "Tracking events waiting to be written")?,
        })
    }
}

/// How often the flusher looks at the queue while it fills a batch.
const POLL: Duration = Duration::from_millis(5);
/// Attempts after the first to write a batch that PostgreSQL refused, or any batch once the
/// extension is stopping; the n-th comes n × `RETRY_DELAY` after the one before, at most
/// `MAX_RETRY_DELAY`.
const WRITE_RETRIES: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Whether writing may succeed later unchanged: no connection free in time, a connection
/// lost, the server shutting down or out of resources. A refusal of the data itself (a
/// constraint, a value PostgreSQL cannot hold) is not.
fn transient(e: &ExtensionError) -> bool {
    match e {
        ExtensionError::Unavailable(_) => true,
        ExtensionError::Database(e) => e.code().is_none_or(|state| {
            // 08 connection exception, 40 rollback, 53 insufficient resources,
            // 57 operator intervention (admin shutdown, cancel), 58 system error.
            matches!(&state.code()[..2], "08" | "40" | "53" | "57" | "58")
        }),
        _ => false,
    }
}

/// The queue and its flusher.
#[derive(Debug)]
pub struct Pipeline {
    tx: mpsc::Sender<Hit>,
    /// Taken by the one running flusher.
    rx: Mutex<mpsc::Receiver<Hit>>,
    capacity: usize,
    /// What came in and went out.
    pub counters: Counters,
}

impl Pipeline {
    /// A pipeline whose queue holds at most `capacity` hits, counted in `metrics`.
    pub fn new(capacity: usize, metrics: &Metrics) -> Result<Self> {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        Ok(Self {
            tx,
            rx: Mutex::new(rx),
            capacity,
            counters: Counters::new(metrics)?,
        })
    }

    /// Queues `hit` without waiting; false (and counted) when the queue is full.
    pub fn offer(&self, hit: Hit) -> bool {
        if self.tx.try_send(hit).is_ok() {
            self.counters.accepted.increment(1);
            true
        } else {
            self.counters.dropped.increment(1);
            false
        }
    }

    /// Hits waiting in the queue.
    pub fn queued(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The flusher: writes batches until `stop` changes, then writes what is left and
    /// returns. A batch that cannot be written is logged and counted as failed.
    pub async fn run(
        &self,
        db: &Database,
        config: &ConfigHandle<AnalyticsConfig>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut rx = self.rx.lock().await;
        let mut salts = Salts::default();
        let mut batch = Vec::new();
        loop {
            let (size, every) = {
                let c = config.get();
                (
                    c.batch_size.max(1),
                    Duration::from_millis(c.flush_interval_ms),
                )
            };
            self.counters.queue_depth.set(self.queued() as f64);
            batch.clear();
            let mut stopping = tokio::select! {
                n = rx.recv_many(&mut batch, size) => n == 0,
                _ = stop.changed() => true,
            };
            // Fill the batch by looking at the queue every few milliseconds rather than
            // waiting on it: a waiting receiver is woken by every event sent, which costs the
            // request path a cross-thread wake-up each.
            let deadline = tokio::time::Instant::now() + every;
            while !stopping && batch.len() < size {
                let room = size - batch.len();
                let now = tokio::time::Instant::now();
                if rx.len() >= room || (now >= deadline && !rx.is_empty()) {
                    rx.recv_many(&mut batch, room).await;
                    continue;
                }
                if now >= deadline {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(deadline.min(now + POLL)) => {}
                    _ = stop.changed() => stopping = true,
                }
            }
            self.write(db, &mut salts, &batch, &stop).await;
            if stopping {
                // Whatever is still queued goes out before the task ends.
                loop {
                    batch.clear();
                    while batch.len() < size {
                        match rx.try_recv() {
                            Ok(hit) => batch.push(hit),
                            Err(_) => break,
                        }
                    }
                    if batch.is_empty() {
                        return;
                    }
                    self.write(db, &mut salts, &batch, &stop).await;
                }
            }
        }
    }

    async fn write(
        &self,
        db: &Database,
        salts: &mut Salts,
        batch: &[Hit],
        stop: &watch::Receiver<bool>,
    ) {
        if batch.is_empty() {
            return;
        }
        // The hits were accepted (202): a transient failure (the extension's connections all
        // busy past the pool's wait, a restarting database) is retried for as long as the
        // extension runs, with a growing pause. New hits wait in the bounded queue meanwhile,
        // and what does not fit is dropped and counted at intake, so memory stays bounded.
        // A refusal of the data, or any failure once stopping, is retried a few times before
        // the batch is given up and counted. One COPY is one statement, so a failed attempt
        // wrote nothing.
        // Stopping: told so, or the extension (the sender) is gone.
        let stopping = || *stop.borrow() || stop.has_changed().is_err();
        let mut attempt = 0;
        let result = loop {
            match write_batch(db, salts, batch).await {
                Err(e) if attempt < WRITE_RETRIES || (transient(&e) && !stopping()) => {
                    attempt += 1;
                    tracing::warn!(error = %e, events = batch.len(), attempt, "cannot write analytics events; retrying");
                    tokio::time::sleep((RETRY_DELAY * attempt).min(MAX_RETRY_DELAY)).await;
                }
                other => break other,
            }
        };
        match result {
            Ok((written, bots)) => {
                self.counters.written.increment(written);
                self.counters.bots.increment(bots);
            }
            Err(e) => {
                self.counters.failed.increment(batch.len() as u64);
                tracing::warn!(error = %e, events = batch.len(), "cannot write analytics events");
            }
        }
    }
}

/// The salts of the days seen, read from (or created in) the `salts` table, so that every
/// instance hashes a day's visitors alike.
#[derive(Debug, Default)]
struct Salts(HashMap<Date, Salt>);

impl Salts {
    async fn of(&mut self, db: &Database, day: Date) -> Result<Salt> {
        if let Some(salt) = self.0.get(&day) {
            return Ok(*salt);
        }
        let client = db.client().await?;
        client
            .execute(
                "INSERT INTO salts (day, salt) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING",
                &[&day, &privacy::new_salt().as_slice()],
            )
            .await?;
        let row = client
            .query_one("SELECT salt FROM salts WHERE day = $1", &[&day])
            .await?;
        let stored: Vec<u8> = row.get(0);
        let mut salt = [0; 32];
        salt.copy_from_slice(&stored[..32.min(stored.len())]);
        // A new day: yesterday's salt is still needed for a late write, older ones never.
        client
            .execute("DELETE FROM salts WHERE day < $1", &[&day.previous_day()])
            .await?;
        self.0
            .retain(|d, _| *d >= day.previous_day().unwrap_or(day));
        self.0.insert(day, salt);
        Ok(salt)
    }
}

/// One row of `events`.
struct Row<'a> {
    at: OffsetDateTime,
    site: String,
    visitor: i64,
    name: &'a str,
    path: &'a str,
    query: String,
    referrer: String,
    utm_source: Option<String>,
    utm_medium: Option<String>,
    utm_campaign: Option<String>,
    agent: ua::Agent,
    props: Option<&'a serde_json::Value>,
    status: Option<i16>,
}

/// What a user agent says: `None` for a bot.
fn agent_of(user_agent: &[u8]) -> Option<ua::Agent> {
    let lower = ua::lower(user_agent);
    (!ua::is_bot(&lower)).then(|| ua::classify(&lower))
}

/// The row for `hit` from a browser described by `agent`.
fn enrich<'a>(hit: &'a Hit, agent: ua::Agent, salt: &Salt) -> Row<'a> {
    let site = privacy::host_of(hit.site.as_str());
    let query = privacy::kept_query(&hit.query);
    let referrer = match privacy::query_param(&query, "ref") {
        Some(r) if hit.referrer.as_str().is_empty() => r,
        _ => privacy::referrer_host(hit.referrer.as_str(), &site),
    };
    let (name, props, status) = match &hit.kind {
        Kind::PageView { status } => ("pageview", None, *status),
        Kind::Custom { name, props } => (name.as_str(), props.as_ref(), None),
    };
    Row {
        at: hit.at,
        visitor: privacy::visitor_id(
            salt,
            &site,
            hit.address.as_bytes(),
            hit.user_agent.as_bytes(),
        ),
        name,
        path: &hit.path,
        utm_source: privacy::query_param(&query, "utm_source"),
        utm_medium: privacy::query_param(&query, "utm_medium"),
        utm_campaign: privacy::query_param(&query, "utm_campaign"),
        query,
        referrer,
        agent,
        props,
        status,
        site,
    }
}

/// The text columns and the properties of the row the flusher writes for `hit` (`None` for a
/// bot): what PostgreSQL must accept, or the whole batch is lost. For the fuzz targets.
#[doc(hidden)]
pub fn stored_values(hit: &Hit) -> Option<(Vec<String>, Option<serde_json::Value>)> {
    let r = enrich(hit, agent_of(hit.user_agent.as_bytes())?, &[0; 32]);
    let mut texts = vec![
        r.site,
        r.name.to_owned(),
        r.path.to_owned(),
        r.query,
        r.referrer,
    ];
    texts.extend(
        [r.utm_source, r.utm_medium, r.utm_campaign]
            .into_iter()
            .flatten(),
    );
    texts.extend([r.agent.browser, r.agent.os, r.agent.device].map(str::to_owned));
    Some((texts, r.props.cloned()))
}

const COLUMNS: &str = "COPY events (occurred_at, site, visitor, name, path, query, referrer, \
     utm_source, utm_medium, utm_campaign, browser, os, device, props, status) \
     FROM STDIN (FORMAT binary)";

const TYPES: [Type; 15] = [
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::INT2,
];

/// Writes `batch` with one binary COPY; returns (events written, bots dropped).
async fn write_batch(db: &Database, salts: &mut Salts, batch: &[Hit]) -> Result<(u64, u64)> {
    let mut rows = Vec::with_capacity(batch.len());
    // A batch holds few distinct user agents: each is classified once.
    let mut agents: HashMap<&[u8], Option<ua::Agent>> = HashMap::new();
    for hit in batch {
        let salt = salts.of(db, hit.at.date()).await?;
        let user_agent = hit.user_agent.as_bytes();
        let agent = *agents
            .entry(user_agent)
            .or_insert_with(|| agent_of(user_agent));
        if let Some(agent) = agent {
            rows.push(enrich(hit, agent, &salt));
        }
    }
    let bots = (batch.len() - rows.len()) as u64;
    if rows.is_empty() {
        return Ok((0, bots));
    }
    let client = db.client().await?;
    let sink = client.copy_in::<_, Bytes>(COLUMNS).await?;
    let writer = BinaryCopyInWriter::new(sink, &TYPES);
    tokio::pin!(writer);
    for r in &rows {
        let values: [&(dyn ToSql + Sync); 15] = [
            &r.at,
            &r.site,
            &r.visitor,
            &r.name,
            &r.path,
            &r.query,
            &r.referrer,
            &r.utm_source,
            &r.utm_medium,
            &r.utm_campaign,
            &r.agent.browser,
            &r.agent.os,
            &r.agent.device,
            &r.props,
            &r.status,
        ];
        writer.as_mut().write(&values).await?;
    }
    let written = writer.finish().await?;
    Ok((written, bots))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(ua: &'static str) -> Hit {
        Hit {
            at: OffsetDateTime::now_utc(),
            kind: Kind::PageView { status: Some(200) },
            site: Text::Header(HeaderValue::from_static("Example.com:8080")),
            path: "/pricing".into(),
            query: "utm_source=news&token=secret&ref=x".into(),
            referrer: Text::Header(HeaderValue::from_static("https://www.google.com/?q=1")),
            user_agent: Text::Header(HeaderValue::from_static(ua)),
            address: Address::of(&solobase_sdk::RequestHead::new(
                solobase_sdk::http::Method::GET,
                "/",
            )),
        }
    }

    #[test]
    fn enrichment_reduces_and_hashes() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
        let h = hit(firefox);
        let agent = agent_of(h.user_agent.as_bytes()).unwrap();
        let row = enrich(&h, agent, &[7; 32]);
        assert_eq!(row.site, "example.com");
        assert_eq!(row.query, "utm_source=news&ref=x");
        assert_eq!(row.utm_source.as_deref(), Some("news"));
        assert_eq!(row.referrer, "google.com");
        assert_eq!(
            (row.agent.browser, row.agent.device),
            ("Firefox", "desktop")
        );
        assert_eq!(row.status, Some(200));
        assert_ne!(row.visitor, enrich(&h, agent, &[8; 32]).visitor);
        assert!(agent_of(b"curl/8.5.0").is_none());
    }

    /// Found while writing the `track_payload` fuzz target's property (which now checks it):
    /// `?ref=%00` decoded to a NUL, which PostgreSQL text cannot hold, so the whole batch failed.
    #[test]
    fn decoded_parameters_hold_no_nul() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
        let mut h = hit(firefox);
        h.query = "ref=%00&utm_source=a%00b&utm_medium=%01".into();
        h.referrer = Text::None;
        let (texts, _) = stored_values(&h).unwrap();
        assert!(
            texts.iter().all(|t| !t.contains(char::is_control)),
            "{texts:?}"
        );
        assert!(texts.contains(&"ab".to_owned()), "{texts:?}");
    }

    #[test]
    fn only_failures_that_may_pass_later_are_transient() {
        assert!(transient(&ExtensionError::Unavailable(
            "database unavailable: timed out waiting for a connection".into()
        )));
        assert!(!transient(&ExtensionError::InvalidRequest("no".into())));
        assert!(!transient(&ExtensionError::Internal("bug".into())));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let metrics = Metrics::new(
            "analytics",
            std::sync::Arc::new(solobase_sdk::metrics::Discard),
        );
        let p = Pipeline::new(2, &metrics).unwrap();
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
        assert!(p.offer(hit(firefox)) && p.offer(hit(firefox)));
        assert!(!p.offer(hit(firefox)));
        assert_eq!(p.queued(), 2);
        assert_eq!(p.counters.dropped.get(), 1);
        assert_eq!(p.counters.accepted.get(), 2);
    }
}
