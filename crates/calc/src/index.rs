//! The label index: which items (endpoints, network sets) each active
//! selector matches, and which active selectors each item matches, kept
//! up to date incrementally.
//!
//! Cost model: every selector gets a [`Guard`] — a label condition all its
//! matches meet (`app == "x"`, `app in {…}`, `has(app)`, or the namespace
//! scope the calculation attached) — and items are indexed by label key
//! and value. Adding or relabelling an item evaluates it only against the
//! selectors whose guard its labels meet plus the unguarded ones; adding a
//! selector evaluates it only against the items meeting its guard. With
//! equality selectors (the common case) both are proportional to the
//! matches, not to everything: nothing is evaluated pairwise across all
//! items and selectors (Calico's `labelindex` has the same shape). Every
//! evaluation is counted, so tests can assert the cost.
//!
//! Selectors are interned by canonical form and reference-counted: the
//! first `acquire` evaluates, later ones only count, the last `release`
//! forgets the selector's matches. Items and selectors are held as small
//! integer slots so match sets stay cheap to hash.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use tortie_model::endpoint::NAMESPACE_LABEL;

use crate::guard::Guard;
use crate::labels::Labels;
use crate::selectors::ScopedSelector;

/// An interned selector of one index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SelId(u32);

struct SelSlot {
    selector: ScopedSelector,
    guard: Guard,
    refs: u32,
    matches: HashSet<u32>,
}

struct ItemSlot<K> {
    key: K,
    labels: Labels,
    matches: HashSet<SelId>,
}

/// Label key → label value → entries.
type ByLabel<T> = HashMap<Box<str>, HashMap<Box<str>, HashSet<T>>>;

/// A selector-to-item index over items keyed by `K`.
pub(crate) struct LabelIndex<K> {
    sels: Vec<Option<SelSlot>>,
    free_sels: Vec<u32>,
    sel_ids: HashMap<Box<str>, SelId>,
    /// Selectors without a guard: candidates for every item.
    unguarded: HashSet<SelId>,
    /// Selectors guarded by a label value, under each value they accept.
    guarded_by_value: ByLabel<SelId>,
    /// Selectors guarded by a label's presence.
    guarded_by_key: HashMap<Box<str>, HashSet<SelId>>,
    /// Namespaced selectors guarded by a label value, by namespace, then
    /// under each value they accept.
    guarded_in_namespace: HashMap<Box<str>, ByLabel<SelId>>,
    items: Vec<Option<ItemSlot<K>>>,
    free_items: Vec<u32>,
    item_ids: HashMap<K, u32>,
    /// Items by each of their labels.
    items_by_label: ByLabel<u32>,
    /// Selector evaluations performed so far.
    pub evaluations: u64,
}

/// A change in whether an item matches a selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MatchChange {
    pub sel: SelId,
    pub added: bool,
}

/// Adds `entry` under `key`/`value`.
fn post<T: Eq + Hash>(map: &mut ByLabel<T>, key: &str, value: &str, entry: T) {
    let values = match map.get_mut(key) {
        Some(v) => v,
        None => map.entry(key.into()).or_default(),
    };
    match values.get_mut(value) {
        Some(set) => set.insert(entry),
        None => values.entry(value.into()).or_default().insert(entry),
    };
}

/// Removes `entry` from under `key`/`value`, dropping emptied levels.
fn unpost<T: Eq + Hash>(map: &mut ByLabel<T>, key: &str, value: &str, entry: &T) {
    let Some(values) = map.get_mut(key) else {
        return;
    };
    if let Some(set) = values.get_mut(value) {
        set.remove(entry);
        if set.is_empty() {
            values.remove(value);
        }
    }
    if values.is_empty() {
        map.remove(key);
    }
}

impl<K: Clone + Eq + Hash> LabelIndex<K> {
    pub fn new() -> LabelIndex<K> {
        LabelIndex {
            sels: Vec::new(),
            free_sels: Vec::new(),
            sel_ids: HashMap::new(),
            unguarded: HashSet::new(),
            guarded_by_value: HashMap::new(),
            guarded_by_key: HashMap::new(),
            guarded_in_namespace: HashMap::new(),
            items: Vec::new(),
            free_items: Vec::new(),
            item_ids: HashMap::new(),
            items_by_label: HashMap::new(),
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

    /// The items with label `key` set to one of `values`.
    fn items_with(&self, key: &str, values: &[Box<str>]) -> Vec<u32> {
        let Some(by_value) = self.items_by_label.get(key) else {
            return Vec::new();
        };
        values
            .iter()
            .filter_map(|v| by_value.get(v))
            .flatten()
            .copied()
            .collect()
    }

    /// The items that meet `guard`.
    fn items_meeting(&self, guard: &Guard) -> Vec<u32> {
        match guard {
            Guard::Values { key, values } => self.items_with(key, values),
            Guard::Scoped {
                namespace,
                key,
                values,
            } => {
                // The smaller of the two postings, checked against the
                // whole guard.
                let in_namespace =
                    self.items_with(NAMESPACE_LABEL, std::slice::from_ref(namespace));
                let with_value = self.items_with(key, values);
                let smaller = if in_namespace.len() <= with_value.len() {
                    in_namespace
                } else {
                    with_value
                };
                smaller
                    .into_iter()
                    .filter(|slot| guard.admits(&self.item(*slot).labels))
                    .collect()
            }
            Guard::Has { key } => self
                .items_by_label
                .get(key)
                .into_iter()
                .flat_map(|by_value| by_value.values().flatten().copied())
                .collect(),
            Guard::Unguarded => self.item_ids.values().copied().collect(),
        }
    }

    /// The selectors whose guard `labels` meet.
    fn selectors_met_by(&self, labels: &Labels) -> Vec<SelId> {
        let mut out: Vec<SelId> = self.unguarded.iter().copied().collect();
        if self.guarded_by_value.is_empty()
            && self.guarded_by_key.is_empty()
            && self.guarded_in_namespace.is_empty()
        {
            return out;
        }
        let in_namespace = labels
            .get(NAMESPACE_LABEL)
            .and_then(|ns| self.guarded_in_namespace.get(ns.as_str()));
        for (k, v) in labels.iter() {
            if let Some(set) = self
                .guarded_by_value
                .get(k.as_str())
                .and_then(|by_value| by_value.get(v.as_str()))
            {
                out.extend(set.iter().copied());
            }
            if let Some(set) = self.guarded_by_key.get(k.as_str()) {
                out.extend(set.iter().copied());
            }
            if let Some(set) = in_namespace
                .and_then(|by_label| by_label.get(k.as_str()))
                .and_then(|by_value| by_value.get(v.as_str()))
            {
                out.extend(set.iter().copied());
            }
        }
        out
    }

    /// Interns `selector` (one more reference). On the first reference the
    /// selector is evaluated against the items meeting its guard.
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
        let guard = Guard::of(selector, |key| {
            self.items_by_label.get(key).map_or(0, HashMap::len)
        });
        let mut matches = HashSet::new();
        for slot in self.items_meeting(&guard) {
            self.evaluations += 1;
            let item = self.items[slot as usize]
                .as_mut()
                .expect("indexed item slots are live");
            if selector.selector.matches(&*item.labels) {
                item.matches.insert(id);
                matches.insert(slot);
            }
        }
        match &guard {
            Guard::Values { key, values } => {
                for v in values {
                    post(&mut self.guarded_by_value, key, v, id);
                }
            }
            Guard::Scoped {
                namespace,
                key,
                values,
            } => {
                let by_label = self
                    .guarded_in_namespace
                    .entry(namespace.clone())
                    .or_default();
                for v in values {
                    post(by_label, key, v, id);
                }
            }
            Guard::Has { key } => {
                self.guarded_by_key
                    .entry(key.clone())
                    .or_default()
                    .insert(id);
            }
            Guard::Unguarded => {
                self.unguarded.insert(id);
            }
        }
        self.sel_ids
            .insert(selector.selector.canonical().into(), id);
        self.sels[id.0 as usize] = Some(SelSlot {
            selector: selector.clone(),
            guard,
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
        match &slot.guard {
            Guard::Values { key, values } => {
                for v in values {
                    unpost(&mut self.guarded_by_value, key, v, &id);
                }
            }
            Guard::Scoped {
                namespace,
                key,
                values,
            } => {
                if let Some(by_label) = self.guarded_in_namespace.get_mut(namespace) {
                    for v in values {
                        unpost(by_label, key, v, &id);
                    }
                    if by_label.is_empty() {
                        self.guarded_in_namespace.remove(namespace);
                    }
                }
            }
            Guard::Has { key } => {
                if let Some(set) = self.guarded_by_key.get_mut(key) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.guarded_by_key.remove(key);
                    }
                }
            }
            Guard::Unguarded => {
                self.unguarded.remove(&id);
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
        let slot = match self.item_ids.get(key) {
            Some(&slot) => {
                let item = self.item(slot);
                if Arc::ptr_eq(&item.labels, labels) || *item.labels == **labels {
                    return Vec::new();
                }
                let old = item.labels.clone();
                for (k, v) in old.iter() {
                    if labels.get(k) != Some(v) {
                        unpost(&mut self.items_by_label, k, v, &slot);
                    }
                }
                for (k, v) in labels.iter() {
                    if old.get(k) != Some(v) {
                        post(&mut self.items_by_label, k, v, slot);
                    }
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
                    matches: HashSet::new(),
                });
                self.item_ids.insert(key.clone(), slot);
                for (k, v) in labels.iter() {
                    post(&mut self.items_by_label, k, v, slot);
                }
                slot
            }
        };
        let candidates = self.selectors_met_by(labels);
        let mut now = HashSet::with_capacity(candidates.len());
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
        for (k, v) in item.labels.iter() {
            unpost(&mut self.items_by_label, k, v, &slot);
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
