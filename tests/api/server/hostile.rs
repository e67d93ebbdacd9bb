//! Hostile HTTP: oversized heads and bodies, slow clients, malformed JSON, wrong content types
//! and floods of distinct paths. Each test runs the real binary as its own process (on a fresh
//! database of the test cluster), so that its memory can be read from /proc, and talks to it
//! through raw sockets where a well-behaved client would not do what an attacker does.
//!
//! The figures each test measures are printed with a `hostile:` prefix (`--nocapture` shows
//! them); the assertions are about correctness, with generous bounds on time and memory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TempDir, database_url, fresh_database};
use crate::server::cli::solobase;

const ADMIN_EMAIL: &str = "admin@hostile.test";
const ADMIN_PASSWORD: &str = "hostile-admin-password";
const MIB: u64 = 1024 * 1024;

/// `solobase serve` as a child process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Server {
    /// Starts the binary with `server` appended to its `[server]` section.
    async fn start(server: &str) -> Self {
        let db = fresh_database().await;
        let dir = TempDir::new();
        let data = dir.0.join("data");
        std::fs::create_dir_all(dir.0.join("config")).unwrap();
        let config = format!(
            r#"data_dir = "{data}"

[server]
bind = "127.0.0.1:0"
workers = 2
{server}

[database]
url = "{url}"
pool_size = 8

[extensions]
config_dir = "{data}/extension-config"
pool_size = 100
# The floods come from one address: the per-client rate limit would answer most of them 429.
client_rate_per_second = 0
"#,
            data = data.display(),
            url = database_url(&db),
        );
        std::fs::write(dir.0.join("config/solobase.toml"), config).unwrap();
        let mut child = solobase(&dir.0)
            .arg("serve")
            .env("SOLOBASE_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("SOLOBASE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let show = std::env::var_os("TEST_LOG").is_some();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if show {
                    eprintln!("{line}");
                }
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                if v["message"] == "listening"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(v["port"].as_u64().unwrap_or(0) as u16);
                }
            }
        });
        let port = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap();
        let Ok(port) = port else {
            let _ = child.kill();
            panic!("the server did not log that it listens (TEST_LOG=1 shows its log)");
        };
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The server's resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).await.unwrap()
    }

    async fn admin_token(&self, http: &reqwest::Client) -> String {
        let res = http
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    async fn healthy(&self) -> bool {
        reqwest::get(self.url("/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One response read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    /// The `error.code` of the common error shape; panics when the body is not that shape.
    fn code(&self) -> String {
        let v: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body));
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "no error.message: {}",
            self.body
        );
        v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code: {}", self.body))
            .to_owned()
    }
}

/// Reads one response (head, and a body of Content-Length bytes); `None` when the connection
/// ends or fails first.
async fn read_answer(stream: &mut (impl AsyncRead + Unpin)) -> Option<Answer> {
    next_answer(stream, &mut Vec::new()).await
}

/// Reads the next response of a connection whose bytes read but not yet used are in `buf`
/// (responses to pipelined requests), leaving the bytes after it there.
async fn next_answer(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<Answer> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let end = buf.len().min(head_end + length);
    let body = String::from_utf8_lossy(&buf[head_end..end]).into_owned();
    buf.drain(..end);
    Some(Answer { status, body })
}

/// Whether the server closes `stream` within `limit` (reading and dropping what it sends).
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> bool {
    let mut sink = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test]
async fn oversized_request_heads_are_refused_at_once_and_disconnected() {
    let server = Server::start("").await;
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let cases = [
        (
            "a 200 KiB request line",
            format!(
                "GET /healthz?{} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(200 * 1024)
            ),
        ),
        (
            "a 200 KiB header",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "b".repeat(200 * 1024)
            ),
        ),
        (
            "200 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
        ),
        (
            "2 MiB of headers",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
                format!("X-Filler: {}\r\n", "c".repeat(8 * 1024)).repeat(256)
            ),
        ),
        (
            "a request line that is not HTTP",
            "G\x01T /\x7f HTTP/9\r\nHost: x\r\n\r\n".to_owned(),
        ),
    ];
    for (what, head) in cases {
        // Past the size limits 431; a head that does not parse at all 400.
        let expected = if what.contains("not HTTP") { 400 } else { 431 };
        let started = Instant::now();
        let (mut read, mut write) = server.connect().await.into_split();
        let writer = tokio::spawn(async move {
            // The server stops reading at its limit: the rest may not be accepted.
            let _ = write.write_all(head.as_bytes()).await;
            write
        });
        let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut read))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within 5 s"))
            .unwrap_or_else(|| panic!("{what}: the connection ended without an answer"));
        let answered = started.elapsed();
        assert_eq!(answer.status, expected, "{what}: {answer:?}");
        assert!(
            closed_within(&mut read, Duration::from_secs(5)).await,
            "{what}: the connection stays open after the {expected}"
        );
        eprintln!(
            "hostile: {what}: {} in {} ms, disconnected after {} ms",
            answer.status,
            ms(answered),
            ms(started.elapsed())
        );
        writer.abort();
    }
    assert!(
        server.healthy().await,
        "the server answers after the attacks"
    );
}

/// How a body is sent.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Length,
    Chunked,
}

/// Sends `head` (which must end in the headers' last line, without the blank line) and then a
/// body of `size` bytes framed as told, while reading the answer. Returns the answer and how
/// many body bytes the client managed to send before it came.
async fn send_big_body(
    server: &Server,
    head: &str,
    size: u64,
    framing: Framing,
) -> (Answer, u64, Duration) {
    let started = Instant::now();
    let (mut read, mut write) = server.connect().await.into_split();
    let what = head.lines().next().unwrap_or_default().to_owned();
    let head = match framing {
        Framing::Length => format!("{head}Content-Length: {size}\r\n\r\n"),
        Framing::Chunked => format!("{head}Transfer-Encoding: chunked\r\n\r\n"),
    };
    let answered = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let writer = {
        let (answered, sent) = (answered.clone(), sent.clone());
        tokio::spawn(async move {
            write.write_all(head.as_bytes()).await?;
            let block = vec![b'0'; 256 * 1024];
            let mut left = size;
            while left > 0 && !answered.load(Ordering::Relaxed) {
                let n = left.min(block.len() as u64) as usize;
                if let Framing::Chunked = framing {
                    write.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                }
                write.write_all(&block[..n]).await?;
                if let Framing::Chunked = framing {
                    write.write_all(b"\r\n").await?;
                }
                left -= n as u64;
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            if let Framing::Chunked = framing {
                write.write_all(b"0\r\n\r\n").await?;
            }
            std::io::Result::Ok(write)
        })
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), read_answer(&mut read))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 30 s"))
        .unwrap_or_else(|| panic!("{what}: the connection ended without an answer"));
    let took = started.elapsed();
    answered.store(true, Ordering::Relaxed);
    writer.abort();
    (answer, sent.load(Ordering::Relaxed), took)
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_being_buffered() {
    let server = Server::start("").await;
    let http = reqwest::Client::new();
    let token = server.admin_token(&http).await;
    let auth = format!("Authorization: Bearer {token}\r\n");
    let json = "Content-Type: application/json\r\n";
    let targets = [
        (
            "login (server.max_json_bytes)",
            format!("POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n{json}"),
        ),
        (
            "extension migrate (server.max_json_bytes)",
            format!("POST /api/v1/extensions/webhooks/migrate HTTP/1.1\r\nHost: x\r\n{auth}{json}"),
        ),
        (
            "storage upload (storage.max_upload_bytes)",
            format!(
                "PUT /api/v1/storage/files/big.bin HTTP/1.1\r\nHost: x\r\n{auth}\
                 Content-Type: application/octet-stream\r\n"
            ),
        ),
        (
            "extension route (extensions.max_body_bytes)",
            format!("POST /ext/analytics/api/track HTTP/1.1\r\nHost: x\r\n{json}"),
        ),
    ];
    // Warm-up: one refused body of each kind, so that what is measured is the big ones.
    for (_, head) in &targets {
        send_big_body(&server, head, 30 * MIB, Framing::Length).await;
    }
    let before = server.rss();
    let size = 64 * MIB;
    for framing in [Framing::Length, Framing::Chunked] {
        for (what, head) in &targets {
            let (answer, sent, took) = send_big_body(&server, head, size, framing).await;
            assert_eq!(answer.status, 413, "{what} ({framing:?}): {answer:?}");
            assert_eq!(answer.code(), "payload_too_large", "{what}");
            assert!(
                sent < size,
                "{what} ({framing:?}): the whole body was read before the answer"
            );
            eprintln!(
                "hostile: 64 MiB body ({framing:?}) to {what}: 413 in {} ms, after {:.1} MiB sent",
                ms(took),
                sent as f64 / MIB as f64
            );
        }
    }
    let after = server.rss();
    eprintln!(
        "hostile: RSS before the 64 MiB bodies {:.1} MiB, after {:.1} MiB (growth {:.1} MiB)",
        before as f64 / MIB as f64,
        after as f64 / MIB as f64,
        (after as f64 - before as f64) / MIB as f64
    );
    assert!(
        after < before + 32 * MIB,
        "RSS grew from {before} to {after} bytes: a body was buffered"
    );
    assert!(server.healthy().await);
}

/// What a slow client saw.
#[derive(Debug)]
struct Trickled {
    /// The answer, if one came, and when (from connecting).
    answer: Option<(Answer, Duration)>,
    /// When the server closed the connection; `None` if it did not within the limit.
    closed: Option<Duration>,
}

/// A client that opens a connection and sends `request` slowly (one byte a second from `at`
/// on), until the server closes the connection or `limit` passes.
async fn trickle(port: u16, request: String, at: usize, limit: Duration) -> Trickled {
    let started = Instant::now();
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(&request.as_bytes()[..at]).await.unwrap();
    let dripping = async {
        for byte in request.as_bytes()[at..].iter().cycle() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
        // The server takes no more bytes: wait for it to close.
        std::future::pending::<()>().await;
    };
    let mut answer = None;
    let watching = async {
        answer = read_answer(&mut read).await.map(|a| (a, started.elapsed()));
        closed_within(&mut read, limit).await
    };
    let closed = tokio::select! {
        closed = tokio::time::timeout(limit, watching) => closed.unwrap_or(false),
        () = dripping => unreachable!(),
    };
    Trickled {
        answer,
        closed: closed.then(|| started.elapsed()),
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_others_are_served_meanwhile() {
    const TIMEOUT_MS: u64 = 2_000;
    let server = Server::start(&format!(
        "request_head_timeout_ms = {TIMEOUT_MS}\nbody_timeout_ms = {TIMEOUT_MS}\nbody_min_rate = 500"
    ))
    .await;
    let http = reqwest::Client::new();
    let token = server.admin_token(&http).await;
    let limit = Duration::from_secs(15);
    let port = server.port;

    // 300 connections trickle their head, 200 their body (to the JSON API, an extension
    // route, a storage upload, and an extension route again in chunks).
    let slow_head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut heads = Vec::new();
    for _ in 0..300 {
        heads.push(tokio::spawn(trickle(port, slow_head.to_owned(), 20, limit)));
    }
    let bodies_to = [
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n"
            .to_owned(),
        "POST /ext/analytics/api/track HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            .to_owned(),
        format!(
            "PUT /api/v1/storage/files/slow.bin HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n"
        ),
        // Chunked: after the 408 the server must close, not drain what the client still sends.
        "POST /ext/analytics/api/track HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"
            .to_owned(),
    ];
    let mut bodies = Vec::new();
    for i in 0..200 {
        let head = bodies_to[i % bodies_to.len()].clone();
        let at = head.len();
        let head = head + &"x".repeat(1000);
        bodies.push((
            i % bodies_to.len(),
            tokio::spawn(trickle(port, head, at, limit)),
        ));
    }

    // 20 trickle a chunked body to a route that refuses them before reading it (no token).
    let refused_head = "PUT /api/v1/storage/files/refused.bin HTTP/1.1\r\nHost: x\r\n\
                        Transfer-Encoding: chunked\r\n\r\n3e8\r\n";
    let mut refused = Vec::new();
    for _ in 0..20 {
        let request = refused_head.to_owned() + &"x".repeat(1000);
        let task = trickle(port, request, refused_head.len(), limit);
        refused.push(tokio::spawn(task));
    }

    // Meanwhile a well-behaved client: a health check and an authenticated request, again
    // and again, for longer than the slow clients' time limit.
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_millis(TIMEOUT_MS * 3);
    while Instant::now() < until {
        for (path, bearer) in [("/healthz", None), ("/api/v1/auth/me", Some(&token))] {
            let started = Instant::now();
            let mut req = http.get(server.url(path));
            if let Some(token) = bearer {
                req = req.bearer_auth(token);
            }
            let res = tokio::time::timeout(Duration::from_secs(5), req.send())
                .await
                .unwrap_or_else(|_| panic!("{path} not answered within 5 s under attack"))
                .unwrap();
            assert_eq!(res.status(), 200, "{path} under attack");
            latencies.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort();

    let (mut head_closed, mut head_408) = (Vec::new(), 0);
    for task in heads {
        let seen = task.await.unwrap();
        let closed = seen
            .closed
            .expect("a slow head is disconnected within 15 s");
        if let Some((answer, _)) = &seen.answer {
            assert_eq!(answer.status, 408, "{answer:?}");
            head_408 += 1;
        }
        head_closed.push(closed);
    }
    let (mut body_answered, mut body_closed) = (Vec::new(), Vec::new());
    for (target, task) in bodies {
        let seen = task.await.unwrap();
        let closed = seen
            .closed
            .expect("a slow body is disconnected within 15 s");
        let (answer, at) = seen.answer.expect("a slow body is answered");
        assert_eq!(answer.status, 408, "target {target}: {answer:?}");
        assert_eq!(answer.code(), "request_timeout");
        body_answered.push(at);
        body_closed.push(closed);
    }
    let mut refused_closed = Vec::new();
    for task in refused {
        let seen = task.await.unwrap();
        let (answer, _) = seen.answer.expect("a refused body is answered");
        assert_eq!(answer.status, 401, "{answer:?}");
        refused_closed.push(seen.closed.expect("a refused chunked body is not drained"));
    }
    refused_closed.sort();
    for list in [&mut head_closed, &mut body_answered, &mut body_closed] {
        list.sort();
        assert!(
            list[0] >= Duration::from_millis(TIMEOUT_MS / 2),
            "cut off after {:?}, before its time limit",
            list[0]
        );
    }
    let spread = |list: &[Duration]| {
        format!(
            "min {} / p50 {} / max {} ms",
            ms(list[0]),
            ms(percentile(list, 0.5)),
            ms(percentile(list, 1.0))
        )
    };
    eprintln!(
        "hostile: under 300 slow heads + 200 slow bodies, {} normal requests: p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0))
    );
    eprintln!(
        "hostile: slow heads ({head_408} of 300 answered 408) disconnected after {}; slow bodies answered 408 after {}, disconnected after {} (limits {TIMEOUT_MS} ms)",
        spread(&head_closed),
        spread(&body_answered),
        spread(&body_closed),
    );
    eprintln!(
        "hostile: chunked bodies refused before reading (401) disconnected after {}",
        spread(&refused_closed)
    );
    assert!(server.healthy().await);
}

/// Sends `body` with `content_type` (none: no header) and returns the answer.
async fn post_raw(
    server: &Server,
    method: &str,
    path: &str,
    headers: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    let mut stream = server.connect().await;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), read_answer(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 5 s"))
        .unwrap_or_else(|| panic!("{method} {path}: no answer"))
}

#[tokio::test]
async fn malformed_json_and_wrong_content_types_get_a_clear_4xx() {
    let server = Server::start("").await;
    let http = reqwest::Client::new();
    let token = server.admin_token(&http).await;
    let auth = format!("Authorization: Bearer {token}\r\n");
    let admin = format!("{auth}If-Match: *\r\n");
    // Every JSON endpoint of the host, and JSON routes of two extensions.
    let host_endpoints: [(&str, &str, &str); 6] = [
        ("POST", "/api/v1/auth/login", ""),
        ("POST", "/api/v1/auth/signup", ""),
        ("POST", "/api/v1/extensions/webhooks/enable", &auth),
        ("PUT", "/api/v1/extensions/webhooks/config", &admin),
        ("POST", "/api/v1/extensions/webhooks/migrate", &auth),
        ("POST", "/api/v1/extensions/webhooks/rollback", &auth),
    ];
    let extension_endpoints: [(&str, &str, &str); 2] = [
        ("POST", "/ext/analytics/api/track", ""),
        ("POST", "/ext/webhooks/api/endpoints", &auth),
    ];
    let deep_small = "[".repeat(50_000);
    let deep_large = "[".repeat(100_000);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", br#"{"email": "a@b.c", "pass"#.to_vec()),
        (
            "wrong types",
            br#"{"email": 5, "password": [], "to": "x", "grant_all": 1, "url": {}}"#.to_vec(),
        ),
        ("50k nested [", deep_small.into_bytes()),
        ("100k nested [", deep_large.into_bytes()),
        (
            "huge numbers",
            br#"{"to": 1e999999, "email": 123456789012345678901234567890}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"email\": \"\xff\xfe\xfd\", \"password\": \"\xc3\x28\"}".to_vec(),
        ),
        ("a bare string", br#""just a string""#.to_vec()),
        ("null bytes", b"\0\0\0\0".to_vec()),
    ];
    let mut checked = 0;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    let endpoints = host_endpoints.iter().chain(&extension_endpoints);
    for (method, path, headers) in endpoints {
        for (what, body) in &bodies {
            let started = Instant::now();
            let answer = post_raw(
                &server,
                method,
                path,
                headers,
                Some("application/json"),
                body,
            )
            .await;
            assert!(
                (400..500).contains(&answer.status),
                "{method} {path} with {what}: {answer:?}"
            );
            let code = answer.code();
            if path.starts_with("/api/") {
                let expected = if body.len() > 64 * 1024 {
                    "payload_too_large"
                } else {
                    "invalid_request"
                };
                assert_eq!(code, expected, "{method} {path} with {what}: {answer:?}");
            }
            assert!(started.elapsed() < Duration::from_secs(5));
            *by_status.entry(answer.status).or_default() += 1;
            checked += 1;
        }
    }
    // Valid JSON under the wrong Content-Type, or none, is refused by the host's API.
    let valid = br#"{"email": "someone@example.com", "password": "whatever-it-is"}"#;
    for (method, path, headers) in &host_endpoints {
        for content_type in [
            Some("text/plain"),
            None,
            Some("multipart/form-data; boundary=x"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let answer = post_raw(&server, method, path, headers, content_type, valid).await;
            assert_eq!(
                answer.status, 415,
                "{method} {path} as {content_type:?}: {answer:?}"
            );
            assert_eq!(answer.code(), "unsupported_media_type");
            *by_status.entry(answer.status).or_default() += 1;
            checked += 1;
        }
    }
    eprintln!("hostile: {checked} malformed requests answered by status: {by_status:?}");
    // Nothing was changed by any of them, and the server is fine.
    let res = http
        .get(server.url("/api/v1/extensions/webhooks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(server.healthy().await);
}

/// The series `/metrics` exposes (lines that are not comments).
async fn series(server: &Server, http: &reqwest::Client, token: &str) -> Vec<String> {
    let text = http
        .get(server.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s).to_owned())
        .collect()
}

/// The `i`-th request of the flood: every path and query string is new.
fn flood_path(i: usize) -> String {
    match i % 6 {
        0 => format!("/api/v1/no-such-route/{i}?q={i}"),
        1 => format!("/ext/analytics/no-such-page/{i}?utm={i}"),
        2 => format!("/ext/nosuchext{i}/x/{i}"),
        3 => format!("/healthz?cache-buster={i}"),
        4 => format!("/ext/analytics/script.js?v={i}"),
        _ => format!("/api/v1/storage/files/missing-{i}.txt?x={i}"),
    }
}

/// Sends the flood's requests `range` over a few keep-alive connections, pipelined in batches
/// (a cheap client, so that the server is what is measured); every one must be answered 200
/// or 404. Returns the answers by status.
async fn flood(
    server: &Server,
    token: &str,
    range: std::ops::Range<usize>,
) -> std::collections::BTreeMap<u16, usize> {
    const CONNECTIONS: usize = 8;
    const BATCH: usize = 64;
    let all: Vec<usize> = range.collect();
    let mut tasks = Vec::new();
    for share in all.chunks(all.len().div_ceil(CONNECTIONS)) {
        let share = share.to_vec();
        let (port, auth) = (server.port, format!("Authorization: Bearer {token}\r\n"));
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let mut buf = Vec::new();
            let mut statuses = Vec::with_capacity(share.len());
            for batch in share.chunks(BATCH) {
                let mut requests = String::new();
                for &i in batch {
                    // Only storage needs a user: the others are anonymous, as an attacker is.
                    let auth = if i % 6 == 5 { auth.as_str() } else { "" };
                    requests.push_str(&format!(
                        "GET {} HTTP/1.1\r\nHost: x\r\n{auth}\r\n",
                        flood_path(i)
                    ));
                }
                stream.write_all(requests.as_bytes()).await.unwrap();
                for _ in batch {
                    let answer = tokio::time::timeout(
                        Duration::from_secs(30),
                        next_answer(&mut stream, &mut buf),
                    )
                    .await
                    .expect("a flood request is answered within 30 s")
                    .expect("a flood request is answered");
                    statuses.push(answer.status);
                }
            }
            statuses
        }));
    }
    let mut by_status = std::collections::BTreeMap::new();
    for task in tasks {
        for status in task.await.unwrap() {
            assert!(
                [200, 404].contains(&status),
                "a flood request was answered {status}"
            );
            *by_status.entry(status).or_insert(0) += 1;
        }
    }
    by_status
}

#[tokio::test]
async fn floods_of_distinct_paths_keep_memory_and_metrics_bounded() {
    const FLOOD: usize = 50_000;
    let server = Server::start("").await;
    let http = reqwest::Client::new();
    let token = server.admin_token(&http).await;
    // Warm-up: every kind of request, so that allocator pools and metric series exist (the
    // first scrape of /metrics adds its own series).
    flood(&server, &token, 0..3_000).await;
    series(&server, &http, &token).await;
    let series_before = series(&server, &http, &token).await;
    let before = server.rss();
    let started = Instant::now();
    let by_status = flood(&server, &token, 1_000_000..1_000_000 + FLOOD).await;
    let took = started.elapsed();
    let after = server.rss();
    let series_after = series(&server, &http, &token).await;
    let new: Vec<_> = series_after
        .iter()
        .filter(|s| !series_before.contains(s))
        .collect();
    eprintln!(
        "hostile: {FLOOD} requests with distinct paths and queries in {:.1} s (by status {by_status:?}); RSS {:.1} MiB before, {:.1} MiB after (growth {:.1} MiB); /metrics series {} before, {} after",
        took.as_secs_f64(),
        before as f64 / MIB as f64,
        after as f64 / MIB as f64,
        (after as f64 - before as f64) / MIB as f64,
        series_before.len(),
        series_after.len()
    );
    assert!(
        after < before + 32 * MIB,
        "RSS grew from {before} to {after} bytes over the flood"
    );
    // No series names a path of the flood; new series can only be gauges of things that
    // changed meanwhile, never one per path.
    for s in &series_after {
        assert!(
            !s.contains("no-such") && !s.contains("missing-") && !s.contains("nosuchext"),
            "a raw path became a label: {s}"
        );
    }
    assert!(
        new.len() < 20,
        "the flood added {} series: {new:?}",
        new.len()
    );
    assert!(server.healthy().await);
}
