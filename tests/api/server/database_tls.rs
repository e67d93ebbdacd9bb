//! PostgreSQL over TLS: a cluster the test starts with `ssl = on` on TCP and a certificate
//! from a CA made in the test; `sslmode` and `sslrootcert` from `DATABASE_URL` as libpq reads
//! them, for the host's pool and every extension role's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use solobase::config::Config;
use solobase::db::{Mode, Postgres};

use crate::helpers::{TempDir, TestApp};
use crate::server::tls::Ca;

/// The newest installed PostgreSQL's `bin` folder.
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("postgres").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("a PostgreSQL version with its server binaries")
}

/// Runs `program` as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Whether this process runs as root (from /proc: no unsafe call).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A PostgreSQL cluster on 127.0.0.1 speaking TLS with a certificate for `localhost`.
struct TlsCluster {
    port: u16,
    child: Child,
    _dir: TempDir,
}

impl TlsCluster {
    fn start(ca: &Ca) -> Self {
        let dir = TempDir::new();
        let data = dir.0.join("data");
        let bin = pg_bin();
        let root = is_root();
        let chown = |path: &Path| {
            if root {
                let ok = Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(path)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "chown {}", path.display());
            }
        };
        std::fs::create_dir_all(&data).unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(&dir.0)
            .status()
            .unwrap();
        chown(&dir.0);
        let out = as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (cert, key, _) = ca.leaf();
        std::fs::write(data.join("server.crt"), cert).unwrap();
        std::fs::write(data.join("server.key"), key).unwrap();
        Command::new("chmod")
            .arg("600")
            .arg(data.join("server.key"))
            .status()
            .unwrap();
        chown(&data);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("port={port}"))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.0.display()))
            .args(["-c", "ssl=on", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let cluster = Self {
            port,
            child,
            _dir: dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(200));
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the TLS cluster does not listen on {port}");
    }

    fn url(&self, host: &str, extra: &str) -> String {
        format!(
            "host={host} port={} user=postgres dbname=postgres connect_timeout=5 {extra}",
            self.port
        )
    }
}

impl Drop for TlsCluster {
    /// Stops the postmaster itself (`runuser` does not pass the signal on).
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self._dir.0.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
        let _ = self.child.wait();
    }
}

async fn connect(url: &str) -> Result<Postgres, String> {
    let mut config = Config::default();
    config.database.url = Some(url.to_owned());
    let connected = tokio::time::timeout(
        Duration::from_secs(30),
        Postgres::connect(&config, Mode::Share),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting with {url} hangs"));
    connected.map_err(|e| e.to_string())
}

/// Whether the pool's connection is encrypted.
async fn encrypted(db: &Postgres) -> bool {
    db.pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sslmode_is_honoured_as_libpq_does_and_a_bad_certificate_says_which_host_and_why() {
    let ca = Ca::new();
    let cluster = TlsCluster::start(&ca);
    let dir = TempDir::new();
    let root = dir.0.join("root.pem");
    std::fs::write(&root, ca.pem()).unwrap();
    let other = dir.0.join("other.pem");
    std::fs::write(&other, Ca::new().pem()).unwrap();
    let rootcert = |file: &Path| format!("sslrootcert={}", file.display());

    // verify-full with the right CA and name: encrypted.
    let db = connect(&cluster.url(
        "localhost",
        &format!("sslmode=verify-full {}", rootcert(&root)),
    ))
    .await
    .unwrap();
    assert!(encrypted(&db).await);
    db.close().await;
    // A CA that did not sign it: refused, naming the host and the reason.
    let err = connect(&cluster.url(
        "localhost",
        &format!("sslmode=verify-full {}", rootcert(&other)),
    ))
    .await
    .expect_err("refused");
    assert!(
        err.contains("localhost") && err.contains("invalid peer certificate"),
        "{err}"
    );
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca does not.
    let err = connect(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-full {}", rootcert(&root)),
    ))
    .await
    .expect_err("refused");
    assert!(
        err.contains("127.0.0.1") && err.contains("not valid for name"),
        "{err}"
    );
    let db = connect(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-ca {}", rootcert(&root)),
    ))
    .await
    .unwrap();
    assert!(encrypted(&db).await);
    db.close().await;
    // require without a root: encrypted, not authenticated (as libpq); with the wrong root it
    // checks the chain (as libpq).
    let db = connect(&cluster.url("localhost", "sslmode=require"))
        .await
        .unwrap();
    assert!(encrypted(&db).await);
    db.close().await;
    assert!(
        connect(&cluster.url(
            "localhost",
            &format!("sslmode=require {}", rootcert(&other))
        ))
        .await
        .is_err()
    );
    // The URL form, and disable.
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        cluster.port,
        root.display()
    );
    let db = connect(&url).await.unwrap();
    assert!(encrypted(&db).await);
    db.close().await;
    let db = connect(&cluster.url("localhost", "sslmode=disable"))
        .await
        .unwrap();
    assert!(!encrypted(&db).await);
    db.close().await;
    let err = connect(&cluster.url("localhost", "sslmode=verify"))
        .await
        .err()
        .unwrap();
    assert!(err.contains("verify-full"), "{err}");

    // A whole server on it: the host's pool and every extension role's connections encrypted.
    let url = cluster.url(
        "localhost",
        &format!("sslmode=verify-full {}", rootcert(&root)),
    );
    let app = TestApp::builder()
        .config(move |c| c.database.url = Some(url))
        .spawn()
        .await;
    // The first administrator, by the first-run link (the test helpers' direct database
    // access is for the test cluster, not this one).
    let link = app.setup_link.clone().expect("no administrator yet");
    let token = link.split_once("#/setup/").unwrap().1;
    let res = app
        .http
        .post(app.url("/api/v1/auth/setup"))
        .json(&serde_json::json!({"token": token, "email": "admin@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(app.me(body["token"].as_str().unwrap()).await.status(), 200);
    let db = connect(&cluster.url("localhost", "sslmode=disable"))
        .await
        .unwrap();
    let rows = db
        .pool()
        .get()
        .await
        .unwrap()
        .query(
            "SELECT a.usename::text, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = 'postgres' AND a.pid <> pg_backend_pid() AND a.usename IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    let sessions: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        sessions.iter().any(|(user, _)| user.starts_with("ext_")),
        "{sessions:?}"
    );
    assert!(sessions.iter().all(|(_, ssl)| *ssl), "{sessions:?}");
    app.stop().await.unwrap();
}
