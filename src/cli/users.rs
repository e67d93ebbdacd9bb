//! `solobase users …`: accounts from the command line, whether or not a server runs:
//! create, list, set a password, disable, enable, and end a user's sessions. Changes go to
//! the database, so running servers refuse ended tokens and disabled accounts at once; each
//! is audited as the operating-system user (`cli:<user>`).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::Location;
use crate::audit::{Actor, Entry, Outcome};
use crate::auth::sessions::{self, SessionError};
use crate::auth::throttle::Hashing;
use crate::auth::{Email, Password, Role, User, users};
use crate::config::{Config, ConfigError};
use crate::db::{Mode, Postgres, migrate};

#[derive(Debug, Subcommand)]
pub(super) enum UsersCommand {
    /// Create an account (works whether or not a server is running)
    Create(CreateUserArgs),
    /// List the accounts: e-mail, role, disabled or not, live sessions
    List(ListArgs),
    /// Set a user's password and end all of their sessions
    SetPassword(SetPasswordArgs),
    /// Disable an account: its sessions end at once and it can no longer log in
    Disable(AccountArgs),
    /// Enable a disabled account again
    Enable(AccountArgs),
    /// End every session of a user (their tokens stop working at once)
    RevokeSessions(AccountArgs),
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    location: Location,
}

#[derive(Debug, Args)]
pub(super) struct AccountArgs {
    /// The account's e-mail
    #[arg(long)]
    email: String,
    #[command(flatten)]
    location: Location,
}

#[derive(Debug, Args)]
pub(super) struct SetPasswordArgs {
    /// The account's e-mail
    #[arg(long)]
    email: String,
    /// The new password (visible to other local users in the process list: prefer
    /// --password-stdin)
    #[arg(
        long,
        conflicts_with = "password_stdin",
        required_unless_present = "password_stdin"
    )]
    password: Option<String>,
    /// Read the new password from standard input
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    location: Location,
}

#[derive(Debug, Args)]
pub(super) struct CreateUserArgs {
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

/// Runs one `users` command.
pub(super) async fn run(config_path: Option<&Path>, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create(args) => {
            let config = super::load(config_path, &args.location.overrides())?;
            create_user(config, args).await
        }
        UsersCommand::List(args) => {
            let config = super::load(config_path, &args.location.overrides())?;
            with_database(&config, |pool| list(pool, args.json)).await
        }
        UsersCommand::SetPassword(args) => {
            let config = super::load(config_path, &args.location.overrides())?;
            let raw = password_arg(args.password)?;
            let password = Password::parse(raw, config.auth.min_password_length)
                .map_err(|e| ConfigError::Invalid(format!("--password: {e}")))?;
            with_database(&config, |pool| set_password(pool, args.email, password)).await
        }
        UsersCommand::Disable(args) => {
            let config = super::load(config_path, &args.location.overrides())?;
            with_database(&config, |pool| set_disabled(pool, args.email, true)).await
        }
        UsersCommand::Enable(args) => {
            let config = super::load(config_path, &args.location.overrides())?;
            with_database(&config, |pool| set_disabled(pool, args.email, false)).await
        }
        UsersCommand::RevokeSessions(args) => {
            let config = super::load(config_path, &args.location.overrides())?;
            with_database(&config, |pool| revoke_sessions(pool, args.email)).await
        }
    }
}

/// Runs `work` on the database (migrated), shared with a running server if there is one.
async fn with_database<F, Fut>(config: &Config, work: F) -> anyhow::Result<()>
where
    F: FnOnce(deadpool_postgres::Pool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    super::with_db(config, true, async |db| work(db.pool().clone()).await).await
}

/// The account of `email`, or an error saying there is none.
async fn account(pool: &deadpool_postgres::Pool, email: &str) -> anyhow::Result<User> {
    users::by_email(pool, email)
        .await
        .map_err(|e| anyhow::anyhow!("cannot look the account up: {e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!("no account has the e-mail {email}; `solobase users list` shows them")
        })
}

async fn list(pool: deadpool_postgres::Pool, json: bool) -> anyhow::Result<()> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = sessions::list(&pool, after.as_deref(), sessions::MAX_PAGE)
            .await
            .context("cannot list the accounts")?;
        let full = page.len() as i64 == sessions::MAX_PAGE;
        after = page.last().map(|a| a.user.email.clone());
        all.extend(page);
        if !full {
            break;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<6} {:<9} {:>8}  id",
        "email", "role", "state", "sessions"
    );
    for a in &all {
        let state = if a.user.is_disabled() {
            "disabled"
        } else {
            "enabled"
        };
        println!(
            "{:<40} {:<6} {:<9} {:>8}  {}",
            a.user.email,
            a.user.role.as_str(),
            state,
            a.live_sessions,
            a.user.id
        );
    }
    Ok(())
}

async fn set_password(
    pool: deadpool_postgres::Pool,
    email: String,
    password: Password,
) -> anyhow::Result<()> {
    let user = account(&pool, &email).await?;
    // One hash, in a slot of its own: this process serves nothing else.
    let slot = Hashing::new(1, 0)
        .reserve()
        .await
        .map_err(|_| anyhow::anyhow!("no hashing slot"))?;
    let entry = Entry::new(Actor::cli(), "user.password", Outcome::Ok);
    let revoked = sessions::change_password(&pool, slot, &user, None, &password, None, entry)
        .await
        .map_err(cli_error)?;
    println!(
        "set the password of {}; ended {revoked} session(s)",
        user.email
    );
    Ok(())
}

async fn set_disabled(
    pool: deadpool_postgres::Pool,
    email: String,
    disabled: bool,
) -> anyhow::Result<()> {
    let user = account(&pool, &email).await?;
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    let entry = Entry::new(Actor::cli(), action, Outcome::Ok);
    let (user, revoked) = sessions::set_disabled(&pool, user.id, disabled, entry)
        .await
        .map_err(cli_error)?;
    if disabled {
        println!("disabled {}; ended {revoked} session(s)", user.email);
    } else {
        println!("enabled {}", user.email);
    }
    Ok(())
}

async fn revoke_sessions(pool: deadpool_postgres::Pool, email: String) -> anyhow::Result<()> {
    let user = account(&pool, &email).await?;
    let entry = Entry::new(Actor::cli(), "user.revoke_sessions", Outcome::Ok);
    let revoked = sessions::revoke_all(&pool, user.id, entry)
        .await
        .map_err(cli_error)?;
    println!("ended {revoked} session(s) of {}", user.email);
    Ok(())
}

fn cli_error(e: SessionError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The password from `--password`, else from standard input (one line).
fn password_arg(given: Option<String>) -> anyhow::Result<String> {
    Ok(match given {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_to_string(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    })
}

async fn create_user(config: Config, args: CreateUserArgs) -> anyhow::Result<()> {
    let email =
        Email::parse(&args.email).map_err(|e| ConfigError::Invalid(format!("--email: {e}")))?;
    let raw = password_arg(args.password)?;
    let password = Password::parse(raw, config.auth.min_password_length)
        .map_err(|e| ConfigError::Invalid(format!("--password: {e}")))?;
    let role = if args.admin { Role::Admin } else { Role::User };
    let db = Postgres::connect(&config, Mode::Share).await?;
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
