//! Building blocks of tortie's rules, as expression lists that chain
//! together: `[ct_state(..), verdict(Accept)].concat()` is one rule.
//!
//! Layout decisions live here:
//! - Selector membership is one lookup in one big concatenated interval
//!   set per IP family, keyed `selector id . address`
//!   ([`selector_set`], elements by [`selector_key`]). The id (big-endian
//!   `mark`, shown by `nft` as e.g. `0x00000007`) goes into register
//!   `NFT_REG32_00` by `immediate`, the packet's address into the
//!   registers after it by `payload`, and one `lookup` answers "is the
//!   source in selector 7". A few large sets instead of one per selector:
//!   nftables' load cost follows the number of sets and of rules
//!   referencing them, not their size. Ranges make CIDRs (network sets)
//!   and single addresses (workloads) one kind of element. A selector
//!   whose members are all single addresses (every selector of workloads
//!   only) lives instead in the family's *host* selector set
//!   ([`host_selector_set`], [`host_selector_key`]): exact `id . address`
//!   elements in a hash, where adding or removing one costs the same at
//!   any set size, unlike the interval set's pipapo backend, whose every
//!   change grows with the whole set.
//! - Dispatch to per-endpoint chains is a verdict map keyed by interface
//!   name ([`dispatch`]); one lookup replaces a rule per endpoint.
//! - Mark bits are host-order 32-bit values (as `meta mark` is);
//!   [`mark_set`] / [`mark_clear`] rewrite only the given bits.
//!
//! Hard cases: in an `inet` table the address payloads are only valid
//! for their family, so every address match starts with a `meta nfproto`
//! check; interface names compare as NUL-padded 16-byte strings, and a
//! trailing `*` makes a prefix match (only the prefix bytes compared).

use std::net::IpAddr;

use ipnet::IpNet;

use super::expr::{CmpOp, CtKey, Data, Expr, MetaKey, PayloadBase, Reg, Verdict};
use super::model::{Key, KeyField, SetSpec, concat_key, ifname_bytes};

/// Conntrack state bits (`NF_CT_STATE_BIT` of `enum ip_conntrack_info`).
pub const CT_INVALID: u32 = 1;
pub const CT_ESTABLISHED: u32 = 2;
pub const CT_RELATED: u32 = 4;
pub const CT_NEW: u32 = 8;

/// Which interface of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iface {
    In,
    Out,
}

/// Which address of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    Source,
    Destination,
}

/// An IP family inside an `inet` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

const R0: Reg = Reg::r32(0);

fn cmp(sreg: Reg, op: CmpOp, data: Vec<u8>) -> Expr {
    Expr::Cmp { sreg, op, data }
}

/// The rule's verdict.
pub fn verdict(v: Verdict) -> Expr {
    Expr::Immediate {
        dreg: Reg::VERDICT,
        data: Data::Verdict(v),
    }
}

/// Matches when the conntrack state is any of `states`.
pub fn ct_state(states: u32) -> Vec<Expr> {
    vec![
        Expr::Ct {
            key: CtKey::STATE,
            dreg: R0,
            direction: None,
        },
        Expr::Bitwise {
            sreg: R0,
            dreg: R0,
            mask: states.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        cmp(R0, CmpOp::NEQ, vec![0; 4]),
    ]
}

fn ifname_key(dir: Iface) -> MetaKey {
    match dir {
        Iface::In => MetaKey::IIFNAME,
        Iface::Out => MetaKey::OIFNAME,
    }
}

/// Matches an interface name; `cali*` matches the prefix.
pub fn ifname(dir: Iface, pattern: &str) -> Vec<Expr> {
    let data = match pattern.strip_suffix('*') {
        Some(prefix) => prefix.as_bytes().to_vec(),
        None => ifname_bytes(pattern),
    };
    vec![
        Expr::Meta {
            key: ifname_key(dir),
            dreg: R0,
        },
        cmp(R0, CmpOp::EQ, data),
    ]
}

/// Looks the interface name up in a verdict map (jump/goto its chain);
/// no verdict when absent, so the rule after handles unknown names.
pub fn dispatch(dir: Iface, map: &str) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: ifname_key(dir),
            dreg: R0,
        },
        Expr::Lookup {
            set: map.to_string(),
            sreg: R0,
            dreg: Some(Reg::VERDICT),
            invert: false,
        },
    ]
}

/// Matches the packet's IP family.
pub fn nfproto(f: IpFamily) -> Vec<Expr> {
    let n = match f {
        IpFamily::V4 => 2,
        IpFamily::V6 => 10,
    };
    vec![
        Expr::Meta {
            key: MetaKey::NFPROTO,
            dreg: R0,
        },
        cmp(R0, CmpOp::EQ, vec![n]),
    ]
}

/// Matches the layer 4 protocol (6 TCP, 17 UDP, 1 ICMP, ...).
pub fn l4proto(proto: u8) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::L4PROTO,
            dreg: R0,
        },
        cmp(R0, CmpOp::EQ, vec![proto]),
    ]
}

/// Matches a TCP/UDP destination port (use after [`l4proto`]).
pub fn dport(port: u16) -> Vec<Expr> {
    vec![
        Expr::Payload {
            base: PayloadBase::TRANSPORT,
            offset: 2,
            len: 2,
            dreg: R0,
        },
        cmp(R0, CmpOp::EQ, port.to_be_bytes().to_vec()),
    ]
}

/// The selector set's shape for a family: `mark . ipv4_addr` (or
/// `ipv6_addr`), with ranges.
pub fn selector_set(f: IpFamily) -> SetSpec {
    let addr = match f {
        IpFamily::V4 => KeyField::IPV4_ADDR,
        IpFamily::V6 => KeyField::IPV6_ADDR,
    };
    SetSpec::interval(vec![KeyField::MARK, addr])
}

/// The host selector set's shape for a family: `mark . ipv4_addr` (or
/// `ipv6_addr`), exact elements (a hash).
pub fn host_selector_set(f: IpFamily) -> SetSpec {
    let addr = match f {
        IpFamily::V4 => KeyField::IPV4_ADDR,
        IpFamily::V6 => KeyField::IPV6_ADDR,
    };
    SetSpec::plain(vec![KeyField::MARK, addr])
}

/// The host selector set element putting `addr` in selector `id`.
pub fn host_selector_key(id: u32, addr: IpAddr) -> Key {
    let id = id.to_be_bytes();
    match addr {
        IpAddr::V4(a) => Key::exact(concat_key(&[&id, &a.octets()])),
        IpAddr::V6(a) => Key::exact(concat_key(&[&id, &a.octets()])),
    }
}

/// The selector set element putting `net` in selector `id`.
pub fn selector_key(id: u32, net: IpNet) -> Key {
    let (first, last) = match net {
        IpNet::V4(n) => (
            n.network().octets().to_vec(),
            n.broadcast().octets().to_vec(),
        ),
        IpNet::V6(n) => (
            n.network().octets().to_vec(),
            n.broadcast().octets().to_vec(),
        ),
    };
    let id = id.to_be_bytes();
    Key::range(concat_key(&[&id, &first]), concat_key(&[&id, &last]))
}

/// Matches when the packet's address is (with `invert`: is not) in
/// selector `id` of `set` (a [`selector_set`] of the family).
pub fn addr_in_selector(f: IpFamily, addr: Addr, set: &str, id: u32, invert: bool) -> Vec<Expr> {
    let (offset, len) = match (f, addr) {
        (IpFamily::V4, Addr::Source) => (12, 4),
        (IpFamily::V4, Addr::Destination) => (16, 4),
        (IpFamily::V6, Addr::Source) => (8, 16),
        (IpFamily::V6, Addr::Destination) => (24, 16),
    };
    let mut v = nfproto(f);
    v.extend([
        Expr::Immediate {
            dreg: R0,
            data: Data::Value(id.to_be_bytes().to_vec()),
        },
        Expr::Payload {
            base: PayloadBase::NETWORK,
            offset,
            len,
            dreg: Reg::r32(1),
        },
        Expr::Lookup {
            set: set.to_string(),
            sreg: R0,
            dreg: None,
            invert,
        },
    ]);
    v
}

fn mark_rewrite(mask: u32, xor: u32) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::MARK,
            dreg: R0,
        },
        Expr::Bitwise {
            sreg: R0,
            dreg: R0,
            mask: mask.to_ne_bytes().to_vec(),
            xor: xor.to_ne_bytes().to_vec(),
        },
        Expr::MetaSet {
            key: MetaKey::MARK,
            sreg: R0,
        },
    ]
}

/// Sets `bits` in the packet mark.
pub fn mark_set(bits: u32) -> Vec<Expr> {
    mark_rewrite(!bits, bits)
}

/// Clears `bits` in the packet mark.
pub fn mark_clear(bits: u32) -> Vec<Expr> {
    mark_rewrite(!bits, 0)
}

/// Matches when all of `bits` are set in the packet mark.
pub fn mark_has(bits: u32) -> Vec<Expr> {
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
        cmp(R0, CmpOp::EQ, bits.to_ne_bytes().to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_keys_cover_the_network() {
        let k = selector_key(7, "10.65.1.0/24".parse().expect("valid"));
        assert_eq!(k.start, vec![0, 0, 0, 7, 10, 65, 1, 0]);
        assert_eq!(k.end, Some(vec![0, 0, 0, 7, 10, 65, 1, 255]));
        let host = selector_key(1, "fd00::1/128".parse().expect("valid"));
        assert_eq!(host.start.len(), 20);
        assert_eq!(Some(host.start.clone()), host.end);
        let exact = host_selector_key(7, "10.65.1.9".parse().expect("valid"));
        assert_eq!(exact.start, vec![0, 0, 0, 7, 10, 65, 1, 9]);
        assert_eq!(exact.end, None);
        assert_eq!(host_selector_set(IpFamily::V6).key_len(), 20);
    }

    #[test]
    fn prefix_interface_match_compares_only_the_prefix() {
        let e = ifname(Iface::In, "cali*");
        assert_eq!(e[1], cmp(R0, CmpOp::EQ, b"cali".to_vec()));
        let exact = ifname(Iface::Out, "eth0");
        assert_eq!(exact[1], cmp(R0, CmpOp::EQ, ifname_bytes("eth0")));
    }
}
