//! The environment layer: `SOLOBASE_*` variables (and `DATABASE_URL`) over the file's
//! values. A bad value names its variable and what was expected.

use std::path::PathBuf;

use super::{AdminSeed, Config, ConfigError, LogFormat};

impl Config {
    pub(super) fn apply_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
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
        if let Some(v) = get("SOLOBASE_DATABASE_CA_FILE") {
            self.database.ca_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("SOLOBASE_OUTBOUND_CA_FILE") {
            self.extensions.outbound_ca_file = Some(PathBuf::from(v));
        }
        match (get("SOLOBASE_TLS_CERT"), get("SOLOBASE_TLS_KEY")) {
            (Some(cert), Some(key)) => {
                self.server.tls = Some(super::TlsConfig {
                    cert: PathBuf::from(cert),
                    key: PathBuf::from(key),
                });
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "SOLOBASE_TLS_CERT and SOLOBASE_TLS_KEY go together: set both (or neither)"
                        .into(),
                ));
            }
        }
        if let Some(v) = get("SOLOBASE_TRUSTED_PROXIES") {
            self.server.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
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
        if let Some(v) = get("SOLOBASE_EXTENSIONS_POOL_SIZE") {
            self.extensions.pool_size =
                parse("SOLOBASE_EXTENSIONS_POOL_SIZE", v, "a whole number")?;
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
}
