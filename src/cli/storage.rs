//! `solobase storage buckets` and `solobase storage bucket NAME [--access RULE]`: the storage
//! buckets and who may read their objects, read and set from the command line the way the
//! admin API does (`/api/v1/buckets`), audited as `cli:<user>`.

use anyhow::Context;
use clap::Subcommand;

use crate::audit::Actor;
use crate::config::{Config, ConfigError};
use crate::db::{Mode, Postgres, migrate};
use crate::storage::{Access, Bucket, BucketSettings, access};

/// What `solobase storage` does.
#[derive(Debug, Subcommand)]
pub(super) enum StorageCommand {
    /// List the buckets: who may read each, how many objects and bytes it holds
    Buckets {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: super::Location,
    },
    /// Show a bucket, or set who may read its objects with --access
    Bucket {
        /// The bucket, e.g. avatars
        name: String,
        /// private: each object's owner and administrators only (the default);
        /// authenticated: any signed-in user; public: anyone, without a token
        #[arg(long, value_name = "RULE", value_parser = ["private", "authenticated", "public"])]
        access: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: super::Location,
    },
}

impl StorageCommand {
    pub(super) fn location(&self) -> &super::Location {
        match self {
            Self::Buckets { location, .. } | Self::Bucket { location, .. } => location,
        }
    }
}

/// Runs `command` against the configured database.
pub(super) async fn run(config: Config, command: StorageCommand) -> anyhow::Result<()> {
    // Checked before connecting: a usage error is exit 2, whatever the database does.
    let target = match &command {
        StorageCommand::Bucket { name, access, .. } => {
            let bucket = Bucket::parse(name).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            let rule = access
                .as_deref()
                .map(Access::parse)
                .transpose()
                .map_err(|e| ConfigError::Invalid(e.message))?;
            Some((bucket, rule))
        }
        StorageCommand::Buckets { .. } => None,
    };
    let json = match &command {
        StorageCommand::Buckets { json, .. } | StorageCommand::Bucket { json, .. } => *json,
    };
    let db = Postgres::connect(&config, Mode::Share).await?;
    let result = async {
        migrate::run(db.pool()).await?;
        let mut client = db
            .pool()
            .get()
            .await
            .context("cannot get a database connection")?;
        match target {
            None => {
                let buckets = access::list(&**client).await.map_err(api)?;
                print_list(&buckets, json)
            }
            Some((bucket, None)) => {
                let found = access::get(&**client, &bucket).await.map_err(api)?;
                print_one(&found, json)
            }
            Some((bucket, Some(rule))) => {
                let now = access::set_access(&mut client, &bucket, rule, Actor::cli())
                    .await
                    .map_err(api)?;
                print_one(&now, json)
            }
        }
    }
    .await;
    db.close().await;
    result
}

fn api(e: crate::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!(e.message)
}

fn print_one(bucket: &BucketSettings, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(bucket)?);
    } else {
        println!(
            "{}: access {} ({} objects, {} bytes)",
            bucket.name,
            bucket.access.as_str(),
            bucket.objects,
            bucket.bytes
        );
    }
    Ok(())
}

fn print_list(buckets: &[BucketSettings], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(buckets)?);
        return Ok(());
    }
    if buckets.is_empty() {
        println!("no buckets yet: one appears with its first object or rule");
        return Ok(());
    }
    println!(
        "{:<32} {:<14} {:>10} {:>14}",
        "BUCKET", "ACCESS", "OBJECTS", "BYTES"
    );
    for b in buckets {
        println!(
            "{:<32} {:<14} {:>10} {:>14}",
            b.name,
            b.access.as_str(),
            b.objects,
            b.bytes
        );
    }
    Ok(())
}
