//! The embedded default: a private PostgreSQL cluster under `<data_dir>/postgres`.
//!
//! Layout of that directory:
//! - `data/` — the cluster (PGDATA), created by `initdb` on first run;
//! - `run/` — the unix socket; PostgreSQL listens on nothing else (`listen_addresses = ''`);
//! - `postgres.log`, `initdb.log` — the server's own output.
//!
//! The server is a child process started from a dedicated thread that waits on it. The kernel
//! is asked to stop it (fast shutdown) if that thread dies, so a Solobase killed with SIGKILL
//! leaves no orphan; a leftover server or a stale `postmaster.pid` from an older crash is
//! cleaned up on the next start. When Solobase runs as root, the cluster belongs to and runs
//! as an unprivileged system user (PostgreSQL refuses root).

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::binaries::{FindError, PgBinaries};
use super::cluster_dir::{
    absolute, cluster_owner, create_private_dir, ensure_owned_by, resolve_root,
};
use super::sys::{self, Shutdown, UserIds};

/// The superuser `initdb` creates; Solobase connects as it over the private socket.
pub const SUPERUSER: &str = "solobase";
/// Unix sockets are named `<dir>/.s.PGSQL.<port>`; the port is only part of the name.
const SOCKET_PORT: u16 = 5432;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// How to run the cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// `<data_dir>/postgres`.
    pub root: PathBuf,
    pub bin_dir: Option<PathBuf>,
    /// Runs PostgreSQL when Solobase itself runs as root.
    pub system_user: String,
    pub start_timeout: Duration,
    /// Trade durability for speed (no fsync): for throw-away clusters such as test runs.
    pub ephemeral: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(transparent)]
    Binaries(#[from] FindError),
    #[error(
        "Solobase runs as root and PostgreSQL refuses to, but the system user {0:?} that should \
         run it does not exist: create it (e.g. `useradd --system postgres`), set \
         [database.embedded] system_user, or run Solobase as an ordinary user"
    )]
    NoSystemUser(String),
    #[error(
        "the PostgreSQL user (uid {uid}) cannot reach {path}: {blocking} is not searchable by it. \
         Set SOLOBASE_DATA_DIR to a directory it can reach (e.g. under /var/lib or /srv), or \
         allow traversal with `chmod o+x {blocking}`"
    )]
    Unreachable {
        uid: u32,
        path: String,
        blocking: String,
    },
    #[error(
        "the socket path {0} is longer than the {MAX_SOCKET_PATH} bytes unix sockets allow: use \
         a shorter SOLOBASE_DATA_DIR"
    )]
    SocketPathTooLong(String),
    #[error(
        "{0} exists but is not a PostgreSQL cluster (no PG_VERSION): move it away so that \
         Solobase can create a new cluster, or point SOLOBASE_DATA_DIR elsewhere"
    )]
    NotACluster(String),
    #[error(
        "the embedded cluster in {dir} is in use by another process (pid {pid}); stop that \
         Solobase first, or use another SOLOBASE_DATA_DIR"
    )]
    InUse { dir: String, pid: i32 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("initdb failed ({status}); its output is in {log}:\n{tail}")]
    InitDb {
        status: String,
        log: String,
        tail: String,
    },
    #[error("PostgreSQL exited during start-up ({status}); its log is {log}:\n{tail}")]
    StartFailed {
        status: String,
        log: String,
        tail: String,
    },
    #[error("PostgreSQL did not become ready within {secs} s; its log is {log}:\n{tail}")]
    StartTimeout {
        secs: u64,
        log: String,
        tail: String,
    },
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let what = what.into();
    move |source| EmbeddedError::Io { what, source }
}

/// A running embedded cluster. Dropping it stops the server.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    socket_dir: PathBuf,
    pid: i32,
    /// Receives the exit status once the server process has ended.
    exited: Option<mpsc::Receiver<std::io::Result<ExitStatus>>>,
}

impl EmbeddedPostgres {
    /// Creates the cluster if needed, cleans up after a crashed predecessor, starts the server
    /// and waits until it accepts connections. Blocking.
    pub fn start(opts: &EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let bins = PgBinaries::find(&PgBinaries::plan(opts.bin_dir.clone()))?;
        let owner = cluster_owner(&opts.system_user)?;
        let root = resolve_root(&absolute(&opts.root)?, owner)?;
        let pgdata = root.join("data");
        let socket_dir = socket_dir(&root);
        let socket = socket_dir.join(format!(".s.PGSQL.{SOCKET_PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(EmbeddedError::SocketPathTooLong(
                socket.display().to_string(),
            ));
        }

        create_private_dir(&root, owner)?;
        create_private_dir(&socket_dir, owner)?;
        if !pgdata.join("PG_VERSION").exists() {
            if pgdata.exists() && fs::read_dir(&pgdata).is_ok_and(|mut d| d.next().is_some()) {
                return Err(EmbeddedError::NotACluster(pgdata.display().to_string()));
            }
            init_cluster(&bins, &root, &pgdata, owner, opts.ephemeral)?;
        } else if let Some(ids) = owner {
            ensure_owned_by(&root, ids)?;
        }
        clear_leftovers(&pgdata, &socket_dir)?;

        let log_path = root.join("postgres.log");
        let (pid, exited) = spawn_server(&bins, &pgdata, &socket_dir, &log_path, owner, opts)?;
        let mut server = Self {
            socket_dir,
            pid,
            exited: Some(exited),
        };
        server.wait_ready(&pgdata, &log_path, opts.start_timeout)?;
        Ok(server)
    }

    /// The directory holding the unix socket — the `host` to connect to.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Connection settings for `dbname` as the cluster's superuser.
    pub fn connect_config(&self, dbname: &str) -> tokio_postgres::Config {
        connect_config(&self.socket_dir, dbname)
    }

    fn wait_ready(
        &mut self,
        pgdata: &Path,
        log: &Path,
        timeout: Duration,
    ) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + timeout;
        let pid_file = pgdata.join("postmaster.pid");
        loop {
            if let Some(rx) = &self.exited
                && let Ok(status) = rx.try_recv()
            {
                self.exited = None;
                return Err(EmbeddedError::StartFailed {
                    status: describe_exit(status),
                    log: log.display().to_string(),
                    tail: tail(log),
                });
            }
            // Line 8 of postmaster.pid turns to "ready" once connections are accepted.
            if fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| text.lines().nth(7).map(|l| l.trim() == "ready"))
                .unwrap_or(false)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.stop();
                return Err(EmbeddedError::StartTimeout {
                    secs: timeout.as_secs(),
                    log: log.display().to_string(),
                    tail: tail(log),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Fast shutdown; escalates to immediate shutdown if the server takes over 30 s.
    pub(crate) fn stop(&mut self) -> Result<(), EmbeddedError> {
        let Some(exited) = self.exited.take() else {
            return Ok(());
        };
        if sys::signal(self.pid, Shutdown::Fast).is_err() {
            return Ok(()); // already gone
        }
        if exited.recv_timeout(Duration::from_secs(30)).is_err() {
            tracing::warn!(
                pid = self.pid,
                "PostgreSQL slow to stop; forcing immediate shutdown"
            );
            let _ = sys::signal(self.pid, Shutdown::Immediate);
            let _ = exited.recv_timeout(Duration::from_secs(10));
        }
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Connection settings for `dbname` on the cluster whose socket is in `socket_dir`.
pub fn connect_config(socket_dir: &Path, dbname: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(SOCKET_PORT)
        .user(SUPERUSER)
        .dbname(dbname)
        .application_name("solobase")
        .connect_timeout(Duration::from_secs(5));
    config
}

/// The socket directory of the cluster under `root` (`<data_dir>/postgres`).
pub fn socket_dir(root: &Path) -> PathBuf {
    root.join("run")
}

/// Runs initdb into a scratch directory and renames it into place, so that an interrupted
/// initdb never leaves a half-made cluster behind.
fn init_cluster(
    bins: &PgBinaries,
    root: &Path,
    pgdata: &Path,
    owner: Option<UserIds>,
    ephemeral: bool,
) -> Result<(), EmbeddedError> {
    let scratch = root.join("data.initdb");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).map_err(io(format!("cannot remove {}", scratch.display())))?;
    }
    if pgdata.exists() {
        fs::remove_dir(pgdata).map_err(io(format!("cannot remove {}", pgdata.display())))?;
    }
    let log_path = root.join("initdb.log");
    let log =
        fs::File::create(&log_path).map_err(io(format!("cannot create {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(io("cannot duplicate a file handle"))?;
    let mut cmd = Command::new(bins.initdb());
    cmd.arg("--pgdata")
        .arg(&scratch)
        .args([
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
        ])
        .args(["--locale", "C"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if ephemeral {
        cmd.arg("--no-sync");
    }
    if let Some(ids) = owner {
        cmd.uid(ids.uid).gid(ids.gid);
    }
    tracing::info!(dir = %pgdata.display(), "creating the embedded PostgreSQL cluster");
    let status = cmd
        .status()
        .map_err(io(format!("cannot run {}", bins.initdb().display())))?;
    if !status.success() {
        return Err(EmbeddedError::InitDb {
            status: status.to_string(),
            log: log_path.display().to_string(),
            tail: tail(&log_path),
        });
    }
    fs::rename(&scratch, pgdata).map_err(io(format!(
        "cannot move the new cluster to {}",
        pgdata.display()
    )))
}

/// Deals with what a previous run may have left: a server still running on this cluster
/// (orphaned, or shutting down after its parent was killed) and stale lock files.
fn clear_leftovers(pgdata: &Path, socket_dir: &Path) -> Result<(), EmbeddedError> {
    let pid_file = pgdata.join("postmaster.pid");
    if let Some(pid) = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        && sys::process_exists(pid)
        && is_postgres(pid)
    {
        let parent = parent_pid(pid).unwrap_or(1);
        if parent != 1 && sys::process_exists(parent) && !is_shutting_down(&pid_file) {
            return Err(EmbeddedError::InUse {
                dir: pgdata.display().to_string(),
                pid: parent,
            });
        }
        tracing::warn!(
            pid,
            "stopping a PostgreSQL left running by a previous Solobase"
        );
        wait_gone(pid, Duration::from_secs(2))
            .or_else(|_| {
                let _ = sys::signal(pid, Shutdown::Fast);
                wait_gone(pid, Duration::from_secs(20))
            })
            .or_else(|_| {
                let _ = sys::signal(pid, Shutdown::Immediate);
                wait_gone(pid, Duration::from_secs(10))
            })
            .map_err(io("a leftover PostgreSQL server does not stop"))?;
    }
    // No live server owns these any more; PostgreSQL would refuse to start if the recorded
    // pid had meanwhile been reused by an unrelated process.
    for stale in [
        pid_file,
        socket_dir.join(format!(".s.PGSQL.{SOCKET_PORT}")),
        socket_dir.join(format!(".s.PGSQL.{SOCKET_PORT}.lock")),
    ] {
        match fs::remove_file(&stale) {
            Ok(()) => tracing::info!(file = %stale.display(), "removed a stale lock file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("cannot remove {}", stale.display()))(e)),
        }
    }
    Ok(())
}

fn is_postgres(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("postgres"))
        .unwrap_or(false)
}

fn parent_pid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state, ppid, …
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// A postmaster whose parent died receives SIGINT (see [`sys::shut_down_with_parent`]); line 8
/// of its pid file then says "stopping".
fn is_shutting_down(pid_file: &Path) -> bool {
    fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.lines().nth(7).map(|l| l.trim() == "stopping"))
        .unwrap_or(false)
}

fn wait_gone(pid: i32, limit: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + limit;
    while sys::process_exists(pid) && is_postgres(pid) {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("pid {pid} still running after {} s", limit.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

type Exit = mpsc::Receiver<std::io::Result<ExitStatus>>;

/// Starts `postgres` from a thread that lives exactly as long as the server: the parent-death
/// signal is tied to the spawning thread, so that thread must not be a pool thread that could
/// exit early.
fn spawn_server(
    bins: &PgBinaries,
    pgdata: &Path,
    socket_dir: &Path,
    log_path: &Path,
    owner: Option<UserIds>,
    opts: &EmbeddedOptions,
) -> Result<(i32, Exit), EmbeddedError> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io(format!("cannot open {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(io("cannot duplicate a file handle"))?;
    let mut cmd = Command::new(bins.postgres());
    cmd.arg("-D")
        .arg(pgdata)
        .args(["-c", "listen_addresses="])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", socket_dir.display()))
        .args(["-c", "unix_socket_permissions=0700"])
        .args(["-p", &SOCKET_PORT.to_string()])
        .current_dir(pgdata)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if opts.ephemeral {
        for setting in [
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ] {
            cmd.args(["-c", setting]);
        }
    }
    if let Some(ids) = owner {
        cmd.uid(ids.uid).gid(ids.gid);
    }
    // A process group of its own: a Ctrl-C in the terminal (SIGINT to the foreground group)
    // must reach Solobase only, which drains requests and stops its extensions while the
    // database still runs, and then stops PostgreSQL itself.
    cmd.process_group(0);
    sys::shut_down_with_parent(&mut cmd);

    let (pid_tx, pid_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("embedded-postgres".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = pid_tx.send(Ok(child.id() as i32));
                let _ = exit_tx.send(child.wait());
            }
            Err(e) => {
                let _ = pid_tx.send(Err(e));
            }
        })
        .map_err(io("cannot start a thread for PostgreSQL"))?;
    let pid = pid_rx
        .recv()
        .map_err(|_| io("PostgreSQL launcher thread died")(std::io::Error::other("no pid")))?
        .map_err(io(format!("cannot run {}", bins.postgres().display())))?;
    Ok((pid, exit_rx))
}

fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}
