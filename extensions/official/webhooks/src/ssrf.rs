//! The guard against server-side request forgery: endpoints may not make Solobase call its
//! own machine, its private network or a cloud metadata service.
//!
//! An address is refused when it is loopback, private (RFC 1918, IPv6 unique-local),
//! link-local (which holds the metadata services, 169.254.169.254 and fd00:ec2::254 too),
//! shared (CGNAT, 100.64/10), unspecified, multicast, broadcast, documentation or otherwise
//! reserved — unless the `allow` setting lists it (a CIDR, an address or a host name).
//! The check runs on the addresses a name resolves to, at every connection (the HTTP client's
//! resolver is [`GuardedResolver`]), and on address literals before a request is sent
//! ([`check_url`]), since those are never resolved.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use solobase_sdk::ConfigHandle;

use crate::WebhooksConfig;

/// Why an address is not called, or `None` when it is public.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
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

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    Some(match seg {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) embed an IPv4
        // address that may be private.
        [0, 0, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            let v4 = Ipv4Addr::from(((seg[6] as u32) << 16) | seg[7] as u32);
            return classify_v4(v4);
        }
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => "cloud metadata (fd00:ec2::254)",
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [s, ..] if s & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0xdb8, ..] => "documentation (2001:db8::/32)",
        [0x100, 0, 0, 0, ..] => "discard-only (100::/64)",
        _ => return None,
    })
}

/// One entry of the `allow` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// Addresses in a network: `127.0.0.0/8`, `::1/128`, or one address.
    Net { base: IpAddr, prefix: u8 },
    /// A host name, lower case: every address it resolves to.
    Host(String),
}

impl Allowed {
    /// Parses `10.0.0.0/8`, `::1`, `192.168.1.5`, or a host name such as `localhost`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (addr, prefix) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        if let Ok(base) = addr.parse::<IpAddr>() {
            let max = if base.is_ipv4() { 32 } else { 128 };
            let prefix =
                match prefix {
                    None => max,
                    Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                        format!("{entry:?}: the prefix length must be 0 to {max}")
                    })?,
                };
            return Ok(Self::Net { base, prefix });
        }
        let host_ok = prefix.is_none()
            && !entry.is_empty()
            && entry.len() <= 253
            && entry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if host_ok {
            Ok(Self::Host(entry.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{entry:?} is neither a CIDR (10.0.0.0/8), an address nor a host name"
            ))
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let Self::Net { base, prefix } = self else {
            return false;
        };
        match (base, ip) {
            (IpAddr::V4(b), IpAddr::V4(i)) => same_prefix(
                u128::from(u32::from(*b)) << 96,
                u128::from(u32::from(i)) << 96,
                *prefix,
            ),
            (IpAddr::V6(b), IpAddr::V6(i)) => same_prefix(u128::from(*b), u128::from(i), *prefix),
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8) -> bool {
    prefix == 0 || (a ^ b) >> (128 - u32::from(prefix)) == 0
}

/// The parsed `allow` setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<Allowed>);

impl AllowList {
    /// Parses every entry; the first bad one is the error.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| Allowed::parse(e))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `host` is listed by name.
    pub fn allows_host(&self, host: &str) -> bool {
        self.0
            .iter()
            .any(|a| matches!(a, Allowed::Host(h) if h.eq_ignore_ascii_case(host)))
    }

    /// Why `ip` may not be called, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let why = classify(ip)?;
        (!self.0.iter().any(|a| a.contains(ip))).then_some(why)
    }
}

/// Checks a URL's host when it is an address literal (names are checked when resolved).
pub fn check_url(url: &reqwest::Url, allow: &AllowList) -> Result<(), String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = literal.parse::<IpAddr>() else {
        return Ok(());
    };
    match allow.refusal(ip) {
        None => Ok(()),
        Some(why) => Err(format!(
            "refused to call {ip}: {why} addresses are blocked (list it in `allow` to permit it)"
        )),
    }
}

/// The HTTP client's resolver: the system's, minus refused addresses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    config: ConfigHandle<WebhooksConfig>,
}

impl GuardedResolver {
    /// A resolver reading the `allow` setting from `config` at every lookup.
    pub fn new(config: ConfigHandle<WebhooksConfig>) -> Arc<Self> {
        Arc::new(Self { config })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let config = self.config.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let allow = AllowList::parse(&config.get().allow)?;
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow.allows_host(&host) {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let mut refused = None;
            let public: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match allow.refusal(a.ip()) {
                    None => true,
                    Some(why) => {
                        refused = Some((a.ip(), why));
                        false
                    }
                })
                .collect();
            match (public.is_empty(), refused) {
                (true, Some((ip, why))) => Err(format!(
                    "refused to call {host} ({ip}): {why} addresses are blocked \
                     (list it in `allow` to permit it)"
                )
                .into()),
                _ => Ok(Box::new(public.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for blocked in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "fd00:ec2::254",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(classify(ip(blocked)).is_some(), "{blocked} must be refused");
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
            "64:ff9b::808:808",
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
        assert_eq!(allow.refusal(ip("127.0.0.1")), None);
        assert_eq!(allow.refusal(ip("127.9.9.9")), None);
        assert_eq!(allow.refusal(ip("::1")), None);
        assert_eq!(allow.refusal(ip("10.1.200.3")), None);
        assert!(allow.refusal(ip("10.2.0.1")).is_some());
        assert!(allow.refusal(ip("169.254.169.254")).is_some());
        assert!(allow.allows_host("internal.example"));
        assert!(!allow.allows_host("example.com"));
        let everything = AllowList::parse(&["0.0.0.0/0".into()]).unwrap();
        assert_eq!(everything.refusal(ip("192.168.0.1")), None);
        assert!(
            everything.refusal(ip("::1")).is_some(),
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

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses_unless_the_name_is_allowed() {
        let mut config = WebhooksConfig::default();
        let resolver = GuardedResolver::new(ConfigHandle::new(config.clone()));
        let name: Name = "localhost".parse().unwrap();
        let err = resolver.resolve(name).await.err().expect("refused");
        assert!(err.to_string().contains("loopback"), "{err}");
        config.allow = vec!["localhost".into()];
        let resolver = GuardedResolver::new(ConfigHandle::new(config));
        let addrs: Vec<_> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
