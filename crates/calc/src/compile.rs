//! Compiling parsed rules for the dataplane: every selector becomes the ID
//! of the IP set that holds its members, everything else is copied in its
//! resolved form (protocol numbers, port ranges, the pinned family).
//!
//! Hard cases: a rule that can never match (it names Kubernetes services,
//! which tortie cannot resolve) is left out entirely, but the remaining
//! rules keep their original index so logs and comments line up with the
//! source policy; HTTP criteria are dropped (L3/L4 dataplane).

use crate::model::infra::Profile;
use crate::policy::{Direction, Policy};
use crate::rules::{ParsedEntity, ParsedRule, SetRef};
use crate::state::{CompiledEntity, CompiledPolicy, CompiledProfile, CompiledRule};

fn uids(refs: &[SetRef]) -> Vec<String> {
    refs.iter().map(|r| r.uid.clone()).collect()
}

fn entity(e: &ParsedEntity) -> CompiledEntity {
    CompiledEntity {
        nets: e.nets.clone(),
        not_nets: e.not_nets.clone(),
        ip_set: e.selector.as_ref().map(|s| s.uid.clone()),
        not_ip_set: e.not_selector.as_ref().map(|s| s.uid.clone()),
        ports: e.ports.clone(),
        named_port_sets: uids(&e.named_ports),
        not_ports: e.not_ports.clone(),
        not_named_port_sets: uids(&e.not_named_ports),
    }
}

/// Compiles a rule list, dropping rules that can never match.
pub fn compile_rules(rules: &[ParsedRule]) -> Vec<CompiledRule> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.never_matches)
        .map(|(index, r)| CompiledRule {
            index,
            action: r.action,
            family: r.family,
            protocol: r.protocol,
            not_protocol: r.not_protocol,
            icmp: r.icmp,
            not_icmp: r.not_icmp,
            source: entity(&r.source),
            destination: entity(&r.destination),
        })
        .collect()
}

/// The rules of `direction` that take effect: none when the policy's
/// `types` leave the direction out (its rules there are ignored).
pub fn effective_rules(p: &Policy, direction: Direction) -> &[ParsedRule] {
    if p.applies_in(direction) {
        p.rules(direction)
    } else {
        &[]
    }
}

pub fn compile_policy(p: &Policy) -> CompiledPolicy {
    CompiledPolicy {
        tier: p.tier.clone(),
        ingress: compile_rules(effective_rules(p, Direction::Ingress)),
        egress: compile_rules(effective_rules(p, Direction::Egress)),
        untracked: p.do_not_track,
        pre_dnat: p.pre_dnat,
    }
}

pub fn compile_profile(p: &Profile) -> CompiledProfile {
    CompiledProfile {
        ingress: compile_rules(&p.ingress),
        egress: compile_rules(&p.egress),
    }
}

/// The IP sets a rule list references (those that can match).
pub fn referenced_sets(rules: &[ParsedRule]) -> impl Iterator<Item = &SetRef> {
    rules
        .iter()
        .filter(|r| !r.never_matches)
        .flat_map(ParsedRule::set_refs)
}

/// The IP sets a compiled policy references.
pub fn policy_sets(p: &Policy) -> impl Iterator<Item = &SetRef> {
    referenced_sets(effective_rules(p, Direction::Ingress))
        .chain(referenced_sets(effective_rules(p, Direction::Egress)))
}

/// The IP sets a compiled profile references.
pub fn profile_sets(p: &Profile) -> impl Iterator<Item = &SetRef> {
    referenced_sets(&p.ingress).chain(referenced_sets(&p.egress))
}
