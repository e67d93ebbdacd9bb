//! Structured logs through tracing-subscriber: human-readable lines (coloured on a terminal)
//! or one JSON object per line (`SOLOBASE_LOG_FORMAT=json`). Spans carry the request id.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. A second call (tests spawn many apps) is a no-op.
pub fn init(log: &LogConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(&log.level).map_err(|e| {
        format!(
            "invalid log level {:?} (log.level / SOLOBASE_LOG): {e}",
            log.level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    Ok(())
}
