//! `/admin`: the administrators' dashboard, a small single-page app (plain HTML, CSS and
//! JavaScript modules in `src/http/dashboard/`) compiled into the binary — no CDN, no build step. The page
//! itself is public; everything it shows comes from the admin API with the token it keeps in
//! the browser's `sessionStorage`, so the API's own checks decide who sees what.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and requests from
//! this origin only, no inline code, no framing). The files are not fingerprinted, so browsers
//! revalidate them (`Cache-Control: no-cache`) with an `ETag` derived from their content: a
//! new binary's files are picked up at once, an unchanged file costs a 304.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

/// What the browser may load and run on these pages: only files from this origin, no inline
/// script or style, no plugins, no framing, forms posting nowhere else. The same policy is
/// the default of every HTML page an extension serves.
pub(crate) const CONTENT_SECURITY_POLICY: &str =
    solobase_sdk::http::DEFAULT_CONTENT_SECURITY_POLICY;

/// One embedded file.
struct Asset {
    /// Where it is served.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    path: "/admin/",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("index.html"),
};

/// A JavaScript module under `/admin/`.
macro_rules! script {
    ($file:literal) => {
        Asset {
            path: concat!("/admin/", $file),
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!($file),
        }
    };
}

const ASSETS: [Asset; 11] = [
    INDEX,
    script!("app.js"),
    script!("api.js"),
    script!("dom.js"),
    script!("extensions.js"),
    script!("config.js"),
    script!("audit.js"),
    script!("users.js"),
    script!("setup.js"),
    Asset {
        path: "/admin/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("app.css"),
    },
    Asset {
        path: "/admin/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("favicon.svg"),
    },
];

/// The quoted entity tag of each of [`ASSETS`], in order: a digest of its bytes.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// Mounts the dashboard: `/admin` and `/admin/` (the page) and its files. They are not API
/// routes, so they are mounted here rather than through [`super::routes::Api`] and stay out
/// of the OpenAPI document.
#[allow(clippy::disallowed_methods)]
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    // A person opening the server's address lands on the dashboard.
    cfg.service(
        web::resource("/")
            .route(web::get().to(to_dashboard))
            .route(web::head().to(to_dashboard)),
    );
    cfg.service(
        web::resource(["/admin", "/admin/"])
            .route(web::get().to(page))
            .route(web::head().to(page)),
    );
    for (index, asset) in ASSETS.iter().enumerate().skip(1) {
        cfg.service(
            web::resource(asset.path)
                .route(web::get().to(move |req: HttpRequest| serve(req, index)))
                .route(web::head().to(move |req: HttpRequest| serve(req, index))),
        );
    }
}

async fn to_dashboard() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/admin/"))
        .finish()
}

async fn page(req: HttpRequest) -> HttpResponse {
    serve(req, 0).await
}

/// Answers with asset `index`, or 304 when the client's copy is current.
async fn serve(req: HttpRequest, index: usize) -> HttpResponse {
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if fresh {
        return res.finish();
    }
    res.content_type(asset.content_type).body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(asset: &Asset) -> &str {
        std::str::from_utf8(asset.body).unwrap()
    }

    fn scripts() -> impl Iterator<Item = &'static Asset> {
        ASSETS.iter().filter(|a| a.path.ends_with(".js"))
    }

    #[test]
    fn every_file_is_used_and_every_file_used_is_served() {
        let page = text(&INDEX);
        // What the page names, and what the modules import (`from './x.js'`).
        let mut used: Vec<String> = ASSETS[1..]
            .iter()
            .filter(|a| page.contains(a.path))
            .map(|a| a.path.to_owned())
            .collect();
        for script in scripts() {
            for import in text(script).split("from './").skip(1) {
                let file = import.split('\'').next().unwrap();
                let path = format!("/admin/{file}");
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "{} imports {path}, which is not served",
                    script.path
                );
                used.push(path);
            }
        }
        for asset in &ASSETS[1..] {
            assert!(
                used.contains(&asset.path.to_owned()),
                "{} is unused",
                asset.path
            );
        }
        // No inline script or style: the policy would block it.
        assert!(!page.contains("<script>") && !page.contains("<style") && !page.contains("style="));
        assert_eq!(ETAGS.len(), ASSETS.len());
    }

    #[test]
    fn the_scripts_never_parse_data_as_markup_nor_load_from_elsewhere() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "http://",
            "https://",
        ] {
            for script in scripts() {
                assert!(!text(script).contains(sink), "{} uses {sink}", script.path);
            }
        }
    }
}
