//! Keeps this instance's view of extension state (enabled flags, grants) equal to the
//! database's, whoever changed it — the API on any instance, the command line, an automatic
//! disable. A `LISTEN` on [`state::CHANNEL`] applies a change moments after it commits; a
//! re-read every `resync` catches what a lost notification or a reconnect would miss.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::host::ExtensionHost;
use super::state::CHANNEL;

/// How long to wait before listening again after the connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Starts the task; it ends when `stop` changes or the host is dropped.
pub(super) fn spawn(
    host: Weak<ExtensionHost>,
    pg_config: tokio_postgres::Config,
    resync: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut listener = match listen(&pg_config).await {
                Ok(listener) => Some(listener),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for extension state changes; re-reading every {} s", resync.as_secs());
                    None
                }
            };
            // Whatever changed while not listening.
            if !apply(&host).await {
                return;
            }
            loop {
                let listening = listener.is_some();
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => l.notices.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    n = notified => {
                        if n.is_none() {
                            tracing::warn!("the connection listening for extension state changes closed; reconnecting");
                            break;
                        }
                        // One re-read for a burst of notifications.
                        if let Some(l) = listener.as_mut() {
                            while l.notices.try_recv().is_ok() {}
                        }
                    }
                    _ = tick.tick() => if !listening { break },
                    _ = stop.changed() => return,
                }
                if !apply(&host).await {
                    return;
                }
            }
            drop(listener);
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                _ = stop.changed() => return,
            }
        }
    })
}

/// Re-reads the state; false once the host is gone.
async fn apply(host: &Weak<ExtensionHost>) -> bool {
    let Some(host) = host.upgrade() else {
        return false;
    };
    if let Err(e) = host.resync().await {
        tracing::warn!(error = %e, "cannot re-read extension state");
    }
    true
}

/// A connection listening on [`CHANNEL`]: one message per notification, closed with it.
struct Listener {
    notices: mpsc::UnboundedReceiver<()>,
    driver: JoinHandle<()>,
    /// The connection lives while its client does.
    _client: tokio_postgres::Client,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn listen(pg_config: &tokio_postgres::Config) -> Result<Listener, tokio_postgres::Error> {
    let (client, mut connection) = pg_config.connect(NoTls).await?;
    let (tx, notices) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the extension state listener's connection failed");
                    return;
                }
            }
        }
    });
    let listener = Listener {
        notices,
        driver,
        _client: client,
    };
    listener
        ._client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await?;
    Ok(listener)
}
