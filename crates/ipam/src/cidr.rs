//! Address arithmetic shared by every IPAM module: addresses as integers,
//! blocks as aligned sub-networks, ordinals as offsets inside a block, and
//! the dashed CIDR form used in datastore keys (ipam.md §1, §2).
//!
//! Hard cases: both families go through `u128`, so IPv4 and IPv6 share one
//! code path; the size of `::/0` does not fit in a `u128` and saturates
//! (no block or pool that IPAM handles is that large).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An IP family, as IPAM names it in keys (`ipv4` / `ipv6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub fn of_net(net: &IpNet) -> IpVersion {
        match net {
            IpNet::V4(_) => IpVersion::V4,
            IpNet::V6(_) => IpVersion::V6,
        }
    }

    pub fn of_addr(ip: &IpAddr) -> IpVersion {
        match ip {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            IpVersion::V4 => 32,
            IpVersion::V6 => 128,
        }
    }

    /// The key segment: `ipv4` or `ipv6`.
    pub fn key_segment(self) -> &'static str {
        match self {
            IpVersion::V4 => "ipv4",
            IpVersion::V6 => "ipv6",
        }
    }

    /// 4 or 6, as in "IPv4".
    pub fn number(self) -> u8 {
        match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        }
    }
}

impl fmt::Display for IpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IPv{}", self.number())
    }
}

/// The address as an integer (IPv4 in the low 32 bits).
pub fn addr_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of family `version` with integer value `n` (IPv4 takes the
/// low 32 bits).
pub fn u128_to_addr(version: IpVersion, n: u128) -> IpAddr {
    match version {
        // Truncation is the intent: callers only pass in-range values.
        IpVersion::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpVersion::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// Number of host bits of a network.
pub fn host_bits(net: &IpNet) -> u8 {
    net.max_prefix_len() - net.prefix_len()
}

/// Number of addresses in a network (saturating at `u128::MAX` for `::/0`).
pub fn net_size(net: &IpNet) -> u128 {
    1u128
        .checked_shl(u32::from(host_bits(net)))
        .unwrap_or(u128::MAX)
}

/// First and last address of a network, as integers (inclusive).
pub fn net_range(net: &IpNet) -> (u128, u128) {
    (addr_to_u128(net.network()), addr_to_u128(net.broadcast()))
}

/// A network from an address and prefix length, host bits cleared.
pub fn masked(ip: IpAddr, prefix: u8) -> Option<IpNet> {
    IpNet::new(ip, prefix).ok().map(|n| n.trunc())
}

/// Whether `inner` lies entirely inside `outer` (same family).
pub fn net_within(inner: &IpNet, outer: &IpNet) -> bool {
    outer.contains(inner)
}

/// Offset of `ip` inside `block`, if it is inside.
pub fn ordinal_of(block: &IpNet, ip: IpAddr) -> Option<u32> {
    if !block.contains(&ip) {
        return None;
    }
    let offset = addr_to_u128(ip) - addr_to_u128(block.network());
    u32::try_from(offset).ok()
}

/// The address at `ordinal` inside `block` (the caller checks the range).
pub fn address_at(block: &IpNet, ordinal: u32) -> IpAddr {
    let base = addr_to_u128(block.network());
    u128_to_addr(IpVersion::of_net(block), base + u128::from(ordinal))
}

/// `10.0.0.0/26` -> `10.0.0.0-26`: the form CIDRs take inside keys.
pub fn dashed(net: &IpNet) -> String {
    format!("{}-{}", net.network(), net.prefix_len())
}

/// Parses the dashed key form back (host bits must be clear).
pub fn parse_dashed(text: &str) -> Option<IpNet> {
    let (addr, prefix) = text.rsplit_once('-')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let net = IpNet::new(addr, prefix).ok()?;
    (net.trunc() == net).then_some(net)
}

/// Parses a strictly masked CIDR (`10.0.0.0/26`).
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    let net: IpNet = text.trim().parse().ok()?;
    (net.trunc() == net).then_some(net)
}

/// Parses `10.0.0.5`, `10.0.0.5/32` or `10.0.0.0/24` (host bits allowed) and
/// returns the network it names (an address becomes a /32 or /128).
pub fn parse_ip_or_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(IpNet::V4(Ipv4Net::from(a))),
        IpAddr::V6(a) => Some(IpNet::V6(Ipv6Net::from(a))),
    }
}

/// The address part of `10.0.0.5/32`, `10.0.0.5` or `10.0.0.5/26`.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    text.parse::<IpNet>().ok().map(|n| n.addr())
}

/// `ip` with the prefix length of `block` (e.g. `10.0.0.5/26`).
pub fn with_block_prefix(ip: IpAddr, block: &IpNet) -> IpNet {
    IpNet::new(ip, block.prefix_len()).expect("a block's prefix length is valid for its family")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn dashed_form_round_trips_for_both_families() {
        for text in ["10.0.0.0/26", "fd00::/122", "192.168.255.192/26", "::/0"] {
            let n = net(text);
            let d = dashed(&n);
            assert_eq!(parse_dashed(&d), Some(n), "{d}");
        }
        assert_eq!(dashed(&net("10.0.0.0/26")), "10.0.0.0-26");
        assert_eq!(dashed(&net("fd00::/122")), "fd00::-122");
        assert_eq!(parse_dashed("10.0.0.1-26"), None, "host bits set");
        assert_eq!(parse_dashed("10.0.0.0"), None);
        assert_eq!(parse_dashed("10.0.0.0-33"), None);
    }

    #[test]
    fn ordinals_and_addresses_are_inverse() {
        let b = net("10.0.0.64/26");
        let ip: IpAddr = "10.0.0.70".parse().expect("ip");
        assert_eq!(ordinal_of(&b, ip), Some(6));
        assert_eq!(address_at(&b, 6), ip);
        assert_eq!(ordinal_of(&b, "10.0.0.128".parse().expect("ip")), None);
        let b6 = net("fd00::40/122");
        let ip6: IpAddr = "fd00::7f".parse().expect("ip");
        assert_eq!(ordinal_of(&b6, ip6), Some(63));
        assert_eq!(address_at(&b6, 63), ip6);
    }

    #[test]
    fn sizes_and_masks() {
        assert_eq!(net_size(&net("10.0.0.0/26")), 64);
        assert_eq!(net_size(&net("fd00::/64")), 1u128 << 64);
        assert_eq!(net_size(&net("::/0")), u128::MAX);
        assert_eq!(
            masked("10.1.2.77".parse().expect("ip"), 26),
            Some(net("10.1.2.64/26"))
        );
        assert_eq!(
            parse_ip_or_cidr("10.0.0.7"),
            Some(net("10.0.0.7/32")),
            "a bare address is a host route"
        );
        assert_eq!(parse_ip_or_cidr("10.0.0.7/24"), Some(net("10.0.0.0/24")));
        assert_eq!(parse_cidr("10.0.0.7/24"), None);
        assert_eq!(
            parse_address("fd00::5/128"),
            Some("fd00::5".parse().expect("ip"))
        );
    }
}
