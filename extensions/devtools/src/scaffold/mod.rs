//! `solobase extensions generate <name>`: writes a complete extension crate under
//! `extensions/custom/<name>/` — manifest, `Cargo.toml`, code with a route, a hook and a typed
//! configuration, a migration with its down script, unit tests on the SDK's testing kit — and
//! wires it into the project's `Cargo.toml` (feature, optional dependency, workspace member;
//! see [`root_manifest`]). The result builds with `--features <name>` and its tests pass as
//! generated.
//!
//! The templates are in `template/`, with `{{name}}`, `{{Type}}`, `{{schema}}` and
//! `{{host_version}}` filled in. Nothing is written unless everything can be: the name and
//! the project's `Cargo.toml` are checked first.

pub mod root_manifest;

use std::path::{Path, PathBuf};

use solobase_manifest::ExtensionName;

use crate::ToolError;

/// Where generated extensions go, relative to the project's root.
pub const CUSTOM: &str = "extensions/custom";

/// Folders whose subfolders are extensions (the build script's tiers).
const TIERS: [&str; 4] = [
    "extensions/official",
    "extensions/community",
    "extensions/custom",
    "tests/extensions",
];

/// The files of a new extension: path relative to its folder, template.
const FILES: [(&str, &str); 7] = [
    ("Cargo.toml", include_str!("template/Cargo.toml.in")),
    ("build.rs", include_str!("template/build.rs.in")),
    ("extension.toml", include_str!("template/extension.toml.in")),
    ("src/lib.rs", include_str!("template/lib.rs.in")),
    (
        "migrations/V1__init.sql",
        include_str!("template/V1__init.sql.in"),
    ),
    (
        "migrations/V1__init.down.sql",
        include_str!("template/V1__init.down.sql.in"),
    ),
    ("README.md", include_str!("template/README.md.in")),
];

/// What `generate` made.
#[derive(Debug)]
pub struct Generated {
    pub name: ExtensionName,
    /// The project's root.
    pub root: PathBuf,
    /// The new extension's folder, relative to the root.
    pub dir: String,
}

/// Runs the command: generates, then prints what was written and the next steps.
pub fn run(name: &str, root: Option<&Path>) -> anyhow::Result<()> {
    let cwd = std::env::current_dir()
        .map_err(|e| ToolError::Invalid(format!("cannot read the current directory: {e}")))?;
    let root = match root {
        Some(dir) => project_root(dir, false)?,
        None => project_root(&cwd, true)?,
    };
    let generated = generate(name, &root)?;
    let lib = generated.root.join(&generated.dir).join("src/lib.rs");
    let formatted = rustfmt(&lib);
    print!("{}", next_steps(&generated));
    if let Err(e) = formatted {
        println!("note: {e}; run `cargo fmt` before committing");
    }
    Ok(())
}

/// Formats the generated code with the project's rustfmt settings: how rustfmt lays a line
/// out depends on the length of the names filled in.
fn rustfmt(file: &Path) -> Result<(), String> {
    let status = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .arg(file)
        .status()
        .map_err(|e| format!("cannot run rustfmt ({e})"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("rustfmt failed on {} ({status})", file.display()))
    }
}

/// The Solobase project at `start` (or, with `walk_up`, the nearest one above it): the folder
/// whose `Cargo.toml` has the package `solobase`.
pub fn project_root(start: &Path, walk_up: bool) -> Result<PathBuf, ToolError> {
    let start = start
        .canonicalize()
        .map_err(|e| ToolError::Invalid(format!("cannot read {}: {e}", start.display())))?;
    let mut dir = Some(start.as_path());
    while let Some(candidate) = dir {
        if is_project_root(candidate) {
            return Ok(candidate.to_owned());
        }
        if !walk_up {
            break;
        }
        dir = candidate.parent();
    }
    Err(ToolError::Invalid(if walk_up {
        format!(
            "no Solobase project at or above {}: run this inside the project's source tree \
             (the folder with its Cargo.toml), or give it with --root DIR",
            start.display()
        )
    } else {
        format!(
            "{} is not a Solobase project: --root must be the folder whose Cargo.toml has the \
             package solobase",
            start.display()
        )
    }))
}

fn is_project_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("package")?
                .get("name")?
                .as_str()
                .map(|n| n == "solobase")
        })
        .unwrap_or(false)
}

/// Writes extension `name` under `<root>/extensions/custom/` and wires it into
/// `<root>/Cargo.toml`. Refuses (a usage error, nothing written) an invalid name, or one
/// that an extension, a folder or a Cargo feature already has; a failure to write undoes
/// what was written.
pub fn generate(name: &str, root: &Path) -> anyhow::Result<Generated> {
    let name = ExtensionName::parse(name).map_err(ToolError::Invalid)?;
    refuse_taken(&name, root)?;
    let cargo_path = root.join("Cargo.toml");
    let cargo = std::fs::read_to_string(&cargo_path)
        .map_err(|e| ToolError::Invalid(format!("cannot read {}: {e}", cargo_path.display())))?;
    let dir = format!("{CUSTOM}/{name}");
    let edited = root_manifest::add_extension(&cargo, name.as_str(), &dir)
        .map_err(|e| ToolError::Invalid(format!("{}: {e}", cargo_path.display())))?;
    let target = root.join(&dir);
    let host = crate::share::install::host_version(root).map_err(ToolError::Invalid)?;
    if let Err(e) = write_files(&target, &name, &host) {
        let _ = std::fs::remove_dir_all(&target);
        anyhow::bail!("cannot write {}: {e}", target.display());
    }
    let scratch = root.join(".Cargo.toml.solobase-generate");
    let replaced =
        std::fs::write(&scratch, edited).and_then(|()| std::fs::rename(&scratch, &cargo_path));
    if let Err(e) = replaced {
        let _ = std::fs::remove_file(&scratch);
        let _ = std::fs::remove_dir_all(&target);
        anyhow::bail!("cannot update {}: {e}", cargo_path.display());
    }
    Ok(Generated {
        name,
        root: root.to_owned(),
        dir,
    })
}

/// Refuses a name an extension, a folder or a Cargo feature already has.
fn refuse_taken(name: &ExtensionName, root: &Path) -> Result<(), ToolError> {
    for tier in TIERS {
        let dir = root.join(tier).join(name.as_str());
        if dir.exists() {
            return Err(ToolError::Invalid(format!(
                "{} already exists: choose another name, or remove that folder first",
                dir.display()
            )));
        }
    }
    let found = solobase_manifest::discovery::discover(root, |_| {}).unwrap_or_default();
    if let Some(known) = found.iter().find(|f| f.manifest.name == *name) {
        return Err(ToolError::Invalid(format!(
            "{name} is already an extension ({}, in {}): choose another name",
            known.tier, known.dir
        )));
    }
    let cargo = std::fs::read_to_string(root.join("Cargo.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .unwrap_or_default();
    let taken_feature = cargo
        .get("features")
        .and_then(|f| f.as_table())
        .is_some_and(|f| f.contains_key(name.as_str()));
    let package = format!("solobase-ext-{name}");
    let taken_dep = ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|s| cargo.get(*s).and_then(|d| d.as_table()))
        .any(|d| d.contains_key(name.as_str()) || d.contains_key(&package));
    if taken_feature || taken_dep {
        return Err(ToolError::Invalid(format!(
            "Cargo.toml already has a feature or dependency named {name} (or {package}): \
             every extension needs a feature of its own name; choose another name"
        )));
    }
    Ok(())
}

/// Names the generated code already uses (the SDK's prelude, Rust's prelude, its imports): an
/// extension type of that name would shadow them and not compile.
const TAKEN_TYPE_NAMES: &[&str] = &[
    "Access",
    "Arc",
    "AsMut",
    "AsRef",
    "Box",
    "Clone",
    "Copy",
    "Default",
    "Deserialize",
    "DownloadInfo",
    "Drop",
    "Eq",
    "Err",
    "Event",
    "Extend",
    "Extension",
    "ExtensionError",
    "Flow",
    "Fn",
    "FnMut",
    "FnOnce",
    "From",
    "HeaderMap",
    "HeaderValue",
    "Health",
    "Hook",
    "HookPoint",
    "Hooks",
    "Identity",
    "InitContext",
    "Into",
    "IntoIterator",
    "Iterator",
    "Job",
    "LoginInfo",
    "Method",
    "MiddlewareSpec",
    "Migration",
    "None",
    "Ok",
    "Option",
    "Ord",
    "PartialEq",
    "PartialOrd",
    "Request",
    "RequestHead",
    "Response",
    "ResponseHead",
    "Result",
    "Role",
    "Routes",
    "Self",
    "Send",
    "SignupInfo",
    "Sized",
    "Some",
    "StatusCode",
    "String",
    "Sync",
    "TestHarness",
    "ToOwned",
    "ToString",
    "TryFrom",
    "TryInto",
    "Unpin",
    "UploadInfo",
    "Vec",
];

/// `Hello` for `hello`, `MyNotes` for `my-notes`, `Ext2` for `ext2`; `ResultExt` for
/// `result`, whose plain name the generated code already uses.
pub fn type_name(name: &ExtensionName) -> String {
    let camel = camel_case(name);
    if TAKEN_TYPE_NAMES.contains(&camel.as_str()) {
        camel + "Ext"
    } else {
        camel
    }
}

fn camel_case(name: &ExtensionName) -> String {
    name.as_str()
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A template with the extension's names filled in.
pub fn render(template: &str, name: &ExtensionName, host: &semver::Version) -> String {
    template
        .replace("{{name}}", name.as_str())
        .replace("{{Type}}", &type_name(name))
        .replace("{{schema}}", &name.schema())
        .replace("{{host_version}}", &host.to_string())
}

fn write_files(target: &Path, name: &ExtensionName, host: &semver::Version) -> std::io::Result<()> {
    std::fs::create_dir_all(target.parent().unwrap_or(target))?;
    // Fails if the folder appeared since the check: never overwrite.
    std::fs::create_dir(target)?;
    for (path, template) in FILES {
        let file = target.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, render(template, name, host))?;
    }
    Ok(())
}

/// What was written, and how to build, enable and call it.
pub fn next_steps(g: &Generated) -> String {
    let name = &g.name;
    let files: Vec<String> = FILES
        .iter()
        .map(|(path, _)| format!("  {}/{path}\n", g.dir))
        .collect();
    format!(
        "Created extension {name} in {root}/{dir}:\n{files}\
         and added to Cargo.toml: the feature {name}, the optional dependency \
         solobase-ext-{name}, the workspace member {dir}.\n\n\
         Next steps:\n\
         \x20 cargo test -p solobase-ext-{name}                # its own tests\n\
         \x20 cargo run --features {name} -- serve             # build with it, and run\n\
         \x20 solobase extensions enable {name} --grant-all    # if it is not enabled yet\n\
         \x20 curl -i localhost:8080/ext/{name}/hello          # {{\"message\":\"Hello, world!\"}}\n\
         \x20 solobase extensions validate {dir}\n\
         The guide: extensions/README.md.\n",
        root = g.root.display(),
        dir = g.dir,
        files = files.concat(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        for (name, want) in [
            ("hello", "Hello"),
            ("my-notes", "MyNotes"),
            ("ext2", "Ext2"),
            ("result", "ResultExt"),
            ("self", "SelfExt"),
            ("request-head", "RequestHeadExt"),
        ] {
            assert_eq!(type_name(&ExtensionName::parse(name).unwrap()), want);
        }
    }

    #[test]
    fn templates_are_filled_in_completely() {
        let name = ExtensionName::parse("my-notes").unwrap();
        let host = semver::Version::new(0, 1, 0);
        for (path, template) in FILES {
            let text = render(template, &name, &host);
            assert!(!text.contains("{{"), "{path} keeps a placeholder");
        }
        let file = |path: &str| {
            let (_, template) = FILES.iter().find(|(p, _)| *p == path).unwrap();
            render(template, &name, &host)
        };
        let lib = file("src/lib.rs");
        assert!(lib.contains("pub struct MyNotes {"), "{lib}");
        assert!(lib.contains("\"/ext/my-notes/\""), "{lib}");
        assert!(file("build.rs").contains("solobase_manifest::migrations::build()"));
        let sql = file("migrations/V1__init.sql");
        assert!(sql.contains("ext_my_notes"), "{sql}");
    }
}
