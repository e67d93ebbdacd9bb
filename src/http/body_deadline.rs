//! The body deadline: a request body must arrive within `server.body_timeout_ms`, and every
//! `server.body_min_rate` bytes received earn one more second, so a large upload at a decent
//! speed always finishes while a body trickled byte by byte (a slow-body attack, which keeps a
//! connection and a handler busy for as long as the client likes) is cut off with a 408.
//!
//! actix-web limits the time to receive a request's head (`server.request_head_timeout_ms`) but
//! not its body; [`guard`] wraps the body of every request that has one. Past the deadline the
//! body stream yields an `io::ErrorKind::TimedOut` error, which the readers map to 408
//! ([`crate::error::payload_error`]), and the connection is closed after the answer: the unread
//! rest of the body is kept in the connection's [`Stash`] (installed by [`on_connect`]) until
//! the connection ends, because actix closes a connection whose body is unread but still
//! wanted, while it would drain a dropped chunked body from a client that may never finish.
//! A body dropped unfinished for any other reason (refused before it was read) is kept alike.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// Where an expired body's unread rest waits until its connection ends: one per connection.
#[derive(Clone, Default)]
pub(crate) struct Stash(Rc<RefCell<Option<Payload>>>);

impl std::fmt::Debug for Stash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.0.try_borrow().map(|p| p.is_some()).unwrap_or(true);
        f.debug_struct("Stash")
            .field("holds_a_body", &held)
            .finish()
    }
}

/// Gives every connection its [`Stash`] (`HttpServer::on_connect`).
pub(crate) fn on_connect(_: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    data.insert(Stash::default());
}

/// Puts a deadline on `req`'s body when it has one and a deadline is configured.
pub(crate) fn guard(req: &mut ServiceRequest, timeout_ms: u64, min_rate: u64) {
    if timeout_ms == 0 || min_rate == 0 || !has_body(req) {
        return;
    }
    // Without one (a server built without `on_connect`) the rest is dropped with the stream.
    let stash = req.conn_data::<Stash>().cloned().unwrap_or_default();
    let deadline = Deadline {
        inner: Some(req.take_payload()),
        start: Instant::now(),
        base: Duration::from_millis(timeout_ms),
        min_rate,
        received: 0,
        sleep: Box::pin(tokio::time::sleep(Duration::from_millis(timeout_ms))),
        stash,
        done: false,
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(deadline),
    });
}

/// Whether the request announces a body: a non-zero Content-Length, or Transfer-Encoding.
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// A body stream that fails once its time is up.
struct Deadline {
    /// The body; moved to `stash` when the time is up.
    inner: Option<Payload>,
    start: Instant,
    base: Duration,
    min_rate: u64,
    received: u64,
    sleep: Pin<Box<Sleep>>,
    stash: Stash,
    /// The body ended (or failed): nothing is left to keep.
    done: bool,
}

impl Drop for Deadline {
    /// A body dropped unfinished — refused before it was read, or read only in part — goes to
    /// the stash too: the connection is then closed after the answer, whatever the framing.
    fn drop(&mut self) {
        if !self.done
            && let Some(rest) = self.inner.take()
        {
            *self.stash.0.borrow_mut() = Some(rest);
        }
    }
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.received += chunk.len() as u64;
                let earned = Duration::from_secs_f64(this.received as f64 / this.min_rate as f64);
                this.sleep.as_mut().reset(this.start + this.base + earned);
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(other) => {
                this.done = true;
                return Poll::Ready(other);
            }
            Poll::Pending => {}
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                *this.stash.0.borrow_mut() = this.inner.take();
                let message = format!(
                    "the body did not arrive in time ({} bytes in {} ms; server.body_timeout_ms \
                     allows {} ms plus 1 s per {} bytes)",
                    this.received,
                    this.start.elapsed().as_millis(),
                    this.base.as_millis(),
                    this.min_rate
                );
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    message,
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
