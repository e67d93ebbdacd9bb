//! The host's side of `ctx.tasks`: each extension's background tasks, supervised. A task runs
//! inside the extension's span; a panic in it is caught, counted, fed to the circuit breaker
//! and shown in the extension's health (`Loaded::task_panicked`); a continuous task is
//! started again after a growing delay. When the extension stops (disabled, automatically or
//! not, or at shutdown) a periodic or cron task waiting for its next run ends at once; one
//! that is running, and a continuous task, get the rest of the stop time limit to end after
//! `stop()` returned, and are then cancelled. Tasks registered while the extension is not running are
//! refused (logged): they belong in `start()`.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use solobase_sdk::ExtensionName;
use solobase_sdk::tasks::{Schedule, TaskRunner, TaskWork};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::host::Loaded;

/// The longest wait before a continuous task that panicked is started again.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// One extension's tasks.
pub(crate) struct TaskSet {
    extension: ExtensionName,
    span: tracing::Span,
    /// Where panics are reported; set once the extension is loaded.
    owner: OnceLock<Weak<Loaded>>,
    /// Whether the extension runs (tasks may be registered).
    open: AtomicBool,
    /// Set when the extension stops: scheduled tasks stop waiting for their next run.
    closing: tokio::sync::watch::Sender<bool>,
    running: Mutex<Vec<(String, JoinHandle<()>)>>,
}

impl std::fmt::Debug for TaskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSet")
            .field("extension", &self.extension)
            .field("tasks", &self.names())
            .finish()
    }
}

impl TaskSet {
    pub(crate) fn new(extension: ExtensionName, span: tracing::Span) -> Self {
        Self {
            extension,
            span,
            owner: OnceLock::new(),
            open: AtomicBool::new(false),
            closing: tokio::sync::watch::Sender::new(false),
            running: Mutex::new(Vec::new()),
        }
    }

    /// Names the extension that panics are reported to.
    pub(crate) fn attach(&self, owner: Weak<Loaded>) {
        let _ = self.owner.set(owner);
    }

    /// The extension is starting: tasks may be registered.
    pub(crate) fn open(&self) {
        self.closing.send_replace(false);
        self.open.store(true, Ordering::Relaxed);
    }

    /// The names of the tasks running now.
    pub(crate) fn names(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The extension stopped: no more tasks; those running get `grace` to end, then are
    /// cancelled. Returns the names of those cancelled.
    pub(crate) async fn close(&self, grace: Duration) -> Vec<String> {
        self.open.store(false, Ordering::Relaxed);
        self.closing.send_replace(true);
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        let deadline = tokio::time::Instant::now() + grace;
        let mut cancelled = Vec::new();
        for (name, mut handle) in running {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
                let _ = handle.await;
                cancelled.push(name);
            }
        }
        if !cancelled.is_empty() {
            tracing::info!(extension = %self.extension, ?cancelled, "cancelled the extension's tasks that did not end with it");
        }
        cancelled
    }
}

impl TaskRunner for TaskSet {
    fn run(&self, name: &str, schedule: Schedule, work: TaskWork) {
        if !self.open.load(Ordering::Relaxed) {
            tracing::warn!(
                extension = %self.extension,
                task = name,
                "a task was registered while the extension is not running: ignored (register \
                 tasks in start())"
            );
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(extension = %self.extension, task = name, "no runtime to run a task on");
            return;
        };
        let owner = self.owner.get().cloned();
        let task = supervise(
            owner,
            name.to_owned(),
            schedule,
            work,
            self.closing.subscribe(),
        )
        .instrument(tracing::info_span!(parent: &self.span, "task", task = name));
        let handle = runtime.spawn(task);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|(_, h)| !h.is_finished());
        running.push((name.to_owned(), handle));
    }
}

/// Runs `work` on its schedule, catching every panic.
async fn supervise(
    owner: Option<Weak<Loaded>>,
    name: String,
    schedule: Schedule,
    work: TaskWork,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    // Waits `delay`; false when the extension stopped meanwhile (or had already).
    let mut wait = async |delay: Duration| {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            _ = closing.wait_for(|closed| *closed) => false,
        }
    };
    let run_once = || async {
        // Making the future runs the extension's code too: inside the catch.
        match AssertUnwindSafe(async { work().await })
            .catch_unwind()
            .await
        {
            Ok(()) => true,
            Err(payload) => {
                match owner.as_ref().and_then(Weak::upgrade) {
                    Some(l) => l.task_panicked(&name, payload.as_ref()),
                    None => tracing::error!(
                        task = %name,
                        panic = crate::runtime::faults::message(payload.as_ref()),
                        "a task panicked"
                    ),
                }
                false
            }
        }
    };
    match schedule {
        Schedule::Continuous => {
            let mut delay = Duration::from_secs(1);
            while !run_once().await {
                tracing::warn!(task = %name, delay_ms = delay.as_millis() as u64, "starting the task again after its panic");
                if !wait(delay).await {
                    return;
                }
                delay = (delay * 2).min(MAX_RESTART_DELAY);
            }
        }
        Schedule::Every(period) => {
            while wait(period).await {
                run_once().await;
            }
        }
        Schedule::Cron(cron) => loop {
            let now = time::OffsetDateTime::now_utc();
            let Some(next) = cron.next_after(now) else {
                tracing::warn!(task = %name, "its cron schedule names no time in the next four years");
                return;
            };
            if !wait((next - now).try_into().unwrap_or(Duration::ZERO)).await {
                return;
            }
            run_once().await;
        },
        other => tracing::error!(task = %name, schedule = ?other, "unknown schedule"),
    }
}
