//! Wiring: [`Application::build`] connects the database (starting the embedded cluster when no
//! URL is configured), migrates, seeds the first admin, opens storage and binds the listener;
//! [`Application::run_until_stopped`] serves until the given shutdown future completes, then
//! drains in-flight requests, stops background tasks and the embedded cluster.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::sync::watch;

use crate::auth::{Email, Password, Role, users};
use crate::config::Config;
use crate::db::{Postgres, migrate};
use crate::events::EventBus;
use crate::http::{self, AppState};
use crate::runtime::host::{ExtensionHost, HostContext};
use crate::storage::FileStore;

/// A binary built with test-only extensions (`--all-features` compiles them in) serves only
/// the test suite, which says so with `SOLOBASE_ALLOW_TEST_EXTENSIONS=1`: their routes and
/// hooks open doors (logins by header, storage without a login) no deployment may have.
fn refuse_test_extensions(config: &Config) -> Result<(), crate::config::ConfigError> {
    let compiled = crate::runtime::test_only_compiled();
    if compiled.is_empty() || config.allow_test_extensions {
        return Ok(());
    }
    Err(crate::config::ConfigError::Invalid(format!(
        "this binary contains test-only extensions ({}), which exist for Solobase's test suite \
         and must never serve: build without them (cargo build --release, or --features with the \
         extensions you want instead of --all-features). The test suite runs such a build with \
         SOLOBASE_ALLOW_TEST_EXTENSIONS=1",
        compiled.join(", ")
    )))
}

/// How often expired sessions are deleted.
const SESSION_SWEEP_INTERVAL: Duration = Duration::from_secs(600);
const AUTH_UPKEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A built, bound, not yet running server.
#[allow(missing_debug_implementations)] // actix's Server has no Debug
pub struct Application {
    port: u16,
    server: Server,
    /// The unauthenticated metrics listener (`[metrics] bind`) and its port.
    metrics_server: Option<(Server, u16)>,
    state: AppState,
    extensions: Arc<ExtensionHost>,
    /// The mounted host routes and the OpenAPI document built from them.
    api: Arc<http::Api>,
    db: Arc<Postgres>,
    /// While no administrator exists: the one-time link that creates one (printed at start).
    setup_link: Option<String>,
    /// Ends the task that reloads the TLS certificate (dropped with the application).
    _tls_watch: Option<tokio::sync::watch::Sender<bool>>,
}

impl Application {
    /// Builds the server with the compiled-in extensions.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_extensions(config, crate::runtime::registrations()).await
    }

    /// Builds the server with the given extensions instead of the compiled-in ones (for
    /// tests and benchmarks that bring their own).
    pub async fn build_with_extensions(
        config: Config,
        registrations: Vec<solobase_sdk::Registration>,
    ) -> anyhow::Result<Self> {
        refuse_test_extensions(&config)?;
        let db = Postgres::connect(&config, crate::db::Mode::Own).await?;
        tracing::info!(database = db.target(), "database connected");
        let db = Arc::new(db);
        match Self::prepare(config, db.clone(), registrations).await {
            Ok(app) => Ok(app),
            Err(e) => {
                db.close().await;
                Err(e)
            }
        }
    }

    async fn prepare(
        config: Config,
        db: Arc<Postgres>,
        registrations: Vec<solobase_sdk::Registration>,
    ) -> anyhow::Result<Self> {
        migrate::run(db.pool()).await?;
        let events = EventBus::default();
        if let Some(seed) = &config.bootstrap_admin {
            bootstrap_admin(db.pool(), seed, config.auth.min_password_length, &events).await?;
        }
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let storage_dir = config.storage_dir();
        let storage = FileStore::open(&storage_dir).with_context(|| {
            format!(
                "cannot create the storage directory {}",
                storage_dir.display()
            )
        })?;
        let extensions = ExtensionHost::start(
            HostContext {
                pool: db.pool().clone(),
                pg_config: db.pg_config().clone(),
                tls: db.tls().clone(),
                data_dir: config.data_dir.clone(),
                bus: events.clone(),
                settings: config.extensions.clone(),
                role_passwords: config.database.url.is_some(),
                storage: storage.clone(),
                max_upload_bytes: config.storage.max_upload_bytes,
                metrics: metrics.clone(),
            },
            registrations,
        )
        .await
        .context("cannot load the extensions")?;
        let bind = config.server.bind;
        let listener = TcpListener::bind(bind).with_context(|| {
            format!("cannot listen on {bind}: is another server using it? Choose another address with --bind or SOLOBASE_BIND")
        })?;
        let port = listener.local_addr()?.port();
        // A bad CA file stops the start here, not each extension's outbound calls later.
        crate::runtime::outbound::extra_roots(config.extensions.outbound_ca_file.as_deref())?;
        let proxies = crate::config::TrustedProxies::parse(
            &config.server.trusted_proxies,
            config.server.client_ip_header,
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        let auth_cache = Arc::new(crate::auth::cache::AuthCache::default());
        auth_cache.spawn_listener(
            db.pg_config().clone(),
            db.tls().clone(),
            extensions.stopping(),
        );
        let state = AppState {
            auth_cache,
            proxies: Arc::new(proxies),
            pool: db.pool().clone(),
            throttle: Arc::new(crate::auth::throttle::Throttle::new(&config.auth)),
            denials: Arc::new(crate::audit::Denials::new(Duration::from_secs(
                config.auth.audit_denial_window_secs,
            ))),
            config: Arc::new(config),
            events,
            storage,
            metrics,
        };
        // Ends when the extensions stop.
        if let Err(e) = crate::reload::spawn(
            state.config.source.clone(),
            (*state.config).clone(),
            extensions.clone(),
            state.pool.clone(),
            extensions.stopping(),
        ) {
            tracing::info!(reason = %e, "not watching the configuration for changes");
        }
        let metrics_server = match state.config.metrics.bind {
            Some(addr) => Some(build_metrics_server(
                addr,
                state.clone(),
                extensions.clone(),
            )?),
            None => None,
        };
        // The host's routes and their OpenAPI document, built once for every worker.
        let api = Arc::new(http::Api::build(extensions.clone()));
        let tls = match &state.config.server.tls {
            Some(files) => {
                let (config, resolver) = http::tls::server_config(files)?;
                let (stop, stopped) = tokio::sync::watch::channel(false);
                tokio::spawn(http::tls::watch(files.clone(), resolver, stopped));
                Some((config, stop))
            }
            None => None,
        };
        let (tls_config, tls_watch) = match tls {
            Some((config, stop)) => (Some(config), Some(stop)),
            None => (None, None),
        };
        let https = tls_config.is_some();
        let server = build_server(
            listener,
            tls_config,
            state.clone(),
            extensions.clone(),
            api.clone(),
        )?;
        tracing::info!(address = %bind.ip(), port, tls = https, "listening");
        let base = base_url(if https { "https" } else { "http" }, bind, port);
        tracing::info!("admin dashboard: {base}/admin/");
        let setup_link = match crate::auth::setup::issue(&state.pool).await {
            Ok(Some(token)) => {
                let link = format!("{base}/admin/#/setup/{token}");
                tracing::info!(
                    "no administrator exists yet: open {link} within 30 minutes to create one \
                     (the link works once; a restart prints a new one). Or set \
                     SOLOBASE_ADMIN_EMAIL and SOLOBASE_ADMIN_PASSWORD, or run \
                     `solobase users create --admin <email>`"
                );
                Some(link)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot issue the first-run setup link");
                None
            }
        };
        Ok(Self {
            _tls_watch: tls_watch,
            setup_link,
            port,
            server,
            metrics_server,
            state,
            extensions,
            api,
            db,
        })
    }

    /// While no administrator exists, the one-time link that creates one (as printed at
    /// start).
    pub fn setup_link(&self) -> Option<&str> {
        self.setup_link.as_deref()
    }

    /// The port actually bound (useful when the configured port is 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metrics listener's port, when `[metrics] bind` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The extension runtime.
    pub fn extensions(&self) -> &Arc<ExtensionHost> {
        &self.extensions
    }

    /// The host routes as mounted, and the OpenAPI document built from them.
    pub fn api(&self) -> &http::Api {
        &self.api
    }

    /// Serves until `shutdown` completes, then stops gracefully: no new connections,
    /// in-flight requests get `server.shutdown_timeout_secs` to finish, background tasks end,
    /// and the embedded cluster (if any) is shut down.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            server,
            metrics_server,
            state,
            extensions,
            db,
            ..
        } = self;
        let handle = server.handle();
        let (stop_tx, stop_rx) = watch::channel(false);
        let sweeper = tokio::spawn(sweep_sessions(state.pool.clone(), stop_rx.clone()));
        let upkeep = tokio::spawn(metrics_upkeep(state.metrics.clone(), stop_rx.clone()));
        let auth_upkeep = tokio::spawn(auth_upkeep(state.clone(), stop_rx.clone()));
        let retention = tokio::spawn(crate::retention::run(
            state.pool.clone(),
            state.config.retention.clone(),
            state.metrics.clone(),
            stop_rx,
        ));
        let metrics_server = metrics_server.map(|(server, _)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });

        let mut server = std::pin::pin!(server);
        let served = tokio::select! {
            result = &mut server => result,
            () = shutdown => {
                tracing::info!("shutdown requested: draining in-flight requests");
                // The stop command is processed by the server future, so poll both.
                let ((), result) = tokio::join!(handle.stop(true), &mut server);
                result
            }
        };
        let _ = stop_tx.send(true);
        let _ = sweeper.await;
        let _ = upkeep.await;
        let _ = auth_upkeep.await;
        let _ = retention.await;
        if let Some((handle, task)) = metrics_server {
            handle.stop(false).await;
            let _ = task.await;
        }
        extensions.shutdown().await;
        db.close().await;
        tracing::info!("stopped");
        served.context("the HTTP server failed")
    }
}

/// The unauthenticated `/metrics` listener on `addr`: one worker, nothing else served.
// A separate listener, not the API: the one route it serves is not in the API's document.
#[allow(clippy::disallowed_methods)]
fn build_metrics_server(
    addr: std::net::SocketAddr,
    state: AppState,
    extensions: Arc<ExtensionHost>,
) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind(addr).with_context(|| {
        format!("cannot listen for metrics on {addr} ([metrics] bind): is the address in use?")
    })?;
    let port = listener.local_addr()?.port();
    let data = web::Data::new(state);
    let extensions = web::Data::from(extensions);
    let server = HttpServer::new(move || {
        App::new()
            // Like every answer of the main listener's (see `http::security_headers`).
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
            )
            .app_data(data.clone())
            .app_data(extensions.clone())
            .route("/metrics", web::get().to(http::api::metrics::open))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    tracing::info!(%addr, port, "serving metrics without authentication");
    Ok((server, port))
}

/// Drains histogram samples every few seconds, whether or not anyone scrapes.
async fn metrics_upkeep(metrics: Arc<crate::metrics::Metrics>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => metrics.upkeep(),
            _ = stop.changed() => return,
        }
    }
}

/// Every minute: forgets idle login limits and writes the merged audit entries of refused
/// admin actions whose window has passed; at the stop, writes all that are left.
async fn auth_upkeep(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(AUTH_UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                state.throttle.sweep();
                state.denials.flush(&state.pool, false).await;
            }
            _ = stop.changed() => break,
        }
    }
    state.denials.flush(&state.pool, true).await;
}

fn build_server(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    state: AppState,
    extensions: Arc<ExtensionHost>,
    api: Arc<http::Api>,
) -> anyhow::Result<Server> {
    let workers = state.config.server.workers;
    let drain = state.config.server.shutdown_timeout_secs;
    let limits = state.config.server.clone();
    let max_json = limits.max_json_bytes;
    let data = web::Data::new(state);
    let extensions = web::Data::from(extensions);
    let mut server = HttpServer::new(move || {
        App::new()
            // The last wrap runs first: request ids, then the extension pipeline.
            .wrap(from_fn(crate::http::ext::pipeline::middleware))
            .wrap(from_fn(http::request_id_middleware))
            .app_data(data.clone())
            .app_data(extensions.clone())
            .configure(|cfg| http::configure(cfg, &api, max_json))
            .default_service(web::to(http::not_found))
    })
    .disable_signals()
    .shutdown_timeout(drain)
    // A slow or idle client holds a connection only this long (see docs/configuration.md, "Limits on requests").
    .client_request_timeout(Duration::from_millis(limits.request_head_timeout_ms))
    .keep_alive(match limits.keep_alive_secs {
        0 => actix_web::http::KeepAlive::Disabled,
        secs => actix_web::http::KeepAlive::Timeout(Duration::from_secs(secs)),
    })
    .max_connections(limits.max_connections)
    .on_connect(http::body_deadline::on_connect);
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(match tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?.run(),
        None => server.listen(listener)?.run(),
    })
}

/// The server's address for people: `<scheme>://<bind address>:<port>`, with `localhost` for
/// an address that means every interface.
fn base_url(scheme: &str, bind: std::net::SocketAddr, port: u16) -> String {
    match bind.ip() {
        ip if ip.is_unspecified() => format!("{scheme}://localhost:{port}"),
        std::net::IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
        ip => format!("{scheme}://{ip}:{port}"),
    }
}

/// Creates the admin from SOLOBASE_ADMIN_EMAIL/PASSWORD unless an admin exists already.
async fn bootstrap_admin(
    pool: &deadpool_postgres::Pool,
    seed: &crate::config::AdminSeed,
    min_password_length: usize,
    events: &EventBus,
) -> anyhow::Result<()> {
    if users::admin_exists(pool).await? {
        return Ok(());
    }
    let email =
        Email::parse(&seed.email).map_err(|e| anyhow::anyhow!("SOLOBASE_ADMIN_EMAIL: {e}"))?;
    let password = Password::parse(seed.password.clone(), min_password_length)
        .map_err(|e| anyhow::anyhow!("SOLOBASE_ADMIN_PASSWORD: {e}"))?;
    match users::create(pool, &email, &password, Role::Admin).await {
        Ok((user, event)) => {
            tracing::info!(user_id = %user.id, email = %user.email, "created the first admin");
            events.publish(event);
            Ok(())
        }
        // Another instance seeded it at the same moment.
        Err(users::CreateUserError::EmailTaken(_)) => Ok(()),
        Err(e) => Err(e).context("cannot create the first admin"),
    }
}

/// Background task: deletes expired sessions until told to stop.
async fn sweep_sessions(pool: deadpool_postgres::Pool, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SESSION_SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => match users::purge_expired_sessions(&pool).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "expired sessions deleted"),
                Err(e) => tracing::warn!(error = %e, "session sweep failed"),
            },
            _ = stop.changed() => return,
        }
    }
}
