//! This node's endpoints: which enforced policies apply to each (through
//! the policy-selector index), which policies and profiles are therefore
//! active here, and each endpoint's ordered tiers and profiles.
//!
//! A policy applies to an endpoint when its effective selector matches
//! and its kind fits the endpoint (policy.md §3): namespaced and global
//! policies to workloads except preDNAT/doNotTrack ones; only global ones
//! to host endpoints, split into the normal, forward, preDNAT and untracked
//! classes (§7). Staged policies are never enforced and never enter here.
//!
//! Hard cases: two workloads may claim one interface name — the smallest
//! ID wins and the other is held back until the winner goes; a policy
//! whose edit keeps its placement (selector, tier, order, types, classes)
//! only has its rules recompiled, endpoints untouched; profiles that do
//! not exist are left out of an endpoint's list (and come back when
//! created).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Active, Calculator};
use crate::compile::{compile_policy, compile_profile, policy_sets, profile_sets};
use crate::ids::{ItemKey, PolicyId};
use crate::model::items::{Item, ItemKind};
use crate::policy::{Direction, HostPolicyClass, Policy, ordered_tiers};
use crate::rules::SetRef;
use crate::state::{
    LocalHostEndpoint, LocalWorkloadEndpoint, PolicyChain, TierLists, TierPolicies, split_families,
};

/// True if `policy`'s kind fits an endpoint of `item`'s kind (staged or
/// not): policy.md §3.
pub(crate) fn fits_endpoint(policy: &Policy, item: &Item) -> bool {
    match item.kind {
        ItemKind::Workload(_) => policy.applies_to_workloads(),
        ItemKind::Host(_) => policy.applies_to_hosts(),
        ItemKind::NetworkSet(_) => false,
    }
}

/// True if `policy` is enforced on an endpoint of `item`'s kind.
pub(crate) fn applicable(policy: &Policy, item: &Item) -> bool {
    !policy.staged() && fits_endpoint(policy, item)
}

/// Tiers of `policies` in `direction`, as the dataplane wants them.
pub(crate) fn tier_list<'a>(
    model: &crate::model::ClusterModel,
    policies: impl IntoIterator<Item = &'a Policy>,
    direction: Direction,
) -> Vec<TierPolicies> {
    ordered_tiers(policies, direction, |t| model.tier(t))
        .into_iter()
        .map(|g| TierPolicies {
            name: g.tier.name,
            default_action: g.tier.default_action,
            policies: g.policies.iter().map(|p| p.id.clone()).collect(),
        })
        .collect()
}

/// The state of a local workload endpoint given its applicable policies.
pub(crate) fn workload_state(
    model: &crate::model::ClusterModel,
    item: &Item,
    policies: &[&Policy],
) -> Option<LocalWorkloadEndpoint> {
    let ItemKind::Workload(w) = &item.kind else {
        return None;
    };
    let profiles: Vec<String> = w
        .profiles
        .iter()
        .filter(|p| model.profile(p).is_some())
        .cloned()
        .collect();
    let (ipv4, ipv6) = split_families(&item.nets);
    Some(LocalWorkloadEndpoint {
        id: w.id.clone(),
        iface: w.iface.clone(),
        mac: w.mac.clone(),
        ipv4,
        ipv6,
        allow_spoofed_source_prefixes: w.allow_spoofed_source_prefixes.clone(),
        ingress: PolicyChain {
            tiers: tier_list(model, policies.iter().copied(), Direction::Ingress),
            profiles: profiles.clone(),
        },
        egress: PolicyChain {
            tiers: tier_list(model, policies.iter().copied(), Direction::Egress),
            profiles,
        },
    })
}

/// The state of a local host endpoint given its applicable policies.
pub(crate) fn host_state(
    model: &crate::model::ClusterModel,
    item: &Item,
    policies: &[&Policy],
) -> Option<LocalHostEndpoint> {
    let ItemKind::Host(h) = &item.kind else {
        return None;
    };
    let class = |c: HostPolicyClass| -> Vec<&Policy> {
        policies
            .iter()
            .copied()
            .filter(|p| p.host_classes().contains(&c))
            .collect()
    };
    let lists = |c: HostPolicyClass| {
        let ps = class(c);
        let mut l = TierLists {
            ingress: tier_list(model, ps.iter().copied(), Direction::Ingress),
            egress: tier_list(model, ps.iter().copied(), Direction::Egress),
        };
        // preDNAT and untracked tiers end with pass, so normal policy still
        // runs (policy.md §7).
        if matches!(c, HostPolicyClass::PreDnat | HostPolicyClass::Untracked) {
            for t in l.ingress.iter_mut().chain(l.egress.iter_mut()) {
                t.default_action = crate::policy::TierAction::Pass;
            }
        }
        l
    };
    let profiles: Vec<String> = h
        .profiles
        .iter()
        .filter(|p| model.profile(p).is_some())
        .cloned()
        .collect();
    let normal = lists(HostPolicyClass::Normal);
    Some(LocalHostEndpoint {
        iface: h.iface.clone(),
        expected_ips: h.expected_ips.clone(),
        ingress: PolicyChain {
            tiers: normal.ingress,
            profiles: profiles.clone(),
        },
        egress: PolicyChain {
            tiers: normal.egress,
            profiles,
        },
        forward: lists(HostPolicyClass::Forward),
        pre_dnat: lists(HostPolicyClass::PreDnat),
        untracked: lists(HostPolicyClass::Untracked),
    })
}

impl Calculator {
    fn is_local(&self, item: &Item) -> bool {
        item.node() == Some(self.node.as_str())
    }

    /// Records that policy `id` does (or no longer does) apply to `key`.
    fn set_applies(&mut self, id: &PolicyId, key: &ItemKey, applies: bool) {
        let changed = if applies {
            self.endpoint_policies
                .entry(key.clone())
                .or_default()
                .insert(id.clone())
                && self
                    .policy_endpoints
                    .entry(id.clone())
                    .or_default()
                    .insert(key.clone())
        } else {
            let removed = self
                .endpoint_policies
                .get_mut(key)
                .is_some_and(|s| s.remove(id));
            if let Some(s) = self.policy_endpoints.get_mut(id) {
                s.remove(key);
                if s.is_empty() {
                    self.policy_endpoints.remove(id);
                }
            }
            removed
        };
        if changed {
            self.dirty_endpoints.insert(key.clone());
            self.dirty_policies.insert(id.clone());
        }
    }

    /// A selector of the policy index started or stopped matching `key`.
    fn policy_match(&mut self, sel: crate::index::SelId, key: &ItemKey, item: &Item, added: bool) {
        let ids: Vec<PolicyId> = self
            .sel_policies
            .get(&sel)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            let fits = self.model.policy(&id).is_some_and(|p| applicable(p, item));
            if fits || !added {
                self.set_applies(&id, key, added);
            }
        }
    }

    /// An item changed: keep the local-endpoint bookkeeping current.
    pub(super) fn local_item_changed(
        &mut self,
        key: &ItemKey,
        old: Option<&Item>,
        new: Option<&Item>,
    ) {
        let was_local = old.is_some_and(|i| self.is_local(i));
        let new_local = new.filter(|i| self.is_local(i));
        let old_local = old.filter(|_| was_local);
        if new_local.is_none() && !was_local {
            return;
        }
        match new_local {
            Some(item) => {
                for change in self.policy_index.upsert(key, &item.labels) {
                    self.policy_match(change.sel, key, item, change.added);
                }
            }
            None => {
                for sel in self.policy_index.remove(key) {
                    if let Some(old) = old_local {
                        self.policy_match(sel, key, old, false);
                    }
                }
                self.endpoint_policies.remove(key);
            }
        }
        // Profiles referenced by local endpoints.
        let parents = |i: Option<&Item>| -> BTreeSet<String> {
            i.map(|i| match &i.kind {
                ItemKind::Workload(w) => w.profiles.iter().cloned().collect(),
                ItemKind::Host(h) => h.profiles.iter().cloned().collect(),
                ItemKind::NetworkSet(_) => BTreeSet::new(),
            })
            .unwrap_or_default()
        };
        let before = parents(old_local);
        let after = parents(new_local);
        for p in before.difference(&after) {
            if let Some(users) = self.profile_local_users.get_mut(p) {
                users.remove(key);
                if users.is_empty() {
                    self.profile_local_users.remove(p);
                }
            }
            self.dirty_profiles.insert(p.clone());
        }
        for p in after.difference(&before) {
            self.profile_local_users
                .entry(p.clone())
                .or_default()
                .insert(key.clone());
            self.dirty_profiles.insert(p.clone());
        }
        // Interface claims of local workloads.
        if let ItemKey::Workload(id) = key {
            let iface = |i: Option<&Item>| match i.map(|i| &i.kind) {
                Some(ItemKind::Workload(w)) if !w.iface.is_empty() => Some(w.iface.clone()),
                _ => None,
            };
            if let Some(old_iface) = iface(old_local) {
                if let Some(claims) = self.iface_claims.get_mut(&old_iface) {
                    claims.remove(id);
                    if claims.is_empty() {
                        self.iface_claims.remove(&old_iface);
                    }
                }
                self.dirty_ifaces.insert(old_iface);
            }
            if let Some(new_iface) = iface(new_local) {
                self.iface_claims
                    .entry(new_iface.clone())
                    .or_default()
                    .insert(id.clone());
                self.dirty_ifaces.insert(new_iface);
            }
        }
        self.dirty_endpoints.insert(key.clone());
    }

    /// A policy was added, changed or removed.
    pub(super) fn policy_changed(
        &mut self,
        id: &PolicyId,
        old: Option<Arc<Policy>>,
        new: Option<Arc<Policy>>,
    ) {
        let old = old.filter(|p| !p.staged());
        let new = new.filter(|p| !p.staged());
        self.dirty_policies.insert(id.clone());
        if let (Some(o), Some(n)) = (&old, &new)
            && o.same_placement(n)
        {
            return;
        }
        // Detach from the old placement.
        let old_sel = self.policy_sel.remove(id);
        if let Some(eps) = self.policy_endpoints.remove(id) {
            for ep in eps {
                if let Some(s) = self.endpoint_policies.get_mut(&ep) {
                    s.remove(id);
                }
                self.dirty_endpoints.insert(ep);
            }
        }
        if let Some(sel) = old_sel
            && let Some(s) = self.sel_policies.get_mut(&sel)
        {
            s.remove(id);
            if s.is_empty() {
                self.sel_policies.remove(&sel);
            }
        }
        // Attach the new one before releasing the old selector, so a kept
        // selector is not dropped and re-evaluated.
        if let Some(p) = new {
            let sel = self.policy_index.acquire(&p.selector);
            self.policy_sel.insert(id.clone(), sel);
            self.sel_policies.entry(sel).or_default().insert(id.clone());
            let matched: Vec<ItemKey> = self.policy_index.matches(sel).cloned().collect();
            for key in matched {
                let fits = self
                    .model
                    .item(&key)
                    .is_some_and(|item| applicable(&p, item));
                if fits {
                    self.set_applies(id, &key, true);
                }
            }
        }
        if let Some(sel) = old_sel {
            self.policy_index.release(sel);
        }
    }

    /// A profile was added, changed or removed (labels are handled as item
    /// changes by the model).
    pub(super) fn profile_changed(&mut self, name: &str) {
        if let Some(users) = self.profile_local_users.get(name) {
            self.dirty_endpoints.extend(users.iter().cloned());
        }
        self.dirty_profiles.insert(name.to_string());
    }

    /// A tier's order or default action changed.
    pub(super) fn tier_changed(&mut self, name: &str) {
        let ids: Vec<PolicyId> = self.model.policies_in_tier(name).cloned().collect();
        for id in ids {
            if let Some(eps) = self.policy_endpoints.get(&id) {
                self.dirty_endpoints.extend(eps.iter().cloned());
            }
        }
    }

    /// Brings policy `id`'s activation in line: compiled with its IP sets
    /// while a local endpoint uses it (or it is needed everywhere).
    pub(super) fn reconcile_policy(&mut self, id: &PolicyId) {
        let wanted = self
            .model
            .policy(id)
            .filter(|p| !p.staged())
            .filter(|p| {
                p.assume_needed_everywhere
                    || self.policy_endpoints.get(id).is_some_and(|s| !s.is_empty())
            })
            .cloned();
        let current = self.active_policies.get(id).map(|a| a.value.clone());
        match (wanted, current) {
            (Some(w), Some(c)) if Arc::ptr_eq(&w, &c) => {}
            (Some(w), _) => {
                let refs: Vec<SetRef> = policy_sets(&w).cloned().collect();
                let sets =
                    self.swap_sets(&refs, self.active_policies.get(id).map(|a| a.sets.clone()));
                self.state.policies.insert(id.clone(), compile_policy(&w));
                self.tracker.dirty.policies.insert(id.clone());
                self.active_policies
                    .insert(id.clone(), Active { value: w, sets });
            }
            (None, Some(_)) => {
                if let Some(a) = self.active_policies.remove(id) {
                    self.swap_sets(&[], Some(a.sets));
                }
                self.state.policies.remove(id);
                self.tracker.dirty.policies.insert(id.clone());
            }
            (None, None) => {}
        }
    }

    /// Brings profile `name`'s activation in line: compiled with its IP sets
    /// while a local endpoint names it.
    pub(super) fn reconcile_profile(&mut self, name: &str) {
        let wanted = self
            .model
            .profile(name)
            .filter(|_| self.profile_local_users.contains_key(name))
            .cloned();
        let current = self.active_profiles.get(name).map(|a| a.value.clone());
        match (wanted, current) {
            (Some(w), Some(c)) if Arc::ptr_eq(&w, &c) => {}
            (Some(w), _) => {
                let refs: Vec<SetRef> = profile_sets(&w).cloned().collect();
                let sets = self.swap_sets(
                    &refs,
                    self.active_profiles.get(name).map(|a| a.sets.clone()),
                );
                self.state
                    .profiles
                    .insert(name.to_string(), compile_profile(&w));
                self.tracker.dirty.profiles.insert(name.to_string());
                self.active_profiles
                    .insert(name.to_string(), Active { value: w, sets });
            }
            (None, Some(_)) => {
                if let Some(a) = self.active_profiles.remove(name) {
                    self.swap_sets(&[], Some(a.sets));
                }
                self.state.profiles.remove(name);
                self.tracker.dirty.profiles.insert(name.to_string());
            }
            (None, None) => {}
        }
    }

    /// Acquires `new` sets, then releases `old` ones; returns the new IDs.
    fn swap_sets(&mut self, new: &[SetRef], old: Option<Vec<String>>) -> Vec<String> {
        for r in new {
            self.acquire_set(r);
        }
        for uid in old.unwrap_or_default() {
            self.release_set(&uid);
        }
        new.iter().map(|r| r.uid.clone()).collect()
    }

    /// Recomputes the state of every endpoint and interface marked dirty.
    pub(super) fn flush_endpoints(&mut self) {
        for key in std::mem::take(&mut self.dirty_endpoints) {
            match &key {
                ItemKey::Workload(_) => {
                    if let Some(item) = self.model.item(&key).filter(|i| self.is_local(i))
                        && let ItemKind::Workload(w) = &item.kind
                        && !w.iface.is_empty()
                    {
                        self.dirty_ifaces.insert(w.iface.clone());
                    }
                }
                ItemKey::Host(name) => {
                    let hep = self
                        .model
                        .item(&key)
                        .filter(|i| self.is_local(i))
                        .and_then(|item| {
                            let policies = self.policies_of(&key);
                            host_state(&self.model, item, &policies)
                        });
                    let changed = match hep {
                        Some(h) => {
                            self.state.host_endpoints.insert(name.clone(), h.clone()) != Some(h)
                        }
                        None => self.state.host_endpoints.remove(name).is_some(),
                    };
                    if changed {
                        self.tracker.dirty.hosts.insert(name.clone());
                    }
                }
                ItemKey::NetworkSet(_) => {}
            }
        }
        for iface in std::mem::take(&mut self.dirty_ifaces) {
            let winner = self
                .iface_claims
                .get(&iface)
                .and_then(|c| c.first())
                .cloned();
            let wep = winner.and_then(|id| {
                let key = ItemKey::Workload(id);
                let item = self.model.item(&key)?;
                let policies = self.policies_of(&key);
                workload_state(&self.model, item, &policies)
            });
            let changed = match wep {
                Some(w) => {
                    self.state
                        .workload_endpoints
                        .insert(iface.clone(), w.clone())
                        != Some(w)
                }
                None => self.state.workload_endpoints.remove(&iface).is_some(),
            };
            if changed {
                self.tracker.dirty.workloads.insert(iface);
            }
        }
    }

    /// The enforced policies applying to local endpoint `key`.
    fn policies_of(&self, key: &ItemKey) -> Vec<&Policy> {
        self.endpoint_policies
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.model.policy(id).map(|p| &**p))
            .collect()
    }
}
