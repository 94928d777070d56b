//! The VXLAN reconciler (spec/dataplane.md §2.2): the device
//! `vxlan.calico` (IPv6: `vxlan-v6.calico`, the same code with the other
//! family) — VNI 4096, UDP port 4789, learning off, local address = the
//! node IP, parent = the interface holding it, MAC and MTU from the
//! caller, the node's tunnel address as a /32 (/128), up — and for every
//! remote VTEP a permanent neighbour entry (`<peer tunnel IP> lladdr <peer
//! MAC>`) and a permanent FDB entry (`<peer MAC> dst <peer node IP>
//! self`). The routes through the device are the routes reconciler's.
//!
//! The device is tortie's by name: it is recreated when a parameter that
//! cannot change in place drifts, set up again when downed, and every
//! entry on it that is not wanted is removed. The state is small (one
//! device, an entry pair per node), so each resync reads all of it and
//! each apply diffs all of it ([`plan`]).

pub mod plan;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

pub use plan::{Blocked, Installed, Vtep, VxlanDevice, VxlanOp};

use crate::driver::{ApplyReport, Reconciler};
use crate::links::{address_dump_request, link_dump_request, parse_address};
use crate::netlink::{AckMode, DEFAULT_TIMEOUT, NetlinkError, Outcome, Request, RtSocket};

/// The IPv4 device.
pub const DEVICE_V4: &str = "vxlan.calico";
/// The IPv6 device.
pub const DEVICE_V6: &str = "vxlan-v6.calico";
/// `VXLANVNI`.
pub const DEFAULT_VNI: u32 = 4096;
/// `VXLANPort`.
pub const DEFAULT_PORT: u16 = 4789;

impl VxlanDevice {
    /// The device with the default VNI and port, on the interface holding
    /// `local`.
    pub fn new(local: IpAddr, tunnel_addr: IpAddr, mac: [u8; 6], mtu: u32) -> VxlanDevice {
        VxlanDevice {
            vni: DEFAULT_VNI,
            port: DEFAULT_PORT,
            local,
            parent: None,
            mac,
            mtu,
            tunnel_addr,
        }
    }

    /// `vxlan.calico` or `vxlan-v6.calico`, by the family of `local`.
    pub fn name(&self) -> &'static str {
        device_name(self.is_ipv6())
    }
}

fn device_name(v6: bool) -> &'static str {
    if v6 { DEVICE_V6 } else { DEVICE_V4 }
}

/// Desired-state changes for the driver loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VxlanUpdate {
    /// The device wanted (`None`: VXLAN off, remove ours).
    Device(Option<VxlanDevice>),
    /// A remote node's VTEP, keyed by node name.
    SetVtep {
        node: String,
        vtep: Vtep,
    },
    RemoveVtep {
        node: String,
    },
}

/// How the VXLAN reconciler behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanConfig {
    /// Which family (and so which device) this reconciler keeps.
    pub ipv6: bool,
    pub resync_interval: Duration,
    pub netlink_timeout: Duration,
}

impl Default for VxlanConfig {
    fn default() -> VxlanConfig {
        VxlanConfig {
            ipv6: false,
            resync_interval: crate::driver::DEFAULT_RESYNC_INTERVAL,
            netlink_timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Keeps one VXLAN device and its peers.
pub struct VxlanReconciler {
    config: VxlanConfig,
    socket: RtSocket,
    desired: Option<VxlanDevice>,
    vteps: BTreeMap<String, Vtep>,
    installed: Installed,
    parent: Option<u32>,
    blocked: Option<Blocked>,
    /// What was read no longer answers the desired device (new device
    /// wanted, or its parent was missing): re-read before planning.
    stale: bool,
}

impl VxlanReconciler {
    /// Opens the reconciler in the calling thread's network namespace
    /// (inside a tokio runtime). It wants no device until told.
    pub fn open(config: VxlanConfig) -> Result<VxlanReconciler, NetlinkError> {
        let mut socket = RtSocket::open()?;
        socket.set_timeout(config.netlink_timeout);
        Ok(VxlanReconciler {
            config,
            socket,
            desired: None,
            vteps: BTreeMap::new(),
            installed: Installed::default(),
            parent: None,
            blocked: None,
            stale: true,
        })
    }

    fn name(&self) -> &'static str {
        device_name(self.config.ipv6)
    }

    /// Records a desired-state change.
    pub fn update(&mut self, update: VxlanUpdate) {
        match update {
            VxlanUpdate::Device(Some(device)) if device.is_ipv6() != self.config.ipv6 => {
                tracing::warn!(device = self.name(), local = %device.local, "ignoring a VXLAN device of the other family");
            }
            VxlanUpdate::Device(device) => {
                self.stale |= self.desired != device;
                self.desired = device;
            }
            VxlanUpdate::SetVtep { node, vtep } => {
                if vtep.node_ip.is_ipv6() != self.config.ipv6 {
                    tracing::warn!(device = self.name(), %node, "ignoring a VTEP of the other family");
                    return;
                }
                self.vteps.insert(node, vtep);
                let (_, clashes) = plan::usable_vteps(&self.vteps);
                for clash in clashes {
                    tracing::warn!(device = self.name(), %clash, "VTEP not programmed");
                }
            }
            VxlanUpdate::RemoveVtep { node } => {
                self.vteps.remove(&node);
            }
        }
    }

    /// What was last read (or since applied).
    pub fn installed(&self) -> &Installed {
        &self.installed
    }

    /// Why the device cannot be programmed, if it cannot.
    pub fn blocked(&self) -> Option<&Blocked> {
        self.blocked.as_ref()
    }

    /// Re-reads the device, its parent, addresses, neighbours and FDB.
    pub async fn resync(&mut self) -> Result<(), NetlinkError> {
        let name = self.name();
        let v6 = self.config.ipv6;
        let links = self
            .socket
            .dump(
                "dump links",
                RouteNetlinkMessage::GetLink(link_dump_request()),
            )
            .await?;
        let mut device = None;
        let mut indexes = HashMap::new();
        for m in &links {
            let RouteNetlinkMessage::NewLink(l) = m else {
                continue;
            };
            if let Some((link_name, d)) = wire::parse_device(l) {
                indexes.insert(link_name.clone(), d.index);
                if link_name == name {
                    device = Some(d);
                }
            }
        }
        let addrs: Vec<(u32, ipnet::IpNet)> = self
            .socket
            .dump(
                "dump addresses",
                RouteNetlinkMessage::GetAddress(address_dump_request()),
            )
            .await?
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_address(a),
                _ => None,
            })
            .collect();
        self.parent = self.desired.as_ref().and_then(|want| match &want.parent {
            Some(parent) => indexes.get(parent).copied(),
            None => addrs
                .iter()
                .find(|(_, a)| a.addr() == want.local)
                .map(|(i, _)| *i),
        });
        let mut installed = Installed::default();
        if let Some(d) = &device {
            let index = d.index;
            installed.addrs = addrs
                .iter()
                .filter(|(i, a)| *i == index && a.addr().is_ipv6() == v6)
                .filter(|(_, a)| match a.addr() {
                    IpAddr::V6(v6) => !v6.is_unicast_link_local(),
                    IpAddr::V4(_) => true,
                })
                .map(|(_, a)| *a)
                .collect();
            let family = if v6 {
                AddressFamily::Inet6
            } else {
                AddressFamily::Inet
            };
            for (family, fdb) in [(family, false), (AddressFamily::Bridge, true)] {
                let request =
                    RouteNetlinkMessage::GetNeighbour(wire::neighbour_dump_request(family));
                for m in self.socket.dump("dump neighbours", request).await? {
                    let RouteNetlinkMessage::NewNeighbour(n) = m else {
                        continue;
                    };
                    if fdb {
                        if let Some((i, mac, entry)) = wire::parse_fdb(&n)
                            && i == index
                        {
                            installed.fdb.insert(mac, entry);
                        }
                    } else if let Some((i, ip, entry)) = wire::parse_neighbour(&n)
                        && i == index
                    {
                        installed.neighbours.insert(ip, entry);
                    }
                }
            }
        }
        installed.device = device;
        self.installed = installed;
        self.stale = false;
        Ok(())
    }

    fn request(&self, op: &VxlanOp) -> Option<Request> {
        let (message, flags) = match op {
            VxlanOp::DeleteDevice { index, .. } => {
                (RouteNetlinkMessage::DelLink(wire::link_index(*index)), 0)
            }
            VxlanOp::CreateDevice { parent } => {
                let want = self.desired.as_ref()?;
                (
                    RouteNetlinkMessage::NewLink(wire::create_device(want, *parent)),
                    NLM_F_CREATE | NLM_F_EXCL,
                )
            }
            VxlanOp::SetDevice {
                index, mtu, mac, ..
            } => (
                RouteNetlinkMessage::SetLink(wire::set_device(*index, *mtu, *mac)),
                0,
            ),
            VxlanOp::AddAddress { index, addr } => (
                RouteNetlinkMessage::NewAddress(wire::address(*index, *addr)),
                NLM_F_CREATE | NLM_F_REPLACE,
            ),
            VxlanOp::DeleteAddress { index, addr } => (
                RouteNetlinkMessage::DelAddress(wire::address(*index, *addr)),
                0,
            ),
            VxlanOp::SetNeighbour { index, ip, mac } => (
                RouteNetlinkMessage::NewNeighbour(wire::neighbour(*index, *ip, Some(*mac))),
                NLM_F_CREATE | NLM_F_REPLACE,
            ),
            VxlanOp::DeleteNeighbour { index, ip } => (
                RouteNetlinkMessage::DelNeighbour(wire::neighbour(*index, *ip, None)),
                0,
            ),
            VxlanOp::SetFdb { index, mac, dst } => (
                RouteNetlinkMessage::NewNeighbour(wire::fdb(*index, *mac, Some(*dst))),
                NLM_F_CREATE | NLM_F_REPLACE,
            ),
            VxlanOp::DeleteFdb { index, mac } => (
                RouteNetlinkMessage::DelNeighbour(wire::fdb(*index, *mac, None)),
                0,
            ),
        };
        Some(Request { message, flags })
    }

    /// Makes the kernel match: the device first (re-reading after a
    /// (re)creation), then its address, neighbour and FDB entries.
    pub async fn apply(&mut self) -> Result<ApplyReport, NetlinkError> {
        let device = self.name();
        let mut report = ApplyReport::default();
        if self.stale {
            self.resync().await?;
        }
        // At most: recreate the device, then fill it.
        for _round in 0..2 {
            let (vteps, _) = plan::usable_vteps(&self.vteps);
            let ops = match plan::plan(self.desired.as_ref(), &vteps, self.parent, &self.installed)
            {
                Ok(ops) => {
                    if let Some(was) = self.blocked.take() {
                        tracing::info!(device, was = %was, "VXLAN device no longer blocked");
                    }
                    ops
                }
                Err(blocked) => {
                    if self.blocked.as_ref() != Some(&blocked) {
                        tracing::warn!(device, reason = %blocked, "VXLAN device cannot be programmed");
                    }
                    self.blocked = Some(blocked);
                    // The node address may appear: look again on retry.
                    self.stale = true;
                    report.failed += 1;
                    return Ok(report);
                }
            };
            if ops.is_empty() {
                break;
            }
            let recreated = ops.iter().any(VxlanOp::recreates);
            let mut sent = Vec::new();
            let mut requests = Vec::new();
            for op in ops {
                if let Some(r) = self.request(&op) {
                    requests.push(r);
                    sent.push(op);
                }
            }
            let outcomes = self
                .socket
                .pipeline("program VXLAN", requests, AckMode::ErrorsOnly)
                .await?;
            for (op, outcome) in sent.iter().zip(outcomes) {
                match outcome {
                    Outcome::Done => {
                        report.applied += 1;
                        match op {
                            VxlanOp::DeleteDevice { reason, .. } => {
                                tracing::info!(device, %reason, "VXLAN device removed");
                            }
                            VxlanOp::CreateDevice { parent } => {
                                tracing::info!(device, parent, "VXLAN device created");
                            }
                            _ => tracing::debug!(device, ?op, "VXLAN change applied"),
                        }
                        plan::record(&mut self.installed, op);
                    }
                    Outcome::Failed(error) => {
                        report.failed += 1;
                        tracing::warn!(device, ?op, %error, "VXLAN change refused; will retry");
                    }
                    Outcome::Lost => report.lost += 1,
                }
            }
            if !recreated || report.failed > 0 || report.lost > 0 {
                break;
            }
            self.resync().await?;
        }
        Ok(report)
    }
}

impl Reconciler for VxlanReconciler {
    type Update = VxlanUpdate;
    type Error = NetlinkError;

    fn update(&mut self, update: VxlanUpdate) {
        VxlanReconciler::update(self, update);
    }

    async fn resync(&mut self) -> Result<(), NetlinkError> {
        VxlanReconciler::resync(self).await
    }

    async fn apply(&mut self) -> Result<ApplyReport, NetlinkError> {
        VxlanReconciler::apply(self).await
    }

    fn resync_interval(&self) -> Duration {
        self.config.resync_interval
    }

    fn name(&self) -> &'static str {
        VxlanReconciler::name(self)
    }
}
