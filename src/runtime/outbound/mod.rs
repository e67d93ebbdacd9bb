//! Outbound HTTP as a host service: the host side of the SDK's `ctx.http`.
//!
//! Every call is checked against the extension's grants (`network.outbound`), its URL and
//! every address its host resolves to against [`guard`] and the operator's
//! `outbound_allow` for the extension (replaced at once by a reload of the host file), and
//! counted in `extension_outbound_requests_total{extension,outcome}`. The client follows no
//! redirect, ignores proxy settings (a proxy would resolve and connect where the guard cannot
//! see) and reads no more of an answer than the request's limit. https is verified against
//! the system's CA certificates and the operator's `outbound_ca_file` (rustls; the host name
//! is checked against the certificate, while the connection goes to the guarded address). Its connection pool reuses a
//! connection without resolving again, so a narrower list gets a fresh client: a connection to
//! an address no longer allowed is never reused.

pub(crate) mod guard;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics::{Counter, Label};
use solobase_sdk::ExtensionName;
use solobase_sdk::outbound::{HttpClient, OutboundError, PERMISSION, Request, Response};
use solobase_sdk::services::BoxFuture;

use crate::config::AllowList;
use crate::runtime::grants::Grants;

/// One extension's outbound HTTP.
pub(crate) struct HostHttp {
    extension: ExtensionName,
    grants: Arc<Grants>,
    allow: Arc<ArcSwap<AllowList>>,
    /// The client, and the list it was made under.
    client: Mutex<(Arc<AllowList>, reqwest::Client)>,
    /// The operator's extra CA certificates.
    roots: Vec<reqwest::Certificate>,
    outcomes: Outcomes,
}

/// The counters of `extension_outbound_requests_total`, one per outcome.
struct Outcomes {
    answered: Counter,
    refused: Counter,
    failed: Counter,
    denied: Counter,
}

impl std::fmt::Debug for HostHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostHttp")
            .field("extension", &self.extension)
            .finish_non_exhaustive()
    }
}

/// The CA certificates of `[extensions] outbound_ca_file` (none without one).
pub(crate) fn extra_roots(
    file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(file).map_err(|e| {
        anyhow::anyhow!(
            "extensions.outbound_ca_file {}: cannot read it ({e})",
            file.display()
        )
    })?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        anyhow::anyhow!(
            "extensions.outbound_ca_file {}: not PEM certificates ({e})",
            file.display()
        )
    })?;
    if roots.is_empty() {
        anyhow::bail!(
            "extensions.outbound_ca_file {}: holds no certificate (expected PEM blocks \
             -----BEGIN CERTIFICATE-----)",
            file.display()
        );
    }
    Ok(roots)
}

fn client(
    allow: &Arc<ArcSwap<AllowList>>,
    roots: &[reqwest::Certificate],
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    for root in roots {
        builder = builder.add_root_certificate(root.clone());
    }
    builder
        .dns_resolver(guard::GuardedResolver::new(allow.clone()))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .user_agent(concat!("Solobase/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl HostHttp {
    pub(crate) fn new(
        extension: ExtensionName,
        grants: Arc<Grants>,
        allow: AllowList,
        roots: Vec<reqwest::Certificate>,
        metrics: &crate::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let allow = Arc::new(ArcSwap::from_pointee(allow));
        let counter = |outcome: &'static str| {
            metrics.counter(
                "extension_outbound_requests_total",
                vec![
                    Label::new("extension", extension.as_str().to_owned()),
                    Label::new("outcome", outcome),
                ],
            )
        };
        let outcomes = Outcomes {
            answered: counter("answered"),
            refused: counter("refused"),
            failed: counter("failed"),
            denied: counter("denied"),
        };
        let first = client(&allow, &roots)?;
        Ok(Self {
            client: Mutex::new((allow.load_full(), first)),
            roots,
            extension,
            grants,
            allow,
            outcomes,
        })
    }

    /// Replaces the operator's list; whether it changed.
    pub(crate) fn set_allow(&self, allow: AllowList) -> bool {
        if **self.allow.load() == allow {
            return false;
        }
        self.allow.store(Arc::new(allow));
        true
    }

    /// The client for the current list: a new one (with an empty pool) when it changed.
    fn client(&self) -> Result<reqwest::Client, OutboundError> {
        let allow = self.allow.load_full();
        let mut current = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current.0, &allow) {
            let fresh = client(&self.allow, &self.roots)
                .map_err(|e| OutboundError::Failed(e.to_string()))?;
            *current = (allow, fresh);
        }
        Ok(current.1.clone())
    }

    fn permitted(&self) -> Result<(), OutboundError> {
        self.grants.require(PERMISSION).map_err(|_| {
            self.outcomes.denied.increment(1);
            OutboundError::PermissionDenied
        })
    }

    /// The URL, parsed and checked: scheme, no credentials, an address literal allowed.
    fn url(&self, text: &str) -> Result<reqwest::Url, OutboundError> {
        let url = reqwest::Url::parse(text).map_err(|e| {
            OutboundError::Invalid(format!(
                "invalid URL {text:?}: {e}; give an absolute http:// or https:// URL"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::Invalid(format!(
                "invalid URL {text:?}: only http:// and https:// are supported"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutboundError::Invalid(
                "the URL must not carry credentials; send them in a header".into(),
            ));
        }
        guard::check_url(&url, &self.allow.load()).map_err(|e| {
            self.outcomes.refused.increment(1);
            OutboundError::Refused(e)
        })?;
        Ok(url)
    }

    async fn exchange(&self, request: Request) -> Result<Response, OutboundError> {
        self.permitted()?;
        let url = self.url(request.url())?;
        let mut req = self
            .client()?
            .request(request.method().clone(), url)
            .timeout(request.time_limit())
            .body(request.body_bytes().clone());
        for (name, value) in request.headers() {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| OutboundError::Invalid(format!("invalid header name {name:?}")))?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                OutboundError::Invalid(format!("invalid value for the header {name}"))
            })?;
            req = req.header(name, value);
        }
        let mut res = req.send().await.map_err(|e| self.failure(e))?;
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let cap = request.answer_limit();
        let mut kept = Vec::new();
        let mut truncated = false;
        // Read no more than the cap; the rest of a large body is never read.
        loop {
            match res.chunk().await {
                Ok(Some(chunk)) => {
                    let room = cap - kept.len();
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if chunk.len() > room {
                        truncated = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.outcomes.failed.increment(1);
                    return Err(OutboundError::Failed(format!(
                        "the server answered {status}, then: {}",
                        describe(&e)
                    )));
                }
            }
        }
        self.outcomes.answered.increment(1);
        Ok(Response::new(status, headers, kept.into(), truncated))
    }

    /// A send error, told apart: the guard's refusal (a cause of the resolver's error) or a
    /// failure.
    fn failure(&self, e: reqwest::Error) -> OutboundError {
        let text = describe(&e);
        if text.contains("refused to call") {
            self.outcomes.refused.increment(1);
            OutboundError::Refused(text)
        } else {
            self.outcomes.failed.increment(1);
            OutboundError::Failed(text)
        }
    }
}

/// A send error with its causes (the resolver's refusal is a cause).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl HttpClient for HostHttp {
    fn send(&self, request: Request) -> BoxFuture<'_, Result<Response, OutboundError>> {
        Box::pin(self.exchange(request))
    }

    fn check(&self, url: &str) -> Result<(), OutboundError> {
        self.permitted()?;
        self.url(url).map(|_| ())
    }
}
