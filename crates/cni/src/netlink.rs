//! The few rtnetlink operations the plugin needs, on whichever namespace
//! the connection was opened in: look links up, create the veth pair,
//! bring links up, add and list addresses and routes, delete links.
//!
//! Hard cases: "no such device" is an answer (`None`, or success for a
//! delete), not an error; errors keep the kernel's errno so callers can
//! tell "already exists" apart; dumps are bounded by the kernel's reply
//! (no polling here — retries belong to the callers that need them).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// A failed netlink operation, with the kernel's errno when it gave one.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {message}")]
pub struct NetlinkError {
    pub op: String,
    pub errno: Option<Errno>,
    pub message: String,
}

impl NetlinkError {
    fn of(op: impl Into<String>, err: rtnetlink::Error) -> NetlinkError {
        let errno = match &err {
            rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => {
                Some(Errno::from_raw(m.raw_code().abs()))
            }
            _ => None,
        };
        let message = match errno {
            Some(e) => e.desc().to_string(),
            None => err.to_string(),
        };
        NetlinkError {
            op: op.into(),
            errno,
            message,
        }
    }

    pub fn is(&self, errno: Errno) -> bool {
        self.errno == Some(errno)
    }
}

/// What we read of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
    pub is_veth: bool,
    /// IFLA_LINK: for a veth, the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
}

/// One address on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressState {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// One route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteState {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub scope_link: bool,
}

/// A route to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub scope_link: bool,
    pub protocol: RouteProtocol,
}

/// `aa:bb:cc:dd:ee:ff` (shared with the node daemon's reconcilers).
pub use tortie_dataplane::links::format_mac;

fn link_state(msg: LinkMessage) -> LinkState {
    let mut state = LinkState {
        index: msg.header.index,
        name: String::new(),
        mac: Vec::new(),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        is_veth: false,
        peer_index: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => state.name = n,
            LinkAttribute::Address(a) => state.mac = a,
            LinkAttribute::Mtu(m) => state.mtu = m,
            LinkAttribute::Link(peer) => state.peer_index = Some(peer),
            LinkAttribute::LinkInfo(infos) => {
                state.is_veth = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
            }
            _ => {}
        }
    }
    state
}

fn route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_state(msg: &RouteMessage, v6: bool) -> Option<RouteState> {
    let mut table = u32::from(msg.header.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = route_address(a),
            RouteAttribute::Gateway(a) => gateway = route_address(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let unspecified = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let dst = IpNet::new(
        dst.unwrap_or(unspecified),
        msg.header.destination_prefix_length,
    )
    .ok()?;
    Some(RouteState {
        dst,
        gateway,
        oif,
        scope_link: msg.header.scope == RouteScope::Link,
    })
}

fn route_message(spec: &RouteSpec) -> RouteMessage {
    let mut msg = match (spec.dst, spec.gateway) {
        (IpNet::V4(dst), gw) => {
            let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst.addr(), dst.prefix_len())
                .output_interface(spec.oif);
            if let Some(IpAddr::V4(gw)) = gw {
                b = b.gateway(gw);
            }
            b.build()
        }
        (IpNet::V6(dst), gw) => {
            let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(dst.addr(), dst.prefix_len())
                .output_interface(spec.oif);
            if let Some(IpAddr::V6(gw)) = gw {
                b = b.gateway(gw);
            }
            b.build()
        }
    };
    msg.header.protocol = spec.protocol;
    if spec.scope_link {
        msg.header.scope = RouteScope::Link;
    }
    msg
}

/// A netlink connection in the namespace of the thread that opened it.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a connection; must run inside a tokio runtime, which drives it.
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| NetlinkError {
            op: "open a netlink socket".to_string(),
            errno: e.raw_os_error().map(Errno::from_raw),
            message: e.to_string(),
        })?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The link called `name`, if any.
    pub async fn link(&self, name: &str) -> Result<Option<LinkState>, NetlinkError> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        match found {
            Ok(msg) => Ok(msg.map(link_state)),
            Err(e) => {
                let e = NetlinkError::of(format!("look up link {name}"), e);
                if e.is(Errno::ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The link with this index, if any.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkState>, NetlinkError> {
        let found = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await;
        match found {
            Ok(msg) => Ok(msg.map(link_state)),
            Err(e) => {
                let e = NetlinkError::of(format!("look up link {index}"), e);
                if e.is(Errno::ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Creates a veth pair here; the peer is created directly in the
    /// namespace of `peer_netns`, with `peer_mac`. Both ends get `mtu`.
    pub async fn create_veth(
        &self,
        name: &str,
        peer: &str,
        mtu: u32,
        peer_mac: [u8; 6],
        peer_netns: &File,
    ) -> Result<(), NetlinkError> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .address(peer_mac.to_vec())
            .setns_by_fd(peer_netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(name, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::of(format!("create veth {name} (peer {peer})"), e))
    }

    pub async fn set_up(&self, index: u32, up: bool) -> Result<(), NetlinkError> {
        let b = LinkUnspec::new_with_index(index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::of(format!("set link {index} up={up}"), e))
    }

    /// Deletes a link; a link that is already gone is fine.
    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = NetlinkError::of(format!("delete link {index}"), e);
                if e.is(Errno::ENODEV) { Ok(()) } else { Err(e) }
            }
        }
    }

    /// Adds an address; `nodad` skips IPv6 duplicate address detection.
    pub async fn add_address(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
        nodad: bool,
    ) -> Result<(), NetlinkError> {
        let mut req = self.handle.address().add(index, addr, prefix);
        if nodad {
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        req.execute()
            .await
            .map_err(|e| NetlinkError::of(format!("add address {addr}/{prefix}"), e))
    }

    pub async fn addresses(&self, index: u32) -> Result<Vec<AddressState>, NetlinkError> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::of(format!("list addresses of link {index}"), e))?;
        let mut out = Vec::new();
        for msg in messages.iter().filter(|m| m.header.index == index) {
            let mut addr = None;
            for attr in &msg.attributes {
                match attr {
                    // IFA_LOCAL is the interface's own address where it
                    // differs from IFA_ADDRESS (point-to-point links).
                    AddressAttribute::Local(a) => addr = Some(*a),
                    AddressAttribute::Address(a) if addr.is_none() => addr = Some(*a),
                    _ => {}
                }
            }
            if let Some(addr) = addr {
                out.push(AddressState {
                    addr,
                    prefix: msg.header.prefix_len,
                });
            }
        }
        Ok(out)
    }

    pub async fn add_route(&self, spec: &RouteSpec) -> Result<(), NetlinkError> {
        self.handle
            .route()
            .add(route_message(spec))
            .execute()
            .await
            .map_err(|e| NetlinkError::of(format!("add route {} dev {}", spec.dst, spec.oif), e))
    }

    /// Deletes the main-table route to `dst` through link `oif`; a route
    /// that is already gone is fine.
    pub async fn delete_route(&self, dst: IpNet, oif: u32) -> Result<(), NetlinkError> {
        let mut msg = route_message(&RouteSpec {
            dst,
            gateway: None,
            oif,
            scope_link: false,
            protocol: RouteProtocol::Unspec,
        });
        // Any scope, as `ip route del` does.
        msg.header.scope = RouteScope::NoWhere;
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = NetlinkError::of(format!("delete route {dst} dev {oif}"), e);
                if e.is(Errno::ESRCH) { Ok(()) } else { Err(e) }
            }
        }
    }

    /// The main table's routes of one family.
    pub async fn routes(&self, v6: bool) -> Result<Vec<RouteState>, NetlinkError> {
        let query = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        };
        let messages: Vec<RouteMessage> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::of("list routes", e))?;
        Ok(messages.iter().filter_map(|m| route_state(m, v6)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_messages_carry_scope_protocol_and_gateway() {
        let spec = RouteSpec {
            dst: "10.0.0.5/32".parse().expect("net"),
            gateway: None,
            oif: 7,
            scope_link: true,
            protocol: RouteProtocol::Boot,
        };
        let msg = route_message(&spec);
        assert_eq!(msg.header.scope, RouteScope::Link);
        assert_eq!(msg.header.protocol, RouteProtocol::Boot);
        assert_eq!(msg.header.destination_prefix_length, 32);
        let state = route_state(&msg, false).expect("main table");
        assert_eq!(state.oif, Some(7));
        assert!(state.scope_link);

        let v6 = RouteSpec {
            dst: "::/0".parse().expect("net"),
            gateway: Some("fe80::1".parse().expect("ip")),
            oif: 3,
            scope_link: false,
            protocol: RouteProtocol::Boot,
        };
        let state = route_state(&route_message(&v6), true).expect("main table");
        assert_eq!(state.dst, "::/0".parse::<IpNet>().expect("net"));
        assert_eq!(state.gateway, Some("fe80::1".parse().expect("ip")));
    }
}
