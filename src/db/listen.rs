//! A connection that `LISTEN`s on a PostgreSQL notification channel: one message per
//! notification, until the connection closes.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

/// Listening on one channel; dropping it closes the connection.
#[derive(Debug)]
pub(crate) struct Listener {
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

impl Listener {
    /// The next notification; `None` once the connection closed.
    pub(crate) async fn next(&mut self) -> Option<()> {
        self.notices.recv().await
    }

    /// Forgets the notifications already received.
    pub(crate) fn drain(&mut self) {
        while self.notices.try_recv().is_ok() {}
    }
}

/// Reads `connection`'s messages, sending one `()` per notification, until it closes.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    tx: mpsc::UnboundedSender<()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
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
                tracing::warn!(error = %e, channel = "listener", "a listening connection failed");
                return;
            }
        }
    }
}

/// Connects with `pg_config` and listens on `channel` (a plain identifier). Over TCP, keepalive
/// probes find a connection the network silently lost (a partition, a failover) within about
/// 25 s, so the listener ends and its owner reconnects instead of waiting for notifications
/// that no longer come.
#[allow(clippy::disallowed_methods)] // src/db is the one place allowed to connect
pub(crate) async fn listen(
    pg_config: &tokio_postgres::Config,
    tls: &super::tls::DbTls,
    channel: &str,
) -> Result<Listener, tokio_postgres::Error> {
    let (tx, notices) = mpsc::unbounded_channel();
    let mut pg_config = pg_config.clone();
    pg_config
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .keepalives_interval(std::time::Duration::from_secs(5))
        .keepalives_retries(3);
    let (client, driver) = match tls {
        super::tls::DbTls::None => {
            let (client, connection) = pg_config.connect(NoTls).await?;
            (client, tokio::spawn(drive(connection, tx)))
        }
        super::tls::DbTls::Rustls(make) => {
            let (client, connection) = pg_config.connect(make.clone()).await?;
            (client, tokio::spawn(drive(connection, tx)))
        }
    };
    let listener = Listener {
        notices,
        driver,
        _client: client,
    };
    listener
        ._client
        .batch_execute(&format!("LISTEN {channel}"))
        .await?;
    Ok(listener)
}
