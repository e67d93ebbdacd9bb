//! `solobase extensions validate <path>`: checks an extension's folder before it is built or
//! shared — the manifest (the `Manifest` rules), the name against the folder and the crate
//! `solobase-ext-<name>`, versions, the host versions it accepts, migrations numbered
//! `V1..Vn` each with its down script, the JSON Schema of its configuration (when the server
//! binary contains the extension: the schema is derived from its `Config` type at compile
//! time, and the binary describes it, see [`Compiled`]), and
//! the uses of `std::fs`, `std::net`, `std::process` (and tokio's) and `unsafe` in `src/`
//! that its permissions do not cover (`source.rs`, on the lexer in `scan.rs`).
//!
//! Every problem is reported with its file (and line, where there is one). It reads files
//! only: no database, no configuration. Exit code 0 when clean, 2 when problems were found
//! (as `solobase config validate`).

use std::path::Path;

use serde::Serialize;
use solobase_manifest::Manifest;

mod scan;
mod source;

use crate::ToolError;

/// An extension compiled into the server binary, as `solobase extensions compiled --json`
/// describes it: what only its compiled code knows.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Compiled {
    pub name: String,
    /// The manifest text it was built with.
    pub manifest: String,
    /// The JSON Schema derived from its `Config` type.
    pub config_schema: serde_json::Value,
    /// Why its `Config::default()` does not pass its own checks, if it does not.
    pub default_config_error: Option<String>,
}

/// Asks the server binary `bin` what it contains.
pub fn compiled_in(bin: &Path) -> Result<Vec<Compiled>, String> {
    let out = std::process::Command::new(bin)
        .args(["extensions", "compiled", "--json"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} extensions compiled failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{} extensions compiled: {e}", bin.display()))
}

/// One problem: where, which check, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Which check found it: `manifest`, `crate`, `migrations`, `config`, `source`.
    pub check: &'static str,
    /// The file, relative to the extension's folder.
    pub file: String,
    /// The line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
    /// For a use in the source: the permission that would allow it, when one does
    /// (`network.outbound`); `None` when none can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<&'static str>,
}

/// What `validate` found in one folder.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The folder, as given.
    pub path: String,
    /// The extension's name, when the manifest could be read.
    pub name: Option<String>,
    pub problems: Vec<Problem>,
    /// What was checked, and what could not be (not problems).
    pub notes: Vec<String>,
}

impl Report {
    pub(super) fn problem(
        &mut self,
        check: &'static str,
        file: &str,
        line: Option<usize>,
        message: String,
    ) {
        self.problems.push(Problem {
            check,
            file: file.to_owned(),
            line,
            message,
            permission: None,
        });
    }
}

/// Runs the command: prints the report (text or JSON); fails with a configuration error
/// (exit 2) when it lists problems.
pub fn run(path: &Path, json: bool) -> anyhow::Result<()> {
    let report = validate(path, compiled().as_deref());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    match report.problems.len() {
        0 => Ok(()),
        n => Err(ToolError::Invalid(format!(
            "{}: {n} problem{} found",
            path.display(),
            if n == 1 { "" } else { "s" }
        ))
        .into()),
    }
}

/// The report as text: one line per problem, `file:line: message`, then the notes.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let what = report.name.as_deref().unwrap_or("extension");
    if report.problems.is_empty() {
        out.push_str(&format!("{} ({what}): OK\n", report.path));
    } else {
        out.push_str(&format!(
            "{} ({what}): {} problem{}\n",
            report.path,
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        ));
    }
    for p in &report.problems {
        match p.line {
            Some(line) => out.push_str(&format!("  {}:{line}: {}\n", p.file, p.message)),
            None => out.push_str(&format!("  {}: {}\n", p.file, p.message)),
        }
    }
    for note in &report.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}

/// What the server binary next to the tools contains, when there is one that answers.
pub fn compiled() -> Option<Vec<Compiled>> {
    let bin = crate::server_binary()?;
    match compiled_in(&bin) {
        Ok(list) => Some(list),
        Err(e) => {
            eprintln!("note: {e}");
            None
        }
    }
}

/// Checks the extension folder `dir`; `compiled` is what the server binary contains (see
/// [`compiled`]), for the configuration's schema.
pub fn validate(dir: &Path, compiled: Option<&[Compiled]>) -> Report {
    let mut report = Report {
        path: dir.display().to_string(),
        ..Report::default()
    };
    if !dir.is_dir() {
        report.problem(
            "manifest",
            ".",
            None,
            "not a directory: give the extension's folder, e.g. extensions/custom/<name>".into(),
        );
        return report;
    }
    let Some(manifest) = check_manifest(dir, &mut report) else {
        return report;
    };
    report.name = Some(manifest.name.to_string());
    check_crate(dir, &manifest, &mut report);
    check_migrations(dir, &mut report);
    check_config_schema(dir, &manifest, compiled, &mut report);
    source::check(dir, &manifest, &mut report);
    report
}

/// `migrations/`, by the rules the extension's build script embeds it by.
fn check_migrations(dir: &Path, report: &mut Report) {
    if !dir.join("migrations").is_dir() {
        report
            .notes
            .push("no migrations/ folder: no migrations".into());
        return;
    }
    let (found, problems) = solobase_manifest::migrations::read(dir);
    for p in problems {
        report.problem("migrations", &p.file, None, p.message);
    }
    report.notes.push(format!(
        "{} migration{} checked",
        found.len(),
        if found.len() == 1 { "" } else { "s" }
    ));
}

/// `extension.toml`: parses by the SDK's rules, its name is the folder's, this host is
/// recent enough.
fn check_manifest(dir: &Path, report: &mut Report) -> Option<Manifest> {
    const FILE: &str = "extension.toml";
    let text = match std::fs::read_to_string(dir.join(FILE)) {
        Ok(text) => text,
        Err(e) => {
            report.problem(
                "manifest",
                FILE,
                None,
                format!("cannot read it ({e}): every extension's folder has an extension.toml"),
            );
            return None;
        }
    };
    let schema_problems = against_schema(&text);
    if !schema_problems.is_empty() {
        for (key, message) in schema_problems {
            let line = key.as_deref().and_then(|k| line_of_key(&text, k));
            report.problem("manifest", FILE, line, message);
        }
        return None;
    }
    let manifest = match Manifest::parse(&text) {
        Ok(m) => m,
        Err(e) => {
            let line = text
                .parse::<toml::Table>()
                .err()
                .and_then(|err| err.span())
                .map(|span| line_of(&text, span.start));
            report.problem("manifest", FILE, line, e);
            return None;
        }
    };
    let folder = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if folder != manifest.name.as_str() {
        report.problem(
            "manifest",
            FILE,
            line_of_key(&text, "name"),
            format!(
                "the extension is named {:?} but its folder is {folder:?}: make them equal",
                manifest.name.as_str()
            ),
        );
    }
    // The host it will be built into: the project the folder is in, else the Solobase
    // release these tools come with.
    let host = crate::scaffold::project_root(dir, true)
        .ok()
        .and_then(|root| crate::share::install::host_version(&root).ok())
        .or_else(|| semver::Version::parse(env!("CARGO_PKG_VERSION")).ok());
    if let Some(host) = host.filter(|h| !manifest.host.matches(h)) {
        let key = if text.contains("min_host_version") {
            "min_host_version"
        } else {
            "host"
        };
        report.problem(
            "manifest",
            FILE,
            line_of_key(&text, key),
            format!(
                "it runs on Solobase {}, not this one ({host}): it would not build here",
                manifest.host
            ),
        );
    }
    Some(manifest)
}

/// The manifest against its published JSON Schema (`extensions/extension.schema.json`):
/// `(last key, message)` for each problem. Unparsable TOML is left to `Manifest::parse`.
fn against_schema(text: &str) -> Vec<(Option<String>, String)> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let Ok(value) = serde_json::to_value(table) else {
        return Vec::new();
    };
    let schema = serde_json::to_value(solobase_manifest::json_schema()).unwrap_or_default();
    let Ok(validator) = jsonschema::validator_for(&schema) else {
        return Vec::new();
    };
    validator
        .iter_errors(&value)
        .map(|e| {
            let pointer = e.instance_path().to_string();
            let key = pointer
                .rsplit('/')
                .find(|s| !s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_owned);
            let path = solobase_manifest::toml_key_path(&pointer);
            (
                key,
                format!("{path}: {e} (see extensions/extension.schema.json)"),
            )
        })
        .collect()
}

/// `Cargo.toml`: package `solobase-ext-<name>`, the manifest's version, no dependency on the
/// server crate.
fn check_crate(dir: &Path, manifest: &Manifest, report: &mut Report) {
    const FILE: &str = "Cargo.toml";
    let text = match std::fs::read_to_string(dir.join(FILE)) {
        Ok(text) => text,
        Err(e) => {
            report.problem("crate", FILE, None, format!("cannot read it: {e}"));
            return;
        }
    };
    let table = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| line_of(&text, s.start));
            report.problem(
                "crate",
                FILE,
                line,
                format!("invalid TOML: {}", e.message()),
            );
            return;
        }
    };
    let package = table.get("package").and_then(|p| p.as_table());
    let want = format!("solobase-ext-{}", manifest.name);
    let name = package.and_then(|p| p.get("name")).and_then(|n| n.as_str());
    if name != Some(want.as_str()) {
        report.problem(
            "crate",
            FILE,
            line_of_key(&text, "name"),
            format!("the package must be named {want:?} (found {name:?})"),
        );
    }
    match package.and_then(|p| p.get("version")) {
        Some(toml::Value::String(v)) if *v == manifest.version.to_string() => {}
        Some(toml::Value::String(v)) => report.problem(
            "crate",
            FILE,
            line_of_key(&text, "version"),
            format!(
                "version {v:?} differs from extension.toml's {}: make them equal",
                manifest.version
            ),
        ),
        _ => report.problem(
            "crate",
            FILE,
            None,
            format!(
                "[package] needs version = \"{}\" (the manifest's)",
                manifest.version
            ),
        ),
    }
    // The server as a dev-dependency is the testing kit (solobase::testkit): never built into
    // the extension itself.
    for section in ["dependencies", "build-dependencies"] {
        let deps = table.get(section).and_then(|d| d.as_table());
        if deps.is_some_and(|d| d.contains_key("solobase")) {
            report.problem(
                "crate",
                FILE,
                line_of_key(&text, "solobase"),
                format!(
                    "[{section}] names the server crate `solobase`: extensions depend only on \
                     the SDK, solobase-sdk (the server may be a [dev-dependencies] entry, for \
                     its testing kit solobase::testkit)"
                ),
            );
        }
    }
}

/// The configuration's JSON Schema, derived from the `Config` type at compile time: checked
/// when the server binary contains the extension as it is on disk (`compiled`, as that binary
/// describes what it contains; `None` when there is no server binary to ask).
fn check_config_schema(
    dir: &Path,
    manifest: &Manifest,
    compiled: Option<&[Compiled]>,
    report: &mut Report,
) {
    let name = manifest.name.as_str();
    let on_disk = std::fs::read_to_string(dir.join("extension.toml")).unwrap_or_default();
    let Some(compiled) = compiled else {
        report.notes.push(format!(
            "config schema not checked: no solobase binary to ask (the schema is derived from \
             {name}'s Config type when compiled); run `solobase extensions validate`, or set \
             SOLOBASE_BIN"
        ));
        return;
    };
    let Some(registration) = compiled.iter().find(|c| c.name == name) else {
        report.notes.push(format!(
            "config schema not checked: the solobase binary does not contain {name} (the \
             schema is derived from its Config type when compiled); build with --features \
             {name} and validate again"
        ));
        return;
    };
    if registration.manifest != on_disk {
        report.notes.push(format!(
            "config schema not checked: the {name} compiled into the solobase binary has a \
             different extension.toml; rebuild and validate again"
        ));
        return;
    }
    if let Err(e) = jsonschema::meta::validate(&registration.config_schema) {
        report.problem(
            "config",
            "src",
            None,
            format!("the Config type's JSON Schema is not a valid JSON Schema: {e}"),
        );
    } else if let Some(e) = &registration.default_config_error {
        report.problem(
            "config",
            "src",
            None,
            format!("the Config type's default does not parse: {e}"),
        );
    } else {
        report.notes.push("config schema checked".into());
    }
}

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of the first `key = …` in `text`.
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_keys_and_offsets() {
        let text = "[package]\nname = \"x\"\nversion=\"1\"\n";
        assert_eq!(line_of_key(text, "name"), Some(2));
        assert_eq!(line_of_key(text, "version"), Some(3));
        assert_eq!(line_of_key(text, "edition"), None);
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 11), 2);
    }

    #[test]
    fn the_server_is_allowed_only_as_a_dev_dependency() {
        let dir = std::env::temp_dir().join(format!("solobase-crate-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = Manifest::parse(
            "[extension]\nname = \"notes\"\nversion = \"0.1.0\"\ndescription = \"x\"\n\
             authors = [\"a\"]\nlicense = \"MIT\"\nmin_host_version = \"0.1.0\"\n",
        )
        .unwrap();
        let cargo = |deps: &str| {
            format!("[package]\nname = \"solobase-ext-notes\"\nversion = \"0.1.0\"\n{deps}")
        };
        let problems = |deps: &str| {
            std::fs::write(dir.join("Cargo.toml"), cargo(deps)).unwrap();
            let mut report = Report {
                path: String::new(),
                name: None,
                problems: Vec::new(),
                notes: Vec::new(),
            };
            check_crate(&dir, &manifest, &mut report);
            report
                .problems
                .iter()
                .filter(|p| p.message.contains("server crate"))
                .count()
        };
        assert_eq!(
            problems("[dev-dependencies]\nsolobase = { path = \"../../..\" }\n"),
            0
        );
        assert_eq!(
            problems("[dependencies]\nsolobase = { path = \"../../..\" }\n"),
            1
        );
        assert_eq!(problems("[build-dependencies]\nsolobase = \"0.1\"\n"), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
