//! [`PolicyRenderer`]: folds calc [`Delta`]s into the reconciler's desired
//! [`Ruleset`], touching only what each delta touches (STYLE.md §2: the
//! handler edits desired state; the reconciler applies the difference).
//!
//! What a delta field costs:
//! - IP set created, members added or removed → set elements only;
//! - policy or profile upserted/removed → its `pi-`/`po-` (`pri-`/`pro-`)
//!   chains, plus elements of rule-list sets it alone used;
//! - workload endpoint upserted/removed → its two dispatch elements
//!   (interface → chain group id); a group's `tw-g`/`fw-g` chain and its
//!   verdict map element only when the group is new or loses its last
//!   workload (`groups`);
//! - host endpoint upserted/removed → its chains, the host-endpoint map
//!   elements and the (seven, small) host-endpoint dispatch chains;
//! - NAT pools → the NAT chain and set elements;
//! - configuration changed (and the first delta) → everything is
//!   re-rendered; unchanged chains compare equal and cost nothing.
//!
//! Hard cases: the first delta carries the whole state; host endpoints
//! naming the same interface are resolved by name (the smallest wins, as
//! calc does for workloads); a host endpoint with no interface (found by
//! `expectedIPs`) cannot be placed by a pure renderer and is skipped and
//! counted; problems with single items never stop the rest of the delta:
//! they are collected in the returned [`RenderError`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use tortie_calc::policy::Direction;
use tortie_calc::state::{
    CompiledPolicy, CompiledProfile, LocalHostEndpoint, LocalWorkloadEndpoint, NatOutgoing,
};
use tortie_calc::{Delta, EffectiveConfig, PolicyId};
use tortie_dataplane::nft::model::ifname_bytes;
use tortie_dataplane::nft::{Chain, Data, Key, Ruleset, Verdict};
use tracing::warn;

use crate::endpoint::{EndpointConfig, host_chains, workload_rules};
use crate::groups::ChainGroups;
use crate::marks::{DEFAULT_MASK, Marks};
use crate::names::{self, HepClass};
use crate::rule::{Deny, Held, RuleContext, render_rules};
use crate::sets::{SetTable, Tally};
use crate::skeleton;

/// What one [`PolicyRenderer::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Workload endpoints whose chains were rendered.
    pub workload_endpoints: usize,
    /// Host endpoints whose chains were rendered.
    pub host_endpoints: usize,
    /// Host endpoints without an interface name (not placed).
    pub host_endpoints_skipped: usize,
    /// Policies and profiles whose chains were rendered.
    pub policies: usize,
    pub profiles: usize,
    /// Chains whose content changed (created or rewritten), and their rules.
    pub chains_written: usize,
    pub rules_written: usize,
    pub chains_removed: usize,
    /// Set elements (selector, named-port, port-list, NAT) added / removed.
    pub set_elements_added: usize,
    pub set_elements_removed: usize,
    /// Dispatch elements (interface → group id, group id → chain, host
    /// endpoint interface → chain) put / removed.
    pub dispatch_elements_put: usize,
    pub dispatch_elements_removed: usize,
}

/// One item of a delta that could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error(
        "mark mask {mask:#010x} has fewer than four bits (ACCEPT, PASS, DROP, scratch); using {DEFAULT_MASK:#010x}"
    )]
    MarkMask { mask: u32 },
    #[error("{endpoint}: interface name {iface:?} is not a Linux interface name (1-15 bytes)")]
    BadInterface { endpoint: String, iface: String },
    #[error("set {set}: element refused: {reason}")]
    Element { set: String, reason: String },
    #[error("no set id left for {set}")]
    IdsExhausted { set: String },
}

/// The items of a delta that were not rendered; everything else was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} item(s) of the delta not rendered: {}", .items.len(), list(.items))]
pub struct RenderError {
    pub items: Vec<ItemError>,
}

fn list(items: &[ItemError]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whose rule chains hold set references.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Owner {
    Policy(PolicyId),
    Profile(String),
}

/// Renders calc's local state into tortie's nftables table, incrementally.
#[derive(Debug)]
pub struct PolicyRenderer {
    config: EffectiveConfig,
    marks: Marks,
    /// The first apply creates the sets and renders everything.
    started: bool,
    sets: SetTable,
    policies: BTreeMap<PolicyId, CompiledPolicy>,
    profiles: BTreeMap<String, CompiledProfile>,
    workloads: BTreeMap<String, LocalWorkloadEndpoint>,
    hosts: BTreeMap<String, LocalHostEndpoint>,
    nat: NatOutgoing,
    held: HashMap<Owner, Vec<String>>,
    /// Chains of each host endpoint, by class.
    host_chain_names: BTreeMap<String, Vec<(HepClass, String)>>,
    /// Host-endpoint map elements: (map, interface) → chain.
    hep_elements: BTreeMap<(&'static str, String), String>,
    /// Workload chain groups: ingress (`tw-g`), egress (`fw-g`).
    to_groups: ChainGroups,
    from_groups: ChainGroups,
    /// Each rendered workload's (ingress, egress) group ids.
    workload_groups: BTreeMap<String, (u32, u32)>,
    /// Node addresses of the VXLAN peers, by node (`vxlan-peers4/6`).
    vxlan_peers: BTreeMap<String, Vec<IpAddr>>,
}

impl Default for PolicyRenderer {
    fn default() -> PolicyRenderer {
        PolicyRenderer {
            config: EffectiveConfig::default(),
            marks: Marks::default(),
            started: false,
            sets: SetTable::default(),
            policies: BTreeMap::new(),
            profiles: BTreeMap::new(),
            workloads: BTreeMap::new(),
            hosts: BTreeMap::new(),
            nat: NatOutgoing::default(),
            held: HashMap::new(),
            host_chain_names: BTreeMap::new(),
            hep_elements: BTreeMap::new(),
            to_groups: ChainGroups::new(Direction::Ingress),
            from_groups: ChainGroups::new(Direction::Egress),
            workload_groups: BTreeMap::new(),
            vxlan_peers: BTreeMap::new(),
        }
    }
}

/// Accumulates one apply's stats and errors.
#[derive(Default)]
struct Run {
    stats: RenderStats,
    errors: Vec<ItemError>,
}

impl Run {
    fn put_chain(&mut self, r: &mut Ruleset, name: String, chain: Chain) {
        if r.chain(&name) != Some(&chain) {
            self.stats.chains_written += 1;
            self.stats.rules_written += chain.rules.len();
            r.put_chain(name, chain);
        }
    }

    fn remove_chain(&mut self, r: &mut Ruleset, name: &str) {
        if r.remove_chain(name).is_some() {
            self.stats.chains_removed += 1;
        }
    }

    fn put_dispatch(&mut self, r: &mut Ruleset, map: &str, iface: &str, chain: String) {
        let key = Key::exact(ifname_bytes(iface));
        self.put_map_element(r, map, key, Data::Verdict(Verdict::Goto(chain)));
    }

    fn put_map_element(&mut self, r: &mut Ruleset, map: &str, key: Key, value: Data) {
        let value = Some(value);
        if r.set(map).and_then(|s| s.elements.get(&key)) == Some(&value) {
            return;
        }
        match r.put_element(map, key, value) {
            Ok(()) => self.stats.dispatch_elements_put += 1,
            Err(e) => self.errors.push(ItemError::Element {
                set: map.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn remove_dispatch(&mut self, r: &mut Ruleset, map: &str, iface: &str) {
        self.remove_map_element(r, map, &Key::exact(ifname_bytes(iface)));
    }

    fn remove_map_element(&mut self, r: &mut Ruleset, map: &str, key: &Key) {
        if r.remove_element(map, key) {
            self.stats.dispatch_elements_removed += 1;
        }
    }
}

/// One more user of the group with `rules`; a new group gets its chain.
/// `None` (and an error naming `map`, the dispatch map) when ids ran out.
fn acquire_group(
    groups: &mut ChainGroups,
    map: &str,
    rules: Vec<tortie_dataplane::nft::Rule>,
    r: &mut Ruleset,
    run: &mut Run,
) -> Option<u32> {
    let Some(got) = groups.acquire(rules) else {
        run.errors.push(ItemError::IdsExhausted {
            set: map.to_string(),
        });
        return None;
    };
    if got.created {
        let chain = groups.chain(got.id);
        let rules = groups.rules(got.id).map(<[_]>::to_vec).unwrap_or_default();
        run.put_chain(r, chain, Chain::regular(rules));
    }
    Some(got.id)
}

/// One user fewer of group `id`; the last takes its chain.
fn release_group(groups: &mut ChainGroups, id: u32, r: &mut Ruleset, run: &mut Run) {
    if groups.release(id) {
        run.remove_chain(r, &groups.chain(id));
    }
}

fn vxlan_peer_set(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() {
        names::VXLAN_PEERS4
    } else {
        names::VXLAN_PEERS6
    }
}

fn vxlan_peer_key(addr: &IpAddr) -> Key {
    Key::exact(match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    })
}

fn valid_iface(iface: &str) -> bool {
    !iface.is_empty() && iface.len() <= 15 && !iface.contains(['/', ' ', '\0'])
}

impl PolicyRenderer {
    pub fn new() -> PolicyRenderer {
        PolicyRenderer::default()
    }

    /// The set id given to calc set `set_id` (`s:…`, `n:…`), if any.
    pub fn set_id(&self, set_id: &str) -> Option<u32> {
        self.sets.id(set_id)
    }

    /// Folds one calc Delta into `ruleset` (the Reconciler's desired
    /// state, `reconciler.desired_mut()`), touching only what the delta
    /// touches. The first delta after the calculator is in sync holds the
    /// whole state. On `Err`, everything but the named items was rendered.
    pub fn apply(
        &mut self,
        delta: &Delta,
        ruleset: &mut Ruleset,
    ) -> Result<RenderStats, RenderError> {
        let r = ruleset;
        let mut run = Run::default();
        self.sets.begin_apply();
        self.to_groups.begin_apply();
        self.from_groups.begin_apply();
        self.sets.tally = Tally::default();
        let mut full = false;
        if !self.started {
            for (name, spec) in crate::sets::set_specs()
                .into_iter()
                .chain(skeleton::set_specs())
            {
                r.put_set(name, spec);
            }
            self.started = true;
            full = true;
        }
        if let Some(c) = &delta.config
            && (*c != self.config || full)
        {
            self.marks = Marks::from_mask(c.mark_mask).unwrap_or_else(|| {
                run.errors.push(ItemError::MarkMask { mask: c.mark_mask });
                Marks::default()
            });
            self.config = c.clone();
            full = true;
        }

        for (k, m) in &delta.ip_sets_added {
            self.sets.put_addresses(r, k, m);
        }
        for (k, m) in &delta.ip_set_members_added {
            self.sets.change_addresses(r, k, m, true);
        }
        for (k, m) in &delta.named_port_sets_added {
            self.sets.put_named_ports(r, k, m);
        }
        for (k, m) in &delta.named_port_members_added {
            self.sets.change_named_ports(r, k, m, true);
        }
        for (id, p) in &delta.policies_upserted {
            self.policies.insert(id.clone(), p.clone());
            if !full {
                self.render_policy(r, id, &mut run);
            }
        }
        for (name, p) in &delta.profiles_upserted {
            self.profiles.insert(name.clone(), p.clone());
            if !full {
                self.render_profile(r, name, &mut run);
            }
        }
        for (iface, w) in &delta.workload_endpoints_upserted {
            self.workloads.insert(iface.clone(), w.clone());
            if !full {
                self.render_workload(r, iface, &mut run);
            }
        }
        let mut hosts_changed = false;
        for (node, peer) in &delta.vteps_upserted {
            let addrs = [&peer.v4, &peer.v6]
                .into_iter()
                .flatten()
                .map(|v| v.node_addr)
                .collect();
            self.set_vxlan_peer(r, node, addrs, &mut run);
        }
        for node in &delta.vteps_removed {
            self.set_vxlan_peer(r, node, Vec::new(), &mut run);
        }
        for (name, h) in &delta.host_endpoints_upserted {
            self.hosts.insert(name.clone(), h.clone());
            hosts_changed = true;
            if !full {
                self.render_host(r, name, &mut run);
            }
        }
        let nat_changed = match &delta.nat_outgoing {
            Some(n) if *n != self.nat => {
                self.nat = n.clone();
                true
            }
            _ => false,
        };

        for name in &delta.host_endpoints_removed {
            self.hosts.remove(name);
            hosts_changed = true;
            for (_, chain) in self.host_chain_names.remove(name).unwrap_or_default() {
                run.remove_chain(r, &chain);
            }
        }
        for iface in &delta.workload_endpoints_removed {
            self.workloads.remove(iface);
            run.remove_dispatch(r, names::TO_WL, iface);
            run.remove_dispatch(r, names::FROM_WL, iface);
            if let Some((to, from)) = self.workload_groups.remove(iface) {
                release_group(&mut self.to_groups, to, r, &mut run);
                release_group(&mut self.from_groups, from, r, &mut run);
            }
        }
        for name in &delta.profiles_removed {
            self.profiles.remove(name);
            for dir in Direction::BOTH {
                run.remove_chain(r, &names::profile_chain(name, dir));
            }
            self.release(r, &Owner::Profile(name.clone()));
        }
        for id in &delta.policies_removed {
            self.policies.remove(id);
            for dir in Direction::BOTH {
                run.remove_chain(r, &names::policy_chain(id, dir));
            }
            self.release(r, &Owner::Policy(id.clone()));
        }
        for (k, m) in &delta.named_port_members_removed {
            self.sets.change_named_ports(r, k, m, false);
        }
        for (k, m) in &delta.ip_set_members_removed {
            self.sets.change_addresses(r, k, m, false);
        }
        for k in delta
            .named_port_sets_removed
            .iter()
            .chain(&delta.ip_sets_removed)
        {
            self.sets.set_removed(r, k);
        }

        if full {
            self.render_all(r, &mut run);
        } else {
            if hosts_changed {
                self.render_host_dispatch(r, &mut run);
            }
            if nat_changed {
                self.render_nat(r, &mut run);
            }
        }
        self.follow_moved_sets(r, &mut run);
        let tally = std::mem::take(&mut self.sets.tally);
        run.stats.set_elements_added += tally.added;
        run.stats.set_elements_removed += tally.removed;
        run.errors.extend(tally.errors);
        if run.errors.is_empty() {
            Ok(run.stats)
        } else {
            Err(RenderError { items: run.errors })
        }
    }

    fn endpoint_config(&self) -> EndpointConfig {
        EndpointConfig {
            marks: self.marks,
            deny: self.deny(),
            vxlan_port: self.config.vxlan_port,
            allow_vxlan_from_workloads: self.config.allow_vxlan_packets_from_workloads,
            allow_ipip_from_workloads: self.config.allow_ipip_packets_from_workloads,
        }
    }

    fn deny(&self) -> Deny {
        if self.config.filter_deny_action == "Reject" {
            Deny::Reject
        } else {
            Deny::Drop
        }
    }

    /// Renders again the rule chains looking up an address set that moved
    /// between the hash and the interval sets (its first CIDR came, or
    /// its last went), in the same transaction as its elements.
    fn follow_moved_sets(&mut self, r: &mut Ruleset, run: &mut Run) {
        let moved: HashSet<String> = self.sets.take_moved().into_iter().collect();
        if moved.is_empty() {
            return;
        }
        let owners: Vec<Owner> = self
            .held
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| moved.contains(k)))
            .map(|(owner, _)| owner.clone())
            .collect();
        for owner in owners {
            match owner {
                Owner::Policy(id) => self.render_policy(r, &id, run),
                Owner::Profile(name) => self.render_profile(r, &name, run),
            }
        }
    }

    fn release(&mut self, r: &mut Ruleset, owner: &Owner) {
        for key in self.held.remove(owner).unwrap_or_default() {
            self.sets.release(r, &key);
        }
    }

    /// Renders one owner's two rule chains; swaps its set references.
    fn render_rule_chains(
        &mut self,
        r: &mut Ruleset,
        owner: Owner,
        chains: [(String, String, &[tortie_calc::state::CompiledRule]); 2],
        deny: Deny,
        run: &mut Run,
    ) {
        let mut held = Held {
            sets: &mut self.sets,
            ruleset: r,
            keys: Vec::new(),
        };
        let mut rendered = Vec::new();
        for (name, label, list) in chains {
            let ctx = RuleContext {
                marks: self.marks,
                deny,
                log_prefix: &self.config.log_prefix,
                label: &label,
            };
            rendered.push((name, Chain::regular(render_rules(list, &ctx, &mut held))));
        }
        let keys = held.keys;
        for (name, chain) in rendered {
            run.put_chain(r, name, chain);
        }
        // New references first, so a set both used before and after
        // keeps its id and elements.
        let old = self.held.insert(owner, keys).unwrap_or_default();
        for key in old {
            self.sets.release(r, &key);
        }
    }

    fn render_policy(&mut self, r: &mut Ruleset, id: &PolicyId, run: &mut Run) {
        let Some(p) = self.policies.get(id).cloned() else {
            return;
        };
        // Raw and pre-DNAT hooks cannot reject.
        let deny = if p.untracked || p.pre_dnat {
            Deny::Drop
        } else {
            self.deny()
        };
        let chains = [
            (
                names::policy_chain(id, Direction::Ingress),
                format!("{id} ingress"),
                p.ingress.as_slice(),
            ),
            (
                names::policy_chain(id, Direction::Egress),
                format!("{id} egress"),
                p.egress.as_slice(),
            ),
        ];
        self.render_rule_chains(r, Owner::Policy(id.clone()), chains, deny, run);
        run.stats.policies += 1;
    }

    fn render_profile(&mut self, r: &mut Ruleset, name: &str, run: &mut Run) {
        let Some(p) = self.profiles.get(name).cloned() else {
            return;
        };
        let chains = [
            (
                names::profile_chain(name, Direction::Ingress),
                format!("profile {name} ingress"),
                p.ingress.as_slice(),
            ),
            (
                names::profile_chain(name, Direction::Egress),
                format!("profile {name} egress"),
                p.egress.as_slice(),
            ),
        ];
        let deny = self.deny();
        self.render_rule_chains(r, Owner::Profile(name.to_string()), chains, deny, run);
        run.stats.profiles += 1;
    }

    fn render_workload(&mut self, r: &mut Ruleset, iface: &str, run: &mut Run) {
        let Some(w) = self.workloads.get(iface) else {
            return;
        };
        if !valid_iface(iface) {
            run.errors.push(ItemError::BadInterface {
                endpoint: w.id.to_string(),
                iface: iface.to_string(),
            });
            return;
        }
        let [to_rules, from_rules] = workload_rules(w, &self.endpoint_config());
        // The new groups first, then the old ones released: a workload
        // whose rules did not change keeps its group untouched.
        let Some(to) = acquire_group(&mut self.to_groups, names::TO_WL, to_rules, r, run) else {
            return;
        };
        let Some(from) = acquire_group(&mut self.from_groups, names::FROM_WL, from_rules, r, run)
        else {
            release_group(&mut self.to_groups, to, r, run);
            return;
        };
        // The dispatch elements move first; a group left without users
        // then goes (the plan deletes referencing elements before chains).
        let key = Key::exact(ifname_bytes(iface));
        let goto = |groups: &ChainGroups, id| Data::Verdict(Verdict::Goto(groups.chain(id)));
        run.put_map_element(r, names::TO_WL, key.clone(), goto(&self.to_groups, to));
        run.put_map_element(r, names::FROM_WL, key, goto(&self.from_groups, from));
        if let Some((old_to, old_from)) = self.workload_groups.insert(iface.to_string(), (to, from))
        {
            release_group(&mut self.to_groups, old_to, r, run);
            release_group(&mut self.from_groups, old_from, r, run);
        }
        run.stats.workload_endpoints += 1;
    }

    fn render_host(&mut self, r: &mut Ruleset, name: &str, run: &mut Run) {
        let Some(h) = self.hosts.get(name) else {
            return;
        };
        let chains = host_chains(name, h, &self.endpoint_config());
        let wanted: BTreeSet<&String> = chains.iter().map(|(_, n, _)| n).collect();
        for (_, old) in self.host_chain_names.get(name).into_iter().flatten() {
            if !wanted.contains(old) {
                run.remove_chain(r, old);
            }
        }
        let mut placed = Vec::new();
        for (class, chain_name, chain) in chains {
            placed.push((class, chain_name.clone()));
            run.put_chain(r, chain_name, chain);
        }
        self.host_chain_names.insert(name.to_string(), placed);
        run.stats.host_endpoints += 1;
    }

    /// Recomputes which host endpoint owns which interface, and the
    /// map elements and dispatch chains that follow.
    fn render_host_dispatch(&mut self, r: &mut Ruleset, run: &mut Run) {
        let mut claimed: BTreeMap<String, &str> = BTreeMap::new();
        let mut star: Option<&str> = None;
        for (name, h) in &self.hosts {
            match h.iface.as_deref() {
                None => {
                    warn!(host_endpoint = %name, "host endpoint without interfaceName: not placed");
                    run.stats.host_endpoints_skipped += 1;
                }
                Some("*") => {
                    if star.is_some() {
                        warn!(host_endpoint = %name, "a second all-interfaces host endpoint: ignored");
                    }
                    star.get_or_insert(name);
                }
                Some(iface) if !valid_iface(iface) => run.errors.push(ItemError::BadInterface {
                    endpoint: format!("HostEndpoint {name}"),
                    iface: iface.to_string(),
                }),
                Some(iface) => {
                    if let Some(owner) = claimed.get(iface) {
                        warn!(host_endpoint = %name, owner = %owner, iface, "interface already has a host endpoint: ignored");
                    } else {
                        claimed.insert(iface.to_string(), name);
                    }
                }
            }
        }
        let mut wanted: BTreeMap<(&'static str, String), String> = BTreeMap::new();
        for (iface, name) in &claimed {
            for (class, chain) in self.host_chain_names.get(*name).into_iter().flatten() {
                wanted.insert((class.map(), iface.clone()), chain.clone());
            }
        }
        for (map, iface) in self.hep_elements.keys() {
            if !wanted.contains_key(&(*map, iface.clone())) {
                run.remove_dispatch(r, map, iface);
            }
        }
        for ((map, iface), chain) in &wanted {
            run.put_dispatch(r, map, iface, chain.clone());
        }
        let star_chains = star
            .and_then(|s| self.host_chain_names.get(s))
            .cloned()
            .unwrap_or_default();
        let any_placed = !wanted.is_empty() || star.is_some();
        self.hep_elements = wanted;
        for (name, chain) in skeleton::hep_dispatch_chains(&self.config, &star_chains) {
            run.put_chain(r, name.to_string(), chain);
        }
        // The raw and mangle hooks cost every packet; they come and go
        // with the first and last placed host endpoint.
        for (name, chain) in skeleton::host_endpoint_base_chains(&self.config, self.marks) {
            if any_placed {
                run.put_chain(r, name.to_string(), chain);
            } else {
                run.remove_chain(r, name);
            }
        }
    }

    /// Node `node`'s VTEPs now send from `addrs`: the peer sets follow
    /// (an address two nodes share stays until neither has it).
    fn set_vxlan_peer(&mut self, r: &mut Ruleset, node: &str, addrs: Vec<IpAddr>, run: &mut Run) {
        let old = if addrs.is_empty() {
            self.vxlan_peers.remove(node)
        } else {
            self.vxlan_peers.insert(node.to_string(), addrs.clone())
        }
        .unwrap_or_default();
        let in_use = |peers: &BTreeMap<String, Vec<IpAddr>>, a: &IpAddr| {
            peers.values().any(|v| v.contains(a))
        };
        for a in old.iter().filter(|a| !in_use(&self.vxlan_peers, a)) {
            if r.remove_element(vxlan_peer_set(a), &vxlan_peer_key(a)) {
                run.stats.set_elements_removed += 1;
            }
        }
        for a in addrs.iter().filter(|a| !old.contains(a)) {
            match r.put_element(vxlan_peer_set(a), vxlan_peer_key(a), None) {
                Ok(()) => run.stats.set_elements_added += 1,
                Err(e) => run.errors.push(ItemError::Element {
                    set: vxlan_peer_set(a).to_string(),
                    reason: e.to_string(),
                }),
            }
        }
    }

    fn render_nat(&mut self, r: &mut Ruleset, run: &mut Run) {
        run.put_chain(
            r,
            names::NAT_OUTGOING.to_string(),
            skeleton::nat_chain(&self.config, &self.nat),
        );
        for (set, keys) in skeleton::nat_elements(&self.nat) {
            let current: Vec<Key> = r
                .set(set)
                .map(|s| s.elements.keys().cloned().collect())
                .unwrap_or_default();
            for k in current.iter().filter(|k| !keys.contains(k)) {
                if r.remove_element(set, k) {
                    run.stats.set_elements_removed += 1;
                }
            }
            for k in keys {
                if current.contains(&k) {
                    continue;
                }
                match r.put_element(set, k, None) {
                    Ok(()) => run.stats.set_elements_added += 1,
                    Err(e) => run.errors.push(ItemError::Element {
                        set: set.to_string(),
                        reason: e.to_string(),
                    }),
                }
            }
        }
    }

    fn render_all(&mut self, r: &mut Ruleset, run: &mut Run) {
        for (name, chain) in skeleton::base_chains(&self.config, self.marks)
            .into_iter()
            .chain(skeleton::fixed_chains(&self.config))
        {
            run.put_chain(r, name.to_string(), chain);
        }
        let policies: Vec<PolicyId> = self.policies.keys().cloned().collect();
        for id in &policies {
            self.render_policy(r, id, run);
        }
        let profiles: Vec<String> = self.profiles.keys().cloned().collect();
        for name in &profiles {
            self.render_profile(r, name, run);
        }
        let workloads: Vec<String> = self.workloads.keys().cloned().collect();
        for iface in &workloads {
            self.render_workload(r, iface, run);
        }
        let hosts: Vec<String> = self.hosts.keys().cloned().collect();
        for name in &hosts {
            self.render_host(r, name, run);
        }
        self.render_host_dispatch(r, run);
        self.render_nat(r, run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_calc::{Calculator, Update};
    use tortie_dataplane::nft::rules::{self, CT_ESTABLISHED, CT_RELATED};

    fn put(c: &mut Calculator, yaml: &str) {
        let docs = tortie_model::decode_documents(yaml, "test").expect("fixture decodes");
        for d in docs {
            let mut r = d.resource;
            r.apply_defaults();
            r.validate().expect("fixture is valid");
            c.apply(Update::Put(Box::new(r))).expect("calc takes it");
        }
    }

    fn pod(name: &str, ip: &str, app: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: n1-k8s-{name}-eth0, namespace: ns, labels: {{app: {app}}}}}\nspec: {{orchestrator: k8s, node: n1, pod: {name}, endpoint: eth0, interfaceName: cali{name}, ipNetworks: [{ip}/32], profiles: [kns.ns]}}\n"
        )
    }

    const POLICIES: &str = r#"
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.ns}
spec: {ingress: [{action: Allow}], egress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  selector: app == "web"
  ingress: [{action: Allow, source: {selector: app == "client"}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db}
spec:
  selector: app == "db"
  ingress: [{action: Allow, source: {selector: app == "web"}}]
"#;

    /// A calculator in sync with three pods and two policies, and the
    /// ruleset rendered from its first delta.
    fn setup() -> (Calculator, PolicyRenderer, Ruleset) {
        let mut c = Calculator::new("n1");
        put(&mut c, POLICIES);
        put(&mut c, &pod("a", "10.65.0.2", "web"));
        put(&mut c, &pod("b", "10.65.0.3", "client"));
        put(&mut c, &pod("c", "10.65.0.4", "db"));
        c.apply(Update::InSync).expect("in sync");
        let mut p = PolicyRenderer::new();
        let mut r = Ruleset::new();
        let delta = c.take_delta().expect("in sync");
        p.apply(&delta, &mut r).expect("renders");
        (c, p, r)
    }

    fn chains(r: &Ruleset) -> BTreeMap<String, Chain> {
        r.chains().map(|(n, c)| (n.clone(), c.clone())).collect()
    }

    fn sync(c: &mut Calculator, p: &mut PolicyRenderer, r: &mut Ruleset) -> RenderStats {
        let delta = c.take_delta().expect("in sync");
        p.apply(&delta, r).expect("renders")
    }

    #[test]
    fn the_first_delta_builds_the_table_with_one_selector_set_per_family() {
        let (_, p, r) = setup();
        let sets: Vec<&String> = r.sets().map(|(n, _)| n).collect();
        let expected = crate::sets::set_specs().len() + skeleton::set_specs().len();
        assert_eq!(sets.len(), expected, "a fixed number of sets: {sets:?}");
        // Two selectors (app == web, app == client), one element each, in
        // the hash of single addresses.
        assert_eq!(r.set(names::SEL4_HOSTS).map(|s| s.elements.len()), Some(2));
        assert_eq!(r.set(names::SEL4).map(|s| s.elements.len()), Some(0));
        // Three workloads, three distinct ingress chains (web, client,
        // db policies), one shared egress chain (profile only).
        let to_wl = r.set(names::TO_WL).expect("map");
        assert_eq!(to_wl.elements.len(), 3);
        let Some(Some(Data::Verdict(Verdict::Goto(tw)))) =
            to_wl.elements.get(&Key::exact(ifname_bytes("calia")))
        else {
            panic!("calia has a group");
        };
        assert!(tw.starts_with("tw-g") && r.chain(tw).is_some(), "{tw}");
        let targets = |map: &str| -> std::collections::BTreeSet<String> {
            r.set(map)
                .map(|s| {
                    s.elements
                        .values()
                        .filter_map(|d| match d {
                            Some(Data::Verdict(Verdict::Goto(c))) => Some(c.clone()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(targets(names::TO_WL).len(), 3, "three ingress groups");
        assert_eq!(targets(names::FROM_WL).len(), 1, "one shared egress group");
        let fwd = r.chain(names::FILTER_FORWARD).expect("forward");
        assert!(
            fwd.rules[0]
                .exprs
                .starts_with(&rules::ct_state(CT_ESTABLISHED | CT_RELATED))
        );
        assert!(p.set_id("nope").is_none());
    }

    #[test]
    fn a_member_delta_touches_only_set_elements() {
        let (mut c, mut p, mut r) = setup();
        let before = chains(&r);
        put(&mut c, &pod("c", "10.65.0.4", "client"));
        let stats = sync(&mut c, &mut p, &mut r);
        // c leaves db's policy: its ingress rules are now b's (profile
        // only), so it joins b's group and db's group chain goes, as do
        // db (now unused here) and its selector app == web; app == client
        // gains c.
        assert_eq!(
            (
                stats.set_elements_added,
                stats.set_elements_removed,
                stats.chains_removed,
                stats.chains_written
            ),
            (1, 1, 3, 0),
            "{stats:?}"
        );
        let to_wl = &r.set(names::TO_WL).expect("map").elements;
        assert_eq!(
            to_wl.get(&Key::exact(ifname_bytes("calic"))),
            to_wl.get(&Key::exact(ifname_bytes("calib")))
        );
        let after = chains(&r);
        assert!(
            after.iter().all(|(n, ch)| before.get(n) == Some(ch)),
            "no chain written"
        );
        // A pure label change of a client (no policy selects it before or
        // after): it leaves app == client; set elements only.
        put(&mut c, &pod("b", "10.65.0.3", "other"));
        let stats = sync(&mut c, &mut p, &mut r);
        assert_eq!(stats.chains_written, 0, "{stats:?}");
        assert_eq!(
            (stats.set_elements_added, stats.set_elements_removed),
            (0, 1)
        );
        assert_eq!(chains(&r), after);
    }

    #[test]
    fn a_policy_delta_touches_only_its_chains() {
        let (mut c, mut p, mut r) = setup();
        let before = chains(&r);
        put(
            &mut c,
            r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  selector: app == "web"
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == "client"}}]
"#,
        );
        let stats = sync(&mut c, &mut p, &mut r);
        assert_eq!(stats.policies, 1);
        let after = chains(&r);
        let changed: Vec<&String> = after
            .iter()
            .filter(|(n, ch)| before.get(*n) != Some(*ch))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(changed, ["pi-gnp/web"]);
        assert_eq!(stats.set_elements_added + stats.set_elements_removed, 0);
    }

    #[test]
    fn an_endpoint_delta_touches_its_chains_and_dispatch_entries() {
        let (mut c, mut p, mut r) = setup();
        put(&mut c, &pod("d", "10.65.0.5", "other"));
        let stats = sync(&mut c, &mut p, &mut r);
        // d's rules are b's (profile only): two dispatch elements.
        assert_eq!(
            (
                stats.workload_endpoints,
                stats.chains_written,
                stats.dispatch_elements_put
            ),
            (1, 0, 2),
            "{stats:?}"
        );
        // e is the second workload db selects: still no chain. Once db
        // changes, its group rules do not (they only jump to pi-gnp/db).
        put(&mut c, &pod("e", "10.65.0.6", "db"));
        let stats = sync(&mut c, &mut p, &mut r);
        assert_eq!((stats.chains_written, stats.dispatch_elements_put), (0, 2));
        // Removing c leaves e in db's group; removing e too takes the
        // group's chain (and db's two chains: it no longer applies here).
        let delete = |pod: &str| Update::Delete {
            kind: tortie_model::Kind::WorkloadEndpoint,
            namespace: "ns".into(),
            name: format!("n1-k8s-{pod}-eth0"),
        };
        c.apply(delete("c")).expect("delete");
        let stats = sync(&mut c, &mut p, &mut r);
        assert_eq!(
            (stats.chains_removed, stats.dispatch_elements_removed),
            (0, 2)
        );
        c.apply(delete("e")).expect("delete");
        let stats = sync(&mut c, &mut p, &mut r);
        assert_eq!(
            (stats.chains_removed, stats.dispatch_elements_removed),
            (3, 2),
            "{stats:?}"
        );
        let groups: std::collections::BTreeSet<_> = r
            .set(names::TO_WL)
            .map(|s| s.elements.values().cloned().collect())
            .unwrap_or_default();
        assert_eq!(groups.len(), 2, "two ingress groups left");
        assert_eq!(stats.policies + stats.profiles, 0);
    }

    #[test]
    fn a_policy_dropped_by_calc_takes_its_chains_and_its_selector_with_it() {
        let (mut c, mut p, mut r) = setup();
        let db = PolicyId::new(tortie_calc::PolicyKind::GlobalNetworkPolicy, "", "db");
        let web_selector = c.local_state().policies[&db].ingress[0]
            .source
            .ip_set
            .clone()
            .expect("db allows from a selector");
        assert!(p.set_id(&web_selector).is_some());
        c.apply(Update::Delete {
            kind: tortie_model::Kind::GlobalNetworkPolicy,
            namespace: String::new(),
            name: "db".into(),
        })
        .expect("delete");
        let stats = sync(&mut c, &mut p, &mut r);
        // db's two chains, and c's group chain: with db gone, c's ingress
        // is profile only, as b's.
        assert_eq!(
            (stats.chains_removed, stats.set_elements_removed),
            (3, 1),
            "{stats:?}"
        );
        assert!(r.chain("pi-gnp/db").is_none());
        assert!(p.set_id(&web_selector).is_none(), "the id is free");
        assert_eq!(r.set(names::SEL4_HOSTS).map(|s| s.elements.len()), Some(1));
    }

    #[test]
    fn vxlan_peer_sets_follow_the_peers_vteps() {
        let (_, mut p, mut r) = setup();
        let vtep = |addr: &str| tortie_calc::state::Vtep {
            node_addr: addr.parse().expect("address"),
            tunnel_addr: "10.244.9.0".parse().expect("address"),
            mac: "66:00:00:00:00:09".into(),
        };
        let peers = |r: &Ruleset| -> Vec<Key> {
            r.set(names::VXLAN_PEERS4)
                .map(|s| s.elements.keys().cloned().collect())
                .unwrap_or_default()
        };
        let upsert = |node: &str, addr: &str| {
            let mut d = Delta::default();
            d.vteps_upserted.insert(
                node.into(),
                tortie_calc::state::PeerVteps {
                    v4: Some(vtep(addr)),
                    v6: None,
                },
            );
            d
        };
        p.apply(&upsert("n2", "172.30.0.12"), &mut r)
            .expect("apply");
        p.apply(&upsert("n3", "172.30.0.12"), &mut r)
            .expect("apply");
        assert_eq!(peers(&r), vec![Key::exact(vec![172, 30, 0, 12])]);
        // n2 moves; n3 still has the old address, so it stays.
        p.apply(&upsert("n2", "172.30.0.22"), &mut r)
            .expect("apply");
        assert_eq!(peers(&r).len(), 2);
        let mut gone = Delta::default();
        gone.vteps_removed.insert("n3".into());
        p.apply(&gone, &mut r).expect("apply");
        assert_eq!(peers(&r), vec![Key::exact(vec![172, 30, 0, 22])]);
    }

    #[test]
    fn raw_and_mangle_hooks_exist_only_while_a_host_endpoint_is_placed() {
        let (mut c, mut p, mut r) = setup();
        let hooks = |r: &Ruleset| -> Vec<&'static str> {
            [
                names::RAW_PREROUTING,
                names::RAW_OUTPUT,
                names::MANGLE_PREROUTING,
            ]
            .into_iter()
            .filter(|n| r.chain(n).is_some())
            .collect()
        };
        assert!(hooks(&r).is_empty(), "no host endpoint, no raw/mangle hook");
        assert!(r.chain(names::FILTER_FORWARD).is_some());
        put(
            &mut c,
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: n1-eth0, labels: {role: edge}}\nspec: {node: n1, interfaceName: eth0, expectedIPs: [172.30.0.11]}\n",
        );
        sync(&mut c, &mut p, &mut r);
        assert_eq!(hooks(&r).len(), 3, "a host endpoint brings them");
        let raw = r.chain(names::RAW_PREROUTING).expect("raw");
        assert_eq!(raw.base.map(|b| b.priority), Some(-300));
        c.apply(Update::Delete {
            kind: tortie_model::Kind::HostEndpoint,
            namespace: String::new(),
            name: "n1-eth0".into(),
        })
        .expect("calc takes it");
        let stats = sync(&mut c, &mut p, &mut r);
        assert!(hooks(&r).is_empty(), "and they go with the last one");
        assert!(stats.chains_removed >= 3);
    }

    #[test]
    fn a_selector_moves_to_the_interval_set_with_its_first_cidr_and_back() {
        let (mut c, mut p, mut r) = setup();
        let lookups_of = |r: &Ruleset, chain: &str| -> Vec<String> {
            r.chain(chain)
                .map(|c| {
                    c.rules
                        .iter()
                        .flat_map(|rule| rule.exprs.iter())
                        .filter_map(|e| match e {
                            tortie_dataplane::nft::Expr::Lookup { set, .. } => Some(set.clone()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let web = "pi-gnp/web";
        assert!(lookups_of(&r, web).contains(&names::SEL4_HOSTS.to_string()));
        // A network set labelled like the clients joins `app == client`.
        let netset = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: office, labels: {app: client}}\nspec: {nets: [192.0.2.0/24]}\n";
        put(&mut c, netset);
        sync(&mut c, &mut p, &mut r);
        let ranged = lookups_of(&r, web);
        assert!(ranged.contains(&names::SEL4.to_string()), "{ranged:?}");
        assert!(
            !ranged.contains(&names::SEL4_HOSTS.to_string()),
            "{ranged:?}"
        );
        // The client pod's address moved with it: b (10.65.0.3) and the
        // /24 are both elements of the interval set now.
        let webp = PolicyId::new(tortie_calc::PolicyKind::GlobalNetworkPolicy, "", "web");
        let client_key = c.local_state().policies[&webp].ingress[0]
            .source
            .ip_set
            .clone()
            .expect("selector set");
        let client_id = p.set_id(&client_key).expect("client selector");
        let sel4 = r.set(names::SEL4).expect("sel4");
        let ours = sel4
            .elements
            .keys()
            .filter(|k| k.start[..4] == client_id.to_be_bytes())
            .count();
        assert_eq!(ours, 2);
        assert!(
            r.set(names::SEL4_HOSTS)
                .expect("sel4h")
                .elements
                .keys()
                .all(|k| k.start[..4] != client_id.to_be_bytes())
        );
        // The network set goes: back to the hash.
        c.apply(Update::Delete {
            kind: tortie_model::Kind::GlobalNetworkSet,
            namespace: String::new(),
            name: "office".into(),
        })
        .expect("calc takes it");
        sync(&mut c, &mut p, &mut r);
        let back = lookups_of(&r, web);
        assert!(back.contains(&names::SEL4_HOSTS.to_string()), "{back:?}");
        assert!(!back.contains(&names::SEL4.to_string()), "{back:?}");
    }
}
