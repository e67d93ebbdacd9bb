//! Solobase's extension developer tools, the `solobase-devtools` binary (also reached as
//! `solobase extensions generate|validate|keygen|package|verify|publish|search|install|
//! uninstall` and `info NAME --remote`, which the server binary hands over to it):
//!
//! - [`scaffold`] — `generate`: a new extension crate from `scaffold/template/`, and its
//!   entries in the project's `Cargo.toml` (`scaffold/root_manifest.rs`);
//! - [`validate`] — `validate`: an extension's folder checked before it is built or shared;
//! - [`share`] — keys, signed reproducible packages, registries, install and uninstall.
//!
//! They work on the source tree and files only: no database, no server. Manifests are read
//! with `solobase-manifest`, the parser the build uses.

pub mod cli;
pub mod scaffold;
pub mod share;
pub mod validate;

use std::path::{Path, PathBuf};

/// A refusal the user can act on: exit code 2, the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad input: a name, a path, a key, a flag.
    #[error("{0}")]
    Invalid(String),
    /// A package or an installation refused (a signature, a dependency conflict …).
    #[error("{0}")]
    Refused(String),
}

/// What the tools read from Solobase's configuration file: the `[extensions]` keys about
/// sharing. The server checks the whole file (`solobase config validate`); the tools read
/// only these two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Public keys (minisign's base64 form) whose packages `install`, `verify` and
    /// `publish` accept.
    pub trusted_keys: Vec<String>,
    /// The registry: a directory, a `file://` or an `http://` URL.
    pub registry: Option<String>,
}

/// The configuration file read when none is given (as the server does).
pub const DEFAULT_CONFIG_PATH: &str = "config/solobase.toml";

impl Settings {
    /// Reads `[extensions] trusted_keys` and `registry` from `path`, or from
    /// `config/solobase.toml` when it exists and no path is given.
    pub fn load(path: Option<&Path>) -> Result<Self, ToolError> {
        let path: PathBuf = match path {
            Some(p) => p.to_owned(),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => DEFAULT_CONFIG_PATH.into(),
            None => return Ok(Self::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ToolError::Invalid(format!(
                "cannot read config file {}: {e} (pass --config with an existing file)",
                path.display()
            ))
        })?;
        Self::parse(&text).map_err(|e| ToolError::Invalid(format!("{}: {e}", path.display())))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let Some(extensions) = table.get("extensions") else {
            return Ok(Self::default());
        };
        let keys = match extensions.get("trusted_keys") {
            None => Vec::new(),
            Some(toml::Value::Array(keys)) => keys
                .iter()
                .map(|k| {
                    k.as_str()
                        .map(str::to_owned)
                        .ok_or("[extensions] trusted_keys: each key is a string")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("[extensions] trusted_keys: a list of strings".into()),
        };
        let registry = match extensions.get("registry") {
            None => None,
            Some(toml::Value::String(r)) if r.is_empty() => None,
            Some(toml::Value::String(r)) => Some(r.clone()),
            Some(_) => return Err("[extensions] registry: a string".into()),
        };
        Ok(Self {
            trusted_keys: keys,
            registry,
        })
    }
}

/// The server binary to ask what it contains (for `validate`'s configuration check):
/// `SOLOBASE_BIN`, else `solobase` next to this program.
pub fn server_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("SOLOBASE_BIN") {
        return Some(bin.into());
    }
    let exe = std::env::current_exe().ok()?;
    let sibling = exe.parent()?.join("solobase");
    sibling.is_file().then_some(sibling)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tools speak for the Solobase release they ship with: their version is the
    /// server's.
    #[test]
    fn the_tools_version_is_the_servers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let text = std::fs::read_to_string(root).unwrap();
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(
            table["package"]["version"].as_str(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn settings_read_only_the_sharing_keys() {
        let s = Settings::parse(
            "[server]\nbind = \"x\"\n[extensions]\ntrusted_keys = [\"RWQ\"]\nregistry = \"/srv\"\n",
        )
        .unwrap();
        assert_eq!(s.trusted_keys, ["RWQ"]);
        assert_eq!(s.registry.as_deref(), Some("/srv"));
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
        assert!(Settings::parse("[extensions]\ntrusted_keys = \"RWQ\"\n").is_err());
    }
}
