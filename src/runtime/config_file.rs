//! An extension's configuration file, `<config_dir>/<name>.toml`: read as TOML, then checked
//! against the JSON Schema generated from the extension's typed `Config` (schemars) by the
//! `jsonschema` validator, which reports every problem — file, key path, expected versus found —
//! and finally parsed into the type itself. Used at start-up, on reload and by
//! `solobase config validate`.

use std::path::{Path, PathBuf};

use solobase_sdk::Registration;

/// Where extension `name`'s file is.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.toml"))
}

/// Reads and checks `name`'s file: its content as JSON (`null` when there is no file: the
/// defaults), or every problem found, one per line.
pub(crate) fn load(
    dir: &Path,
    name: &str,
    registration: &Registration,
) -> Result<serde_json::Value, String> {
    let file = path(dir, name);
    let value = read(&file)?;
    check(&file, registration, &value)?;
    Ok(value)
}

/// The file's content as JSON (`null` when absent).
pub(crate) fn read(file: &Path) -> Result<serde_json::Value, String> {
    match std::fs::read_to_string(file) {
        Ok(text) => parse(file, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Value::Null),
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

/// TOML text as JSON.
pub fn parse(file: &Path, text: &str) -> Result<serde_json::Value, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("{}: {}", file.display(), e.message().trim()))?;
    serde_json::to_value(table).map_err(|e| format!("{}: {e}", file.display()))
}

/// Checks `value` (from `file`) against the extension's schema, then its type.
pub fn check(
    file: &Path,
    registration: &Registration,
    value: &serde_json::Value,
) -> Result<(), String> {
    if value.is_null() {
        // No file: the type's defaults.
        return registration
            .check_config(value)
            .map_err(|e| format!("{}: {e}", file.display()));
    }
    let schema = registration.config_schema();
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| format!("the extension's configuration schema is invalid: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(value)
        .map(|e| {
            format!(
                "{}: {}: {e}",
                file.display(),
                key_path(&e.instance_path().to_string())
            )
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    registration
        .check_config(value)
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// A JSON Pointer as a TOML key path: `/endpoints/0/url` → ``key `endpoints[0].url` ``.
pub(crate) use solobase_sdk::manifest::toml_key_path as key_path;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_key_paths() {
        assert_eq!(key_path(""), "(top level)");
        assert_eq!(key_path("/retries"), "key `retries`");
        assert_eq!(key_path("/endpoints/0/url"), "key `endpoints[0].url`");
        assert_eq!(key_path("/a~1b"), "key `a/b`");
    }

    /// Found while writing the `config` fuzz target's property (which now checks it): the
    /// schema accepted values the webhooks extension then refused at start-up, so
    /// `solobase config validate` said yes to a file the server would not run with.
    #[cfg(feature = "webhooks")]
    #[test]
    fn the_webhooks_schema_states_the_extensions_limits() {
        let webhooks = solobase_ext_webhooks::solobase_extension();
        let file = Path::new("webhooks.toml");
        for text in [
            "timeout_secs = 0",
            "timeout_secs = 301",
            "retry_schedule_secs = []",
            "retry_schedule_secs = [-1.0]",
            "retry_schedule_secs = [604801]",
            "retry_schedule_secs = [nan]",
        ] {
            let value = parse(file, text).unwrap();
            let err = check(file, &webhooks, &value).expect_err(text);
            assert!(err.starts_with("webhooks.toml: key `"), "{text}: {err}");
        }
        let value = parse(
            file,
            "timeout_secs = 300\nretry_schedule_secs = [0, 604800]",
        )
        .unwrap();
        check(file, &webhooks, &value).unwrap();
    }
}
