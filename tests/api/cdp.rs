//! A minimal Chrome DevTools Protocol client for end-to-end tests in a real browser: it
//! launches headless Chromium (Debian's `chromium` package; `SOLOBASE_TEST_CHROMIUM` names
//! another binary) with a throw-away profile, opens one page and drives it as a person would —
//! navigate, fill in, click, wait until something shows — through `Runtime.evaluate`.
//!
//! Every wait has a time limit and fails with what the page showed, and the page's script
//! errors and security (Content-Security-Policy) errors are collected in
//! [`Browser::problems`] for the test to check.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::TempDir;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a wait lasts unless told otherwise.
pub const WAIT: Duration = Duration::from_secs(15);

/// A headless Chromium with one page, closed (and its process ended) when dropped.
pub struct Browser {
    child: Child,
    /// The browser-wide connection; the page is one flattened session on it.
    socket: Socket,
    session: String,
    next_id: u64,
    /// Uncaught script exceptions, `console.error` calls and non-network error log entries
    /// (such as Content-Security-Policy violations), in order.
    pub problems: Vec<String>,
    /// The profile directory, held to be removed after the process ends (fields drop after
    /// `Drop::drop`).
    _profile: TempDir,
}

impl Browser {
    /// Starts Chromium and opens a blank page. Panics, saying how to install it, when the
    /// binary is missing.
    pub async fn launch() -> Browser {
        let program =
            std::env::var("SOLOBASE_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = TempDir::new();
        let log = std::fs::File::create(profile.0.join("chromium.log")).expect("a log file");
        let mut child = Command::new(&program)
            .args([
                "--headless=new",
                "--remote-debugging-port=0",
                // Tests run as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-extensions",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{program}` ({e}). The admin dashboard's end-to-end test needs \
                     headless Chromium: install it with `apt-get install chromium` (Debian, \
                     Ubuntu), or set SOLOBASE_TEST_CHROMIUM to a Chromium or Chrome binary"
                )
            });
        let endpoint = wait_for_endpoint(&mut child, &profile).await;
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to Chromium's DevTools at {endpoint}: {e}"));
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            problems: Vec::new(),
            _profile: profile,
        };
        let target = browser
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await
            .expect("a page opens");
        let attached = browser
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await
            .expect("the test attaches to the page");
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.page(domain, json!({})).await.expect(domain);
        }
        browser
    }

    /// Sends `method` (to the page's session, or to the browser when `session` is `None`) and
    /// waits for its answer, noting the events that arrive meanwhile.
    async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| format!("{method}: cannot send: {e}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .map_err(|_| format!("{method}: no answer from Chromium within 30 s"))?;
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("{method}: the connection failed: {e}")),
                None => return Err(format!("{method}: Chromium closed the connection")),
            };
            let value: Value = serde_json::from_str(text.as_str())
                .map_err(|e| format!("{method}: not JSON from Chromium: {e}"))?;
            if value["id"] == id {
                if let Some(error) = value.get("error") {
                    return Err(format!("{method}: {error}"));
                }
                return Ok(value["result"].clone());
            }
            self.observe(&value);
        }
    }

    /// A command to the page.
    async fn page(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.call(Some(&session), method, params).await
    }

    /// Notes the events that tell of a problem in the page.
    fn observe(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("?");
                self.problems.push(format!("uncaught exception: {text}"));
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        a["value"]
                            .as_str()
                            .map_or_else(|| a.to_string(), str::to_owned)
                    })
                    .collect();
                self.problems
                    .push(format!("console.error: {}", args.join(" ")));
            }
            // Error answers from the API are logged as network errors; they are expected.
            Some("Log.entryAdded")
                if params["entry"]["level"] == "error"
                    && params["entry"]["source"] != "network" =>
            {
                self.problems.push(format!(
                    "{} error: {}",
                    params["entry"]["source"].as_str().unwrap_or("?"),
                    params["entry"]["text"].as_str().unwrap_or("?")
                ));
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let result = self
            .page(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("?");
            return Err(format!("`{expression}` threw: {text}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// [`Browser::evaluate`], failing the test (with what the page shows) on an error.
    pub async fn eval(&mut self, expression: &str) -> Value {
        match self.evaluate(expression).await {
            Ok(value) => value,
            Err(e) => self.fail(&e).await,
        }
    }

    /// Opens `url` and waits until its document has loaded.
    pub async fn goto(&mut self, url: &str) {
        let result = self.page("Page.navigate", json!({"url": url})).await;
        match result {
            Ok(r) if r.get("errorText").is_none() => {}
            Ok(r) => {
                self.fail(&format!("cannot open {url}: {}", r["errorText"]))
                    .await
            }
            Err(e) => self.fail(&format!("cannot open {url}: {e}")).await,
        }
        self.wait_until(
            &format!(
                "location.href === {} && document.readyState === 'complete'",
                js(url)
            ),
            &format!("{url} to load"),
        )
        .await;
    }

    /// Waits (up to [`WAIT`]) until the JavaScript `condition` is true.
    pub async fn wait_until(&mut self, condition: &str, what: &str) {
        self.wait_until_for(condition, what, WAIT).await;
    }

    /// Waits up to `limit` until the JavaScript `condition` is true; fails the test with the
    /// page's text otherwise.
    pub async fn wait_until_for(&mut self, condition: &str, what: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last_error = None;
        loop {
            match self.evaluate(&format!("Boolean({condition})")).await {
                Ok(Value::Bool(true)) => return,
                Ok(_) => {}
                // A navigation can destroy the context mid-evaluation: try again.
                Err(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                let why = last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                self.fail(&format!("waited {limit:?} for {what}, in vain{why}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until an element matches `selector`.
    pub async fn wait_for(&mut self, selector: &str) {
        self.wait_until(
            &format!("document.querySelector({})", js(selector)),
            &format!("an element matching `{selector}`"),
        )
        .await;
    }

    /// Waits until an element matching `selector` shows `text`.
    pub async fn wait_for_text(&mut self, selector: &str, text: &str) {
        self.wait_until(
            &format!(
                "[...document.querySelectorAll({})].some(e => e.innerText.includes({}))",
                js(selector),
                js(text)
            ),
            &format!("`{selector}` to show {text:?}"),
        )
        .await;
    }

    /// The text an element matching `selector` shows (waiting for it).
    pub async fn text(&mut self, selector: &str) -> String {
        self.wait_for(selector).await;
        let value = self
            .eval(&format!(
                "document.querySelector({}).innerText",
                js(selector)
            ))
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Types `value` into the field matching `selector`, as input events.
    pub async fn fill(&mut self, selector: &str, value: &str) {
        self.wait_for(selector).await;
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.focus(); e.value = {}; \
             e.dispatchEvent(new Event('input', {{bubbles: true}})); \
             e.dispatchEvent(new Event('change', {{bubbles: true}})); }})()",
            js(selector),
            js(value)
        ))
        .await;
    }

    /// Clicks the element matching `selector` once it is there and enabled.
    pub async fn click(&mut self, selector: &str) {
        self.wait_until(
            &format!(
                "(e => e && !e.disabled)(document.querySelector({}))",
                js(selector)
            ),
            &format!("`{selector}` to be clickable"),
        )
        .await;
        self.eval(&format!("document.querySelector({}).click()", js(selector)))
            .await;
    }

    /// Submits the form matching `selector` as its submit button would.
    pub async fn submit(&mut self, selector: &str) {
        self.wait_for(selector).await;
        self.eval(&format!(
            "document.querySelector({}).requestSubmit()",
            js(selector)
        ))
        .await;
    }

    /// With `SOLOBASE_TEST_SCREENSHOTS=<dir>` set, saves what the page looks like now as
    /// `<dir>/<name>.png` (to look at a view, or at a failure); otherwise does nothing.
    pub async fn screenshot(&mut self, name: &str) {
        let Some(dir) = std::env::var_os("SOLOBASE_TEST_SCREENSHOTS") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = self.screenshot_to(&dir.join(format!("{name}.png"))).await;
    }

    /// Saves what the page looks like now as a PNG at `path`; whether it could.
    pub async fn screenshot_to(&mut self, path: &std::path::Path) -> bool {
        use base64::Engine as _;
        let shot = self
            .page(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = shot.ok().and_then(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s["data"].as_str()?)
                .ok()
        });
        png.is_some_and(|png| std::fs::write(path, png).is_ok())
    }

    /// Fails the test with `message`, the page's address and text, and the problems seen.
    pub async fn fail(&mut self, message: &str) -> ! {
        self.screenshot("failure").await;
        let page = self
            .evaluate("location.href + '\\n\\n' + (document.body ? document.body.innerText : '')")
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| format!("(cannot read the page: {e})"));
        panic!(
            "{message}\n--- the page shows: {page}\n--- problems in the page: {:?}",
            self.problems
        );
    }

    /// Closes the browser and waits for its process to end.
    pub async fn close(mut self) {
        let _ = self.call(None, "Browser.close", json!({})).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After close() this finds the process gone; after a failed test it ends it.
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for Chromium to write `DevToolsActivePort` into its profile and returns the
/// browser's WebSocket address; fails with its log when it exits or takes too long.
async fn wait_for_endpoint(process: &mut Child, profile: &TempDir) -> String {
    let file = profile.0.join("DevToolsActivePort");
    let log = || std::fs::read_to_string(profile.0.join("chromium.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let [port, path] = text.lines().collect::<Vec<_>>()[..]
        {
            return format!("ws://127.0.0.1:{port}{path}");
        }
        if let Ok(Some(status)) = process.try_wait() {
            panic!(
                "Chromium exited ({status}) before it was ready; its log:\n{}",
                log()
            );
        }
        if Instant::now() >= deadline {
            let _ = process.kill();
            let _ = process.wait();
            panic!(
                "Chromium did not open its DevTools port within 30 s; its log:\n{}",
                log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `value` as a JavaScript string literal.
fn js(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}
