//! The local webhook receiver: one path per endpoint (`/e<i>`), each request's Standard
//! Webhooks signature checked with `solobase_sdk::webhooks::verify` against that endpoint's
//! secret; the distinct (endpoint, webhook-id) pairs are what "delivered" means.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use solobase_sdk::webhooks::{Secret, verify};

/// What the receiver saw.
#[derive(Debug, Default)]
pub struct Received {
    /// Requests, repeats included.
    pub requests: u64,
    /// Distinct (endpoint, webhook-id) pairs with a valid signature.
    pub delivered: HashSet<(usize, String)>,
    /// Requests whose signature did not verify, or that named no endpoint.
    pub bad: u64,
    pub bad_samples: Vec<String>,
}

/// The receiver's state; the secrets are set once the endpoints exist.
#[derive(Debug, Default)]
pub struct Receiver {
    pub secrets: OnceLock<Vec<Secret>>,
    pub seen: Mutex<Received>,
}

impl Receiver {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self, path: &str, header: impl Fn(&str) -> Option<String>, body: &[u8]) {
        let endpoint: Option<usize> = path.strip_prefix("/e").and_then(|i| i.parse().ok());
        let secret = endpoint.and_then(|e| self.secrets.get()?.get(e));
        let id = header("webhook-id").unwrap_or_default();
        let verdict = match secret {
            None => Err(format!("no endpoint at {path}")),
            Some(secret) => verify(
                secret,
                &id,
                &header("webhook-timestamp").unwrap_or_default(),
                &header("webhook-signature").unwrap_or_default(),
                body,
                time::OffsetDateTime::now_utc().unix_timestamp(),
            )
            .map_err(|e| format!("{path} {id}: {e}")),
        };
        let mut seen = self.lock();
        seen.requests += 1;
        match (verdict, endpoint) {
            (Ok(()), Some(e)) => {
                seen.delivered.insert((e, id));
            }
            (verdict, _) => {
                seen.bad += 1;
                if seen.bad_samples.len() < 5 {
                    seen.bad_samples.push(verdict.err().unwrap_or_default());
                }
            }
        }
    }
}

/// Starts the receiver on a free loopback port; returns the port and the server's handle.
pub fn start(state: Arc<Receiver>) -> anyhow::Result<(u16, actix_web::dev::ServerHandle)> {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let state = state.clone();
            async move {
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                state.check(req.path(), header, &body);
                HttpResponse::NoContent().finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((port, handle))
}
