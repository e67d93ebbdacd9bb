//! The host API's one route table, [`Api`]: every host route is added here as a handler and
//! its `#[utoipa::path]` declaration, and both what is mounted and what the OpenAPI document
//! (`GET /api/v1/openapi.json`) says are derived from that one declaration — its method(s)
//! and path route the request and document the operation, so the two cannot disagree.
//!
//! Adding a route is one step: annotate the handler with `#[utoipa::path(…)]` and add
//! `api.add(__path_handler, handler)` to its module's `routes` function. Nothing else mounts
//! host routes: `clippy.toml` forbids actix's own registration methods outside this file.

// The one place allowed to register routes with actix.
#![allow(clippy::disallowed_methods)]

use std::sync::{Arc, OnceLock};

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, web};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{HttpMethod, Operation, Paths};
use utoipa::openapi::schema::Schema;

use crate::runtime::host::ExtensionHost;

/// Builds one `actix_web::Route` (method guard and handler) for a worker's app.
type MakeRoute = Arc<dyn Fn() -> actix_web::Route + Send + Sync>;

/// One mounted operation.
struct Entry {
    method: Method,
    /// As documented: `/api/v1/storage/{bucket}/{path}`.
    path: String,
    /// As routed by actix: the documented path, or one with regex segments that reduces to it.
    pattern: String,
    make: MakeRoute,
}

/// One `#[utoipa::path]` declaration, read when the document is first asked for.
struct Declared {
    path: String,
    methods: Vec<HttpMethod>,
    operation: fn() -> Operation,
    tags: fn() -> Vec<&'static str>,
    schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
}

/// The host's routes and their documentation, built once per server and mounted by every
/// worker (see [`Api::mount`]).
pub struct Api {
    entries: Vec<Entry>,
    declared: Vec<Declared>,
    /// Whose extensions' routes the document lists.
    host: Arc<ExtensionHost>,
    /// The served document, built and serialized at the first request for it.
    document: OnceLock<web::Bytes>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes()).finish()
    }
}

impl Api {
    /// Every host route (see [`super::routes()`]); the document also lists the routes each of
    /// `host`'s extensions declares under `/ext/<name>/`.
    pub(crate) fn build(host: Arc<ExtensionHost>) -> Self {
        let mut api = Self {
            entries: Vec::new(),
            declared: Vec::new(),
            host,
            document: OnceLock::new(),
        };
        super::routes(&mut api);
        api
    }

    /// Mounts `handler` at the method(s) and path its `#[utoipa::path]` declares (`doc` is
    /// the `__path_<handler>` value that attribute generates), and documents it.
    pub(crate) fn add<D, F, Args>(&mut self, doc: D, handler: F) -> &mut Self
    where
        D: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        F: Handler<Args> + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add_as(&D::path(), doc, handler)
    }

    /// Like [`Api::add`], for a route whose actix pattern has regex segments (`{path:.+}`):
    /// `pattern` without them must be the documented path.
    pub(crate) fn add_as<D, F, Args>(&mut self, pattern: &str, _doc: D, handler: F) -> &mut Self
    where
        D: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        F: Handler<Args> + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let path = D::path();
        assert_eq!(
            documented_path(pattern),
            path,
            "the route pattern {pattern} does not match the documented path {path}"
        );
        // A handler added with another handler's declaration would be documented wrongly.
        debug_assert_eq!(
            std::any::type_name::<D>().replace("::__path_", "::"),
            std::any::type_name::<F>(),
            "add a handler with its own #[utoipa::path] declaration (__path_<handler>)"
        );
        let methods = D::methods();
        for doc_method in &methods {
            let method = actix_method(doc_method);
            assert!(
                !self
                    .entries
                    .iter()
                    .any(|e| e.method == method && e.path == path),
                "{method} {path} is added twice"
            );
            let route_method = method.clone();
            let handler = handler.clone();
            self.entries.push(Entry {
                method,
                path: path.clone(),
                pattern: pattern.to_owned(),
                make: Arc::new(move || web::method(route_method.clone()).to(handler.clone())),
            });
        }
        self.declared.push(Declared {
            path,
            methods,
            operation: D::operation,
            tags: <D as utoipa::__dev::Tags<'static>>::tags,
            schemas: <D as utoipa::__dev::SchemaReferences>::schemas,
        });
        self
    }

    /// The served document, serialized (built at the first call).
    pub(crate) fn document(&self) -> &web::Bytes {
        self.document.get_or_init(|| {
            let document = super::openapi::document(self.paths(), self.schemas(), &self.host);
            serde_json::to_vec(&document)
                .expect("an OpenAPI document serializes")
                .into()
        })
    }

    /// The operations of every declaration.
    fn paths(&self) -> Paths {
        let mut paths = Paths::new();
        for declared in &self.declared {
            let mut operation = (declared.operation)();
            let tags = (declared.tags)();
            if !tags.is_empty() {
                operation
                    .tags
                    .get_or_insert_with(Vec::new)
                    .extend(tags.into_iter().map(str::to_owned));
            }
            super::openapi::complete(&mut operation);
            for (i, method) in declared.methods.iter().enumerate() {
                // Operation ids are unique: the second method of one declaration gets its own.
                let mut operation = operation.clone();
                if i > 0
                    && let Some(id) = operation.operation_id.as_mut()
                {
                    id.push('_');
                    id.push_str(&actix_method(method).as_str().to_lowercase());
                }
                paths.add_path_operation(&declared.path, vec![method.clone()], operation);
            }
        }
        paths
    }

    /// The schemas the declarations refer to.
    fn schemas(&self) -> Vec<(String, RefOr<Schema>)> {
        let mut schemas = Vec::new();
        for declared in &self.declared {
            (declared.schemas)(&mut schemas);
        }
        schemas
    }

    /// Mounts every route on a worker's app: one resource per path, answering 405 to a method
    /// it does not document, and the extensions' `/ext/…` dispatch.
    pub(crate) fn mount(self: &Arc<Self>, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::from(self.clone()));
        // Extensions' routes change with the extensions, so the host sends every method and
        // path under /ext to the dispatcher, which looks the route up in the extension's
        // table (the document lists those tables). Mounted first, as a static prefix: the
        // router finds it with one comparison, before trying any host route's pattern.
        cfg.service(
            web::scope("/ext").default_service(web::to(crate::http::ext::dispatch::dispatch)),
        );
        let mut by_pattern: Vec<(&str, Vec<&Entry>)> = Vec::new();
        for entry in &self.entries {
            match by_pattern.iter_mut().find(|(p, _)| *p == entry.pattern) {
                Some((_, list)) => list.push(entry),
                None => by_pattern.push((&entry.pattern, vec![entry])),
            }
        }
        for (pattern, entries) in by_pattern {
            let resource = entries
                .into_iter()
                .fold(web::resource(pattern), |resource, entry| {
                    resource.route((entry.make)())
                })
                .default_service(web::to(super::method_not_allowed));
            cfg.service(resource);
        }
    }

    /// Every mounted host operation as `(method, documented path)`, in mounting order.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|e| (e.method.to_string(), e.path.clone()))
            .collect()
    }
}

/// `/a/{b:.+}/c` → `/a/{b}/c`.
fn documented_path(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut in_param = false;
    let mut skipping = false;
    for c in pattern.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push(c);
            }
            '}' if in_param => {
                in_param = false;
                skipping = false;
                out.push(c);
            }
            ':' if in_param => skipping = true,
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

#[cfg(test)]
mod tests {
    use super::documented_path;

    #[test]
    fn regex_segments_reduce_to_parameters() {
        assert_eq!(
            documented_path("/api/v1/storage/{bucket}/{path:.+}"),
            "/api/v1/storage/{bucket}/{path}"
        );
        assert_eq!(documented_path("/healthz"), "/healthz");
        assert_eq!(
            documented_path("/ext/{name}/{tail:.*}"),
            "/ext/{name}/{tail}"
        );
    }
}
