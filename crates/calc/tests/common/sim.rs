//! A tiny interpreter of the compiled local state: for one endpoint chain
//! and one packet, what the per-endpoint chain layout of policy.md §6 does
//! (tiers with end-of-tier drop, Pass skipping to the next tier, profiles,
//! final drop), with every selector looked up as IP set membership. It
//! stands in for the real dataplane when checking that explain agrees.

use std::net::IpAddr;

use tortie_calc::policy::{Direction, TierAction};
use tortie_calc::rules::{IpFamily, NamedPortProtocol};
use tortie_calc::state::{CompiledEntity, CompiledRule, LocalState, NamedPortMember, PolicyChain};
use tortie_model::rule::Action;

pub struct SimPacket {
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp: Option<(u8, u8)>,
}

fn in_set(s: &LocalState, id: &str, addr: IpAddr) -> bool {
    s.ip_sets
        .get(id)
        .unwrap_or_else(|| panic!("rule references missing set {id}"))
        .contains_addr(addr)
}

fn in_named(s: &LocalState, id: &str, addr: IpAddr, protocol: u8, port: Option<u16>) -> bool {
    let set = s
        .named_port_sets
        .get(id)
        .unwrap_or_else(|| panic!("rule references missing named port set {id}"));
    match (NamedPortProtocol::from_number(protocol), port) {
        (Some(protocol), Some(port)) => set.contains(&NamedPortMember {
            addr,
            protocol,
            port,
        }),
        _ => false,
    }
}

fn entity(s: &LocalState, e: &CompiledEntity, addr: IpAddr, port: Option<u16>, proto: u8) -> bool {
    if !e.nets.is_empty() && !e.nets.iter().any(|n| n.contains(&addr)) {
        return false;
    }
    if e.not_nets.iter().any(|n| n.contains(&addr)) {
        return false;
    }
    if e.ip_set.as_ref().is_some_and(|id| !in_set(s, id, addr)) {
        return false;
    }
    if e.not_ip_set.as_ref().is_some_and(|id| in_set(s, id, addr)) {
        return false;
    }
    if !e.ports.is_empty() || !e.named_port_sets.is_empty() {
        let numeric = port.is_some_and(|p| e.ports.iter().any(|r| r.contains(p)));
        let named = e
            .named_port_sets
            .iter()
            .any(|id| in_named(s, id, addr, proto, port));
        if !numeric && !named {
            return false;
        }
    }
    if port.is_some_and(|p| e.not_ports.iter().any(|r| r.contains(p))) {
        return false;
    }
    !e.not_named_port_sets
        .iter()
        .any(|id| in_named(s, id, addr, proto, port))
}

fn rule(s: &LocalState, r: &CompiledRule, p: &SimPacket) -> bool {
    let family = if p.src.is_ipv4() {
        IpFamily::V4
    } else {
        IpFamily::V6
    };
    if r.family.is_some_and(|f| f != family)
        || r.protocol.is_some_and(|x| x != p.protocol)
        || r.not_protocol.is_some_and(|x| x == p.protocol)
    {
        return false;
    }
    let icmp = |m: &tortie_calc::rules::IcmpMatch| p.icmp.is_some_and(|(t, c)| m.matches(t, c));
    if r.icmp.as_ref().is_some_and(|m| !icmp(m)) || r.not_icmp.as_ref().is_some_and(icmp) {
        return false;
    }
    entity(s, &r.source, p.src, p.src_port, p.protocol)
        && entity(s, &r.destination, p.dst, p.dst_port, p.protocol)
}

/// Runs one endpoint chain; true = allowed.
pub fn chain_allows(s: &LocalState, chain: &PolicyChain, dir: Direction, p: &SimPacket) -> bool {
    'tiers: for tier in &chain.tiers {
        for id in &tier.policies {
            let policy = s
                .policies
                .get(id)
                .unwrap_or_else(|| panic!("chain references missing policy {id}"));
            let rules = match dir {
                Direction::Ingress => &policy.ingress,
                Direction::Egress => &policy.egress,
            };
            for r in rules {
                if !rule(s, r, p) {
                    continue;
                }
                match r.action {
                    Action::Allow => return true,
                    Action::Deny => return false,
                    Action::Pass => continue 'tiers,
                    Action::Log => {}
                }
            }
        }
        if tier.default_action == TierAction::Deny {
            return false;
        }
    }
    for name in &chain.profiles {
        let profile = s
            .profiles
            .get(name)
            .unwrap_or_else(|| panic!("chain references missing profile {name}"));
        let rules = match dir {
            Direction::Ingress => &profile.ingress,
            Direction::Egress => &profile.egress,
        };
        for r in rules {
            if !rule(s, r, p) {
                continue;
            }
            match r.action {
                Action::Allow => return true,
                Action::Deny => return false,
                Action::Pass => break,
                Action::Log => {}
            }
        }
    }
    false
}
