//! VXLAN on the wire: the device (RTM_NEWLINK with IFLA_INFO_KIND "vxlan"
//! and its IFLA_VXLAN_* data), its address, neighbour entries (RTM_NEWNEIGH
//! in the device's family) and bridge FDB entries (RTM_NEWNEIGH with
//! AF_BRIDGE and NTF_SELF — what `bridge fdb add … self` sends).
//!
//! Hard cases: FDB entries' NDA_DST arrives undecoded (the library only
//! knows IP families for NDA_DST), so it is read by length; a deletion of
//! an FDB entry names only the MAC, so an entry with several remotes goes
//! as a whole; IPv6 tunnel addresses skip duplicate address detection so
//! they are usable at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::{LinkUnspec, LinkVxlan};

use super::plan::{FdbEntry, InstalledDevice, NeighbourEntry, VxlanDevice};
use crate::links::parse_link;

fn family_of(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// `ip link add <name> address <mac> mtu <mtu> up type vxlan id <vni>
/// dstport <port> local <ip> dev <parent> nolearning`.
pub(crate) fn create_device(want: &VxlanDevice, parent: u32) -> LinkMessage {
    let builder = LinkVxlan::new(want.name(), want.vni)
        .dev(parent)
        .port(want.port)
        .learning(false);
    let builder = match want.local {
        IpAddr::V4(a) => builder.local(a),
        IpAddr::V6(a) => builder.local6(a),
    };
    builder
        .mtu(want.mtu)
        .address(want.mac.to_vec())
        .up()
        .build()
}

/// MTU / MAC / up on an existing device.
pub(crate) fn set_device(index: u32, mtu: Option<u32>, mac: Option<[u8; 6]>) -> LinkMessage {
    let mut builder = LinkUnspec::new_with_index(index).up();
    if let Some(mtu) = mtu {
        builder = builder.mtu(mtu);
    }
    if let Some(mac) = mac {
        builder = builder.address(mac.to_vec());
    }
    builder.build()
}

/// The link with this index (for deletion).
pub(crate) fn link_index(index: u32) -> LinkMessage {
    LinkUnspec::new_with_index(index).build()
}

/// The device's tunnel address (or one to delete).
pub(crate) fn address(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(addr.addr());
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    match addr.addr() {
        IpAddr::V4(_) => msg.attributes.push(AddressAttribute::Local(addr.addr())),
        IpAddr::V6(_) => msg.header.flags = AddressHeaderFlags::Nodad,
    }
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    msg
}

/// `ip neigh replace <ip> lladdr <mac> dev <index> nud permanent` (or,
/// without a MAC, the entry to delete).
pub(crate) fn neighbour(index: u32, ip: IpAddr, mac: Option<[u8; 6]>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family_of(ip);
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes
        .push(NeighbourAttribute::Destination(ip.into()));
    if let Some(mac) = mac {
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    msg
}

/// `bridge fdb replace <mac> dst <ip> dev <index> self permanent` (or,
/// without a destination, the entry to delete).
pub(crate) fn fdb(index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    if let Some(dst) = dst {
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(dst)));
    }
    msg
}

/// The GETNEIGH message dumping one family's neighbours (AF_BRIDGE: FDB).
pub(crate) fn neighbour_dump_request(family: AddressFamily) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    msg
}

/// The VXLAN view of a link.
pub(crate) fn parse_device(msg: &LinkMessage) -> Option<(String, InstalledDevice)> {
    let link = parse_link(msg)?;
    let mut device = InstalledDevice {
        index: link.index,
        kind: link.kind,
        vni: None,
        port: None,
        local: None,
        parent: None,
        learning: None,
        mtu: link.mtu,
        mac: link.mac,
        admin_up: link.admin_up,
    };
    for attr in &msg.attributes {
        let rtnetlink::packet_route::link::LinkAttribute::LinkInfo(infos) = attr else {
            continue;
        };
        for info in infos {
            let LinkInfo::Data(InfoData::Vxlan(data)) = info else {
                continue;
            };
            for d in data {
                match d {
                    InfoVxlan::Id(v) => device.vni = Some(*v),
                    InfoVxlan::Port(p) => device.port = Some(*p),
                    InfoVxlan::Local(a) => device.local = Some(IpAddr::V4(*a)),
                    InfoVxlan::Local6(a) => device.local = Some(IpAddr::V6(*a)),
                    InfoVxlan::Link(i) => device.parent = Some(*i),
                    InfoVxlan::Learning(l) => device.learning = Some(*l),
                    _ => {}
                }
            }
        }
    }
    Some((link.name, device))
}

fn mac_of(attrs: &[NeighbourAttribute]) -> Option<Vec<u8>> {
    attrs.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) => Some(m.clone()),
        _ => None,
    })
}

/// `(ifindex, ip, entry)` of an IPv4/IPv6 neighbour entry.
pub(crate) fn parse_neighbour(msg: &NeighbourMessage) -> Option<(u32, IpAddr, NeighbourEntry)> {
    let ip = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })?;
    Some((
        msg.header.ifindex,
        ip,
        NeighbourEntry {
            mac: mac_of(&msg.attributes).unwrap_or_default(),
            permanent: msg.header.state == NeighbourState::Permanent,
        },
    ))
}

/// `(ifindex, mac, entry)` of a bridge FDB entry.
pub(crate) fn parse_fdb(msg: &NeighbourMessage) -> Option<(u32, [u8; 6], FdbEntry)> {
    if msg.header.family != AddressFamily::Bridge {
        return None;
    }
    let mac: [u8; 6] = mac_of(&msg.attributes)?.try_into().ok()?;
    let dst = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => ip_from_bytes(b),
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    });
    Some((
        msg.header.ifindex,
        mac,
        FdbEntry {
            dst,
            permanent: msg.header.state == NeighbourState::Permanent,
        },
    ))
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::{Emitable, NetlinkMessage, NetlinkPayload};
    use rtnetlink::packet_route::RouteNetlinkMessage;

    fn device() -> VxlanDevice {
        VxlanDevice {
            vni: 4096,
            port: 4789,
            local: "192.168.1.10".parse().expect("ip"),
            parent: None,
            mac: [0x66, 1, 2, 3, 4, 5],
            mtu: 1450,
            tunnel_addr: "10.244.0.0".parse().expect("ip"),
        }
    }

    /// Emits and re-parses a message, as the kernel would see it.
    fn through_bytes(msg: RouteNetlinkMessage) -> RouteNetlinkMessage {
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
    fn the_created_device_reads_back_with_its_parameters() {
        let msg = through_bytes(RouteNetlinkMessage::NewLink(create_device(&device(), 2)));
        let RouteNetlinkMessage::NewLink(link) = msg else {
            panic!("not a link");
        };
        let (name, d) = parse_device(&link).expect("named");
        assert_eq!(name, "vxlan.calico");
        assert_eq!(d.kind.as_deref(), Some("vxlan"));
        assert_eq!(
            (d.vni, d.port, d.parent, d.learning),
            (Some(4096), Some(4789), Some(2), Some(false))
        );
        assert_eq!(d.local, Some("192.168.1.10".parse().expect("ip")));
        assert_eq!((d.mtu, d.admin_up), (1450, true));
        assert_eq!(d.mac, vec![0x66, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn fdb_and_neighbour_entries_round_trip() {
        let mac = [0x66, 9, 9, 9, 9, 9];
        let dst: IpAddr = "192.168.1.11".parse().expect("ip");
        let RouteNetlinkMessage::NewNeighbour(n) =
            through_bytes(RouteNetlinkMessage::NewNeighbour(fdb(7, mac, Some(dst))))
        else {
            panic!("not a neighbour");
        };
        assert_eq!(n.header.flags, NeighbourFlags::Own);
        assert_eq!(
            parse_fdb(&n),
            Some((
                7,
                mac,
                FdbEntry {
                    dst: Some(dst),
                    permanent: true,
                }
            ))
        );
        assert_eq!(parse_neighbour(&n), None, "not an IP neighbour");

        let tunnel: IpAddr = "fd00:1::".parse().expect("ip");
        let RouteNetlinkMessage::NewNeighbour(n) = through_bytes(
            RouteNetlinkMessage::NewNeighbour(neighbour(7, tunnel, Some(mac))),
        ) else {
            panic!("not a neighbour");
        };
        assert_eq!(
            parse_neighbour(&n),
            Some((
                7,
                tunnel,
                NeighbourEntry {
                    mac: mac.to_vec(),
                    permanent: true,
                }
            ))
        );
        assert_eq!(parse_fdb(&n), None);
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn addresses_are_host_routes_and_v6_skips_dad() {
        let v4 = address(7, "10.244.0.0/32".parse().expect("net"));
        assert_eq!(v4.header.prefix_len, 32);
        assert!(
            v4.attributes
                .contains(&AddressAttribute::Local("10.244.0.0".parse().expect("ip")))
        );
        let v6 = address(7, "fd00:1::/128".parse().expect("net"));
        assert_eq!(v6.header.flags, AddressHeaderFlags::Nodad);
        assert_eq!(v6.header.family, AddressFamily::Inet6);
        let set = set_device(7, Some(1400), None);
        assert_eq!(set.header.index, 7);
        assert_eq!(link_index(9).header.index, 9);
        assert_eq!(
            neighbour_dump_request(AddressFamily::Bridge).header.family,
            AddressFamily::Bridge
        );
    }
}
