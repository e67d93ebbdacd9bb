//! The command line: `solobase serve`, `solobase users …`, `solobase storage …`,
//! `solobase extensions …` (and the
//! developer tools it hands over to `solobase-devtools`), `solobase config validate`,
//! `solobase completions`. One module per group of commands, each with its clap
//! definitions; [`run`] is the one dispatch.
//!
//! Exit codes: 0 success; 1 a runtime failure (database unreachable, port taken …); 2 a usage
//! or configuration error (bad flag, bad config file, bad environment variable).

mod config;
mod extensions;
mod serve;
mod storage;
mod users;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Overrides};
use crate::db::{Mode, Postgres};

#[derive(Debug, Parser)]
#[command(
    name = "solobase",
    version,
    about = "A single-binary backend on PostgreSQL with compile-time extensions",
    after_help = "Examples:\n  solobase serve\n  solobase serve --bind 0.0.0.0:8080 --data-dir /var/lib/solobase\n  \
                  DATABASE_URL=postgres://app@db/app solobase serve\n  \
                  solobase users create --email admin@example.com --password-stdin --admin"
)]
struct Cli {
    /// Configuration file [default: config/solobase.toml, if present]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (embedded PostgreSQL unless DATABASE_URL is set)
    Serve(serve::ServeArgs),
    /// Manage user accounts
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Storage buckets: list them, show one, set who may read its objects
    #[command(
        subcommand,
        after_help = "Examples:\n  solobase storage buckets\n  \
                      solobase storage bucket avatars --access public\n  \
                      solobase storage bucket reports --access authenticated\n  \
                      solobase storage bucket reports --json"
    )]
    Storage(storage::StorageCommand),
    /// Manage extensions: list, info, status, health, metrics, enable (with grants), disable,
    /// revoke, configure, migrate, roll back, purge, read the audit log; generate a new one,
    /// validate one's folder; share them: keygen, package, verify, publish, search, install,
    /// uninstall
    #[command(
        after_help = "Examples:\n  solobase extensions list\n  solobase extensions info webhooks --json\n  \
                      solobase extensions status\n  \
                      solobase extensions health webhooks || echo \"not healthy: exit $?\"\n  \
                      solobase extensions metrics webhooks --json\n  \
                      solobase extensions enable webhooks --grant-all\n  \
                      solobase extensions revoke webhooks network.outbound\n  \
                      solobase extensions config webhooks set max_endpoints=20\n  \
                      solobase extensions migrate webhooks --dry-run\n  \
                      solobase extensions rollback webhooks 0 --dry-run\n  \
                      solobase extensions audit --extension webhooks --since 2026-11-26T08:00:00Z\n\n\
                      The developer tools, run by solobase-devtools (beside this binary):\n  \
                      solobase extensions generate notes\n  \
                      solobase extensions validate extensions/custom/notes\n  \
                      solobase extensions keygen --output signing.key\n  \
                      solobase extensions package notes --key signing.key\n  \
                      solobase extensions publish dist/notes-0.1.0.tar.gz --registry /srv/registry\n  \
                      solobase extensions search notes\n  \
                      solobase extensions info notes --remote\n  \
                      solobase extensions install notes@0.1.0\n  \
                      solobase extensions uninstall notes"
    )]
    Extensions(extensions::ExtensionsArgs),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  solobase completions bash > /etc/bash_completion.d/solobase\n  \
                            solobase completions zsh > \"${fpath[1]}/_solobase\"\n  \
                            solobase completions fish > ~/.config/fish/completions/solobase.fish"
    )]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// Flags that override the configuration file and environment.
#[derive(Debug, Args)]
pub(crate) struct Location {
    /// Data directory [env: SOLOBASE_DATA_DIR, default ./data]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL; overrides DATABASE_URL and [database] url
    #[arg(long, value_name = "URL", global = true)]
    database_url: Option<String>,
}

impl Location {
    fn overrides(&self) -> Overrides {
        Overrides {
            bind: None,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
        }
    }
}

/// Runs the command line and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(unhealthy) = e.downcast_ref::<extensions::Unhealthy>() {
                return ExitCode::from(unhealthy.exit_code());
            }
            eprintln!("error: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_path = cli.config.as_deref();
    match cli.command {
        Command::Serve(args) => serve::run(config_path, args).await,
        Command::Users(command) => users::run(config_path, command).await,
        Command::Storage(command) => {
            let config = load(config_path, &command.location().overrides())?;
            storage::run(config, command).await
        }
        Command::Extensions(args) => extensions::run(config_path, args).await,
        Command::Config(command) => config::run(config_path, command),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "solobase",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// The configuration for a command (file < environment < flags), with logging set up.
fn load(path: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    let config = Config::load(path, overrides)?;
    crate::telemetry::init(&config.log).map_err(ConfigError::Invalid)?;
    Ok(config)
}

/// Connects to the database (the running server's embedded cluster, if there is one),
/// brings the host's schema up to date when `migrate`, runs `work`, and closes.
pub(crate) async fn with_db<T>(
    config: &Config,
    migrate: bool,
    work: impl AsyncFnOnce(&Postgres) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let db = Postgres::connect(config, Mode::Share).await?;
    let result = async {
        if migrate {
            crate::db::migrate::run(db.pool()).await?;
        }
        work(&db).await
    }
    .await;
    db.close().await;
    result
}
