//! Which IP addresses an outbound request may reach: the classifier behind every refusal.
//!
//! Only [`AddressClass::Public`] is reachable by everyone. IPv6 forms that carry an IPv4 address
//! (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by the address they carry, so
//! `::ffff:127.0.0.1` is loopback. IPv6 outside the global unicast block `2000::/3` is refused
//! as reserved: IANA assigns nothing else for public use, so a new special range is refused
//! until someone decides otherwise.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address an IP is, for deciding and for telling the caller why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable: the only class reachable without the allowlist.
    Public,
    /// `0.0.0.0` or `::` (which connects to the local host on many systems).
    Unspecified,
    /// `0.0.0.0/8`, "this network".
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// Carrier-grade NAT, `100.64.0.0/10` (RFC 6598).
    SharedNat,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// A cloud provider's instance metadata or control endpoint (`169.254.169.254`,
    /// `fd00:ec2::254`, …): credentials live there.
    CloudMetadata,
    /// `255.255.255.255`.
    Broadcast,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// Documentation examples: `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`,
    /// `3fff::/20`.
    Documentation,
    /// Benchmarking, `198.18.0.0/15`.
    Benchmarking,
    /// Reserved or special-purpose: `240/4`, `192.0.0/24`, `192.88.99/24`, IPv6 outside
    /// `2000::/3`, `2001::/23` (IETF protocol assignments, Teredo included).
    Reserved,
    /// IPv6 unique local, `fc00::/7`.
    UniqueLocal,
    /// IPv6 site-local (deprecated), `fec0::/10`.
    SiteLocal,
}

impl AddressClass {
    /// Whether anyone may reach this class (everything else needs the allowlist).
    pub fn is_public(self) -> bool {
        self == AddressClass::Public
    }

    /// The class in words, for errors and logs.
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Unspecified => "unspecified",
            AddressClass::ThisNetwork => "\"this network\" (0.0.0.0/8)",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private (RFC 1918)",
            AddressClass::SharedNat => "carrier-grade NAT (100.64.0.0/10)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::CloudMetadata => "cloud metadata",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Multicast => "multicast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Reserved => "reserved",
            AddressClass::UniqueLocal => "unique-local IPv6",
            AddressClass::SiteLocal => "site-local IPv6",
        }
    }
}

/// How an IPv6 address carries the IPv4 address it was judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`.
    Ipv4Mapped,
    /// `::a.b.c.d` (deprecated IPv4-compatible).
    Ipv4Compatible,
    /// `64:ff9b::a.b.c.d` (NAT64, RFC 6052).
    Nat64,
    /// `2002:aabb:ccdd::/48` (6to4).
    SixToFour,
}

impl Embedding {
    fn describe(self) -> &'static str {
        match self {
            Embedding::Ipv4Mapped => "IPv4-mapped",
            Embedding::Ipv4Compatible => "IPv4-compatible",
            Embedding::Nat64 => "NAT64",
            Embedding::SixToFour => "6to4",
        }
    }
}

/// An address's class, and the IPv6 form it was found in when it was judged by an embedded
/// IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub class: AddressClass,
    pub embedded_in: Option<Embedding>,
}

impl Classification {
    /// Whether anyone may reach the address.
    pub fn is_public(self) -> bool {
        self.class.is_public()
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class.describe())?;
        if let Some(embedding) = self.embedded_in {
            write!(
                f,
                ", embedded in an IPv6 address ({})",
                embedding.describe()
            )?;
        }
        Ok(())
    }
}

/// Classifies one address.
pub fn classify(ip: IpAddr) -> Classification {
    match ip {
        IpAddr::V4(v4) => Classification {
            class: classify_v4(v4),
            embedded_in: None,
        },
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Instance metadata and control endpoints of the large clouds. Most sit in ranges refused
/// anyway; naming them makes the refusal say what was at stake, and Azure's is public.
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, DigitalOcean, …
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task credentials
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(168, 63, 129, 16),   // Azure WireServer (a public address)
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
];

const METADATA_V6: &[Ipv6Addr] = &[
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254), // AWS (Nitro, IPv6)
];

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    if METADATA_V4.contains(&ip) {
        return AddressClass::CloudMetadata;
    }
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_unspecified() => AddressClass::Unspecified,
        _ if ip.is_broadcast() => AddressClass::Broadcast,
        (0, _, _) => AddressClass::ThisNetwork,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => AddressClass::Private,
        (100, 64..=127, _) => AddressClass::SharedNat,
        (169, 254, _) => AddressClass::LinkLocal,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Documentation,
        (198, 18..=19, _) => AddressClass::Benchmarking,
        // IETF protocol assignments, and the deprecated 6to4 relay anycast prefix.
        (192, 0, 0) | (192, 88, 99) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Classification {
    let plain = |class| Classification {
        class,
        embedded_in: None,
    };
    if ip.is_unspecified() {
        return plain(AddressClass::Unspecified);
    }
    if ip.is_loopback() {
        return plain(AddressClass::Loopback);
    }
    if let Some((v4, embedding)) = embedded_v4(ip) {
        return Classification {
            class: classify_v4(v4),
            embedded_in: Some(embedding),
        };
    }
    if METADATA_V6.contains(&ip) {
        return plain(AddressClass::CloudMetadata);
    }
    let s = ip.segments();
    let class = match s[0] {
        0xfc00..=0xfdff => AddressClass::UniqueLocal,
        0xfe80..=0xfebf => AddressClass::LinkLocal,
        0xfec0..=0xfeff => AddressClass::SiteLocal,
        0xff00..=0xffff => AddressClass::Multicast,
        0x2001 if s[1] == 0x0db8 => AddressClass::Documentation,
        0x3fff if s[1] <= 0x0fff => AddressClass::Documentation,
        // 2001::/23: IETF protocol assignments (Teredo, benchmarking, ORCHID, …).
        0x2001 if s[1] <= 0x01ff => AddressClass::Reserved,
        0x2000..=0x3fff => AddressClass::Public,
        _ => AddressClass::Reserved,
    };
    plain(class)
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one.
fn embedded_v4(ip: Ipv6Addr) -> Option<(Ipv4Addr, Embedding)> {
    let o = ip.octets();
    let low = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some((low, Embedding::Ipv4Mapped)),
        // `::` and `::1` were handled before; anything else in ::/96 is IPv4-compatible.
        [0, 0, 0, 0, 0, 0, _, _] => Some((low, Embedding::Ipv4Compatible)),
        [0x0064, 0xff9b, 0, 0, 0, 0, _, _] => Some((low, Embedding::Nat64)),
        [0x2002, ..] => Some((Ipv4Addr::new(o[2], o[3], o[4], o[5]), Embedding::SixToFour)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use AddressClass::*;

    /// Every class, with addresses on both edges of its range where an edge matters, and the
    /// public neighbours that must stay reachable.
    const CASES: &[(&str, AddressClass)] = &[
        // Public IPv4, including the neighbours of refused ranges.
        ("8.8.8.8", Public),
        ("1.1.1.1", Public),
        ("93.184.216.34", Public),
        ("9.255.255.255", Public),
        ("11.0.0.0", Public),
        ("172.15.255.255", Public),
        ("172.32.0.0", Public),
        ("192.167.255.255", Public),
        ("192.169.0.0", Public),
        ("100.63.255.255", Public),
        ("100.128.0.0", Public),
        ("169.253.255.255", Public),
        ("169.255.0.0", Public),
        ("126.255.255.255", Public),
        ("128.0.0.0", Public),
        ("198.17.255.255", Public),
        ("198.20.0.0", Public),
        ("223.255.255.255", Public),
        ("1.0.0.0", Public),
        // IPv4 classes.
        ("0.0.0.0", Unspecified),
        ("0.0.0.1", ThisNetwork),
        ("0.255.255.255", ThisNetwork),
        ("127.0.0.1", Loopback),
        ("127.255.255.254", Loopback),
        ("10.0.0.0", Private),
        ("10.255.255.255", Private),
        ("172.16.0.1", Private),
        ("172.31.255.255", Private),
        ("192.168.0.1", Private),
        ("192.168.255.255", Private),
        ("100.64.0.0", SharedNat),
        ("100.127.255.255", SharedNat),
        ("169.254.0.1", LinkLocal),
        ("169.254.255.255", LinkLocal),
        ("169.254.169.254", CloudMetadata),
        ("169.254.170.2", CloudMetadata),
        ("100.100.100.200", CloudMetadata),
        ("168.63.129.16", CloudMetadata),
        ("192.0.0.192", CloudMetadata),
        ("255.255.255.255", Broadcast),
        ("224.0.0.1", Multicast),
        ("239.255.255.250", Multicast),
        ("240.0.0.1", Reserved),
        ("255.255.255.254", Reserved),
        ("192.0.0.8", Reserved),
        ("192.88.99.1", Reserved),
        ("192.0.2.1", Documentation),
        ("198.51.100.7", Documentation),
        ("203.0.113.255", Documentation),
        ("198.18.0.1", Benchmarking),
        ("198.19.255.255", Benchmarking),
        // Public IPv6.
        ("2606:4700:4700::1111", Public),
        ("2001:4860:4860::8888", Public),
        ("2a00:1450:4001:82a::200e", Public),
        ("2001:200::1", Public),
        ("2001:db7:ffff::1", Public),
        ("3ffe::1", Public),
        // IPv6 classes.
        ("::", Unspecified),
        ("::1", Loopback),
        ("fc00::1", UniqueLocal),
        ("fd12:3456:789a::1", UniqueLocal),
        ("fd00:ec2::254", CloudMetadata),
        ("fe80::1", LinkLocal),
        ("febf:ffff::1", LinkLocal),
        ("fec0::1", SiteLocal),
        ("feff::1", SiteLocal),
        ("ff02::1", Multicast),
        ("ff0e::1", Multicast),
        ("2001:db8::1", Documentation),
        ("3fff::1", Documentation),
        ("2001::1", Reserved),
        ("2001:1ff::1", Reserved),
        ("100::1", Reserved),
        ("64:ff9b:1::1", Reserved),
        ("4000::1", Reserved),
        ("::ffff:0:a00:1", Reserved),
    ];

    /// IPv6 forms that carry an IPv4 address: judged by that address.
    const EMBEDDED: &[(&str, AddressClass, Embedding)] = &[
        ("::ffff:127.0.0.1", Loopback, Embedding::Ipv4Mapped),
        ("::ffff:10.1.2.3", Private, Embedding::Ipv4Mapped),
        (
            "::ffff:169.254.169.254",
            CloudMetadata,
            Embedding::Ipv4Mapped,
        ),
        ("::ffff:0.0.0.0", Unspecified, Embedding::Ipv4Mapped),
        ("::ffff:8.8.8.8", Public, Embedding::Ipv4Mapped),
        ("::127.0.0.1", Loopback, Embedding::Ipv4Compatible),
        ("::192.168.1.1", Private, Embedding::Ipv4Compatible),
        ("::0.0.0.2", ThisNetwork, Embedding::Ipv4Compatible),
        ("::8.8.4.4", Public, Embedding::Ipv4Compatible),
        ("64:ff9b::127.0.0.1", Loopback, Embedding::Nat64),
        ("64:ff9b::a9fe:a9fe", CloudMetadata, Embedding::Nat64),
        ("64:ff9b::100.64.0.1", SharedNat, Embedding::Nat64),
        ("64:ff9b::1.1.1.1", Public, Embedding::Nat64),
        ("2002:7f00:1::", Loopback, Embedding::SixToFour),
        ("2002:c0a8:101::1", Private, Embedding::SixToFour),
        ("2002:a9fe:a9fe:1::1", CloudMetadata, Embedding::SixToFour),
        ("2002:e000:1::", Multicast, Embedding::SixToFour),
        ("2002:808:808::1", Public, Embedding::SixToFour),
    ];

    #[test]
    fn every_address_class_is_recognised_and_only_public_passes() {
        for (text, expected) in CASES {
            let ip: IpAddr = text.parse().unwrap();
            let got = classify(ip);
            assert_eq!(got.class, *expected, "{text}");
            assert_eq!(got.embedded_in, None, "{text}");
            assert_eq!(got.is_public(), *expected == Public, "{text}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4_they_carry() {
        for (text, expected, embedding) in EMBEDDED {
            let ip: IpAddr = text.parse().unwrap();
            let got = classify(ip);
            assert_eq!(got.class, *expected, "{text}");
            assert_eq!(got.embedded_in, Some(*embedding), "{text}");
            assert_eq!(got.is_public(), *expected == Public, "{text}");
        }
    }

    #[test]
    fn the_description_names_the_class_and_the_embedding() {
        let c = classify("::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(
            c.to_string(),
            "loopback, embedded in an IPv6 address (IPv4-mapped)"
        );
        let c = classify("169.254.169.254".parse().unwrap());
        assert_eq!(c.to_string(), "cloud metadata");
    }
}
