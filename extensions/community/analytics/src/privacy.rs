//! What makes the analytics private: the visitor id is SipHash-2-4, keyed with a daily salt,
//! of the site, the client address and the user agent — the address itself is never stored and
//! the salt is replaced every day, so the same person cannot be linked across days; URLs lose
//! their query string (all but `utm_*` and `ref`) and fragment; Do-Not-Track is honoured.

use std::hash::Hasher;

use solobase_sdk::http::RequestHead;

/// A salt: 32 random bytes, one per UTC day.
pub type Salt = [u8; 32];

/// A new random salt.
pub fn new_salt() -> Salt {
    let mut salt = [0; 32];
    // The operating system's generator does not fail on Linux once booted; a zero salt
    // would still never leave the extension's schema.
    if let Err(e) = getrandom::fill(&mut salt) {
        solobase_sdk::tracing::error!(error = %e, "no random salt: the OS generator failed");
    }
    salt
}

/// The visitor id: SipHash-2-4 keyed with the salt's first 16 bytes, of site ‖ address ‖
/// user agent with a zero byte between the parts so that they cannot run into each other
/// (none holds one). SipHash is a pseudo-random function: without the key, which never
/// leaves the extension's schema and is replaced daily, an id cannot be traced back to an
/// address — and it costs a tenth of a SHA-256 on these short inputs.
pub fn visitor_id(salt: &Salt, site: &str, address: &[u8], ua: &[u8]) -> i64 {
    let mut key = [0; 16];
    key.copy_from_slice(&salt[..16]);
    let mut hash = siphasher::sip::SipHasher24::new_with_key(&key);
    hash.write(site.as_bytes());
    hash.write(&[0]);
    hash.write(address);
    hash.write(&[0]);
    hash.write(ua);
    hash.finish() as i64
}

/// The client's address as text, in a fixed buffer (the hook must not allocate for it): the
/// the address the server resolved (`RequestHead::peer_addr`).
#[derive(Clone, Copy)]
pub struct Address {
    len: u8,
    bytes: [u8; 46],
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never printed: it is personal data.
        f.write_str("Address(…)")
    }
}

impl Address {
    /// The address of `req`'s client, as the server resolved it (behind a trusted proxy,
    /// the client the proxy reported; `[server] trusted_proxies`).
    pub fn of(req: &RequestHead) -> Self {
        let mut out = Self {
            len: 0,
            bytes: [0; 46],
        };
        if let Some(ip) = req.peer_addr {
            use std::io::Write as _;
            let mut cursor = &mut out.bytes[..];
            // An IPv6 address is at most 45 characters: it fits.
            let _ = write!(cursor, "{ip}");
            out.len = (46 - cursor.len()) as u8;
        }
        out
    }

    /// The address's text, as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Whether the request asks not to be tracked (`DNT: 1` or `Sec-GPC: 1`).
pub fn do_not_track(req: &RequestHead) -> bool {
    req.header("dnt") == Some("1") || req.header("sec-gpc") == Some("1")
}

/// A URL split for storage: its host, path and the kept part of its query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The host (lower-case, without port), empty for a relative URL.
    pub host: String,
    /// The path, `/` when empty; never a query or fragment.
    pub path: String,
    /// Only the `utm_*` and `ref` parameters, in their order, as sent (`a=b&c=d`).
    pub query: String,
}

/// Splits `url` (absolute `http(s)://host/path?query#fragment`, or a path) into a
/// [`Location`]; `None` for anything else (another scheme, spaces, control characters).
pub fn parse_url(url: &str) -> Option<Location> {
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    let (host, rest) = if let Some(after) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let authority = &after[..end];
        // Drop credentials and port.
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => host.split(':').next().unwrap_or(host),
        };
        if host.is_empty() {
            return None;
        }
        (host.to_ascii_lowercase(), &after[end..])
    } else if url.starts_with('/') && !url.starts_with("//") {
        (String::new(), url)
    } else {
        return None;
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Some(Location {
        host,
        path: if path.is_empty() { "/" } else { path }.to_owned(),
        query: kept_query(query),
    })
}

/// The `utm_*` and `ref` parameters of a query string, in order; everything else dropped.
pub fn kept_query(query: &str) -> String {
    let mut out = String::new();
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or_default();
        if key == "ref" || key.starts_with("utm_") {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(pair);
        }
    }
    out
}

/// A parameter of a query string, decoded (`+` and `%xx`), without control characters (a
/// decoded `%00` is a NUL, which PostgreSQL text cannot hold); `None` when absent or empty.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
}

/// The host a referrer URL points to, or `""` when there is none, it is not a web URL, or it
/// is the site itself (a visitor moving between its pages).
pub fn referrer_host(referrer: &str, site: &str) -> String {
    match parse_url(referrer) {
        Some(l) if !l.host.is_empty() && l.host != site => {
            l.host.strip_prefix("www.").unwrap_or(&l.host).to_owned()
        }
        _ => String::new(),
    }
}

/// The site a request was made to: its `Host` header, lower-case, without the port.
pub fn host_of(host_header: &str) -> String {
    let host = match host_header.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host_header.split(':').next().unwrap_or(host_header),
    };
    host.chars()
        .take(253)
        .collect::<String>()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use solobase_sdk::http::{HeaderValue, Method};

    use super::*;

    #[test]
    fn the_visitor_id_depends_on_every_input_and_the_day() {
        let (a, b) = ([1; 32], [2; 32]);
        let base = visitor_id(&a, "example.com", b"10.0.0.1", b"Firefox");
        assert_eq!(base, visitor_id(&a, "example.com", b"10.0.0.1", b"Firefox"));
        assert_ne!(base, visitor_id(&b, "example.com", b"10.0.0.1", b"Firefox"));
        assert_ne!(base, visitor_id(&a, "example.org", b"10.0.0.1", b"Firefox"));
        assert_ne!(base, visitor_id(&a, "example.com", b"10.0.0.2", b"Firefox"));
        assert_ne!(base, visitor_id(&a, "example.com", b"10.0.0.1", b"Chrome"));
        // The separator keeps the parts apart.
        assert_ne!(
            visitor_id(&a, "ab", b"c", b""),
            visitor_id(&a, "a", b"bc", b"")
        );
        assert_ne!(new_salt(), new_salt());
    }

    #[test]
    fn urls_keep_only_utm_and_ref() {
        let l = parse_url(
            "https://User:pw@Example.COM:8443/pricing?utm_source=news&session=s3cret&ref=hn&utm_medium=mail#plans",
        )
        .unwrap();
        assert_eq!(l.host, "example.com");
        assert_eq!(l.path, "/pricing");
        assert_eq!(l.query, "utm_source=news&ref=hn&utm_medium=mail");
        assert_eq!(query_param(&l.query, "utm_source").as_deref(), Some("news"));
        assert_eq!(
            query_param("utm_campaign=spring+sale%21", "utm_campaign").as_deref(),
            Some("spring sale!")
        );
        assert_eq!(query_param("utm_campaign=", "utm_campaign"), None);

        let l = parse_url("http://example.com").unwrap();
        assert_eq!((l.path.as_str(), l.query.as_str()), ("/", ""));
        let l = parse_url("/docs/intro?token=abc#x").unwrap();
        assert_eq!(
            (l.host.as_str(), l.path.as_str(), l.query.as_str()),
            ("", "/docs/intro", "")
        );
        let l = parse_url("https://[::1]:8080/x").unwrap();
        assert_eq!(l.host, "::1");
        for bad in [
            "javascript:alert(1)",
            "//evil.example/x",
            "ftp://x/y",
            "https:///x",
            "/a b",
            "x",
        ] {
            assert!(parse_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn referrers_are_reduced_to_an_external_host() {
        assert_eq!(
            referrer_host("https://www.google.com/search?q=secret", "example.com"),
            "google.com"
        );
        assert_eq!(
            referrer_host("https://example.com/other", "example.com"),
            ""
        );
        assert_eq!(referrer_host("android-app://com.slack", "example.com"), "");
        assert_eq!(referrer_host("", "example.com"), "");
        assert_eq!(host_of("Example.com:8080"), "example.com");
        assert_eq!(host_of("[::1]:80"), "::1");
    }

    #[test]
    fn do_not_track_and_the_client_address() {
        let mut req = RequestHead::new(Method::GET, "/");
        assert!(!do_not_track(&req));
        req.headers.insert("dnt", HeaderValue::from_static("1"));
        assert!(do_not_track(&req));
        let mut req = RequestHead::new(Method::GET, "/");
        req.headers.insert("sec-gpc", HeaderValue::from_static("1"));
        assert!(do_not_track(&req));

        let mut req = RequestHead::new(Method::GET, "/");
        req.peer_addr = "2001:db8:ffff:ffff:ffff:ffff:255.255.255.255".parse().ok();
        assert_eq!(
            Address::of(&req).as_bytes(),
            b"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".as_slice()
        );
        // Forwarding headers are the server's to judge (`[server] trusted_proxies`): here a
        // client cannot choose its own address, and so its visitor id.
        req.headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static(" 203.0.113.9 , 10.0.0.1"),
        );
        assert_ne!(Address::of(&req).as_bytes(), b"203.0.113.9");
        assert!(format!("{:?}", Address::of(&req)).contains('…'));
    }
}
