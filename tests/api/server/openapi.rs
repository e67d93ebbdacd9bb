//! `GET /api/v1/openapi.json`: a valid OpenAPI 3 document that lists exactly the routes the
//! server mounted (and the extensions' declared routes), whose operations the server answers,
//! whose security marks match who is refused, and whose error schema fits real errors.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

/// What the server answers for a path no route matches (the default service, and an
/// extension's dispatcher for a path its table lacks).
const UNROUTED: &str = "no such route";

async fn document(app: &TestApp) -> Value {
    let res = app.get("/api/v1/openapi.json").await;
    assert_eq!(res.status(), StatusCode::OK, "the document is public");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    res.json().await.expect("the document is JSON")
}

/// Every `(METHOD, path)` the document holds.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if Method::from_bytes(method.to_uppercase().as_bytes()).is_ok()
                && !matches!(method.as_str(), "parameters" | "servers" | "summary")
            {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn operation<'d>(doc: &'d Value, method: &str, path: &str) -> &'d Value {
    &doc["paths"][path][method.to_lowercase()]
}

/// Fails naming each entry of `a` missing from `b`.
fn all_in(a: &BTreeSet<(String, String)>, b: &BTreeSet<(String, String)>, what: &str) {
    let missing: Vec<String> = a.difference(b).map(|(m, p)| format!("{m} {p}")).collect();
    assert!(missing.is_empty(), "{what}: {}", missing.join(", "));
}

fn params(path: &str) -> Vec<&str> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect()
}

/// Every `$ref` in `value`, with where it is.
fn refs<'v>(value: &'v Value, at: String, out: &mut Vec<(String, &'v str)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push((at.clone(), v.as_str().expect("a $ref is a string")));
                } else {
                    refs(v, format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                refs(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_valid_openapi_3() {
    let app = spawn_app().await;
    let doc = document(&app).await;

    let version = doc["openapi"].as_str().expect("an openapi field");
    assert!(version.starts_with("3."), "openapi {version}");
    // The OpenAPI Initiative's JSON Schema of OpenAPI 3.1 documents
    // (https://spec.openapis.org/oas/3.1/schema/2022-10-07, Apache-2.0).
    let spec: Value = serde_json::from_str(include_str!("../openapi-3.1-schema.json")).unwrap();
    let spec = jsonschema::validator_for(&spec).expect("the OpenAPI 3.1 schema compiles");
    let errors: Vec<String> = spec
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not valid OpenAPI 3.1: {errors:#?}");
    // It does tell invalid documents apart.
    let mut broken = doc.clone();
    broken["paths"]["/healthz"]["get"]["responses"] = serde_json::json!("none");
    assert!(!spec.is_valid(&broken));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("/ext/<name>/")
    );

    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    assert!(!found.is_empty());
    for (at, target) in &found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {target} is not local"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: $ref {target} does not resolve"
        );
    }

    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let mut ids = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let op = operation(&doc, &method, &path);
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );
        // Each path parameter is declared, and each declared one is in the path.
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let in_path: BTreeSet<&str> = params(&path).into_iter().collect();
        assert_eq!(declared, in_path, "{method} {path}: path parameters");
        for requirement in op["security"].as_array().into_iter().flatten() {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(schemes.contains_key(scheme), "{method} {path}: {scheme}");
            }
        }
    }
    // The document documents itself.
    assert!(ids.contains("openapi"));
}

/// `(METHOD, path)` of every route the compiled-in extensions declare, as the extension list
/// reports them.
async fn extension_routes(app: &TestApp, admin: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for ext in app.extensions(admin).await {
        for route in ext["routes"].as_array().into_iter().flatten() {
            let (method, path) = route.as_str().unwrap().split_once(' ').unwrap();
            out.insert((method.to_owned(), path.replace("{*", "{")));
        }
    }
    out
}

#[tokio::test]
async fn every_mounted_route_is_documented_and_every_documented_one_is_mounted() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;
    let doc = document(&app).await;
    let documented = operations(&doc);
    let (ext_documented, host_documented): (BTreeSet<_>, BTreeSet<_>) = documented
        .into_iter()
        .partition(|(_, path)| path.starts_with("/ext/"));

    let mounted: BTreeSet<(String, String)> = app.routes.iter().cloned().collect();
    assert_eq!(mounted.len(), app.routes.len(), "a route is mounted twice");
    assert!(mounted.contains(&("GET".into(), "/api/v1/openapi.json".into())));
    all_in(&mounted, &host_documented, "mounted but not documented");
    all_in(&host_documented, &mounted, "documented but not mounted");

    let declared = extension_routes(&app, &admin).await;
    if cfg!(feature = "webhooks") {
        assert!(
            !declared.is_empty(),
            "the compiled-in extensions declare routes"
        );
    }
    all_in(
        &declared,
        &ext_documented,
        "an extension's route is not documented",
    );
    all_in(
        &ext_documented,
        &declared,
        "documented but no extension declares it",
    );
}

/// A request to `path` with `method`, as `token` when given. Parameters are filled in with
/// values that reach the handler's work where that is harmless (a stored object, the user
/// role, a compiled-in extension), and `x` elsewhere.
async fn send(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let extension = if cfg!(feature = "webhooks") {
        "webhooks"
    } else {
        "x"
    };
    let url = path
        .replace("{bucket}", "openapi")
        .replace("{path}", "check/file.txt")
        .replace("{role}", "user")
        .replace("{permission}", "openapi.check");
    let url = if url.starts_with("/api/v1/extensions/") {
        url.replace("{name}", extension)
    } else {
        url
    };
    let url = params(&url)
        .into_iter()
        .fold(url.clone(), |u, p| u.replace(&format!("{{{p}}}"), "x"));
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.http.request(method, app.url(&url));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

/// Checks a JSON answer against the schema the document gives for its status, if any.
fn fits_documented_schema(doc: &Value, op: &Value, status: u16, body: &str, what: &str) -> bool {
    let documented = &op["responses"][status.to_string()];
    assert!(
        documented.is_object() || op["responses"]["default"].is_object(),
        "{what}: status {status} is not documented"
    );
    let Some(schema) = documented["content"]["application/json"]["schema"].as_object() else {
        return false;
    };
    // The schema with the document's components beside it, so that its $refs resolve.
    let mut schema = Value::Object(schema.clone());
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&schema).expect("a documented schema compiles");
    let body: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: documented as JSON, answered {body:?}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {body} does not fit {schema}: {errors:?}"
    );
    true
}

#[tokio::test]
async fn every_documented_operation_is_served_as_documented() {
    let app = spawn_app().await;
    let mut admin = app.user_token("admin@example.com", true).await;
    let user = app.user_token("user@example.com", false).await;
    let doc = document(&app).await;
    // HEAD and GET of the storage route need an object; deletes run last.
    let stored = app
        .put_object(&admin, "openapi/check/file.txt", "hello", "text/plain")
        .await;
    assert_eq!(stored.status(), StatusCode::CREATED);
    let mut all: Vec<_> = operations(&doc).into_iter().collect();
    all.sort_by_key(|(m, _)| m == "DELETE");

    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut checked = BTreeSet::new();
    for (method, path) in &all {
        by_path
            .entry(path.clone())
            .or_default()
            .insert(method.clone());
        let op = operation(&doc, method, path);
        let roles: Option<Vec<&str>> = op["security"].as_array().map(|list| {
            list.iter()
                .flat_map(|r| r["bearer"].as_array().into_iter().flatten())
                .map(|r| r.as_str().unwrap())
                .collect()
        });

        // `{}` among the requirements: a token is optional (e.g. reading a public bucket).
        let optional = op["security"].as_array().is_some_and(|list| {
            list.iter()
                .any(|r| r.as_object().is_some_and(|r| r.is_empty()))
        });

        // Who is refused is what the document says.
        match &roles {
            None => {
                let (status, body) = send(&app, method, path, None).await;
                assert_ne!(status, 401, "{method} {path} is documented public: {body}");
            }
            Some(roles) if optional => {
                assert!(roles.is_empty(), "{method} {path}: optional, for {roles:?}");
                let (status, body) = send(&app, method, path, None).await;
                assert_ne!(
                    status, 401,
                    "{method} {path} documents no token as enough: {body}"
                );
                let (status, body) = send(&app, method, path, Some("not-a-token")).await;
                assert_eq!(status, 401, "{method} {path} refuses a bad token: {body}");
            }
            Some(roles) => {
                let (status, body) = send(&app, method, path, None).await;
                assert_eq!(status, 401, "{method} {path} needs a token: {body}");
                if !roles.is_empty() {
                    let (status, body) = send(&app, method, path, Some(&user)).await;
                    assert_eq!(status, 403, "{method} {path} is for {roles:?}: {body}");
                }
            }
        }

        // An administrator reaches the operation: not the answer for an unrouted path.
        let (status, body) = send(&app, method, path, Some(&admin)).await;
        if path == "/api/v1/auth/logout" && status == 204 {
            // That ended the administrator's token: log in again for the rest.
            let res = app.login("admin@example.com", "password123").await;
            admin = res.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        if method == "HEAD" {
            assert_eq!(status, 200, "HEAD {path}");
            continue;
        }
        assert!(
            !(status == 404 && body.contains(UNROUTED)) && status != 405,
            "{method} {path} is documented but answers {status} {body}"
        );
        // What it answered is what the document says it answers.
        if !path.starts_with("/ext/")
            && fits_documented_schema(&doc, op, status, &body, &format!("{method} {path}"))
            && (200..300).contains(&status)
        {
            checked.insert(format!("{method} {path}"));
        }
    }

    // Successful answers were checked against their schemas, typed ones among them.
    for op in [
        "GET /api/v1/auth/me",
        "GET /api/v1/audit",
        "GET /api/v1/users",
        "GET /api/v1/roles/{role}/permissions",
        "PUT /api/v1/roles/{role}/permissions/{permission}",
        "DELETE /api/v1/roles/{role}/permissions/{permission}",
        "PUT /api/v1/storage/{bucket}/{path}",
        "GET /api/v1/buckets",
        "GET /api/v1/buckets/{bucket}",
    ] {
        assert!(checked.contains(op), "{op} was not checked: {checked:?}");
    }
    if cfg!(feature = "webhooks") {
        assert!(checked.contains("GET /api/v1/extensions/{name}/config"));
        assert!(checked.contains("POST /api/v1/extensions/{name}/disable"));
    }

    // A method the document does not give a path is refused there.
    for (path, methods) in &by_path {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if methods.contains(method) {
                continue;
            }
            let (status, body) = send(&app, method, path, Some(&admin)).await;
            assert!(
                status == 404 || status == 405,
                "{method} {path} is not documented but answers {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn real_errors_fit_the_documented_error_schema() {
    let app = spawn_app().await;
    let user = app.user_token("user@example.com", false).await;
    let doc = document(&app).await;
    let schema = &doc["components"]["schemas"]["Error"];
    let validator = jsonschema::validator_for(schema).expect("the Error schema compiles");
    // Error responses of host operations refer to it.
    let login = operation(&doc, "POST", "/api/v1/auth/login");
    assert_eq!(
        login["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );

    let bad_json = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    let answers = [
        app.get("/api/v1/auth/me").await,
        app.get("/api/v1/nothing-here").await,
        app.http
            .patch(app.url("/api/v1/auth/me"))
            .send()
            .await
            .unwrap(),
        bad_json,
        app.http
            .get(app.url("/api/v1/extensions"))
            .bearer_auth(&user)
            .send()
            .await
            .unwrap(),
    ];
    let mut statuses = Vec::new();
    for res in answers {
        statuses.push(res.status().as_u16());
        let body: Value = res.json().await.unwrap();
        assert!(validator.is_valid(&body), "{body} does not fit {schema}");
        let code = body["error"]["code"].as_str().unwrap();
        assert!(
            schema.to_string().contains(&format!("`{code}`")),
            "the schema lists the code {code}"
        );
    }
    assert_eq!(statuses, [401, 404, 405, 400, 403]);
    assert!(!validator.is_valid(&serde_json::json!({"error": {"code": "x"}})));
}
