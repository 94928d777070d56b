//! The cluster model: every resource the calculation uses, parsed, for the
//! whole cluster (not just this node), with the label layering of
//! selectors.md §6.2 kept up to date.
//!
//! This is what `explain` evaluates against, and what the incremental
//! engine reads. Applying an update returns the list of [`Change`]s it
//! caused, old and new values included, so the engine never recomputes
//! what did not change.
//!
//! Hard cases: a profile's `labelsToApply` changing relabels every
//! endpoint and network set that inherits from it (each reported as an
//! item change); a resource that does not parse is removed (and the error
//! returned) rather than kept stale; re-delivering an identical value
//! changes nothing.

pub mod infra;
pub mod items;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tortie_client::DEFAULT_ALLOW_PROFILE;
use tortie_ipam::affinity::AffinityState;
use tortie_model::config::FelixConfigurationSpec;
use tortie_model::ippool::IPPoolSpec;
use tortie_model::node::NodeSpec;
use tortie_model::policy::{ProfileSpec, TierSpec};
use tortie_model::{Kind, Resource};

use crate::config::EffectiveConfig;
use crate::ids::{ItemKey, PolicyId};
use crate::policy::{Policy, TierInfo};
use crate::update::{Decoded, Update, UpdateError, decode_kv};
use infra::{NodeInfo, PoolInfo, Profile};
use items::{Item, ItemRef, parse_item};

/// What one update changed in the model.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Item {
        key: ItemKey,
        old: Option<ItemRef>,
        new: Option<ItemRef>,
    },
    Profile(String),
    Policy {
        id: PolicyId,
        old: Option<Arc<Policy>>,
        new: Option<Arc<Policy>>,
    },
    Tier(String),
    Node(String),
    Pools,
    Block(IpNet),
    Affinity {
        host: String,
        cidr: IpNet,
    },
    FelixConfig,
    InSync,
}

/// Every resource the calculation uses, cluster-wide.
#[derive(Debug)]
pub struct ClusterModel {
    items: HashMap<ItemKey, ItemRef>,
    /// Profile name → items inheriting its labels.
    profile_users: HashMap<String, BTreeSet<ItemKey>>,
    profiles: HashMap<String, Arc<Profile>>,
    default_allow: Arc<Profile>,
    policies: HashMap<PolicyId, Arc<Policy>>,
    tier_policies: HashMap<String, BTreeSet<PolicyId>>,
    tiers: HashMap<String, TierInfo>,
    nodes: HashMap<String, Arc<NodeInfo>>,
    pools: BTreeMap<String, PoolInfo>,
    /// Block CIDR → the host it is affine to (unaffine and virtual blocks
    /// route nowhere and are not kept).
    blocks: BTreeMap<IpNet, String>,
    affinities: BTreeMap<(String, IpNet), AffinityState>,
    felix: BTreeMap<String, FelixConfigurationSpec>,
    in_sync: bool,
}

impl Default for ClusterModel {
    fn default() -> Self {
        ClusterModel::new()
    }
}

impl ClusterModel {
    pub fn new() -> ClusterModel {
        ClusterModel {
            items: HashMap::new(),
            profile_users: HashMap::new(),
            profiles: HashMap::new(),
            default_allow: Arc::new(Profile::default_allow()),
            policies: HashMap::new(),
            tier_policies: HashMap::new(),
            tiers: HashMap::new(),
            nodes: HashMap::new(),
            pools: BTreeMap::new(),
            blocks: BTreeMap::new(),
            affinities: BTreeMap::new(),
            felix: BTreeMap::new(),
            in_sync: false,
        }
    }

    /// Applies one decoded update.
    pub fn apply(&mut self, update: Update) -> Result<(), UpdateError> {
        self.apply_update(update).1
    }

    /// Decodes and applies one `(key, value)` from the syncer; a value that
    /// does not decode deletes the key and is returned as the error.
    pub fn apply_kv(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), UpdateError> {
        self.apply_kv_changes(key, value).1
    }

    pub(crate) fn apply_kv_changes(
        &mut self,
        key: &str,
        value: Option<&[u8]>,
    ) -> (Vec<Change>, Result<(), UpdateError>) {
        match decode_kv(key, value) {
            Decoded::Ignored => (Vec::new(), Ok(())),
            Decoded::Update(update) => self.apply_update(update),
            Decoded::Invalid { error, deletion } => (self.apply_update(deletion).0, Err(error)),
        }
    }

    pub(crate) fn apply_update(
        &mut self,
        update: Update,
    ) -> (Vec<Change>, Result<(), UpdateError>) {
        let mut changes = Vec::new();
        let result = match update {
            Update::Put(r) => self.put(*r, &mut changes),
            Update::Delete {
                kind,
                namespace,
                name,
            } => {
                self.remove(kind, &namespace, &name, &mut changes);
                Ok(())
            }
            Update::Block { cidr, block } => {
                let owner = block
                    .and_then(|b| b.owner())
                    .filter(|o| o.is_host())
                    .map(|o| o.name().to_string());
                let old_owner = match &owner {
                    Some(host) => self.blocks.insert(cidr, host.clone()),
                    None => self.blocks.remove(&cidr),
                };
                if old_owner != owner {
                    changes.push(Change::Block(cidr));
                }
                Ok(())
            }
            Update::Affinity { host, cidr, state } => {
                let key = (host.clone(), cidr);
                let old = match state {
                    Some(s) => self.affinities.insert(key, s),
                    None => self.affinities.remove(&key),
                };
                if old != state {
                    changes.push(Change::Affinity { host, cidr });
                }
                Ok(())
            }
            Update::InSync => {
                if !self.in_sync {
                    self.in_sync = true;
                    changes.push(Change::InSync);
                }
                Ok(())
            }
        };
        (changes, result)
    }

    fn put(&mut self, r: Resource, changes: &mut Vec<Change>) -> Result<(), UpdateError> {
        let kind = r.kind();
        let (ns, name) = (r.metadata.namespace.clone(), r.metadata.name.clone());
        match self.put_parsed(&r, changes) {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.remove(kind, &ns, &name, changes);
                Err(UpdateError::Invalid {
                    resource: r.id(),
                    reason,
                })
            }
        }
    }

    fn put_parsed(&mut self, r: &Resource, changes: &mut Vec<Change>) -> Result<(), String> {
        let name = r.metadata.name.as_str();
        if let Some(item) = parse_item(r) {
            self.put_item(item?, changes);
            return Ok(());
        }
        if let Some(spec) = r.spec::<ProfileSpec>() {
            let profile = Arc::new(Profile::parse(name, spec)?);
            let old = self.profiles.insert(name.to_string(), profile.clone());
            self.profile_changed(name, old, Some(profile), changes);
            return Ok(());
        }
        if crate::ids::PolicyKind::from_kind(r.kind()).is_some() {
            match Policy::from_resource(r)? {
                Some(p) => self.put_policy(Arc::new(p), changes),
                None => self.remove(r.kind(), &r.metadata.namespace, name, changes),
            }
            return Ok(());
        }
        if let Some(spec) = r.spec::<TierSpec>() {
            let tier = TierInfo::from_spec(name, spec)?;
            if self.tiers.insert(name.to_string(), tier.clone()) != Some(tier) {
                changes.push(Change::Tier(name.to_string()));
            }
            return Ok(());
        }
        if let Some(spec) = r.spec::<NodeSpec>() {
            let node = Arc::new(NodeInfo::parse(name, spec)?);
            if self.nodes.insert(name.to_string(), node.clone()) != Some(node) {
                changes.push(Change::Node(name.to_string()));
            }
            return Ok(());
        }
        if let Some(spec) = r.spec::<IPPoolSpec>() {
            let pool = PoolInfo::parse(spec)?;
            if self.pools.insert(name.to_string(), pool.clone()) != Some(pool) {
                changes.push(Change::Pools);
            }
            return Ok(());
        }
        if let Some(spec) = r.spec::<FelixConfigurationSpec>() {
            if self.felix.insert(name.to_string(), spec.clone()).as_ref() != Some(spec) {
                changes.push(Change::FelixConfig);
            }
            return Ok(());
        }
        Ok(())
    }

    fn remove(&mut self, kind: Kind, ns: &str, name: &str, changes: &mut Vec<Change>) {
        let item_key = match kind {
            Kind::WorkloadEndpoint => {
                Some(ItemKey::Workload(crate::ids::WorkloadId::new(ns, name)))
            }
            Kind::HostEndpoint => Some(ItemKey::Host(name.to_string())),
            Kind::NetworkSet | Kind::GlobalNetworkSet => {
                Some(ItemKey::NetworkSet(crate::ids::NetworkSetId {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                }))
            }
            _ => None,
        };
        if let Some(key) = item_key {
            if let Some(old) = self.items.remove(&key) {
                self.unlink_parents(&key, &old);
                changes.push(Change::Item {
                    key,
                    old: Some(old),
                    new: None,
                });
            }
            return;
        }
        if let Some(pk) = crate::ids::PolicyKind::from_kind(kind) {
            let id = PolicyId::new(pk, ns, name);
            if let Some(old) = self.policies.remove(&id) {
                if let Some(set) = self.tier_policies.get_mut(&old.tier) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.tier_policies.remove(&old.tier);
                    }
                }
                changes.push(Change::Policy {
                    id,
                    old: Some(old),
                    new: None,
                });
            }
            return;
        }
        match kind {
            Kind::Profile => {
                if let Some(old) = self.profiles.remove(name) {
                    self.profile_changed(name, Some(old), None, changes);
                }
            }
            Kind::Tier if self.tiers.remove(name).is_some() => {
                changes.push(Change::Tier(name.to_string()));
            }
            Kind::Node if self.nodes.remove(name).is_some() => {
                changes.push(Change::Node(name.to_string()));
            }
            Kind::IPPool if self.pools.remove(name).is_some() => {
                changes.push(Change::Pools);
            }
            Kind::FelixConfiguration if self.felix.remove(name).is_some() => {
                changes.push(Change::FelixConfig);
            }
            _ => {}
        }
    }

    fn flatten(&self, item: &Item) -> crate::labels::Labels {
        item.label_sources
            .flatten(|p| self.profile(p).map(|p| &p.labels_to_apply))
    }

    fn put_item(&mut self, mut item: Item, changes: &mut Vec<Change>) {
        item.labels = self.flatten(&item);
        let key = item.key();
        let new = Arc::new(item);
        let old = self.items.insert(key.clone(), new.clone());
        if let Some(old) = &old {
            if **old == *new {
                return;
            }
            self.unlink_parents(&key, old);
        }
        for parent in &new.label_sources.parents {
            self.profile_users
                .entry(parent.clone())
                .or_default()
                .insert(key.clone());
        }
        changes.push(Change::Item {
            key,
            old,
            new: Some(new),
        });
    }

    fn unlink_parents(&mut self, key: &ItemKey, item: &Item) {
        for parent in &item.label_sources.parents {
            if let Some(users) = self.profile_users.get_mut(parent) {
                users.remove(key);
                if users.is_empty() {
                    self.profile_users.remove(parent);
                }
            }
        }
    }

    /// Records a profile change and relabels the items that inherit from it.
    fn profile_changed(
        &mut self,
        name: &str,
        old: Option<Arc<Profile>>,
        new: Option<Arc<Profile>>,
        changes: &mut Vec<Change>,
    ) {
        if old == new {
            return;
        }
        let old_labels = old.as_ref().map(|p| &p.labels_to_apply);
        let new_labels = new.as_ref().map(|p| &p.labels_to_apply);
        let relabel = old_labels != new_labels;
        changes.push(Change::Profile(name.to_string()));
        if !relabel {
            return;
        }
        let users: Vec<ItemKey> = self
            .profile_users
            .get(name)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default();
        for key in users {
            let Some(old) = self.items.get(&key).cloned() else {
                continue;
            };
            let labels = self.flatten(&old);
            if labels != old.labels {
                let new = Arc::new(old.with_labels(labels));
                self.items.insert(key.clone(), new.clone());
                changes.push(Change::Item {
                    key,
                    old: Some(old),
                    new: Some(new),
                });
            }
        }
    }

    fn put_policy(&mut self, policy: Arc<Policy>, changes: &mut Vec<Change>) {
        let id = policy.id.clone();
        let old = self.policies.insert(id.clone(), policy.clone());
        if let Some(old) = &old {
            if **old == *policy {
                return;
            }
            if old.tier != policy.tier
                && let Some(set) = self.tier_policies.get_mut(&old.tier)
            {
                set.remove(&id);
                if set.is_empty() {
                    self.tier_policies.remove(&old.tier);
                }
            }
        }
        self.tier_policies
            .entry(policy.tier.clone())
            .or_default()
            .insert(id.clone());
        changes.push(Change::Policy {
            id,
            old,
            new: Some(policy),
        });
    }

    // ---- read access ----

    pub fn item(&self, key: &ItemKey) -> Option<&ItemRef> {
        self.items.get(key)
    }

    pub fn items(&self) -> impl Iterator<Item = &ItemRef> {
        self.items.values()
    }

    /// Endpoints and network sets with `addr` among their addresses.
    pub fn items_at(&self, addr: IpAddr) -> Vec<&ItemRef> {
        self.items.values().filter(|i| i.contains(addr)).collect()
    }

    pub fn policy(&self, id: &PolicyId) -> Option<&Arc<Policy>> {
        self.policies.get(id)
    }

    pub fn policies(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.policies.values()
    }

    /// The policies naming tier `name`.
    pub fn policies_in_tier(&self, name: &str) -> impl Iterator<Item = &PolicyId> {
        self.tier_policies.get(name).into_iter().flatten()
    }

    /// A profile by name, including the virtual `projectcalico-default-allow`.
    pub fn profile(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles
            .get(name)
            .or_else(|| (name == DEFAULT_ALLOW_PROFILE).then_some(&self.default_allow))
    }

    /// The tier's settings, or those assumed when no Tier resource exists.
    pub fn tier(&self, name: &str) -> TierInfo {
        self.tiers
            .get(name)
            .cloned()
            .unwrap_or_else(|| TierInfo::implicit(name))
    }

    pub fn node(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Arc<NodeInfo>> {
        self.nodes.values()
    }

    pub fn pools(&self) -> impl Iterator<Item = &PoolInfo> + Clone {
        self.pools.values()
    }

    /// The pool containing `net`, if any.
    pub fn pool_containing(&self, net: &IpNet) -> Option<&PoolInfo> {
        self.pools.values().find(|p| p.cidr.contains(net))
    }

    /// Every host-affine block with its host.
    pub fn blocks(&self) -> impl Iterator<Item = (&IpNet, &str)> {
        self.blocks.iter().map(|(c, h)| (c, h.as_str()))
    }

    pub fn block_owner(&self, cidr: &IpNet) -> Option<&str> {
        self.blocks.get(cidr).map(String::as_str)
    }

    /// The host-affine block containing `addr` (blocks never overlap).
    pub fn block_containing(&self, addr: IpAddr) -> Option<(&IpNet, &str)> {
        self.blocks
            .range(..=IpNet::from(addr))
            .next_back()
            .filter(|(c, _)| c.contains(&addr))
            .map(|(c, h)| (c, h.as_str()))
    }

    pub fn affinity(&self, host: &str, cidr: &IpNet) -> Option<AffinityState> {
        self.affinities.get(&(host.to_string(), *cidr)).copied()
    }

    /// The effective FelixConfiguration for `node`.
    pub fn felix_config(&self, node: &str) -> EffectiveConfig {
        EffectiveConfig::layered(
            self.felix.get("default"),
            self.felix.get(&format!("node.{node}")),
            self.pools.values(),
        )
    }

    /// True once the syncer has delivered a complete snapshot.
    pub fn in_sync(&self) -> bool {
        self.in_sync
    }
}
