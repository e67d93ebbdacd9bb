//! `solobase extensions …`: the compiled-in extensions from the command line, whether or not
//! a server runs (on the embedded cluster, they use the running server's), and the developer
//! tools, handed over to `solobase-devtools`.
//!
//! - [`admin`] — `list`, `info`, `enable`, `disable`, `revoke`, `audit`;
//! - [`schema`] — `migrate`, `rollback`, `purge`, as the extension's own role;
//! - [`status`] — `status`, `health`, `metrics`, from what running instances write;
//! - [`config`] — `config NAME get|schema|set|edit`;
//! - [`tools`] — `generate`, `validate`, `keygen`, `package`, `verify`, `publish`, `search`,
//!   `install`, `uninstall`, `info --remote`.

mod admin;
mod config;
mod schema;
mod status;
mod tools;

use std::ffi::OsString;
use std::path::Path;

use clap::{Args, Subcommand};
use solobase_sdk::{Manifest, Registration};

pub(crate) use status::Unhealthy;

use super::{Location, with_db};
use crate::config::ConfigError;
use crate::runtime::control::Grant;

/// `solobase extensions [--data-dir DIR] [--database-url URL] COMMAND`.
#[derive(Debug, Args)]
pub(super) struct ExtensionsArgs {
    #[command(flatten)]
    location: Location,
    #[command(subcommand)]
    command: ExtensionsCommand,
}

#[derive(Debug, Subcommand)]
enum ExtensionsCommand {
    /// List the compiled-in extensions: enabled or not, permissions granted and not granted
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
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
    },
    /// Disable an extension on every instance (its routes answer 404, its hooks are skipped)
    Disable {
        /// The extension, e.g. webhooks
        name: String,
    },
    /// Revoke permissions from an extension on every instance
    Revoke {
        /// The extension, e.g. webhooks
        name: String,
        /// The permissions, e.g. users.read
        #[arg(required = true, value_name = "PERMISSION")]
        permissions: Vec<String>,
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
    },
    /// Every compiled-in extension: enabled, health, and the running instances' request and
    /// error counts
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// An extension's health and its recent checks. Exit code: 0 healthy, 3 degraded,
    /// 4 critical, 5 unknown (never checked, disabled)
    Health {
        /// The extension, e.g. webhooks
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// The running instances' counters (requests, errors, hooks, panics, jobs …), per
    /// extension; with a name, also per instance
    Metrics {
        /// Only this extension
        name: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
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
        op: Option<config::ConfigOp>,
    },
    /// Drop an extension's schema (all its data) and database role, and remove its files and
    /// queued jobs
    Purge {
        /// The extension, e.g. webhooks
        name: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
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

/// Runs one `extensions` command. The configuration (and the database) is read only by the
/// commands that need it.
pub(super) async fn run(config_path: Option<&Path>, args: ExtensionsArgs) -> anyhow::Result<()> {
    let location = args.location;
    let config = || super::load(config_path, &location.overrides());
    match args.command {
        ExtensionsCommand::Tool(args) => tools::hand_over(config_path, args),
        ExtensionsCommand::Compiled { .. } => tools::print_compiled(),
        ExtensionsCommand::Info {
            name,
            json,
            remote: true,
            registry,
        } => tools::info_remote(config_path, name, registry, json),
        ExtensionsCommand::Info { name, json, .. } => {
            let (manifest, _) = compiled(&name)?;
            with_db(&config()?, true, async |db| {
                admin::info(db.pool(), db.pg_config(), db.tls(), &manifest, json).await
            })
            .await
        }
        ExtensionsCommand::List { json } => {
            with_db(&config()?, true, async |db| {
                admin::list(db.pool(), json).await
            })
            .await
        }
        ExtensionsCommand::Enable {
            name,
            grant_all,
            grant,
            grant_none,
        } => {
            let grant = if grant_all {
                Grant::All
            } else if grant_none || !grant.is_empty() {
                Grant::Only(grant)
            } else {
                Grant::Unspecified
            };
            admin::enable(&config()?, &name, grant).await
        }
        ExtensionsCommand::Disable { name } => admin::disable(&config()?, &name).await,
        ExtensionsCommand::Revoke { name, permissions } => {
            admin::revoke(&config()?, &name, &permissions).await
        }
        ExtensionsCommand::Audit {
            extension,
            since,
            limit,
            json,
        } => {
            let filter = admin::audit_filter(extension, since, limit)?;
            admin::audit(&config()?, filter, json).await
        }
        ExtensionsCommand::Migrate {
            name,
            to,
            dry_run,
            json,
        } => schema::migrate(&config()?, &name, to, dry_run, json).await,
        ExtensionsCommand::Rollback {
            name,
            version,
            dry_run,
            json,
        } => schema::rollback(&config()?, &name, version, dry_run, json).await,
        ExtensionsCommand::Purge { name, yes } => schema::purge(&config()?, &name, yes).await,
        ExtensionsCommand::Status { json } => {
            let config = config()?;
            with_db(&config, true, async |db| {
                status::status(&config, db.pool(), &manifests(), json).await
            })
            .await
        }
        ExtensionsCommand::Health { name, json } => {
            let (manifest, _) = compiled(&name)?;
            with_db(&config()?, true, async |db| {
                status::health(db.pool(), &manifest, json).await
            })
            .await
        }
        ExtensionsCommand::Metrics { name, json } => {
            if let Some(name) = &name {
                compiled(name)?;
            }
            let config = config()?;
            with_db(&config, true, async |db| {
                status::metrics(&config, db.pool(), &manifests(), name.as_deref(), json).await
            })
            .await
        }
        ExtensionsCommand::Config { name, op } => {
            let (_, registration) = compiled(&name)?;
            let op = op.unwrap_or(config::ConfigOp::Get { json: false });
            let config = config()?;
            with_db(&config, true, async |db| {
                config::run(&config, db.pool(), &name, &registration, op).await
            })
            .await
        }
    }
}

/// Every compiled-in extension's manifest.
fn manifests() -> Vec<Manifest> {
    crate::runtime::registrations()
        .into_iter()
        .filter_map(|r| Manifest::parse(r.manifest).ok())
        .collect()
}

/// The compiled-in extension `name`; a usage error (naming the feature to build with, or
/// the known names) when it is not compiled in.
fn compiled(name: &str) -> anyhow::Result<(Manifest, Registration)> {
    if let Some(found) = crate::runtime::registrations()
        .into_iter()
        .filter_map(|r| Manifest::parse(r.manifest).ok().map(|m| (m, r)))
        .find(|(m, _)| m.name.as_str() == name)
    {
        return Ok(found);
    }
    let known = crate::runtime::discovered().iter().any(|d| d.name == name);
    Err(ConfigError::Invalid(if known {
        format!(
            "extension {name:?} is known but not compiled into this binary: rebuild with \
             --features {name}"
        )
    } else {
        let names: Vec<&str> = crate::runtime::discovered()
            .iter()
            .map(|d| d.name)
            .collect();
        format!(
            "no extension {name:?}; the known ones are: {}",
            names.join(", ")
        )
    })
    .into())
}
