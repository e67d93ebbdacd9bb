//! The operator's list of non-public addresses an extension's outbound HTTP may reach anyway
//! (`outbound_allow`): CIDRs, addresses and host names. Which addresses are non-public is
//! the runtime's outbound guard's to say.

use std::net::IpAddr;

/// One entry of an `outbound_allow` list.
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

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
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

/// A parsed `outbound_allow` list.
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

    /// Whether an entry lists `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|a| a.contains(ip))
    }
}
