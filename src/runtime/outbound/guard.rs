//! The guard against server-side request forgery: an extension's outbound HTTP may not make
//! Solobase call its own machine, its private network or a cloud metadata service.
//!
//! An address is refused when it is loopback, private (RFC 1918, IPv6 unique-local),
//! link-local (which holds the metadata services, 169.254.169.254 and fd00:ec2::254 too),
//! shared (CGNAT, 100.64/10), unspecified, multicast, broadcast, documentation, benchmarking
//! or otherwise reserved — unless the extension's `outbound_allow` lists it (a CIDR, an address or a host
//! name; an entry admits addresses of its own family only).
//!
//! IPv6 addresses that carry an IPv4 address are judged by that IPv4 address, so that
//! `::ffff:127.0.0.1` is as loopback as `127.0.0.1`: IPv4-mapped (`::ffff:0:0/96`),
//! IPv4-translated (`::ffff:0:0:0/96`), IPv4-compatible (`::/96`), 6to4 (`2002::/16`, the
//! address in bits 16..48) and the well-known NAT64 prefix (`64:ff9b::/96`). Two tunnelling
//! forms are refused whole instead: local-use NAT64 (`64:ff9b:1::/48`), whose IPv4 address
//! sits where the operator's own prefix length puts it, so it cannot be found from the
//! address alone; and Teredo (`2001::/32`), a client behind a NAT reached through a relay,
//! which no server an extension calls needs. The rest of the IETF protocol block `2001::/23` (ORCHID,
//! benchmarking, …), `5f00::/16` (SRv6) and `3fff::/20` (documentation) are refused too.
//!
//! The check runs on every address a name resolves to, at every connection: the HTTP client's
//! resolver is [`GuardedResolver`], which hands the client only the addresses it checked, and
//! the client connects to those (no second lookup, so a name cannot change its answer
//! between the check and the connection). Address literals, which are never resolved, are
//! checked by [`check_url`] before a request is sent.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::AllowList;

/// Why an address is not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The range that is blocked, e.g. `"loopback"`.
    pub kind: &'static str,
    /// For an IPv6 address carrying an IPv4 address: the form (e.g. `"6to4"`) and that
    /// address, which is what was judged (for Teredo: the tunnel's client).
    pub embedded: Option<(&'static str, Ipv4Addr)>,
}

impl Refusal {
    const fn plain(kind: &'static str) -> Option<Self> {
        Some(Self {
            kind,
            embedded: None,
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((form, v4)) = self.embedded {
            write!(f, "it carries {v4} ({form}), and ")?;
        }
        write!(f, "{} addresses are blocked", self.kind)
    }
}

/// Why an address is not called, or `None` when it is public.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).and_then(Refusal::plain),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        (0, _, _) => "this network (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (169, 254, _) => "link-local or cloud metadata (169.254.0.0/16)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10, CGNAT)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries in a form that places it at a fixed position,
/// with the form's name.
fn embedded_v4(ip: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    Some(match ip.segments() {
        // `::` and `::1` are the IPv6 unspecified and loopback addresses, not IPv4-compatible.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => return None,
        [0, 0, 0, 0, 0, 0xffff, a, b] => ("IPv4-mapped", v4(a, b)),
        [0, 0, 0, 0, 0xffff, 0, a, b] => ("IPv4-translated", v4(a, b)),
        [0, 0, 0, 0, 0, 0, a, b] => ("IPv4-compatible", v4(a, b)),
        [0x64, 0xff9b, 0, 0, 0, 0, a, b] => ("NAT64", v4(a, b)),
        [0x2002, a, b, ..] => ("6to4", v4(a, b)),
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if let Some((form, v4)) = embedded_v4(ip) {
        return classify_v4(v4).map(|kind| Refusal {
            kind,
            embedded: Some((form, v4)),
        });
    }
    let seg = ip.segments();
    let kind = match seg {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 (64:ff9b:1::/48)",
        [0x2001, 0, _, _, _, _, hi, lo] => {
            // The client's address is stored inverted in the last 32 bits.
            let client = Ipv4Addr::from(!((u32::from(hi) << 16) | u32::from(lo)));
            return Some(Refusal {
                kind: "Teredo (2001::/32)",
                embedded: Some(("Teredo client", client)),
            });
        }
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => "cloud metadata (fd00:ec2::254)",
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [s, ..] if s & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0xdb8, ..] => "documentation (2001:db8::/32)",
        [0x3fff, s, ..] if s < 0x1000 => "documentation (3fff::/20)",
        [0x100, 0, 0, 0, ..] => "discard-only (100::/64)",
        [0x2001, 2, 0, ..] => "benchmarking (2001:2::/48)",
        [0x2001, s, ..] if s & 0xfff0 == 0x10 => "ORCHID (2001:10::/28)",
        [0x2001, s, ..] if s & 0xfff0 == 0x20 => "ORCHIDv2 (2001:20::/28)",
        [0x2001, s, ..] if s < 0x200 => "IETF protocol assignments (2001::/23)",
        [0x5f00, ..] => "SRv6 segment identifiers (5f00::/16)",
        _ => return None,
    };
    Refusal::plain(kind)
}

/// Why `ip` may not be called under `allow`, or `None` when it may.
pub fn refusal(allow: &AllowList, ip: IpAddr) -> Option<Refusal> {
    let why = classify(ip)?;
    (!allow.contains(ip)).then_some(why)
}

/// The error for a refused address.
fn refused(target: &str, why: Refusal) -> String {
    format!(
        "refused to call {target}: {why} (an operator may list it in the extension's \
         outbound_allow to permit it)"
    )
}

/// Checks a URL's host when it is an address literal (names are checked when resolved).
pub fn check_url(url: &reqwest::Url, allow: &AllowList) -> Result<(), String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = literal.parse::<IpAddr>() else {
        return Ok(());
    };
    match refusal(allow, ip) {
        None => Ok(()),
        Some(why) => Err(refused(&ip.to_string(), why)),
    }
}

/// The addresses `host` resolved to that may be called: all of them when the name is
/// allowed, else the ones [`refusal`] passes; an error saying why when none is
/// left.
pub fn callable(
    host: &str,
    resolved: impl IntoIterator<Item = SocketAddr>,
    allow: &AllowList,
) -> Result<Vec<SocketAddr>, String> {
    let resolved = resolved.into_iter();
    if allow.allows_host(host) {
        return Ok(resolved.collect());
    }
    let mut last_refusal = None;
    let callable: Vec<SocketAddr> = resolved
        .filter(|a| match refusal(allow, a.ip()) {
            None => true,
            Some(why) => {
                last_refusal = Some((a.ip(), why));
                false
            }
        })
        .collect();
    match (callable.is_empty(), last_refusal) {
        (true, Some((ip, why))) => Err(refused(&format!("{host} ({ip})"), why)),
        _ => Ok(callable),
    }
}

/// The HTTP client's resolver: the system's, minus refused addresses. The client connects to
/// exactly the addresses returned here.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow: Arc<ArcSwap<AllowList>>,
}

impl GuardedResolver {
    /// A resolver reading the list from `allow` at every lookup.
    pub fn new(allow: Arc<ArcSwap<AllowList>>) -> Arc<Self> {
        Arc::new(Self { allow })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.load_full();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addrs = callable(&host, resolved, &allow)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::allow::Allowed;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Each address with the range it must be refused as, and the IPv4 address it must be
    /// judged by when it carries one.
    const REFUSED: &[(&str, &str, Option<&str>)] = &[
        ("127.0.0.1", "loopback", None),
        ("127.255.255.254", "loopback", None),
        ("0.0.0.0", "unspecified", None),
        ("0.1.2.3", "this network", None),
        ("10.0.0.1", "private (10.", None),
        ("172.16.0.1", "private (172.16", None),
        ("172.31.255.255", "private (172.16", None),
        ("192.168.1.1", "private (192.168", None),
        ("169.254.169.254", "cloud metadata", None),
        ("169.254.0.1", "link-local", None),
        ("100.64.0.1", "CGNAT", None),
        ("100.127.255.255", "CGNAT", None),
        ("192.0.0.170", "IETF protocol assignments", None),
        ("192.0.2.1", "documentation", None),
        ("198.18.0.1", "benchmarking", None),
        ("224.0.0.1", "multicast", None),
        ("239.255.255.250", "multicast", None),
        ("255.255.255.255", "broadcast", None),
        ("240.0.0.1", "reserved", None),
        // IPv6 ranges of their own.
        ("::", "unspecified", None),
        ("::1", "loopback", None),
        ("fd00:ec2::254", "cloud metadata", None),
        ("fc00::1", "unique local", None),
        ("fdff:ffff::1", "unique local", None),
        ("fe80::1", "link-local", None),
        ("febf::1", "link-local", None),
        ("fec0::1", "site-local", None),
        ("feff::1", "site-local", None),
        ("ff02::1", "multicast", None),
        ("ff0e::1", "multicast", None),
        ("2001:db8::1", "documentation", None),
        ("3fff::1", "documentation", None),
        ("3fff:fff::1", "documentation", None),
        ("100::1", "discard-only", None),
        ("100::ffff:ffff:ffff:ffff", "discard-only", None),
        ("2001:10::1", "ORCHID (", None),
        ("2001:1f:ffff::1", "ORCHID (", None),
        ("2001:20::1", "ORCHIDv2", None),
        ("2001:2f::1", "ORCHIDv2", None),
        ("2001:2::1", "benchmarking", None),
        ("2001:1::1", "IETF protocol assignments", None),
        ("2001:1ff::1", "IETF protocol assignments", None),
        ("5f00::1", "SRv6", None),
        // IPv4-mapped, ::ffff:a.b.c.d.
        ("::ffff:127.0.0.1", "loopback", Some("127.0.0.1")),
        ("::ffff:10.1.2.3", "private", Some("10.1.2.3")),
        (
            "::ffff:169.254.169.254",
            "metadata",
            Some("169.254.169.254"),
        ),
        ("::ffff:0.0.0.0", "unspecified", Some("0.0.0.0")),
        // IPv4-translated, ::ffff:0:a.b.c.d.
        ("::ffff:0:127.0.0.1", "loopback", Some("127.0.0.1")),
        ("::ffff:0:a9fe:a9fe", "metadata", Some("169.254.169.254")),
        ("::ffff:0:192.168.0.1", "private", Some("192.168.0.1")),
        // IPv4-compatible, ::a.b.c.d.
        ("::127.0.0.1", "loopback", Some("127.0.0.1")),
        ("::10.0.0.1", "private", Some("10.0.0.1")),
        ("::0.0.0.2", "this network", Some("0.0.0.2")),
        // 6to4: the address in bits 16..48, whatever follows.
        ("2002:7f00:1::", "loopback", Some("127.0.0.1")),
        ("2002:7f00:1:ffff:1:2:3:4", "loopback", Some("127.0.0.1")),
        ("2002:a9fe:a9fe::1", "metadata", Some("169.254.169.254")),
        ("2002:c0a8:101::", "private", Some("192.168.1.1")),
        ("2002:0a00:0001::", "private", Some("10.0.0.1")),
        // Well-known NAT64, 64:ff9b::a.b.c.d.
        ("64:ff9b::127.0.0.1", "loopback", Some("127.0.0.1")),
        ("64:ff9b::10.0.0.1", "private", Some("10.0.0.1")),
        ("64:ff9b::a9fe:a9fe", "metadata", Some("169.254.169.254")),
        // Refused whole, whatever they carry.
        ("64:ff9b:1::7f00:1", "local-use NAT64", None),
        ("64:ff9b:1:ffff::808:808", "local-use NAT64", None),
        // Teredo: server 65.54.227.120, client 127.0.0.1 stored inverted.
        (
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "Teredo",
            Some("127.0.0.1"),
        ),
        // A Teredo client with a public address is refused all the same.
        (
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "Teredo",
            Some("8.8.8.8"),
        ),
    ];

    #[test]
    fn non_public_addresses_are_refused_and_embedded_ipv4_is_judged() {
        for &(text, kind, embedded) in REFUSED {
            let Some(why) = classify(ip(text)) else {
                panic!("{text} must be refused as {kind}");
            };
            assert!(why.kind.contains(kind), "{text}: {why:?}, expected {kind}");
            assert_eq!(
                why.embedded.map(|(_, v4)| v4.to_string()),
                embedded.map(str::to_owned),
                "{text}: {why:?}"
            );
            // The reason names what it judged, and the allow list can still admit it.
            let shown = why.to_string();
            assert!(shown.contains(kind), "{shown}");
            if let Some(v4) = embedded {
                assert!(shown.contains(v4), "{shown}");
            }
            let listed = AllowList::parse(&[text.to_owned()]).unwrap();
            assert_eq!(refusal(&listed, ip(text)), None, "{text} listed in allow");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.169.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2003::1",
            "fbff::1",
            "64:ff9a::1",
            "64:ff9b:2::1",
            "5eff::1",
            "3ffe::1",
            "3fff:1000::1",
            "100:0:0:1::1",
        ] {
            assert_eq!(classify(ip(public)), None, "{public} is public");
        }
    }

    #[test]
    fn the_allow_list_admits_networks_addresses_and_names() {
        let allow = AllowList::parse(&[
            "127.0.0.0/8".into(),
            "::1".into(),
            "10.1.0.0/16".into(),
            "Internal.Example".into(),
        ])
        .unwrap();
        assert_eq!(refusal(&allow, ip("127.0.0.1")), None);
        assert_eq!(refusal(&allow, ip("127.9.9.9")), None);
        assert_eq!(refusal(&allow, ip("::1")), None);
        assert_eq!(refusal(&allow, ip("10.1.200.3")), None);
        assert!(refusal(&allow, ip("10.2.0.1")).is_some());
        assert!(refusal(&allow, ip("169.254.169.254")).is_some());
        assert!(allow.allows_host("internal.example"));
        assert!(!allow.allows_host("example.com"));
        let everything = AllowList::parse(&["0.0.0.0/0".into()]).unwrap();
        assert_eq!(refusal(&everything, ip("192.168.0.1")), None);
        assert!(
            refusal(&everything, ip("::1")).is_some(),
            "v4 nets admit no v6"
        );
        for bad in ["10.0.0.0/33", "::/129", "a b", "10.0.0.0/x", "host/8", ""] {
            assert!(Allowed::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn address_literals_in_urls_are_checked() {
        let none = AllowList::default();
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(check_url(&url("http://127.0.0.1:8080/x"), &none).is_err());
        for embedded in [
            "http://[::ffff:127.0.0.1]:8080/x",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://[2002:7f00:1::]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[64:ff9b:1::7f00:1]/",
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
        ] {
            let err = check_url(&url(embedded), &none).unwrap_err();
            assert!(err.contains("blocked") && err.contains("allow"), "{err}");
        }
        assert!(check_url(&url("http://[::1]/x"), &none).is_err());
        assert!(check_url(&url("http://169.254.169.254/latest"), &none).is_err());
        // Decimal and hex spellings are normalised by the URL parser, then refused.
        assert!(check_url(&url("http://2130706433/"), &none).is_err());
        assert!(check_url(&url("http://0x7f.1/"), &none).is_err());
        assert!(check_url(&url("https://93.184.216.34/"), &none).is_ok());
        assert!(check_url(&url("https://example.com/"), &none).is_ok());
        let loopback = AllowList::parse(&["127.0.0.1".into()]).unwrap();
        assert!(check_url(&url("http://127.0.0.1:8080/x"), &loopback).is_ok());
    }

    #[test]
    fn every_resolved_address_is_checked_and_only_callable_ones_are_kept() {
        let none = AllowList::default();
        let at = |s: &str| SocketAddr::new(ip(s), 0);
        // A name resolving to a public address and to embedded forms of private ones: only
        // the public address is kept, so the client can connect nowhere else.
        let kept = callable(
            "mixed.example",
            [
                at("::ffff:127.0.0.1"),
                at("2002:7f00:1::"),
                at("93.184.216.34"),
                at("64:ff9b::a9fe:a9fe"),
                at("::ffff:0:10.0.0.1"),
            ],
            &none,
        )
        .unwrap();
        assert_eq!(kept, vec![at("93.184.216.34")]);
        // Nothing callable: refused, saying why.
        for hidden in [
            "::ffff:127.0.0.1",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "2002:7f00:1::",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1::7f00:1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
        ] {
            let err = callable("rebind.example", [at(hidden)], &none).unwrap_err();
            assert!(
                err.contains("rebind.example") && err.contains("blocked"),
                "{hidden}: {err}"
            );
        }
        // A name the allow list names is trusted with whatever it resolves to.
        let named = AllowList::parse(&["rebind.example".into()]).unwrap();
        assert_eq!(
            callable("rebind.example", [at("::ffff:127.0.0.1")], &named).unwrap(),
            vec![at("::ffff:127.0.0.1")]
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses_unless_the_name_is_allowed() {
        let allow = Arc::new(ArcSwap::from_pointee(AllowList::default()));
        let resolver = GuardedResolver::new(allow.clone());
        let name: Name = "localhost".parse().unwrap();
        let err = resolver.resolve(name).await.err().expect("refused");
        assert!(err.to_string().contains("loopback"), "{err}");
        // A changed list applies to the next lookup of the same resolver.
        allow.store(Arc::new(AllowList::parse(&["localhost".into()]).unwrap()));
        let addrs: Vec<_> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
