//! Routes, VXLAN peers, NAT pools and the effective configuration, kept
//! current by recomputing only the route sources a change touches.
//!
//! Which sources a change touches: a workload → its own; a block → the
//! block and every workload with an address inside it (whether they are
//! borrowed depends on the block's owner); a remote node → its tunnel, its
//! blocks and its workloads, plus its VTEPs; this node, a pool or the
//! configuration → everything (CrossSubnet, encapsulation and ownership
//! settings apply to every route), which is rare.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::Calculator;
use crate::ids::WorkloadId;
use crate::model::items::{Item, ItemKind};
use crate::routes::{RouteSource, all_sources, routes_for};
use crate::state::NatOutgoing;
use crate::vxlan::{local_ipip, local_vxlan, peer_vteps};

impl Calculator {
    /// Recomputes the routes one source wants and the winners of every
    /// destination it touched.
    pub(super) fn recompute_route_source(&mut self, source: RouteSource) {
        let new = routes_for(&self.model, &self.node, &self.state.config, &source);
        let old = self.route_sources.remove(&source).unwrap_or_default();
        if old == new {
            if !new.is_empty() {
                self.route_sources.insert(source, new);
            }
            return;
        }
        let mut touched = BTreeSet::new();
        for c in &old {
            if let Some(cands) = self.route_candidates.get_mut(&c.dst) {
                cands.remove(&(c.priority, source.clone()));
                if cands.is_empty() {
                    self.route_candidates.remove(&c.dst);
                }
            }
            touched.insert(c.dst);
        }
        for c in &new {
            self.route_candidates
                .entry(c.dst)
                .or_default()
                .insert((c.priority, source.clone()), c.target.clone());
            touched.insert(c.dst);
        }
        if !new.is_empty() {
            self.route_sources.insert(source, new);
        }
        for dst in touched {
            let winner = self
                .route_candidates
                .get(&dst)
                .and_then(|c| c.values().next())
                .cloned();
            let changed = match winner {
                Some(t) => self.state.routes.insert(dst, t.clone()) != Some(t),
                None => self.state.routes.remove(&dst).is_some(),
            };
            if changed {
                self.tracker.dirty.routes.insert(dst);
            }
        }
    }

    fn recompute_all_routes(&mut self) {
        let mut sources: BTreeSet<RouteSource> = all_sources(&self.model).into_iter().collect();
        sources.extend(self.route_sources.keys().cloned());
        for s in sources {
            self.recompute_route_source(s);
        }
    }

    /// A workload changed: its routes, and the indexes routing keeps.
    pub(super) fn workload_routes_changed(
        &mut self,
        id: &WorkloadId,
        old: Option<&Item>,
        new: Option<&Item>,
    ) {
        let node_of = |i: Option<&Item>| match i.map(|i| &i.kind) {
            Some(ItemKind::Workload(w)) => Some(w.node.clone()),
            _ => None,
        };
        if let Some(node) = node_of(old)
            && let Some(set) = self.workloads_by_node.get_mut(&node)
        {
            set.remove(id);
            if set.is_empty() {
                self.workloads_by_node.remove(&node);
            }
        }
        for net in old.map(|i| i.nets.as_slice()).unwrap_or_default() {
            if let Some(set) = self.workloads_by_addr.get_mut(&net.addr()) {
                set.remove(id);
                if set.is_empty() {
                    self.workloads_by_addr.remove(&net.addr());
                }
            }
        }
        if let Some(node) = node_of(new) {
            self.workloads_by_node
                .entry(node)
                .or_default()
                .insert(id.clone());
        }
        for net in new.map(|i| i.nets.as_slice()).unwrap_or_default() {
            self.workloads_by_addr
                .entry(net.addr())
                .or_default()
                .insert(id.clone());
        }
        self.recompute_route_source(RouteSource::Workload(id.clone()));
    }

    /// A block's owner changed.
    pub(super) fn block_changed(&mut self, cidr: &IpNet) {
        self.recompute_route_source(RouteSource::Block(*cidr));
        let (first, last): (IpAddr, IpAddr) = (cidr.network(), cidr.broadcast());
        let inside: BTreeSet<WorkloadId> = self
            .workloads_by_addr
            .range(first..=last)
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect();
        for id in inside {
            self.recompute_route_source(RouteSource::Workload(id));
        }
    }

    /// A node changed.
    pub(super) fn node_changed(&mut self, name: &str) {
        if name == self.node {
            self.recompute_all_routes();
            self.recompute_local_tunnels();
            return;
        }
        self.recompute_route_source(RouteSource::Tunnel(name.to_string()));
        let blocks: Vec<IpNet> = self
            .model
            .blocks()
            .filter(|(_, owner)| *owner == name)
            .map(|(c, _)| *c)
            .collect();
        for cidr in blocks {
            self.recompute_route_source(RouteSource::Block(cidr));
        }
        let workloads: Vec<WorkloadId> = self
            .workloads_by_node
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for id in workloads {
            self.recompute_route_source(RouteSource::Workload(id));
        }
        self.recompute_peer(name);
    }

    fn recompute_peer(&mut self, name: &str) {
        let wanted = self
            .model
            .node(name)
            .filter(|_| name != self.node)
            .and_then(|n| peer_vteps(n, &self.state.config));
        let changed = match wanted {
            Some(v) => self.state.vxlan.peers.insert(name.to_string(), v.clone()) != Some(v),
            None => self.state.vxlan.peers.remove(name).is_some(),
        };
        if changed {
            self.tracker.dirty.vteps.insert(name.to_string());
        }
    }

    /// This node's own tunnel devices: the VXLAN device and `tunl0`.
    fn recompute_local_tunnels(&mut self) {
        let node = self.model.node(&self.node).map(|n| &**n);
        let local = local_vxlan(node, &self.state.config);
        if local != self.state.vxlan.local {
            self.state.vxlan.local = local;
            self.tracker.dirty.vxlan_local = true;
        }
        let ipip = local_ipip(node, &self.state.config);
        if ipip != self.state.ipip {
            self.state.ipip = ipip;
            self.tracker.dirty.ipip = true;
        }
    }

    /// Pools or FelixConfiguration changed: configuration, NAT pools, and
    /// everything that depends on encapsulation settings.
    pub(super) fn config_or_pools_changed(&mut self) {
        let config = self.model.felix_config(&self.node);
        if config != self.state.config {
            self.state.config = config;
            self.tracker.dirty.config = true;
        }
        let nat = NatOutgoing {
            masquerade_pools: self
                .model
                .pools()
                .filter(|p| p.nat_outgoing)
                .map(|p| p.cidr)
                .collect(),
            all_pools: self.model.pools().map(|p| p.cidr).collect(),
        };
        if nat != self.state.nat_outgoing {
            self.state.nat_outgoing = nat;
            self.tracker.dirty.nat = true;
        }
        self.recompute_all_routes();
        self.recompute_local_tunnels();
        let mut peers: BTreeSet<String> = self.model.nodes().map(|n| n.name.clone()).collect();
        peers.extend(self.state.vxlan.peers.keys().cloned());
        for name in peers {
            self.recompute_peer(&name);
        }
    }
}
