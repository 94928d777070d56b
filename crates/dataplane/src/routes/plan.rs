//! The routes reconciler's pure core (STYLE.md §2, §3): desired routes,
//! the routes believed installed, the interfaces routes depend on, and
//! the set of keys that may differ ("dirty"). [`RouteState::plan`] turns
//! the dirty keys into the minimal ordered list of kernel operations;
//! [`RouteState::record`] folds each operation's outcome back in. No I/O.
//!
//! Hard cases:
//! * a route whose interface is absent or not running is *pending*: it is
//!   not installed (and removed if it was), and becomes dirty again when
//!   the interface comes up, so interface events cost only the routes of
//!   that interface, not a full diff;
//! * one key can move from ours-on-interface-A to ours-on-interface-B or
//!   from a blackhole to a unicast route: a single REPLACE does it, so
//!   there is never a window without a route;
//! * deletions go first so that a key freed by one change can be used by
//!   another in the same apply;
//! * a failed operation leaves its key dirty (retried on the next apply)
//!   and never stops the rest of the batch; a deletion the kernel answers
//!   with "no such route" has nothing left to do.

use std::collections::{HashMap, HashSet};

use nix::errno::Errno;

use super::model::{KernelRoute, Route, RouteInterface, RouteKey};
use crate::netlink::Outcome;

/// One kernel operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOp {
    /// NEWROUTE with NLM_F_CREATE | NLM_F_REPLACE.
    Replace(KernelRoute),
    /// DELROUTE of exactly this installed route.
    Delete(KernelRoute),
}

impl RouteOp {
    pub fn key(&self) -> &RouteKey {
        match self {
            RouteOp::Replace(r) | RouteOp::Delete(r) => &r.key,
        }
    }
}

/// How an operation's outcome was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Applied,
    /// Failed; the key stays dirty and is retried.
    Failed,
    /// The reply was lost; kernel state must be re-read.
    Unknown,
}

/// Desired versus believed-installed routes.
#[derive(Debug)]
pub struct RouteState {
    protocol: u8,
    desired: HashMap<RouteKey, Route>,
    installed: HashMap<RouteKey, KernelRoute>,
    dirty: HashSet<RouteKey>,
    /// Desired keys per interface name, so an interface change touches
    /// only its routes.
    by_iface: HashMap<String, HashSet<RouteKey>>,
    ifaces: HashMap<String, RouteInterface>,
}

impl RouteState {
    /// An empty state whose routes carry `protocol`.
    pub fn new(protocol: u8) -> RouteState {
        RouteState {
            protocol,
            desired: HashMap::new(),
            installed: HashMap::new(),
            dirty: HashSet::new(),
            by_iface: HashMap::new(),
            ifaces: HashMap::new(),
        }
    }

    /// Wants `route` (replacing any desired route with the same key).
    pub fn set(&mut self, mut route: Route) {
        route.key = route.key.normalised();
        let key = route.key;
        if self.desired.get(&key) == Some(&route) {
            return;
        }
        if let Some(iface) = route.target.iface() {
            self.by_iface
                .entry(iface.to_string())
                .or_default()
                .insert(key);
        }
        if let Some(old) = self.desired.insert(key, route) {
            self.forget_iface_index(&old);
        }
        self.dirty.insert(key);
    }

    /// No longer wants the route with `key`.
    pub fn remove(&mut self, key: &RouteKey) {
        let key = key.normalised();
        if let Some(old) = self.desired.remove(&key) {
            self.forget_iface_index(&old);
            self.dirty.insert(key);
        }
    }

    fn forget_iface_index(&mut self, old: &Route) {
        let Some(iface) = old.target.iface() else {
            return;
        };
        let still_used = self
            .desired
            .get(&old.key)
            .and_then(|r| r.target.iface())
            .is_some_and(|i| i == iface);
        if still_used {
            return;
        }
        if let Some(keys) = self.by_iface.get_mut(iface) {
            keys.remove(&old.key);
            if keys.is_empty() {
                self.by_iface.remove(iface);
            }
        }
    }

    /// Records an interface's state (`None`: absent); its routes are
    /// reconsidered on the next plan if anything relevant changed.
    pub fn set_interface(&mut self, name: &str, state: Option<RouteInterface>) {
        let changed = match state {
            Some(s) => self.ifaces.insert(name.to_string(), s) != Some(s),
            None => self.ifaces.remove(name).is_some(),
        };
        if changed && let Some(keys) = self.by_iface.get(name) {
            self.dirty.extend(keys.iter().copied());
        }
    }

    /// Replaces every interface's state (after a full scan).
    pub fn set_all_interfaces(&mut self, all: HashMap<String, RouteInterface>) {
        let gone: Vec<String> = self
            .ifaces
            .keys()
            .filter(|n| !all.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.set_interface(&name, None);
        }
        for (name, state) in all {
            self.set_interface(&name, Some(state));
        }
    }

    /// Replaces the believed-installed routes with a fresh read of the
    /// kernel (only routes that are ours) and marks every difference.
    pub fn set_installed(&mut self, routes: impl IntoIterator<Item = KernelRoute>) {
        self.installed = routes.into_iter().map(|r| (r.key, r)).collect();
        let protocol = self.protocol;
        let ifaces = &self.ifaces;
        let lookup = |name: &str| ifaces.get(name).copied();
        for (key, route) in &self.desired {
            if self.installed.get(key) != route.resolve(protocol, lookup).as_ref() {
                self.dirty.insert(*key);
            }
        }
        for key in self.installed.keys() {
            if !self.desired.contains_key(key) {
                self.dirty.insert(*key);
            }
        }
    }

    /// The operations that make the kernel match the desired routes for
    /// every dirty key: deletions first, then replacements, each sorted by
    /// key. Clears the dirty set; [`RouteState::record`] re-marks failures.
    pub fn plan(&mut self) -> Vec<RouteOp> {
        let ifaces = &self.ifaces;
        let lookup = |name: &str| ifaces.get(name).copied();
        let mut deletes = Vec::new();
        let mut replaces = Vec::new();
        for key in self.dirty.drain() {
            let want = self
                .desired
                .get(&key)
                .and_then(|r| r.resolve(self.protocol, lookup));
            match (want, self.installed.get(&key)) {
                (Some(want), Some(have)) if want == *have => {}
                (Some(want), _) => replaces.push(RouteOp::Replace(want)),
                (None, Some(have)) => deletes.push(RouteOp::Delete(have.clone())),
                (None, None) => {}
            }
        }
        deletes.sort_by(|a, b| a.key().cmp(b.key()));
        replaces.sort_by(|a, b| a.key().cmp(b.key()));
        deletes.extend(replaces);
        deletes
    }

    /// Folds the outcome of one planned operation back into the state.
    pub fn record(&mut self, op: RouteOp, outcome: &Outcome) -> Recorded {
        let key = *op.key();
        match (op, outcome) {
            (RouteOp::Replace(route), Outcome::Done) => {
                self.installed.insert(key, route);
                Recorded::Applied
            }
            (RouteOp::Delete(_), Outcome::Done) => {
                self.installed.remove(&key);
                Recorded::Applied
            }
            (RouteOp::Delete(_), Outcome::Failed(e)) if e.errno == Errno::ESRCH => {
                self.installed.remove(&key);
                Recorded::Applied
            }
            (_, Outcome::Failed(_)) => {
                self.dirty.insert(key);
                Recorded::Failed
            }
            (_, Outcome::Lost) => {
                self.dirty.insert(key);
                Recorded::Unknown
            }
        }
    }

    /// Desired routes that are not installed because their interface is
    /// absent or not running.
    pub fn pending(&self) -> Vec<RouteKey> {
        let lookup = |name: &str| self.ifaces.get(name).copied();
        let mut out: Vec<RouteKey> = self
            .desired
            .values()
            .filter(|r| r.resolve(self.protocol, lookup).is_none())
            .map(|r| r.key)
            .collect();
        out.sort();
        out
    }

    pub fn desired_count(&self) -> usize {
        self.desired.len()
    }

    pub fn installed_count(&self) -> usize {
        self.installed.len()
    }

    pub fn interface(&self, name: &str) -> Option<RouteInterface> {
        self.ifaces.get(name).copied()
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{RouteKind, RouteTarget};
    use super::*;
    use crate::netlink::KernelError;

    const P: u8 = 80;

    fn key(s: &str) -> RouteKey {
        RouteKey::new(s.parse().expect("net"), 1024)
    }

    fn dev(dst: &str, iface: &str) -> Route {
        Route {
            key: key(dst),
            target: RouteTarget::Device {
                iface: iface.to_string(),
            },
            mtu: None,
        }
    }

    fn hole(dst: &str) -> Route {
        Route {
            key: key(dst),
            target: RouteTarget::Blackhole,
            mtu: None,
        }
    }

    fn up(index: u32) -> Option<RouteInterface> {
        Some(RouteInterface { index, up: true })
    }

    /// The in-memory kernel the diff logic is checked against: applies
    /// every op and reports success.
    fn apply_all(state: &mut RouteState, kernel: &mut HashMap<RouteKey, KernelRoute>) -> usize {
        let ops = state.plan();
        let n = ops.len();
        for op in ops {
            match &op {
                RouteOp::Replace(r) => {
                    kernel.insert(r.key, r.clone());
                }
                RouteOp::Delete(r) => {
                    kernel.remove(&r.key);
                }
            }
            state.record(op, &Outcome::Done);
        }
        n
    }

    #[test]
    fn installs_then_does_nothing_until_something_changes() {
        let mut s = RouteState::new(P);
        let mut kernel = HashMap::new();
        s.set_interface("cali1", up(7));
        s.set(dev("10.0.0.1/32", "cali1"));
        s.set(hole("10.0.0.0/26"));
        assert_eq!(apply_all(&mut s, &mut kernel), 2);
        assert_eq!(apply_all(&mut s, &mut kernel), 0);
        // The same desired route again is no change.
        s.set(dev("10.0.0.1/32", "cali1"));
        assert!(!s.has_dirty());
        // A resync that reads back exactly what we wrote changes nothing.
        s.set_installed(kernel.values().cloned());
        assert_eq!(apply_all(&mut s, &mut kernel), 0);
        assert_eq!(s.installed_count(), 2);
    }

    #[test]
    fn routes_wait_for_their_interface_and_leave_when_it_goes() {
        let mut s = RouteState::new(P);
        let mut kernel = HashMap::new();
        s.set(dev("10.0.0.1/32", "cali1"));
        assert_eq!(apply_all(&mut s, &mut kernel), 0);
        assert_eq!(s.pending(), vec![key("10.0.0.1/32")]);

        s.set_interface(
            "cali1",
            Some(RouteInterface {
                index: 7,
                up: false,
            }),
        );
        assert_eq!(apply_all(&mut s, &mut kernel), 0, "down is still pending");

        s.set_interface("cali1", up(7));
        let ops = s.plan();
        assert!(matches!(&ops[..], [RouteOp::Replace(r)] if r.oif == Some(7)));
        for op in ops {
            s.record(op, &Outcome::Done);
        }
        assert!(s.pending().is_empty());

        s.set_interface("cali1", None);
        let ops = s.plan();
        assert!(matches!(&ops[..], [RouteOp::Delete(r)] if r.key == key("10.0.0.1/32")));

        // A recreated interface (new index) gets the route back on it.
        for op in ops {
            s.record(op, &Outcome::Done);
        }
        s.set_interface("cali1", up(9));
        assert!(matches!(&s.plan()[..], [RouteOp::Replace(r)] if r.oif == Some(9)));
    }

    #[test]
    fn drift_is_repaired_and_stale_routes_removed_deletes_first() {
        let mut s = RouteState::new(P);
        let mut kernel = HashMap::new();
        s.set_interface("cali1", up(7));
        s.set(dev("10.0.0.1/32", "cali1"));
        s.set(dev("10.0.0.2/32", "cali1"));
        apply_all(&mut s, &mut kernel);

        // Behind our back: one route deleted, one moved, one stale of ours.
        kernel.remove(&key("10.0.0.1/32"));
        if let Some(r) = kernel.get_mut(&key("10.0.0.2/32")) {
            r.oif = Some(3);
        }
        let stale = KernelRoute {
            key: key("10.9.9.9/32"),
            kind: RouteKind::Unicast,
            oif: Some(7),
            gateway: None,
            onlink: false,
            scope_link: true,
            protocol: P,
            mtu: None,
        };
        kernel.insert(stale.key, stale.clone());
        s.set_installed(kernel.values().cloned());
        let ops = s.plan();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0], RouteOp::Delete(stale));
        assert!(matches!(&ops[1], RouteOp::Replace(r) if r.key == key("10.0.0.1/32")));
        assert!(matches!(&ops[2], RouteOp::Replace(r) if r.oif == Some(7)));
    }

    #[test]
    fn a_key_changes_kind_with_one_replace() {
        let mut s = RouteState::new(P);
        let mut kernel = HashMap::new();
        s.set(hole("10.0.0.0/26"));
        apply_all(&mut s, &mut kernel);
        s.set_interface("vxlan.calico", up(4));
        s.set(Route {
            key: key("10.0.0.0/26"),
            target: RouteTarget::Gateway {
                gateway: "10.1.0.1".parse().expect("ip"),
                iface: "vxlan.calico".into(),
                onlink: true,
            },
            mtu: Some(1450),
        });
        let ops = s.plan();
        assert!(matches!(&ops[..], [RouteOp::Replace(r)] if r.kind == RouteKind::Unicast));
    }

    #[test]
    fn failures_stay_dirty_and_do_not_block_others() {
        let mut s = RouteState::new(P);
        s.set_interface("cali1", up(7));
        s.set(dev("10.0.0.1/32", "cali1"));
        s.set(dev("10.0.0.2/32", "cali1"));
        let ops = s.plan();
        let failure = Outcome::Failed(KernelError {
            errno: Errno::ENETDOWN,
            message: None,
        });
        let mut results = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            let outcome = if i == 0 { &failure } else { &Outcome::Done };
            results.push(s.record(op, outcome));
        }
        assert_eq!(results, vec![Recorded::Failed, Recorded::Applied]);
        assert_eq!(s.installed_count(), 1);
        let retry = s.plan();
        assert!(matches!(&retry[..], [RouteOp::Replace(r)] if r.key == key("10.0.0.1/32")));
        assert_eq!(
            s.record(retry[0].clone(), &Outcome::Lost),
            Recorded::Unknown
        );
        assert!(s.has_dirty());
    }

    #[test]
    fn deleting_an_already_gone_route_is_done() {
        let mut s = RouteState::new(P);
        s.set(hole("10.0.0.0/26"));
        let ops = s.plan();
        for op in ops {
            s.record(op, &Outcome::Done);
        }
        s.remove(&key("10.0.0.0/26"));
        let ops = s.plan();
        assert!(matches!(&ops[..], [RouteOp::Delete(_)]));
        let gone = Outcome::Failed(KernelError {
            errno: Errno::ESRCH,
            message: None,
        });
        assert_eq!(s.record(ops[0].clone(), &gone), Recorded::Applied);
        assert_eq!(s.installed_count(), 0);
        assert!(s.plan().is_empty());
    }

    #[test]
    fn moving_a_route_between_interfaces_tracks_both() {
        let mut s = RouteState::new(P);
        let mut kernel = HashMap::new();
        s.set_interface("cali1", up(7));
        s.set_interface("cali2", up(8));
        s.set(dev("10.0.0.1/32", "cali1"));
        apply_all(&mut s, &mut kernel);
        s.set(dev("10.0.0.1/32", "cali2"));
        apply_all(&mut s, &mut kernel);
        assert_eq!(kernel[&key("10.0.0.1/32")].oif, Some(8));
        // cali1 no longer matters to this route; cali2 does.
        s.set_interface("cali1", None);
        assert!(!s.has_dirty());
        s.set_interface("cali2", None);
        assert!(s.has_dirty());
    }

    #[test]
    fn full_interface_scans_mark_only_changes() {
        let mut s = RouteState::new(P);
        s.set_all_interfaces(HashMap::from([(
            "cali1".to_string(),
            RouteInterface { index: 7, up: true },
        )]));
        s.set(dev("10.0.0.1/32", "cali1"));
        let _ = s.plan();
        s.set_all_interfaces(HashMap::from([(
            "cali1".to_string(),
            RouteInterface { index: 7, up: true },
        )]));
        assert!(!s.has_dirty());
        s.set_all_interfaces(HashMap::new());
        assert!(s.has_dirty());
        assert_eq!(s.interface("cali1"), None);
        assert_eq!(s.desired_count(), 1);
    }
}
