//! The headers every answer of the host carries, whoever made it (a host route, an
//! extension's route, middleware or hook): `X-Content-Type-Options: nosniff` on all of them,
//! so no browser runs a body as something other than what it is declared to be; and on
//! documents a browser runs scripts in (HTML, XHTML, SVG) that name no policy of their own,
//! the admin dashboard's strict `Content-Security-Policy` and `X-Frame-Options: DENY`. An
//! answer that sets its own policy keeps it (stored downloads are sandboxed, for instance).
//! Applied by the outermost middleware ([`super::request_id_middleware`]), after every hook.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use solobase_sdk::http::DEFAULT_CONTENT_SECURITY_POLICY;

/// Adds the security headers to a response's `headers`.
pub(crate) fn apply(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if is_document(headers) && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CONTENT_SECURITY_POLICY),
        );
        if !headers.contains_key(header::X_FRAME_OPTIONS) {
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
    }
}

/// Whether the body is a document that can run scripts when a browser opens it.
fn is_document(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let media = value.as_bytes().split(|b| *b == b';').next().unwrap_or(b"");
    let media = media.trim_ascii();
    ["text/html", "application/xhtml+xml", "image/svg+xml"]
        .iter()
        .any(|d| media.eq_ignore_ascii_case(d.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(content_type: Option<&str>, own: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(t) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        for (name, value) in own {
            headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        apply(&mut headers);
        headers
    }

    fn get(headers: &HeaderMap, name: header::HeaderName) -> &str {
        headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    #[test]
    fn documents_without_a_policy_get_the_strict_one_and_every_answer_nosniff() {
        for document in [
            "text/html",
            "text/html; charset=utf-8",
            "TEXT/HTML;charset=UTF-8",
            " text/html ",
            "application/xhtml+xml",
            "image/svg+xml",
        ] {
            let h = answered(Some(document), &[]);
            assert_eq!(
                get(&h, header::CONTENT_SECURITY_POLICY),
                DEFAULT_CONTENT_SECURITY_POLICY,
                "{document}"
            );
            assert_eq!(get(&h, header::X_FRAME_OPTIONS), "DENY", "{document}");
            assert_eq!(
                get(&h, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff",
                "{document}"
            );
        }
        for other in [
            Some("application/json"),
            Some("text/javascript"),
            Some("text/plain"),
            Some("text/htmlx"),
            None,
        ] {
            let h = answered(other, &[]);
            assert!(
                !h.contains_key(header::CONTENT_SECURITY_POLICY),
                "{other:?}"
            );
            assert!(!h.contains_key(header::X_FRAME_OPTIONS), "{other:?}");
            assert_eq!(
                get(&h, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff",
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_policy_of_its_own_is_kept() {
        let h = answered(
            Some("text/html"),
            &[(
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'",
            )],
        );
        assert_eq!(
            get(&h, header::CONTENT_SECURITY_POLICY),
            "sandbox; default-src 'none'"
        );
        assert!(!h.contains_key(header::X_FRAME_OPTIONS));
        let h = answered(
            Some("text/html"),
            &[(header::X_FRAME_OPTIONS, "SAMEORIGIN")],
        );
        assert_eq!(get(&h, header::X_FRAME_OPTIONS), "SAMEORIGIN");
        assert_eq!(
            get(&h, header::CONTENT_SECURITY_POLICY),
            DEFAULT_CONTENT_SECURITY_POLICY
        );
    }
}
