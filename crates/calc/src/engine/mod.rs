//! The incremental engine: [`Calculator`] turns datastore updates into this
//! node's [`LocalState`] and hands out [`Delta`]s.
//!
//! Pipeline per update: the [`ClusterModel`] parses it and reports what
//! changed; each change is routed to the parts it affects —
//!
//! - `ipsets`: every endpoint and network set against the *active* rule
//!   selectors (those of policies and profiles in use on this node), with
//!   refcounted members;
//! - `local`: this node's endpoints against every enforced policy's
//!   selector, which gives each endpoint its policies; a policy or profile
//!   becomes *active* (compiled, its rule selectors turned into IP sets)
//!   while a local endpoint uses it;
//! - `routing`: route sources, VTEPs, NAT pools and the configuration;
//!
//! then `flush` recomputes only what was marked dirty: activation of the
//! touched policies and profiles, and the state of the touched endpoints.
//! A label change on one endpoint thus costs one evaluation per active
//! selector in its scope plus the member and endpoint updates that follow.
//!
//! Hard cases: activation is reconciled after all changes of an update,
//! acquiring new IP sets before releasing old ones, so a policy edit that
//! keeps a selector never drops and rebuilds its set; nothing is handed
//! out before the datastore is in sync (STYLE.md §2).

mod ipsets;
mod local;
mod routing;

pub(crate) use ipsets::named_port_members;
pub(crate) use local::{applicable, fits_endpoint, host_state, workload_state};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::delta::{Delta, DeltaTracker};
use crate::ids::{ItemKey, PolicyId, WorkloadId};
use crate::index::{LabelIndex, SelId};
use crate::model::infra::Profile;
use crate::model::{Change, ClusterModel};
use crate::policy::Policy;
use crate::routes::{RouteCandidate, RouteSource};
use crate::state::{LocalState, NamedPortMember};
use crate::update::{Update, UpdateError};

/// Counters describing the work done, for metrics and for tests that pin
/// the cost of an update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub updates: u64,
    pub errors: u64,
    /// Selector evaluations against local endpoints (policy selectors).
    pub policy_selector_evaluations: u64,
    /// Selector evaluations against all endpoints and sets (IP sets).
    pub ipset_selector_evaluations: u64,
    pub active_policy_selectors: usize,
    pub active_ipset_selectors: usize,
    pub active_policies: usize,
    pub active_profiles: usize,
}

/// An IP set in use.
struct ActiveSet {
    sel: SelId,
    named_port: Option<(crate::rules::NamedPortProtocol, String)>,
    refs: u32,
}

/// A policy or profile in use on this node, and the IP sets it holds.
struct Active<T> {
    value: Arc<T>,
    sets: Vec<String>,
}

/// The calculation for one node.
pub struct Calculator {
    node: String,
    model: ClusterModel,
    state: LocalState,
    tracker: DeltaTracker,
    stats: Stats,

    // ---- local endpoints (local.rs) ----
    /// Local endpoints against enforced policies' selectors.
    policy_index: LabelIndex<ItemKey>,
    policy_sel: HashMap<PolicyId, SelId>,
    sel_policies: HashMap<SelId, BTreeSet<PolicyId>>,
    endpoint_policies: HashMap<ItemKey, BTreeSet<PolicyId>>,
    policy_endpoints: HashMap<PolicyId, HashSet<ItemKey>>,
    profile_local_users: HashMap<String, HashSet<ItemKey>>,
    /// Host interface → local workloads naming it (the smallest ID wins).
    iface_claims: HashMap<String, BTreeSet<WorkloadId>>,
    active_policies: HashMap<PolicyId, Active<Policy>>,
    active_profiles: HashMap<String, Active<Profile>>,
    dirty_endpoints: HashSet<ItemKey>,
    dirty_ifaces: HashSet<String>,
    dirty_policies: HashSet<PolicyId>,
    dirty_profiles: HashSet<String>,

    // ---- IP sets (ipsets.rs) ----
    /// Every endpoint and network set against active rule selectors.
    ipset_index: LabelIndex<ItemKey>,
    sets: HashMap<String, ActiveSet>,
    sel_sets: HashMap<SelId, Vec<String>>,
    net_counts: HashMap<String, HashMap<IpNet, u32>>,
    port_counts: HashMap<String, HashMap<NamedPortMember, u32>>,

    // ---- routing (routing.rs) ----
    route_sources: HashMap<RouteSource, Vec<RouteCandidate>>,
    route_candidates: BTreeMap<IpNet, BTreeMap<(u8, RouteSource), crate::state::RouteTarget>>,
    workloads_by_node: HashMap<String, HashSet<WorkloadId>>,
    workloads_by_addr: BTreeMap<IpAddr, BTreeSet<WorkloadId>>,
}

impl Calculator {
    /// A calculation for node `node` over an empty datastore.
    pub fn new(node: &str) -> Calculator {
        let model = ClusterModel::new();
        let mut state = LocalState {
            config: model.felix_config(node),
            ..LocalState::default()
        };
        state.vxlan.local = crate::vxlan::local_vxlan(None, &state.config);
        Calculator {
            node: node.to_string(),
            model,
            state,
            tracker: DeltaTracker::new(),
            stats: Stats::default(),
            policy_index: LabelIndex::new(),
            policy_sel: HashMap::new(),
            sel_policies: HashMap::new(),
            endpoint_policies: HashMap::new(),
            policy_endpoints: HashMap::new(),
            profile_local_users: HashMap::new(),
            iface_claims: HashMap::new(),
            active_policies: HashMap::new(),
            active_profiles: HashMap::new(),
            dirty_endpoints: HashSet::new(),
            dirty_ifaces: HashSet::new(),
            dirty_policies: HashSet::new(),
            dirty_profiles: HashSet::new(),
            ipset_index: LabelIndex::new(),
            sets: HashMap::new(),
            sel_sets: HashMap::new(),
            net_counts: HashMap::new(),
            port_counts: HashMap::new(),
            route_sources: HashMap::new(),
            route_candidates: BTreeMap::new(),
            workloads_by_node: HashMap::new(),
            workloads_by_addr: BTreeMap::new(),
        }
    }

    /// The node this calculation is for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Applies one decoded update. An invalid resource is removed (as if
    /// deleted), counted, and returned as the error.
    pub fn apply(&mut self, update: Update) -> Result<(), UpdateError> {
        let (changes, result) = self.model.apply_update(update);
        self.finish(changes, result)
    }

    /// Decodes and applies one `(key, value)` from the syncer (`None`:
    /// deleted). Keys the calculation does not use are ignored; a value
    /// that does not decode deletes the key, is counted and returned.
    pub fn apply_kv(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), UpdateError> {
        let (changes, result) = self.model.apply_kv_changes(key, value);
        self.finish(changes, result)
    }

    fn finish(
        &mut self,
        changes: Vec<Change>,
        result: Result<(), UpdateError>,
    ) -> Result<(), UpdateError> {
        self.stats.updates += 1;
        if result.is_err() {
            self.stats.errors += 1;
        }
        for change in changes {
            self.handle(change);
        }
        self.flush();
        result
    }

    fn handle(&mut self, change: Change) {
        match change {
            Change::Item { key, old, new } => {
                self.ipsets_item_changed(&key, old.as_deref(), new.as_deref());
                self.local_item_changed(&key, old.as_deref(), new.as_deref());
                if let ItemKey::Workload(id) = &key {
                    self.workload_routes_changed(id, old.as_deref(), new.as_deref());
                }
            }
            Change::Profile(name) => self.profile_changed(&name),
            Change::Policy { id, old, new } => self.policy_changed(&id, old, new),
            Change::Tier(name) => self.tier_changed(&name),
            Change::Node(name) => self.node_changed(&name),
            Change::Pools | Change::FelixConfig => self.config_or_pools_changed(),
            Change::Block(cidr) => self.block_changed(&cidr),
            Change::Affinity { host, cidr } => {
                if host == self.node {
                    self.recompute_route_source(RouteSource::Block(cidr));
                }
            }
            Change::InSync => {}
        }
    }

    /// Recomputes everything marked dirty by the changes of one update.
    fn flush(&mut self) {
        for id in std::mem::take(&mut self.dirty_policies) {
            self.reconcile_policy(&id);
        }
        for name in std::mem::take(&mut self.dirty_profiles) {
            self.reconcile_profile(&name);
        }
        self.flush_endpoints();
        self.stats.policy_selector_evaluations = self.policy_index.evaluations;
        self.stats.ipset_selector_evaluations = self.ipset_index.evaluations;
        self.stats.active_policy_selectors = self.policy_index.selector_count();
        self.stats.active_ipset_selectors = self.ipset_index.selector_count();
        self.stats.active_policies = self.active_policies.len();
        self.stats.active_profiles = self.active_profiles.len();
    }

    /// The whole current desired state.
    pub fn local_state(&self) -> &LocalState {
        &self.state
    }

    /// What changed since the last call, or `None` while the datastore is
    /// not yet in sync. The first delta, applied to `LocalState::default()`,
    /// gives the whole state.
    pub fn take_delta(&mut self) -> Option<Delta> {
        self.model.in_sync().then(|| self.tracker.take(&self.state))
    }

    /// The cluster model (what `explain` evaluates against).
    pub fn model(&self) -> &ClusterModel {
        &self.model
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}
