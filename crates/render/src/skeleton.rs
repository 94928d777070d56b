//! The fixed part of the table: the base chains on each hook, the
//! dispatch chains and verdict maps that send a packet to its endpoint's
//! chain, failsafe chains, and NAT outgoing (dataplane.md §3, §5).
//!
//! Base chains (all policy accept; tortie only drops what policy denies):
//! - `raw-PREROUTING` / `raw-OUTPUT` (priority -300, before conntrack):
//!   untracked (doNotTrack) host-endpoint policy; allowed packets get
//!   `notrack` and are accepted with the ACCEPT bit set; VXLAN to and
//!   from peers is not tracked.
//! - `mangle-PREROUTING` (-150, before DNAT at -100): pre-DNAT policy; an
//!   Allow leaves the ACCEPT bit set, which skips the host-endpoint
//!   forward check.
//!
//!   These three exist only while the node has a host endpoint
//!   ([`host_endpoint_base_chains`]): every base chain is a hook every
//!   packet pays for, and without host endpoints they have nothing to
//!   do (pod-to-pod TCP on one node gained about 3.5% without them).
//! - `filter-INPUT`, `filter-FORWARD`, `filter-OUTPUT` (0): established
//!   and related flows accepted first, then untracked packets the raw
//!   policy allowed, then conntrack-INVALID dropped; then dispatch:
//!   workload interfaces (`cali*`) through `from-wl`/`to-wl` (the
//!   interface's chain group) to the
//!   group's `fw-g`/`tw-g` chain (an unknown `cali*` interface is dropped);
//!   other interfaces through the host-endpoint maps, a `*` host endpoint
//!   catching the rest (never workload interfaces or `lo`).
//! - `nat-POSTROUTING` (srcnat+10 = 110): masquerade from NAT-outgoing
//!   pools to destinations outside every pool.
//!
//! Workload → host: `wl-to-host` runs the workload's egress chain, then
//! `defaultEndpointToHostAction`. Host → workload: `host-to-wl` runs the
//! workload's ingress chain. Neither passes a named host endpoint; both
//! accept IPv6 neighbour discovery first.
//!
//! Hard cases: `ct state` means nothing before conntrack, so the raw
//! chains have no conntrack rules; `defaultEndpointToHostAction: Return`
//! falls through to the base chain's accept (other tables still vote, as
//! with Calico's RETURN); adjacent NAT pools are merged into one range
//! (the kernel's interval tree cannot hold ranges that touch).

use std::collections::BTreeSet;

use ipnet::IpNet;
use tortie_calc::EffectiveConfig;
use tortie_calc::config::{EndpointToHostAction, FailsafePort};
use tortie_calc::state::NatOutgoing;
use tortie_dataplane::nft::expr::{PayloadBase, RangeOp};
use tortie_dataplane::nft::rules::{
    self, Addr, CT_ESTABLISHED, CT_INVALID, CT_RELATED, Iface, IpFamily,
};
use tortie_dataplane::nft::{
    BaseChain, Chain, ChainType, Expr, Hook, Key, KeyField, Policy, Reg, Rule, SetSpec, Verdict,
};

use crate::exprs;
use crate::marks::Marks;
use crate::names::{self, HepClass};

/// `NF_CT_STATE_UNTRACKED_BIT`.
const CT_UNTRACKED: u32 = 64;

/// The verdict maps and NAT sets (the id-keyed sets are in `sets`).
pub fn set_specs() -> Vec<(&'static str, SetSpec)> {
    let vmap = || SetSpec::verdict_map(vec![KeyField::IFNAME]);
    let mut v = vec![
        (names::TO_WL, vmap()),
        (names::FROM_WL, vmap()),
        (
            names::VXLAN_PEERS4,
            SetSpec::plain(vec![KeyField::IPV4_ADDR]),
        ),
        (
            names::VXLAN_PEERS6,
            SetSpec::plain(vec![KeyField::IPV6_ADDR]),
        ),
    ];
    v.extend(HepClass::ALL.iter().map(|c| (c.map(), vmap())));
    v.extend([
        (
            names::NAT_MASQ4,
            SetSpec::interval(vec![KeyField::IPV4_ADDR]),
        ),
        (
            names::NAT_POOLS4,
            SetSpec::interval(vec![KeyField::IPV4_ADDR]),
        ),
        (
            names::NAT_MASQ6,
            SetSpec::interval(vec![KeyField::IPV6_ADDR]),
        ),
        (
            names::NAT_POOLS6,
            SetSpec::interval(vec![KeyField::IPV6_ADDR]),
        ),
    ]);
    v
}

fn rule(parts: Vec<Vec<Expr>>, comment: &str) -> Rule {
    let r = Rule::new(parts.concat());
    if comment.is_empty() {
        r
    } else {
        r.with_comment(comment)
    }
}

fn v(verdict: Verdict) -> Vec<Expr> {
    vec![rules::verdict(verdict)]
}

fn base(hook: Hook, chain_type: ChainType, priority: i32, rules: Vec<Rule>) -> Chain {
    Chain::base(
        BaseChain {
            hook,
            chain_type,
            priority,
            policy: Policy::Accept,
        },
        rules,
    )
}

/// The conntrack rules every filter base chain starts with.
fn conntrack(cfg: &EffectiveConfig, m: Marks) -> Vec<Rule> {
    let mut out = vec![
        rule(
            vec![
                rules::ct_state(CT_ESTABLISHED | CT_RELATED),
                v(Verdict::Accept),
            ],
            "established/related",
        ),
        rule(
            vec![
                rules::ct_state(CT_UNTRACKED),
                rules::mark_has(m.accept),
                v(Verdict::Accept),
            ],
            "allowed by untracked policy",
        ),
    ];
    if !cfg.disable_conntrack_invalid_check {
        out.push(rule(
            vec![rules::ct_state(CT_INVALID), v(Verdict::Drop)],
            "conntrack invalid",
        ));
    }
    out
}

/// VXLAN between nodes (spec/dataplane.md §2.2, §5): UDP to the VXLAN
/// port from (`Addr::Source`) or to (`Addr::Destination`) a known peer's
/// node address, per family, followed by `then`. Tunnel packets skip
/// conntrack (raw `notrack`) and host-endpoint policy, so a host endpoint
/// on the node's interface never cuts pod traffic between nodes.
fn vxlan_peer_rules(cfg: &EffectiveConfig, addr: Addr, then: &[Expr], comment: &str) -> Vec<Rule> {
    [
        (IpFamily::V4, names::VXLAN_PEERS4),
        (IpFamily::V6, names::VXLAN_PEERS6),
    ]
    .into_iter()
    .map(|(f, set)| {
        rule(
            vec![
                vxlan_packet(cfg, f),
                vec![
                    exprs::load_addr(f, addr, Reg::r32(0)),
                    Expr::Lookup {
                        set: set.to_string(),
                        sreg: Reg::r32(0),
                        dreg: None,
                        invert: false,
                    },
                ],
                then.to_vec(),
            ],
            comment,
        )
    })
    .collect()
}

/// Matches a VXLAN packet of family `f`: UDP to the VXLAN port.
fn vxlan_packet(cfg: &EffectiveConfig, f: IpFamily) -> Vec<Expr> {
    [
        rules::nfproto(f),
        rules::l4proto(17),
        rules::dport(cfg.vxlan_port),
    ]
    .concat()
}

/// Drops VXLAN from anything but a known peer, for the families in use.
fn vxlan_from_unknown(cfg: &EffectiveConfig) -> Vec<Rule> {
    [
        (IpFamily::V4, cfg.vxlan_enabled_v4),
        (IpFamily::V6, cfg.vxlan_enabled_v6),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(f, _)| {
        rule(
            vec![vxlan_packet(cfg, f), v(Verdict::Drop)],
            "VXLAN from an unknown host",
        )
    })
    .collect()
}

/// One rule per workload interface prefix: `<dir>ifname "<prefix>*" <verdict>`.
fn per_prefix(cfg: &EffectiveConfig, dir: Iface, verdict: Verdict, comment: &str) -> Vec<Rule> {
    cfg.interface_prefixes
        .iter()
        .map(|p| {
            rule(
                vec![rules::ifname(dir, &format!("{p}*")), v(verdict.clone())],
                comment,
            )
        })
        .collect()
}

fn jump(chain: &str) -> Vec<Expr> {
    v(Verdict::Jump(chain.to_string()))
}

/// The raw and mangle base chains, by name: untracked and pre-DNAT
/// host-endpoint policy, failsafe before them, and VXLAN tunnel packets
/// exempted. Installed only while the node has a host endpoint.
pub fn host_endpoint_base_chains(cfg: &EffectiveConfig, m: Marks) -> Vec<(&'static str, Chain)> {
    let clear_all = rule(vec![rules::mark_clear(m.all())], "");
    let notrack_allowed = rule(
        vec![
            rules::mark_has(m.accept),
            vec![exprs::notrack()],
            v(Verdict::Accept),
        ],
        "allowed by untracked policy",
    );
    let untracked_tunnel = [exprs::notrack(), v(Verdict::Accept)[0].clone()];
    let accept = [v(Verdict::Accept)[0].clone()];
    let raw_pre = [
        vec![clear_all.clone()],
        vxlan_peer_rules(cfg, Addr::Source, &untracked_tunnel, "VXLAN from a peer"),
        per_prefix(cfg, Iface::In, Verdict::Accept, "workload traffic"),
        vec![
            rule(vec![jump(names::FAILSAFE_IN)], ""),
            rule(vec![jump(HepClass::FromRaw.dispatch_chain())], ""),
            notrack_allowed.clone(),
        ],
    ]
    .concat();
    let raw_out = [
        vec![clear_all.clone()],
        vxlan_peer_rules(cfg, Addr::Destination, &untracked_tunnel, "VXLAN to a peer"),
        per_prefix(cfg, Iface::Out, Verdict::Accept, "workload traffic"),
        vec![
            rule(vec![jump(names::FAILSAFE_OUT)], ""),
            rule(vec![jump(HepClass::ToRaw.dispatch_chain())], ""),
            notrack_allowed,
        ],
    ]
    .concat();
    let mangle_pre = [
        conntrack(cfg, m)[..2].to_vec(),
        vxlan_peer_rules(cfg, Addr::Source, &accept, "VXLAN from a peer"),
        vec![clear_all.clone()],
        per_prefix(cfg, Iface::In, Verdict::Accept, "workload traffic"),
        vec![
            rule(vec![jump(names::FAILSAFE_IN)], ""),
            rule(vec![jump(HepClass::FromPreDnat.dispatch_chain())], ""),
        ],
    ]
    .concat();
    vec![
        (
            names::RAW_PREROUTING,
            base(Hook::Prerouting, ChainType::Filter, -300, raw_pre),
        ),
        (
            names::RAW_OUTPUT,
            base(Hook::Output, ChainType::Filter, -300, raw_out),
        ),
        (
            names::MANGLE_PREROUTING,
            base(Hook::Prerouting, ChainType::Filter, -150, mangle_pre),
        ),
    ]
}

/// The base chains every node has (filter and NAT), by name.
pub fn base_chains(cfg: &EffectiveConfig, m: Marks) -> Vec<(&'static str, Chain)> {
    let clear_all = rule(vec![rules::mark_clear(m.all())], "");
    let accept = [v(Verdict::Accept)[0].clone()];
    let input = [
        conntrack(cfg, m),
        vxlan_peer_rules(cfg, Addr::Source, &accept, "VXLAN from a peer"),
        vxlan_from_unknown(cfg),
        vec![clear_all.clone()],
        per_prefix(
            cfg,
            Iface::In,
            Verdict::Goto(names::WL_TO_HOST.into()),
            "from workload",
        ),
        vec![
            rule(vec![jump(names::FAILSAFE_IN)], ""),
            rule(vec![jump(HepClass::FromHost.dispatch_chain())], ""),
        ],
    ]
    .concat();
    let forward = [
        conntrack(cfg, m),
        vec![
            rule(vec![rules::mark_clear(m.pass | m.scratch)], ""),
            rule(
                vec![
                    exprs::mark_none(m.accept),
                    jump(HepClass::FromForward.dispatch_chain()),
                ],
                "host endpoint forward policy unless pre-DNAT allowed",
            ),
        ],
        per_prefix(
            cfg,
            Iface::In,
            Verdict::Jump(names::FROM_WL_DISPATCH.into()),
            "from workload",
        ),
        per_prefix(
            cfg,
            Iface::Out,
            Verdict::Jump(names::TO_WL_DISPATCH.into()),
            "to workload",
        ),
        vec![rule(vec![jump(HepClass::ToForward.dispatch_chain())], "")],
    ]
    .concat();
    let output = [
        conntrack(cfg, m),
        vxlan_peer_rules(cfg, Addr::Destination, &accept, "VXLAN to a peer"),
        vec![clear_all],
        per_prefix(
            cfg,
            Iface::Out,
            Verdict::Goto(names::HOST_TO_WL.into()),
            "to workload",
        ),
        vec![
            rule(vec![jump(names::FAILSAFE_OUT)], ""),
            rule(vec![jump(HepClass::ToHost.dispatch_chain())], ""),
        ],
    ]
    .concat();
    vec![
        (
            names::FILTER_INPUT,
            base(Hook::Input, ChainType::Filter, 0, input),
        ),
        (
            names::FILTER_FORWARD,
            base(Hook::Forward, ChainType::Filter, 0, forward),
        ),
        (
            names::FILTER_OUTPUT,
            base(Hook::Output, ChainType::Filter, 0, output),
        ),
        (
            names::NAT_POSTROUTING,
            base(
                Hook::Postrouting,
                ChainType::Nat,
                110,
                vec![rule(vec![jump(names::NAT_OUTGOING)], "")],
            ),
        ),
    ]
}

fn failsafe(ports: &[FailsafePort], peer: Addr, comment: &str) -> Chain {
    Chain::regular(
        ports
            .iter()
            .map(|p| {
                let mut parts = Vec::new();
                if let Some(net) = &p.net {
                    parts.push(rules::nfproto(exprs::family_of_net(net)));
                    parts.push(exprs::addr_in_net(peer, net, false));
                }
                parts.push(rules::l4proto(p.protocol));
                parts.push(rules::dport(p.port));
                parts.push(v(Verdict::Accept));
                rule(parts, &format!("{comment} {}:{}", p.protocol, p.port))
            })
            .collect(),
    )
}

/// ICMPv6 neighbour discovery and MLD (types 130-136) between the host
/// and a workload, accepted before policy as Calico does: without it a
/// workload could not resolve its IPv6 gateway, nor the host the workload.
fn ndp() -> Rule {
    rule(
        vec![
            rules::nfproto(IpFamily::V6),
            rules::l4proto(58),
            vec![
                Expr::Payload {
                    base: PayloadBase::TRANSPORT,
                    offset: 0,
                    len: 1,
                    dreg: Reg::r32(0),
                },
                Expr::Range {
                    sreg: Reg::r32(0),
                    op: RangeOp::EQ,
                    from: vec![130],
                    to: vec![136],
                },
            ],
            v(Verdict::Accept),
        ],
        "IPv6 neighbour discovery",
    )
}

/// The regular chains that depend only on configuration.
pub fn fixed_chains(cfg: &EffectiveConfig) -> Vec<(&'static str, Chain)> {
    let dispatch = |dir, map| {
        Chain::regular(vec![
            rule(vec![rules::dispatch(dir, map)], ""),
            rule(vec![v(Verdict::Drop)], "unknown workload interface"),
        ])
    };
    let to_host = match cfg.default_endpoint_to_host_action {
        EndpointToHostAction::Drop => vec![rule(
            vec![v(Verdict::Drop)],
            "defaultEndpointToHostAction Drop",
        )],
        EndpointToHostAction::Accept => vec![rule(
            vec![v(Verdict::Accept)],
            "defaultEndpointToHostAction Accept",
        )],
        EndpointToHostAction::Return => Vec::new(),
    };
    vec![
        (names::FROM_WL_DISPATCH, dispatch(Iface::In, names::FROM_WL)),
        (names::TO_WL_DISPATCH, dispatch(Iface::Out, names::TO_WL)),
        (
            names::WL_TO_HOST,
            Chain::regular(
                [
                    vec![
                        ndp(),
                        rule(vec![jump(names::FROM_WL_DISPATCH)], "workload egress"),
                    ],
                    to_host,
                ]
                .concat(),
            ),
        ),
        (
            names::HOST_TO_WL,
            Chain::regular(vec![
                ndp(),
                rule(vec![jump(names::TO_WL_DISPATCH)], "workload ingress"),
                rule(vec![v(Verdict::Accept)], ""),
            ]),
        ),
        (
            names::FAILSAFE_IN,
            failsafe(&cfg.failsafe_inbound, Addr::Source, "failsafe in"),
        ),
        (
            names::FAILSAFE_OUT,
            failsafe(&cfg.failsafe_outbound, Addr::Destination, "failsafe out"),
        ),
    ]
}

/// The host-endpoint dispatch chains: the class's verdict map, then the
/// `*` endpoint's chain (`star`: its chain in each class, if any) for
/// interfaces that are neither workloads nor `lo`.
pub fn hep_dispatch_chains(
    cfg: &EffectiveConfig,
    star: &[(HepClass, String)],
) -> Vec<(&'static str, Chain)> {
    HepClass::ALL
        .iter()
        .map(|&class| {
            let dir = class.iface();
            let mut rs = vec![rule(vec![rules::dispatch(dir, class.map())], "")];
            if let Some((_, chain)) = star.iter().find(|(c, _)| *c == class) {
                let mut parts: Vec<Vec<Expr>> = cfg
                    .interface_prefixes
                    .iter()
                    .map(|p| exprs::ifname_not(dir, p, false))
                    .collect();
                parts.push(exprs::ifname_not(dir, "lo", true));
                parts.push(v(Verdict::Goto(chain.clone())));
                rs.push(rule(parts, "all-interfaces host endpoint"));
            }
            (class.dispatch_chain(), Chain::regular(rs))
        })
        .collect()
}

/// `nat-outgoing`: masquerade (or SNAT to `natOutgoingAddress`, IPv4)
/// from the NAT pools of each family that has some.
pub fn nat_chain(cfg: &EffectiveConfig, nat: &NatOutgoing) -> Chain {
    let mut rs = Vec::new();
    for (f, masq, pools) in [
        (IpFamily::V4, names::NAT_MASQ4, names::NAT_POOLS4),
        (IpFamily::V6, names::NAT_MASQ6, names::NAT_POOLS6),
    ] {
        if !nat
            .masquerade_pools
            .iter()
            .any(|p| exprs::family_of_net(p) == f)
        {
            continue;
        }
        let lookup = |addr, set: &str, invert| {
            vec![
                exprs::load_addr(f, addr, Reg::r32(0)),
                Expr::Lookup {
                    set: set.to_string(),
                    sreg: Reg::r32(0),
                    dreg: None,
                    invert,
                },
            ]
        };
        let action = match (f, cfg.nat_outgoing_address) {
            (IpFamily::V4, Some(a)) => exprs::snat_to(a),
            _ => vec![exprs::masquerade()],
        };
        rs.push(rule(
            vec![
                rules::nfproto(f),
                lookup(Addr::Source, masq, false),
                lookup(Addr::Destination, pools, true),
                action,
            ],
            "nat outgoing",
        ));
    }
    Chain::regular(rs)
}

/// Merged, non-touching ranges covering `nets` of one family.
fn merged_ranges(nets: impl Iterator<Item = IpNet>) -> Vec<(u128, u128)> {
    let mut ranges: Vec<(u128, u128)> = nets
        .map(|n| {
            let (a, b) = exprs::net_bounds(&n);
            (to_u128(&a), to_u128(&b))
        })
        .collect();
    ranges.sort();
    let mut out: Vec<(u128, u128)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn to_u128(bytes: &[u8]) -> u128 {
    bytes.iter().fold(0, |acc, b| (acc << 8) | u128::from(*b))
}

fn from_u128(v: u128, len: usize) -> Vec<u8> {
    v.to_be_bytes()[16 - len..].to_vec()
}

/// The elements each NAT set should hold.
pub fn nat_elements(nat: &NatOutgoing) -> Vec<(&'static str, BTreeSet<Key>)> {
    let keys = |nets: &BTreeSet<IpNet>, f: IpFamily| -> BTreeSet<Key> {
        let len = match f {
            IpFamily::V4 => 4,
            IpFamily::V6 => 16,
        };
        merged_ranges(
            nets.iter()
                .filter(|n| exprs::family_of_net(n) == f)
                .map(IpNet::trunc),
        )
        .into_iter()
        .map(|(a, b)| Key::range(from_u128(a, len), from_u128(b, len)))
        .collect()
    };
    vec![
        (names::NAT_MASQ4, keys(&nat.masquerade_pools, IpFamily::V4)),
        (names::NAT_POOLS4, keys(&nat.all_pools, IpFamily::V4)),
        (names::NAT_MASQ6, keys(&nat.masquerade_pools, IpFamily::V6)),
        (names::NAT_POOLS6, keys(&nat.all_pools, IpFamily::V6)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_base_chain_accepts_established_flows_first() {
        let cfg = EffectiveConfig::default();
        let chains = base_chains(&cfg, Marks::default());
        let established = rules::ct_state(CT_ESTABLISHED | CT_RELATED);
        for (name, chain) in &chains {
            let base = chain.base.expect("base chains");
            if base.priority < -200 || base.chain_type == ChainType::Nat {
                continue; // before conntrack / NAT sees new flows only
            }
            assert!(
                chain.rules[0].exprs.starts_with(&established),
                "{name} starts with established"
            );
        }
        let input = &chains
            .iter()
            .find(|(n, _)| *n == names::FILTER_INPUT)
            .expect("input")
            .1;
        assert!(
            input.rules[2]
                .exprs
                .starts_with(&rules::ct_state(CT_INVALID))
        );
    }

    #[test]
    fn adjacent_pools_merge_and_families_split() {
        let nat = NatOutgoing {
            masquerade_pools: ["10.0.0.0/24", "10.0.1.0/24", "fd00::/64"]
                .iter()
                .map(|s| s.parse().expect("net"))
                .collect(),
            all_pools: BTreeSet::new(),
        };
        let e = nat_elements(&nat);
        let masq4 = &e[0].1;
        assert_eq!(masq4.len(), 1);
        let k = masq4.iter().next().expect("one");
        assert_eq!(k.start, vec![10, 0, 0, 0]);
        assert_eq!(k.end, Some(vec![10, 0, 1, 255]));
        assert_eq!(e[2].1.len(), 1);
        let chain = nat_chain(&EffectiveConfig::default(), &nat);
        assert_eq!(chain.rules.len(), 2, "one rule per family with pools");
    }
}
