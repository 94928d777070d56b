//! The label index: which items (endpoints, network sets) each active
//! selector matches, and which active selectors each item matches, kept
//! up to date incrementally.
//!
//! Cost model: adding or relabelling an item evaluates it against the
//! active selectors that could match it — the unscoped ones plus those
//! scoped to the item's namespace — and nothing else; adding a selector
//! evaluates it against the items in its scope. Nothing is ever evaluated
//! pairwise across everything (Calico's `labelindex` has the same shape).
//! Every evaluation is counted, so tests can assert the cost.
//!
//! Selectors are interned by canonical form and reference-counted: the
//! first `acquire` evaluates, later ones only count, the last `release`
//! forgets the selector's matches. Items and selectors are held as small
//! integer slots so match sets stay cheap to hash.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use crate::labels::{Labels, namespace_of};
use crate::selectors::ScopedSelector;

/// An interned selector of one index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SelId(u32);

struct SelSlot {
    selector: ScopedSelector,
    refs: u32,
    matches: HashSet<u32>,
}

struct ItemSlot<K> {
    key: K,
    labels: Labels,
    namespace: Option<Arc<str>>,
    matches: HashSet<SelId>,
}

/// A selector-to-item index over items keyed by `K`.
pub(crate) struct LabelIndex<K> {
    sels: Vec<Option<SelSlot>>,
    free_sels: Vec<u32>,
    sel_ids: HashMap<Box<str>, SelId>,
    unscoped: HashSet<SelId>,
    by_namespace: HashMap<Arc<str>, HashSet<SelId>>,
    items: Vec<Option<ItemSlot<K>>>,
    free_items: Vec<u32>,
    item_ids: HashMap<K, u32>,
    /// Items by the value of their namespace label (`None`: no label).
    items_by_namespace: HashMap<Option<Arc<str>>, HashSet<u32>>,
    /// Selector evaluations performed so far.
    pub evaluations: u64,
}

/// A change in whether an item matches a selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MatchChange {
    pub sel: SelId,
    pub added: bool,
}

impl<K: Clone + Eq + Hash> LabelIndex<K> {
    pub fn new() -> LabelIndex<K> {
        LabelIndex {
            sels: Vec::new(),
            free_sels: Vec::new(),
            sel_ids: HashMap::new(),
            unscoped: HashSet::new(),
            by_namespace: HashMap::new(),
            items: Vec::new(),
            free_items: Vec::new(),
            item_ids: HashMap::new(),
            items_by_namespace: HashMap::new(),
            evaluations: 0,
        }
    }

    fn sel(&self, id: SelId) -> &SelSlot {
        self.sels[id.0 as usize]
            .as_ref()
            .expect("selector IDs handed out refer to live slots")
    }

    fn item(&self, slot: u32) -> &ItemSlot<K> {
        self.items[slot as usize]
            .as_ref()
            .expect("item slots in match sets are live")
    }

    /// Interns `selector` (one more reference). On the first reference the
    /// selector is evaluated against the items in its scope.
    pub fn acquire(&mut self, selector: &ScopedSelector) -> SelId {
        if let Some(&id) = self.sel_ids.get(selector.selector.canonical()) {
            if let Some(slot) = self.sels[id.0 as usize].as_mut() {
                slot.refs += 1;
            }
            return id;
        }
        let id = match self.free_sels.pop() {
            Some(i) => SelId(i),
            None => {
                self.sels.push(None);
                SelId(u32::try_from(self.sels.len() - 1).expect("fewer than 2^32 selectors"))
            }
        };
        let candidates: Vec<u32> = match &selector.namespace {
            Some(ns) => self
                .items_by_namespace
                .get(&Some(ns.clone()))
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
            None => self.item_ids.values().copied().collect(),
        };
        let mut matches = HashSet::new();
        for slot in candidates {
            self.evaluations += 1;
            let item = self.items[slot as usize]
                .as_mut()
                .expect("indexed item slots are live");
            if selector.selector.matches(&*item.labels) {
                item.matches.insert(id);
                matches.insert(slot);
            }
        }
        match &selector.namespace {
            Some(ns) => {
                self.by_namespace.entry(ns.clone()).or_default().insert(id);
            }
            None => {
                self.unscoped.insert(id);
            }
        }
        self.sel_ids
            .insert(selector.selector.canonical().into(), id);
        self.sels[id.0 as usize] = Some(SelSlot {
            selector: selector.clone(),
            refs: 1,
            matches,
        });
        id
    }

    /// Drops one reference; the last one forgets the selector. Returns true
    /// if the selector is gone.
    pub fn release(&mut self, id: SelId) -> bool {
        let slot = self.sels[id.0 as usize]
            .as_mut()
            .expect("released selector IDs are live");
        slot.refs -= 1;
        if slot.refs > 0 {
            return false;
        }
        let slot = self.sels[id.0 as usize]
            .take()
            .expect("the slot was live a moment ago");
        for item in &slot.matches {
            if let Some(i) = self.items[*item as usize].as_mut() {
                i.matches.remove(&id);
            }
        }
        match &slot.selector.namespace {
            Some(ns) => {
                if let Some(set) = self.by_namespace.get_mut(ns) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.by_namespace.remove(ns);
                    }
                }
            }
            None => {
                self.unscoped.remove(&id);
            }
        }
        self.sel_ids.remove(slot.selector.selector.canonical());
        self.free_sels.push(id.0);
        true
    }

    /// The items `id` matches.
    pub fn matches(&self, id: SelId) -> impl Iterator<Item = &K> {
        self.sel(id).matches.iter().map(|s| &self.item(*s).key)
    }

    /// The active selectors `key` matches.
    pub fn item_matches(&self, key: &K) -> impl Iterator<Item = SelId> + '_ {
        self.item_ids
            .get(key)
            .into_iter()
            .flat_map(|s| self.item(*s).matches.iter().copied())
    }

    /// Adds or relabels an item and reports the selectors it started or
    /// stopped matching. Unchanged labels cost nothing.
    pub fn upsert(&mut self, key: &K, labels: &Labels) -> Vec<MatchChange> {
        let namespace: Option<Arc<str>> = namespace_of(labels).map(Arc::from);
        let slot = match self.item_ids.get(key) {
            Some(&slot) => {
                let item = self.item(slot);
                if Arc::ptr_eq(&item.labels, labels) || *item.labels == **labels {
                    return Vec::new();
                }
                slot
            }
            None => {
                let slot = match self.free_items.pop() {
                    Some(s) => s,
                    None => {
                        self.items.push(None);
                        u32::try_from(self.items.len() - 1).expect("fewer than 2^32 items")
                    }
                };
                self.items[slot as usize] = Some(ItemSlot {
                    key: key.clone(),
                    labels: labels.clone(),
                    namespace: namespace.clone(),
                    matches: HashSet::new(),
                });
                self.item_ids.insert(key.clone(), slot);
                self.items_by_namespace
                    .entry(namespace.clone())
                    .or_default()
                    .insert(slot);
                slot
            }
        };
        // Move between namespace buckets if the namespace label changed.
        let old_ns = self.item(slot).namespace.clone();
        if old_ns != namespace {
            if let Some(set) = self.items_by_namespace.get_mut(&old_ns) {
                set.remove(&slot);
                if set.is_empty() {
                    self.items_by_namespace.remove(&old_ns);
                }
            }
            self.items_by_namespace
                .entry(namespace.clone())
                .or_default()
                .insert(slot);
        }
        let candidates: Vec<SelId> = self
            .unscoped
            .iter()
            .chain(
                namespace
                    .as_ref()
                    .and_then(|ns| self.by_namespace.get(ns))
                    .into_iter()
                    .flatten(),
            )
            .copied()
            .collect();
        let mut now = HashSet::with_capacity(candidates.len() / 4);
        for id in candidates {
            self.evaluations += 1;
            if self.sel(id).selector.selector.matches(&**labels) {
                now.insert(id);
            }
        }
        let before = &self.item(slot).matches;
        let mut changes: Vec<MatchChange> = before
            .difference(&now)
            .map(|id| MatchChange {
                sel: *id,
                added: false,
            })
            .collect();
        changes.extend(now.difference(before).map(|id| MatchChange {
            sel: *id,
            added: true,
        }));
        for change in &changes {
            let sel = self.sels[change.sel.0 as usize]
                .as_mut()
                .expect("matched selectors are live");
            if change.added {
                sel.matches.insert(slot);
            } else {
                sel.matches.remove(&slot);
            }
        }
        let item = self.items[slot as usize]
            .as_mut()
            .expect("the slot was just looked up");
        item.matches = now;
        item.labels = labels.clone();
        item.namespace = namespace;
        changes
    }

    /// Removes an item; returns the selectors it matched.
    pub fn remove(&mut self, key: &K) -> Vec<SelId> {
        let Some(slot) = self.item_ids.remove(key) else {
            return Vec::new();
        };
        let item = self.items[slot as usize]
            .take()
            .expect("indexed item slots are live");
        if let Some(set) = self.items_by_namespace.get_mut(&item.namespace) {
            set.remove(&slot);
            if set.is_empty() {
                self.items_by_namespace.remove(&item.namespace);
            }
        }
        for id in &item.matches {
            if let Some(sel) = self.sels[id.0 as usize].as_mut() {
                sel.matches.remove(&slot);
            }
        }
        self.free_items.push(slot);
        item.matches.into_iter().collect()
    }

    /// Number of live selectors.
    pub fn selector_count(&self) -> usize {
        self.sel_ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tortie_selector::Selector;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn sel(text: &str, ns: Option<&str>) -> ScopedSelector {
        ScopedSelector {
            selector: Selector::parse(text).unwrap(),
            namespace: ns.map(Arc::from),
        }
    }

    #[test]
    fn matches_follow_items_and_selectors_both_ways() {
        let mut idx: LabelIndex<&str> = LabelIndex::new();
        idx.upsert(
            &"a",
            &labels(&[("app", "x"), ("projectcalico.org/namespace", "n1")]),
        );
        idx.upsert(
            &"b",
            &labels(&[("app", "y"), ("projectcalico.org/namespace", "n2")]),
        );
        let x = idx.acquire(&sel("app == 'x'", None));
        assert_eq!(idx.matches(x).collect::<Vec<_>>(), [&"a"]);
        // Scoped to n2: only b is evaluated.
        let before = idx.evaluations;
        let scoped = idx.acquire(&sel(
            "projectcalico.org/namespace == 'n2' && has(app)",
            Some("n2"),
        ));
        assert_eq!(idx.evaluations - before, 1);
        assert_eq!(idx.matches(scoped).collect::<Vec<_>>(), [&"b"]);
        // Relabel b to app x: gains x, keeps scoped.
        let changes = idx.upsert(
            &"b",
            &labels(&[("app", "x"), ("projectcalico.org/namespace", "n2")]),
        );
        assert_eq!(
            changes,
            [MatchChange {
                sel: x,
                added: true
            }]
        );
        // Same labels again: no work.
        let before = idx.evaluations;
        assert!(
            idx.upsert(
                &"b",
                &labels(&[("app", "x"), ("projectcalico.org/namespace", "n2")])
            )
            .is_empty()
        );
        assert_eq!(idx.evaluations, before);
        // Interning: a second acquire shares the selector.
        assert_eq!(idx.acquire(&sel("app=='x'", None)), x);
        assert!(!idx.release(x));
        assert!(idx.release(x));
        assert_eq!(idx.item_matches(&"b").collect::<Vec<_>>(), [scoped]);
        assert_eq!(idx.remove(&"b"), [scoped]);
        assert_eq!(idx.matches(scoped).count(), 0);
    }
}
