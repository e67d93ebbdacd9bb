//! The audit log (`solobase.audit_log`): who did what, when, with which result. Append-only
//! (a trigger refuses updates, deletes and truncation) and out of the extensions' reach (their
//! roles hold no privilege on the host schema).
//!
//! Entries never carry secrets: callers put names, ids and outcomes in `detail`, never tokens,
//! passwords or credentials.
//!
//! Refused admin actions go through [`Denials`], so that a user repeating one cannot flood
//! the log: per (actor, action), the first refusal of a window is written as it happens
//! (`detail.count` 1) and the others of the window as one entry counting them
//! (`detail.count`, `detail.merged`), written when the window has passed — at the next
//! refusal, at the periodic flush, or when the server stops. Every refusal is counted in
//! exactly one entry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use serde::Serialize;
use time::OffsetDateTime;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user (an administrator, for admin actions), and the client address its
    /// request came from (`crate::http::client_addr`).
    User(uuid::Uuid, Option<std::net::IpAddr>),
    /// The command line, run by this operating-system user.
    Cli(String),
    /// Solobase itself (enforcement, automatic actions).
    System,
}

impl Actor {
    /// The command line's actor: `cli:<$USER>`.
    pub(crate) fn cli() -> Self {
        Self::Cli(std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
    }

    /// The client address of a request's actor.
    pub(crate) fn client(&self) -> Option<std::net::IpAddr> {
        match self {
            Self::User(_, client) => *client,
            _ => None,
        }
    }

    pub(crate) fn as_text(&self) -> String {
        match self {
            Self::User(id, _) => format!("user:{id}"),
            Self::Cli(who) => format!("cli:{who}"),
            Self::System => "system".into(),
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Denied,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct Entry {
    pub(crate) actor: Actor,
    pub(crate) action: &'static str,
    pub(crate) extension: Option<String>,
    pub(crate) outcome: Outcome,
    pub(crate) detail: serde_json::Value,
}

impl Entry {
    pub(crate) fn new(actor: Actor, action: &'static str, outcome: Outcome) -> Self {
        Self {
            actor,
            action,
            extension: None,
            outcome,
            detail: serde_json::Value::Object(Default::default()),
        }
    }

    pub(crate) fn extension(mut self, name: &str) -> Self {
        self.extension = Some(name.to_owned());
        self
    }

    pub(crate) fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Appends `entry`.
pub async fn record(pool: &Pool, entry: &Entry) -> anyhow::Result<()> {
    let client = pool.get().await?;
    record_in(&**client, entry).await
}

/// Appends `entry` through `client`: inside a transaction, it commits with the change it
/// records.
pub(crate) async fn record_in(
    client: &impl tokio_postgres::GenericClient,
    entry: &Entry,
) -> anyhow::Result<()> {
    client
        .execute(
            "INSERT INTO solobase.audit_log (actor, action, extension, result, detail, client) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &entry.actor.as_text(),
                &entry.action,
                &entry.extension,
                &entry.outcome.as_str(),
                &entry.detail,
                &entry.actor.client(),
            ],
        )
        .await?;
    Ok(())
}

/// Appends `entry`; a failure to do so is logged, never returned — for actions that already
/// happened and must not be reported as failed because their audit entry could not be written.
pub(crate) async fn record_or_log(pool: &Pool, entry: Entry) {
    if let Err(e) = record(pool, &entry).await {
        tracing::error!(action = entry.action, error = %e, "cannot write the audit log");
    }
}

/// Extension names kept in a merged entry (the rest are counted, not named).
const NAMES_PER_MERGED: usize = 8;

/// Refused admin actions being merged: one open window per (actor, action). Keyed by
/// signed-in users and the host's fixed action names, so it holds at most one entry per
/// user and action, and windows are dropped once flushed.
#[derive(Debug)]
pub struct Denials {
    window: Duration,
    open: Mutex<HashMap<(String, &'static str), Window>>,
}

/// The refusals of one (actor, action) after the first of its window.
#[derive(Debug)]
struct Window {
    actor: Actor,
    opened: Instant,
    /// Refusals merged so far (not written).
    count: u64,
    first_at: Option<OffsetDateTime>,
    last_at: Option<OffsetDateTime>,
    extensions: Vec<String>,
}

impl Window {
    fn new(actor: Actor, opened: Instant) -> Self {
        Self {
            actor,
            opened,
            count: 0,
            first_at: None,
            last_at: None,
            extensions: Vec::new(),
        }
    }

    /// The entry counting the merged refusals, if there were any.
    fn merged(&self, action: &'static str, window: Duration) -> Option<Entry> {
        (self.count > 0).then(|| {
            let rfc3339 = |t: Option<OffsetDateTime>| {
                t.and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
            };
            Entry::new(self.actor.clone(), action, Outcome::Denied).detail(serde_json::json!({
                "count": self.count,
                "merged": true,
                "window_secs": window.as_secs(),
                "first_at": rfc3339(self.first_at),
                "last_at": rfc3339(self.last_at),
                "extensions": self.extensions,
            }))
        })
    }
}

impl Denials {
    /// Merges refusals within `window` (zero: writes each one).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Accounts for the refused action `entry`: written now when it opens a window (after
    /// the entry of the window before it, if that one merged any), else counted.
    pub async fn record(&self, pool: &Pool, mut entry: Entry) {
        if let Some(detail) = entry.detail.as_object_mut() {
            detail.insert("count".into(), 1.into());
        }
        if self.window.is_zero() {
            return record_or_log(pool, entry).await;
        }
        let now = Instant::now();
        let (merged, write) = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let key = (entry.actor.as_text(), entry.action);
            match open.get_mut(&key) {
                Some(w) if now.duration_since(w.opened) < self.window => {
                    w.count += 1;
                    let at = Some(OffsetDateTime::now_utc());
                    w.first_at = w.first_at.or(at);
                    w.last_at = at;
                    if let Some(name) = &entry.extension
                        && w.extensions.len() < NAMES_PER_MERGED
                        && !w.extensions.contains(name)
                    {
                        w.extensions.push(name.clone());
                    }
                    (None, false)
                }
                Some(w) => {
                    let merged = w.merged(entry.action, self.window);
                    *w = Window::new(entry.actor.clone(), now);
                    (merged, true)
                }
                None => {
                    open.insert(key, Window::new(entry.actor.clone(), now));
                    (None, true)
                }
            }
        };
        if let Some(merged) = merged {
            record_or_log(pool, merged).await;
        }
        if write {
            record_or_log(pool, entry).await;
        }
    }

    /// Writes the merged entries of windows that have passed (all of them when `all`, at
    /// shutdown) and forgets those windows.
    pub async fn flush(&self, pool: &Pool, all: bool) {
        let now = Instant::now();
        let due: Vec<Entry> = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let mut due = Vec::new();
            open.retain(|(_, action), w| {
                if all || now.duration_since(w.opened) >= self.window {
                    due.extend(w.merged(action, self.window));
                    false
                } else {
                    true
                }
            });
            open.shrink_to_fit();
            due
        };
        for entry in due {
            record_or_log(pool, entry).await;
        }
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// An entry of the audit log.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = AuditEntry)]
pub(crate) struct Stored {
    pub(crate) id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) at: OffsetDateTime,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) extension: Option<String>,
    pub(crate) result: String,
    pub(crate) detail: serde_json::Value,
    /// The client address the request came from (behind a trusted proxy, the client it
    /// reported); absent for the command line and Solobase's own actions.
    #[schema(value_type = Option<String>, example = "203.0.113.7")]
    pub(crate) client: Option<String>,
}

/// Which entries to read: newest first, at most `limit`, older than entry `before` when set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub(crate) extension: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) since: Option<OffsetDateTime>,
    pub(crate) before: Option<i64>,
    pub(crate) limit: i64,
}

/// The largest page.
pub(crate) const MAX_PAGE: i64 = 500;

/// Entries matching `filter`, newest first.
pub(crate) async fn list(pool: &Pool, filter: &Filter) -> anyhow::Result<Vec<Stored>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, at, actor, action, extension, result, detail, host(client) \
             FROM solobase.audit_log \
             WHERE ($1::text IS NULL OR extension = $1) \
               AND ($2::text IS NULL OR action = $2) \
               AND ($3::timestamptz IS NULL OR at >= $3) \
               AND ($4::bigint IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
            &[
                &filter.extension,
                &filter.action,
                &filter.since,
                &filter.before,
                &filter.limit.clamp(1, MAX_PAGE),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Stored {
            id: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            extension: r.get(4),
            result: r.get(5),
            detail: r.get(6),
            client: r.get(7),
        })
        .collect())
}
