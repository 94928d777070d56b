//! The members of one address set id, and the interval elements that
//! represent them in the concatenated `id . address` sets.
//!
//! Hard case: the kernel's concatenated interval sets (pipapo) refuse an
//! element overlapping one already there, yet one selector can hold a
//! network set's `10.0.0.0/8` and a workload's `10.1.2.3/32`. CIDRs either
//! nest or are disjoint, so the elements are the *maximal* members — those
//! inside no other member — and the others are remembered so they become
//! elements when the net covering them leaves. Adding or removing a member
//! changes only the elements in its own range.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::BTreeSet;

/// A change to the elements of one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementChange {
    Add(IpNet),
    Remove(IpNet),
}

/// Members of one id (both families) and the maximal ones among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    all: BTreeSet<IpNet>,
    maximal: BTreeSet<IpNet>,
}

/// The last network that sorts inside `net`: its broadcast address as a
/// host route (`IpNet` orders by address, then prefix length).
fn upper_bound(net: &IpNet) -> IpNet {
    match net {
        IpNet::V4(n) => IpNet::V4(Ipv4Net::new_assert(n.broadcast(), 32)),
        IpNet::V6(n) => IpNet::V6(Ipv6Net::new_assert(n.broadcast(), 128)),
    }
}

impl Members {
    /// The nets that are elements (no two overlap).
    pub fn elements(&self) -> impl Iterator<Item = &IpNet> {
        self.maximal.iter()
    }

    /// Every member.
    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.all.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Adds a member; element changes go to `out`.
    pub fn insert(&mut self, net: IpNet, out: &mut Vec<ElementChange>) {
        let net = net.trunc();
        if !self.all.insert(net) {
            return;
        }
        // Only the maximal element sorting last at or before `net` can
        // contain it: maximal elements are disjoint.
        if self
            .maximal
            .range(..=net)
            .next_back()
            .is_some_and(|m| m.contains(&net))
        {
            return;
        }
        let covered: Vec<IpNet> = self
            .maximal
            .range(net..=upper_bound(&net))
            .copied()
            .collect();
        for m in covered {
            self.maximal.remove(&m);
            out.push(ElementChange::Remove(m));
        }
        self.maximal.insert(net);
        out.push(ElementChange::Add(net));
    }

    /// Removes a member; element changes go to `out`.
    pub fn remove(&mut self, net: &IpNet, out: &mut Vec<ElementChange>) {
        let net = net.trunc();
        if !self.all.remove(&net) || !self.maximal.remove(&net) {
            return;
        }
        out.push(ElementChange::Remove(net));
        // The members it covered: the maximal ones among them surface.
        let mut last: Option<IpNet> = None;
        for m in self.all.range(net..=upper_bound(&net)) {
            if last.is_some_and(|l| l.contains(m)) {
                continue;
            }
            self.maximal.insert(*m);
            out.push(ElementChange::Add(*m));
            last = Some(*m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().expect("test net")
    }

    fn elements(m: &Members) -> Vec<String> {
        m.elements().map(|e| e.to_string()).collect()
    }

    #[test]
    fn covered_members_are_not_elements_until_their_cover_leaves() {
        let mut m = Members::default();
        let mut out = Vec::new();
        m.insert(n("10.1.2.3/32"), &mut out);
        m.insert(n("10.1.2.9/32"), &mut out);
        m.insert(n("10.2.0.1/32"), &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        m.insert(n("10.1.0.0/16"), &mut out);
        assert_eq!(
            out,
            [
                ElementChange::Remove(n("10.1.2.3/32")),
                ElementChange::Remove(n("10.1.2.9/32")),
                ElementChange::Add(n("10.1.0.0/16")),
            ]
        );
        out.clear();
        m.insert(n("10.1.7.7/32"), &mut out);
        assert!(out.is_empty(), "inside an element: nothing to do");
        m.remove(&n("10.1.2.3/32"), &mut out);
        assert!(out.is_empty());
        m.insert(n("10.1.0.0/24"), &mut out);
        assert!(out.is_empty());
        m.remove(&n("10.1.0.0/16"), &mut out);
        assert_eq!(
            out,
            [
                ElementChange::Remove(n("10.1.0.0/16")),
                ElementChange::Add(n("10.1.0.0/24")),
                ElementChange::Add(n("10.1.2.9/32")),
                ElementChange::Add(n("10.1.7.7/32")),
            ]
        );
        assert_eq!(
            elements(&m),
            ["10.1.0.0/24", "10.1.2.9/32", "10.1.7.7/32", "10.2.0.1/32"]
        );
    }

    #[test]
    fn families_do_not_mix_and_duplicates_are_ignored() {
        let mut m = Members::default();
        let mut out = Vec::new();
        m.insert(n("::/0"), &mut out);
        m.insert(n("10.0.0.1/32"), &mut out);
        m.insert(n("10.0.0.1/32"), &mut out);
        m.insert(n("fd00::1/128"), &mut out);
        assert_eq!(elements(&m), ["10.0.0.1/32", "::/0"]);
        out.clear();
        m.remove(&n("10.9.9.9/32"), &mut out);
        assert!(out.is_empty());
    }
}
