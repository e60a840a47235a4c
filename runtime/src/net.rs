//! IP networks and who the client is: which `X-Forwarded-For` hop to believe behind trusted
//! proxies, and the address block a client's sign-in attempts are counted under. Pure functions,
//! unit-tested without a network.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside this network (an IPv4-mapped IPv6 address counts as its IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Why a network could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or CIDR network (like 10.0.0.0/8 or 2001:db8::/32)")]
pub struct BadNet;

impl FromStr for IpNet {
    type Err = BadNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr = canonical(addr.parse::<IpAddr>().map_err(|_| BadNet)?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| BadNet)?,
            None => max,
        };
        if prefix > max {
            return Err(BadNet);
        }
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address. Without trusted proxies it is the socket peer. When the peer is a
/// trusted proxy, `X-Forwarded-For` is read from the right, skipping hops that are trusted
/// proxies too: the right-most untrusted hop is the client, since every hop to its left was
/// written by someone we cannot vouch for (a client can put anything there).
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    peer_is_proxy: bool,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer_ip = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !(peer_is_proxy || is_trusted(peer_ip)) {
        return Some(peer_ip);
    }
    let Some(header) = forwarded_for else {
        return Some(peer_ip);
    };
    let mut last = peer_ip;
    for hop in header.rsplit(',') {
        let Some(ip) = parse_hop(hop) else {
            // A hop we cannot read: the last readable one is as far as we can trust.
            return Some(last);
        };
        if !is_trusted(ip) {
            return Some(ip);
        }
        last = ip;
    }
    Some(last)
}

/// One `X-Forwarded-For` hop: an address, or an address with a port as some proxies write it
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`, `[2001:db8::1]`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse::<IpAddr>().ok())
        })?;
    Some(canonical(ip))
}

/// The block a client's attempts are counted under: the address itself for IPv4, its /64 for
/// IPv6 (one subscriber usually holds a whole /64, so counting single addresses would let them
/// take a fresh one for every guess).
pub fn limit_block(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let block = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", Ipv6Addr::from(block))
        }
    }
}

/// `0.0.0.0`, for when no address is known at all.
pub const UNKNOWN: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn networks_parse_and_contain() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.3.4")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.1.1.1")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let one: IpNet = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/", "::/129"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn without_a_trusted_proxy_the_peer_is_the_client_whatever_the_header_says() {
        let got = client_address(Some(ip("198.51.100.7")), Some("1.2.3.4"), false, &[]);
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn behind_proxies_the_right_most_untrusted_hop_is_the_client() {
        // One proxy (the peer): the hop it appended is the client; what the client wrote to the
        // left of it is ignored.
        let got = client_address(
            Some(ip("127.0.0.1")),
            Some("203.0.113.66, 198.51.100.7"),
            true,
            &[],
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
        // Two layers: the inner proxy's own hop is skipped.
        let got = client_address(
            Some(ip("127.0.0.1")),
            Some("203.0.113.66, 198.51.100.7, 10.0.0.5"),
            true,
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
        // Only trusted hops: the left-most of them.
        let got = client_address(
            Some(ip("10.0.0.9")),
            Some("10.0.0.5"),
            false,
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, Some(ip("10.0.0.5")));
        // Hops written with a port, as some proxies do.
        for (hop, client) in [
            ("198.51.100.7:4711", "198.51.100.7"),
            ("[2001:db8::7]:4711", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
        ] {
            let header = format!("203.0.113.66, {hop}");
            let got = client_address(Some(ip("127.0.0.1")), Some(&header), true, &[]);
            assert_eq!(got, Some(ip(client)), "{hop}");
        }
        // Garbage in the header stops the walk at the last good hop.
        let got = client_address(
            Some(ip("127.0.0.1")),
            Some("198.51.100.7, not-an-ip"),
            true,
            &[],
        );
        assert_eq!(got, Some(ip("127.0.0.1")));
        // A peer that is not a proxy is believed over the header.
        let got = client_address(
            Some(ip("198.51.100.1")),
            Some("203.0.113.1"),
            false,
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, Some(ip("198.51.100.1")));
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            limit_block(ip("2001:db8::1")),
            limit_block(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            limit_block(ip("2001:db8::1")),
            limit_block(ip("2001:db8:0:1::1"))
        );
        assert_eq!(limit_block(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(limit_block(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(limit_block(ip("192.0.2.1")), "192.0.2.1");
    }
}
