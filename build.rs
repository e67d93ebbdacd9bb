//! Discovers extensions and writes the registration table, `$OUT_DIR/generated.rs`.
//!
//! Every `extensions/<official|community|custom>/<name>/extension.toml` (and, for the test
//! suite, `tests/extensions/<name>/extension.toml`) is an extension. Each must have a Cargo
//! feature `<name>` in this Cargo.toml turning on its optional dependency
//! `solobase-ext-<name>`. The table lists every discovered extension (so the binary can say
//! "known, not compiled in") and registers, behind `#[cfg(feature = "<name>")]`, those whose
//! feature is on. Problems stop the build with a `cargo::error=` line that says what to fix.

#[allow(dead_code)]
#[path = "extensions/core/src/manifest.rs"]
mod manifest;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use manifest::{ExtensionName, Manifest};

/// Folders scanned, with the tier name each gives its extensions.
const TIERS: [(&str, &str); 4] = [
    ("extensions/official", "official"),
    ("extensions/community", "community"),
    ("extensions/custom", "custom"),
    ("tests/extensions", "test"),
];

struct Found {
    manifest: Manifest,
    tier: &'static str,
    /// Relative to the workspace root, e.g. `extensions/official/webhooks`.
    dir: String,
}

fn main() {
    println!("cargo::rerun-if-changed=Cargo.toml");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=extensions/core/src/manifest.rs");
    match run() {
        Ok(()) => {}
        Err(errors) => {
            for error in errors {
                println!("cargo::error={}", error.replace('\n', " "));
            }
        }
    }
}

fn run() -> Result<(), Vec<String>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| vec![e.to_string()])?);
    let found = discover(&root)?;
    let cargo_toml = read_root_manifest(&root)?;
    check_wiring(&root, &found, &cargo_toml)?;
    let selected = selected(&found);
    check_selection(&found, &selected)?;
    let generated = generate(&found);
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| vec![e.to_string()])?);
    std::fs::write(out.join("generated.rs"), generated)
        .map_err(|e| vec![format!("cannot write generated.rs: {e}")])
}

/// Walks the tier folders for `<name>/extension.toml`.
fn discover(root: &Path) -> Result<Vec<Found>, Vec<String>> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (folder, tier) in TIERS {
        let base = root.join(folder);
        println!("cargo::rerun-if-changed={folder}");
        if !base.is_dir() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&base)
            .min_depth(1)
            .max_depth(1)
            .sort_by_file_name()
        {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("cannot read {folder}: {e}"));
                    continue;
                }
            };
            if !entry.file_type().is_dir() {
                continue;
            }
            let dir_name = entry.file_name().to_string_lossy().into_owned();
            let dir = format!("{folder}/{dir_name}");
            let manifest_path = entry.path().join("extension.toml");
            println!("cargo::rerun-if-changed={dir}/extension.toml");
            println!("cargo::rerun-if-changed={dir}/Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest_path) else {
                errors.push(format!(
                    "{dir} has no readable extension.toml: every folder in {folder} must be an \
                     extension (add the manifest, or move the folder out)"
                ));
                continue;
            };
            match Manifest::parse(&text) {
                Ok(manifest) if manifest.name.as_str() != dir_name => errors.push(format!(
                    "{dir}/extension.toml names the extension {:?}, but its folder is {dir_name:?}: \
                     make them equal",
                    manifest.name.as_str()
                )),
                Ok(manifest) => found.push(Found { manifest, tier, dir }),
                Err(e) => errors.push(format!("{dir}/extension.toml is invalid: {e}")),
            }
        }
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for f in &found {
        if let Some(first) = seen.insert(f.manifest.name.as_str(), &f.dir) {
            errors.push(format!(
                "two extensions are named {:?}: {first} and {}; rename one",
                f.manifest.name.as_str(),
                f.dir
            ));
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

fn read_root_manifest(root: &Path) -> Result<toml::Table, Vec<String>> {
    let text = std::fs::read_to_string(root.join("Cargo.toml"))
        .map_err(|e| vec![format!("cannot read Cargo.toml: {e}")])?;
    text.parse::<toml::Table>()
        .map_err(|e| vec![format!("Cargo.toml is invalid: {e}")])
}

/// Each extension has its feature, its optional dependency and a matching crate.
fn check_wiring(root: &Path, found: &[Found], cargo: &toml::Table) -> Result<(), Vec<String>> {
    let features = cargo.get("features").and_then(|f| f.as_table());
    let deps = cargo.get("dependencies").and_then(|d| d.as_table());
    let mut errors = Vec::new();
    for f in found {
        let name = f.manifest.name.as_str();
        let package = format!("solobase-ext-{name}");
        let wants = format!("dep:{package}");
        let feature_ok = features
            .and_then(|t| t.get(name))
            .and_then(|v| v.as_array())
            .is_some_and(|items| items.iter().any(|i| i.as_str() == Some(&wants)));
        if !feature_ok {
            errors.push(format!(
                "extension {name} ({}) has no Cargo feature: add `{name} = [\"{wants}\"]` to \
                 [features] and `{package} = {{ path = \"{}\", optional = true }}` to \
                 [dependencies] in Cargo.toml",
                f.dir, f.dir
            ));
            continue;
        }
        let dep_ok = deps
            .and_then(|t| t.get(&package))
            .and_then(|v| v.as_table())
            .is_some_and(|t| {
                t.get("path").and_then(|p| p.as_str()) == Some(f.dir.as_str())
                    && t.get("optional").and_then(|o| o.as_bool()) == Some(true)
            });
        if !dep_ok {
            errors.push(format!(
                "Cargo.toml must depend on `{package} = {{ path = \"{}\", optional = true }}`",
                f.dir
            ));
        }
        let crate_toml = std::fs::read_to_string(root.join(&f.dir).join("Cargo.toml"))
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok());
        let pkg = crate_toml
            .as_ref()
            .and_then(|t| t.get("package"))
            .and_then(|p| p.as_table());
        match pkg {
            None => errors.push(format!("{}/Cargo.toml is missing or invalid", f.dir)),
            Some(pkg) => {
                if pkg.get("name").and_then(|n| n.as_str()) != Some(package.as_str()) {
                    errors.push(format!(
                        "{}/Cargo.toml must name its package {package}",
                        f.dir
                    ));
                }
                let version = pkg.get("version").and_then(|v| v.as_str()).unwrap_or("");
                if version != f.manifest.version.to_string() {
                    errors.push(format!(
                        "{}: extension.toml says version {} but Cargo.toml says {version:?}; make \
                         them equal",
                        f.dir, f.manifest.version
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
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

/// Dependencies of the selected extensions: known, selected too, in range, host version
/// high enough, no cycles.
fn check_selection(found: &[Found], selected: &BTreeSet<ExtensionName>) -> Result<(), Vec<String>> {
    let by_name: BTreeMap<&ExtensionName, &Manifest> = found
        .iter()
        .map(|f| (&f.manifest.name, &f.manifest))
        .collect();
    let host = semver::Version::parse(&std::env::var("CARGO_PKG_VERSION").unwrap_or_default())
        .unwrap_or_else(|_| semver::Version::new(0, 0, 0));
    let mut errors = Vec::new();
    for name in selected {
        let m = by_name[name];
        if m.min_host_version > host {
            errors.push(format!(
                "extension {name} needs Solobase {} or newer; this is {host}",
                m.min_host_version
            ));
        }
        for (dep, range) in &m.dependencies {
            match by_name.get(dep) {
                None => errors.push(format!(
                    "extension {name} depends on {dep}, which is not under extensions/: add it or \
                     remove the dependency"
                )),
                Some(d) if !range.matches(&d.version) => errors.push(format!(
                    "extension {name} needs {dep} {range}, but {dep} is version {}",
                    d.version
                )),
                Some(_) if !selected.contains(dep) => errors.push(format!(
                    "extension {name} depends on {dep}: build with --features {name},{dep}"
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(cycle) = find_cycle(selected, &by_name) {
        errors.push(format!(
            "extensions depend on each other in a cycle: {cycle}"
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn find_cycle(
    selected: &BTreeSet<ExtensionName>,
    by_name: &BTreeMap<&ExtensionName, &Manifest>,
) -> Option<String> {
    fn visit<'a>(
        node: &'a ExtensionName,
        by_name: &BTreeMap<&ExtensionName, &'a Manifest>,
        selected: &BTreeSet<ExtensionName>,
        path: &mut Vec<&'a ExtensionName>,
        done: &mut BTreeSet<&'a ExtensionName>,
    ) -> Option<String> {
        if let Some(start) = path.iter().position(|n| *n == node) {
            let mut names: Vec<&str> = path[start..].iter().map(|n| n.as_str()).collect();
            names.push(node.as_str());
            return Some(names.join(" -> "));
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        let deps = by_name
            .get(node)
            .map(|m| m.dependencies.keys())
            .into_iter()
            .flatten();
        for dep in deps.filter(|d| selected.contains(*d)) {
            if let Some(cycle) = visit(dep, by_name, selected, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    selected
        .iter()
        .find_map(|n| visit(n, by_name, selected, &mut Vec::new(), &mut done))
}

fn generate(found: &[Found]) -> String {
    let mut out = String::from(
        "// @generated by build.rs from the extension.toml files — do not edit.\n\n\
         /// Every extension found in the source tree, compiled in or not.\n\
         pub static DISCOVERED: &[Discovered] = &[\n",
    );
    for f in found {
        let m = &f.manifest;
        let _ = writeln!(
            out,
            "    Discovered {{ name: {:?}, tier: {:?}, version: {:?}, description: {:?}, dir: {:?}, \
             feature: {:?}, compiled: cfg!(feature = {:?}) }},",
            m.name.as_str(),
            f.tier,
            m.version.to_string(),
            m.description,
            f.dir,
            m.name.as_str(),
            m.name.as_str(),
        );
    }
    out.push_str(
        "];\n\n/// The registrations of the compiled-in extensions.\n\
         #[allow(clippy::vec_init_then_push)]\n\
         pub fn registrations() -> Vec<::solobase_sdk::Registration> {\n\
         \x20   #[allow(unused_mut)]\n    let mut table = Vec::new();\n",
    );
    for f in found {
        let name = f.manifest.name.as_str();
        let _ = writeln!(
            out,
            "    #[cfg(feature = {name:?})]\n    table.push(::solobase_ext_{}::solobase_extension());",
            name.replace('-', "_")
        );
    }
    out.push_str("    table\n}\n");
    out
}
