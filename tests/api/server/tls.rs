//! The server speaking https itself (`[server.tls]`): certificates from a CA made in the test,
//! HTTP/2 and HTTP/1.1 by ALPN, a renewed certificate picked up under load without a failed
//! request, and unusable files refused at start.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use solobase::config::TlsConfig;
use tokio_rustls::rustls;

use crate::helpers::{TempDir, TestApp};

/// A test CA, and certificates it signs for `localhost`.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub(crate) fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Its own name: a certificate whose issuer is named like its subject looks
        // self-signed to OpenSSL (curl).
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Solobase test CA");
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A new certificate and key for `localhost`: (cert PEM, key PEM, cert DER).
    pub(crate) fn leaf(&self) -> (String, String, Vec<u8>) {
        let (cert, key, der, _) = self.leaf_der();
        (cert, key, der)
    }

    /// [`Ca::leaf`], with the key's PKCS#8 DER too: (cert PEM, key PEM, cert DER, key DER).
    pub(crate) fn leaf_der(&self) -> (String, String, Vec<u8>, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (
            cert.pem(),
            key.serialize_pem(),
            cert.der().to_vec(),
            key.serialize_der(),
        )
    }

    /// A rustls server configuration with a new certificate for `localhost` (ring).
    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let (_, _, cert, key) = self.leaf_der();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key).into(),
        )
        .unwrap();
        Arc::new(config)
    }

    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }
}

/// Writes `content` to `path` as a renewal tool does: a new file renamed over the old one.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn tls_app(dir: &Path, cert: &str, key: &str) -> (TestApp, TlsConfig) {
    let files = TlsConfig {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    let config = files.clone();
    let app = TestApp::builder()
        .config(move |c| c.server.tls = Some(config))
        .spawn()
        .await;
    (app, files)
}

/// A client trusting `ca`, opening a new connection for every request.
fn https_client(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_der(&ca.der()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// A handshake with the server offering `alpn`: the protocol chosen and the server's
/// certificate.
async fn handshake(port: u16, ca: &Ca, alpn: &[&[u8]]) -> (Option<Vec<u8>>, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().into()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    (
        conn.alpn_protocol().map(<[u8]>::to_vec),
        conn.peer_certificates().unwrap()[0].to_vec(),
    )
}

#[tokio::test]
async fn https_with_http2_and_http11_chosen_by_alpn() {
    let ca = Ca::new();
    let (cert, key, der) = ca.leaf();
    let dir = TempDir::new();
    let (app, _) = tls_app(&dir.0, &cert, &key).await;
    let url = format!("https://localhost:{}/healthz", app.port);
    let res = https_client(&ca).get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (alpn, served) = handshake(app.port, &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(b"h2".as_slice()));
    assert_eq!(served, der);
    let (alpn, _) = handshake(app.port, &ca, &[b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(b"http/1.1".as_slice()));
    // curl speaks each version to it.
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                flag,
            ])
            .arg("--cacert")
            .arg(&ca_file)
            .arg(&url)
            .output()
            .expect("curl runs");
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            got,
            format!("200 {version}"),
            "{flag}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A client that does not trust the test CA refuses the certificate.
    let err = reqwest::Client::builder()
        .use_rustls_tls()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(text.contains("certificate"), "{text}");
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_handshakes_and_no_request_fails() {
    let ca = Ca::new();
    let (cert, key, first) = ca.leaf();
    let dir = TempDir::new();
    let (app, files) = tls_app(&dir.0, &cert, &key).await;
    let url = format!("https://localhost:{}/healthz", app.port);

    // Load: a new connection, so a new handshake, for every request, until told to stop.
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut load = Vec::new();
    for _ in 0..2 {
        let (client, url) = (https_client(&ca), url.clone());
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop_rx.clone());
        load.push(tokio::spawn(async move {
            while !*stop.borrow() {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The renewal: certificate first, key a moment later (for that moment they do not match,
    // and the old pair keeps serving).
    let (cert2, key2, second) = ca.leaf();
    replace(&files.cert, &cert2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replace(&files.key, &key2);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, served) = handshake(app.port, &ca, &[b"http/1.1"]).await;
        if served == second {
            break;
        }
        assert_eq!(
            served, first,
            "only the old or the new certificate is served"
        );
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed");
    assert!(ok.load(Ordering::Relaxed) > 10, "{ok:?} requests");
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_saying_which() {
    let ca = Ca::new();
    let (cert, key, _) = ca.leaf();
    let (_, other_key, _) = ca.leaf();
    let dir = TempDir::new();
    let d = &dir.0;
    std::fs::write(d.join("cert.pem"), &cert).unwrap();
    std::fs::write(d.join("key.pem"), &key).unwrap();
    std::fs::write(d.join("other.key"), &other_key).unwrap();
    std::fs::write(d.join("junk.pem"), "not pem").unwrap();
    for (cert, key, expected) in [
        ("missing.pem", "key.pem", "cannot read"),
        ("junk.pem", "key.pem", "holds no certificate"),
        ("cert.pem", "junk.pem", "not a PEM private key"),
        (
            "cert.pem",
            "other.key",
            "does not belong to the certificate",
        ),
    ] {
        let files = TlsConfig {
            cert: d.join(cert),
            key: d.join(key),
        };
        let err = TestApp::builder()
            .config(move |c| c.server.tls = Some(files))
            .build()
            .await
            .err()
            .expect("refused");
        let text = format!("{err:#}");
        assert!(
            text.contains(expected) && text.contains("server.tls"),
            "{cert} {key}: {text}"
        );
    }
}
