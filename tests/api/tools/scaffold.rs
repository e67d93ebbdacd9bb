//! `solobase extensions generate` and `solobase extensions validate`, run as a user runs them:
//! on the shipped extensions, on broken copies of them, and on a project in a temporary
//! directory. (Building and serving a generated extension is `tests/walkthrough.sh`.)

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::TempDir;
use crate::server::cli::{run, solobase, stderr};

fn source_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validate(cwd: &Path, dir: &Path) -> (Output, Value) {
    let mut cmd = solobase(cwd);
    cmd.args(["extensions", "validate", "--json"]).arg(dir);
    let out = run(cmd, Duration::from_secs(20));
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out, report)
}

/// The problems as `(check, file, line)`, sorted.
fn problems(report: &Value) -> Vec<(String, String, Option<u64>)> {
    let mut list: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["check"].as_str().unwrap().to_owned(),
                p["file"].as_str().unwrap().to_owned(),
                p["line"].as_u64(),
            )
        })
        .collect();
    list.sort();
    list
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_shipped_extensions_are_clean() {
    let cwd = TempDir::new();
    for dir in [
        "extensions/official/webhooks",
        "extensions/community/analytics",
    ] {
        let (out, report) = validate(&cwd.0, &source_root().join(dir));
        assert_eq!(out.status.code(), Some(0), "{dir}: {report}");
        assert_eq!(report["problems"], serde_json::json!([]), "{dir}");
        let name = dir.rsplit('/').next().unwrap();
        assert_eq!(report["name"], name);
    }
    // The test-only probe calls ctx.http without network.outbound on purpose (the host must
    // refuse it): that use, and only that, is reported.
    let (out, report) = validate(&cwd.0, &source_root().join("tests/extensions/probe"));
    assert_eq!(out.status.code(), Some(2), "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        !problems.is_empty()
            && problems
                .iter()
                .all(|p| p["permission"] == "network.outbound" && p["file"] == "src/lib.rs"),
        "{report}"
    );
}

#[test]
fn validate_reports_each_problem_with_its_file_and_line() {
    let tmp = TempDir::new();
    let ext = tmp.0.join("webhooks");
    copy_dir(&source_root().join("extensions/official/webhooks"), &ext);
    // The manifest's version no longer matches the crate's (line 3 of extension.toml, line 3
    // of Cargo.toml).
    let manifest = std::fs::read_to_string(ext.join("extension.toml")).unwrap();
    std::fs::write(
        ext.join("extension.toml"),
        manifest.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
    )
    .unwrap();
    // V1 loses its down script and gets a twin; the last version is skipped (one comes without
    // the version before it); a down script without its migration; a file that is no
    // migration.
    let last = std::fs::read_dir(ext.join("migrations"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix('V')?
                .split("__")
                .next()?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap();
    let (skip, after, orphan) = (last + 1, last + 2, last + 3);
    std::fs::remove_file(ext.join("migrations/V1__endpoints.down.sql")).unwrap();
    std::fs::write(
        ext.join(format!("migrations/V{after}__later.sql")),
        "SELECT 1;",
    )
    .unwrap();
    std::fs::write(
        ext.join(format!("migrations/V{after}__later.down.sql")),
        "SELECT 1;",
    )
    .unwrap();
    let orphan_file = format!("migrations/V{orphan}__orphan.down.sql");
    std::fs::write(ext.join(&orphan_file), "SELECT 1;").unwrap();
    std::fs::write(ext.join("migrations/notes.txt"), "").unwrap();
    std::fs::write(ext.join("migrations/V1__again.sql"), "SELECT 1;").unwrap();
    std::fs::write(ext.join("migrations/V1__again.down.sql"), "SELECT 1;").unwrap();
    // Code reaching past the SDK; std::net is covered by its network.outbound permission.
    std::fs::write(
        ext.join("src/reach.rs"),
        "//! std::fs in a comment is fine\n\
         use std::{io, net::TcpStream};\n\
         use std::fs;\n\
         fn f() -> u32 {\n    unsafe { g() }\n}\n\
         // std::process::exit(1)\n\
         const S: &str = \"std::process::exit\";\n\
         fn h() -> u32 { ::std::process::id() }\n",
    )
    .unwrap();
    std::fs::create_dir_all(ext.join("src/deep")).unwrap();
    std::fs::write(
        ext.join("src/deep/mod.rs"),
        "\n\nfn read() { let _ = std::fs::read(r#\"unsafe\"#); }\n",
    )
    .unwrap();

    let (out, report) = validate(&tmp.0, &ext);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(stderr(&out).contains("problems found"), "{}", stderr(&out));
    let s = |x: &str| x.to_owned();
    assert_eq!(
        problems(&report),
        vec![
            (s("crate"), s("Cargo.toml"), Some(3)),
            (s("migrations"), s("migrations"), None),
            (s("migrations"), s("migrations/V1__endpoints.sql"), None),
            (s("migrations"), s("migrations/V1__endpoints.sql"), None),
            (s("migrations"), orphan_file.clone(), None),
            (s("migrations"), s("migrations/notes.txt"), None),
            (s("source"), s("src/deep/mod.rs"), Some(3)),
            (s("source"), s("src/reach.rs"), Some(3)),
            (s("source"), s("src/reach.rs"), Some(5)),
            (s("source"), s("src/reach.rs"), Some(9)),
        ],
        "{report:#}"
    );
    let messages = report["problems"].to_string();
    for expected in [
        s("differs from extension.toml's 0.2.0"),
        format!("V{skip} is missing before V{after}"),
        s("version 1 is also V1__again.sql"),
        s("add migrations/V1__endpoints.down.sql"),
        s("uses std::fs: no permission allows"),
        s("uses unsafe: no permission allows unsafe code"),
        s("uses std::process: no permission allows"),
    ] {
        assert!(
            messages.contains(expected.as_str()),
            "{expected:?} in {messages}"
        );
    }

    // The same text without --json: file:line per problem.
    let mut cmd = solobase(&tmp.0);
    cmd.args(["extensions", "validate"]).arg(&ext);
    let out = run(cmd, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10 problems"), "{text}");
    assert!(text.contains("  src/reach.rs:5: uses unsafe"), "{text}");
}

#[test]
fn validate_refuses_an_http_client_without_network_outbound_and_spawns_outside_the_host() {
    let tmp = TempDir::new();
    let ext = tmp.0.join("webhooks");
    copy_dir(&source_root().join("extensions/official/webhooks"), &ext);
    let manifest = std::fs::read_to_string(ext.join("extension.toml")).unwrap();
    std::fs::write(
        ext.join("extension.toml"),
        manifest.replace(", \"network.outbound\"", ""),
    )
    .unwrap();
    let (out, report) = validate(&tmp.0, &ext);
    assert_eq!(out.status.code(), Some(2), "{report:#}");
    let messages = report["problems"].to_string();
    assert!(
        messages.contains("uses solobase_sdk::outbound") && messages.contains("uses ctx.http"),
        "{messages}"
    );

    // The same with an HTTP client crate of its own instead.
    let cargo = std::fs::read_to_string(ext.join("Cargo.toml")).unwrap();
    std::fs::write(
        ext.join("Cargo.toml"),
        cargo.replace("[dependencies]\n", "[dependencies]\nreqwest = \"0.12\"\n"),
    )
    .unwrap();
    let (_, report) = validate(&tmp.0, &ext);
    assert!(
        report["problems"]
            .to_string()
            .contains("depends on reqwest"),
        "{report:#}"
    );
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["permission"] == "network.outbound"),
        "{report:#}"
    );

    // A task the host does not own.
    let lib = std::fs::read_to_string(ext.join("src/lib.rs")).unwrap();
    std::fs::write(
        ext.join("src/lib.rs"),
        format!("{lib}\nfn rogue() {{ tokio::spawn(async {{}}); }}\n"),
    )
    .unwrap();
    let (_, report) = validate(&tmp.0, &ext);
    assert!(
        report["problems"].to_string().contains("uses tokio::spawn"),
        "{report:#}"
    );
}

#[test]
fn validate_flags_std_net_without_its_permission_and_a_misnamed_folder() {
    let tmp = TempDir::new();
    let ext = tmp.0.join("stats");
    copy_dir(&source_root().join("extensions/community/analytics"), &ext);
    let lib = std::fs::read_to_string(ext.join("src/lib.rs")).unwrap();
    std::fs::write(
        ext.join("src/lib.rs"),
        format!("use std::net::IpAddr;\n{lib}"),
    )
    .unwrap();
    let (out, report) = validate(&tmp.0, &ext);
    assert_eq!(out.status.code(), Some(2), "{report}");
    let s = |x: &str| x.to_owned();
    assert_eq!(
        problems(&report),
        vec![
            (s("manifest"), s("extension.toml"), Some(2)),
            (s("source"), s("src/lib.rs"), Some(1)),
        ],
        "{report:#}"
    );
    let messages = report["problems"].to_string();
    assert!(
        messages.contains("its folder is \\\"stats\\\""),
        "{messages}"
    );
    assert!(
        messages.contains("needs the permission network.outbound"),
        "{messages}"
    );
    let problems = report["problems"].as_array().unwrap();
    let net = problems.iter().find(|p| p["check"] == "source").unwrap();
    assert_eq!(net["permission"], "network.outbound");
    assert!(
        problems
            .iter()
            .all(|p| p["check"] == "source" || p.get("permission").is_none())
    );

    let (out, report) = validate(&tmp.0, &tmp.0.join("nothing-here"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        report["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not a directory")
    );
}

/// A project to generate into: the real root Cargo.toml, nothing else.
fn project() -> TempDir {
    let dir = TempDir::new();
    std::fs::copy(source_root().join("Cargo.toml"), dir.0.join("Cargo.toml")).unwrap();
    dir
}

fn generate(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = solobase(cwd);
    cmd.args(["extensions", "generate"]).args(args);
    run(cmd, Duration::from_secs(20))
}

#[test]
fn generate_writes_a_valid_extension_and_wires_it_into_cargo_toml() {
    let project = project();
    let original = std::fs::read_to_string(project.0.join("Cargo.toml")).unwrap();
    // From a folder inside the project: the root is found by walking up.
    let inside = project.0.join("extensions");
    std::fs::create_dir_all(&inside).unwrap();
    let out = generate(&inside, &["my-notes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "cargo run --features my-notes -- serve",
        "solobase extensions enable my-notes",
        "curl -i localhost:8080/ext/my-notes/hello",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }

    let ext = project.0.join("extensions/custom/my-notes");
    for file in [
        "Cargo.toml",
        "extension.toml",
        "src/lib.rs",
        "migrations/V1__init.sql",
        "migrations/V1__init.down.sql",
    ] {
        assert!(ext.join(file).is_file(), "{file}");
    }
    let lib = std::fs::read_to_string(ext.join("src/lib.rs")).unwrap();
    assert!(lib.contains("pub struct MyNotes {") && lib.contains("#[tokio::test]"));

    // Cargo.toml: the original lines, in order, plus the feature, dependency and member.
    let edited = std::fs::read_to_string(project.0.join("Cargo.toml")).unwrap();
    let added: Vec<&str> = edited
        .lines()
        .filter(|l| !original.lines().any(|o| o == *l))
        .collect();
    assert_eq!(
        added,
        [
            "    \"extensions/custom/my-notes\",",
            "# Extensions added by `solobase extensions generate` or `install`.",
            "my-notes = [\"dep:solobase-ext-my-notes\"]",
            "solobase-ext-my-notes = { path = \"extensions/custom/my-notes\", optional = true }",
        ]
    );
    // Every original line is kept, in order (comments included).
    let mut edited_lines = edited.lines();
    for line in original.lines() {
        assert!(
            edited_lines.any(|e| e == line),
            "{line:?} was lost or moved"
        );
    }

    // The result passes validate (its config schema is checked once it is compiled in).
    let (out, report) = validate(&project.0, &ext);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["name"], "my-notes");

    // Generating it again is refused and changes nothing.
    let out = generate(&project.0, &["my-notes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(project.0.join("Cargo.toml")).unwrap(),
        edited
    );
}

#[test]
fn generate_refuses_bad_names_taken_names_and_places_outside_a_project() {
    let project = project();
    let root = project.0.display().to_string();
    for (name, expected) in [
        ("Bad_Name", "invalid extension name"),
        ("webhooks", "already"),
        ("all-extensions", "already has a feature"),
        ("default", "already has a feature"),
    ] {
        let out = generate(&project.0, &[name, "--root", &root]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
    }
    assert!(
        !project.0.join("extensions").exists(),
        "nothing was written"
    );

    let elsewhere = TempDir::new();
    let out = generate(&elsewhere.0, &["notes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no Solobase project"),
        "{}",
        stderr(&out)
    );
    let out = generate(
        &project.0,
        &["notes", "--root", &elsewhere.0.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a Solobase project"),
        "{}",
        stderr(&out)
    );

    // A Cargo.toml without the expected shape is refused with the lines to add by hand.
    let text = std::fs::read_to_string(project.0.join("Cargo.toml")).unwrap();
    std::fs::write(
        project.0.join("Cargo.toml"),
        text.replace("members = [", "exclude = ["),
    )
    .unwrap();
    let out = generate(&project.0, &["notes"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("add by hand") && err.contains("notes = [\"dep:solobase-ext-notes\"]"),
        "{err}"
    );
    assert!(!project.0.join("extensions/custom/notes").exists());
}
