//! `[extensions]`: the runtime's defaults, and `[extensions.limits.<name>]` overrides,
//! resolved for one extension in one place ([`ExtensionsConfig::resolve`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::AllowList;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExtensionsConfig {
    /// Directory of the per-extension configuration files, `<name>.toml`.
    pub config_dir: PathBuf,
    /// Time limit of each extension's initialize, start and stop, in seconds.
    pub(crate) lifecycle_timeout_secs: u64,
    /// Largest request body an extension route accepts, in bytes.
    pub(crate) max_body_bytes: usize,
    /// Database connections per extension: its pool's size and its role's CONNECTION LIMIT.
    pub pool_size: usize,
    /// Default `statement_timeout` of each extension's role, in milliseconds (0 = none).
    pub(crate) statement_timeout_ms: u64,
    /// Default `idle_in_transaction_session_timeout` of each extension's role, in
    /// milliseconds (0 = none).
    pub(crate) idle_in_transaction_timeout_ms: u64,
    /// Longest an extension's transaction may stay open, in milliseconds, however busy it
    /// is: past it, Solobase ends the session (0 = none).
    pub(crate) transaction_timeout_ms: u64,
    /// Requests an extension's routes serve at once; beyond, 503 (per instance).
    pub max_in_flight: usize,
    /// Bytes an extension may keep in its storage area; beyond, 507 (0: no quota).
    pub(crate) storage_quota_bytes: u64,
    /// Time a request may spend running an extension's handler (polling it, not waiting);
    /// beyond, the handler is cancelled and the request answered 503 (0: no budget).
    pub cpu_budget_ms: u64,
    /// Requests per second (and burst) an extension's routes accept in all (0: no limit).
    pub(crate) rate_per_second: u32,
    pub(crate) rate_burst: u32,
    /// Requests per second (and burst) each client — the signed-in user, else the address —
    /// may send to one extension's routes (0: no limit).
    pub client_rate_per_second: u32,
    pub client_rate_burst: u32,
    /// Non-public addresses (CIDRs, addresses, host names) extensions' outbound HTTP
    /// (`ctx.http`) may reach anyway; every other non-public address is refused.
    pub outbound_allow: Vec<String>,
    /// A PEM file of CA certificates that https calls of extensions' outbound HTTP trust
    /// besides the system's (a private CA, a test one).
    pub outbound_ca_file: Option<PathBuf>,
    /// Per-extension overrides of the limits above, by extension name.
    pub limits: BTreeMap<String, ExtensionLimits>,
    /// Failures (panics, hook time-outs) within `breaker_window_secs` that open an
    /// extension's circuit breaker (0: never).
    pub breaker_failures: u32,
    pub breaker_window_secs: u64,
    /// How long an open breaker answers 503 before letting a call through again.
    pub breaker_cooldown_secs: u64,
    /// Openings within `breaker_trips_window_secs` that disable the extension (0: never).
    pub breaker_trips_to_disable: u32,
    pub(crate) breaker_trips_window_secs: u64,
    /// Whether an extension the operator trusts in advance — the official tier, or one listed
    /// in `approved` — is enabled with every permission its manifest requests when seen for
    /// the first time (audited as granted by the system). When false every new extension
    /// starts disabled, and an administrator enables it and grants its permissions. Other
    /// tiers always start disabled.
    pub grant_on_first_sight: bool,
    /// Extensions outside the official tier that the operator approves here, treated on
    /// first sight like the official tier.
    pub approved: Vec<String>,
    /// How often each instance looks for due background jobs, in ms, and how long one job
    /// may run, in seconds.
    pub jobs_poll_ms: u64,
    pub(crate) job_timeout_secs: u64,
    /// How often each extension's health check runs, and how long it may take, in ms.
    pub health_interval_ms: u64,
    pub health_timeout_ms: u64,
    /// Critical health checks in a row that disable an extension (0: never).
    pub health_critical_to_disable: u32,
    /// Seconds between re-reads of every extension's state (enabled, grants) from the
    /// database, in case a change notification from another instance or the CLI was lost.
    pub resync_secs: u64,
    /// How often each instance writes its extensions' counters to the database (for
    /// `solobase extensions status|metrics`), in ms.
    pub stats_interval_ms: u64,
    /// Public keys (minisign's base64 form) whose signatures `solobase extensions install`
    /// and `publish` accept; a package signed by any other key is refused.
    pub(crate) trusted_keys: Vec<String>,
    /// The extension registry `install`, `search` and `info --remote` use: a directory, a
    /// `file://` or an `http://` URL of the folder holding `index.json`.
    pub(crate) registry: Option<String>,
}

/// One extension's database limits; absent keys take the `[extensions]` defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExtensionLimits {
    pub max_connections: Option<usize>,
    pub statement_timeout_ms: Option<u64>,
    pub idle_in_transaction_timeout_ms: Option<u64>,
    pub transaction_timeout_ms: Option<u64>,
    pub max_in_flight: Option<usize>,
    pub storage_quota_bytes: Option<u64>,
    pub cpu_budget_ms: Option<u64>,
    pub rate_per_second: Option<u32>,
    pub rate_burst: Option<u32>,
    pub client_rate_per_second: Option<u32>,
    pub client_rate_burst: Option<u32>,
    pub max_body_bytes: Option<usize>,
    /// Replaces `[extensions] outbound_allow` for this extension.
    pub outbound_allow: Option<Vec<String>>,
}

impl Default for ExtensionsConfig {
    fn default() -> Self {
        Self {
            config_dir: PathBuf::from("config/extensions"),
            lifecycle_timeout_secs: 10,
            max_body_bytes: 1024 * 1024,
            pool_size: 4,
            statement_timeout_ms: 30_000,
            idle_in_transaction_timeout_ms: 60_000,
            transaction_timeout_ms: 300_000,
            max_in_flight: 256,
            storage_quota_bytes: 1024 * 1024 * 1024,
            cpu_budget_ms: 2000,
            rate_per_second: 0,
            rate_burst: 0,
            client_rate_per_second: 100,
            client_rate_burst: 400,
            outbound_allow: Vec::new(),
            outbound_ca_file: None,
            limits: BTreeMap::new(),
            breaker_failures: 5,
            breaker_window_secs: 30,
            breaker_cooldown_secs: 30,
            breaker_trips_to_disable: 3,
            breaker_trips_window_secs: 3600,
            grant_on_first_sight: true,
            approved: Vec::new(),
            jobs_poll_ms: 1_000,
            job_timeout_secs: 30,
            health_interval_ms: 30_000,
            health_timeout_ms: 5_000,
            health_critical_to_disable: 3,
            resync_secs: 5,
            stats_interval_ms: 5_000,
            trusted_keys: Vec::new(),
            registry: None,
        }
    }
}

/// Requests per second and burst of one rate limit; `per_second` 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// When an extension's circuit breaker opens, and what opening repeatedly leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures (panics, time-outs) within `window_ms` that open the breaker (0: never).
    pub(crate) failures: u32,
    pub(crate) window_ms: u64,
    /// How long it stays open before letting a call through again (half-open).
    pub(crate) cooldown_ms: u64,
    /// Openings within `trips_window_ms` that disable the extension (0: never).
    pub(crate) trips_to_disable: u32,
    pub(crate) trips_window_ms: u64,
}

/// The limits PostgreSQL enforces for one extension's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbLimits {
    /// The role's `CONNECTION LIMIT` and the size of its pool in each instance.
    pub max_connections: u32,
    /// The role's default `statement_timeout` (0 = none).
    pub(crate) statement_timeout_ms: u64,
    /// The role's default `idle_in_transaction_session_timeout` (0 = none).
    pub(crate) idle_in_transaction_timeout_ms: u64,
    /// The longest a transaction may stay open, busy or not (0 = none); kept by the watchdog.
    pub(crate) transaction_timeout_ms: u64,
}

/// Every limit one extension runs under: the `[extensions]` defaults with its own
/// `[extensions.limits.<name>]` overrides applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests its routes accept per second, in all.
    pub(crate) rate: Rate,
    /// Requests each client may send it per second.
    pub(crate) client_rate: Rate,
    /// The handler time budget of one request (zero: none).
    pub(crate) cpu_budget: Duration,
    /// Bytes its storage area may hold (0: no quota).
    pub(crate) storage_quota_bytes: u64,
    /// The largest request body its routes accept.
    pub(crate) max_body_bytes: usize,
    /// Requests its routes serve at once.
    pub max_in_flight: usize,
    /// What its database role is held to.
    pub db: DbLimits,
}

impl ExtensionsConfig {
    /// The circuit breaker every extension gets.
    pub fn breaker(&self) -> BreakerSettings {
        BreakerSettings {
            failures: self.breaker_failures,
            window_ms: self.breaker_window_secs.saturating_mul(1000),
            cooldown_ms: self.breaker_cooldown_secs.saturating_mul(1000),
            trips_to_disable: self.breaker_trips_to_disable,
            trips_window_ms: self.breaker_trips_window_secs.saturating_mul(1000),
        }
    }

    /// The non-public addresses extension `name`'s outbound HTTP may reach (checked by
    /// `Config::check`, so a list read from a checked configuration always parses).
    pub fn outbound_allow(&self, name: &str) -> AllowList {
        let entries = self
            .limits
            .get(name)
            .and_then(|l| l.outbound_allow.as_ref())
            .unwrap_or(&self.outbound_allow);
        AllowList::parse(entries).unwrap_or_default()
    }

    /// Extension `name`'s limits: the one place where its overrides meet the defaults.
    pub fn resolve(&self, name: &str) -> Limits {
        let over = self.limits.get(name).cloned().unwrap_or_default();
        Limits {
            rate: Rate {
                per_second: over.rate_per_second.unwrap_or(self.rate_per_second),
                burst: over.rate_burst.unwrap_or(self.rate_burst),
            },
            client_rate: Rate {
                per_second: over
                    .client_rate_per_second
                    .unwrap_or(self.client_rate_per_second),
                burst: over.client_rate_burst.unwrap_or(self.client_rate_burst),
            },
            cpu_budget: Duration::from_millis(over.cpu_budget_ms.unwrap_or(self.cpu_budget_ms)),
            storage_quota_bytes: over.storage_quota_bytes.unwrap_or(self.storage_quota_bytes),
            max_body_bytes: over.max_body_bytes.unwrap_or(self.max_body_bytes),
            max_in_flight: over.max_in_flight.unwrap_or(self.max_in_flight),
            db: DbLimits {
                max_connections: over.max_connections.unwrap_or(self.pool_size) as u32,
                statement_timeout_ms: over
                    .statement_timeout_ms
                    .unwrap_or(self.statement_timeout_ms),
                idle_in_transaction_timeout_ms: over
                    .idle_in_transaction_timeout_ms
                    .unwrap_or(self.idle_in_transaction_timeout_ms),
                transaction_timeout_ms: over
                    .transaction_timeout_ms
                    .unwrap_or(self.transaction_timeout_ms),
            },
        }
    }
}
