//! The local state computed from scratch by brute force: every policy
//! selector against every local endpoint, every active rule selector
//! against every item, every route source — no indexes, no refcounts, no
//! incremental bookkeeping.
//!
//! It shares only the leaf functions with the engine (what applies to an
//! endpoint kind, tier ordering, compilation, per-source routes, VTEPs),
//! so comparing the two checks the incremental machinery: the tests run
//! random update sequences and require the engine's state to equal this
//! after every step. It is also the benchmark's baseline.

use std::collections::{BTreeMap, BTreeSet};

use crate::compile::{compile_policy, compile_profile, policy_sets, profile_sets};
use crate::engine::{applicable, host_state, named_port_members, workload_state};
use crate::ids::{ItemKey, PolicyId};
use crate::model::ClusterModel;
use crate::model::items::{Item, ItemKind};
use crate::policy::Policy;
use crate::routes::{all_sources, routes_for};
use crate::rules::SetRef;
use crate::state::{IpSetMembers, LocalState, NatOutgoing};
use crate::vxlan::{local_ipip, local_vxlan, peer_vteps};

/// Computes node `node`'s desired state from `model` in one pass.
pub fn compute_from_scratch(model: &ClusterModel, node: &str) -> LocalState {
    let config = model.felix_config(node);
    let mut state = LocalState {
        config,
        ..LocalState::default()
    };
    let local: Vec<&Item> = model
        .items()
        .map(|i| &**i)
        .filter(|i| i.node() == Some(node))
        .collect();

    // Policies applying to each local endpoint.
    let mut applying: BTreeMap<ItemKey, Vec<&Policy>> = BTreeMap::new();
    for item in &local {
        let ps = model
            .policies()
            .map(|p| &**p)
            .filter(|p| applicable(p, item) && p.selector.selector.matches(&*item.labels))
            .collect();
        applying.insert(item.key(), ps);
    }

    // Active policies and profiles, and the IP sets they reference.
    let mut active: BTreeMap<PolicyId, &Policy> = BTreeMap::new();
    for p in applying.values().flatten() {
        active.insert(p.id.clone(), p);
    }
    for p in model.policies() {
        if !p.staged() && p.assume_needed_everywhere {
            active.insert(p.id.clone(), p);
        }
    }
    let mut sets: BTreeMap<String, SetRef> = BTreeMap::new();
    for (id, p) in &active {
        state.policies.insert(id.clone(), compile_policy(p));
        for r in policy_sets(p) {
            sets.insert(r.uid.clone(), r.clone());
        }
    }
    let profile_names: BTreeSet<&String> = local
        .iter()
        .flat_map(|i| match &i.kind {
            ItemKind::Workload(w) => w.profiles.iter().collect::<Vec<_>>(),
            ItemKind::Host(h) => h.profiles.iter().collect(),
            ItemKind::NetworkSet(_) => Vec::new(),
        })
        .collect();
    for name in profile_names {
        if let Some(p) = model.profile(name) {
            state.profiles.insert(name.clone(), compile_profile(p));
            for r in profile_sets(p) {
                sets.insert(r.uid.clone(), r.clone());
            }
        }
    }

    // Members.
    for (uid, r) in &sets {
        let matching = model
            .items()
            .filter(|i| r.selector.selector.matches(&*i.labels));
        match &r.named_port {
            None => {
                let mut members = IpSetMembers::default();
                for item in matching {
                    for n in &item.nets {
                        members.insert(*n);
                    }
                }
                state.ip_sets.insert(uid.clone(), members);
            }
            Some((protocol, name)) => {
                let members = matching
                    .flat_map(|i| named_port_members(i, *protocol, name))
                    .collect();
                state.named_port_sets.insert(uid.clone(), members);
            }
        }
    }

    // Endpoints: workloads by interface (smallest ID wins), hosts by name.
    for item in &local {
        let key = item.key();
        let policies = &applying[&key];
        match &item.kind {
            ItemKind::Workload(w) if !w.iface.is_empty() => {
                let wins = state
                    .workload_endpoints
                    .get(&w.iface)
                    .is_none_or(|existing| w.id < existing.id);
                if wins && let Some(s) = workload_state(model, item, policies) {
                    state.workload_endpoints.insert(w.iface.clone(), s);
                }
            }
            ItemKind::Host(h) => {
                if let Some(s) = host_state(model, item, policies) {
                    state.host_endpoints.insert(h.name.clone(), s);
                }
            }
            _ => {}
        }
    }

    // Routes: every source, lowest (priority, source) wins per destination.
    let mut best = BTreeMap::new();
    for source in all_sources(model) {
        for c in routes_for(model, node, &state.config, &source) {
            let key = (c.priority, source.clone());
            match best.get(&c.dst) {
                Some((k, _)) if *k <= key => {}
                _ => {
                    best.insert(c.dst, (key, c.target));
                }
            }
        }
    }
    state.routes = best.into_iter().map(|(d, (_, t))| (d, t)).collect();

    // VXLAN and NAT.
    state.vxlan.local = local_vxlan(model.node(node).map(|n| &**n), &state.config);
    state.ipip = local_ipip(model.node(node).map(|n| &**n), &state.config);
    for n in model.nodes().filter(|n| n.name != node) {
        if let Some(v) = peer_vteps(n, &state.config) {
            state.vxlan.peers.insert(n.name.clone(), v);
        }
    }
    state.nat_outgoing = NatOutgoing {
        masquerade_pools: model
            .pools()
            .filter(|p| p.nat_outgoing)
            .map(|p| p.cidr)
            .collect(),
        all_pools: model.pools().map(|p| p.cidr).collect(),
    };
    state
}
