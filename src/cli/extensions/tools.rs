//! The developer tools live in another program, `solobase-devtools` (the crate in
//! `extensions/devtools`), so that the server links none of what only they need (tar, gzip,
//! ed25519, the registry's http client). `solobase extensions generate|validate|keygen|
//! package|verify|publish|search|install|uninstall` and `info NAME --remote` hand their
//! arguments over to it, the way `git` runs `git-*` programs; the tools ask this binary back
//! what it contains (`solobase extensions compiled --json`) to check configuration schemas.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;

/// The tools' program: `SOLOBASE_DEVTOOLS`, else `solobase-devtools` next to this binary,
/// else on the `PATH`.
fn devtools() -> PathBuf {
    if let Some(path) = std::env::var_os("SOLOBASE_DEVTOOLS") {
        return path.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("solobase-devtools")))
        .filter(|sibling| sibling.is_file())
        .unwrap_or_else(|| "solobase-devtools".into())
}

/// Runs `solobase-devtools [--config PATH] ARGS…` in place of this process (its exit code
/// becomes this command's); returns only when it cannot be started.
pub(super) fn hand_over(config: Option<&Path>, args: Vec<OsString>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let program = devtools();
    let mut command = std::process::Command::new(&program);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.args(&args);
    if let Ok(exe) = std::env::current_exe() {
        command.env("SOLOBASE_BIN", exe);
    }
    let error = command.exec();
    let what = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    Err(ConfigError::Invalid(format!(
        "`solobase extensions {what}` is one of the developer tools, in the program {} \
         ({error}): build it with `cargo build --release -p solobase-devtools` (it goes next \
         to the solobase binary), or point SOLOBASE_DEVTOOLS at it",
        program.display()
    ))
    .into())
}

/// `info NAME --remote [--registry R] [--json]`: the tools' `info`.
pub(super) fn info_remote(
    config: Option<&Path>,
    name: String,
    registry: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut args: Vec<OsString> = vec!["info".into(), name.into()];
    if let Some(registry) = registry {
        args.extend(["--registry".into(), registry.into()]);
    }
    if json {
        args.push("--json".into());
    }
    hand_over(config, args)
}

/// `solobase extensions compiled --json`: what only the compiled code of each extension
/// knows, for the tools' `validate`.
pub(super) fn print_compiled() -> anyhow::Result<()> {
    let list: Vec<serde_json::Value> = crate::runtime::registrations()
        .into_iter()
        .filter_map(|registration| {
            let manifest = solobase_sdk::Manifest::parse(registration.manifest).ok()?;
            Some(serde_json::json!({
                "name": manifest.name.as_str(),
                "manifest": registration.manifest,
                "config_schema": registration.config_schema(),
                "default_config_error": registration
                    .check_config(&serde_json::Value::Null)
                    .err()
                    .map(|e| e.to_string()),
            }))
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&list)?);
    Ok(())
}
