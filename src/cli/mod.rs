//! The command line: `solobase serve`, `solobase users create`, `solobase storage
//! buckets|bucket`, `solobase extensions
//! list|info|enable|disable|revoke|migrate|rollback|purge|audit|status|health|metrics|config`,
//! `solobase config validate`; the developer tools (`solobase extensions generate|validate|
//! keygen|package|verify|publish|search|install|uninstall`, `info --remote`) are handed to
//! `solobase-devtools` (see [`tools`]).
//!
//! Exit codes: 0 success; 1 a runtime failure (database unreachable, port taken …); 2 a usage
//! or configuration error (bad flag, bad config file, bad environment variable).

use std::ffi::OsString;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::auth::{Email, Password, Role, users};
use crate::config::{Config, ConfigError, Overrides};
use crate::db::{Database, Mode, migrate};
use crate::startup::Application;

mod extension_config;
mod extension_status;
pub mod extensions;
mod storage;
mod tools;

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
    Serve(ServeArgs),
    /// Manage user accounts
    #[command(subcommand)]
    Users(UsersCommand),
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
        subcommand,
        after_help = "Examples:\n  solobase extensions list\n  solobase extensions info webhooks --json\n  \
                      solobase extensions status\n  \
                      solobase extensions health webhooks || echo \"not healthy: exit $?\"\n  \
                      solobase extensions metrics webhooks --json\n  \
                      solobase extensions enable webhooks --grant-all\n  \
                      solobase extensions revoke webhooks network.outbound\n  \
                      solobase extensions config webhooks set max_endpoints=20\n  \
                      solobase extensions migrate webhooks --dry-run\n  \
                      solobase extensions rollback webhooks 0 --dry-run\n  \
                      solobase extensions audit --extension webhooks --since 2026-11-26T08:00:00Z\n  \
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
    Extensions(ExtensionsCommand),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
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

#[derive(Debug, Subcommand)]
enum ExtensionsCommand {
    /// List the compiled-in extensions: enabled or not, permissions granted and not granted
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Enable an extension on every instance, granting the permissions it requests (asks
    /// when it requests some not granted yet and no --grant… flag says what to do)
    Enable {
        /// The extension, e.g. webhooks
        name: String,
        /// Grant every permission it requests
        #[arg(long, conflicts_with_all = ["grant", "grant_none"])]
        grant_all: bool,
        /// Grant this requested permission (repeatable); the others stay not granted
        #[arg(long, value_name = "PERMISSION", conflicts_with = "grant_none")]
        grant: Vec<String>,
        /// Grant nothing more: its calls needing a permission not granted fail
        #[arg(long)]
        grant_none: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Everything about one extension: manifest, state, health, permissions, configuration,
    /// applied migrations
    Info {
        /// The extension, e.g. webhooks
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        /// Show its versions in the registry instead (no database)
        #[arg(long)]
        remote: bool,
        /// The registry, with --remote [default: [extensions] registry]
        #[arg(long, value_name = "DIR|URL", requires = "remote")]
        registry: Option<String>,
        #[command(flatten)]
        location: Location,
    },
    /// Disable an extension on every instance (its routes answer 404, its hooks are skipped)
    Disable {
        /// The extension, e.g. webhooks
        name: String,
        #[command(flatten)]
        location: Location,
    },
    /// Revoke permissions from an extension on every instance
    Revoke {
        /// The extension, e.g. webhooks
        name: String,
        /// The permissions, e.g. users.read
        #[arg(required = true, value_name = "PERMISSION")]
        permissions: Vec<String>,
        #[command(flatten)]
        location: Location,
    },
    /// Apply an extension's pending migrations (all, or up to --to)
    Migrate {
        /// The extension, e.g. webhooks
        name: String,
        /// Stop at this version
        #[arg(long, value_name = "VERSION")]
        to: Option<u32>,
        /// Print the SQL that would run and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Revert an extension's migrations above VERSION (0 reverts all), newest first, in one
    /// transaction; the extension must be disabled
    Rollback {
        /// The extension, e.g. webhooks
        name: String,
        /// The version to go back to
        version: u32,
        /// Print the SQL that would run and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Show the audit log, oldest of the selected entries first
    Audit {
        /// Only entries about this extension
        #[arg(long, value_name = "NAME")]
        extension: Option<String>,
        /// Only entries at or after this time (RFC 3339, e.g. 2026-11-26T08:00:00Z)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// How many of the newest entries
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print JSON instead of lines
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Every compiled-in extension: enabled, health, and the running instances' request and
    /// error counts
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// An extension's health and its recent checks. Exit code: 0 healthy, 3 degraded,
    /// 4 critical, 5 unknown (never checked, disabled)
    Health {
        /// The extension, e.g. webhooks
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// The running instances' counters (requests, errors, hooks, panics, jobs …), per
    /// extension; with a name, also per instance
    Metrics {
        /// Only this extension
        name: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Show or change an extension's configuration, on every instance
    #[command(after_help = "Examples:\n  solobase extensions config webhooks\n  \
                            solobase extensions config webhooks set max_endpoints=20\n  \
                            solobase extensions config webhooks set --file webhooks.toml\n  \
                            solobase extensions config webhooks edit")]
    Config {
        /// The extension, e.g. webhooks
        name: String,
        #[command(subcommand)]
        op: Option<ConfigCommandOp>,
        #[command(flatten)]
        location: Location,
    },
    /// Drop an extension's schema (all its data) and database role
    Purge {
        /// The extension, e.g. webhooks
        name: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Describe the compiled-in extensions for the developer tools (manifest, configuration
    /// schema, required permissions) as JSON
    #[command(hide = true)]
    Compiled {
        /// Print JSON (the only format)
        #[arg(long)]
        json: bool,
    },
    /// The developer tools (generate, validate, keygen, package, verify, publish, search,
    /// install, uninstall), handed to `solobase-devtools`
    #[command(external_subcommand)]
    Tool(Vec<OsString>),
}

/// What `extensions config NAME` does (get when none is given).
#[derive(Debug, Subcommand)]
enum ConfigCommandOp {
    /// Print the configuration in force (TOML), where it comes from, and its etag
    Get {
        /// Print JSON instead of TOML
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema the configuration is checked against
    Schema,
    /// Change keys (KEY=VALUE, the value in TOML syntax) or replace it all (--file); checked
    /// against the schema before anything is stored
    Set {
        /// KEY=VALUE, e.g. greeting="hello" or limits.max=5
        #[arg(value_name = "KEY=VALUE")]
        assignments: Vec<String>,
        /// Remove this key (repeatable)
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
        /// Replace the whole configuration with this TOML file
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Only if the configuration still has this etag (from `get`)
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Edit it in $VISUAL or $EDITOR; problems reopen the editor with them listed
    Edit,
}

/// Flags that override the configuration file and environment.
#[derive(Debug, Args)]
struct Location {
    /// Data directory [env: SOLOBASE_DATA_DIR, default ./data]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL; overrides DATABASE_URL and [database] url
    #[arg(long, value_name = "URL", global = true)]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [env: SOLOBASE_BIND, default 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    #[command(flatten)]
    location: Location,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create an account (works whether or not a server is running)
    Create(CreateUserArgs),
}

#[derive(Debug, Args)]
struct CreateUserArgs {
    #[arg(long)]
    email: String,
    /// The password (visible to other local users in the process list: prefer --password-stdin)
    #[arg(
        long,
        conflicts_with = "password_stdin",
        required_unless_present = "password_stdin"
    )]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    /// Make the account an administrator
    #[arg(long)]
    admin: bool,
    #[command(flatten)]
    location: Location,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check the configuration (file and environment) and print the result; exit 2 if invalid
    Validate,
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
            if let Some(unhealthy) = e.downcast_ref::<crate::cli::extensions::Unhealthy>() {
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
        Command::Serve(args) => {
            let overrides = Overrides {
                bind: args.bind,
                data_dir: args.location.data_dir,
                database_url: args.location.database_url,
            };
            let config = load(config_path, &overrides)?;
            serve(config).await
        }
        Command::Users(UsersCommand::Create(args)) => {
            let overrides = Overrides {
                bind: None,
                data_dir: args.location.data_dir.clone(),
                database_url: args.location.database_url.clone(),
            };
            let config = load(config_path, &overrides)?;
            create_user(config, args).await
        }
        Command::Storage(command) => {
            let location = command.location();
            let overrides = Overrides {
                bind: None,
                data_dir: location.data_dir.clone(),
                database_url: location.database_url.clone(),
            };
            let config = load(config_path, &overrides)?;
            storage::run(config, command).await
        }
        // The developer tools: another program, which this one becomes.
        Command::Extensions(ExtensionsCommand::Tool(args)) => tools::hand_over(config_path, args),
        Command::Extensions(ExtensionsCommand::Info {
            name,
            remote: true,
            registry,
            json,
            ..
        }) => {
            let mut args: Vec<std::ffi::OsString> = vec!["info".into(), name.into()];
            if let Some(registry) = registry {
                args.extend(["--registry".into(), registry.into()]);
            }
            if json {
                args.push("--json".into());
            }
            tools::hand_over(config_path, args)
        }
        Command::Extensions(ExtensionsCommand::Compiled { .. }) => tools::print_compiled(),
        Command::Extensions(command) => {
            let location = match &command {
                ExtensionsCommand::List { location, .. }
                | ExtensionsCommand::Enable { location, .. }
                | ExtensionsCommand::Disable { location, .. }
                | ExtensionsCommand::Info { location, .. }
                | ExtensionsCommand::Revoke { location, .. }
                | ExtensionsCommand::Migrate { location, .. }
                | ExtensionsCommand::Rollback { location, .. }
                | ExtensionsCommand::Audit { location, .. }
                | ExtensionsCommand::Status { location, .. }
                | ExtensionsCommand::Health { location, .. }
                | ExtensionsCommand::Metrics { location, .. }
                | ExtensionsCommand::Config { location, .. }
                | ExtensionsCommand::Purge { location, .. } => location,
                ExtensionsCommand::Tool(_) | ExtensionsCommand::Compiled { .. } => {
                    unreachable!("commands without a database are matched above")
                }
            };
            let overrides = Overrides {
                bind: None,
                data_dir: location.data_dir.clone(),
                database_url: location.database_url.clone(),
            };
            let config = load(config_path, &overrides)?;
            match command.job() {
                Job::Schema(action) => crate::cli::extensions::run(config, action).await,
                Job::Admin(action) => crate::cli::extensions::run_admin(config, action).await,
                Job::Audit(query) => {
                    let json = query.json;
                    crate::cli::extensions::print_audit(config, query.into_filter()?, json).await
                }
            }
        }
        Command::Config(ConfigCommand::Validate) => {
            let config = Config::load(config_path, &Overrides::default())?;
            println!(
                "configuration OK: data_dir={}, bind={}, database={}",
                config.data_dir.display(),
                config.server.bind,
                if config.database.url.is_some() {
                    "DATABASE_URL"
                } else {
                    "embedded"
                }
            );
            validate_extension_configs(&config.extensions.config_dir)
        }
    }
}

/// Checks every compiled-in extension's configuration file, and that every file in `dir`
/// belongs to one; prints each result, fails (exit 2) when any is wrong.
fn validate_extension_configs(dir: &std::path::Path) -> anyhow::Result<()> {
    use crate::runtime::config_file;
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for registration in crate::runtime::registrations() {
        let Ok(manifest) = solobase_sdk::Manifest::parse(registration.manifest) else {
            continue;
        };
        let name = manifest.name.to_string();
        let file = config_file::path(dir, &name);
        match config_file::load(dir, &name, &registration) {
            Ok(value) if value.is_null() => println!("{name}: no {} (defaults)", file.display()),
            Ok(_) => println!("{name}: {} OK", file.display()),
            Err(e) => problems.push(e),
        }
        names.push(name);
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if path.extension().is_some_and(|e| e == "toml") && !names.iter().any(|n| n == stem) {
                problems.push(format!(
                    "{}: no compiled-in extension is named {stem:?}; the extensions are: {}",
                    path.display(),
                    names.join(", ")
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(problems.join("\n")).into())
    }
}

fn load(path: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    let config = Config::load(path, overrides)?;
    crate::telemetry::init(&config.log).map_err(ConfigError::Invalid)?;
    Ok(config)
}

async fn serve(config: Config) -> anyhow::Result<()> {
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

async fn create_user(config: Config, args: CreateUserArgs) -> anyhow::Result<()> {
    let email =
        Email::parse(&args.email).map_err(|e| ConfigError::Invalid(format!("--email: {e}")))?;
    let raw = match args.password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_to_string(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let password = Password::parse(raw, config.auth.min_password_length)
        .map_err(|e| ConfigError::Invalid(format!("--password: {e}")))?;
    let role = if args.admin { Role::Admin } else { Role::User };
    let db = Database::connect(&config, Mode::Share).await?;
    let result = async {
        migrate::run(db.pool()).await?;
        let (user, _event) = users::create(db.pool(), &email, &password, role).await?;
        println!("created {} {} ({})", role.as_str(), user.email, user.id);
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

/// `solobase extensions audit`'s selection, as given.
struct AuditQuery {
    extension: Option<String>,
    since: Option<String>,
    limit: i64,
    json: bool,
}

impl AuditQuery {
    fn into_filter(self) -> Result<crate::audit::Filter, ConfigError> {
        use time::format_description::well_known::Rfc3339;
        let since = self
            .since
            .map(|s| {
                time::OffsetDateTime::parse(&s, &Rfc3339).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "--since {s:?}: not an RFC 3339 time such as 2026-11-26T08:00:00Z ({e})"
                    ))
                })
            })
            .transpose()?;
        if !(1..=crate::audit::MAX_PAGE).contains(&self.limit) {
            return Err(ConfigError::Invalid(format!(
                "--limit {}: ask for 1 to {} entries",
                self.limit,
                crate::audit::MAX_PAGE
            )));
        }
        Ok(crate::audit::Filter {
            extension: self.extension,
            action: None,
            since,
            before: None,
            limit: self.limit,
        })
    }
}

/// What an `extensions` command does.
enum Job {
    Schema(crate::cli::extensions::Action),
    Admin(crate::cli::extensions::AdminAction),
    Audit(AuditQuery),
}

impl ExtensionsCommand {
    fn job(self) -> Job {
        use crate::cli::extensions::{Action, AdminAction};
        use crate::runtime::control::Grant;
        Job::Schema(match self {
            ExtensionsCommand::List { json, .. } => return Job::Admin(AdminAction::List { json }),
            ExtensionsCommand::Enable {
                name,
                grant_all,
                grant,
                grant_none,
                ..
            } => {
                let grant = if grant_all {
                    Grant::All
                } else if grant_none || !grant.is_empty() {
                    Grant::Only(grant)
                } else {
                    Grant::Unspecified
                };
                return Job::Admin(AdminAction::Enable { name, grant });
            }
            ExtensionsCommand::Info { name, json, .. } => {
                return Job::Admin(AdminAction::Info { name, json });
            }
            ExtensionsCommand::Disable { name, .. } => {
                return Job::Admin(AdminAction::Disable { name });
            }
            ExtensionsCommand::Status { json, .. } => {
                return Job::Admin(AdminAction::Status { json });
            }
            ExtensionsCommand::Health { name, json, .. } => {
                return Job::Admin(AdminAction::Health { name, json });
            }
            ExtensionsCommand::Metrics { name, json, .. } => {
                return Job::Admin(AdminAction::Metrics { name, json });
            }
            ExtensionsCommand::Config { name, op, .. } => {
                use crate::cli::extensions::ConfigOp;
                let op = match op.unwrap_or(ConfigCommandOp::Get { json: false }) {
                    ConfigCommandOp::Get { json } => ConfigOp::Get { json },
                    ConfigCommandOp::Schema => ConfigOp::Schema,
                    ConfigCommandOp::Set {
                        assignments,
                        unset,
                        file,
                        if_match,
                        json,
                    } => ConfigOp::Set {
                        assignments,
                        unset,
                        file,
                        if_match,
                        json,
                    },
                    ConfigCommandOp::Edit => ConfigOp::Edit,
                };
                return Job::Admin(AdminAction::Config { name, op });
            }
            ExtensionsCommand::Revoke {
                name, permissions, ..
            } => return Job::Admin(AdminAction::Revoke { name, permissions }),
            ExtensionsCommand::Migrate {
                name,
                to,
                dry_run,
                json,
                ..
            } => Action::Migrate {
                name,
                to,
                dry_run,
                json,
            },
            ExtensionsCommand::Rollback {
                name,
                version,
                dry_run,
                json,
                ..
            } => Action::Rollback {
                name,
                to: version,
                dry_run,
                json,
            },
            ExtensionsCommand::Purge { name, yes, .. } => Action::Purge { name, yes },
            ExtensionsCommand::Tool(_) | ExtensionsCommand::Compiled { .. } => {
                unreachable!("commands without a database are matched in run")
            }
            ExtensionsCommand::Audit {
                extension,
                since,
                limit,
                json,
                ..
            } => {
                return Job::Audit(AuditQuery {
                    extension,
                    since,
                    limit,
                    json,
                });
            }
        })
    }
}
