//! The OpenAPI 3 document of the HTTP API, served publicly at `GET /api/v1/openapi.json`.
//!
//! Its operations come from the handlers' `#[utoipa::path]` declarations as the route table
//! ([`super::routes::Api`]) mounts them; this module adds what is common to all of them — the
//! bearer security scheme, the one error schema and the error responses every operation can
//! give — and the routes each loaded extension declares under `/ext/<name>/`.

use actix_web::{HttpResponse, web};
use solobase_sdk::routes::Access;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required,
    ResponseBuilder, Tag,
};

use super::routes::Api;
use crate::error::ErrorSchema;
use crate::runtime::host::{ExtensionHost, Loaded};

/// The name of the security scheme in `components.securitySchemes`.
pub(crate) const BEARER: &str = "bearer";
/// The scope (OpenAPI 3.1: a role for a non-OAuth scheme) of administrator-only operations.
pub(crate) const ADMIN: &str = "admin";

const DESCRIPTION: &str = "\
Solobase's HTTP API: accounts and tokens, file storage, the extension admin API, the audit \
log, health and metrics.

Authenticate with `Authorization: Bearer <token>`, the token from `POST /api/v1/auth/login`. \
Operations whose `bearer` requirement lists the role `admin` are for administrators only; \
anyone else gets 403 `forbidden`.

Every error has one shape, the `Error` schema: `{\"error\":{\"code\":\"…\",\"message\":\"…\"}}`; \
codes are stable.

Extensions add their own routes under `/ext/<name>/`; the server routes every path there to \
the extension named in it. The routes each compiled-in extension declared when this server \
started are listed below (tagged `extension <name>`); their bodies are the extension's own, \
so they are documented by the extension. A `{rest}` parameter of an extension's route is the \
rest of the path and may contain `/`.";

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "documentation",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3 document of this server's API", body = serde_json::Value))
)]
pub(crate) async fn openapi(api: web::Data<Api>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(api.document().clone())
}

/// The whole document: the host's `paths` and the `schemas` they reference, the common
/// components, and the routes of `host`'s extensions.
pub(super) fn document(
    mut paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
    host: &ExtensionHost,
) -> OpenApi {
    let mut tags = vec![
        tag(
            "health",
            "Liveness and readiness, for load balancers and orchestrators",
        ),
        tag("auth", "Accounts and bearer tokens"),
        tag("storage", "Files in buckets"),
        tag(
            "extensions",
            "The extension admin API: listing, enabling, permissions, configuration",
        ),
        tag("roles", "Named permissions of the user role"),
        tag("audit", "The append-only audit log"),
        tag("metrics", "Prometheus metrics"),
        tag("documentation", "This document"),
    ];
    for l in host.all() {
        extension_paths(&mut paths, &mut tags, l);
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("opaque")
                    .description(Some(
                        "An opaque token (`sb_…`) from POST /api/v1/auth/login or /signup, \
                         valid for auth.token_ttl_secs",
                    ))
                    .build(),
            ),
        )
        .schema_from::<ErrorSchema>()
        .build();
    components.schemas.extend(schemas);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Solobase")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .tags(Some(tags))
        .build()
}

fn tag(name: &str, description: &str) -> Tag {
    TagBuilder::new()
        .name(name)
        .description(Some(description))
        .build()
}

/// An error response in the common shape.
fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("Error"))),
        )
        .build()
        .into()
}

/// The roles (permissions, or `admin`) a security requirement names.
fn roles(requirement: &SecurityRequirement) -> Vec<String> {
    serde_json::to_value(requirement)
        .ok()
        .and_then(|v| v.get(BEARER).cloned())
        .and_then(|roles| serde_json::from_value(roles).ok())
        .unwrap_or_default()
}

/// Adds what every operation shares: 401 where a token is required, 403 where a role is
/// (`admin`, or a permission), and `default` (any other error), each in the common error shape.
pub(super) fn complete(operation: &mut utoipa::openapi::path::Operation) {
    let security = operation.security.clone().unwrap_or_default();
    let roles: Vec<String> = security.iter().flat_map(roles).collect();
    let admin_only = roles.iter().any(|r| r == ADMIN);
    let responses = &mut operation.responses.responses;
    if !security.is_empty() {
        responses.entry("401".into()).or_insert_with(|| {
            error_response("No valid bearer token (`unauthenticated`, `invalid_token`)")
        });
    }
    if !roles.is_empty() {
        responses.entry("403".into()).or_insert_with(|| {
            error_response(if admin_only {
                "The caller is not an administrator (`forbidden`)"
            } else {
                "The caller lacks the permission (`forbidden`)"
            })
        });
    }
    if admin_only {
        let note = "Administrators only.";
        operation.description = Some(match operation.description.take() {
            Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
            _ => note.to_owned(),
        });
    }
    responses.entry("default".into()).or_insert_with(|| {
        error_response("Any other error, e.g. 500 `internal` or 503 `unavailable`")
    });
}

/// The routes extension `l` declared, as operations on `/ext/<name>/…`.
fn extension_paths(paths: &mut Paths, tags: &mut Vec<Tag>, l: &Loaded) {
    let Some(table) = l.routes.as_ref() else {
        return;
    };
    let name = l.name.as_str();
    let tag_name = format!("extension {name}");
    let about = l
        .manifest
        .as_ref()
        .map(|m| format!("{} (version {})", m.description, m.version))
        .unwrap_or_default();
    tags.push(tag(
        &tag_name,
        &format!("Routes of the extension {name}. {about}"),
    ));
    for (method, path, access) in table.entries() {
        let Some(http_method) = doc_method(method) else {
            continue;
        };
        let documented = documented_extension_path(name, path);
        let (who, security) = match access {
            Access::Public => ("anyone".to_owned(), None),
            Access::Authenticated => (
                "any authenticated user".to_owned(),
                Some(SecurityRequirement::new(BEARER, Vec::<String>::new())),
            ),
            Access::Admin => (
                "administrators".to_owned(),
                Some(SecurityRequirement::new(BEARER, [ADMIN])),
            ),
            Access::Permission(p) => (
                format!("users holding the permission `{p}` (and administrators)"),
                Some(SecurityRequirement::new(BEARER, [p.as_str()])),
            ),
        };
        let mut operation = OperationBuilder::new()
            .tag(&tag_name)
            .operation_id(Some(format!(
                "ext_{name}_{}_{}",
                method.as_str().to_lowercase(),
                operation_suffix(path)
            )))
            .summary(Some(format!("{method} {path} of the extension {name}")))
            .description(Some(format!(
                "Declared by the extension {name}; callable by {who}. Its request and \
                 response bodies are the extension's own."
            )))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The extension's answer")
                    .build(),
            )
            .response(
                "404",
                error_response("The extension is disabled or not running (`not_found`)"),
            )
            .response(
                "429",
                error_response("Over the extension's rate limit (`rate_limited`); see Retry-After"),
            )
            .response(
                "503",
                error_response(
                    "The extension is paused, busy or over its CPU budget \
                     (`extension_unavailable`, `extension_busy`, `over_budget`)",
                ),
            )
            .securities(security.map(|s| vec![s]));
        for param in path_params(&documented) {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(param)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        let mut operation = operation.build();
        complete(&mut operation);
        paths.add_path_operation(&documented, vec![http_method], operation);
    }
}

/// `/items/{*rest}` of `notes` → `/ext/notes/items/{rest}`.
fn documented_extension_path(name: &str, path: &str) -> String {
    format!("/ext/{name}{}", path.replace("{*", "{"))
}

/// `/items/{id}` → `items_id`, for unique operation ids.
fn operation_suffix(path: &str) -> String {
    let s: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let s = s.trim_matches('_');
    if s.is_empty() {
        "root".to_owned()
    } else {
        s.to_owned()
    }
}

/// The `{name}` parameters of a path template.
pub(crate) fn path_params(path: &str) -> Vec<&str> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect()
}

fn doc_method(method: &solobase_sdk::http::Method) -> Option<HttpMethod> {
    use solobase_sdk::http::Method;
    Some(match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        Method::TRACE => HttpMethod::Trace,
        _ => return None,
    })
}

/// Raw bytes of any media type, as a schema (`type: string, format: binary`).
#[derive(Debug)]
pub(crate) struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}
