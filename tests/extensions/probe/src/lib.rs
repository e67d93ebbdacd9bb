//! `probe`: a test-only extension. Every hook, middleware and route rule is here, each
//! triggered only by `x-probe-*` request headers (or by names such as the `full` bucket), so
//! that the host's tests can check the host really calls each one at the right point while
//! other requests pass untouched. `GET /ext/probe/hits` reports what fired.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use solobase_sdk::prelude::*;

/// Configuration: `config/extensions/probe.toml`.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Returned by `GET /ext/probe/config`.
    pub greeting: String,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            greeting: "hello".into(),
        }
    }
}

/// The probe.
#[derive(Debug)]
pub struct Probe {
    ctx: InitContext<ProbeConfig>,
    hits: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Wakes the `trap` task, which then panics.
    trap: Arc<tokio::sync::Notify>,
    /// Ends the `trap` task when the probe stops.
    halt: Arc<tokio::sync::Notify>,
}

impl Probe {
    fn hit(&self, what: &str) {
        *self
            .hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(what.to_owned())
            .or_default() += 1;
    }
}

fn has(req: &RequestHead, header: &str) -> bool {
    req.headers.contains_key(header)
}

impl Extension for Probe {
    type Config = ProbeConfig;

    async fn initialize(ctx: InitContext<ProbeConfig>) -> Result<Self> {
        Ok(Self {
            ctx,
            hits: Arc::new(Mutex::new(BTreeMap::new())),
            trap: Arc::new(tokio::sync::Notify::new()),
            halt: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Two host tasks: `tick` counts every 50 ms; `trap` panics when `/trap` wakes it.
    async fn start(&self) -> Result<()> {
        self.hit("start");
        let hits = self.hits.clone();
        self.ctx
            .tasks
            .every("tick", Duration::from_millis(50), move || {
                let hits = hits.clone();
                async move {
                    *hits
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry("tick".into())
                        .or_default() += 1;
                }
            });
        let (trap, halt) = (self.trap.clone(), self.halt.clone());
        self.ctx.tasks.spawn("trap", move || {
            let (trap, halt) = (trap.clone(), halt.clone());
            async move {
                tokio::select! {
                    () = trap.notified() => panic!("probe: injected task panic"),
                    // Ends with the probe, as a task should.
                    () = halt.notified() => {}
                }
            }
        });
        Ok(())
    }

    async fn stop(&self) -> Result<()> {
        self.hit("stop");
        self.halt.notify_one();
        Ok(())
    }

    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/public", |_, _| async { Ok(Response::json(&"public")) })
            .public();
        // HTML made without `Response::html`: the host must add the strict policy itself.
        routes
            .get("/page", |_, _| async {
                Ok(Response::text("text/html", "<p>a bare page</p>"))
            })
            .public();
        // HTML with a policy of its own, which the host keeps.
        routes
            .get("/sandboxed", |_, _| async {
                Ok(Response::text("text/html", "<p>sandboxed</p>").with_header(
                    solobase_sdk::http::header::CONTENT_SECURITY_POLICY,
                    "sandbox; default-src 'none'",
                ))
            })
            .public();
        // Outbound HTTP without `network.outbound` among its permissions: always refused.
        routes
            .get(
                "/outbound/{port}",
                |ext: Arc<Self>, req: Request| async move {
                    let url = format!("http://127.0.0.1:{}/", req.param("port").unwrap_or("1"));
                    let answer = ext
                        .ctx
                        .http
                        .send(solobase_sdk::outbound::Request::get(url))
                        .await?;
                    Ok(Response::json(&answer.status))
                },
            )
            .public();
        routes.get("/me", |_, req: Request| async move {
            Ok(Response::json(req.identity()?))
        });
        routes
            .get("/headers", |_, req: Request| async move {
                let seen = req.head.header("x-probe-seen").unwrap_or("").to_owned();
                Ok(Response::json(&serde_json::json!({"x-probe-seen": seen})))
            })
            .public();
        routes
            .get("/admin", |_, _| async { Ok(Response::json(&"admin")) })
            .admin();
        routes
            .get("/perm", |_, _| async { Ok(Response::json(&"perm")) })
            .permission("probe.use");
        routes.post("/echo", |_, req: Request| async move {
            let body: serde_json::Value = req.json()?;
            Ok(Response::json(&body))
        });
        routes
            .get("/items/{id}", |_, req: Request| async move {
                Ok(Response::json(&serde_json::json!({"id": req.param("id")})))
            })
            .public();
        routes
            .get("/boom", |_, _| async {
                Err::<Response, _>(ExtensionError::internal(
                    "probe failure with secret=hunter2",
                ))
            })
            .public();
        // Fault injection (the soak test's faulty extension): a handler that panics, and
        // one that answers only after `ms` milliseconds (at most 10 s).
        routes
            .post("/trap", |p: Arc<Self>, _| async move {
                p.trap.notify_one();
                Ok(Response::json(&"sprung"))
            })
            .public();
        routes
            .get("/panic", |_, _| async {
                panic!("probe: injected panic");
                #[allow(unreachable_code)]
                Ok(Response::json(&"unreachable"))
            })
            .public();
        routes
            .get("/sleep/{ms}", |_, req: Request| async move {
                let ms: u64 = req
                    .param("ms")
                    .and_then(|b| b.parse().ok())
                    .ok_or_else(|| ExtensionError::InvalidRequest("ms: a number".into()))?;
                tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
                Ok(Response::json(&ms))
            })
            .public();
        routes
            .get("/config", |ext: Arc<Probe>, _| async move {
                Ok(Response::json(
                    &serde_json::json!({"greeting": ext.ctx.config.get().greeting}),
                ))
            })
            .public();
        routes
            .get("/hits", |ext: Arc<Probe>, _| async move {
                let hits = ext.hits.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Ok(Response::json(&hits))
            })
            .public();
        routes
            .post("/items", |ext: Arc<Probe>, req: Request| async move {
                let label: String = req.json()?;
                let client = ext.ctx.db.client().await?;
                let row = client
                    .query_one(
                        "INSERT INTO probe_items (label) VALUES ($1) RETURNING id",
                        &[&label],
                    )
                    .await?;
                let id: i64 = row.get(0);
                Ok(Response::json_with(StatusCode::CREATED, &id))
            })
            .public();
        routes
            .put(
                "/files/{*path}",
                |ext: Arc<Probe>, req: Request| async move {
                    let path = req.param("path").unwrap_or_default().to_owned();
                    ext.ctx.storage.write(&path, req.body.clone()).await?;
                    Ok(Response::new(StatusCode::NO_CONTENT))
                },
            )
            .public();
        // Queues `n` "record" jobs.
        routes
            .post("/jobs/{n}", |ext: Arc<Probe>, req: Request| async move {
                let n: u32 = req.param("n").and_then(|n| n.parse().ok()).unwrap_or(0);
                for i in 0..n {
                    ext.ctx
                        .jobs
                        .enqueue("record", serde_json::json!({"i": i}))
                        .await?;
                }
                Ok(Response::json(&n))
            })
            .public();
        // Allocates (and frees) a buffer of `bytes`.
        routes
            .get("/allocate/{bytes}", |_, req: Request| async move {
                let bytes: usize = req
                    .param("bytes")
                    .and_then(|b| b.parse().ok())
                    .ok_or_else(|| ExtensionError::InvalidRequest("bytes: a number".into()))?;
                let buffer = vec![1u8; bytes.min(64 << 20)];
                Ok(Response::json(
                    &buffer.iter().map(|&b| b as u64).sum::<u64>(),
                ))
            })
            .public();
        // The host's file storage (storage.read / storage.write), read for the caller.
        routes
            .get(
                "/shared/{bucket}/{*path}",
                |ext: Arc<Probe>, req: Request| async move {
                    let (bucket, path) = (req.param("bucket"), req.param("path"));
                    let file = ext
                        .ctx
                        .files
                        .read(
                            req.head.identity.as_ref(),
                            bucket.unwrap_or_default(),
                            path.unwrap_or_default(),
                        )
                        .await?
                        .ok_or_else(|| ExtensionError::NotFound("no such file".into()))?;
                    Ok(Response::new(StatusCode::OK)
                        .with_header(solobase_sdk::http::header::CONTENT_TYPE, &file.content_type)
                        .with_body(file.data))
                },
            )
            .public();
        routes
            .put(
                "/shared/{bucket}/{*path}",
                |ext: Arc<Probe>, req: Request| async move {
                    let (bucket, path) = (req.param("bucket"), req.param("path"));
                    let ct = req.head.header("content-type").unwrap_or("text/plain");
                    ext.ctx
                        .files
                        .write(
                            bucket.unwrap_or_default(),
                            path.unwrap_or_default(),
                            ct,
                            req.body.clone(),
                        )
                        .await?;
                    Ok(Response::new(StatusCode::NO_CONTENT))
                },
            )
            .public();
        routes
            .delete(
                "/shared/{bucket}/{*path}",
                |ext: Arc<Probe>, req: Request| async move {
                    let (bucket, path) = (req.param("bucket"), req.param("path"));
                    let had = ext
                        .ctx
                        .files
                        .delete(bucket.unwrap_or_default(), path.unwrap_or_default())
                        .await?;
                    Ok(Response::json(&had))
                },
            )
            .public();
    }

    fn hooks(&self, hooks: &mut Hooks<Self>) {
        hooks
            // Long enough for the authentication hook's database lookup on a busy test
            // machine (a time-out counts toward the breaker); the slow hook waits 5 s.
            .timeout(Duration::from_secs(1))
            .middleware(
                MiddlewareSpec::new("tag", 10)
                    .path("/ext/probe/")
                    .path("/healthz"),
                Some(Self::tag_in),
                Some(Self::tag_out),
            )
            .pre_request(0, Self::pre_request)
            .authentication(0, Self::authenticate)
            .authorization(0, Self::authorize)
            .error(0, Self::on_error)
            .post_request(0, Self::post_request)
            .pre_response(0, Self::pre_response)
            .post_response(0, Self::post_response)
            .user_signup(0, Self::user_signup)
            .user_login(0, Self::user_login)
            .storage_before_upload(0, Self::storage_before_upload)
            .storage_after_upload(0, Self::storage_after_upload)
            .storage_before_download(0, Self::storage_before_download)
            .storage_after_download(0, Self::storage_after_download)
            .on_event(&["user.*"], Self::on_event);
    }

    async fn run_job(&self, job: &Job) -> Result<()> {
        match job.kind.as_str() {
            "record" => {
                let client = self.ctx.db.client().await?;
                client
                    .execute("INSERT INTO job_runs (job_id) VALUES ($1)", &[&job.id])
                    .await?;
                Ok(())
            }
            other => Err(ExtensionError::InvalidRequest(format!(
                "no job kind {other}"
            ))),
        }
    }

    fn config_changed(&self, new: &ProbeConfig) -> Result<()> {
        if new.greeting == "refuse" {
            return Err(ExtensionError::InvalidRequest(
                "the probe will not greet with \"refuse\"".into(),
            ));
        }
        Ok(())
    }
}

/// The hooks and middleware, registered in `Extension::hooks`.
impl Probe {
    fn tag_in(&self, req: &mut RequestHead) -> Hook<'_, Flow> {
        if has(req, "x-probe-mw-block") {
            return Flow::reject(
                StatusCode::IM_A_TEAPOT,
                "probe_blocked",
                "blocked by probe middleware",
            )
            .into();
        }
        Flow::Continue.into()
    }

    fn tag_out(&self, _req: &RequestHead, res: &mut ResponseHead) -> Hook<'_, ()> {
        res.headers
            .insert("x-probe-mw", "1".parse().expect("static header"));
        ().into()
    }

    fn pre_request<'a>(&'a self, req: &'a mut RequestHead) -> Hook<'a, Flow> {
        if has(req, "x-probe-slow") {
            // Waits, to be cut off at the hook's time limit.
            return Hook::wait(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Flow::Continue
            });
        }
        if has(req, "x-probe-reject") {
            return Flow::reject(
                StatusCode::FORBIDDEN,
                "probe_rejected",
                "rejected by pre_request",
            )
            .into();
        }
        if has(req, "x-probe-mark") {
            self.hit("pre_request");
            req.headers.insert(
                "x-probe-seen",
                "pre_request".parse().expect("static header"),
            );
        }
        Flow::Continue.into()
    }

    fn authenticate<'a>(&'a self, req: &'a RequestHead) -> Hook<'a, Result<Option<Identity>>> {
        if req.header("x-probe-key") != Some("letmein") {
            return Ok(None).into();
        }
        self.hit("authentication");
        // A lookup in the database: this hook waits.
        Hook::wait(async move {
            let email = req.header("x-probe-user").unwrap_or("probe@example.com");
            let user = self.ctx.users.by_email(email).await?;
            Ok(user.map(|u| Identity {
                user_id: u.id,
                email: u.email,
                role: u.role,
            }))
        })
    }

    fn authorize(&self, req: &RequestHead) -> Hook<'_, Flow> {
        if has(req, "x-probe-deny") {
            self.hit("authorization");
            return Flow::reject(
                StatusCode::FORBIDDEN,
                "probe_denied",
                "denied by authorization hook",
            )
            .into();
        }
        Flow::Continue.into()
    }

    fn on_error(&self, req: &RequestHead, res: &ResponseHead) -> Hook<'_, Option<Response>> {
        self.hit("error");
        has(req, "x-probe-error-replace")
            .then(|| {
                Response::error_with(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "probe_replaced",
                    &format!("replaced a {}", res.status.as_u16()),
                )
            })
            .into()
    }

    fn post_request(&self, req: &RequestHead, _res: &ResponseHead) -> Hook<'_, ()> {
        if has(req, "x-probe-mark") {
            self.hit("post_request");
        }
        ().into()
    }

    fn pre_response(&self, req: &RequestHead, res: &mut ResponseHead) -> Hook<'_, ()> {
        if has(req, "x-probe-mark") {
            self.hit("pre_response");
            let seen = req.header("x-probe-seen").unwrap_or("no").to_owned();
            res.headers
                .insert("x-probe-pre-response", seen.parse().expect("ascii"));
        }
        ().into()
    }

    fn post_response(&self, req: &RequestHead, _res: &ResponseHead) -> Hook<'_, ()> {
        if has(req, "x-probe-mark") {
            self.hit("post_response");
        }
        ().into()
    }

    fn user_signup<'a>(&'a self, info: &'a SignupInfo) -> Hook<'a, Flow> {
        Hook::wait(async move {
            self.hit("user.signup");
            if info.email.ends_with("@blocked.example") {
                return Flow::reject(
                    StatusCode::FORBIDDEN,
                    "domain_blocked",
                    "this domain may not sign up",
                );
            }
            Flow::Continue
        })
    }

    fn user_login<'a>(&'a self, info: &'a LoginInfo) -> Hook<'a, Flow> {
        Hook::wait(async move {
            self.hit("user.login");
            if info.email.starts_with("banned") {
                return Flow::reject(StatusCode::FORBIDDEN, "banned", "this account is banned");
            }
            Flow::Continue
        })
    }

    fn storage_before_upload<'a>(&'a self, info: &'a UploadInfo) -> Hook<'a, Flow> {
        Hook::wait(async move {
            self.hit("storage.before_upload");
            if info.bucket == "full" {
                return Flow::reject(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "quota_exceeded",
                    "bucket full",
                );
            }
            Flow::Continue
        })
    }

    fn storage_after_upload<'a>(&'a self, _info: &'a UploadInfo) -> Hook<'a, ()> {
        Hook::wait(async move {
            self.hit("storage.after_upload");
        })
    }

    fn storage_before_download<'a>(&'a self, info: &'a DownloadInfo) -> Hook<'a, Flow> {
        Hook::wait(async move {
            self.hit("storage.before_download");
            if info.path == "forbidden.txt" {
                return Flow::reject(StatusCode::FORBIDDEN, "probe_forbidden", "not this file");
            }
            Flow::Continue
        })
    }

    fn storage_after_download<'a>(&'a self, _info: &'a DownloadInfo) -> Hook<'a, ()> {
        Hook::wait(async move {
            self.hit("storage.after_download");
        })
    }

    fn on_event<'a>(&'a self, event: &'a Event) -> Hook<'a, ()> {
        Hook::wait(async move {
            self.hit(&format!("event:{}", event.event_type.as_str()));
        })
    }
}

solobase_sdk::export_extension!(Probe);
