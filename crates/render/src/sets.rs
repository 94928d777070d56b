//! Set ids and the elements they own. Every address set a rule can name
//! gets one `u32` id, and its members are elements `id . member` of one
//! concatenated set per family (named ports in `namedports4`/
//! `namedports6`, port lists in `ports`), so membership changes are
//! element changes only and the number of sets stays fixed.
//!
//! An address set whose members are all single addresses (a selector of
//! workloads) lives in the hash `sel4h`/`sel6h`, where a member joining
//! or leaving costs the same at any size; one holding a CIDR (a network
//! set's, or a rule's net list) lives in the interval `sel4`/`sel6`,
//! whose pipapo backend pays for every change in proportion to the whole
//! set (20-25 ms at 10,000 members). When a set moves between the two
//! (its first CIDR arrives, its last leaves), its elements move in the
//! same transaction and [`SetTable::take_moved`] names it, so that the
//! chains looking it up are rendered again against the other set.
//!
//! Ids are keyed by string: calc's set ids (`s:…` selectors, `n:…` named
//! ports) and the renderer's own keys for rule lists that need a lookup
//! (`nets:…` for more than one CIDR, `ports:…` for more than one port).
//! A calc set lives while calc holds it *or* a chain refers to it; a
//! rule list lives while a chain refers to it. Freed ids are reused, but
//! only from the next [`SetTable::begin_apply`] on, so an id is never
//! re-bound within the transaction in which old rules may still use it.
//!
//! Hard case: `u32` ids run out only after four billion allocations
//! without reuse; that is reported, never a panic.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use tortie_calc::rules::PortRange;
use tortie_calc::state::{IpSetMembers, NamedPortMember};
use tortie_dataplane::nft::model::concat_key;
use tortie_dataplane::nft::rules::{self, IpFamily};
use tortie_dataplane::nft::{Key, KeyField, Ruleset, SetSpec};

use crate::exprs::family_of_net;
use crate::members::{ElementChange, Members};
use crate::names;
use crate::renderer::ItemError;

/// The shapes of the id-keyed sets, by name.
pub fn set_specs() -> Vec<(&'static str, SetSpec)> {
    let named = |addr| {
        SetSpec::plain(vec![
            KeyField::MARK,
            addr,
            KeyField::INET_PROTO,
            KeyField::INET_SERVICE,
        ])
    };
    vec![
        (names::SEL4, rules::selector_set(IpFamily::V4)),
        (names::SEL6, rules::selector_set(IpFamily::V6)),
        (names::SEL4_HOSTS, rules::host_selector_set(IpFamily::V4)),
        (names::SEL6_HOSTS, rules::host_selector_set(IpFamily::V6)),
        (names::NAMED_PORTS4, named(KeyField::IPV4_ADDR)),
        (names::NAMED_PORTS6, named(KeyField::IPV6_ADDR)),
        (
            names::PORTS,
            SetSpec::interval(vec![KeyField::MARK, KeyField::INET_SERVICE]),
        ),
    ]
}

/// The address set of a family: the interval one for sets holding a
/// CIDR (`ranged`), else the hash of single addresses.
pub fn selector_set(f: IpFamily, ranged: bool) -> &'static str {
    match (f, ranged) {
        (IpFamily::V4, true) => names::SEL4,
        (IpFamily::V6, true) => names::SEL6,
        (IpFamily::V4, false) => names::SEL4_HOSTS,
        (IpFamily::V6, false) => names::SEL6_HOSTS,
    }
}

/// The named-port set of a family.
pub fn named_port_set(f: IpFamily) -> &'static str {
    match f {
        IpFamily::V4 => names::NAMED_PORTS4,
        IpFamily::V6 => names::NAMED_PORTS6,
    }
}

/// What a calc set id refers to (a reference may come before the set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    Addresses,
    NamedPorts,
}

#[derive(Debug)]
enum Content {
    Addresses(Members),
    NamedPorts(BTreeSet<NamedPortMember>),
    Ports(Vec<PortRange>),
}

#[derive(Debug)]
struct Entry {
    id: u32,
    /// Its address elements are in the interval sets (it holds a CIDR).
    ranged: bool,
    /// Chains referring to it.
    refs: u32,
    /// Calc holds the set (always false for rule lists).
    live: bool,
    content: Content,
}

/// Element counts and refusals of the current apply.
#[derive(Debug, Default)]
pub struct Tally {
    pub added: usize,
    pub removed: usize,
    pub errors: Vec<ItemError>,
}

impl Tally {
    fn put(&mut self, r: &mut Ruleset, set: &str, key: Key) {
        match r.put_element(set, key, None) {
            Ok(()) => self.added += 1,
            Err(e) => self.errors.push(ItemError::Element {
                set: set.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn remove(&mut self, r: &mut Ruleset, set: &str, key: &Key) {
        if r.remove_element(set, key) {
            self.removed += 1;
        }
    }
}

fn address_key(id: u32, net: IpNet, ranged: bool) -> (&'static str, Key) {
    let set = selector_set(family_of_net(&net), ranged);
    if ranged {
        (set, rules::selector_key(id, net))
    } else {
        (set, rules::host_selector_key(id, net.addr()))
    }
}

/// Whether `members` need the interval sets: some member is a CIDR.
fn needs_ranges(members: &Members) -> bool {
    members
        .elements()
        .any(|n| n.prefix_len() < n.max_prefix_len())
}

fn named_port_key(id: u32, m: &NamedPortMember) -> (&'static str, Key) {
    let id = id.to_be_bytes();
    let port = m.port.to_be_bytes();
    let proto = [m.protocol.number()];
    let (set, key) = match m.addr {
        IpAddr::V4(a) => (
            names::NAMED_PORTS4,
            concat_key(&[&id, &a.octets(), &proto, &port]),
        ),
        IpAddr::V6(a) => (
            names::NAMED_PORTS6,
            concat_key(&[&id, &a.octets(), &proto, &port]),
        ),
    };
    (set, Key::exact(key))
}

fn port_key(id: u32, r: PortRange) -> Key {
    let id = id.to_be_bytes();
    Key::range(
        concat_key(&[&id, &r.min.to_be_bytes()]),
        concat_key(&[&id, &r.max.to_be_bytes()]),
    )
}

/// Applies `changes` to entry `e`'s elements (in the set kind it was in),
/// then moves all its elements when the changes made it need the other
/// kind. Returns whether it moved.
fn apply_address_changes(
    r: &mut Ruleset,
    tally: &mut Tally,
    e: &mut Entry,
    changes: impl IntoIterator<Item = ElementChange>,
) -> bool {
    let Content::Addresses(members) = &e.content else {
        return false;
    };
    for c in changes {
        match c {
            ElementChange::Add(net) => {
                let (set, key) = address_key(e.id, net, e.ranged);
                tally.put(r, set, key);
            }
            ElementChange::Remove(net) => {
                let (set, key) = address_key(e.id, net, e.ranged);
                tally.remove(r, set, &key);
            }
        }
    }
    let ranged = needs_ranges(members);
    if ranged == e.ranged {
        return false;
    }
    for net in members.elements() {
        let (set, key) = address_key(e.id, *net, e.ranged);
        tally.remove(r, set, &key);
        let (set, key) = address_key(e.id, *net, ranged);
        tally.put(r, set, key);
    }
    e.ranged = ranged;
    true
}

/// Sorted, merged port ranges (overlapping or adjacent ones joined).
pub fn merge_ports(ranges: &[PortRange]) -> Vec<PortRange> {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    let mut out: Vec<PortRange> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if u32::from(r.min) <= u32::from(last.max) + 1 => {
                last.max = last.max.max(r.max);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Id allocation with deferred reuse (set ids here, workload chain group
/// ids in `groups`).
#[derive(Debug, Default)]
pub(crate) struct IdAlloc {
    free: Vec<u32>,
    /// Freed during this apply; reusable from the next.
    released: Vec<u32>,
    next: u32,
}

impl IdAlloc {
    /// Starts an apply: ids released by the last one become reusable.
    pub(crate) fn begin_apply(&mut self) {
        self.free.append(&mut self.released);
    }

    /// Frees `id` from the next apply on.
    pub(crate) fn release(&mut self, id: u32) {
        self.released.push(id);
    }

    pub(crate) fn take(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop() {
            return Some(id);
        }
        self.next = self.next.checked_add(1)?;
        Some(self.next)
    }
}

/// The entry for `key`, created (with a new id) if absent.
fn entry<'a>(
    entries: &'a mut HashMap<String, Entry>,
    ids: &mut IdAlloc,
    tally: &mut Tally,
    key: &str,
    content: impl FnOnce() -> Content,
) -> Option<&'a mut Entry> {
    if !entries.contains_key(key) {
        let Some(id) = ids.take() else {
            tally.errors.push(ItemError::IdsExhausted {
                set: key.to_string(),
            });
            return None;
        };
        entries.insert(
            key.to_string(),
            Entry {
                id,
                ranged: false,
                refs: 0,
                live: false,
                content: content(),
            },
        );
    }
    entries.get_mut(key)
}

/// Set ids and their elements.
#[derive(Debug, Default)]
pub struct SetTable {
    entries: HashMap<String, Entry>,
    ids: IdAlloc,
    pub tally: Tally,
    /// Address sets that moved between the hash and the interval sets
    /// since [`SetTable::take_moved`] was last called.
    moved: Vec<String>,
}

impl SetTable {
    /// Starts an apply: ids freed by the last one become reusable.
    pub fn begin_apply(&mut self) {
        self.ids.begin_apply();
    }

    /// The id of `key`, if it has one.
    pub fn id(&self, key: &str) -> Option<u32> {
        self.entries.get(key).map(|e| e.id)
    }

    /// Whether address set `key` lives in the interval sets (holds a
    /// CIDR) rather than the hash of single addresses.
    pub fn ranged(&self, key: &str) -> bool {
        self.entries.get(key).is_some_and(|e| e.ranged)
    }

    /// The address sets that moved between the hash and the interval
    /// sets: chains looking them up must be rendered again.
    pub fn take_moved(&mut self) -> Vec<String> {
        std::mem::take(&mut self.moved)
    }

    /// Number of ids in use.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Calc created an address set (or re-sent it whole).
    pub fn put_addresses(&mut self, r: &mut Ruleset, key: &str, members: &IpSetMembers) {
        let Some(e) = entry(
            &mut self.entries,
            &mut self.ids,
            &mut self.tally,
            key,
            || Content::Addresses(Members::default()),
        ) else {
            return;
        };
        e.live = true;
        let Content::Addresses(current) = &mut e.content else {
            return;
        };
        let wanted: BTreeSet<IpNet> = members.iter().map(|n| n.trunc()).collect();
        let stale: Vec<IpNet> = current
            .iter()
            .filter(|n| !wanted.contains(n))
            .copied()
            .collect();
        let mut changes = Vec::new();
        for n in &stale {
            current.remove(n, &mut changes);
        }
        for n in wanted {
            current.insert(n, &mut changes);
        }
        if apply_address_changes(r, &mut self.tally, e, changes) {
            self.moved.push(key.to_string());
        }
    }

    /// Members joined or left an address set.
    pub fn change_addresses(
        &mut self,
        r: &mut Ruleset,
        key: &str,
        members: &IpSetMembers,
        add: bool,
    ) {
        let Some(e) = entry(
            &mut self.entries,
            &mut self.ids,
            &mut self.tally,
            key,
            || Content::Addresses(Members::default()),
        ) else {
            return;
        };
        let Content::Addresses(current) = &mut e.content else {
            return;
        };
        let mut changes = Vec::new();
        for n in members.iter() {
            if add {
                current.insert(n, &mut changes);
            } else {
                current.remove(&n, &mut changes);
            }
        }
        if apply_address_changes(r, &mut self.tally, e, changes) {
            self.moved.push(key.to_string());
        }
    }

    /// Calc created a named-port set (or re-sent it whole).
    pub fn put_named_ports(
        &mut self,
        r: &mut Ruleset,
        key: &str,
        members: &BTreeSet<NamedPortMember>,
    ) {
        let Some(e) = entry(
            &mut self.entries,
            &mut self.ids,
            &mut self.tally,
            key,
            || Content::NamedPorts(BTreeSet::new()),
        ) else {
            return;
        };
        e.live = true;
        let Content::NamedPorts(current) = &mut e.content else {
            return;
        };
        let id = e.id;
        for m in current.difference(members) {
            let (set, k) = named_port_key(id, m);
            self.tally.remove(r, set, &k);
        }
        for m in members.difference(current) {
            let (set, k) = named_port_key(id, m);
            self.tally.put(r, set, k);
        }
        *current = members.clone();
    }

    /// Members joined or left a named-port set.
    pub fn change_named_ports(
        &mut self,
        r: &mut Ruleset,
        key: &str,
        members: &BTreeSet<NamedPortMember>,
        add: bool,
    ) {
        let Some(e) = entry(
            &mut self.entries,
            &mut self.ids,
            &mut self.tally,
            key,
            || Content::NamedPorts(BTreeSet::new()),
        ) else {
            return;
        };
        let Content::NamedPorts(current) = &mut e.content else {
            return;
        };
        let id = e.id;
        for m in members {
            let (set, k) = named_port_key(id, m);
            if add && current.insert(*m) {
                self.tally.put(r, set, k);
            } else if !add && current.remove(m) {
                self.tally.remove(r, set, &k);
            }
        }
    }

    /// Calc dropped a set: its elements go; the id goes once no chain
    /// refers to it.
    pub fn set_removed(&mut self, r: &mut Ruleset, key: &str) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.live = false;
        clear_elements(r, &mut self.tally, e);
        self.maybe_free(key);
    }

    /// A chain refers to calc set `key`; its id.
    pub fn acquire(&mut self, key: &str, kind: SetKind) -> Option<u32> {
        let e = entry(
            &mut self.entries,
            &mut self.ids,
            &mut self.tally,
            key,
            || match kind {
                SetKind::Addresses => Content::Addresses(Members::default()),
                SetKind::NamedPorts => Content::NamedPorts(BTreeSet::new()),
            },
        )?;
        e.refs += 1;
        Some(e.id)
    }

    /// A chain needs a lookup of "address in any of `nets`"; the key to
    /// release and the id.
    pub fn acquire_nets(&mut self, r: &mut Ruleset, nets: &[IpNet]) -> Option<(String, u32)> {
        let sorted: BTreeSet<IpNet> = nets.iter().map(|n| n.trunc()).collect();
        let key = format!(
            "nets:{}",
            sorted
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let e = entry(
            &mut self.entries,
            &mut self.ids,
            &mut self.tally,
            &key,
            || Content::Addresses(Members::default()),
        )?;
        e.refs += 1;
        let id = e.id;
        if e.refs == 1
            && let Content::Addresses(current) = &mut e.content
        {
            // Rendered after this, so its rules see where it lives: no
            // move to report.
            let mut changes = Vec::new();
            for n in sorted {
                current.insert(n, &mut changes);
            }
            apply_address_changes(r, &mut self.tally, e, changes);
        }
        Some((key, id))
    }

    /// A chain needs a lookup of "port in any of `ranges`".
    pub fn acquire_ports(
        &mut self,
        r: &mut Ruleset,
        ranges: &[PortRange],
    ) -> Option<(String, u32)> {
        let merged = merge_ports(ranges);
        let key = format!(
            "ports:{}",
            merged
                .iter()
                .map(|p| format!("{}-{}", p.min, p.max))
                .collect::<Vec<_>>()
                .join(",")
        );
        let e = entry(
            &mut self.entries,
            &mut self.ids,
            &mut self.tally,
            &key,
            || Content::Ports(Vec::new()),
        )?;
        e.refs += 1;
        let id = e.id;
        if e.refs == 1
            && let Content::Ports(current) = &mut e.content
        {
            for p in &merged {
                self.tally.put(r, names::PORTS, port_key(id, *p));
            }
            *current = merged;
        }
        Some((key, id))
    }

    /// A chain no longer refers to `key`.
    pub fn release(&mut self, r: &mut Ruleset, key: &str) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.refs = e.refs.saturating_sub(1);
        if e.refs == 0 && !e.live {
            clear_elements(r, &mut self.tally, e);
        }
        self.maybe_free(key);
    }

    fn maybe_free(&mut self, key: &str) {
        if self
            .entries
            .get(key)
            .is_some_and(|e| e.refs == 0 && !e.live)
            && let Some(e) = self.entries.remove(key)
        {
            self.ids.release(e.id);
        }
    }
}

fn clear_elements(r: &mut Ruleset, tally: &mut Tally, e: &mut Entry) {
    let id = e.id;
    match &mut e.content {
        Content::Addresses(m) => {
            let all: Vec<IpNet> = m.iter().copied().collect();
            let mut changes = Vec::new();
            for n in &all {
                m.remove(n, &mut changes);
            }
            // Emptied: no lookup can match, wherever the chains look.
            let ranged = e.ranged;
            apply_address_changes(r, tally, e, changes);
            e.ranged = ranged;
        }
        Content::NamedPorts(ms) => {
            for m in std::mem::take(ms) {
                let (set, k) = named_port_key(id, &m);
                tally.remove(r, set, &k);
            }
        }
        Content::Ports(ps) => {
            for p in std::mem::take(ps) {
                tally.remove(r, names::PORTS, &port_key(id, p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset() -> Ruleset {
        let mut r = Ruleset::new();
        for (name, spec) in set_specs() {
            r.put_set(name, spec);
        }
        r
    }

    fn members(nets: &[&str]) -> IpSetMembers {
        let mut m = IpSetMembers::default();
        for n in nets {
            m.insert(n.parse().expect("test net"));
        }
        m
    }

    #[test]
    fn ids_are_freed_when_unreferenced_and_reused_next_apply() {
        let mut r = ruleset();
        let mut t = SetTable::default();
        t.put_addresses(&mut r, "s:a", &members(&["10.0.0.1/32", "fd00::1/128"]));
        let a = t.id("s:a").expect("allocated");
        assert_eq!(r.set(names::SEL4_HOSTS).map(|s| s.elements.len()), Some(1));
        assert_eq!(r.set(names::SEL6_HOSTS).map(|s| s.elements.len()), Some(1));
        assert!(!t.ranged("s:a"));
        assert_eq!(t.acquire("s:a", SetKind::Addresses), Some(a));
        t.set_removed(&mut r, "s:a");
        assert_eq!(t.id("s:a"), Some(a), "still referenced");
        assert_eq!(r.set(names::SEL4_HOSTS).map(|s| s.elements.len()), Some(0));
        t.release(&mut r, "s:a");
        assert_eq!(t.id("s:a"), None);
        let (_, b) = t
            .acquire_nets(&mut r, &["10.0.0.0/8".parse().expect("net")])
            .expect("id");
        assert_ne!(a, b, "not reused within the same apply");
        t.begin_apply();
        assert_eq!(t.acquire("s:c", SetKind::Addresses), Some(a));
    }

    #[test]
    fn rule_lists_share_an_id_and_own_their_elements() {
        let mut r = ruleset();
        let mut t = SetTable::default();
        let p = [
            PortRange { min: 80, max: 80 },
            PortRange { min: 81, max: 90 },
        ];
        let (k1, id1) = t.acquire_ports(&mut r, &p).expect("id");
        let (k2, id2) = t.acquire_ports(&mut r, &[p[1], p[0]]).expect("id");
        assert_eq!((k1.as_str(), id1), (k2.as_str(), id2));
        assert_eq!(k1, "ports:80-90");
        assert_eq!(r.set(names::PORTS).map(|s| s.elements.len()), Some(1));
        t.release(&mut r, &k1);
        assert_eq!(r.set(names::PORTS).map(|s| s.elements.len()), Some(1));
        t.release(&mut r, &k2);
        assert_eq!(r.set(names::PORTS).map(|s| s.elements.len()), Some(0));
        assert!(t.is_empty());
    }

    #[test]
    fn a_set_sent_whole_again_is_diffed() {
        let mut r = ruleset();
        let mut t = SetTable::default();
        t.put_addresses(&mut r, "s:a", &members(&["10.0.0.1/32", "10.0.0.2/32"]));
        t.tally = Tally::default();
        t.put_addresses(&mut r, "s:a", &members(&["10.0.0.2/32", "10.0.0.3/32"]));
        assert_eq!((t.tally.added, t.tally.removed), (1, 1));
    }
}
