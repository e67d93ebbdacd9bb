//! `[server] trusted_proxies` and `client_ip_header`: the reverse proxies whose word about the
//! client is believed. Only a request whose peer is one of them has its client address read
//! from the forwarding header (the rightmost address that is not itself a trusted proxy) and
//! its scheme from `X-Forwarded-Proto` (or `Forwarded: proto=`). Everyone else's forwarding
//! headers are ignored: any client can send them.

use std::net::IpAddr;

use serde::Deserialize;

use super::allow::Allowed;

/// Which header the trusted proxies set. Only one is read: a proxy passes on the headers
/// clients send, so reading a header the proxy does not set would let a client choose its
/// own address.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx's `$proxy_add_x_forwarded_for`, HAProxy's
    /// `option forwardfor`).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// The parsed `trusted_proxies` list: networks, no host names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<Allowed>,
    header: ClientIpHeader,
}

impl TrustedProxies {
    /// Parses `entries` (`10.0.0.0/8`, `::1`, `192.168.1.5`); the first bad one is the error.
    pub fn parse(entries: &[String], header: ClientIpHeader) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|e| match Allowed::parse(e) {
                Ok(net @ Allowed::Net { .. }) => Ok(net),
                Ok(Allowed::Host(h)) => Err(format!(
                    "server.trusted_proxies: {h:?} is a host name; list the proxies' addresses or \
                     networks (10.0.0.0/8, 192.168.1.5, ::1)"
                )),
                Err(e) => Err(format!("server.trusted_proxies: {e}")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets, header })
    }

    /// Whether no proxy is trusted (forwarding headers are never read).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The header the proxies set.
    pub fn header(&self) -> ClientIpHeader {
        self.header
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4
/// peers) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}
