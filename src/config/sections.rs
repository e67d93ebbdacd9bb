//! The configuration's sections other than `[extensions]`: `[server]`, `[database]`,
//! `[auth]`, `[storage]`, `[log]`, `[metrics]`, `[retention]`, each with its documented
//! defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub(crate) shutdown_timeout_secs: u64,
    /// Time a client has to send a request's line and headers, from its first byte, in ms;
    /// beyond, it is answered 408 and disconnected (slow-header attacks). 0: no limit.
    pub(crate) request_head_timeout_ms: u64,
    /// How long an idle keep-alive connection stays open, in seconds (0: closed after each
    /// response).
    pub(crate) keep_alive_secs: u64,
    /// Time a client has to send a request's body, in ms: the allowance grows by one second for
    /// every `body_min_rate` bytes received, so a large upload at a decent speed is never cut
    /// off while a body trickled byte by byte is (slow-body attacks). Beyond, 408. 0: no limit.
    pub(crate) body_timeout_ms: u64,
    /// Bytes per second a body must keep up to earn more time (see `body_timeout_ms`).
    pub(crate) body_min_rate: u64,
    /// Largest JSON body the host's own API accepts, in bytes; beyond, 413.
    pub(crate) max_json_bytes: usize,
    /// Connections each worker serves at once; beyond, new ones wait in the listen backlog.
    pub(crate) max_connections: usize,
    /// Reverse proxies (CIDRs or addresses) whose forwarding header names the client: see
    /// [`super::proxies`]. Empty: the client is the connection's peer.
    pub trusted_proxies: Vec<String>,
    /// The forwarding header the trusted proxies set.
    pub client_ip_header: super::ClientIpHeader,
    /// Serve https with this certificate and key instead of plain http.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: PEM files, read again whenever they change (a renewed certificate is used
/// for the next handshakes, without a restart).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain: the server's certificate first, then its intermediates.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// A PEM file of CA certificates for `verify-ca`/`verify-full` when the URL names no
    /// `sslrootcert` (otherwise the system's are used).
    pub ca_file: Option<PathBuf>,
    /// A PostgreSQL connection URL. Empty means: run the embedded cluster.
    pub url: Option<String>,
    /// Maximum connections in the host's pool.
    pub pool_size: usize,
    /// Give up connecting after this many seconds.
    pub(crate) connect_timeout_secs: u64,
    pub(crate) embedded: EmbeddedConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// Directory holding `initdb` and `postgres`; empty means search for them.
    pub(crate) bin_dir: Option<PathBuf>,
    /// The unprivileged system user that runs PostgreSQL when Solobase is started as root.
    pub(crate) system_user: String,
    /// How long to wait for the embedded server to accept connections.
    pub(crate) start_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether `POST /api/v1/auth/signup` creates accounts.
    pub signup_enabled: bool,
    /// Lifetime of a login token.
    pub(crate) token_ttl_secs: u64,
    /// Shortest accepted password.
    pub(crate) min_password_length: usize,
    /// Login and sign-up attempts one client address (an IPv6 address by its /64) may make
    /// at once; 0: no per-client limit.
    pub client_burst: u32,
    /// Attempts a client address earns back per minute after its burst.
    pub client_per_minute: u32,
    /// Attempts on one account (normalised e-mail) that are not slowed down; later attempts
    /// wait a backoff that doubles with each one. Cleared by a successful login.
    pub account_free_attempts: u32,
    /// The first backoff of an account, in seconds.
    pub account_backoff_secs: u64,
    /// The longest backoff of an account, in seconds: how long its owner can be kept waiting
    /// by someone else's attempts. 0: no per-account limit.
    pub account_max_backoff_secs: u64,
    /// An account's attempts are forgotten after this many seconds without one.
    pub account_forget_secs: u64,
    /// Days an address keeps passing an account's backoff after a successful login to that
    /// account from it (kept in memory, per instance). 0: never.
    pub known_address_days: u64,
    /// Passwords hashed or verified at once; 0: one per CPU.
    pub hash_concurrency: usize,
    /// Requests that may wait for a hashing slot; beyond, 503 at once.
    pub hash_queue: usize,
    /// Repeated refused admin actions of one user (per action) within this many seconds are
    /// audited as their first entry plus one entry counting the others.
    pub audit_denial_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
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

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Also serve `/metrics` without authentication on this address, for a Prometheus scraper
    /// on a private network (the main server serves it to administrators only).
    pub bind: Option<SocketAddr>,
}

/// How long the host keeps what only grows: events in the outbox, entries in the audit log.
/// One instance at a time deletes what is older, in batches.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days an event stays in the outbox (0: for ever). Older events are deleted whether or not
    /// every extension's feed has read them: keep it longer than any extension stays disabled.
    pub outbox_days: u32,
    /// Days an audit entry stays (0: for ever).
    pub audit_days: u32,
    /// Where audit entries are appended, one JSON object per line in `audit-<date>.jsonl`,
    /// before they are deleted (none: deleted without an archive).
    pub audit_archive_dir: Option<PathBuf>,
    /// Seconds between two retention runs.
    pub interval_secs: u64,
    /// Rows deleted per transaction.
    pub batch_size: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            outbox_days: 30,
            audit_days: 365,
            audit_archive_dir: None,
            interval_secs: 3600,
            batch_size: 1000,
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
            trusted_proxies: Vec::new(),
            client_ip_header: super::ClientIpHeader::default(),
            tls: None,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
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
            client_burst: 20,
            client_per_minute: 20,
            account_free_attempts: 5,
            account_backoff_secs: 1,
            account_max_backoff_secs: 60,
            account_forget_secs: 900,
            known_address_days: 30,
            hash_concurrency: 0,
            hash_queue: 16,
            audit_denial_window_secs: 60,
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
