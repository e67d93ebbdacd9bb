//! Host configuration: `config/solobase.toml`, then `SOLOBASE_*` environment variables, then
//! command-line flags, each layer overriding the one before.
//!
//! Every key is documented (with its default) in the checked-in `config/solobase.toml`. Parsing
//! is strict: an unknown key is an error naming the key and the file, so a typo never silently
//! falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub(crate) mod allow;
mod env;
mod extensions;
pub mod proxies;
mod sections;

pub use allow::AllowList;
pub use extensions::{BreakerSettings, DbLimits, ExtensionLimits, ExtensionsConfig, Limits, Rate};
pub use proxies::{ClientIpHeader, TrustedProxies};
pub use sections::{
    AuthConfig, DatabaseConfig, EmbeddedConfig, LogConfig, LogFormat, MetricsConfig,
    RetentionConfig, ServerConfig, StorageConfig, TlsConfig,
};

/// The path read when `--config` is not given. A missing file at this path is not an error.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "config/solobase.toml";

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
    pub retention: RetentionConfig,
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
            retention: RetentionConfig::default(),
            bootstrap_admin: None,
            source: None,
            allow_test_extensions: false,
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
    pub(crate) fn load_with_env(
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
    pub(crate) fn from_file(path: &Path) -> Result<Self, ConfigError> {
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
        if self.retention.interval_secs == 0 || self.retention.batch_size == 0 {
            return Err(ConfigError::Invalid(
                "retention.interval_secs and retention.batch_size must be at least 1 (set \
                 outbox_days and audit_days to 0 to keep everything)"
                    .into(),
            ));
        }
        TrustedProxies::parse(&self.server.trusted_proxies, self.server.client_ip_header)
            .map_err(ConfigError::Invalid)?;
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
            if let Some(allow) = &limits.outbound_allow {
                AllowList::parse(allow).map_err(|e| {
                    ConfigError::Invalid(format!("extensions.limits.{name}.outbound_allow: {e}"))
                })?;
            }
        }
        AllowList::parse(&self.extensions.outbound_allow)
            .map_err(|e| ConfigError::Invalid(format!("extensions.outbound_allow: {e}")))?;
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
        if self.auth.client_burst > 0 && self.auth.client_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "auth.client_per_minute is 0: set the attempts a client earns back per minute, \
                 or auth.client_burst = 0 for no per-client limit"
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
        let text = include_str!("../../config/solobase.toml");
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
        assert_eq!(c.extensions.resolve("webhooks").max_body_bytes, 10);
        assert_eq!(c.extensions.resolve("analytics").max_body_bytes, 100);
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
