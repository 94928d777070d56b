//! What the syncer has told its consumer about one prefix, and the pure
//! rules that turn lists and watch events into updates (no I/O here).
//!
//! Hard cases:
//! - A re-list after a failed watch must look like a diff: keys whose
//!   revision is unchanged are not re-sent, changed or new keys are, and
//!   keys that vanished are sent as deletions. A vanished key's deletion
//!   carries the list's revision, the newest revision at which it is known
//!   to be absent.
//! - Never the same revision of a key twice, never backwards: everything up
//!   to `revision` is already reflected, so watch events at or below it are
//!   dropped (one watch per prefix delivers in order, so a high-water mark
//!   is exact).

use std::collections::HashMap;

use super::SyncEvent;
use crate::{EventKind, ListResult, Revision, WatchEvent};

pub(super) struct PrefixCache {
    prefix: String,
    /// Key -> mod_revision of the value last sent.
    known: HashMap<String, Revision>,
    /// Every write up to this revision is reflected in what was sent.
    revision: Revision,
}

impl PrefixCache {
    pub fn new(prefix: String) -> PrefixCache {
        PrefixCache {
            prefix,
            known: HashMap::new(),
            revision: 0,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The revision to resume watching after (watch from this + 1).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Applies a complete list of the prefix; returns the differences from
    /// what was sent before, changed and new keys in key order, then
    /// deletions in key order.
    pub fn apply_list(&mut self, list: ListResult) -> Vec<SyncEvent> {
        let mut updates = Vec::new();
        let mut listed = HashMap::with_capacity(list.items.len());
        for item in list.items {
            if !item.key.starts_with(&self.prefix) {
                continue;
            }
            // A different revision, even a lower one (a store restored from
            // backup), means the consumer's copy is not the store's.
            if self.known.get(&item.key) != Some(&item.mod_revision) {
                updates.push(SyncEvent::Update {
                    key: item.key.clone(),
                    value: Some(item.value),
                    revision: item.mod_revision,
                });
            }
            listed.insert(item.key, item.mod_revision);
        }
        let mut vanished: Vec<String> = self
            .known
            .keys()
            .filter(|key| !listed.contains_key(*key))
            .cloned()
            .collect();
        vanished.sort_unstable();
        updates.extend(vanished.into_iter().map(|key| SyncEvent::Update {
            key,
            value: None,
            revision: list.revision,
        }));
        self.known = listed;
        self.revision = self.revision.max(list.revision);
        updates
    }

    /// Applies one watch event; returns the update to send, if any.
    pub fn apply_event(&mut self, event: WatchEvent) -> Option<SyncEvent> {
        if event.mod_revision <= self.revision || !event.key.starts_with(&self.prefix) {
            return None;
        }
        self.revision = event.mod_revision;
        match event.kind {
            EventKind::Put => {
                self.known.insert(event.key.clone(), event.mod_revision);
                Some(SyncEvent::Update {
                    key: event.key,
                    value: event.value,
                    revision: event.mod_revision,
                })
            }
            EventKind::Delete => {
                self.known.remove(&event.key)?;
                Some(SyncEvent::Update {
                    key: event.key,
                    value: None,
                    revision: event.mod_revision,
                })
            }
        }
    }
}

/// Drops duplicate prefixes and prefixes covered by a shorter one, so each
/// key belongs to exactly one watch.
pub(super) fn normalize_prefixes(prefixes: &[String]) -> Vec<String> {
    let mut sorted = prefixes.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut kept: Vec<String> = Vec::new();
    for prefix in sorted {
        if !kept
            .iter()
            .any(|shorter| prefix.starts_with(shorter.as_str()))
        {
            kept.push(prefix);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyValue;

    fn kv(key: &str, value: &str, revision: Revision) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
        }
    }

    fn update(key: &str, value: Option<&str>, revision: Revision) -> SyncEvent {
        SyncEvent::Update {
            key: key.to_owned(),
            value: value.map(|v| v.as_bytes().to_vec()),
            revision,
        }
    }

    fn put(key: &str, value: &str, revision: Revision) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            key: key.to_owned(),
            value: Some(value.as_bytes().to_vec()),
            prev_value: None,
            create_revision: revision,
            mod_revision: revision,
        }
    }

    fn delete(key: &str, revision: Revision) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Delete,
            key: key.to_owned(),
            value: None,
            prev_value: Some(b"old".to_vec()),
            create_revision: 2,
            mod_revision: revision,
        }
    }

    #[test]
    fn first_list_sends_everything() {
        let mut cache = PrefixCache::new("/p/".to_owned());
        let updates = cache.apply_list(ListResult {
            items: vec![kv("/p/a", "1", 2), kv("/p/b", "2", 3)],
            revision: 5,
        });
        assert_eq!(
            updates,
            vec![update("/p/a", Some("1"), 2), update("/p/b", Some("2"), 3)]
        );
        assert_eq!(cache.revision(), 5);
    }

    #[test]
    fn relist_sends_only_differences() {
        let mut cache = PrefixCache::new("/p/".to_owned());
        cache.apply_list(ListResult {
            items: vec![kv("/p/a", "1", 2), kv("/p/b", "2", 3), kv("/p/c", "3", 4)],
            revision: 4,
        });
        let updates = cache.apply_list(ListResult {
            items: vec![kv("/p/a", "1", 2), kv("/p/c", "33", 9), kv("/p/d", "4", 8)],
            revision: 10,
        });
        assert_eq!(
            updates,
            vec![
                update("/p/c", Some("33"), 9),
                update("/p/d", Some("4"), 8),
                update("/p/b", None, 10),
            ]
        );
        assert!(
            cache
                .apply_list(ListResult {
                    items: vec![kv("/p/a", "1", 2), kv("/p/c", "33", 9), kv("/p/d", "4", 8)],
                    revision: 11,
                })
                .is_empty()
        );
    }

    #[test]
    fn events_at_or_below_the_high_water_mark_are_dropped() {
        let mut cache = PrefixCache::new("/p/".to_owned());
        cache.apply_list(ListResult {
            items: vec![kv("/p/a", "1", 2)],
            revision: 5,
        });
        assert_eq!(cache.apply_event(put("/p/a", "x", 5)), None);
        assert_eq!(
            cache.apply_event(put("/p/a", "y", 6)),
            Some(update("/p/a", Some("y"), 6))
        );
        assert_eq!(cache.apply_event(put("/p/a", "y", 6)), None);
        assert_eq!(
            cache.apply_event(delete("/p/a", 7)),
            Some(update("/p/a", None, 7))
        );
        // Deleting a key the consumer never saw sends nothing.
        assert_eq!(cache.apply_event(delete("/p/zzz", 8)), None);
        assert_eq!(cache.revision(), 8);
        assert_eq!(cache.apply_event(put("/q/out-of-prefix", "v", 9)), None);
    }

    #[test]
    fn covered_prefixes_are_dropped() {
        let prefixes = ["/a/b/", "/a/", "/c/", "/a/", "/cd/"].map(str::to_owned);
        assert_eq!(normalize_prefixes(&prefixes), ["/a/", "/c/", "/cd/"]);
        let with_empty = ["/x/", ""].map(str::to_owned);
        assert_eq!(normalize_prefixes(&with_empty), [""]);
    }
}
