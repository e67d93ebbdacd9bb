//! Route matching: the `/ext/<name>/…` prefix split (`dispatch::split_path`), route path
//! checks (`check_path`), building a route table (`RouteTable::build`: conflicts are errors,
//! never panics) and lookups. A match's parameters are the very pieces of the requested path
//! that fill its template; the split never yields a route path outside the extension's prefix.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use solobase::http::ext::dispatch::split_path;
use solobase_sdk::Response;
use solobase_sdk::http::{Method, StatusCode};
use solobase_sdk::routes::{Access, Lookup, RouteDef, RouteTable, check_path};

/// The shipped extensions' routes (webhooks, analytics, and the test extension's).
const SHIPPED: &[&str] = &[
    "/",
    "/api/deliveries",
    "/api/deliveries/{id}",
    "/api/deliveries/{id}/attempts",
    "/api/deliveries/{id}/resend",
    "/api/endpoints",
    "/api/endpoints/{id}",
    "/api/endpoints/{id}/rotate",
    "/api/endpoints/{id}/secret",
    "/api/endpoints/{id}/test",
    "/api/stats/summary",
    "/api/track",
    "/dashboard.js",
    "/items/{id}",
    "/jobs/{n}",
];

fn def(method: Method, path: &str) -> RouteDef {
    RouteDef {
        method,
        path: path.to_owned(),
        access: Access::Public,
        handler: Arc::new(|_| Box::pin(async { Ok(Response::new(StatusCode::OK)) })),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or_default();
    // Further lines: more routes, `<method> <path>` (GET when there is no space).
    let mut defs: Vec<RouteDef> = SHIPPED.iter().map(|p| def(Method::GET, p)).collect();
    for line in lines.take(16) {
        let (method, route) = line.split_once(' ').unwrap_or(("GET", line));
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            continue;
        };
        if check_path(route).is_ok() {
            assert!(
                route.starts_with('/') && !route.split('/').any(|s| s == ".." || s == "."),
                "{route:?} accepted"
            );
        }
        defs.push(def(method, route));
    }
    let templates: Vec<String> = defs.iter().map(|d| d.path.clone()).collect();
    let table = match RouteTable::build("fuzz", defs) {
        Ok(table) => table,
        Err(message) => {
            assert!(message.starts_with("extension fuzz"), "{message}");
            RouteTable::build(
                "fuzz",
                SHIPPED.iter().map(|p| def(Method::GET, p)).collect(),
            )
            .expect("the shipped routes build")
        }
    };

    let (name, sub) = split_path(path);
    assert!(!name.contains('/') && sub.starts_with('/'));
    match path.strip_prefix("/ext/") {
        Some(rest) => {
            let rebuilt = if rest.contains('/') {
                format!("/ext/{name}{sub}")
            } else {
                assert_eq!(sub, "/");
                format!("/ext/{name}")
            };
            assert_eq!(rebuilt, path, "the split lost or added something");
        }
        None => assert_eq!(name, "", "{path:?} is not under /ext/"),
    }

    for method in [Method::GET, Method::HEAD, Method::POST] {
        if let Lookup::Found { route, params } = table.lookup(&method, sub) {
            assert!(templates.contains(&route.path));
            assert!(
                route.method == method || (method == Method::HEAD && route.method == Method::GET)
            );
            if !sub.contains('%') {
                // Undecoded: putting the parameters into the template gives the path back.
                assert_eq!(fill(&route.path, &params), sub, "params {params:?}");
            }
        }
    }
});

/// `template` with its `{name}` and `{*name}` segments replaced by the parameters, which come
/// in the segments' order (a template may use one name twice).
fn fill(template: &str, params: &[(String, String)]) -> String {
    let mut next = params.iter();
    template
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(inner) => {
                    let key = inner.trim_start_matches('*');
                    let (name, value) = next
                        .next()
                        .unwrap_or_else(|| panic!("no parameter {key} in {params:?}"));
                    assert_eq!(name, key, "parameters out of order: {params:?}");
                    value.as_str()
                }
                None => segment,
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}
