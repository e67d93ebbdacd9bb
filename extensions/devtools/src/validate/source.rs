//! The source check: every `src/**/*.rs` file scanned (`scan.rs`) for code that
//! reaches past the SDK — the file system, the network (std's and tokio's sockets, and HTTP
//! or socket client crates, in the code or in `Cargo.toml`), other programs, `unsafe`, and
//! work spawned outside the host's `ctx.tasks`; each use its permissions do not cover is a
//! problem with its line.

use std::path::{Path, PathBuf};

use solobase_manifest::Manifest;

use super::Report;
use super::scan::{self, Reach};

/// The permission that covers `std::net` (declarative: operators review it).
const NETWORK: &str = "network.outbound";

/// `src/**/*.rs`: uses of `std::fs`, `std::net`, `std::process` (and tokio's) and `unsafe`
/// that the manifest's permissions do not cover.
pub(super) fn check(dir: &Path, manifest: &Manifest, report: &mut Report) {
    let mut files = Vec::new();
    rust_files(&dir.join("src"), &mut files);
    files.sort();
    // Test-only modules in files of their own (`#[cfg(test)] mod name;`) are never part of
    // the server: neither are their files.
    let test_only = test_only_paths(&files);
    files.retain(|f| !test_only.iter().any(|t| f.starts_with(t)));
    let network = manifest.permissions.iter().any(|p| p.as_str() == NETWORK);
    for file in &files {
        let rel = file.strip_prefix(dir).unwrap_or(file).display().to_string();
        let source = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                report.problem("source", &rel, None, format!("cannot read it: {e}"));
                continue;
            }
        };
        for finding in scan::scan(&source) {
            if finding.reach == Reach::Net && network {
                continue;
            }
            report.problem("source", &rel, Some(finding.line), advice(&finding));
            if let Some(problem) = report.problems.last_mut() {
                problem.permission = (finding.reach == Reach::Net).then_some(NETWORK);
            }
        }
    }
    if !network {
        check_dependencies(dir, report);
    }
    report.notes.push(format!(
        "{} source file{} scanned",
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    ));
}

/// The files and folders of the test-only modules `files` declare: `name.rs` and `name/`
/// beside a `lib.rs`, `main.rs` or `mod.rs`, or under `<file>/` for any other file.
fn test_only_paths(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for file in files {
        let Ok(source) = std::fs::read_to_string(file) else {
            continue;
        };
        let modules = scan::test_modules(&source);
        if modules.is_empty() {
            continue;
        }
        let parent = file.parent().unwrap_or(Path::new(""));
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let base = if ["lib", "main", "mod"].contains(&stem) {
            parent.to_path_buf()
        } else {
            parent.join(stem)
        };
        for m in modules {
            paths.push(base.join(format!("{m}.rs")));
            paths.push(base.join(m));
        }
    }
    paths
}

/// What a use needs.
fn advice(finding: &scan::Finding) -> String {
    let what = match finding.reach {
        Reach::Net => format!(
            "needs the permission {NETWORK}: request it in extension.toml (permissions = \
             [\"{NETWORK}\"]) or remove the use"
        ),
        Reach::Fs => "no permission allows file-system access outside the SDK: use ctx.storage \
                      (the extension's own directory) or ctx.files (storage.read, storage.write)"
            .into(),
        Reach::Process => {
            "no permission allows starting programs or exiting the server: remove it".into()
        }
        Reach::Unsafe => "no permission allows unsafe code (the workspace denies unsafe_code): \
                          remove it"
            .into(),
        Reach::Spawn => "work the host does not own: run it with ctx.tasks (spawn, every, \
                         cron), which the host cancels when the extension stops and whose \
                         panics it counts"
            .into(),
    };
    format!("uses {}: {what}", finding.path)
}

/// Every `.rs` file under `dir`, recursively (symbolic links not followed).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            rust_files(&path, out);
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `Cargo.toml`: a dependency on an HTTP or socket client crate needs `network.outbound` too
/// (whatever name the code uses for it).
fn check_dependencies(dir: &Path, report: &mut Report) {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return;
    };
    for section in ["dependencies", "target"] {
        let deps: Vec<(String, toml::Value)> = match table.get(section) {
            Some(toml::Value::Table(t)) if section == "dependencies" => {
                t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            // [target.'cfg(…)'.dependencies]
            Some(toml::Value::Table(targets)) => targets
                .values()
                .filter_map(|t| t.get("dependencies").and_then(|d| d.as_table()))
                .flat_map(|d| d.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect(),
            _ => Vec::new(),
        };
        for (key, value) in deps {
            let package = value
                .get("package")
                .and_then(|p| p.as_str())
                .unwrap_or(&key)
                .replace('-', "_");
            if scan::NET_CRATES.contains(&package.as_str()) {
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with(&key))
                    .map(|i| i + 1);
                report.problem(
                    "source",
                    "Cargo.toml",
                    line,
                    format!(
                        "depends on {package}, an HTTP or socket client: needs the permission \
                         {NETWORK} (request it in extension.toml)"
                    ),
                );
                if let Some(problem) = report.problems.last_mut() {
                    problem.permission = Some(NETWORK);
                }
            }
        }
    }
}
