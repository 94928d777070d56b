//! Interfaces and their sysctls (spec/dataplane.md §1.4, §6): the links
//! reconciler watches every interface through netlink link and address
//! notifications (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR)
//! plus a periodic full scan, reports each interface's up/down/absent
//! state to the daemon, and keeps the sysctls of workload interfaces
//! (names starting with an `InterfacePrefix`, `cali` by default) and the
//! global forwarding switches as the spec wants them.
//!
//! Ownership: a workload veth's admin state belongs to the CNI plugin, so
//! a downed `cali*` interface is *reported*, never brought back up; the
//! devices tortie creates are kept up by their own reconciler
//! ([`crate::vxlan`]). Sysctls changed behind our back are restored on the
//! next resync (every [`crate::driver::DEFAULT_RESYNC_INTERVAL`]).
//!
//! Fast path: when given an [`Attacher`], the reconciler asks for the
//! program on every workload interface as it appears, and on each resync
//! on exactly the present ones (the attacher lets go of the rest). An
//! interface with a queueing discipline other than the veth default
//! (`noqueue`) is left to the host's stack, as either end of a fast-path
//! flow: the program's redirect would skip its shaping (the CNI bandwidth
//! plugin's `tbf` root, or its `ingress` redirect to an ifb). Qdisc
//! notifications (RTNLGRP_TC) take the program off such an interface at
//! once; one without them any more gets it back at the next resync.
//!
//! The event channel is bounded: events are computed from state
//! ([`InterfaceTable`]), so while the daemon is slow the reconciler waits,
//! the kernel's notifications pile up in the socket until it overflows,
//! and the overflow triggers a full scan whose differences are all that
//! is then reported — memory stays bounded and nothing is lost but
//! intermediate states nobody needs.

pub mod sysctls;
mod table;
mod wire;

use std::collections::HashSet;
use std::time::Duration;

use rtnetlink::MulticastGroup;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::tc::{TcAttribute, TcMessage};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use table::{InterfaceEvent, InterfaceStatus, InterfaceTable};
pub use wire::{LinkState, format_mac};
pub(crate) use wire::{address_dump_request, link_dump_request, parse_address, parse_link};

use crate::fastpath::attacher::Attacher;
use crate::netlink::{Monitor, NetlinkError, RtSocket};
use sysctls::{ProcSys, SysctlAccess, SysctlPolicy, SysctlReport};

/// Felix's default `InterfacePrefix`.
pub const DEFAULT_INTERFACE_PREFIX: &str = "cali";

/// How the links reconciler behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// Workload interface name prefixes (`InterfacePrefix`).
    pub interface_prefixes: Vec<String>,
    pub sysctls: SysctlPolicy,
    /// `rp_filter` for workload interfaces; `None`: the host's default
    /// (`net.ipv4.conf.default.rp_filter`, 1 if unreadable).
    pub rp_filter: Option<u8>,
    pub resync_interval: Duration,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            interface_prefixes: vec![DEFAULT_INTERFACE_PREFIX.to_string()],
            sysctls: SysctlPolicy {
                ipv4: true,
                ipv6: true,
                ip_forwarding: true,
                conntrack_be_liberal: false,
            },
            rp_filter: None,
            resync_interval: crate::driver::DEFAULT_RESYNC_INTERVAL,
        }
    }
}

/// Desired-state changes the daemon sends the links reconciler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkUpdate {
    /// The endpoint on `iface` may send from addresses it does not own
    /// (`allowSpoofedSourcePrefixes`): its `rp_filter` becomes 0.
    AllowSpoofedSources { iface: String, allowed: bool },
}

/// Watches interfaces and keeps their sysctls.
pub struct LinkReconciler<A: SysctlAccess = ProcSys> {
    config: LinkConfig,
    access: A,
    socket: RtSocket,
    monitor: Monitor,
    table: InterfaceTable,
    rp_filter: u8,
    spoofing: HashSet<String>,
    fast_path: Option<Attacher>,
    /// Interfaces with a qdisc other than `noqueue` (as last read).
    shaped: HashSet<u32>,
}

impl LinkReconciler<ProcSys> {
    /// Opens the reconciler in the calling thread's network namespace
    /// (inside a tokio runtime). Subscribes before the first scan, so no
    /// change between the two is missed.
    pub fn open(config: LinkConfig) -> Result<LinkReconciler<ProcSys>, NetlinkError> {
        LinkReconciler::with_access(config, ProcSys)
    }
}

impl<A: SysctlAccess> LinkReconciler<A> {
    /// As [`LinkReconciler::open`], with another `/proc/sys`.
    pub fn with_access(config: LinkConfig, access: A) -> Result<LinkReconciler<A>, NetlinkError> {
        let monitor = Monitor::open(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Tc,
        ])?;
        let socket = RtSocket::open()?;
        let rp_filter = config
            .rp_filter
            .unwrap_or_else(|| sysctls::default_rp_filter(&access));
        Ok(LinkReconciler {
            config,
            access,
            socket,
            monitor,
            table: InterfaceTable::new(),
            rp_filter,
            spoofing: HashSet::new(),
            fast_path: None,
            shaped: HashSet::new(),
        })
    }

    /// Has the fast path attached to workload interfaces from now on,
    /// through `attacher`. The config's sysctls should then include
    /// `conntrack_be_liberal`.
    pub fn with_fast_path(mut self, attacher: Attacher) -> LinkReconciler<A> {
        self.fast_path = Some(attacher);
        self
    }

    /// Asks for the fast path on one workload interface, or off it when
    /// the interface is gone or shaped.
    fn follow_with_fast_path(&self, index: u32, present: bool) {
        if let Some(attacher) = &self.fast_path {
            attacher.want(index, present && !self.shaped.contains(&index));
        }
    }

    /// Asks for the fast path on exactly the present, unshaped workload
    /// interfaces.
    pub fn resync_fast_path(&self) {
        if let Some(attacher) = &self.fast_path {
            let wanted: HashSet<u32> = self
                .table
                .links()
                .filter(|l| self.is_workload_interface(&l.name) && !self.shaped.contains(&l.index))
                .map(|l| l.index)
                .collect();
            attacher.only(wanted);
        }
    }

    /// Whether `name` is a workload interface.
    pub fn is_workload_interface(&self, name: &str) -> bool {
        self.config
            .interface_prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()))
    }

    /// The interfaces as last read.
    pub fn interfaces(&self) -> &InterfaceTable {
        &self.table
    }

    /// Re-reads every link and address; returns what changed.
    pub async fn scan(&mut self) -> Result<Vec<InterfaceEvent>, NetlinkError> {
        let links = self
            .socket
            .dump(
                "dump links",
                RouteNetlinkMessage::GetLink(link_dump_request()),
            )
            .await?;
        let addrs = self
            .socket
            .dump(
                "dump addresses",
                RouteNetlinkMessage::GetAddress(address_dump_request()),
            )
            .await?;
        let links = links
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => parse_link(l),
                _ => None,
            })
            .collect();
        let addrs = addrs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_address(a),
                _ => None,
            })
            .collect();
        self.table.replace_all(links, addrs);
        if self.fast_path.is_some() {
            let qdiscs = self
                .socket
                .dump(
                    "dump qdiscs",
                    RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
                )
                .await?;
            self.shaped = qdiscs
                .iter()
                .filter_map(|m| match m {
                    RouteNetlinkMessage::NewQueueDiscipline(q) => shaping_qdisc(q),
                    _ => None,
                })
                .collect();
        }
        Ok(self.table.events())
    }

    /// Folds notifications into the table; returns what changed.
    pub fn notified(&mut self, messages: Vec<RouteNetlinkMessage>) -> Vec<InterfaceEvent> {
        for m in messages {
            match m {
                RouteNetlinkMessage::NewLink(l) => {
                    if let Some(link) = parse_link(&l) {
                        self.table.link_changed(link);
                    }
                }
                RouteNetlinkMessage::DelLink(l) => self.table.link_removed(l.header.index),
                RouteNetlinkMessage::NewAddress(a) => {
                    if let Some((index, addr)) = parse_address(&a) {
                        self.table.address_added(index, addr);
                    }
                }
                RouteNetlinkMessage::DelAddress(a) => {
                    if let Some((index, addr)) = parse_address(&a) {
                        self.table.address_removed(index, addr);
                    }
                }
                // A shaping qdisc appeared: off the fast path at once. (One
                // removed is noticed by the next scan, which sees them all.)
                RouteNetlinkMessage::NewQueueDiscipline(q) => {
                    if let Some(index) = shaping_qdisc(&q)
                        && self.shaped.insert(index)
                        && let Some(attacher) = &self.fast_path
                    {
                        tracing::info!(
                            index,
                            "a qdisc shapes this interface; it leaves the fast path"
                        );
                        attacher.want(index, false);
                    }
                }
                _ => {}
            }
        }
        self.table.events()
    }

    fn rp_filter_for(&self, iface: &str) -> u8 {
        if self.spoofing.contains(iface) {
            0
        } else {
            self.rp_filter
        }
    }

    /// Applies the sysctls of one workload interface.
    pub fn apply_interface_sysctls(&self, iface: &str) -> SysctlReport {
        let wanted =
            sysctls::interface_sysctls(self.config.sysctls, iface, self.rp_filter_for(iface));
        let report = sysctls::reconcile(&self.access, &wanted);
        log_report(&report, false);
        report
    }

    /// Checks every sysctl tortie keeps (global, and each present workload
    /// interface's) and restores what drifted.
    pub fn resync_sysctls(&self) -> SysctlReport {
        let mut wanted = sysctls::global_sysctls(self.config.sysctls);
        for link in self.table.links() {
            if self.is_workload_interface(&link.name) {
                wanted.extend(sysctls::interface_sysctls(
                    self.config.sysctls,
                    &link.name,
                    self.rp_filter_for(&link.name),
                ));
            }
        }
        let report = sysctls::reconcile(&self.access, &wanted);
        log_report(&report, true);
        report
    }

    /// Records a desired-state change and applies it.
    pub fn update(&mut self, update: LinkUpdate) {
        match update {
            LinkUpdate::AllowSpoofedSources { iface, allowed } => {
                let changed = if allowed {
                    self.spoofing.insert(iface.clone())
                } else {
                    self.spoofing.remove(&iface)
                };
                if changed && self.table.get(&iface).is_some() {
                    self.apply_interface_sysctls(&iface);
                }
            }
        }
    }

    /// Applies the sysctls (and fast path) of workload interfaces that
    /// just appeared and forwards the events; `false` once the daemon
    /// stopped listening.
    async fn deliver(
        &self,
        events: Vec<InterfaceEvent>,
        out: &mpsc::Sender<InterfaceEvent>,
    ) -> bool {
        for event in events {
            tracing::info!(
                iface = %event.name,
                index = event.index,
                status = ?event.status,
                "interface changed"
            );
            if self.is_workload_interface(&event.name) {
                let present = event.status != InterfaceStatus::Absent;
                if present {
                    self.apply_interface_sysctls(&event.name);
                }
                self.follow_with_fast_path(event.index, present);
            }
            if out.send(event).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Runs until `updates` closes or the daemon drops `events`: applies
    /// global sysctls, reports every interface once, then follows
    /// notifications, resyncing every `resync_interval`. A netlink failure
    /// of a scan is retried at the next resync; a broken monitor socket
    /// ends the run with its error.
    pub async fn run(
        &mut self,
        mut updates: mpsc::Receiver<LinkUpdate>,
        events: mpsc::Sender<InterfaceEvent>,
    ) -> Result<(), NetlinkError> {
        let mut next_resync = Instant::now();
        loop {
            tokio::select! {
                notified = self.monitor.next() => {
                    let changes = match notified {
                        Ok(messages) => self.notified(messages),
                        Err(NetlinkError::Overrun { .. }) => {
                            tracing::warn!("interface notifications overflowed; rescanning");
                            next_resync = Instant::now();
                            Vec::new()
                        }
                        Err(e) => return Err(e),
                    };
                    if !self.deliver(changes, &events).await {
                        return Ok(());
                    }
                }
                update = updates.recv() => match update {
                    Some(update) => self.update(update),
                    None => return Ok(()),
                },
                () = tokio::time::sleep_until(next_resync) => {
                    next_resync = Instant::now() + self.config.resync_interval;
                    match self.scan().await {
                        Ok(changes) => {
                            if !self.deliver(changes, &events).await {
                                return Ok(());
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "interface scan failed; retrying at the next resync"),
                    }
                    self.resync_sysctls();
                    self.resync_fast_path();
                }
            }
        }
    }
}

/// The interface of a qdisc that is not the veth default `noqueue`.
fn shaping_qdisc(qdisc: &TcMessage) -> Option<u32> {
    let noqueue = qdisc
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(kind) if kind == "noqueue"));
    (!noqueue)
        .then(|| u32::try_from(qdisc.header.index).ok())
        .flatten()
        .filter(|index| *index > 0)
}

fn log_report(report: &SysctlReport, resync: bool) {
    for change in &report.changed {
        if resync && change.was.is_some() {
            tracing::info!(sysctl = %change.name, was = ?change.was, now = %change.now, "sysctl restored");
        } else {
            tracing::debug!(sysctl = %change.name, now = %change.now, "sysctl set");
        }
    }
    for (name, error) in &report.failed {
        tracing::warn!(sysctl = %name, %error, "sysctl not set; retrying at the next resync");
    }
}
