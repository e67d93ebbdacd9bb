//! Keeps this instance's view of extension state (enabled flags, grants) equal to the
//! database's, whoever changed it — the API on any instance, the command line, an automatic
//! disable. A `LISTEN` on [`state::CHANNEL`] applies a change moments after it commits; a
//! re-read every `resync` catches what a lost notification or a reconnect would miss.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::host::ExtensionHost;
use super::state::CHANNEL;
use crate::db::listen::listen;

/// How long to wait before listening again after the connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Starts the task; it ends when `stop` changes or the host is dropped.
pub(super) fn spawn(
    host: Weak<ExtensionHost>,
    pg_config: tokio_postgres::Config,
    tls: crate::db::tls::DbTls,
    resync: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut listener = match listen(&pg_config, &tls, CHANNEL).await {
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
                        Some(l) => l.next().await,
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
                            l.drain();
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
