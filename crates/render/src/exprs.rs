//! Expression helpers the renderer needs beyond the dataplane's rule
//! vocabulary (`tortie_dataplane::nft::rules`): address and port ranges,
//! lookups keyed `id . <packet fields>`, ICMP type/code, negated
//! interface prefixes and mark tests, and the statements the dataplane's
//! codec carries as raw expressions — `reject`, `masq`, `nat` (snat),
//! `notrack` — whose attributes are laid out here exactly as the kernel
//! dumps them (`nft_reject_dump`, `nft_masq_dump`, `nft_nat_dump`), so a
//! rule read back from the kernel compares equal to the rule we sent.
//!
//! Registers: every match loads into `NFT_REG32_00` onward and is used
//! at once, so matches never clobber each other.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use tortie_calc::rules::{IcmpMatch, PortRange};
use tortie_dataplane::nft::expr::{CmpOp, LOG_LEVEL_WARNING, MetaKey, PayloadBase, RangeOp};
use tortie_dataplane::nft::rules::{Addr, Iface, IpFamily};
use tortie_dataplane::nft::{Data, Expr, Reg};

const R0: Reg = Reg::r32(0);

/// Converts calc's family to the dataplane's.
pub fn family(f: tortie_calc::rules::IpFamily) -> IpFamily {
    match f {
        tortie_calc::rules::IpFamily::V4 => IpFamily::V4,
        tortie_calc::rules::IpFamily::V6 => IpFamily::V6,
    }
}

/// The family of an address.
pub fn family_of(addr: &IpAddr) -> IpFamily {
    match addr {
        IpAddr::V4(_) => IpFamily::V4,
        IpAddr::V6(_) => IpFamily::V6,
    }
}

/// The family of a network.
pub fn family_of_net(net: &IpNet) -> IpFamily {
    match net {
        IpNet::V4(_) => IpFamily::V4,
        IpNet::V6(_) => IpFamily::V6,
    }
}

/// Loads the packet's source or destination address into `dreg`.
pub fn load_addr(f: IpFamily, addr: Addr, dreg: Reg) -> Expr {
    let (offset, len) = match (f, addr) {
        (IpFamily::V4, Addr::Source) => (12, 4),
        (IpFamily::V4, Addr::Destination) => (16, 4),
        (IpFamily::V6, Addr::Source) => (8, 16),
        (IpFamily::V6, Addr::Destination) => (24, 16),
    };
    Expr::Payload {
        base: PayloadBase::NETWORK,
        offset,
        len,
        dreg,
    }
}

/// Loads the source or destination port (TCP, UDP, SCTP) into `dreg`.
pub fn load_port(addr: Addr, dreg: Reg) -> Expr {
    Expr::Payload {
        base: PayloadBase::TRANSPORT,
        offset: match addr {
            Addr::Source => 0,
            Addr::Destination => 2,
        },
        len: 2,
        dreg,
    }
}

/// `from <= R0 <= to` (or not, with `negate`); a single value is a cmp.
fn in_range(from: Vec<u8>, to: Vec<u8>, negate: bool) -> Expr {
    if from == to {
        return Expr::Cmp {
            sreg: R0,
            op: if negate { CmpOp::NEQ } else { CmpOp::EQ },
            data: from,
        };
    }
    Expr::Range {
        sreg: R0,
        op: if negate { RangeOp::NEQ } else { RangeOp::EQ },
        from,
        to,
    }
}

/// The first and last address of a network, as bytes.
pub fn net_bounds(net: &IpNet) -> (Vec<u8>, Vec<u8>) {
    match net {
        IpNet::V4(n) => (
            n.network().octets().to_vec(),
            n.broadcast().octets().to_vec(),
        ),
        IpNet::V6(n) => (
            n.network().octets().to_vec(),
            n.broadcast().octets().to_vec(),
        ),
    }
}

/// The packet's address is (not, with `negate`) in `net`.
pub fn addr_in_net(addr: Addr, net: &IpNet, negate: bool) -> Vec<Expr> {
    let (first, last) = net_bounds(net);
    vec![
        load_addr(family_of_net(net), addr, R0),
        in_range(first, last, negate),
    ]
}

/// The packet's port is (not) in `range`.
pub fn port_in_range(addr: Addr, range: PortRange, negate: bool) -> Vec<Expr> {
    vec![
        load_port(addr, R0),
        in_range(
            range.min.to_be_bytes().to_vec(),
            range.max.to_be_bytes().to_vec(),
            negate,
        ),
    ]
}

/// Looks up `id . <what loads puts in the registers after it>` in `set`.
/// `loads` must fill `NFT_REG32_01` onward in key order.
pub fn id_lookup(set: &str, id: u32, loads: Vec<Expr>, invert: bool) -> Vec<Expr> {
    let mut v = vec![Expr::Immediate {
        dreg: R0,
        data: Data::Value(id.to_be_bytes().to_vec()),
    }];
    v.extend(loads);
    v.push(Expr::Lookup {
        set: set.to_string(),
        sreg: R0,
        dreg: None,
        invert,
    });
    v
}

/// The key loads of a named-port lookup: address, l4 protocol, port.
pub fn named_port_loads(f: IpFamily, addr: Addr) -> Vec<Expr> {
    let addr_regs = match f {
        IpFamily::V4 => 1,
        IpFamily::V6 => 4,
    };
    vec![
        load_addr(f, addr, Reg::r32(1)),
        Expr::Meta {
            key: MetaKey::L4PROTO,
            dreg: Reg::r32(1 + addr_regs),
        },
        load_port(addr, Reg::r32(2 + addr_regs)),
    ]
}

/// The layer 4 protocol differs from `proto`.
pub fn l4proto_not(proto: u8) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::L4PROTO,
            dreg: R0,
        },
        Expr::Cmp {
            sreg: R0,
            op: CmpOp::NEQ,
            data: vec![proto],
        },
    ]
}

/// ICMP (or ICMPv6) type and optional code match; with `negate`, the
/// packet's (type, code) differs. Use after the protocol match.
pub fn icmp(m: IcmpMatch, negate: bool) -> Vec<Expr> {
    let (len, data) = match m.code {
        Some(code) => (2, vec![m.icmp_type, code]),
        None => (1, vec![m.icmp_type]),
    };
    vec![
        Expr::Payload {
            base: PayloadBase::TRANSPORT,
            offset: 0,
            len,
            dreg: R0,
        },
        Expr::Cmp {
            sreg: R0,
            op: if negate { CmpOp::NEQ } else { CmpOp::EQ },
            data,
        },
    ]
}

/// The interface name does not start with `prefix` (or is not `name`
/// exactly, when `exact`).
pub fn ifname_not(dir: Iface, name: &str, exact: bool) -> Vec<Expr> {
    let data = if exact {
        tortie_dataplane::nft::model::ifname_bytes(name)
    } else {
        name.as_bytes().to_vec()
    };
    vec![
        Expr::Meta {
            key: match dir {
                Iface::In => MetaKey::IIFNAME,
                Iface::Out => MetaKey::OIFNAME,
            },
            dreg: R0,
        },
        Expr::Cmp {
            sreg: R0,
            op: CmpOp::NEQ,
            data,
        },
    ]
}

/// Matches when none of `bits` is set in the packet mark.
pub fn mark_none(bits: u32) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::MARK,
            dreg: R0,
        },
        Expr::Bitwise {
            sreg: R0,
            dreg: R0,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: R0,
            op: CmpOp::EQ,
            data: vec![0; 4],
        },
    ]
}

/// `log prefix "<prefix>"` at the kernel's default level.
pub fn log(prefix: &str) -> Expr {
    Expr::Log {
        prefix: Some(prefix.to_string()),
        level: LOG_LEVEL_WARNING,
    }
}

/// Netlink attributes (`struct nlattr`: length, type, value padded to 4).
fn attrs(list: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ty, value) in list {
        let len = u16::try_from(4 + value.len()).expect("attribute values here are a few bytes");
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    out
}

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

// linux/netfilter/nf_tables.h and nf_nat.h.
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
const NFT_REJECT_ICMPX_ADMIN_PROHIBITED: u8 = 3;
const NFTA_MASQ_FLAGS: u16 = 1;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_ADDR_MAX: u16 = 4;
const NFTA_NAT_FLAGS: u16 = 7;
const NFT_NAT_SNAT: u32 = 0;
const NFPROTO_IPV4: u32 = 2;
const NF_NAT_RANGE_MAP_IPS: u32 = 1;
const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 16;

/// `reject with icmpx admin-prohibited` (TCP peers see it as
/// unreachable; valid in the input, forward and output hooks).
pub fn reject() -> Expr {
    Expr::Other {
        name: "reject".into(),
        data: attrs(&[
            (NFTA_REJECT_TYPE, be32(NFT_REJECT_ICMPX_UNREACH)),
            (
                NFTA_REJECT_ICMP_CODE,
                vec![NFT_REJECT_ICMPX_ADMIN_PROHIBITED],
            ),
        ]),
    }
}

/// `masquerade fully-random` (dataplane.md §3: `--random-fully`).
pub fn masquerade() -> Expr {
    Expr::Other {
        name: "masq".into(),
        data: attrs(&[(NFTA_MASQ_FLAGS, be32(NF_NAT_RANGE_PROTO_RANDOM_FULLY))]),
    }
}

/// `snat ip to <addr>` (`natOutgoingAddress`).
pub fn snat_to(addr: Ipv4Addr) -> Vec<Expr> {
    let reg = be32(R0.0);
    vec![
        Expr::Immediate {
            dreg: R0,
            data: Data::Value(addr.octets().to_vec()),
        },
        Expr::Other {
            name: "nat".into(),
            data: attrs(&[
                (NFTA_NAT_TYPE, be32(NFT_NAT_SNAT)),
                (NFTA_NAT_FAMILY, be32(NFPROTO_IPV4)),
                (NFTA_NAT_REG_ADDR_MIN, reg.clone()),
                (NFTA_NAT_REG_ADDR_MAX, reg),
                (NFTA_NAT_FLAGS, be32(NF_NAT_RANGE_MAP_IPS)),
            ]),
        },
    ]
}

/// `notrack`: no conntrack entry for this packet (raw priority only).
pub fn notrack() -> Expr {
    Expr::Other {
        name: "notrack".into(),
        data: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_like_netlink() {
        let a = attrs(&[(2, vec![3])]);
        assert_eq!(a.len(), 8);
        assert_eq!(
            &a[..4],
            &[5u16.to_ne_bytes(), 2u16.to_ne_bytes()].concat()[..]
        );
        assert_eq!(a[4], 3);
    }

    #[test]
    fn single_ports_compare_and_ranges_range() {
        let one = port_in_range(Addr::Destination, PortRange { min: 80, max: 80 }, false);
        assert!(matches!(one[1], Expr::Cmp { op: CmpOp::EQ, .. }));
        let many = port_in_range(Addr::Source, PortRange { min: 1, max: 9 }, true);
        assert!(matches!(
            many[1],
            Expr::Range {
                op: RangeOp::NEQ,
                ..
            }
        ));
    }
}
