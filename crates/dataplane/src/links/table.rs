//! The interface table (pure): every link of the namespace with its
//! addresses, fed by netlink notifications and periodic full scans, and
//! the change events owed to the daemon.
//!
//! Events are derived from *state*, not forwarded notifications: the table
//! remembers what it last reported per interface name and reports only
//! differences. So a burst of notifications collapses into one event, a
//! lost notification is repaired by the next scan, and a consumer that
//! falls behind never sees stale history — which is why the event channel
//! can be bounded (see [`super::LinkReconciler`]).
//!
//! Hard cases: a rename is "old name absent" plus "new name present"
//! (names are what routes and sysctls are keyed by); an address
//! notification for an unknown link index is ignored (the link's own
//! notification, or the next scan, brings it).

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;

use super::wire::LinkState;

/// An interface's state as reported to the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceStatus {
    /// Oper-up (IFF_RUNNING).
    Up,
    /// Present but not running (admin down, or no carrier).
    Down,
    /// Gone.
    Absent,
}

/// A change of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceEvent {
    pub name: String,
    /// The link index (for `Absent`, the last one known).
    pub index: u32,
    pub status: InterfaceStatus,
    pub mtu: u32,
    /// Its addresses, sorted (empty when absent).
    pub addrs: Vec<IpNet>,
}

#[derive(Debug)]
struct Interface {
    link: LinkState,
    addrs: BTreeSet<IpNet>,
}

/// Every link of the namespace and what has been reported about them.
#[derive(Debug, Default)]
pub struct InterfaceTable {
    by_index: HashMap<u32, Interface>,
    reported: HashMap<String, InterfaceEvent>,
}

impl InterfaceTable {
    pub fn new() -> InterfaceTable {
        InterfaceTable::default()
    }

    /// A link appeared or changed (keeps its addresses).
    pub fn link_changed(&mut self, link: LinkState) {
        match self.by_index.get_mut(&link.index) {
            Some(existing) => existing.link = link,
            None => {
                self.by_index.insert(
                    link.index,
                    Interface {
                        link,
                        addrs: BTreeSet::new(),
                    },
                );
            }
        }
    }

    pub fn link_removed(&mut self, index: u32) {
        self.by_index.remove(&index);
    }

    pub fn address_added(&mut self, index: u32, addr: IpNet) {
        if let Some(i) = self.by_index.get_mut(&index) {
            i.addrs.insert(addr);
        }
    }

    pub fn address_removed(&mut self, index: u32, addr: IpNet) {
        if let Some(i) = self.by_index.get_mut(&index) {
            i.addrs.remove(&addr);
        }
    }

    /// Replaces everything with a full scan.
    pub fn replace_all(&mut self, links: Vec<LinkState>, addrs: Vec<(u32, IpNet)>) {
        self.by_index = links
            .into_iter()
            .map(|link| {
                (
                    link.index,
                    Interface {
                        link,
                        addrs: BTreeSet::new(),
                    },
                )
            })
            .collect();
        for (index, addr) in addrs {
            self.address_added(index, addr);
        }
    }

    /// The link called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&LinkState> {
        self.by_index
            .values()
            .map(|i| &i.link)
            .find(|l| l.name == name)
    }

    /// Every present link.
    pub fn links(&self) -> impl Iterator<Item = &LinkState> {
        self.by_index.values().map(|i| &i.link)
    }

    /// The changes since the last call: interfaces gone first, then new or
    /// changed ones, each by name.
    pub fn events(&mut self) -> Vec<InterfaceEvent> {
        let current: HashMap<String, InterfaceEvent> = self
            .by_index
            .values()
            .map(|i| {
                let status = if i.link.running {
                    InterfaceStatus::Up
                } else {
                    InterfaceStatus::Down
                };
                let event = InterfaceEvent {
                    name: i.link.name.clone(),
                    index: i.link.index,
                    status,
                    mtu: i.link.mtu,
                    addrs: i.addrs.iter().copied().collect(),
                };
                (event.name.clone(), event)
            })
            .collect();
        let mut gone: Vec<InterfaceEvent> = self
            .reported
            .values()
            .filter(|old| !current.contains_key(&old.name))
            .map(|old| InterfaceEvent {
                name: old.name.clone(),
                index: old.index,
                status: InterfaceStatus::Absent,
                mtu: 0,
                addrs: Vec::new(),
            })
            .collect();
        let mut changed: Vec<InterfaceEvent> = current
            .values()
            .filter(|now| self.reported.get(&now.name) != Some(*now))
            .cloned()
            .collect();
        gone.sort_by(|a, b| a.name.cmp(&b.name));
        changed.sort_by(|a, b| a.name.cmp(&b.name));
        self.reported = current;
        gone.extend(changed);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, running: bool) -> LinkState {
        LinkState {
            index,
            name: name.to_string(),
            admin_up: running,
            running,
            mtu: 1500,
            mac: vec![0xee; 6],
            kind: Some("veth".to_string()),
        }
    }

    fn statuses(events: &[InterfaceEvent]) -> Vec<(&str, InterfaceStatus)> {
        events.iter().map(|e| (e.name.as_str(), e.status)).collect()
    }

    #[test]
    fn reports_each_change_once() {
        let mut t = InterfaceTable::new();
        t.link_changed(link(5, "cali1", false));
        t.link_changed(link(6, "eth0", true));
        assert_eq!(
            statuses(&t.events()),
            vec![
                ("cali1", InterfaceStatus::Down),
                ("eth0", InterfaceStatus::Up),
            ]
        );
        assert!(t.events().is_empty());

        // A burst of notifications collapses into the net change.
        t.link_changed(link(5, "cali1", true));
        t.link_changed(link(5, "cali1", false));
        t.link_changed(link(5, "cali1", true));
        assert_eq!(statuses(&t.events()), vec![("cali1", InterfaceStatus::Up)]);

        t.address_added(6, "10.0.0.1/24".parse().expect("net"));
        let e = t.events();
        assert_eq!(
            e[0].addrs,
            vec!["10.0.0.1/24".parse::<IpNet>().expect("net")]
        );
        t.address_removed(6, "10.0.0.1/24".parse().expect("net"));
        assert!(t.events()[0].addrs.is_empty());

        t.link_removed(5);
        let e = t.events();
        assert_eq!(statuses(&e), vec![("cali1", InterfaceStatus::Absent)]);
        assert_eq!(e[0].index, 5);
    }

    #[test]
    fn renames_and_scans_report_differences_only() {
        let mut t = InterfaceTable::new();
        t.link_changed(link(5, "tmp123", true));
        let _ = t.events();
        t.link_changed(link(5, "cali1", true));
        assert_eq!(
            statuses(&t.events()),
            vec![
                ("tmp123", InterfaceStatus::Absent),
                ("cali1", InterfaceStatus::Up),
            ]
        );
        assert_eq!(t.get("cali1").map(|l| l.index), Some(5));

        // A scan that matches what was reported says nothing; one that
        // misses a link reports it absent (a lost DELLINK).
        t.replace_all(vec![link(5, "cali1", true)], vec![]);
        assert!(t.events().is_empty());
        t.replace_all(vec![], vec![]);
        assert_eq!(
            statuses(&t.events()),
            vec![("cali1", InterfaceStatus::Absent)]
        );
        assert_eq!(t.links().count(), 0);
        // Addresses of unknown links are ignored.
        t.address_added(99, "10.0.0.1/32".parse().expect("net"));
        assert!(t.events().is_empty());
    }
}
