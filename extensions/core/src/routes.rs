//! Routes: an extension's HTTP endpoints, mounted by the host under `/ext/<name>/`.
//!
//! Paths are relative to that prefix, start with `/`, and may hold `{name}` parameters and
//! one trailing `{*rest}`. Every route declares who may call it ([`Access`]); the default is
//! any authenticated user.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;
use crate::http::{Method, Request, Response};

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone, logged in or not.
    Public,
    /// Any logged-in user (the default).
    Authenticated,
    /// Administrators only.
    Admin,
    /// Users holding this permission (administrators hold all).
    Permission(String),
}

/// A handler's future, boxed.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response>> + Send>>;
/// A type-erased route handler.
pub type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

#[doc(hidden)]
/// One registered route.
#[derive(Clone)]
pub struct RouteDef {
    /// The HTTP method.
    pub method: Method,
    /// The path below `/ext/<name>`, e.g. `/items/{id}`.
    pub path: String,
    /// Who may call it.
    pub access: Access,
    /// The handler.
    pub handler: Handler,
}

impl std::fmt::Debug for RouteDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteDef")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// Collects an extension's routes; handlers receive the extension itself (`Arc<E>`) and the
/// request.
///
/// ```ignore
/// fn routes(&self, routes: &mut Routes<Self>) {
///     routes.get("/items/{id}", Notes::get_item);          // any logged-in user
///     routes.post("/items", Notes::create).permission("notes.write");
///     routes.get("/status", Notes::status).public();
/// }
/// ```
pub struct Routes<E> {
    ext: Arc<E>,
    defs: Vec<RouteDef>,
}

impl<E> std::fmt::Debug for Routes<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.defs).finish()
    }
}

/// Sets a just-registered route's access rule.
#[derive(Debug)]
pub struct RouteOptions<'a> {
    def: &'a mut RouteDef,
}

impl RouteOptions<'_> {
    /// Anyone may call it.
    pub fn public(self) -> Self {
        self.def.access = Access::Public;
        self
    }

    /// Administrators only.
    pub fn admin(self) -> Self {
        self.def.access = Access::Admin;
        self
    }

    /// Users holding `permission` (and administrators).
    pub fn permission(self, permission: &str) -> Self {
        self.def.access = Access::Permission(permission.to_owned());
        self
    }
}

impl<E: Send + Sync + 'static> Routes<E> {
    /// An empty set for `ext`.
    pub fn new(ext: Arc<E>) -> Self {
        Self {
            ext,
            defs: Vec::new(),
        }
    }

    /// Registers `handler` for `method` and `path`.
    pub fn route<F, Fut>(&mut self, method: Method, path: &str, handler: F) -> RouteOptions<'_>
    where
        F: Fn(Arc<E>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        let ext = self.ext.clone();
        let handler: Handler = Arc::new(move |req| Box::pin(handler(ext.clone(), req)));
        self.defs.push(RouteDef {
            method,
            path: path.to_owned(),
            access: Access::Authenticated,
            handler,
        });
        let def = self.defs.last_mut().expect("just pushed");
        RouteOptions { def }
    }

    /// `GET path`.
    pub fn get<F, Fut>(&mut self, path: &str, handler: F) -> RouteOptions<'_>
    where
        F: Fn(Arc<E>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        self.route(Method::GET, path, handler)
    }

    /// `POST path`.
    pub fn post<F, Fut>(&mut self, path: &str, handler: F) -> RouteOptions<'_>
    where
        F: Fn(Arc<E>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        self.route(Method::POST, path, handler)
    }

    /// `PUT path`.
    pub fn put<F, Fut>(&mut self, path: &str, handler: F) -> RouteOptions<'_>
    where
        F: Fn(Arc<E>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        self.route(Method::PUT, path, handler)
    }

    /// `PATCH path`.
    pub fn patch<F, Fut>(&mut self, path: &str, handler: F) -> RouteOptions<'_>
    where
        F: Fn(Arc<E>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        self.route(Method::PATCH, path, handler)
    }

    /// `DELETE path`.
    pub fn delete<F, Fut>(&mut self, path: &str, handler: F) -> RouteOptions<'_>
    where
        F: Fn(Arc<E>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        self.route(Method::DELETE, path, handler)
    }

    /// The registered routes.
    pub fn into_defs(self) -> Vec<RouteDef> {
        self.defs
    }
}

/// Checks a route path: starts with `/`; segments are literals (no `.`/`..`, no `%`, `\`,
/// `?`, `#`), `{name}` parameters, or one final `{*name}`.
pub fn check_path(path: &str) -> std::result::Result<(), String> {
    let fail = |why: &str| Err(format!("route path {path:?} {why}"));
    let Some(rest) = path.strip_prefix('/') else {
        return fail("must start with '/'");
    };
    if path.len() > 512 {
        return fail("is longer than 512 bytes");
    }
    if rest.is_empty() {
        return Ok(());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if segment.is_empty() {
            if last {
                return fail("must not end with '/'");
            }
            return fail("has an empty segment");
        }
        if let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let name = inner.strip_prefix('*').unwrap_or(inner);
            if inner.starts_with('*') && !last {
                return fail("may only end with a {*catch_all} segment");
            }
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return fail("has a parameter name other than letters, digits and '_'");
            }
            continue;
        }
        if matches!(*segment, "." | "..") {
            return fail("has a '.' or '..' segment");
        }
        if segment.contains(['{', '}', '%', '\\', '?', '#', ' ']) {
            return fail("has a segment with '{', '}', '%', '\\', '?', '#' or a space");
        }
    }
    Ok(())
}

#[doc(hidden)]
/// The routes of one extension, ready for lookup: method and path to handler and parameters.
/// Building it detects duplicate and ambiguous registrations.
pub struct RouteTable {
    router: matchit::Router<usize>,
    /// Per distinct path: its template and the routes registered on it.
    paths: Vec<(String, Vec<RouteDef>)>,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.paths.iter().map(|(p, defs)| (p, defs.len())))
            .finish()
    }
}

#[doc(hidden)]
/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A route matched.
    Found {
        /// The route.
        route: &'a RouteDef,
        /// Its `{name}` parameters, decoded.
        params: Vec<(String, String)>,
    },
    /// The path exists but not for this method; the methods that do exist.
    MethodNotAllowed(Vec<Method>),
    /// Nothing at this path.
    NotFound,
}

impl RouteTable {
    /// Builds the table; `owner` (the extension name) is used in error messages.
    pub fn build(owner: &str, defs: Vec<RouteDef>) -> std::result::Result<Self, String> {
        let mut router = matchit::Router::new();
        let mut paths: Vec<(String, Vec<RouteDef>)> = Vec::new();
        for def in defs {
            check_path(&def.path).map_err(|e| format!("extension {owner}: {e}"))?;
            if let Some((_, existing)) = paths.iter_mut().find(|(p, _)| *p == def.path) {
                if existing.iter().any(|d| d.method == def.method) {
                    return Err(format!(
                        "extension {owner} registers {} /ext/{owner}{} twice",
                        def.method, def.path
                    ));
                }
                existing.push(def);
                continue;
            }
            router.insert(def.path.clone(), paths.len()).map_err(|e| {
                format!(
                    "extension {owner}: route {} /ext/{owner}{} conflicts with another of its \
                     routes: {e}",
                    def.method, def.path
                )
            })?;
            paths.push((def.path.clone(), vec![def]));
        }
        Ok(Self { router, paths })
    }

    /// Finds the route for `method` and `path` (relative to `/ext/<name>`, percent-encoded).
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let path = if path.is_empty() { "/" } else { path };
        let Ok(found) = self.router.at(path) else {
            return Lookup::NotFound;
        };
        let (_, defs) = &self.paths[*found.value];
        let route = defs.iter().find(|d| d.method == method).or_else(|| {
            (method == Method::HEAD)
                .then(|| defs.iter().find(|d| d.method == Method::GET))
                .flatten()
        });
        match route {
            Some(route) => Lookup::Found {
                route,
                params: found
                    .params
                    .iter()
                    .map(|(k, v)| (k.to_owned(), percent_decode(v)))
                    .collect(),
            },
            None => Lookup::MethodNotAllowed(defs.iter().map(|d| d.method.clone()).collect()),
        }
    }

    /// Every route, as `(method, path, access rule)`, in registration order per path.
    pub fn entries(&self) -> impl Iterator<Item = (&Method, &str, &Access)> {
        self.paths
            .iter()
            .flat_map(|(p, defs)| defs.iter().map(move |d| (&d.method, p.as_str(), &d.access)))
    }

    /// Every route, as `(method, path)`.
    pub fn list(&self) -> Vec<(Method, String)> {
        self.paths
            .iter()
            .flat_map(|(p, defs)| defs.iter().map(move |d| (d.method.clone(), p.clone())))
            .collect()
    }
}

/// Lenient percent-decoding for parameter values (invalid escapes stay as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths() {
        for ok in [
            "/",
            "/items",
            "/items/{id}",
            "/files/{*rest}",
            "/a-b/c_d.json",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "items", "/items/", "//x", "/../x", "/a/./b", "/{}", "/{a b}", "/{*r}/x", "/a%2f",
            "/a?b", "/{x",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    fn def(method: Method, path: &str) -> RouteDef {
        RouteDef {
            method,
            path: path.to_owned(),
            access: Access::Public,
            handler: Arc::new(|_| Box::pin(async { Ok(Response::new(http::StatusCode::OK)) })),
        }
    }

    #[test]
    fn table_lookup_and_conflicts() {
        let table = RouteTable::build(
            "notes",
            vec![
                def(Method::GET, "/items/{id}"),
                def(Method::DELETE, "/items/{id}"),
                def(Method::GET, "/"),
            ],
        )
        .unwrap();
        match table.lookup(&Method::GET, "/items/a%20b") {
            Lookup::Found { params, .. } => {
                assert_eq!(params, [("id".to_owned(), "a b".to_owned())])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            table.lookup(&Method::HEAD, "/items/1"),
            Lookup::Found { .. }
        ));
        assert!(matches!(
            table.lookup(&Method::POST, "/items/1"),
            Lookup::MethodNotAllowed(_)
        ));
        assert!(matches!(
            table.lookup(&Method::GET, "/nope"),
            Lookup::NotFound
        ));
        assert!(matches!(
            table.lookup(&Method::GET, ""),
            Lookup::Found { .. }
        ));

        let dup = RouteTable::build(
            "notes",
            vec![def(Method::GET, "/a"), def(Method::GET, "/a")],
        );
        assert!(dup.unwrap_err().contains("GET /ext/notes/a twice"));
        let ambiguous = RouteTable::build(
            "notes",
            vec![def(Method::GET, "/{a}"), def(Method::GET, "/{b}")],
        );
        assert!(ambiguous.unwrap_err().contains("conflicts"));
    }
}
