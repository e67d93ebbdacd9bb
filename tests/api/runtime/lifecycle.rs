//! The extension lifecycle with extensions defined right here: dependency order, contained
//! failures, start-up errors; and the SDK testing kit against the run's real PostgreSQL.

use std::sync::Mutex;

use reqwest::StatusCode;
use serde_json::{Value, json};
use solobase_sdk::Registration;
use solobase_sdk::prelude::*;

use crate::helpers::TestApp;

// --- Extensions defined here, for lifecycle cases -------------------------------------------

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record(what: String) {
    EVENTS.lock().unwrap().push(what);
}

macro_rules! lifecycle_ext {
    ($ty:ident, $name:literal, $fail_init:expr) => {
        struct $ty;
        impl Extension for $ty {
            type Config = ();
            async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
                record(format!("init {}", $name));
                if $fail_init {
                    return Err(ExtensionError::internal("cannot reach the moon"));
                }
                Ok($ty)
            }
            async fn start(&self) -> Result<()> {
                record(format!("start {}", $name));
                Ok(())
            }
            async fn stop(&self) -> Result<()> {
                record(format!("stop {}", $name));
                Ok(())
            }
            fn routes(&self, routes: &mut Routes<Self>) {
                routes
                    .get("/", |_, _| async { Ok(Response::json(&$name)) })
                    .public();
            }
        }
    };
}

lifecycle_ext!(LcBase, "lc-base", false);
lifecycle_ext!(LcTop, "lc-top", false);
lifecycle_ext!(LcBroken, "lc-broken", true);
lifecycle_ext!(LcNeedsBroken, "lc-needs-broken", false);

const BASE: &str = "[extension]\nname = \"lc-base\"\nversion = \"0.1.0\"\ndescription = \"d\"\nmin_host_version = \"0.1.0\"\n";
const TOP: &str = "[extension]\nname = \"lc-top\"\nversion = \"0.1.0\"\ndescription = \"d\"\nmin_host_version = \"0.1.0\"\n[dependencies]\nlc-base = \"^0.1\"\n";
const BROKEN: &str = "[extension]\nname = \"lc-broken\"\nversion = \"0.1.0\"\ndescription = \"d\"\nmin_host_version = \"0.1.0\"\n";
const NEEDS_BROKEN: &str = "[extension]\nname = \"lc-needs-broken\"\nversion = \"0.1.0\"\ndescription = \"d\"\nmin_host_version = \"0.1.0\"\n[dependencies]\nlc-broken = \"*\"\n";

#[tokio::test]
async fn lifecycle_follows_dependencies_and_failures_stay_contained() {
    EVENTS.lock().unwrap().clear();
    // Registered in the "wrong" order on purpose.
    let regs = vec![
        Registration::new::<LcTop>(TOP, "0.1.0"),
        Registration::new::<LcNeedsBroken>(NEEDS_BROKEN, "0.1.0"),
        Registration::new::<LcBroken>(BROKEN, "0.1.0"),
        Registration::new::<LcBase>(BASE, "0.1.0"),
    ];
    let app = TestApp::builder().extensions(regs).spawn().await;
    assert_eq!(app.get("/ext/lc-top/").await.status(), StatusCode::OK);
    assert_eq!(app.get("/ext/lc-base").await.status(), StatusCode::OK);
    let res = app.get("/ext/lc-broken/").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("cannot reach the moon"));
    let res = app.get("/ext/lc-needs-broken/").await;
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("dependency lc-broken is not running")
    );
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    app.stop().await.unwrap();

    let events = EVENTS.lock().unwrap().clone();
    let pos = |e: &str| {
        events
            .iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e} in {events:?}"))
    };
    assert!(pos("init lc-base") < pos("init lc-top"));
    assert!(pos("start lc-base") < pos("start lc-top"));
    assert!(pos("stop lc-top") < pos("stop lc-base"), "{events:?}");
    assert!(
        !events.iter().any(|e| e == "init lc-needs-broken"),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e == "start lc-broken"), "{events:?}");
}

struct Dup;
impl Extension for Dup {
    type Config = ();
    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Dup)
    }
    fn routes(&self, routes: &mut Routes<Self>) {
        routes.get("/a", |_, _| async { Ok(Response::new(StatusCode::OK)) });
        routes.get("/a", |_, _| async { Ok(Response::new(StatusCode::OK)) });
    }
}

#[tokio::test]
async fn a_duplicate_route_is_a_start_up_error_naming_it() {
    const DUP: &str = "[extension]\nname = \"dup\"\nversion = \"0.1.0\"\ndescription = \"d\"\nmin_host_version = \"0.1.0\"\n";
    let err = TestApp::builder()
        .extensions(vec![Registration::new::<Dup>(DUP, "0.1.0")])
        .build()
        .await
        .err()
        .expect("start-up fails");
    let msg = format!("{err:#}");
    assert!(msg.contains("GET /ext/dup/a twice"), "{msg}");
}

#[cfg(feature = "probe")]
#[test]
fn registration_exposes_schema_and_checks_config() {
    let reg = solobase_ext_probe::solobase_extension();
    let schema = reg.config_schema();
    assert_eq!(
        schema["properties"]["greeting"]["type"], "string",
        "{schema}"
    );
    assert!(reg.check_config(&json!({"greeting": "x"})).is_ok());
    assert!(reg.check_config(&json!({"greeting": 3})).is_err());
    assert!(reg.check_config(&json!({"nope": 3})).is_err());
}

/// The host's testing kit (`solobase::testkit`), as an extension author uses it: the real
/// server in the test's process, identities turned into real accounts and tokens, the
/// extension's own database handle.
#[cfg(feature = "webhooks")]
#[tokio::test]
async fn the_testing_kit_runs_an_extension_through_the_real_server() {
    use solobase::testkit::TestServer;
    use solobase_sdk::testing::identity;
    let server = TestServer::builder(solobase_ext_webhooks::solobase_extension())
        .start()
        .await
        .unwrap();
    let admin = identity("a@example.com", Role::Admin);
    let body = json!({"url": "https://example.com/in", "event_types": ["*"]});
    let res = server
        .call(
            Request::new(Method::POST, "/api/endpoints")
                .with_json(&body)
                .with_identity(admin.clone()),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    // The identity is a real account: the host's own route knows it.
    let me = server
        .call_host(Request::new(Method::GET, "/api/v1/auth/me").with_identity(admin.clone()))
        .await;
    let me: Value = me.json_body().unwrap();
    assert_eq!(me["email"], "a@example.com");
    assert_eq!(me["role"], "admin");
    // The security headers and request id of the real pipeline.
    let res = server
        .call(Request::new(Method::GET, "/api/endpoints").with_identity(admin))
        .await;
    assert_eq!(res.headers["x-content-type-options"], "nosniff");
    assert!(res.headers.contains_key("x-request-id"));
    let list: Vec<Value> = res.json_body().unwrap();
    assert_eq!(list.len(), 1);
    // The database handle is the extension's: its role, its schema, its rows.
    let client = server.database("webhooks").client().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_user::text, current_schema()::text, (SELECT url FROM endpoints)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "ext_webhooks");
    assert_eq!(row.get::<_, String>(1), "ext_webhooks");
    assert_eq!(row.get::<_, String>(2), "https://example.com/in");
    server.stop().await.unwrap();
}
