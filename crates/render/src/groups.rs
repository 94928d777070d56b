//! Workload chain groups: workloads whose ingress (or egress) chain
//! would hold the same rules share one chain, `tw-g<id>` (`fw-g<id>`).
//! Dispatch is one lookup in `to-wl` / `from-wl` (`ifname : verdict`),
//! interface → `goto` the group's chain.
//!
//! Why: every transaction that adds a jump or goto — a rule or a verdict
//! map element — makes the kernel re-check the whole table for loops,
//! walking every chain reachable from the base chains once per path (on
//! 10,000 workloads with a chain each, ~90 ms). With groups the walk
//! covers one chain per distinct policy list, not one per workload, so a
//! workload joining an existing group costs a few milliseconds. (Two
//! lookups — interface → group id, id → chain — would avoid the walk for
//! joins entirely, but `nft list` cannot print that rule and aborts, and
//! operators must be able to list the table.) The rules depend only on the workload's tiers,
//! profiles and configuration, so pods of one deployment share a group.
//!
//! Hard cases: a group is keyed by its exact rules, so a configuration
//! change (marks, deny action) moves every workload to new groups and the
//! old ones go when their last user leaves; a freed id is reused only
//! from the next apply (as set ids), so within one transaction an id
//! never names two chains; ids run out only after four billion groups
//! without reuse, reported as an error, never a panic.

use std::collections::{BTreeMap, HashMap};

use tortie_calc::policy::Direction;
use tortie_dataplane::nft::Rule;

use crate::names;
use crate::sets::IdAlloc;

#[derive(Debug)]
struct Group {
    rules: Vec<Rule>,
    users: usize,
}

/// What acquiring a group did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub id: u32,
    /// The group is new: its chain and verdict map element must be put.
    pub created: bool,
}

/// The chain groups of one direction.
#[derive(Debug)]
pub struct ChainGroups {
    dir: Direction,
    by_rules: HashMap<Vec<Rule>, u32>,
    groups: BTreeMap<u32, Group>,
    ids: IdAlloc,
}

impl ChainGroups {
    pub fn new(dir: Direction) -> ChainGroups {
        ChainGroups {
            dir,
            by_rules: HashMap::new(),
            groups: BTreeMap::new(),
            ids: IdAlloc::default(),
        }
    }

    /// Starts an apply: ids freed by the last one become reusable.
    pub fn begin_apply(&mut self) {
        self.ids.begin_apply();
    }

    /// The group chain's name.
    pub fn chain(&self, id: u32) -> String {
        names::workload_group(self.dir, id)
    }

    /// The rules of group `id`, if it exists.
    pub fn rules(&self, id: u32) -> Option<&[Rule]> {
        self.groups.get(&id).map(|g| g.rules.as_slice())
    }

    /// One more user of the group holding `rules` (created if none
    /// does); `None` when ids ran out.
    pub fn acquire(&mut self, rules: Vec<Rule>) -> Option<Acquired> {
        if let Some(&id) = self.by_rules.get(&rules) {
            if let Some(g) = self.groups.get_mut(&id) {
                g.users += 1;
            }
            return Some(Acquired { id, created: false });
        }
        let id = self.ids.take()?;
        self.by_rules.insert(rules.clone(), id);
        self.groups.insert(id, Group { rules, users: 1 });
        Some(Acquired { id, created: true })
    }

    /// One user fewer of group `id`; true when that was the last (the
    /// chain and its verdict map element must go).
    pub fn release(&mut self, id: u32) -> bool {
        let Some(g) = self.groups.get_mut(&id) else {
            return false;
        };
        g.users = g.users.saturating_sub(1);
        if g.users > 0 {
            return false;
        }
        if let Some(g) = self.groups.remove(&id) {
            self.by_rules.remove(&g.rules);
        }
        self.ids.release(id);
        true
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_dataplane::nft::rules;
    use tortie_dataplane::nft::{Rule, Verdict};

    fn rules_of(v: Verdict) -> Vec<Rule> {
        vec![Rule::new(vec![rules::verdict(v)])]
    }

    #[test]
    fn equal_rules_share_a_group_until_the_last_user_leaves() {
        let mut g = ChainGroups::new(Direction::Ingress);
        let a = g.acquire(rules_of(Verdict::Drop)).expect("id");
        let b = g.acquire(rules_of(Verdict::Drop)).expect("id");
        let c = g.acquire(rules_of(Verdict::Accept)).expect("id");
        assert!(a.created && !b.created && c.created);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(g.chain(a.id), format!("tw-g{}", a.id));
        assert!(!g.release(a.id), "b still uses it");
        assert!(g.release(a.id));
        assert_eq!(g.len(), 1);
        assert!(g.rules(a.id).is_none());
    }

    #[test]
    fn a_freed_id_is_reused_only_from_the_next_apply() {
        let mut g = ChainGroups::new(Direction::Egress);
        let a = g.acquire(rules_of(Verdict::Drop)).expect("id");
        assert!(g.release(a.id));
        let b = g.acquire(rules_of(Verdict::Accept)).expect("id");
        assert_ne!(a.id, b.id, "not within the same transaction");
        g.begin_apply();
        let c = g.acquire(rules_of(Verdict::Return)).expect("id");
        assert_eq!(c.id, a.id);
        assert_eq!(g.chain(c.id), format!("fw-g{}", c.id));
    }
}
