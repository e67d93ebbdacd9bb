//! Serving https (`[server.tls] cert` and `key`, PEM): rustls with the ring provider,
//! HTTP/2 and HTTP/1.1 offered by ALPN. The certificate is served by a resolver holding the
//! current one ([`Reloading`]); a task looks at the two files every second and, when either
//! changed and both parse, swaps in the new pair — the next handshakes use it, connections
//! already open keep theirs, nothing restarts. A pair that does not parse (a renewal caught
//! half-written) is logged and the old certificate stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsConfig;

/// How often the files are looked at.
const POLL: Duration = Duration::from_secs(1);

/// Reads the certificate chain and key, and checks they belong together.
pub(crate) fn load(tls: &TlsConfig) -> anyhow::Result<CertifiedKey> {
    let pem = |path: &Path| {
        std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "server.tls: cannot read {} ({e}); give readable PEM files",
                path.display()
            )
        })
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem(&tls.cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "server.tls.cert {}: not a PEM certificate chain ({e})",
                tls.cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "server.tls.cert {}: holds no certificate (expected -----BEGIN CERTIFICATE----- \
             blocks, the server's first)",
            tls.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_slice(&pem(&tls.key)?).map_err(|e| {
        anyhow::anyhow!(
            "server.tls.key {}: not a PEM private key ({e})",
            tls.key.display()
        )
    })?;
    let signer = provider::sign::any_supported_type(&key).map_err(|e| {
        anyhow::anyhow!(
            "server.tls.key {}: an unsupported key ({e}); use RSA, ECDSA P-256/P-384 or Ed25519",
            tls.key.display()
        )
    })?;
    let certified = CertifiedKey::new(certs, signer);
    certified.keys_match().map_err(|e| {
        anyhow::anyhow!(
            "server.tls: the key {} does not belong to the certificate {} ({e})",
            tls.key.display(),
            tls.cert.display()
        )
    })?;
    Ok(certified)
}

/// The certificate resolver: always the current pair.
#[derive(Debug)]
pub(crate) struct Reloading {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls configuration for `tls` (its files read now: an error stops the start), and the
/// resolver to keep current with [`watch`].
pub(crate) fn server_config(
    tls: &TlsConfig,
) -> anyhow::Result<(rustls::ServerConfig, Arc<Reloading>)> {
    let resolver = Arc::new(Reloading {
        current: ArcSwap::from_pointee(load(tls)?),
    });
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, resolver))
}

/// When a file was last changed, and its length (a rename onto it changes both).
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Keeps `resolver` current with the files of `tls` until `stop` says so.
pub(crate) async fn watch(
    tls: TlsConfig,
    resolver: Arc<Reloading>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let files: [PathBuf; 2] = [tls.cert.clone(), tls.key.clone()];
    let mut seen = files.clone().map(|f| stamp(&f));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
        let now = files.clone().map(|f| stamp(&f));
        if now == seen {
            continue;
        }
        match load(&tls) {
            Ok(fresh) => {
                resolver.current.store(Arc::new(fresh));
                seen = now;
                tracing::info!(cert = %tls.cert.display(), "TLS certificate reloaded");
            }
            // Loaded again at their next change (a renewal writing the key after the
            // certificate changes the files twice).
            Err(e) => {
                seen = now;
                tracing::warn!(error = %e, "the changed TLS files do not load; serving the previous certificate until they change again");
            }
        }
    }
}
