//! `solobase config validate`: the configuration file, the environment and every
//! extension's file checked, each result printed.

use std::path::Path;

use clap::Subcommand;

use crate::config::{Config, ConfigError, Overrides};

#[derive(Debug, Subcommand)]
pub(super) enum ConfigCommand {
    /// Check the configuration (file and environment) and print the result; exit 2 if invalid
    Validate,
}

/// Runs one `config` command.
pub(super) fn run(config_path: Option<&Path>, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Validate => {
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
