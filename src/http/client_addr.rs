//! The request's client: resolved once, by the outermost middleware
//! ([`super::request_id_middleware`]), and used by everything that keys on the client — rate
//! limits, login throttling, audit entries, the request's log span, and extensions
//! (`RequestHead::peer_addr`).
//!
//! The client is the connection's peer unless the peer is a trusted proxy
//! (`[server] trusted_proxies`): then it is the rightmost address of the configured forwarding
//! header that is not itself a trusted proxy — each proxy appends the address it saw, so
//! addresses to the right of the first untrusted one were written by proxies we trust, and
//! anything to its left by a client that may lie. An entry that is not an address (`unknown`,
//! an obfuscated name, garbage) stops the walk: the client is then the last trusted hop.

use std::net::IpAddr;

use actix_web::HttpMessage;
use actix_web::http::header::HeaderMap;

use crate::config::proxies::canonical;
use crate::config::{ClientIpHeader, TrustedProxies};

/// The client as a trusted proxy reported it (set only when the peer is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forwarded {
    /// The client's address.
    pub addr: IpAddr,
    /// The scheme the client used, when the proxy said (`https` or `http`).
    pub https: Option<bool>,
}

/// Reads the forwarding headers of a request from `peer`: `None` unless `peer` is a trusted
/// proxy (then the headers are ignored, whatever they say).
pub(crate) fn resolve(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<Forwarded> {
    let peer = canonical(peer?);
    if trusted.is_empty() || !trusted.contains(peer) {
        return None;
    }
    let (hops, proto) = match trusted.header() {
        ClientIpHeader::XForwardedFor => (
            list(headers, "x-forwarded-for")
                .map(|hop| hop.and_then(parse_addr))
                .collect::<Vec<_>>(),
            list(headers, "x-forwarded-proto")
                .last()
                .flatten()
                .map(str::to_owned),
        ),
        ClientIpHeader::Forwarded => forwarded(headers),
    };
    // From the right: skip trusted proxies; the first other address is the client.
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) if trusted.contains(*ip) => client = *ip,
            Some(ip) => {
                client = *ip;
                break;
            }
            None => break,
        }
    }
    let https = proto.and_then(|p| match p.to_ascii_lowercase().as_str() {
        "https" => Some(true),
        "http" => Some(false),
        _ => None,
    });
    Some(Forwarded {
        addr: client,
        https,
    })
}

/// The comma-separated values of every `name` header, in order, trimmed; `None` for a value
/// that is not UTF-8. Split as bytes: a proxy appends its entry to the line the client sent,
/// so a line that is not visible ASCII (which `to_str` refuses) still ends with the proxy's
/// word, and dropping the whole line would make the client the proxy.
fn list<'a>(headers: &'a HeaderMap, name: &'static str) -> impl Iterator<Item = Option<&'a str>> {
    headers
        .get_all(name)
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|v| std::str::from_utf8(v).ok().map(str::trim))
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`, with or
/// without a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside.parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = text.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// RFC 7239: the `for=` of each element, in order, and the last element's `proto=`.
fn forwarded(headers: &HeaderMap) -> (Vec<Option<IpAddr>>, Option<String>) {
    let mut hops = Vec::new();
    let mut proto = None;
    for element in list(headers, "forwarded") {
        let Some(element) = element else {
            hops.push(None);
            proto = None;
            continue;
        };
        let mut this_for = None;
        let mut this_proto = None;
        for pair in element.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "for" => this_for = Some(parse_addr(value)),
                "proto" => this_proto = Some(value.trim().trim_matches('"').to_owned()),
                _ => {}
            }
        }
        // An element without `for=` says nothing about the client: a hop we cannot place.
        hops.push(this_for.flatten());
        proto = this_proto;
    }
    (hops, proto)
}

/// The client of `req`: the one its trusted proxy reported, else the connection's peer.
pub(crate) fn client_addr(req: &actix_web::HttpRequest) -> Option<IpAddr> {
    if let Some(f) = req.extensions().get::<Forwarded>() {
        return Some(f.addr);
    }
    req.peer_addr().map(|a| canonical(a.ip()))
}

/// The scheme the client used: as a trusted proxy reported it, else the connection's own.
pub(crate) fn scheme(req: &actix_web::HttpRequest) -> &'static str {
    let https = match req.extensions().get::<Forwarded>().and_then(|f| f.https) {
        Some(https) => https,
        None => req.app_config().secure(),
    };
    if https { "https" } else { "http" }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn trusted(nets: &[&str], header: ClientIpHeader) -> TrustedProxies {
        let nets: Vec<String> = nets.iter().map(|s| s.to_string()).collect();
        TrustedProxies::parse(&nets, header).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_headers_are_ignored() {
        let t = trusted(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(resolve(Some(ip("203.0.113.9")), &h, &t), None);
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &h, &TrustedProxies::default()),
            None
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = trusted(&["10.0.0.0/8", "::1"], ClientIpHeader::XForwardedFor);
        let peer = Some(ip("10.0.0.1"));
        let cases = [
            ("198.51.100.7", "198.51.100.7"),
            // A client's forged entry on the left is passed over.
            ("6.6.6.6, 198.51.100.7", "198.51.100.7"),
            // Proxies chained: trusted hops on the right are skipped.
            ("198.51.100.7, 10.1.2.3", "198.51.100.7"),
            ("[2001:db8::5]:4711, 10.1.2.3", "2001:db8::5"),
            ("198.51.100.7:80", "198.51.100.7"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
            // Garbage stops the walk: the last trusted hop is the client.
            ("198.51.100.7, unknown, 10.1.2.3", "10.1.2.3"),
            ("198.51.100.7, garbage", "10.0.0.1"),
            // Only trusted addresses: the leftmost.
            ("10.9.9.9, 10.1.2.3", "10.9.9.9"),
        ];
        for (xff, client) in cases {
            let got = resolve(peer, &headers(&[("x-forwarded-for", xff)]), &t);
            assert_eq!(got.map(|f| f.addr), Some(ip(client)), "{xff}");
        }
        // No header: the proxy itself.
        assert_eq!(
            resolve(peer, &HeaderMap::new(), &t).map(|f| f.addr),
            Some(ip("10.0.0.1"))
        );
        // Two header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7, 10.1.2.3"),
            ("x-forwarded-proto", "HTTPS"),
        ]);
        assert_eq!(
            resolve(peer, &h, &t),
            Some(Forwarded {
                addr: ip("198.51.100.7"),
                https: Some(true)
            })
        );
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let xff = trusted(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        let fwd = trusted(&["10.0.0.0/8"], ClientIpHeader::Forwarded);
        let peer = Some(ip("10.0.0.1"));
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(resolve(peer, &h, &xff).unwrap().addr, ip("198.51.100.7"));
        assert_eq!(resolve(peer, &h, &fwd).unwrap().addr, ip("6.6.6.6"));
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.1.1.1",
        )]);
        let got = resolve(peer, &h, &fwd).unwrap();
        assert_eq!(got.addr, ip("2001:db8:cafe::17"));
        assert_eq!(got.https, None, "the nearest element said no proto");
        let h = headers(&[("forwarded", "for=_hidden, for=198.51.100.7;proto=https")]);
        let got = resolve(peer, &h, &fwd).unwrap();
        assert_eq!(got.addr, ip("198.51.100.7"));
        assert_eq!(got.https, Some(true));
    }

    #[test]
    fn a_line_that_is_not_visible_ascii_still_ends_with_the_proxys_entry() {
        let peer = Some(ip("10.0.0.1"));
        for (header, kind, line) in [
            (
                "x-forwarded-for",
                ClientIpHeader::XForwardedFor,
                &b"\xe9, 198.51.100.7"[..],
            ),
            (
                "x-forwarded-for",
                ClientIpHeader::XForwardedFor,
                b"6.6.6.6 \xc3\xa9, 198.51.100.7",
            ),
            (
                "forwarded",
                ClientIpHeader::Forwarded,
                b"for=\xff\xfe, for=198.51.100.7",
            ),
        ] {
            let mut h = HeaderMap::new();
            h.append(
                HeaderName::from_static(header),
                HeaderValue::from_bytes(line).unwrap(),
            );
            let t = trusted(&["10.0.0.0/8"], kind);
            assert_eq!(
                resolve(peer, &h, &t).map(|f| f.addr),
                Some(ip("198.51.100.7")),
                "{line:?}"
            );
        }
    }

    #[test]
    fn host_names_are_refused_as_proxies() {
        let err = TrustedProxies::parse(&["proxy.internal".into()], ClientIpHeader::default())
            .unwrap_err();
        assert!(err.contains("host name"), "{err}");
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()], ClientIpHeader::default()).is_err());
    }
}
