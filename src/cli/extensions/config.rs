//! `solobase extensions config NAME [get|schema|set|edit]`: an extension's configuration from
//! the command line. What every instance runs is the shared configuration
//! (`solobase.extension_config`) when one was ever set, else each instance's file
//! (`<config_dir>/<name>.toml`), else the defaults. A change is checked against the
//! extension's schema, stored as the shared configuration — only if nobody changed it
//! meanwhile — and announced: running instances apply it at once (their extension may still
//! refuse it: see `solobase extensions info`), and each rewrites its file.

use std::io::Write;
use std::path::{Path, PathBuf};

use deadpool_postgres::Pool;
use serde_json::{Value, json};
use solobase_sdk::Registration;

use crate::audit::{self, Actor, Entry, Outcome};
use crate::config::{Config, ConfigError};
use crate::runtime::{config_file, reconfigure, state};

/// What `extensions config NAME` does (get when none is given).
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub(super) enum ConfigOp {
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

/// Where the configuration in force comes from.
struct Current {
    value: Value,
    etag: String,
    source: String,
}

async fn current(config: &Config, pool: &Pool, name: &str) -> anyhow::Result<Current> {
    if let Some((value, etag)) = state::shared_config(pool, name).await? {
        return Ok(Current {
            value,
            etag,
            source: "shared by every instance (set through the API or the CLI)".into(),
        });
    }
    let file = config_file::path(&config.extensions.config_dir, name);
    let value = config_file::read(&file).map_err(ConfigError::Invalid)?;
    let source = if value.is_null() {
        format!("the defaults (no {})", file.display())
    } else {
        format!("the file {}", file.display())
    };
    let value = if value.is_null() { json!({}) } else { value };
    Ok(Current {
        etag: reconfigure::etag(&value),
        value,
        source,
    })
}

pub(super) async fn run(
    config: &Config,
    pool: &Pool,
    name: &str,
    registration: &Registration,
    op: ConfigOp,
) -> anyhow::Result<()> {
    let now = current(config, pool, name).await?;
    match op {
        ConfigOp::Get { json: true } => {
            let value =
                json!({"name": name, "config": now.value, "etag": now.etag, "source": now.source});
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
        ConfigOp::Get { json: false } => {
            println!("# {name}: from {}; etag {}", now.source, now.etag);
            print!("{}", toml_text(&now.value)?);
            Ok(())
        }
        ConfigOp::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&registration.config_schema())?
            );
            Ok(())
        }
        ConfigOp::Set {
            assignments,
            unset,
            file,
            if_match,
            json,
        } => {
            if let Some(expected) = &if_match
                && *expected != now.etag
            {
                return Err(ConfigError::Invalid(format!(
                    "--if-match {expected}: the configuration is now {}; read it again",
                    now.etag
                ))
                .into());
            }
            let value = match file {
                Some(path) => {
                    if !assignments.is_empty() || !unset.is_empty() {
                        return Err(ConfigError::Invalid(
                            "give either --file or KEY=VALUE / --unset KEY, not both".into(),
                        )
                        .into());
                    }
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        ConfigError::Invalid(format!("cannot read {}: {e}", path.display()))
                    })?;
                    config_file::parse(&path, &text).map_err(ConfigError::Invalid)?
                }
                None => {
                    if assignments.is_empty() && unset.is_empty() {
                        return Err(ConfigError::Invalid(
                            "say what to change: KEY=VALUE (e.g. greeting=\"hi\"), --unset KEY, \
                             or --file PATH"
                                .into(),
                        )
                        .into());
                    }
                    let mut value = now.value.clone();
                    for a in &assignments {
                        assign(&mut value, a)?;
                    }
                    for key in &unset {
                        remove(&mut value, key)?;
                    }
                    value
                }
            };
            let etag = store(config, pool, name, registration, &now, value.clone()).await?;
            if json {
                let out = json!({"name": name, "config": value, "etag": etag});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if etag == now.etag {
                println!("{name}: no change (etag {etag})");
            } else {
                println!(
                    "{name}: configuration stored for every instance (etag {etag}); running \
                     instances apply it now"
                );
            }
            Ok(())
        }
        ConfigOp::Edit => edit(config, pool, name, registration, now).await,
    }
}

/// Checks `value`, then shares it unless someone changed the configuration since `now` was
/// read; audited either way.
async fn store(
    config: &Config,
    pool: &Pool,
    name: &str,
    registration: &Registration,
    now: &Current,
    value: Value,
) -> anyhow::Result<String> {
    let etag = reconfigure::etag(&value);
    if etag == now.etag {
        return Ok(etag);
    }
    let shown = config_file::path(&config.extensions.config_dir, name);
    let result = match config_file::check(&shown, registration, &value) {
        Err(problems) => Err(anyhow::Error::from(ConfigError::Invalid(problems))),
        Ok(()) => state::share_config(pool, name, &value, &etag, Some(&now.etag))
            .await
            .map_err(|e| match e {
                state::ShareError::Stale(current) => ConfigError::Invalid(format!(
                    "the configuration changed meanwhile (it is now {current}); read it again"
                ))
                .into(),
                state::ShareError::Database(e) => e,
            }),
    };
    let entry = match &result {
        Ok(()) => Entry::new(Actor::cli(), "extension.config", Outcome::Ok)
            .detail(json!({"via": "cli", "etag": etag})),
        Err(e) => Entry::new(Actor::cli(), "extension.config", Outcome::Failed)
            .detail(json!({"via": "cli", "error": e.to_string()})),
    };
    audit::record_or_log(pool, entry.extension(name)).await;
    result.map(|()| etag)
}

/// The configuration as TOML text.
fn toml_text(value: &Value) -> anyhow::Result<String> {
    toml::to_string(value)
        .map_err(|e| anyhow::anyhow!("the configuration cannot be shown as TOML: {e}"))
}

/// `key.path=value` into `target`. The value is TOML (`5`, `true`, `"text"`, `[1, 2]`); a bare
/// word that is not TOML is taken as a string.
fn assign(target: &mut Value, assignment: &str) -> Result<(), ConfigError> {
    let (key, raw) = assignment.split_once('=').ok_or_else(|| {
        ConfigError::Invalid(format!(
            "{assignment:?}: write KEY=VALUE, e.g. greeting=\"hello\" or limits.max=5"
        ))
    })?;
    let parsed: Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut table) => table
            .remove("v")
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ConfigError::Invalid(format!("{assignment:?}: {e}")))?
            .unwrap_or(Value::Null),
        Err(_) => Value::String(raw.to_owned()),
    };
    let path = key_path(key)?;
    let (last, parents) = path.split_last().expect("a key path has a part");
    let mut node = target;
    for part in parents {
        if !node.is_object() {
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .expect("made an object")
            .entry(part.to_owned())
            .or_insert_with(|| json!({}));
        if !node.is_object() {
            return Err(ConfigError::Invalid(format!(
                "{key}: {part} is not a table; unset it first"
            )));
        }
    }
    if !node.is_object() {
        *node = json!({});
    }
    node.as_object_mut()
        .expect("made an object")
        .insert(last.clone(), parsed);
    Ok(())
}

fn remove(target: &mut Value, key: &str) -> Result<(), ConfigError> {
    let path = key_path(key)?;
    let (last, parents) = path.split_last().expect("a key path has a part");
    let mut node = Some(target);
    for part in parents {
        node = node.and_then(|n| n.get_mut(part));
    }
    match node
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(last))
    {
        Some(_) => Ok(()),
        None => Err(ConfigError::Invalid(format!(
            "--unset {key}: the configuration has no such key"
        ))),
    }
}

fn key_path(key: &str) -> Result<Vec<String>, ConfigError> {
    let parts: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
    if parts.iter().any(|p| {
        p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err(ConfigError::Invalid(format!(
            "{key:?} is not a key path: use names of letters, digits, _ and -, joined by dots"
        )));
    }
    Ok(parts)
}

/// Opens the configuration in `$VISUAL`/`$EDITOR` (else `vi`); on save, checks and stores it.
/// A problem reopens the file with the problems at the top; saving it unchanged gives up.
async fn edit(
    config: &Config,
    pool: &Pool,
    name: &str,
    registration: &Registration,
    now: Current,
) -> anyhow::Result<()> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let dir =
        std::env::temp_dir().join(format!("solobase-config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{name}.toml"));
    let result = async {
        let body = toml_text(&now.value)?;
        let mut header = format!(
            "# {name}: from {}; etag {}.\n# Save and quit to apply it on every instance; \
             lines starting with # are ignored.\n",
            now.source, now.etag
        );
        let mut failed = false;
        loop {
            let before = format!("{header}{body_now}", body_now = read_or(&file, &body));
            std::fs::write(&file, &before)?;
            open_editor(&editor, &file)?;
            let after = std::fs::read_to_string(&file)?;
            if after == before {
                if failed {
                    anyhow::bail!("{name}: not saved; nothing was changed");
                }
                println!("{name}: no change");
                return Ok(());
            }
            let text = strip_comments(&after);
            let outcome = match config_file::parse(&file, &text) {
                Ok(value) => store(config, pool, name, registration, &now, value).await,
                Err(e) => Err(ConfigError::Invalid(e).into()),
            };
            match outcome {
                Ok(etag) => {
                    println!(
                        "{name}: configuration stored for every instance (etag {etag}); running \
                         instances apply it now"
                    );
                    return Ok(());
                }
                Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
                    failed = true;
                    header = format!(
                        "# {name}: NOT SAVED. Fix these problems, or quit without saving to \
                         give up:\n{}\n",
                        e.to_string()
                            .lines()
                            .map(|l| format!("#   {l}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                    std::fs::write(&file, strip_comments(&after))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The file's text without comment lines (after the first round), or `fallback`.
fn read_or(file: &Path, fallback: &str) -> String {
    std::fs::read_to_string(file)
        .map(|t| strip_comments(&t))
        .unwrap_or_else(|_| fallback.to_owned())
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn open_editor(editor: &str, file: &Path) -> anyhow::Result<()> {
    // The editor may carry arguments (`code --wait`); run it through the shell, the file as $1.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run the editor {editor:?}: {e}"))?;
    std::io::stdout().flush()?;
    if !status.success() {
        anyhow::bail!("the editor {editor:?} failed ({status}); nothing was changed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_take_toml_values_and_bare_words() {
        let mut v = json!({"keep": 1});
        assign(&mut v, "greeting=\"hi there\"").unwrap();
        assign(&mut v, "limits.max=5").unwrap();
        assign(&mut v, "on=true").unwrap();
        assign(&mut v, "word=plain").unwrap();
        assign(&mut v, "list=[1, 2]").unwrap();
        assert_eq!(
            v,
            json!({"keep": 1, "greeting": "hi there", "limits": {"max": 5}, "on": true,
                   "word": "plain", "list": [1, 2]})
        );
        remove(&mut v, "limits.max").unwrap();
        assert_eq!(v["limits"], json!({}));
        assert!(remove(&mut v, "nope").is_err());
        assert!(assign(&mut v, "no equals sign").is_err());
        assert!(assign(&mut v, "bad..key=1").is_err());
        assert!(assign(&mut v, "keep.inner=1").is_err(), "keep is a number");
    }

    #[test]
    fn comment_lines_are_dropped() {
        assert_eq!(strip_comments("# a\nx = 1\n  # b\ny = 2"), "x = 1\ny = 2\n");
    }
}
