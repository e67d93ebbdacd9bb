//! Discovers extensions and writes the registration table, `$OUT_DIR/generated.rs`.
//!
//! Every `extensions/<official|community|custom>/<name>/extension.toml` (and, for the test
//! suite, `tests/extensions/<name>/extension.toml`) is an extension. Each must have a Cargo
//! feature `<name>` in this Cargo.toml turning on its optional dependency
//! `solobase-ext-<name>`. The table lists every discovered extension (so the binary can say
//! "known, not compiled in") and registers, behind `#[cfg(feature = "<name>")]`, those whose
//! feature is on. Problems stop the build with a `cargo::error=` line that says what to fix.
//! The rules themselves live in the `solobase-manifest` crate (`discovery`), unit-tested
//! there.

use std::collections::BTreeSet;
use std::path::PathBuf;

use solobase_manifest::ExtensionName;
use solobase_manifest::discovery::{self, Found};

fn main() {
    println!("cargo::rerun-if-changed=Cargo.toml");
    println!("cargo::rerun-if-changed=build.rs");
    if let Err(errors) = run() {
        for error in errors {
            println!("cargo::error={}", error.replace('\n', " "));
        }
    }
}

fn run() -> Result<(), Vec<String>> {
    let env = |name: &str| std::env::var(name).map_err(|e| vec![format!("{name}: {e}")]);
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let found = discovery::discover(&root, |path| {
        println!("cargo::rerun-if-changed={path}");
    })?;
    let cargo_toml = discovery::read_root_manifest(&root)?;
    discovery::check_wiring(&root, &found, &cargo_toml)?;
    let host = semver::Version::parse(&env("CARGO_PKG_VERSION")?)
        .map_err(|e| vec![format!("the package version is not semver: {e}")])?;
    discovery::check_selection(&found, &selected(&found), &host)?;
    let out = PathBuf::from(env("OUT_DIR")?);
    std::fs::write(out.join("generated.rs"), discovery::generate(&found))
        .map_err(|e| vec![format!("cannot write generated.rs: {e}")])
}

/// The extensions whose feature is on in this build.
fn selected(found: &[Found]) -> BTreeSet<ExtensionName> {
    found
        .iter()
        .map(|f| &f.manifest.name)
        .filter(|name| {
            let var = name.cargo_feature_env();
            println!("cargo::rerun-if-env-changed={var}");
            std::env::var_os(&var).is_some()
        })
        .cloned()
        .collect()
}
