//! IP set membership: the active rule selectors against every endpoint and
//! network set in the cluster.
//!
//! A set is *active* while some active policy or profile references it
//! (refcounted by reference). Members are refcounted too — two endpoints
//! may share an address, a network set may repeat a net — and a member
//! appears in the output exactly while its count is above zero, each
//! appearance and disappearance marked dirty for the delta.
//!
//! Hard cases: selector and named-port sets built on the same selector
//! share one index entry, so an item event updates all of them; an item
//! whose addresses or ports change without a label change has its old
//! contributions withdrawn and new ones added across every set it is in.

use ipnet::IpNet;

use super::{ActiveSet, Calculator};
use crate::ids::ItemKey;
use crate::index::SelId;
use crate::model::items::Item;
use crate::rules::{NamedPortProtocol, SetRef};
use crate::state::{IpSetMembers, NamedPortMember};

impl Calculator {
    /// Adds or removes one item's contribution to set `uid`.
    fn contribute_one(&mut self, uid: &str, item: &Item, add: bool) {
        let Some(set) = self.sets.get(uid) else {
            return;
        };
        match &set.named_port {
            None => {
                for net in &item.nets {
                    self.count_net(uid, *net, add);
                }
            }
            Some((protocol, name)) => {
                let members: Vec<NamedPortMember> = named_port_members(item, *protocol, name);
                for m in members {
                    self.count_port(uid, m, add);
                }
            }
        }
    }

    /// Adds or removes an item's contribution to every set on `sel`.
    fn contribute(&mut self, sel: SelId, item: &Item, add: bool) {
        let uids = self.sel_sets.get(&sel).cloned().unwrap_or_default();
        for uid in uids {
            self.contribute_one(&uid, item, add);
        }
    }

    fn count_net(&mut self, uid: &str, net: IpNet, add: bool) {
        let counts = self.net_counts.entry(uid.to_string()).or_default();
        let count = counts.entry(net).or_insert(0);
        let visible_before = *count > 0;
        if add {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
        }
        let visible_after = *count > 0;
        if *count == 0 {
            counts.remove(&net);
        }
        if visible_before != visible_after {
            let set = self.state.ip_sets.entry(uid.to_string()).or_default();
            if visible_after {
                set.insert(net);
            } else {
                set.remove(&net);
            }
            self.tracker
                .dirty
                .ip_set_members
                .entry(uid.to_string())
                .or_default()
                .insert(net);
        }
    }

    fn count_port(&mut self, uid: &str, member: NamedPortMember, add: bool) {
        let counts = self.port_counts.entry(uid.to_string()).or_default();
        let count = counts.entry(member).or_insert(0);
        let visible_before = *count > 0;
        if add {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
        }
        let visible_after = *count > 0;
        if *count == 0 {
            counts.remove(&member);
        }
        if visible_before != visible_after {
            let set = self
                .state
                .named_port_sets
                .entry(uid.to_string())
                .or_default();
            if visible_after {
                set.insert(member);
            } else {
                set.remove(&member);
            }
            self.tracker
                .dirty
                .named_members
                .entry(uid.to_string())
                .or_default()
                .insert(member);
        }
    }

    /// Takes one reference on the set `r` describes, creating it (and
    /// computing its members) on the first.
    pub(super) fn acquire_set(&mut self, r: &SetRef) {
        if let Some(set) = self.sets.get_mut(&r.uid) {
            set.refs += 1;
            return;
        }
        let sel = self.ipset_index.acquire(&r.selector);
        self.sets.insert(
            r.uid.clone(),
            ActiveSet {
                sel,
                named_port: r.named_port.clone(),
                refs: 1,
            },
        );
        self.sel_sets.entry(sel).or_default().push(r.uid.clone());
        if r.named_port.is_some() {
            self.state
                .named_port_sets
                .insert(r.uid.clone(), Default::default());
            self.tracker.dirty.named_sets.insert(r.uid.clone());
        } else {
            self.state
                .ip_sets
                .insert(r.uid.clone(), IpSetMembers::default());
            self.tracker.dirty.ip_sets.insert(r.uid.clone());
        }
        let members: Vec<ItemKey> = self.ipset_index.matches(sel).cloned().collect();
        for key in members {
            if let Some(item) = self.model.item(&key).cloned() {
                self.contribute_one(&r.uid, &item, true);
            }
        }
    }

    /// Drops one reference; the last removes the set.
    pub(super) fn release_set(&mut self, uid: &str) {
        let Some(set) = self.sets.get_mut(uid) else {
            return;
        };
        set.refs -= 1;
        if set.refs > 0 {
            return;
        }
        let Some(set) = self.sets.remove(uid) else {
            return;
        };
        if let Some(uids) = self.sel_sets.get_mut(&set.sel) {
            uids.retain(|u| u != uid);
            if uids.is_empty() {
                self.sel_sets.remove(&set.sel);
            }
        }
        self.ipset_index.release(set.sel);
        if set.named_port.is_some() {
            self.state.named_port_sets.remove(uid);
            self.port_counts.remove(uid);
            self.tracker.dirty.named_members.remove(uid);
            self.tracker.dirty.named_sets.insert(uid.to_string());
        } else {
            self.state.ip_sets.remove(uid);
            self.net_counts.remove(uid);
            self.tracker.dirty.ip_set_members.remove(uid);
            self.tracker.dirty.ip_sets.insert(uid.to_string());
        }
    }

    /// An endpoint or network set changed: update matches and members.
    pub(super) fn ipsets_item_changed(
        &mut self,
        key: &ItemKey,
        old: Option<&Item>,
        new: Option<&Item>,
    ) {
        let Some(new) = new else {
            let sels = self.ipset_index.remove(key);
            if let Some(old) = old {
                for sel in sels {
                    self.contribute(sel, old, false);
                }
            }
            return;
        };
        let same_members = old.is_some_and(|o| o.nets == new.nets && o.ports == new.ports);
        if same_members {
            for change in self.ipset_index.upsert(key, &new.labels) {
                self.contribute(change.sel, new, change.added);
            }
            return;
        }
        if let Some(old) = old {
            let before: Vec<SelId> = self.ipset_index.item_matches(key).collect();
            for sel in before {
                self.contribute(sel, old, false);
            }
        }
        self.ipset_index.upsert(key, &new.labels);
        let after: Vec<SelId> = self.ipset_index.item_matches(key).collect();
        for sel in after {
            self.contribute(sel, new, true);
        }
    }
}

/// The (address, protocol, port) members `item` gives a named-port set.
pub(crate) fn named_port_members(
    item: &Item,
    protocol: NamedPortProtocol,
    name: &str,
) -> Vec<NamedPortMember> {
    item.ports
        .iter()
        .filter(|p| p.protocol == protocol && p.name == name)
        .flat_map(|p| {
            item.nets.iter().map(move |n| NamedPortMember {
                addr: n.addr(),
                protocol,
                port: p.port,
            })
        })
        .collect()
}
