//! Operating extensions from the command line next to a running server: `status`, `health`,
//! `metrics` (what the instances write to the database) and `config get|set|edit` (which the
//! running server applies at once), plus shell completions.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TempDir, TestApp, database_url, eventually, fresh_database};
use crate::server::cli::{run, solobase, stderr};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[tokio::test]
async fn status_health_and_metrics_come_from_the_running_instances() {
    let db_name = fresh_database().await;
    let app = TestApp::builder()
        .on(db_name.clone())
        .config(|c| {
            c.extensions.stats_interval_ms = 100;
            c.extensions.health_interval_ms = 100;
        })
        .spawn()
        .await;
    for _ in 0..3 {
        app.get("/ext/probe/public").await;
    }
    let url = database_url(&db_name);
    let dir = TempDir::new();
    let ext = |args: &[&str]| {
        let mut cmd = solobase(&dir.0);
        cmd.arg("extensions")
            .args(args)
            .args(["--database-url", &url]);
        run(cmd, Duration::from_secs(60))
    };

    assert!(
        eventually(Duration::from_secs(10), || async {
            let status = json_of(&ext(&["status", "--json"]));
            let probe = status["extensions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "probe")
                .cloned()
                .unwrap();
            status["instances"] == 1
                && probe["stats"]["requests"].as_u64() >= Some(3)
                && probe["health"]["status"] == "healthy"
        })
        .await,
        "the server's counters and health reach the command line"
    );
    let out = ext(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains("1 running instance reporting"),
        "{printed}"
    );
    let line = printed.lines().find(|l| l.starts_with("probe ")).unwrap();
    assert!(line.contains(" yes ") && line.contains("healthy"), "{line}");

    let metrics = json_of(&ext(&["metrics", "probe", "--json"]));
    let probe = &metrics["extensions"]["probe"];
    assert!(
        probe["total"]["requests"].as_u64().unwrap() >= 3,
        "{metrics}"
    );
    assert!(
        probe["total"]["hook_calls"].as_u64().unwrap() >= 3,
        "{metrics}"
    );
    assert_eq!(probe["instances"].as_array().unwrap().len(), 1, "{metrics}");
    assert!(
        metrics["extensions"].get("webhooks").is_none(),
        "only the named one"
    );
    let out = ext(&["metrics"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("REQUESTS"), "{}", stdout(&out));
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("webhooks ")),
        "{}",
        stdout(&out)
    );

    let out = ext(&["health", "probe"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("probe: healthy"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("recent checks"), "{}", stdout(&out));
    let health = json_of(&ext(&["health", "probe", "--json"]));
    assert!(!health["health"]["history"].as_array().unwrap().is_empty());
    let out = ext(&["health", "nope"]);
    assert_eq!(out.status.code(), Some(2));

    // Disabled: not checked, so unknown, and the exit code says so.
    let out = ext(&["disable", "probe"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        eventually(Duration::from_secs(10), || async {
            ext(&["health", "probe"]).status.code() == Some(5)
        })
        .await,
        "a disabled extension's health is unknown (exit 5)"
    );

    // A stopped instance takes its counters with it.
    app.stop().await.unwrap();
    let metrics = json_of(&ext(&["metrics", "--json"]));
    assert_eq!(
        metrics["extensions"]["probe"]["instances"],
        serde_json::json!([])
    );
    let out = ext(&["metrics"]);
    assert!(
        stdout(&out).contains("no running instance"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn configuration_is_read_and_changed_from_the_command_line() {
    let db_name = fresh_database().await;
    let app = TestApp::builder().on(db_name.clone()).spawn().await;
    let url = database_url(&db_name);
    let dir = TempDir::new();
    let ext_with = |args: &[&str], editor: Option<&std::path::Path>| {
        let mut cmd = solobase(&dir.0);
        cmd.arg("extensions")
            .args(args)
            .args(["--database-url", &url]);
        cmd.env_remove("VISUAL");
        if let Some(editor) = editor {
            cmd.env("EDITOR", editor);
        }
        run(cmd, Duration::from_secs(60))
    };
    let ext = |args: &[&str]| ext_with(args, None);
    let greeting = || async {
        app.get("/ext/probe/config")
            .await
            .json::<Value>()
            .await
            .unwrap()["greeting"]
            .clone()
    };

    let got = json_of(&ext(&["config", "probe", "get", "--json"]));
    assert_eq!(got["config"], serde_json::json!({}));
    assert!(
        got["source"].as_str().unwrap().contains("defaults"),
        "{got}"
    );
    let etag = got["etag"].as_str().unwrap().to_owned();

    let out = ext(&["config", "probe", "set", "greeting=\"from the cli\""]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        eventually(Duration::from_secs(10), || async {
            greeting().await == "from the cli"
        })
        .await,
        "the running server applied the change"
    );
    let out = ext(&["config", "probe"]);
    assert!(
        stdout(&out).contains("greeting = \"from the cli\""),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("shared by every instance"));

    // Wrong values, unknown keys and stale etags change nothing, and say why.
    let out = ext(&["config", "probe", "set", "greeting=5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("greeting"), "{}", stderr(&out));
    let out = ext(&["config", "probe", "set", "gretting=hi"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("gretting"), "{}", stderr(&out));
    let out = ext(&["config", "probe", "set", "greeting=x", "--if-match", &etag]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("read it again"), "{}", stderr(&out));
    let out = ext(&["config", "probe", "set"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(greeting().await, "from the cli");

    let schema = json_of(&ext(&["config", "probe", "schema"]));
    assert!(schema["properties"]["greeting"].is_object(), "{schema}");

    // edit: a bad edit reopens the editor with the problem; leaving it unchanged gives up.
    let editor = dir.0.join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nif grep -q 'NOT SAVED' \"$1\"; then cp \"$1\" \"$1.seen\"; exit 0; fi\n\
         echo 'greeting = 42' > \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = ext_with(&["config", "probe", "edit"], Some(&editor));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not saved"), "{}", stderr(&out));
    assert_eq!(greeting().await, "from the cli");
    let good = dir.0.join("good.sh");
    std::fs::write(&good, "#!/bin/sh\necho 'greeting = \"edited\"' > \"$1\"\n").unwrap();
    std::fs::set_permissions(&good, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = ext_with(&["config", "probe", "edit"], Some(&good));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        eventually(Duration::from_secs(10), || async {
            greeting().await == "edited"
        })
        .await,
        "the running server applied the edit"
    );
    app.stop().await.unwrap();
}

#[test]
fn shell_completions_are_generated() {
    let dir = TempDir::new();
    for shell in ["bash", "zsh", "fish"] {
        let mut cmd = solobase(&dir.0);
        cmd.args(["completions", shell]);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains("extensions") && script.contains("rollback"),
            "{shell}: {script}"
        );
    }
    let mut cmd = solobase(&dir.0);
    cmd.args(["completions", "tcsh"]);
    let out = run(cmd, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
}
