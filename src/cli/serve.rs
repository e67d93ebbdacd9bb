//! `solobase serve`: the HTTP server until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;

use clap::Args;

use super::Location;
use crate::config::Overrides;
use crate::startup::Application;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on [env: SOLOBASE_BIND, default 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    #[command(flatten)]
    location: Location,
}

/// Builds the server as configured and serves until a signal.
pub(super) async fn run(config_path: Option<&Path>, args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        bind: args.bind,
        ..args.location.overrides()
    };
    let config = super::load(config_path, &overrides)?;
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
