//! The binary as a user runs it: start-up errors, the embedded cluster across restarts and
//! SIGKILL, graceful shutdown with a request in flight.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::TempDir;

/// The binary with a clean environment, run from an empty directory.
pub(crate) fn solobase(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_solobase"));
    cmd.current_dir(cwd)
        .env("SOLOBASE_LOG_FORMAT", "json")
        .env("SOLOBASE_LOG", "info");
    for (key, _) in std::env::vars() {
        if key.starts_with("SOLOBASE_") || key == "DATABASE_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.env("SOLOBASE_LOG_FORMAT", "json");
    // The test binary has the test-only probe compiled in (tests/run.sh builds with
    // --all-features): the test suite allows it, and approves the extensions it uses.
    cmd.env("SOLOBASE_ALLOW_TEST_EXTENSIONS", "1")
        .env("SOLOBASE_APPROVED_EXTENSIONS", "analytics,probe")
        // Extension roles are server-wide, shared by every test database on the test cluster,
        // and so is their CONNECTION LIMIT: the same generous one as `TestApp`'s, so that one
        // server's provisioning does not lower another's.
        .env("SOLOBASE_EXTENSIONS_POOL_SIZE", "100");
    cmd
}

/// Runs to completion with a time limit.
pub(crate) fn run(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unknown_config_key_names_the_key_and_the_file() {
    let dir = TempDir::new();
    let file = dir.0.join("bad.toml");
    std::fs::write(&file, "[server]\nbind = \"127.0.0.1:0\"\nbnd = 1\n").unwrap();
    let mut cmd = solobase(&dir.0);
    cmd.arg("--config").arg(&file).arg("serve");
    let out = run(cmd, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bnd") && err.contains(&file.display().to_string()) && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn config_validate_reports_good_and_bad_configuration() {
    let dir = TempDir::new();
    let mut cmd = solobase(&dir.0);
    cmd.args(["config", "validate"]);
    let out = run(cmd, Duration::from_secs(10));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut cmd = solobase(&dir.0);
    cmd.args(["config", "validate"])
        .env("SOLOBASE_BIND", "not-an-address");
    let out = run(cmd, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("SOLOBASE_BIND"), "{}", stderr(&out));
    let mut cmd = solobase(&dir.0);
    cmd.args([
        "--config",
        "/nonexistent/solobase.toml",
        "config",
        "validate",
    ]);
    let out = run(cmd, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/solobase.toml"));
}

#[test]
fn config_validate_checks_every_extension_file_against_its_schema() {
    let dir = TempDir::new();
    let configs = dir.0.join("config/extensions");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(configs.join("webhooks.toml"), "max_endpoints = 20\n").unwrap();
    let validate = || {
        let mut cmd = solobase(&dir.0);
        cmd.args(["config", "validate"]);
        run(cmd, Duration::from_secs(10))
    };
    let out = validate();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("webhooks.toml OK"));

    // Every problem, with file, key path, expected versus found.
    std::fs::write(
        configs.join("webhooks.toml"),
        "max_endpoints = \"lots\"\nmax_endpoint = 3\n",
    )
    .unwrap();
    std::fs::write(configs.join("webhoks.toml"), "").unwrap();
    let out = validate();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "config/extensions/webhooks.toml: key `max_endpoints`: \"lots\" is not of type \"integer\"",
        "'max_endpoint' was unexpected",
        "webhoks.toml: no compiled-in extension is named \"webhoks\"",
    ] {
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
}

#[test]
fn missing_postgres_binaries_name_the_package_and_the_alternative() {
    let dir = TempDir::new();
    let empty = dir.0.join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = solobase(&dir.0);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.0.join("data"));
    cmd.env("SOLOBASE_PG_BIN_DIR", &empty);
    let out = run(cmd, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not found") && err.contains("DATABASE_URL"),
        "{err}"
    );
}

#[test]
fn an_unreachable_database_url_fails_fast_without_leaking_the_password() {
    let dir = TempDir::new();
    let mut cmd = solobase(&dir.0);
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    cmd.env("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/appdb");
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot connect to PostgreSQL at 127.0.0.1:1/appdb"),
        "{err}"
    );
    assert!(err.contains("DATABASE_URL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let mut cmd = solobase(&dir.0);
    cmd.args(["serve"]).env("DATABASE_URL", "postgres://[bad");
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a valid PostgreSQL URL"),
        "{}",
        stderr(&out)
    );
}

/// A server process started on `data`, with its port read from its log.
pub(crate) struct Server {
    child: Child,
    port: u16,
    log: std::sync::mpsc::Receiver<String>,
    /// What it logged before it listened.
    early: Vec<String>,
}

impl Server {
    fn start(cwd: &Path, data: &Path) -> Self {
        Self::start_with(cwd, data, &[])
    }

    /// Starts `solobase serve` with extra environment variables.
    pub(crate) fn start_with(cwd: &Path, data: &Path, env: &[(&str, &str)]) -> Self {
        use std::os::unix::process::CommandExt;
        let mut cmd = solobase(cwd);
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            // Its own process group, like a program started from a terminal.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            let v = serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default();
            if v["message"] == "listening" {
                let port = v["port"].as_u64().expect("port") as u16;
                seen.push(line);
                return Self {
                    child,
                    port,
                    log: rx,
                    early: seen,
                };
            }
            seen.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the server did not log that it listens; its log:\n{}",
            seen.join("\n")
        );
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The message of the first log line (after the one saying it listens) that contains
    /// `needle`, waiting up to `limit` for it.
    pub(crate) fn logged(&mut self, needle: &str, limit: Duration) -> String {
        let line = self.logged_where(needle, limit, |v| {
            v["message"].as_str().is_some_and(|m| m.contains(needle))
        });
        line["message"].as_str().unwrap_or_default().to_owned()
    }

    /// The first JSON log line (after the one saying it listens) for which `wanted` holds,
    /// waiting up to `limit` for it; `what` names it in the panic when there is none.
    pub(crate) fn logged_where(
        &mut self,
        what: &str,
        limit: Duration,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        while let Ok(line) = self
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.early.push(line.clone());
            let v = serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default();
            if wanted(&v) {
                return v;
            }
        }
        panic!(
            "the server did not log {what:?}; its log:\n{}",
            self.early.join("\n")
        );
    }

    /// Signals the whole process group, as a terminal's Ctrl-C does.
    fn signal_group(&self, sig: &str) {
        let group = format!("-{}", self.child.id());
        let ok = Command::new("kill")
            .args([sig, "--", &group])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub(crate) fn wait(mut self, limit: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut log = std::mem::take(&mut self.early);
                log.extend(self.log.try_iter());
                return (status, log);
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    /// A test that fails before stopping its server must not leave it running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn ready(server: &Server) -> StatusCode {
    reqwest::get(server.url("/readyz")).await.unwrap().status()
}

fn postmaster_pid(data: &Path) -> Option<String> {
    std::fs::read_to_string(data.join("postgres/data/postmaster.pid")).ok()
}

#[tokio::test]
async fn the_embedded_cluster_survives_sigkill_and_stale_pid_files() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    // First run: creates the cluster.
    let server = Server::start(&dir.0, &data);
    assert_eq!(ready(&server).await, StatusCode::OK);
    assert!(data.join("postgres/data/PG_VERSION").exists());
    // No TCP port: PostgreSQL listens only on its socket in the data dir.
    let pid_file = postmaster_pid(&data).unwrap();
    assert!(
        pid_file.contains(&data.join("postgres/run").display().to_string()),
        "{pid_file}"
    );
    assert_eq!(
        pid_file.lines().nth(5).map(str::trim),
        Some(""),
        "{pid_file}"
    );

    // Killed without a chance to clean up; a new run starts cleanly on the same data.
    server.signal("-KILL");
    let _ = server.wait(Duration::from_secs(10));
    let server = Server::start(&dir.0, &data);
    assert_eq!(ready(&server).await, StatusCode::OK);
    server.signal("-TERM");
    let (status, _) = server.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    assert!(
        postmaster_pid(&data).is_none(),
        "the embedded cluster was stopped"
    );

    // A stale postmaster.pid naming a dead process.
    let stale = "999999\n/nowhere\n0\n5432\n\n\n0 0\nready   \n";
    std::fs::write(data.join("postgres/data/postmaster.pid"), stale).unwrap();
    let server = Server::start(&dir.0, &data);
    assert_eq!(ready(&server).await, StatusCode::OK);
    server.signal("-INT");
    let (status, _) = server.wait(Duration::from_secs(30));
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    let server = Server::start(&dir.0, &data);
    // The CLI works next to a running server, through its cluster.
    let mut cmd = solobase(&dir.0);
    cmd.args([
        "users",
        "create",
        "--email",
        "ada@example.com",
        "--password",
        "password123",
        "--data-dir",
    ])
    .arg(&data);
    let out = run(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(server.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "ada@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();

    // A slow upload: five chunks, 200 ms apart.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let upload = tokio::spawn(
        http.put(server.url("/api/v1/storage/b/slow.bin"))
            .bearer_auth(&token)
            .body(body)
            .send(),
    );
    tx.send(Ok(vec![1; 1000])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.signal("-TERM");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(Ok(vec![1; 1000])).await.unwrap();
    }
    drop(tx);
    let res = upload
        .await
        .unwrap()
        .expect("the in-flight upload completes");
    assert_eq!(res.status(), StatusCode::CREATED);
    let (status, log) = tokio::task::spawn_blocking(move || server.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(status.success(), "{status}: {log:?}");
    assert_eq!(
        std::fs::metadata(data.join("storage/b/slow.bin"))
            .unwrap()
            .len(),
        5000
    );
    assert!(
        postmaster_pid(&data).is_none(),
        "the embedded cluster was stopped"
    );
}

#[tokio::test]
async fn as_root_an_unreachable_data_dir_gets_its_cluster_elsewhere() {
    use std::os::unix::fs::PermissionsExt;
    if !Path::new("/proc/self")
        .metadata()
        .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
    {
        eprintln!("skipped: only meaningful when the tests run as root");
        return;
    }
    let dir = TempDir::new();
    let private = dir.0.join("home");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = private.join("data");
    let server = Server::start(&dir.0, &data);
    assert_eq!(ready(&server).await, StatusCode::OK);
    let link = std::fs::read_link(data.join("postgres")).expect("<data_dir>/postgres is a link");
    assert!(
        link.starts_with("/var/lib/solobase/clusters"),
        "{}",
        link.display()
    );
    // Permissions of the user's directory are left as they were.
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    server.signal("-TERM");
    let (status, _) = server.wait(Duration::from_secs(30));
    assert!(status.success());
    // A second start finds the same cluster through the link.
    let server = Server::start(&dir.0, &data);
    assert_eq!(ready(&server).await, StatusCode::OK);
    server.signal("-TERM");
    let _ = server.wait(Duration::from_secs(30));
    std::fs::remove_dir_all(&link).unwrap();
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused_clearly() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    let first = Server::start(&dir.0, &data);
    assert_eq!(ready(&first).await, StatusCode::OK);
    let mut cmd = solobase(&dir.0);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("in use by another process"), "{err}");
    // The first server is unharmed.
    assert_eq!(ready(&first).await, StatusCode::OK);

    // The CLI reports a duplicate account and exits non-zero.
    let create = || {
        let mut cmd = solobase(&dir.0);
        cmd.args([
            "users",
            "create",
            "--email",
            "dup@example.com",
            "--password",
        ])
        .arg("password123")
        .arg("--data-dir")
        .arg(&data);
        run(cmd, Duration::from_secs(30))
    };
    assert!(create().status.success());
    let again = create();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    first.signal("-TERM");
    let (status, _) = first.wait(Duration::from_secs(30));
    assert!(status.success());
}

#[tokio::test]
async fn ctrl_c_stops_extensions_while_the_database_still_runs() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    let server = Server::start(&dir.0, &data);
    assert_eq!(ready(&server).await, StatusCode::OK);
    // Something for the analytics extension to write when it stops.
    reqwest::get(server.url("/healthz")).await.unwrap();
    server.signal_group("-INT");
    let (status, log) = server.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let complaints: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
    assert!(
        log.iter().any(|l| l.contains("extension stopped")),
        "{log:#?}"
    );
    // Periodic tasks waiting for their next run (webhooks' queue and retention, the probe's
    // tick) end with their extension instead of being cancelled at the stop time limit.
    let cancelled: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("did not end with it"))
        .collect();
    assert!(cancelled.is_empty(), "{cancelled:#?}");
}

// The binary needs the probe extension compiled in.
#[cfg(feature = "probe")]
#[tokio::test]
async fn extension_migrations_from_the_command_line() {
    use crate::helpers::{connect, database_url, fresh_database};
    let db_name = fresh_database().await;
    let url = database_url(&db_name);
    let dir = TempDir::new();
    let ext = |args: &[&str]| {
        let mut cmd = solobase(&dir.0);
        cmd.arg("extensions")
            .args(args)
            .args(["--database-url", &url]);
        run(cmd, Duration::from_secs(60))
    };
    let stdout = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let db = connect(&db_name).await;
    let probe_tables = || async {
        db.query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'ext_probe' \
             AND tablename = 'probe_items'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };

    let out = ext(&["migrate", "probe", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains("V1__probe_items.sql") && printed.contains("CREATE TABLE"),
        "{printed}"
    );
    let schemas: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('ext_probe', 'solobase')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0, "a dry run changes nothing");

    let out = ext(&["migrate", "probe"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("applied V1"), "{}", stdout(&out));
    assert_eq!(probe_tables().await, 1);

    let out = ext(&["audit", "--extension", "probe"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains("extension.migrate") && printed.contains("cli:") && printed.contains("ok"),
        "{printed}"
    );
    let out = ext(&["info", "probe", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["schema"], "ext_probe");
    assert_eq!(
        info["migrations"],
        serde_json::json!(["V1__probe_items", "V2__job_runs"])
    );
    let out = ext(&["info", "probe"]);
    assert!(
        stdout(&out).contains("migrations: V1__probe_items, V2__job_runs"),
        "{}",
        stdout(&out)
    );
    let out = ext(&["info", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the known ones are"),
        "{}",
        stderr(&out)
    );
    let out = ext(&["audit", "--extension", "probe", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "extension.migrate" && e["result"] == "ok"),
        "{entries:?}"
    );
    let out = ext(&["audit", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));

    let out = ext(&["rollback", "probe", "0", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("V1__probe_items.down.sql"),
        "{}",
        stdout(&out)
    );
    assert_eq!(probe_tables().await, 1, "a dry run changes nothing");

    let out = ext(&["rollback", "probe", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("reverted V2, V1"), "{}", stdout(&out));
    assert_eq!(probe_tables().await, 0);

    let out = ext(&["migrate", "probe", "--to", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no migration V9"), "{}", stderr(&out));
    let out = ext(&["migrate", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no extension"), "{}", stderr(&out));

    // Purging asks for confirmation, then drops the schema and the role.
    let gone = format!("gone{}", &db_name[5..13]);
    let role = format!("ext_{gone}");
    let out = ext(&["migrate", "probe"]);
    assert!(out.status.success(), "{}", stderr(&out));
    db.batch_execute(&format!(
        "CREATE ROLE {role}; CREATE SCHEMA {role} AUTHORIZATION {role}; \
         CREATE TABLE {role}.data (x int); ALTER TABLE {role}.data OWNER TO {role}"
    ))
    .await
    .unwrap();
    let out = ext(&["purge", &gone]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = ext(&["purge", &gone, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1) \
                  + (SELECT count(*) FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_eq!(probe_tables().await, 1, "other extensions are untouched");
}

#[tokio::test]
async fn no_secret_reaches_the_log_even_at_debug_level() {
    use crate::helpers::{connect, database_url, fresh_database};
    let db_name = fresh_database().await;
    let url = database_url(&db_name);
    let dir = TempDir::new();
    let password = "correct horse battery staple 42";
    let wrong = "a wrong password is a secret too";
    let server = Server::start_with(
        &dir.0,
        &dir.0.join("data"),
        &[
            ("DATABASE_URL", url.as_str()),
            ("SOLOBASE_ADMIN_EMAIL", "admin@example.com"),
            ("SOLOBASE_ADMIN_PASSWORD", password),
            ("SOLOBASE_LOG", "debug"),
        ],
    );
    let http = reqwest::Client::new();
    let login = |pw: &'static str| {
        http.post(server.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"email": "admin@example.com", "password": pw}))
            .send()
    };
    assert_eq!(
        login(wrong).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let res = login(password).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let token = res.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path) in [
        ("GET", "/api/v1/extensions"),
        ("POST", "/api/v1/extensions/webhooks/disable"),
        ("POST", "/api/v1/extensions/webhooks/enable"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/auth/me"),
    ] {
        let req = match method {
            "GET" => http.get(server.url(path)),
            _ => http.post(server.url(path)),
        };
        let res = req.bearer_auth(&token).send().await.unwrap();
        assert!(
            res.status().is_success(),
            "{method} {path}: {}",
            res.status()
        );
    }
    let forged = format!("{}x", &token[..token.len() - 1]);
    let res = http
        .get(server.url("/api/v1/auth/me"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let role_passwords: Vec<String> = connect(&db_name)
        .await
        .query("SELECT password FROM solobase.extension_roles", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !role_passwords.is_empty(),
        "the shipped extensions have roles"
    );

    server.signal("-TERM");
    let (status, log) = server.wait(Duration::from_secs(30));
    assert!(status.success());
    let log = log.join("\n");
    assert!(log.contains("admin"), "the log was captured: {log}");
    let mut secrets = vec![password.to_owned(), wrong.to_owned(), token, forged];
    secrets.extend(role_passwords);
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
}
