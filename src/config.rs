//! Host configuration: `config/solobase.toml`, then `SOLOBASE_*` environment variables, then
//! command-line flags, each layer overriding the one before.
//!
//! Every key is documented (with its default) in the checked-in `config/solobase.toml`. Parsing
//! is strict: an unknown key is an error naming the key and the file, so a typo never silently
//! falls back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The path read when `--config` is not given. A missing file at this path is not an error.
pub const DEFAULT_CONFIG_PATH: &str = "config/solobase.toml";

/// Everything the host reads from its configuration, fully resolved.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Root of everything Solobase writes: the embedded cluster, stored files.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub extensions: ExtensionsConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    /// The first admin, from SOLOBASE_ADMIN_EMAIL and SOLOBASE_ADMIN_PASSWORD (never from a
    /// file): created at start-up when no admin exists yet.
    #[serde(skip)]
    pub bootstrap_admin: Option<AdminSeed>,
    /// The file this configuration was read from, if any: watched for changes while serving.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Whether a server may run with test-only extensions compiled in (the test suite's
    /// `tests/extensions/`, which open doors no deployment should have). Only from
    /// `SOLOBASE_ALLOW_TEST_EXTENSIONS=1` (never from a file); without it such a server
    /// refuses to start.
    #[serde(skip)]
    pub allow_test_extensions: bool,
}

/// Credentials for the first admin account. `Debug` hides the password.
#[derive(Clone, PartialEq)]
pub struct AdminSeed {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for AdminSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSeed")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Also serve `/metrics` without authentication on this address, for a Prometheus scraper
    /// on a private network (the main server serves it to administrators only).
    pub bind: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_timeout_secs: u64,
    /// Time a client has to send a request's line and headers, from its first byte, in ms;
    /// beyond, it is answered 408 and disconnected (slow-header attacks). 0: no limit.
    pub request_head_timeout_ms: u64,
    /// How long an idle keep-alive connection stays open, in seconds (0: closed after each
    /// response).
    pub keep_alive_secs: u64,
    /// Time a client has to send a request's body, in ms: the allowance grows by one second for
    /// every `body_min_rate` bytes received, so a large upload at a decent speed is never cut
    /// off while a body trickled byte by byte is (slow-body attacks). Beyond, 408. 0: no limit.
    pub body_timeout_ms: u64,
    /// Bytes per second a body must keep up to earn more time (see `body_timeout_ms`).
    pub body_min_rate: u64,
    /// Largest JSON body the host's own API accepts, in bytes; beyond, 413.
    pub max_json_bytes: usize,
    /// Connections each worker serves at once; beyond, new ones wait in the listen backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// A PostgreSQL connection URL. Empty means: run the embedded cluster.
    pub url: Option<String>,
    /// Maximum connections in the host's pool.
    pub pool_size: usize,
    /// Give up connecting after this many seconds.
    pub connect_timeout_secs: u64,
    pub embedded: EmbeddedConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// Directory holding `initdb` and `postgres`; empty means search for them.
    pub bin_dir: Option<PathBuf>,
    /// The unprivileged system user that runs PostgreSQL when Solobase is started as root.
    pub system_user: String,
    /// How long to wait for the embedded server to accept connections.
    pub start_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether `POST /api/v1/auth/signup` creates accounts.
    pub signup_enabled: bool,
    /// Lifetime of a login token.
    pub token_ttl_secs: u64,
    /// Shortest accepted password.
    pub min_password_length: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExtensionsConfig {
    /// Directory of the per-extension configuration files, `<name>.toml`.
    pub config_dir: PathBuf,
    /// Time limit of each extension's initialize, start and stop, in seconds.
    pub lifecycle_timeout_secs: u64,
    /// Largest request body an extension route accepts, in bytes.
    pub max_body_bytes: usize,
    /// Database connections per extension: its pool's size and its role's CONNECTION LIMIT.
    pub pool_size: usize,
    /// Default `statement_timeout` of each extension's role, in milliseconds (0 = none).
    pub statement_timeout_ms: u64,
    /// Default `idle_in_transaction_session_timeout` of each extension's role, in
    /// milliseconds (0 = none).
    pub idle_in_transaction_timeout_ms: u64,
    /// Requests an extension's routes serve at once; beyond, 503 (per instance).
    pub max_in_flight: usize,
    /// Bytes an extension may keep in its storage area; beyond, 507 (0: no quota).
    pub storage_quota_bytes: u64,
    /// Time a request may spend running an extension's handler (polling it, not waiting);
    /// beyond, the handler is cancelled and the request answered 503 (0: no budget).
    pub cpu_budget_ms: u64,
    /// Requests per second (and burst) an extension's routes accept in all (0: no limit).
    pub rate_per_second: u32,
    pub rate_burst: u32,
    /// Requests per second (and burst) each client — the signed-in user, else the address —
    /// may send to one extension's routes (0: no limit).
    pub client_rate_per_second: u32,
    pub client_rate_burst: u32,
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
    pub breaker_trips_window_secs: u64,
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
    pub job_timeout_secs: u64,
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
    pub trusted_keys: Vec<String>,
    /// The extension registry `install`, `search` and `info --remote` use: a directory, a
    /// `file://` or an `http://` URL of the folder holding `index.json`.
    pub registry: Option<String>,
}

/// One extension's database limits; absent keys take the `[extensions]` defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExtensionLimits {
    pub max_connections: Option<usize>,
    pub statement_timeout_ms: Option<u64>,
    pub idle_in_transaction_timeout_ms: Option<u64>,
    pub max_in_flight: Option<usize>,
    pub storage_quota_bytes: Option<u64>,
    pub cpu_budget_ms: Option<u64>,
    pub rate_per_second: Option<u32>,
    pub rate_burst: Option<u32>,
    pub client_rate_per_second: Option<u32>,
    pub client_rate_burst: Option<u32>,
    pub max_body_bytes: Option<usize>,
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
            max_in_flight: 256,
            storage_quota_bytes: 1024 * 1024 * 1024,
            cpu_budget_ms: 2000,
            rate_per_second: 0,
            rate_burst: 0,
            client_rate_per_second: 100,
            client_rate_burst: 400,
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

impl ExtensionsConfig {
    /// The circuit breaker every extension gets.
    pub fn breaker(&self) -> crate::runtime::faults::BreakerSettings {
        crate::runtime::faults::BreakerSettings {
            failures: self.breaker_failures,
            window_ms: self.breaker_window_secs.saturating_mul(1000),
            cooldown_ms: self.breaker_cooldown_secs.saturating_mul(1000),
            trips_to_disable: self.breaker_trips_to_disable,
            trips_window_ms: self.breaker_trips_window_secs.saturating_mul(1000),
        }
    }

    /// Extension `name`'s rate limits: in all, and per client.
    pub fn rates_for(
        &self,
        name: &str,
    ) -> (crate::runtime::limits::Rate, crate::runtime::limits::Rate) {
        use crate::runtime::limits::Rate;
        let over = self.limits.get(name).cloned().unwrap_or_default();
        (
            Rate {
                per_second: over.rate_per_second.unwrap_or(self.rate_per_second),
                burst: over.rate_burst.unwrap_or(self.rate_burst),
            },
            Rate {
                per_second: over
                    .client_rate_per_second
                    .unwrap_or(self.client_rate_per_second),
                burst: over.client_rate_burst.unwrap_or(self.client_rate_burst),
            },
        )
    }

    /// The handler time budget per request of extension `name` (zero: none).
    pub fn cpu_budget_for(&self, name: &str) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.limits
                .get(name)
                .and_then(|l| l.cpu_budget_ms)
                .unwrap_or(self.cpu_budget_ms),
        )
    }

    /// The storage quota of extension `name` in bytes (0: none).
    pub fn storage_quota_for(&self, name: &str) -> u64 {
        self.limits
            .get(name)
            .and_then(|l| l.storage_quota_bytes)
            .unwrap_or(self.storage_quota_bytes)
    }

    /// The largest request body extension `name`'s routes accept, in bytes.
    pub fn max_body_bytes_for(&self, name: &str) -> usize {
        self.limits
            .get(name)
            .and_then(|l| l.max_body_bytes)
            .unwrap_or(self.max_body_bytes)
    }

    /// How many requests extension `name`'s routes serve at once.
    pub fn max_in_flight_for(&self, name: &str) -> usize {
        self.limits
            .get(name)
            .and_then(|l| l.max_in_flight)
            .unwrap_or(self.max_in_flight)
    }

    /// The database limits of extension `name`.
    pub fn limits_for(&self, name: &str) -> crate::runtime::db_role::RoleLimits {
        let over = self.limits.get(name).cloned().unwrap_or_default();
        crate::runtime::db_role::RoleLimits {
            max_connections: over.max_connections.unwrap_or(self.pool_size) as u32,
            statement_timeout_ms: over
                .statement_timeout_ms
                .unwrap_or(self.statement_timeout_ms),
            idle_in_transaction_timeout_ms: over
                .idle_in_transaction_timeout_ms
                .unwrap_or(self.idle_in_transaction_timeout_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured when writing to a terminal).
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter directive such as `info` or `solobase=debug,actix_web=warn`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            storage: StorageConfig::default(),
            extensions: ExtensionsConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            bootstrap_admin: None,
            source: None,
            allow_test_extensions: false,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            shutdown_timeout_secs: 10,
            request_head_timeout_ms: 5_000,
            keep_alive_secs: 5,
            body_timeout_ms: 20_000,
            body_min_rate: 500,
            max_json_bytes: 64 * 1024,
            max_connections: 25_000,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            connect_timeout_secs: 5,
            embedded: EmbeddedConfig::default(),
        }
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            bin_dir: None,
            system_user: "postgres".into(),
            start_timeout_secs: 30,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            signup_enabled: false,
            token_ttl_secs: 24 * 3600,
            min_password_length: 8,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 25 * 1024 * 1024,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// Why a configuration could not be loaded. Each message names its source and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source} (pass --config with an existing file)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid environment variable {var}={value:?}: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A command refused its input (a package that fails verification, a dependency
    /// conflict …): the message says why and what to do. Exit code 2, like the others.
    #[error("{0}")]
    Refused(String),
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the file (the default path may be absent; an explicit one may not), then applies
    /// the environment and the flags, then checks the result.
    pub fn load(explicit_path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        Self::load_with_env(explicit_path, overrides, env)
    }

    /// [`Config::load`] with the environment given as a function, so tests need not mutate
    /// the process environment.
    pub fn load_with_env(
        explicit_path: Option<&Path>,
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let default_path = Path::new(DEFAULT_CONFIG_PATH);
        let source = explicit_path.or_else(|| default_path.exists().then_some(default_path));
        let mut config = match source {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.source = source.map(Path::to_owned);
        config.apply_env(env)?;
        config.apply_overrides(overrides);
        config.check()?;
        Ok(config)
    }

    /// Parses one TOML file strictly.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error is one line naming the key and its position.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| describe_toml_error(text, &e))
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(
            var: &'static str,
            value: String,
            expected: &str,
        ) -> Result<T, ConfigError> {
            value.trim().parse().map_err(|_| ConfigError::Env {
                var,
                message: format!("expected {expected}"),
                value,
            })
        }
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(v) = get("SOLOBASE_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("SOLOBASE_BIND") {
            self.server.bind = parse("SOLOBASE_BIND", v, "an address such as 127.0.0.1:8080")?;
        }
        if let Some(v) = get("SOLOBASE_WORKERS") {
            self.server.workers = parse("SOLOBASE_WORKERS", v, "a whole number")?;
        }
        if let Some(v) = get("SOLOBASE_SHUTDOWN_TIMEOUT_SECS") {
            self.server.shutdown_timeout_secs = parse(
                "SOLOBASE_SHUTDOWN_TIMEOUT_SECS",
                v,
                "a whole number of seconds",
            )?;
        }
        if let Some(v) = get("SOLOBASE_REQUEST_HEAD_TIMEOUT_MS") {
            self.server.request_head_timeout_ms = parse(
                "SOLOBASE_REQUEST_HEAD_TIMEOUT_MS",
                v,
                "a whole number of milliseconds",
            )?;
        }
        if let Some(v) = get("SOLOBASE_BODY_TIMEOUT_MS") {
            self.server.body_timeout_ms = parse(
                "SOLOBASE_BODY_TIMEOUT_MS",
                v,
                "a whole number of milliseconds",
            )?;
        }
        if let Some(v) = get("DATABASE_URL") {
            self.database.url = Some(v);
        }
        if let Some(v) = get("SOLOBASE_DATABASE_POOL_SIZE") {
            self.database.pool_size = parse("SOLOBASE_DATABASE_POOL_SIZE", v, "a whole number")?;
        }
        if let Some(v) = get("SOLOBASE_PG_BIN_DIR") {
            self.database.embedded.bin_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("SOLOBASE_PG_SYSTEM_USER") {
            self.database.embedded.system_user = v;
        }
        if let Some(v) = get("SOLOBASE_SIGNUP_ENABLED") {
            self.auth.signup_enabled = parse("SOLOBASE_SIGNUP_ENABLED", v, "true or false")?;
        }
        if let Some(v) = get("SOLOBASE_TOKEN_TTL_SECS") {
            self.auth.token_ttl_secs =
                parse("SOLOBASE_TOKEN_TTL_SECS", v, "a whole number of seconds")?;
        }
        if let Some(v) = get("SOLOBASE_METRICS_BIND") {
            self.metrics.bind = Some(parse(
                "SOLOBASE_METRICS_BIND",
                v,
                "an address such as 127.0.0.1:9091",
            )?);
        }
        if let Some(v) = get("SOLOBASE_MAX_UPLOAD_BYTES") {
            self.storage.max_upload_bytes =
                parse("SOLOBASE_MAX_UPLOAD_BYTES", v, "a whole number of bytes")?;
        }
        if let Some(v) = get("SOLOBASE_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        var: "SOLOBASE_LOG_FORMAT",
                        value: v,
                        message: "expected pretty or json".into(),
                    });
                }
            };
        }
        if let Some(v) = get("SOLOBASE_LOG") {
            self.log.level = v;
        }
        if let Some(v) = get("SOLOBASE_APPROVED_EXTENSIONS") {
            self.extensions.approved = v
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = get("SOLOBASE_ALLOW_TEST_EXTENSIONS") {
            self.allow_test_extensions = match v.trim() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(ConfigError::Env {
                        var: "SOLOBASE_ALLOW_TEST_EXTENSIONS",
                        value: v,
                        message: "expected 1 or 0".into(),
                    });
                }
            };
        }
        match (get("SOLOBASE_ADMIN_EMAIL"), get("SOLOBASE_ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => {
                self.bootstrap_admin = Some(AdminSeed { email, password })
            }
            (None, None) => {}
            (email, _) => {
                let (var, missing) = if email.is_some() {
                    ("SOLOBASE_ADMIN_EMAIL", "SOLOBASE_ADMIN_PASSWORD")
                } else {
                    ("SOLOBASE_ADMIN_PASSWORD", "SOLOBASE_ADMIN_EMAIL")
                };
                return Err(ConfigError::Env {
                    var,
                    value: if email.is_some() {
                        email.unwrap_or_default()
                    } else {
                        "<redacted>".into()
                    },
                    message: format!("{missing} must be set too, to create the first admin"),
                });
            }
        }
        Ok(())
    }

    fn apply_overrides(&mut self, o: &Overrides) {
        if let Some(bind) = o.bind {
            self.server.bind = bind;
        }
        if let Some(dir) = &o.data_dir {
            self.data_dir.clone_from(dir);
        }
        if let Some(url) = &o.database_url {
            self.database.url = Some(url.clone());
        }
    }

    /// Checks the resolved values (the last step of [`Config::load`]); public for the fuzz
    /// targets.
    #[doc(hidden)]
    pub fn check(&mut self) -> Result<(), ConfigError> {
        if self
            .database
            .url
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            self.database.url = None;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "data_dir is empty: set it to a directory Solobase may write to".into(),
            ));
        }
        if self.database.pool_size < 2 {
            return Err(ConfigError::Invalid(format!(
                "database.pool_size is {}: set it to at least 2 (a migration holds a lock on one \
                 connection while it runs on another)",
                self.database.pool_size
            )));
        }
        if let Some(bad) = self
            .extensions
            .approved
            .iter()
            .find(|n| solobase_sdk::ExtensionName::parse(n).is_err())
        {
            return Err(ConfigError::Invalid(format!(
                "extensions.approved lists {bad:?}, which is not an extension name (lowercase \
                 letters, digits and '-')"
            )));
        }
        if !(1..=1000).contains(&self.extensions.pool_size) {
            return Err(ConfigError::Invalid(format!(
                "extensions.pool_size is {}: set it between 1 and 1000",
                self.extensions.pool_size
            )));
        }
        if self.extensions.max_in_flight == 0 {
            return Err(ConfigError::Invalid(
                "extensions.max_in_flight is 0: set it to at least 1".into(),
            ));
        }
        if self.extensions.health_interval_ms < 100 || self.extensions.health_timeout_ms == 0 {
            return Err(ConfigError::Invalid(format!(
                "extensions.health_interval_ms is {} and health_timeout_ms {}: check at most \
                 every 100 ms, with a time limit of at least 1 ms",
                self.extensions.health_interval_ms, self.extensions.health_timeout_ms
            )));
        }
        if self.extensions.jobs_poll_ms < 10 || self.extensions.job_timeout_secs == 0 {
            return Err(ConfigError::Invalid(format!(
                "extensions.jobs_poll_ms is {} and job_timeout_secs {}: poll at most every 10 ms, \
                 with a time limit of at least 1 s",
                self.extensions.jobs_poll_ms, self.extensions.job_timeout_secs
            )));
        }
        if !(1..=3600).contains(&self.extensions.resync_secs) {
            return Err(ConfigError::Invalid(format!(
                "extensions.resync_secs is {}: set it between 1 and 3600",
                self.extensions.resync_secs
            )));
        }
        if !(100..=3_600_000).contains(&self.extensions.stats_interval_ms) {
            return Err(ConfigError::Invalid(format!(
                "extensions.stats_interval_ms is {}: set it between 100 and 3600000",
                self.extensions.stats_interval_ms
            )));
        }
        for (name, limits) in &self.extensions.limits {
            if solobase_sdk::ExtensionName::parse(name).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "[extensions.limits.{name}]: {name:?} is not an extension name"
                )));
            }
            if limits.max_in_flight == Some(0) {
                return Err(ConfigError::Invalid(format!(
                    "extensions.limits.{name}.max_in_flight is 0: set it to at least 1"
                )));
            }
            if limits
                .max_connections
                .is_some_and(|n| !(1..=1000).contains(&n))
            {
                return Err(ConfigError::Invalid(format!(
                    "extensions.limits.{name}.max_connections: set it between 1 and 1000"
                )));
            }
        }
        if self.server.max_json_bytes == 0 || self.server.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "server.max_json_bytes and server.max_connections must be at least 1".into(),
            ));
        }
        if self.server.body_timeout_ms > 0 && self.server.body_min_rate == 0 {
            return Err(ConfigError::Invalid(
                "server.body_min_rate is 0: set the bytes per second a body must keep up (e.g. 500)"
                    .into(),
            ));
        }
        if self.auth.token_ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "auth.token_ttl_secs is 0: set it to the token lifetime in seconds".into(),
            ));
        }
        Ok(())
    }

    /// Where uploaded files live.
    pub fn storage_dir(&self) -> PathBuf {
        self.data_dir.join("storage")
    }
}

/// Turns a toml error into one line: `line 3, column 1: unknown field `bnd` in [server], …`.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn shipped_file_parses_to_the_defaults() {
        let text = include_str!("../config/solobase.toml");
        let parsed = Config::from_toml(text).expect("shipped config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::from_toml("[server]\nbind = \"127.0.0.1:1\"\nbnd = 3\n").unwrap_err();
        assert!(err.contains("bnd"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let err = Config::from_toml("[server]\nworkers = \"many\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let dir = std::env::temp_dir().join(format!("solobase-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[server]\nbind = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "SOLOBASE_BIND" => Some("127.0.0.1:2".to_string()),
            "SOLOBASE_DATA_DIR" => Some("/from/env".to_string()),
            _ => None,
        };
        let flags = Overrides {
            data_dir: Some("/from/flag".into()),
            ..Overrides::default()
        };
        let c = Config::load_with_env(Some(&file), &flags, env).unwrap();
        assert_eq!(c.server.bind.port(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn request_limits_come_from_the_file_and_the_environment() {
        let c = Config::from_toml(
            "[server]\nbody_timeout_ms = 7\n[extensions]\nmax_body_bytes = 100\n\
             [extensions.limits.webhooks]\nmax_body_bytes = 10\n",
        )
        .unwrap();
        assert_eq!(c.server.body_timeout_ms, 7);
        assert_eq!(c.extensions.max_body_bytes_for("webhooks"), 10);
        assert_eq!(c.extensions.max_body_bytes_for("analytics"), 100);
        let env = |k: &str| match k {
            "SOLOBASE_REQUEST_HEAD_TIMEOUT_MS" => Some("1500".to_string()),
            "SOLOBASE_BODY_TIMEOUT_MS" => Some("0".to_string()),
            _ => None,
        };
        let c = Config::load_with_env(None, &Overrides::default(), env).unwrap();
        assert_eq!(c.server.request_head_timeout_ms, 1500);
        assert_eq!(c.server.body_timeout_ms, 0);
    }

    #[test]
    fn a_body_deadline_without_a_rate_is_refused() {
        let mut c = Config::default();
        c.server.body_min_rate = 0;
        let err = c.check().unwrap_err();
        assert!(err.to_string().contains("server.body_min_rate"), "{err}");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let env = |k: &str| (k == "SOLOBASE_BIND").then(|| "nonsense".to_string());
        let err = Config::load_with_env(None, &Overrides::default(), env).unwrap_err();
        assert!(err.to_string().contains("SOLOBASE_BIND"), "{err}");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::load_with_env(
            Some(Path::new("/nonexistent/solobase.toml")),
            &Overrides::default(),
            no_env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/solobase.toml"));
    }
}
