//! The routes reconciler (spec/dataplane.md §1.3, §2, §2.5): workload
//! /32s (`dev cali… scope link`), remote blocks through tunnels or the
//! parent interface (`via … onlink`), blackholes for local blocks, IPv4
//! and IPv6, all tagged with tortie's route protocol
//! ([`DEFAULT_ROUTE_PROTOCOL`], 80).
//!
//! Layout: [`model`] (desired routes and their kernel form), [`plan`] (the
//! pure desired-vs-installed diff), `wire` (netlink messages), and here
//! the thin I/O layer: [`RouteReconciler`] dumps the kernel into "believed
//! installed", pipelines the planned changes (NLM_F_REPLACE, ACKs only for
//! errors; see [`crate::netlink`]) and folds the outcomes back.
//!
//! Ownership ([`RouteOwnership`]): a route is tortie's if it carries
//! tortie's protocol (any table), or — with `RemoveExternalRoutes` — if it
//! sits in the main table on one of tortie's interfaces (`cali*`,
//! `vxlan.calico`, `vxlan-v6.calico`; the daemon adds `tunl0` when it
//! programs IPIP), except kernel-made routes (`proto kernel`, IPv6
//! link-local and multicast) and routes on an interface seen for less than
//! the grace period (the CNI plugin adds a pod's route before the daemon
//! hears of the pod). Nothing else is ever touched; a desired route does
//! take its key (table, destination, metric) over from whoever held it.
//!
//! Pending routes: a route whose interface is absent or not running is not
//! installed; interface events ([`RouteReconciler::interface_update`],
//! from the links reconciler) and every resync's link dump make it
//! installable again.

pub mod model;
pub mod plan;
pub(crate) mod wire;

use std::collections::HashMap;
use std::time::Duration;

use ipnet::IpNet;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use rtnetlink::packet_route::RouteNetlinkMessage;
use tokio::time::Instant;

pub use model::{
    DEFAULT_ROUTE_PROTOCOL, ELEVATED_ROUTE_PRIORITY, KernelRoute, MAIN_TABLE,
    NORMAL_ROUTE_PRIORITY, Route, RouteInterface, RouteKey, RouteKind, RouteTarget, route_protocol,
};
pub use plan::{RouteOp, RouteState};

use crate::driver::{ApplyReport, Reconciler};
use crate::links::{InterfaceEvent, InterfaceStatus, link_dump_request, parse_link};
use crate::netlink::{
    AckMode, DEFAULT_BATCH, DEFAULT_TIMEOUT, NetlinkError, Outcome, Request, RtSocket,
};
use model::RTPROT_KERNEL;
use plan::Recorded;

/// How long routes on a newly seen interface of ours are left alone.
pub const DEFAULT_FOREIGN_ROUTE_GRACE: Duration = Duration::from_secs(10);

/// Which kernel routes are tortie's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteOwnership {
    /// The protocol tortie's routes carry.
    pub protocol: u8,
    /// Workload interface prefixes (`InterfacePrefix`).
    pub interface_prefixes: Vec<String>,
    /// tortie's own devices.
    pub interfaces: Vec<String>,
    /// `RemoveExternalRoutes`: also remove unknown routes on our interfaces.
    pub remove_external_routes: bool,
    /// Routes on an interface first seen less than this long ago are not
    /// removed.
    pub grace: Duration,
}

impl Default for RouteOwnership {
    fn default() -> RouteOwnership {
        RouteOwnership {
            protocol: DEFAULT_ROUTE_PROTOCOL,
            interface_prefixes: vec![crate::links::DEFAULT_INTERFACE_PREFIX.to_string()],
            interfaces: vec![
                crate::vxlan::DEVICE_V4.to_string(),
                crate::vxlan::DEVICE_V6.to_string(),
            ],
            remove_external_routes: true,
            grace: DEFAULT_FOREIGN_ROUTE_GRACE,
        }
    }
}

impl RouteOwnership {
    pub fn is_our_interface(&self, name: &str) -> bool {
        self.interfaces.iter().any(|i| i == name)
            || self
                .interface_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }

    /// Whether an installed route is tortie's; `iface` is the name of the
    /// interface it is on and how long that interface has been known.
    pub fn owns(&self, route: &KernelRoute, iface: Option<(&str, Duration)>) -> bool {
        if route.protocol == self.protocol {
            return true;
        }
        if !self.remove_external_routes
            || route.key.table != MAIN_TABLE
            || route.protocol == RTPROT_KERNEL
        {
            return false;
        }
        if let IpNet::V6(v6) = route.key.dst {
            let addr = v6.addr();
            if addr.is_unicast_link_local() || addr.is_multicast() {
                return false;
            }
        }
        iface.is_some_and(|(name, age)| self.is_our_interface(name) && age >= self.grace)
    }
}

/// How the routes reconciler behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    pub ownership: RouteOwnership,
    pub resync_interval: Duration,
    /// Messages per netlink datagram.
    pub batch: usize,
    pub ack: AckMode,
    pub netlink_timeout: Duration,
}

impl Default for RouteConfig {
    fn default() -> RouteConfig {
        RouteConfig {
            ownership: RouteOwnership::default(),
            resync_interval: crate::driver::DEFAULT_RESYNC_INTERVAL,
            batch: DEFAULT_BATCH,
            ack: AckMode::ErrorsOnly,
            netlink_timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Desired-state changes for the driver loop ([`crate::driver::run`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteUpdate {
    Set(Route),
    Remove(RouteKey),
    Interface(InterfaceEvent),
}

/// Counts for status output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCounts {
    pub desired: usize,
    pub installed: usize,
    pub pending: usize,
}

/// Desired routes, and the kernel made to match them.
pub struct RouteReconciler {
    config: RouteConfig,
    socket: RtSocket,
    state: RouteState,
    first_seen: HashMap<String, Instant>,
}

impl RouteReconciler {
    /// Opens the reconciler in the calling thread's network namespace
    /// (inside a tokio runtime). Nothing is read or written until the
    /// first [`RouteReconciler::resync`].
    pub fn open(config: RouteConfig) -> Result<RouteReconciler, NetlinkError> {
        let mut socket = RtSocket::open()?;
        socket.set_batch(config.batch);
        socket.set_timeout(config.netlink_timeout);
        Ok(RouteReconciler {
            state: RouteState::new(config.ownership.protocol),
            config,
            socket,
            first_seen: HashMap::new(),
        })
    }

    /// Wants `route`.
    pub fn set(&mut self, route: Route) {
        self.state.set(route);
    }

    /// No longer wants the route with `key`.
    pub fn remove(&mut self, key: &RouteKey) {
        self.state.remove(key);
    }

    /// An interface changed (from the links reconciler).
    pub fn interface_update(&mut self, event: &InterfaceEvent) {
        let state = match event.status {
            InterfaceStatus::Up | InterfaceStatus::Down => {
                self.first_seen
                    .entry(event.name.clone())
                    .or_insert_with(Instant::now);
                Some(RouteInterface {
                    index: event.index,
                    up: event.status == InterfaceStatus::Up,
                })
            }
            InterfaceStatus::Absent => {
                self.first_seen.remove(&event.name);
                None
            }
        };
        self.state.set_interface(&event.name, state);
    }

    /// Desired routes waiting for their interface.
    pub fn pending(&self) -> Vec<RouteKey> {
        self.state.pending()
    }

    pub fn counts(&self) -> RouteCounts {
        RouteCounts {
            desired: self.state.desired_count(),
            installed: self.state.installed_count(),
            pending: self.state.pending().len(),
        }
    }

    /// Re-reads the interfaces and tortie's routes from the kernel.
    pub async fn resync(&mut self) -> Result<(), NetlinkError> {
        let started = Instant::now();
        let links = self
            .socket
            .dump(
                "dump links",
                RouteNetlinkMessage::GetLink(link_dump_request()),
            )
            .await?;
        let now = Instant::now();
        let mut names = HashMap::new();
        let mut ifaces = HashMap::new();
        for link in links.iter().filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => parse_link(l),
            _ => None,
        }) {
            names.insert(link.index, link.name.clone());
            ifaces.insert(
                link.name,
                RouteInterface {
                    index: link.index,
                    up: link.running,
                },
            );
        }
        self.first_seen.retain(|name, _| ifaces.contains_key(name));
        for name in ifaces.keys() {
            self.first_seen.entry(name.clone()).or_insert(now);
        }
        self.state.set_all_interfaces(ifaces);

        let mut ours = Vec::new();
        let mut seen = 0usize;
        for v6 in [false, true] {
            let request = RouteNetlinkMessage::GetRoute(wire::dump_request(v6));
            for m in self.socket.dump("dump routes", request).await? {
                let RouteNetlinkMessage::NewRoute(msg) = m else {
                    continue;
                };
                let Some(route) = wire::parse_route(&msg) else {
                    continue;
                };
                seen += 1;
                let iface = wire::route_oif(&msg)
                    .and_then(|i| names.get(&i))
                    .map(|name| {
                        let age = self
                            .first_seen
                            .get(name)
                            .map_or(Duration::ZERO, |t| now.saturating_duration_since(*t));
                        (name.as_str(), age)
                    });
                if self.config.ownership.owns(&route, iface) {
                    ours.push(route);
                }
            }
        }
        tracing::debug!(
            routes = seen,
            ours = ours.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "routes resynced"
        );
        self.state.set_installed(ours);
        Ok(())
    }

    /// Makes the kernel match the desired routes: the planned deletions
    /// and replacements in pipelined batches. Refused changes stay pending
    /// and are counted; an exchange failure leaves every planned change
    /// pending and is returned.
    pub async fn apply(&mut self) -> Result<ApplyReport, NetlinkError> {
        let ops = self.state.plan();
        if ops.is_empty() {
            return Ok(ApplyReport::default());
        }
        let requests = ops
            .iter()
            .map(|op| match op {
                RouteOp::Replace(r) => Request {
                    message: RouteNetlinkMessage::NewRoute(wire::route_message(r)),
                    flags: NLM_F_CREATE | NLM_F_REPLACE,
                },
                RouteOp::Delete(r) => Request {
                    message: RouteNetlinkMessage::DelRoute(wire::delete_message(r)),
                    flags: 0,
                },
            })
            .collect();
        let started = Instant::now();
        let outcomes = match self
            .socket
            .pipeline("program routes", requests, self.config.ack)
            .await
        {
            Ok(outcomes) => outcomes,
            Err(e) => {
                for op in ops {
                    self.state.record(op, &Outcome::Lost);
                }
                return Err(e);
            }
        };
        let mut report = ApplyReport::default();
        for (op, outcome) in ops.into_iter().zip(&outcomes) {
            let key = *op.key();
            let replace = matches!(op, RouteOp::Replace(_));
            match self.state.record(op, outcome) {
                Recorded::Applied => report.applied += 1,
                Recorded::Failed => {
                    report.failed += 1;
                    if let Outcome::Failed(e) = outcome {
                        tracing::warn!(route = %key, replace, error = %e, "route change refused; will retry");
                    }
                }
                Recorded::Unknown => report.lost += 1,
            }
        }
        tracing::debug!(
            applied = report.applied,
            failed = report.failed,
            lost = report.lost,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "routes applied"
        );
        Ok(report)
    }
}

impl Reconciler for RouteReconciler {
    type Update = RouteUpdate;
    type Error = NetlinkError;

    fn update(&mut self, update: RouteUpdate) {
        match update {
            RouteUpdate::Set(route) => self.set(route),
            RouteUpdate::Remove(key) => self.remove(&key),
            RouteUpdate::Interface(event) => self.interface_update(&event),
        }
    }

    async fn resync(&mut self) -> Result<(), NetlinkError> {
        RouteReconciler::resync(self).await
    }

    async fn apply(&mut self) -> Result<ApplyReport, NetlinkError> {
        RouteReconciler::apply(self).await
    }

    fn resync_interval(&self) -> Duration {
        self.config.resync_interval
    }

    fn name(&self) -> &'static str {
        "routes"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, protocol: u8) -> KernelRoute {
        KernelRoute {
            key: RouteKey::new(dst.parse().expect("net"), 1024),
            kind: RouteKind::Unicast,
            oif: Some(5),
            gateway: None,
            onlink: false,
            scope_link: false,
            protocol,
            mtu: None,
        }
    }

    #[test]
    fn ownership_by_protocol_and_by_interface() {
        let o = RouteOwnership::default();
        let old = Duration::from_secs(60);
        // Our protocol anywhere, on any interface.
        assert!(o.owns(&route("10.0.0.0/24", 80), Some(("eth0", old))));
        let mut other_table = route("10.0.0.0/24", 80);
        other_table.key.table = 100;
        assert!(o.owns(&other_table, None));
        // Foreign protocol: only on our interfaces, once past the grace.
        assert!(!o.owns(&route("10.0.0.0/24", 4), Some(("eth0", old))));
        assert!(o.owns(&route("10.0.0.1/32", 3), Some(("cali1234", old))));
        assert!(o.owns(&route("10.0.0.1/32", 3), Some(("vxlan.calico", old))));
        assert!(!o.owns(
            &route("10.0.0.1/32", 3),
            Some(("cali1234", Duration::from_secs(1)))
        ));
        assert!(!o.owns(&route("10.0.0.1/32", 3), None));
        // Never the kernel's own routes.
        assert!(!o.owns(&route("10.0.0.0/24", RTPROT_KERNEL), Some(("cali1", old))));
        assert!(!o.owns(&route("fe80::/64", 3), Some(("cali1", old))));
        assert!(!o.owns(&route("ff00::/8", 3), Some(("cali1", old))));
        let no_removal = RouteOwnership {
            remove_external_routes: false,
            ..o
        };
        assert!(!no_removal.owns(&route("10.0.0.1/32", 3), Some(("cali1", old))));
    }
}
