//! IPIP (spec/dataplane.md §2.3): detecting whether the kernel can do it
//! at all, and keeping `tunl0` — the kernel's fallback ipip device — with
//! the node's IPIP tunnel address, the IPIP MTU, and up
//! ([`IpipReconciler`]). Routes through it (`<block> via <peer node IP>
//! dev tunl0 onlink`) are ordinary routes of the routes reconciler.
//!
//! Detection ([`probe`]): `tunl0` present with kind `ipip` means yes;
//! otherwise a throwaway ipip link is created (the kernel loads the `ipip`
//! module on demand, which also creates `tunl0`) and deleted. EOPNOTSUPP
//! means the kernel was built without CONFIG_NET_IPIP (or the module is
//! missing): that is an answer with its reason, for logs and status,
//! never a silent fallback; any other failure is an error.
//!
//! Hard cases: `tunl0` cannot be deleted (it is the fallback device), so
//! tortie only sets its address, MTU and admin state; a probe link left by
//! a crash is removed by the next probe.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use nix::errno::Errno;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::{LinkIpIp, LinkUnspec};

use crate::driver::{ApplyReport, Reconciler};
use crate::links::{LinkState, address_dump_request, link_dump_request, parse_address, parse_link};
use crate::netlink::{AckMode, DEFAULT_TIMEOUT, NetlinkError, Outcome, Request, RtSocket};

/// The IPIP device.
pub const DEVICE: &str = "tunl0";
/// The throwaway link [`probe`] creates (15 characters, IFNAMSIZ - 1).
pub const PROBE_DEVICE: &str = "tortieipipprobe";

/// Whether this kernel can do IPIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpipSupport {
    Supported,
    /// Why not, for logs and `tortie node status`.
    Unsupported {
        reason: String,
    },
}

fn find<'a>(links: &'a [LinkState], name: &str) -> Option<&'a LinkState> {
    links.iter().find(|l| l.name == name)
}

async fn links(socket: &mut RtSocket) -> Result<Vec<LinkState>, NetlinkError> {
    Ok(socket
        .dump(
            "dump links",
            RouteNetlinkMessage::GetLink(link_dump_request()),
        )
        .await?
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => parse_link(l),
            _ => None,
        })
        .collect())
}

/// An ipip link called `name` with no endpoints (what `tunl0` is).
fn ipip_link(name: &str) -> LinkMessage {
    LinkIpIp::new(name).build()
}

/// Finds out whether the kernel of the calling thread's namespace supports
/// IPIP (see the module comment).
pub async fn probe(socket: &mut RtSocket) -> Result<IpipSupport, NetlinkError> {
    let found = links(socket).await?;
    if find(&found, DEVICE).is_some_and(|l| l.kind.as_deref() == Some("ipip")) {
        return Ok(IpipSupport::Supported);
    }
    if let Some(stale) = find(&found, PROBE_DEVICE) {
        socket
            .request(
                "delete a stale IPIP probe link",
                RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(stale.index).build()),
                0,
            )
            .await?;
    }
    let created = socket
        .request(
            "create an IPIP probe link",
            RouteNetlinkMessage::NewLink(ipip_link(PROBE_DEVICE)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await;
    match created {
        Ok(()) => {
            let probe = links(socket).await?;
            if let Some(l) = find(&probe, PROBE_DEVICE) {
                socket
                    .request(
                        "delete the IPIP probe link",
                        RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(l.index).build()),
                        0,
                    )
                    .await?;
            }
            Ok(IpipSupport::Supported)
        }
        Err(e) if e.errno() == Some(Errno::EOPNOTSUPP) => Ok(IpipSupport::Unsupported {
            reason: format!(
                "the kernel cannot create ipip links ({e}): it was built without \
                 CONFIG_NET_IPIP or the ipip module is not available"
            ),
        }),
        Err(e) => Err(e),
    }
}

/// What `tunl0` should look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelDevice {
    /// The node's IPIP tunnel address (`Node.spec.bgp.ipv4IPIPTunnelAddr`).
    pub address: Ipv4Addr,
    /// The IPIP MTU.
    pub mtu: u32,
}

/// One change to `tunl0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelOp {
    /// Create `tunl0` (loads the module where it is one).
    Create,
    SetDevice {
        index: u32,
        mtu: u32,
    },
    AddAddress {
        index: u32,
        addr: Ipv4Net,
    },
    DeleteAddress {
        index: u32,
        addr: Ipv4Net,
    },
}

/// The changes that make `tunl0` (as read: the link and its IPv4
/// addresses) match `want`. A created device is planned again after a
/// re-read.
pub fn plan(want: &TunnelDevice, have: Option<(&LinkState, &[Ipv4Net])>) -> Vec<TunnelOp> {
    let Some((link, addrs)) = have else {
        return vec![TunnelOp::Create];
    };
    let index = link.index;
    let mut ops = Vec::new();
    if link.mtu != want.mtu || !link.admin_up {
        ops.push(TunnelOp::SetDevice {
            index,
            mtu: want.mtu,
        });
    }
    let addr = Ipv4Net::from(want.address);
    ops.extend(
        addrs
            .iter()
            .filter(|a| **a != addr)
            .map(|a| TunnelOp::DeleteAddress { index, addr: *a }),
    );
    if !addrs.contains(&addr) {
        ops.push(TunnelOp::AddAddress { index, addr });
    }
    ops
}

/// The changes that leave an existing `tunl0` without IPv4 addresses.
pub fn plan_clear(have: Option<(&LinkState, &[Ipv4Net])>) -> Vec<TunnelOp> {
    have.map(|(link, addrs)| {
        addrs
            .iter()
            .map(|a| TunnelOp::DeleteAddress {
                index: link.index,
                addr: *a,
            })
            .collect()
    })
    .unwrap_or_default()
}

fn address_message(index: u32, addr: Ipv4Net) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    msg.attributes = vec![
        AddressAttribute::Local(IpAddr::V4(addr.addr())),
        AddressAttribute::Address(IpAddr::V4(addr.addr())),
    ];
    msg
}

/// The netlink request carrying `op`.
pub fn request(op: &TunnelOp) -> Request {
    match op {
        TunnelOp::Create => Request {
            message: RouteNetlinkMessage::NewLink(ipip_link(DEVICE)),
            flags: NLM_F_CREATE | NLM_F_EXCL,
        },
        TunnelOp::SetDevice { index, mtu } => Request {
            message: RouteNetlinkMessage::SetLink(
                LinkUnspec::new_with_index(*index).mtu(*mtu).up().build(),
            ),
            flags: 0,
        },
        TunnelOp::AddAddress { index, addr } => Request {
            message: RouteNetlinkMessage::NewAddress(address_message(*index, *addr)),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
        },
        TunnelOp::DeleteAddress { index, addr } => Request {
            message: RouteNetlinkMessage::DelAddress(address_message(*index, *addr)),
            flags: 0,
        },
    }
}

/// How the IPIP reconciler behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpipConfig {
    pub resync_interval: Duration,
    pub netlink_timeout: Duration,
}

impl Default for IpipConfig {
    fn default() -> IpipConfig {
        IpipConfig {
            resync_interval: crate::driver::DEFAULT_RESYNC_INTERVAL,
            netlink_timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Keeps `tunl0` as the latest [`TunnelDevice`] says. Told `None` (IPIP
/// not in use, or no tunnel address allocated yet), it removes the IPv4
/// addresses of an existing `tunl0`: a tunnel address left there after
/// IPAM released it would shadow the pod that gets it next. The device
/// itself cannot be deleted and stays.
pub struct IpipReconciler {
    config: IpipConfig,
    socket: RtSocket,
    desired: Option<TunnelDevice>,
    /// `tunl0` and its IPv4 addresses as last read (`None`: absent).
    installed: Option<(LinkState, Vec<Ipv4Net>)>,
}

impl IpipReconciler {
    /// Opens the reconciler in the calling thread's network namespace
    /// (inside a tokio runtime).
    pub fn open(config: IpipConfig) -> Result<IpipReconciler, NetlinkError> {
        let mut socket = RtSocket::open()?;
        socket.set_timeout(config.netlink_timeout);
        Ok(IpipReconciler {
            config,
            socket,
            desired: None,
            installed: None,
        })
    }

    /// Reads `tunl0` and its IPv4 addresses.
    pub async fn resync(&mut self) -> Result<(), NetlinkError> {
        let found = links(&mut self.socket).await?;
        let Some(link) = find(&found, DEVICE).cloned() else {
            self.installed = None;
            return Ok(());
        };
        let addrs = self
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
            .filter_map(|(i, a)| match a {
                IpNet::V4(v4) if i == link.index => Some(v4),
                _ => None,
            })
            .collect();
        self.installed = Some((link, addrs));
        Ok(())
    }

    /// Applies [`plan`] (or [`plan_clear`]) against what was read; after
    /// any change `tunl0` is read again (and planned again when it had to
    /// be created).
    pub async fn apply(&mut self) -> Result<ApplyReport, NetlinkError> {
        let mut report = ApplyReport::default();
        for _round in 0..2 {
            let have = self.installed.as_ref().map(|(l, a)| (l, a.as_slice()));
            let ops = match &self.desired {
                Some(want) => plan(want, have),
                None => plan_clear(have),
            };
            if ops.is_empty() {
                break;
            }
            let created = ops.contains(&TunnelOp::Create);
            let requests = ops.iter().map(request).collect();
            let outcomes = self
                .socket
                .pipeline("program tunl0", requests, AckMode::ErrorsOnly)
                .await?;
            for (op, outcome) in ops.iter().zip(outcomes) {
                match outcome {
                    Outcome::Done => {
                        report.applied += 1;
                        tracing::info!(device = DEVICE, ?op, "IPIP device changed");
                    }
                    Outcome::Failed(error) => {
                        report.failed += 1;
                        tracing::warn!(device = DEVICE, ?op, %error, "IPIP change refused; will retry");
                    }
                    Outcome::Lost => report.lost += 1,
                }
            }
            self.resync().await?;
            if !created || report.needs_retry() {
                break;
            }
        }
        Ok(report)
    }
}

impl Reconciler for IpipReconciler {
    type Update = Option<TunnelDevice>;
    type Error = NetlinkError;

    fn update(&mut self, update: Option<TunnelDevice>) {
        self.desired = update;
    }

    async fn resync(&mut self) -> Result<(), NetlinkError> {
        IpipReconciler::resync(self).await
    }

    async fn apply(&mut self) -> Result<ApplyReport, NetlinkError> {
        IpipReconciler::apply(self).await
    }

    fn resync_interval(&self) -> Duration {
        self.config.resync_interval
    }

    fn name(&self) -> &'static str {
        DEVICE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::{Emitable, NetlinkMessage, NetlinkPayload};
    use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo};

    fn tunl0(mtu: u32, up: bool) -> LinkState {
        LinkState {
            index: 9,
            name: DEVICE.to_string(),
            admin_up: up,
            running: up,
            mtu,
            mac: Vec::new(),
            kind: Some("ipip".to_string()),
        }
    }

    const WANT: TunnelDevice = TunnelDevice {
        address: Ipv4Addr::new(10, 244, 3, 0),
        mtu: 1480,
    };

    fn emitted(msg: RouteNetlinkMessage) -> RouteNetlinkMessage {
        let mut nl = NetlinkMessage::from(msg);
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.emit(&mut buf);
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf)
            .expect("decodes")
            .payload
        {
            NetlinkPayload::InnerMessage(m) => m,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn plans_creation_then_mtu_up_and_address() {
        assert_eq!(plan(&WANT, None), vec![TunnelOp::Create]);
        let link = tunl0(1500, false);
        let stale: Ipv4Net = "10.9.9.9/32".parse().expect("net");
        let ops = plan(&WANT, Some((&link, &[stale])));
        assert_eq!(
            ops,
            vec![
                TunnelOp::SetDevice {
                    index: 9,
                    mtu: 1480
                },
                TunnelOp::DeleteAddress {
                    index: 9,
                    addr: stale
                },
                TunnelOp::AddAddress {
                    index: 9,
                    addr: "10.244.3.0/32".parse().expect("net"),
                },
            ]
        );
        let done = tunl0(1480, true);
        let addr: Ipv4Net = "10.244.3.0/32".parse().expect("net");
        assert!(plan(&WANT, Some((&done, &[addr]))).is_empty());
    }

    #[test]
    fn without_a_tunnel_address_tunl0_keeps_none() {
        assert!(plan_clear(None).is_empty(), "no tunl0, nothing to do");
        let link = tunl0(1480, true);
        let stale: Ipv4Net = "10.244.3.0/32".parse().expect("net");
        assert_eq!(
            plan_clear(Some((&link, &[stale]))),
            vec![TunnelOp::DeleteAddress {
                index: 9,
                addr: stale
            }]
        );
    }

    #[test]
    fn messages_carry_kind_mtu_up_and_address() {
        let RouteNetlinkMessage::NewLink(link) = emitted(request(&TunnelOp::Create).message) else {
            panic!("not a link");
        };
        assert!(
            link.attributes
                .contains(&LinkAttribute::IfName("tunl0".into()))
        );
        assert!(link.attributes.iter().any(|a| matches!(
            a,
            LinkAttribute::LinkInfo(infos) if infos.contains(&LinkInfo::Kind(InfoKind::IpIp))
        )));

        let set = request(&TunnelOp::SetDevice {
            index: 9,
            mtu: 1480,
        });
        let RouteNetlinkMessage::SetLink(link) = emitted(set.message) else {
            panic!("not a set");
        };
        assert_eq!(link.header.index, 9);
        assert!(link.header.flags.contains(LinkFlags::Up));
        assert!(link.attributes.contains(&LinkAttribute::Mtu(1480)));

        let add = request(&TunnelOp::AddAddress {
            index: 9,
            addr: "10.244.3.0/32".parse().expect("net"),
        });
        assert_eq!(add.flags, NLM_F_CREATE | NLM_F_REPLACE);
        let RouteNetlinkMessage::NewAddress(addr) = emitted(add.message) else {
            panic!("not an address");
        };
        assert_eq!(
            parse_address(&addr),
            Some((9, "10.244.3.0/32".parse().expect("net")))
        );
    }
}
