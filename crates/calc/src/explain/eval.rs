//! The evaluation behind `explain`: resolving peers to items and
//! addresses, matching rules against one packet, and walking tiers,
//! policies and profiles per policy.md §1.

use std::net::IpAddr;

use tortie_model::rule::Action;

use super::{
    Decision, DirectionReport, ExplainError, Explanation, Peer, Request, StagedOutcome, Step,
    Verdict,
};
use crate::config::{EndpointToHostAction, FailsafePort};
use crate::engine::{fits_endpoint, named_port_members};
use crate::ids::{ItemKey, NetworkSetId, WorkloadId};
use crate::model::ClusterModel;
use crate::model::items::{Item, ItemKind};
use crate::policy::{Direction, HostPolicyClass, Policy, ordered_tiers};
use crate::rules::{IpFamily, ParsedEntity, ParsedRule, SetRef};
use crate::state::NamedPortMember;

/// Resolves peer text: an IP; `NS/NAME` (a workload endpoint by name, else
/// by pod/workload name, else a NetworkSet); `NAME` (a host endpoint, else a
/// GlobalNetworkSet); or an explicit `wep:`/`hep:`/`netset:`/`gnetset:` form.
pub fn resolve_peer(model: &ClusterModel, text: &str) -> Result<Peer, ExplainError> {
    if let Ok(p) = text.parse::<Peer>() {
        return Ok(p);
    }
    let not_found = || ExplainError::NotFound(text.to_string());
    if let Some((ns, name)) = text.split_once('/') {
        let id = WorkloadId::new(ns, name);
        if model.item(&ItemKey::Workload(id.clone())).is_some() {
            return Ok(Peer::Workload(id));
        }
        let by_workload = model
            .items()
            .filter_map(|i| match &i.kind {
                ItemKind::Workload(w) if w.id.namespace == ns && w.workload == name => {
                    Some(w.id.clone())
                }
                _ => None,
            })
            .min();
        if let Some(id) = by_workload {
            return Ok(Peer::Workload(id));
        }
        let set = NetworkSetId {
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        if model.item(&ItemKey::NetworkSet(set.clone())).is_some() {
            return Ok(Peer::NetworkSet(set));
        }
        return Err(not_found());
    }
    if model.item(&ItemKey::Host(text.to_string())).is_some() {
        return Ok(Peer::Host(text.to_string()));
    }
    let set = NetworkSetId {
        namespace: String::new(),
        name: text.to_string(),
    };
    if model.item(&ItemKey::NetworkSet(set.clone())).is_some() {
        return Ok(Peer::NetworkSet(set));
    }
    Err(not_found())
}

/// A peer resolved to its item (if any) and a description.
struct Resolved<'a> {
    item: Option<&'a Item>,
    name: String,
    address: Option<IpAddr>,
}

fn resolve<'a>(model: &'a ClusterModel, peer: &Peer) -> Result<Resolved<'a>, ExplainError> {
    let key = match peer {
        Peer::Address(a) => {
            return Ok(Resolved {
                item: None,
                name: a.to_string(),
                address: Some(*a),
            });
        }
        Peer::Workload(id) => ItemKey::Workload(id.clone()),
        Peer::Host(name) => ItemKey::Host(name.clone()),
        Peer::NetworkSet(id) => ItemKey::NetworkSet(id.clone()),
    };
    let item = model
        .item(&key)
        .ok_or_else(|| ExplainError::NotFound(key.to_string()))?;
    Ok(Resolved {
        item: Some(item),
        name: key.to_string(),
        address: None,
    })
}

/// The address a peer stands for in `family`.
fn address_in(r: &Resolved<'_>, family: IpFamily) -> Option<IpAddr> {
    if let Some(a) = r.address {
        return (IpFamily::of_addr(&a) == family).then_some(a);
    }
    r.item?
        .nets
        .iter()
        .find(|n| IpFamily::of_net(n) == family)
        .map(|n| n.network())
}

fn families(r: &Resolved<'_>) -> Vec<IpFamily> {
    [IpFamily::V4, IpFamily::V6]
        .into_iter()
        .filter(|f| address_in(r, *f).is_some())
        .collect()
}

/// The packet with what the dataplane knows about its addresses.
struct Packet<'a> {
    family: IpFamily,
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    icmp: Option<(u8, u8)>,
    /// Endpoints and network sets holding each address.
    src_items: Vec<&'a Item>,
    dst_items: Vec<&'a Item>,
}

fn selector_hit(s: &SetRef, items: &[&Item]) -> bool {
    items
        .iter()
        .any(|i| s.selector.selector.matches(&*i.labels))
}

fn named_port_hit(
    s: &SetRef,
    addr: IpAddr,
    port: Option<u16>,
    protocol: u8,
    items: &[&Item],
) -> bool {
    let (Some((proto, name)), Some(port)) = (&s.named_port, port) else {
        return false;
    };
    if proto.number() != protocol {
        return false;
    }
    let wanted = NamedPortMember {
        addr,
        protocol: *proto,
        port,
    };
    items.iter().any(|i| {
        s.selector.selector.matches(&*i.labels)
            && named_port_members(i, *proto, name).contains(&wanted)
    })
}

fn entity_matches(
    e: &ParsedEntity,
    addr: IpAddr,
    port: Option<u16>,
    protocol: u8,
    items: &[&Item],
) -> bool {
    if !e.nets.is_empty() && !e.nets.iter().any(|n| n.contains(&addr)) {
        return false;
    }
    if e.not_nets.iter().any(|n| n.contains(&addr)) {
        return false;
    }
    if e.selector.as_ref().is_some_and(|s| !selector_hit(s, items)) {
        return false;
    }
    if e.not_selector
        .as_ref()
        .is_some_and(|s| selector_hit(s, items))
    {
        return false;
    }
    if e.has_ports() {
        let numeric = port.is_some_and(|p| e.ports.iter().any(|r| r.contains(p)));
        let named = e
            .named_ports
            .iter()
            .any(|s| named_port_hit(s, addr, port, protocol, items));
        if !numeric && !named {
            return false;
        }
    }
    if port.is_some_and(|p| e.not_ports.iter().any(|r| r.contains(p))) {
        return false;
    }
    !e.not_named_ports
        .iter()
        .any(|s| named_port_hit(s, addr, port, protocol, items))
}

fn rule_matches(r: &ParsedRule, pkt: &Packet<'_>) -> bool {
    if r.never_matches || r.family.is_some_and(|f| f != pkt.family) {
        return false;
    }
    if r.protocol.is_some_and(|p| p != pkt.protocol)
        || r.not_protocol.is_some_and(|p| p == pkt.protocol)
    {
        return false;
    }
    let icmp_hit = |m: &crate::rules::IcmpMatch| pkt.icmp.is_some_and(|(t, c)| m.matches(t, c));
    if r.icmp.as_ref().is_some_and(|m| !icmp_hit(m)) || r.not_icmp.as_ref().is_some_and(icmp_hit) {
        return false;
    }
    entity_matches(
        &r.source,
        pkt.src,
        pkt.src_port,
        pkt.protocol,
        &pkt.src_items,
    ) && entity_matches(
        &r.destination,
        pkt.dst,
        pkt.dst_port,
        pkt.protocol,
        &pkt.dst_items,
    )
}

/// The first rule with a terminal action that matches, logging Log rules.
fn first_terminal(
    rules: &[ParsedRule],
    pkt: &Packet<'_>,
    mut on_log: impl FnMut(usize),
) -> Option<(usize, Action)> {
    for (i, r) in rules.iter().enumerate() {
        if !rule_matches(r, pkt) {
            continue;
        }
        match r.action {
            Action::Log => on_log(i),
            a => return Some((i, a)),
        }
    }
    None
}

fn failsafe_hit(list: &[FailsafePort], pkt: &Packet<'_>, peer: IpAddr) -> Option<Decision> {
    list.iter()
        .find(|f| {
            f.protocol == pkt.protocol
                && Some(f.port) == pkt.dst_port
                && f.net.is_none_or(|n| n.contains(&peer))
        })
        .map(|f| Decision::Failsafe {
            protocol: f.protocol,
            port: f.port,
        })
}

fn report(
    endpoint: &str,
    direction: Direction,
    decided_by: Decision,
    steps: Vec<Step>,
    staged: Vec<StagedOutcome>,
) -> DirectionReport {
    let verdict = match &decided_by {
        Decision::Rule { action, .. } | Decision::Profile { action, .. } => {
            if *action == Action::Allow {
                Verdict::Allow
            } else {
                Verdict::Deny
            }
        }
        Decision::EndOfTier { .. } | Decision::NoProfileAllowed => Verdict::Deny,
        Decision::Failsafe { .. } | Decision::HostToLocalWorkload => Verdict::Allow,
        Decision::EndpointToHost { action } => {
            if *action == EndpointToHostAction::Drop {
                Verdict::Deny
            } else {
                Verdict::Allow
            }
        }
    };
    DirectionReport {
        endpoint: endpoint.to_string(),
        direction,
        verdict,
        decided_by,
        steps,
        staged,
    }
}

/// The policies (staged ones included) selecting `item` that take part in
/// its normal evaluation.
fn selecting_policies<'a>(model: &'a ClusterModel, item: &Item) -> Vec<&'a Policy> {
    model
        .policies()
        .map(|p| &**p)
        .filter(|p| fits_endpoint(p, item))
        .filter(|p| {
            !matches!(item.kind, ItemKind::Host(_))
                || p.host_classes().contains(&HostPolicyClass::Normal)
        })
        .filter(|p| p.selector.selector.matches(&*item.labels))
        .collect()
}

/// Evaluates `item`'s policy in `direction` (policy.md §1).
fn evaluate(
    model: &ClusterModel,
    item: &Item,
    name: &str,
    direction: Direction,
    pkt: &Packet<'_>,
) -> DirectionReport {
    let policies = selecting_policies(model, item);
    let groups = ordered_tiers(policies.iter().copied(), direction, |t| model.tier(t));
    let staged: Vec<StagedOutcome> = groups
        .iter()
        .flat_map(|g| g.policies.iter().map(move |p| (g, p)))
        .filter(|(_, p)| p.staged())
        .map(|(g, p)| StagedOutcome {
            tier: g.tier.name.clone(),
            policy: p.id.clone(),
            rule: first_terminal(p.rules(direction), pkt, |_| {}),
        })
        .collect();
    if let ItemKind::Host(h) = &item.kind {
        let cfg = model.felix_config(&h.node);
        let hit = match direction {
            Direction::Ingress => failsafe_hit(&cfg.failsafe_inbound, pkt, pkt.src),
            Direction::Egress => failsafe_hit(&cfg.failsafe_outbound, pkt, pkt.dst),
        };
        if let Some(d) = hit {
            return report(name, direction, d, Vec::new(), staged);
        }
    }
    let mut steps = Vec::new();
    'tiers: for g in &groups {
        if g.policies.iter().all(|p| p.staged()) {
            steps.push(Step::StagedOnlyTier {
                tier: g.tier.name.clone(),
            });
            continue;
        }
        for p in g.policies.iter().filter(|p| !p.staged()) {
            let hit = first_terminal(p.rules(direction), pkt, |rule| {
                steps.push(Step::Logged {
                    policy: p.id.to_string(),
                    rule,
                });
            });
            match hit {
                None => {}
                Some((rule, Action::Pass)) => {
                    steps.push(Step::PassedByRule {
                        tier: g.tier.name.clone(),
                        policy: p.id.clone(),
                        rule,
                    });
                    continue 'tiers;
                }
                Some((rule, action)) => {
                    let d = Decision::Rule {
                        tier: g.tier.name.clone(),
                        policy: p.id.clone(),
                        rule,
                        action,
                    };
                    return report(name, direction, d, steps, staged);
                }
            }
        }
        match g.tier.default_action {
            crate::policy::TierAction::Deny => {
                let d = Decision::EndOfTier {
                    tier: g.tier.name.clone(),
                };
                return report(name, direction, d, steps, staged);
            }
            crate::policy::TierAction::Pass => steps.push(Step::TierDefaultPass {
                tier: g.tier.name.clone(),
            }),
        }
    }
    let profiles: &[String] = match &item.kind {
        ItemKind::Workload(w) => &w.profiles,
        ItemKind::Host(h) => &h.profiles,
        ItemKind::NetworkSet(_) => &[],
    };
    for pname in profiles {
        let Some(profile) = model.profile(pname) else {
            continue;
        };
        let hit = first_terminal(profile.rules(direction), pkt, |rule| {
            steps.push(Step::Logged {
                policy: format!("profile {pname}"),
                rule,
            });
        });
        match hit {
            None => {}
            Some((rule, Action::Pass)) => steps.push(Step::ProfilePassed {
                profile: pname.clone(),
                rule,
            }),
            Some((rule, action)) => {
                let d = Decision::Profile {
                    profile: pname.clone(),
                    rule,
                    action,
                };
                return report(name, direction, d, steps, staged);
            }
        }
    }
    report(name, direction, Decision::NoProfileAllowed, steps, staged)
}

/// Explains what happens to `req`'s packet.
pub fn explain(model: &ClusterModel, req: &Request) -> Result<Explanation, ExplainError> {
    let from = resolve(model, &req.from)?;
    let to = resolve(model, &req.to)?;
    let family = match req.family {
        Some(f) => f,
        None => {
            let (a, b) = (families(&from), families(&to));
            a.into_iter()
                .find(|f| b.contains(f))
                .ok_or_else(|| ExplainError::NoCommonFamily {
                    from: from.name.clone(),
                    to: to.name.clone(),
                })?
        }
    };
    let no_addr = |r: &Resolved<'_>| ExplainError::NoAddress {
        peer: r.name.clone(),
        family,
    };
    let src = address_in(&from, family).ok_or_else(|| no_addr(&from))?;
    let dst = address_in(&to, family).ok_or_else(|| no_addr(&to))?;
    let pkt = Packet {
        family,
        protocol: req.protocol,
        src,
        dst,
        src_port: req.src_port,
        dst_port: req.dst_port,
        icmp: req.icmp,
        src_items: model.items_at(src).into_iter().map(|i| &**i).collect(),
        dst_items: model.items_at(dst).into_iter().map(|i| &**i).collect(),
    };
    let src_ep = from.item.filter(|i| i.is_endpoint());
    let dst_ep = to.item.filter(|i| i.is_endpoint());
    let same_node = match (src_ep, dst_ep) {
        (Some(a), Some(b)) => a.node() == b.node(),
        _ => false,
    };
    let is_host = |i: &Item| matches!(i.kind, ItemKind::Host(_));
    let is_workload = |i: &Item| matches!(i.kind, ItemKind::Workload(_));

    let mut egress = src_ep.map(|i| evaluate(model, i, &from.name, Direction::Egress, &pkt));
    let mut ingress = dst_ep.map(|i| evaluate(model, i, &to.name, Direction::Ingress, &pkt));
    if same_node && let (Some(s), Some(d)) = (src_ep, dst_ep) {
        if is_host(s) && is_workload(d) {
            let host = |name: &str, dir| {
                report(
                    name,
                    dir,
                    Decision::HostToLocalWorkload,
                    Vec::new(),
                    Vec::new(),
                )
            };
            egress = Some(host(&from.name, Direction::Egress));
            ingress = Some(host(&to.name, Direction::Ingress));
        } else if is_workload(s)
            && let ItemKind::Host(h) = &d.kind
        {
            let action = model.felix_config(&h.node).default_endpoint_to_host_action;
            let all_interfaces = h.iface.as_deref() == Some("*");
            if action != EndpointToHostAction::Return || !all_interfaces {
                ingress = Some(report(
                    &to.name,
                    Direction::Ingress,
                    Decision::EndpointToHost { action },
                    Vec::new(),
                    Vec::new(),
                ));
            }
        }
    }
    let allowed = [&egress, &ingress]
        .into_iter()
        .flatten()
        .all(|r| r.verdict == Verdict::Allow);
    Ok(Explanation {
        src: from.name,
        src_addr: src,
        dst: to.name,
        dst_addr: dst,
        protocol: req.protocol,
        dst_port: req.dst_port,
        verdict: if allowed {
            Verdict::Allow
        } else {
            Verdict::Deny
        },
        egress,
        ingress,
    })
}
