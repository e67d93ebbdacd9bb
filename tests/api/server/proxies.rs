//! The client's address behind a reverse proxy: real nginx (Debian's package) in front, clients
//! on distinct loopback addresses, and forged forwarding headers — sent through the proxy and
//! straight to the server — that must change nothing.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TempDir, TestApp};

/// The probe's public route, limited per client to a burst of 2 (then 1 a second).
const LIMITED: &str = "/ext/probe/public";

async fn app(trusted: &[&str]) -> TestApp {
    let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
    TestApp::builder()
        .config(move |c| {
            c.server.trusted_proxies = trusted;
            let limits = c.extensions.limits.entry("probe".into()).or_default();
            limits.client_rate_per_second = Some(1);
            limits.client_rate_burst = Some(2);
        })
        .spawn()
        .await
}

/// A client whose connections come from `from` (any 127.x.y.z is this machine).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn status(client: &reqwest::Client, url: &str, forged: Option<&str>) -> u16 {
    let mut req = client.get(url);
    if let Some(xff) = forged {
        req = req
            .header("x-forwarded-for", xff)
            .header("forwarded", format!("for={xff}"));
    }
    req.send().await.unwrap().status().as_u16()
}

/// The `client` of the newest audit entry for `action`.
async fn audited_client(app: &TestApp, admin: &str, action: &str) -> Value {
    let res = app
        .http
        .get(app.url(&format!("/api/v1/audit?action={action}")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["entries"][0]["client"].clone()
}

async fn admin_login(client: &reqwest::Client, base: &str, forged: Option<&str>) -> String {
    let mut req = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "root@example.com", "password": "password123"}));
    if let Some(xff) = forged {
        req = req.header("x-forwarded-for", xff);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn forwarding_headers_from_a_peer_that_is_not_a_trusted_proxy_are_ignored() {
    let app = app(&[]).await;
    let url = app.url(LIMITED);
    let me = client_from("127.0.0.1");
    // Each request claims another client; all three are the one peer, sharing one bucket.
    let mut seen = Vec::new();
    for forged in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        seen.push(status(&me, &url, Some(forged)).await);
    }
    assert_eq!(seen, [200, 200, 429]);
    // The audit entry names the peer, not the forged address.
    app.create_user("root@example.com", "password123", true)
        .await;
    let admin = admin_login(&me, &app.address, Some("198.51.100.7")).await;
    assert_eq!(
        audited_client(&app, &admin, "auth.admin_login").await,
        "127.0.0.1"
    );
}

/// nginx on loopback, proxying to `upstream` from 127.0.0.1 and appending the address it saw
/// to `X-Forwarded-For`; stopped when dropped.
struct Nginx {
    port: u16,
    child: std::process::Child,
    _dir: TempDir,
}

impl Nginx {
    fn start(upstream: u16) -> Self {
        let dir = TempDir::new();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.0.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
             proxy_pass http://127.0.0.1:{upstream};\n      proxy_bind 127.0.0.1;\n\
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
             proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header Host $host;\n\
             }}\n  }}\n}}\n"
        );
        std::fs::write(dir.0.join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new(nginx_binary())
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nginx starts (Debian's nginx-light; .ci/run installs it)");
        let nginx = Self {
            port,
            child,
            _dir: dir,
        };
        nginx.wait_listening();
        nginx
    }

    fn wait_listening(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self._dir.0.join("error.log")).unwrap_or_default();
        panic!("nginx does not listen on {}: {log}", self.port);
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn behind_nginx_each_real_client_has_its_own_limit_and_forged_headers_change_nothing() {
    let app = app(&["127.0.0.1/32"]).await;
    let nginx = Nginx::start(app.port);
    let url = nginx.url(LIMITED);
    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));

    // Client A spends its burst through the proxy.
    assert_eq!(status(&a, &url, None).await, 200);
    assert_eq!(status(&a, &url, None).await, 200);
    assert_eq!(status(&a, &url, None).await, 429);
    // Client B, behind the same proxy, has its own bucket.
    assert_eq!(status(&b, &url, None).await, 200);
    // A cannot escape by naming another client: nginx appends A's real address, the
    // rightmost untrusted hop.
    assert_eq!(status(&a, &url, Some("198.51.100.1")).await, 429);
    // Nor by going around the proxy with a forged header: A's connection is not a proxy's.
    assert_eq!(
        status(&a, &app.url(LIMITED), Some("198.51.100.2")).await,
        429
    );

    // Audit entries name the real client, through the proxy.
    app.create_user("root@example.com", "password123", true)
        .await;
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let admin = admin_login(&b, &base, Some("198.51.100.3")).await;
    assert_eq!(
        audited_client(&app, &admin, "auth.admin_login").await,
        "127.0.0.3"
    );
}

/// A request through nginx whose own `X-Forwarded-For` holds `forged` raw bytes: nginx
/// passes them on and appends the client's real address to the same line.
async fn status_raw(client: &reqwest::Client, url: &str, forged: &[u8]) -> u16 {
    client
        .get(url)
        .header(
            "x-forwarded-for",
            reqwest::header::HeaderValue::from_bytes(forged).unwrap(),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_client_cannot_pass_for_the_proxy_with_bytes_that_are_not_ascii() {
    let app = app(&["127.0.0.1/32"]).await;
    let nginx = Nginx::start(app.port);
    let url = nginx.url(LIMITED);
    let a = client_from("127.0.0.2");
    assert_eq!(status(&a, &url, None).await, 200);
    assert_eq!(status(&a, &url, None).await, 200);
    assert_eq!(status(&a, &url, None).await, 429);
    // nginx sends `X-Forwarded-For: \xe9, 127.0.0.2`: the line is not visible ASCII, yet its
    // rightmost entry is still the one nginx wrote. Read whole, A stays A.
    for forged in [&b"\xe9"[..], "é".as_bytes(), b"1.2.3.4\xe9", b"\xff\xfe"] {
        assert_eq!(status_raw(&a, &url, forged).await, 429, "{forged:?}");
    }

    // Nor can A hide behind the proxy's address in the audit log.
    app.create_user("root@example.com", "password123", true)
        .await;
    let res = a
        .post(nginx.url("/api/v1/auth/login"))
        .header(
            "x-forwarded-for",
            reqwest::header::HeaderValue::from_bytes(b"\xe9").unwrap(),
        )
        .json(&serde_json::json!({"email": "root@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let admin = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        audited_client(&app, &admin, "auth.admin_login").await,
        "127.0.0.2"
    );
}
