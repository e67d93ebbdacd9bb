//! `solobase users …`: accounts from the command line, whether or not a server runs.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::Location;
use crate::auth::{Email, Password, Role, users};
use crate::config::{Config, ConfigError};
use crate::db::{Mode, Postgres, migrate};

#[derive(Debug, Subcommand)]
pub(super) enum UsersCommand {
    /// Create an account (works whether or not a server is running)
    Create(CreateUserArgs),
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
