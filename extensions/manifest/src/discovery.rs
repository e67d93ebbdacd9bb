//! Extension discovery and the checks behind the build: used by the host's `build.rs` and by
//! the developer tools (`install` finds a project's extensions exactly as the build does).
//! See `build.rs` for what the rules are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use crate::{ExtensionName, Manifest};

/// Folders scanned, with the tier name each gives its extensions.
const TIERS: [(&str, &str); 4] = [
    ("extensions/official", "official"),
    ("extensions/community", "community"),
    ("extensions/custom", "custom"),
    ("tests/extensions", "test"),
];

#[derive(Debug)]
pub struct Found {
    pub manifest: Manifest,
    pub tier: &'static str,
    /// Relative to the workspace root, e.g. `extensions/official/webhooks`.
    pub dir: String,
}

/// Walks the tier folders for `<name>/extension.toml`.
pub fn discover(root: &Path, mut watch: impl FnMut(String)) -> Result<Vec<Found>, Vec<String>> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (folder, tier) in TIERS {
        let base = root.join(folder);
        if !base.is_dir() {
            // Cargo counts a missing path as changed at every build (the script reruns and
            // the whole crate is compiled again): watch the parent, which changes when the
            // folder is created.
            watch("extensions".to_owned());
            continue;
        }
        watch(folder.to_owned());
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
            watch(format!("{dir}/extension.toml"));
            watch(format!("{dir}/build.rs"));
            watch(format!("{dir}/Cargo.toml"));
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
                Ok(manifest)
                    if manifest.tier.is_some_and(|t| tier != "test" && t.as_str() != tier) =>
                {
                    errors.push(format!(
                        "{dir}/extension.toml says tier = {:?}, but it is in {folder}: move it \
                         to extensions/{}/ or change its tier",
                        manifest.tier.map_or("", |t| t.as_str()),
                        manifest.tier.map_or("", |t| t.as_str()),
                    ))
                }
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

pub fn read_root_manifest(root: &Path) -> Result<toml::Table, Vec<String>> {
    let text = std::fs::read_to_string(root.join("Cargo.toml"))
        .map_err(|e| vec![format!("cannot read Cargo.toml: {e}")])?;
    text.parse::<toml::Table>()
        .map_err(|e| vec![format!("Cargo.toml is invalid: {e}")])
}

/// Each extension has its feature, its optional dependency and a matching crate.
pub fn check_wiring(root: &Path, found: &[Found], cargo: &toml::Table) -> Result<(), Vec<String>> {
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
                let build_ok = std::fs::read_to_string(root.join(&f.dir).join("build.rs"))
                    .is_ok_and(|b| b.contains("solobase_manifest::migrations::build"));
                if !build_ok {
                    errors.push(format!(
                        "{}: its build.rs must embed its migrations: write build.rs with \
                         `fn main() {{ solobase_manifest::migrations::build(); }}` and add \
                         `solobase-manifest` to [build-dependencies] in its Cargo.toml",
                        f.dir
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

/// Dependencies of the selected extensions: known, selected too, in range, host version
/// high enough, no cycles.
pub fn check_selection(
    found: &[Found],
    selected: &BTreeSet<ExtensionName>,
    host: &semver::Version,
) -> Result<(), Vec<String>> {
    let by_name: BTreeMap<&ExtensionName, &Manifest> = found
        .iter()
        .map(|f| (&f.manifest.name, &f.manifest))
        .collect();
    let mut errors = Vec::new();
    for name in selected {
        let m = by_name[name];
        if !m.host.matches(host) {
            errors.push(format!(
                "extension {name} runs on Solobase {}; this is {host}: use a version of {name} \
                 made for this Solobase",
                m.host
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

pub fn generate(found: &[Found]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A source tree in a temporary directory.
    struct Tree(std::path::PathBuf);

    impl Tree {
        fn new() -> Self {
            let root = std::env::temp_dir().join(format!("solobase-disc-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&root).unwrap();
            Self(root)
        }

        fn write(&self, path: &str, text: &str) -> &Self {
            let p = self.0.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            self
        }

        /// An extension with a good crate; `deps` is the manifest's [dependencies] body.
        fn extension(&self, tier: &str, name: &str, version: &str, deps: &str) -> &Self {
            self.write(
                &format!("extensions/{tier}/{name}/extension.toml"),
                &format!(
                    "[extension]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"d\"\n\
                     min_host_version = \"0.1.0\"\n[dependencies]\n{deps}"
                ),
            )
            .write(
                &format!("extensions/{tier}/{name}/Cargo.toml"),
                &format!("[package]\nname = \"solobase-ext-{name}\"\nversion = \"{version}\"\n"),
            )
            .write(
                &format!("extensions/{tier}/{name}/build.rs"),
                "fn main() { solobase_manifest::migrations::build(); }\n",
            )
        }

        /// A root Cargo.toml wiring every `(name, dir)`.
        fn cargo(&self, wired: &[(&str, &str)]) -> &Self {
            let mut text = String::from("[features]\n");
            for (name, _) in wired {
                text.push_str(&format!("{name} = [\"dep:solobase-ext-{name}\"]\n"));
            }
            text.push_str("[dependencies]\n");
            for (name, dir) in wired {
                text.push_str(&format!(
                    "solobase-ext-{name} = {{ path = \"{dir}\", optional = true }}\n"
                ));
            }
            self.write("Cargo.toml", &text)
        }

        fn check(&self, selected: &[&str]) -> Result<String, String> {
            let all = |r: Result<(), Vec<String>>| r.map_err(|e| e.join(" | "));
            let found = discover(&self.0, |_| {}).map_err(|e| e.join(" | "))?;
            let cargo = read_root_manifest(&self.0).map_err(|e| e.join(" | "))?;
            all(check_wiring(&self.0, &found, &cargo))?;
            let selected = selected
                .iter()
                .map(|n| ExtensionName::parse(n).unwrap())
                .collect();
            all(check_selection(
                &found,
                &selected,
                &semver::Version::new(0, 1, 0),
            ))?;
            Ok(generate(&found))
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fails(tree: &Tree, selected: &[&str], expected: &str) {
        let err = tree.check(selected).expect_err("the build must fail");
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }

    #[test]
    fn a_good_tree_generates_a_feature_gated_table() {
        let t = Tree::new();
        t.extension("official", "alpha", "1.0.0", "")
            .extension("community", "beta", "0.2.0", "alpha = \"^1\"\n")
            .cargo(&[
                ("alpha", "extensions/official/alpha"),
                ("beta", "extensions/community/beta"),
            ]);
        let generated = t.check(&["alpha", "beta"]).unwrap();
        assert!(generated.starts_with("// @generated"));
        assert!(generated.contains(
            "#[cfg(feature = \"beta\")]\n    table.push(::solobase_ext_beta::solobase_extension());"
        ));
        assert!(generated.contains("name: \"alpha\", tier: \"official\""));
        assert!(generated.contains("compiled: cfg!(feature = \"beta\")"));
        // Selecting nothing is fine too.
        assert!(t.check(&[]).is_ok());
    }

    #[test]
    fn malformed_and_misnamed_manifests_fail() {
        let t = Tree::new();
        t.write("extensions/custom/bad/extension.toml", "[extension\nname=")
            .cargo(&[]);
        fails(&t, &[], "extensions/custom/bad/extension.toml is invalid");

        let t = Tree::new();
        t.extension("custom", "Bad_Name", "0.1.0", "").cargo(&[]);
        fails(&t, &[], "invalid extension name");

        let t = Tree::new();
        t.extension("custom", "one", "0.1.0", "")
            .write(
                "extensions/custom/two/extension.toml",
                &std::fs::read_to_string(t.0.join("extensions/custom/one/extension.toml")).unwrap(),
            )
            .cargo(&[]);
        fails(
            &t,
            &[],
            "names the extension \"one\", but its folder is \"two\"",
        );

        let t = Tree::new();
        t.write("extensions/custom/empty/README.md", "no manifest")
            .cargo(&[]);
        fails(&t, &[], "has no readable extension.toml");
    }

    #[test]
    fn duplicate_names_fail() {
        let t = Tree::new();
        t.extension("official", "same", "0.1.0", "")
            .extension("custom", "same", "0.1.0", "")
            .cargo(&[("same", "extensions/official/same")]);
        fails(&t, &[], "two extensions are named \"same\"");
    }

    #[test]
    fn missing_features_and_mismatched_crates_fail() {
        let t = Tree::new();
        t.extension("official", "alpha", "0.1.0", "").cargo(&[]);
        fails(
            &t,
            &[],
            "extension alpha (extensions/official/alpha) has no Cargo feature",
        );

        let t = Tree::new();
        t.extension("official", "alpha", "0.1.0", "")
            .write(
                "extensions/official/alpha/Cargo.toml",
                "[package]\nname = \"solobase-ext-alpha\"\nversion = \"0.2.0\"\n",
            )
            .cargo(&[("alpha", "extensions/official/alpha")]);
        fails(
            &t,
            &[],
            "extension.toml says version 0.1.0 but Cargo.toml says \"0.2.0\"",
        );

        // No build script to embed its migrations: the build says what to write.
        let t = Tree::new();
        t.extension("official", "alpha", "0.1.0", "")
            .write("extensions/official/alpha/build.rs", "fn main() {}\n")
            .cargo(&[("alpha", "extensions/official/alpha")]);
        fails(
            &t,
            &[],
            "extensions/official/alpha: its build.rs must embed its migrations",
        );
    }

    #[test]
    fn dependency_problems_among_selected_extensions_fail() {
        let wired = [
            ("alpha", "extensions/official/alpha"),
            ("beta", "extensions/official/beta"),
        ];
        let t = Tree::new();
        t.extension("official", "alpha", "0.1.0", "ghost = \"*\"\n")
            .extension("official", "beta", "0.1.0", "")
            .cargo(&wired);
        fails(
            &t,
            &["alpha"],
            "alpha depends on ghost, which is not under extensions/",
        );
        // Unselected extensions are not checked.
        assert!(t.check(&["beta"]).is_ok());

        let t = Tree::new();
        t.extension("official", "alpha", "0.1.0", "beta = \"^2\"\n")
            .extension("official", "beta", "0.1.0", "")
            .cargo(&wired);
        fails(
            &t,
            &["alpha", "beta"],
            "alpha needs beta ^2, but beta is version 0.1.0",
        );

        let t = Tree::new();
        t.extension("official", "alpha", "0.1.0", "beta = \"*\"\n")
            .extension("official", "beta", "0.1.0", "")
            .cargo(&wired);
        fails(&t, &["alpha"], "build with --features alpha,beta");

        let t = Tree::new();
        t.extension("official", "alpha", "0.1.0", "beta = \"*\"\n")
            .extension("official", "beta", "0.1.0", "alpha = \"*\"\n")
            .cargo(&wired);
        fails(&t, &["alpha", "beta"], "cycle: alpha -> beta -> alpha");
    }

    #[test]
    fn host_ranges_and_tiers_are_checked() {
        let wired = [("alpha", "extensions/community/alpha")];
        let manifest = |extra: &str| {
            format!(
                "[extension]\nname = \"alpha\"\nversion = \"0.1.0\"\ndescription = \"d\"\n{extra}\n"
            )
        };
        let t = Tree::new();
        t.extension("community", "alpha", "0.1.0", "")
            .cargo(&wired)
            .write(
                "extensions/community/alpha/extension.toml",
                &manifest("host = \"^0.2\""),
            );
        // Unselected: fine; selected on host 0.1.0: refused with the range.
        assert!(t.check(&[]).is_ok());
        fails(&t, &["alpha"], "alpha runs on Solobase ^0.2; this is 0.1.0");
        t.write(
            "extensions/community/alpha/extension.toml",
            &manifest("host = \">=0.1, <0.3\"\ntier = \"community\""),
        );
        assert!(t.check(&["alpha"]).is_ok());
        t.write(
            "extensions/community/alpha/extension.toml",
            &manifest("host = \"^0.1\"\ntier = \"official\""),
        );
        fails(
            &t,
            &[],
            "says tier = \"official\", but it is in extensions/community",
        );
    }

    #[test]
    fn the_real_tree_is_consistent() {
        // This crate is extensions/manifest; the project's root is two folders up.
        let root = &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let found = discover(root, |_| {}).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.manifest.name.as_str()).collect();
        for shipped in ["webhooks", "analytics", "probe"] {
            assert!(names.contains(&shipped), "{names:?}");
        }
        check_wiring(root, &found, &read_root_manifest(root).unwrap()).unwrap();
    }
}
