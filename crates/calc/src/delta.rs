//! Deltas: what changed in the local state since the dataplane last asked.
//!
//! The engine marks the keys it touches as dirty; taking a delta compares
//! each dirty key's current value against what was last handed out (a
//! copy the tracker keeps) and emits only real differences, so a key
//! changed and changed back in between produces nothing. IP set members
//! are tracked one by one, so one endpoint joining a 10,000-member set
//! costs one comparison, not a set diff.
//!
//! Order (STYLE.md §2): the fields of [`Delta`] are in the order the
//! dataplane must apply them — additions and updates in dependency order
//! (IP sets before the rules that use them, policies before the endpoints
//! that jump to them, the VXLAN device before routes through it), then
//! removals in the reverse order.
//!
//! Hard case: a set removed and re-created within one window is diffed in
//! full, since its per-member marks were dropped with it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::EffectiveConfig;
use crate::ids::PolicyId;
use crate::state::{
    CompiledPolicy, CompiledProfile, IpSetMembers, IpipState, LocalHostEndpoint, LocalState,
    LocalWorkloadEndpoint, NamedPortMember, NatOutgoing, PeerVteps, RouteTarget, VxlanLocal,
};

/// Changes to apply to the dataplane, field by field in declaration order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    // ---- additions and updates, dependencies first ----
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<EffectiveConfig>,
    /// New IP sets with all their members.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ip_sets_added: BTreeMap<String, IpSetMembers>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ip_set_members_added: BTreeMap<String, IpSetMembers>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub named_port_sets_added: BTreeMap<String, BTreeSet<NamedPortMember>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub named_port_members_added: BTreeMap<String, BTreeSet<NamedPortMember>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies_upserted: BTreeMap<PolicyId, CompiledPolicy>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles_upserted: BTreeMap<String, CompiledProfile>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workload_endpoints_upserted: BTreeMap<String, LocalWorkloadEndpoint>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_endpoints_upserted: BTreeMap<String, LocalHostEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_local: Option<VxlanLocal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip: Option<IpipState>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vteps_upserted: BTreeMap<String, PeerVteps>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes_upserted: BTreeMap<IpNet, RouteTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<NatOutgoing>,
    // ---- removals, dependents first ----
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub routes_removed: BTreeSet<IpNet>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub vteps_removed: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub host_endpoints_removed: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub workload_endpoints_removed: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub profiles_removed: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub policies_removed: BTreeSet<PolicyId>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub named_port_members_removed: BTreeMap<String, BTreeSet<NamedPortMember>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ip_set_members_removed: BTreeMap<String, IpSetMembers>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub named_port_sets_removed: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ip_sets_removed: BTreeSet<String>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        *self == Delta::default()
    }

    /// Number of individual changes (for metrics and logs).
    pub fn len(&self) -> usize {
        usize::from(self.config.is_some())
            + self.ip_sets_added.len()
            + self
                .ip_set_members_added
                .values()
                .map(|m| m.v4.len() + m.v6.len())
                .sum::<usize>()
            + self.named_port_sets_added.len()
            + self
                .named_port_members_added
                .values()
                .map(BTreeSet::len)
                .sum::<usize>()
            + self.policies_upserted.len()
            + self.profiles_upserted.len()
            + self.workload_endpoints_upserted.len()
            + self.host_endpoints_upserted.len()
            + usize::from(self.vxlan_local.is_some())
            + usize::from(self.ipip.is_some())
            + self.vteps_upserted.len()
            + self.routes_upserted.len()
            + usize::from(self.nat_outgoing.is_some())
            + self.routes_removed.len()
            + self.vteps_removed.len()
            + self.host_endpoints_removed.len()
            + self.workload_endpoints_removed.len()
            + self.profiles_removed.len()
            + self.policies_removed.len()
            + self
                .named_port_members_removed
                .values()
                .map(BTreeSet::len)
                .sum::<usize>()
            + self
                .ip_set_members_removed
                .values()
                .map(|m| m.v4.len() + m.v6.len())
                .sum::<usize>()
            + self.named_port_sets_removed.len()
            + self.ip_sets_removed.len()
    }
}

impl LocalState {
    /// Applies a delta (what a consumer holding a copy of the state does).
    pub fn apply_delta(&mut self, d: &Delta) {
        if let Some(c) = &d.config {
            self.config = c.clone();
        }
        for (id, m) in &d.ip_sets_added {
            self.ip_sets.insert(id.clone(), m.clone());
        }
        for (id, m) in &d.ip_set_members_added {
            let set = self.ip_sets.entry(id.clone()).or_default();
            for n in m.iter() {
                set.insert(n);
            }
        }
        for (id, m) in &d.named_port_sets_added {
            self.named_port_sets.insert(id.clone(), m.clone());
        }
        for (id, m) in &d.named_port_members_added {
            self.named_port_sets
                .entry(id.clone())
                .or_default()
                .extend(m.iter().copied());
        }
        upsert(&mut self.policies, &d.policies_upserted);
        upsert(&mut self.profiles, &d.profiles_upserted);
        upsert(&mut self.workload_endpoints, &d.workload_endpoints_upserted);
        upsert(&mut self.host_endpoints, &d.host_endpoints_upserted);
        if let Some(v) = &d.vxlan_local {
            self.vxlan.local = v.clone();
        }
        if let Some(i) = &d.ipip {
            self.ipip = i.clone();
        }
        upsert(&mut self.vxlan.peers, &d.vteps_upserted);
        upsert(&mut self.routes, &d.routes_upserted);
        if let Some(n) = &d.nat_outgoing {
            self.nat_outgoing = n.clone();
        }
        remove(&mut self.routes, &d.routes_removed);
        remove(&mut self.vxlan.peers, &d.vteps_removed);
        remove(&mut self.host_endpoints, &d.host_endpoints_removed);
        remove(&mut self.workload_endpoints, &d.workload_endpoints_removed);
        remove(&mut self.profiles, &d.profiles_removed);
        remove(&mut self.policies, &d.policies_removed);
        for (id, m) in &d.named_port_members_removed {
            if let Some(set) = self.named_port_sets.get_mut(id) {
                for member in m {
                    set.remove(member);
                }
            }
        }
        for (id, m) in &d.ip_set_members_removed {
            if let Some(set) = self.ip_sets.get_mut(id) {
                for n in m.iter() {
                    set.remove(&n);
                }
            }
        }
        remove(&mut self.named_port_sets, &d.named_port_sets_removed);
        remove(&mut self.ip_sets, &d.ip_sets_removed);
    }
}

fn upsert<K: Ord + Clone, V: Clone>(map: &mut BTreeMap<K, V>, from: &BTreeMap<K, V>) {
    for (k, v) in from {
        map.insert(k.clone(), v.clone());
    }
}

fn remove<K: Ord, V>(map: &mut BTreeMap<K, V>, keys: &BTreeSet<K>) {
    for k in keys {
        map.remove(k);
    }
}

/// Keys touched since the last delta.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub config: bool,
    pub vxlan_local: bool,
    pub ipip: bool,
    pub nat: bool,
    /// Sets created or removed (diffed in full).
    pub ip_sets: HashSet<String>,
    pub ip_set_members: HashMap<String, HashSet<IpNet>>,
    pub named_sets: HashSet<String>,
    pub named_members: HashMap<String, HashSet<NamedPortMember>>,
    pub policies: HashSet<PolicyId>,
    pub profiles: HashSet<String>,
    pub workloads: HashSet<String>,
    pub hosts: HashSet<String>,
    pub vteps: HashSet<String>,
    pub routes: HashSet<IpNet>,
}

/// Tracks what the consumer has and what has changed since.
#[derive(Debug, Default)]
pub(crate) struct DeltaTracker {
    emitted: LocalState,
    pub dirty: Dirty,
}

/// Emits the difference for one keyed map and brings `emitted` up to date.
/// Keys are visited in order and the new entries built in bulk: the first
/// delta after start-up carries every key, and sorted bulk building is
/// what keeps it from costing a tree search per key and map.
fn diff_map<K: Ord + Clone + std::hash::Hash, V: Clone + PartialEq>(
    keys: HashSet<K>,
    current: &BTreeMap<K, V>,
    emitted: &mut BTreeMap<K, V>,
    upserted: &mut BTreeMap<K, V>,
    removed: &mut BTreeSet<K>,
) {
    let mut keys: Vec<K> = keys.into_iter().collect();
    keys.sort_unstable();
    let mut changed: Vec<(K, V)> = Vec::new();
    for k in keys {
        match (current.get(&k), emitted.get(&k)) {
            (Some(c), Some(e)) if c == e => {}
            (Some(c), _) => changed.push((k, c.clone())),
            (None, Some(_)) => {
                emitted.remove(&k);
                removed.insert(k);
            }
            (None, None) => {}
        }
    }
    if emitted.is_empty() {
        *emitted = changed.iter().cloned().collect();
    } else {
        emitted.extend(changed.iter().cloned());
    }
    if upserted.is_empty() {
        *upserted = changed.into_iter().collect();
    } else {
        upserted.extend(changed);
    }
}

impl DeltaTracker {
    /// A tracker whose first delta carries the singletons even if unchanged.
    pub fn new() -> DeltaTracker {
        let mut t = DeltaTracker::default();
        t.dirty.config = true;
        t.dirty.vxlan_local = true;
        t.dirty.ipip = true;
        t.dirty.nat = true;
        t
    }

    pub fn take(&mut self, current: &LocalState) -> Delta {
        let dirty = std::mem::take(&mut self.dirty);
        let e = &mut self.emitted;
        let mut d = Delta::default();
        if dirty.config {
            e.config = current.config.clone();
            d.config = Some(current.config.clone());
        }
        if dirty.vxlan_local {
            e.vxlan.local = current.vxlan.local.clone();
            d.vxlan_local = Some(current.vxlan.local.clone());
        }
        if dirty.ipip {
            e.ipip = current.ipip.clone();
            d.ipip = Some(current.ipip.clone());
        }
        if dirty.nat {
            e.nat_outgoing = current.nat_outgoing.clone();
            d.nat_outgoing = Some(current.nat_outgoing.clone());
        }
        self.take_ip_sets(&dirty, current, &mut d);
        self.take_named_sets(&dirty, current, &mut d);
        let e = &mut self.emitted;
        diff_map(
            dirty.policies,
            &current.policies,
            &mut e.policies,
            &mut d.policies_upserted,
            &mut d.policies_removed,
        );
        diff_map(
            dirty.profiles,
            &current.profiles,
            &mut e.profiles,
            &mut d.profiles_upserted,
            &mut d.profiles_removed,
        );
        diff_map(
            dirty.workloads,
            &current.workload_endpoints,
            &mut e.workload_endpoints,
            &mut d.workload_endpoints_upserted,
            &mut d.workload_endpoints_removed,
        );
        diff_map(
            dirty.hosts,
            &current.host_endpoints,
            &mut e.host_endpoints,
            &mut d.host_endpoints_upserted,
            &mut d.host_endpoints_removed,
        );
        diff_map(
            dirty.vteps,
            &current.vxlan.peers,
            &mut e.vxlan.peers,
            &mut d.vteps_upserted,
            &mut d.vteps_removed,
        );
        diff_map(
            dirty.routes,
            &current.routes,
            &mut e.routes,
            &mut d.routes_upserted,
            &mut d.routes_removed,
        );
        d
    }

    fn take_ip_sets(&mut self, dirty: &Dirty, current: &LocalState, d: &mut Delta) {
        let emitted = &mut self.emitted.ip_sets;
        let ids: BTreeSet<&String> = dirty
            .ip_sets
            .iter()
            .chain(dirty.ip_set_members.keys())
            .collect();
        for id in ids {
            match (current.ip_sets.get(id), emitted.get_mut(id)) {
                (Some(c), None) => {
                    d.ip_sets_added.insert(id.clone(), c.clone());
                    emitted.insert(id.clone(), c.clone());
                }
                (None, Some(_)) => {
                    emitted.remove(id);
                    d.ip_sets_removed.insert(id.clone());
                }
                (None, None) => {}
                (Some(c), Some(e)) => {
                    let candidates: Vec<IpNet> = if dirty.ip_sets.contains(id) {
                        c.iter().chain(e.iter()).collect()
                    } else {
                        dirty
                            .ip_set_members
                            .get(id)
                            .map(|m| m.iter().copied().collect())
                            .unwrap_or_default()
                    };
                    for net in candidates {
                        match (c.contains(&net), e.contains(&net)) {
                            (true, false) => {
                                e.insert(net);
                                d.ip_set_members_added
                                    .entry(id.clone())
                                    .or_default()
                                    .insert(net);
                            }
                            (false, true) => {
                                e.remove(&net);
                                d.ip_set_members_removed
                                    .entry(id.clone())
                                    .or_default()
                                    .insert(net);
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }

    fn take_named_sets(&mut self, dirty: &Dirty, current: &LocalState, d: &mut Delta) {
        let emitted = &mut self.emitted.named_port_sets;
        let ids: BTreeSet<&String> = dirty
            .named_sets
            .iter()
            .chain(dirty.named_members.keys())
            .collect();
        for id in ids {
            match (current.named_port_sets.get(id), emitted.get_mut(id)) {
                (Some(c), None) => {
                    d.named_port_sets_added.insert(id.clone(), c.clone());
                    emitted.insert(id.clone(), c.clone());
                }
                (None, Some(_)) => {
                    emitted.remove(id);
                    d.named_port_sets_removed.insert(id.clone());
                }
                (None, None) => {}
                (Some(c), Some(e)) => {
                    let candidates: Vec<NamedPortMember> = if dirty.named_sets.contains(id) {
                        c.union(e).copied().collect()
                    } else {
                        dirty
                            .named_members
                            .get(id)
                            .map(|m| m.iter().copied().collect())
                            .unwrap_or_default()
                    };
                    for m in candidates {
                        match (c.contains(&m), e.contains(&m)) {
                            (true, false) => {
                                e.insert(m);
                                d.named_port_members_added
                                    .entry(id.clone())
                                    .or_default()
                                    .insert(m);
                            }
                            (false, true) => {
                                e.remove(&m);
                                d.named_port_members_removed
                                    .entry(id.clone())
                                    .or_default()
                                    .insert(m);
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}
