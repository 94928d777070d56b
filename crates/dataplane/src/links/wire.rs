//! Links and addresses on the wire: RTM_NEWLINK / RTM_NEWADDR entries (from
//! dumps and notifications) to plain values, and the GET requests that
//! dump them. Shared by the links monitor, the routes reconciler (which
//! needs interface names and states to decide ownership) and VXLAN.
//!
//! Hard cases: oper state is IFF_RUNNING, not IFF_UP (spec/dataplane.md
//! §6); an IPv4 point-to-point address's own address is IFA_LOCAL, not
//! IFA_ADDRESS (which is the peer's); a link can arrive without a name in
//! a malformed notification and is then ignored.

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};

/// What tortie reads of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    /// IFF_UP: administratively up.
    pub admin_up: bool,
    /// IFF_RUNNING: operationally up (carrier, not dormant).
    pub running: bool,
    pub mtu: u32,
    pub mac: Vec<u8>,
    /// IFLA_INFO_KIND (`veth`, `vxlan`, `bridge`...), when it has one.
    pub kind: Option<String>,
}

/// A link's state from a NEWLINK message.
pub(crate) fn parse_link(msg: &LinkMessage) -> Option<LinkState> {
    let mut name = None;
    let mut mtu = 0;
    let mut mac = Vec::new();
    let mut kind = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::Address(a) => mac = a.clone(),
            LinkAttribute::LinkInfo(infos) => {
                kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Some(k.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    Some(LinkState {
        index: msg.header.index,
        name: name?,
        admin_up: msg.header.flags.contains(LinkFlags::Up),
        running: msg.header.flags.contains(LinkFlags::Running),
        mtu,
        mac,
        kind,
    })
}

/// `(link index, address/prefix)` from a NEWADDR/DELADDR message.
pub(crate) fn parse_address(msg: &AddressMessage) -> Option<(u32, IpNet)> {
    let mut local: Option<IpAddr> = None;
    let mut address: Option<IpAddr> = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    let addr = local.or(address)?;
    let net = IpNet::new(addr, msg.header.prefix_len).ok()?;
    Some((msg.header.index, net))
}

/// The GETLINK message that dumps every link.
pub(crate) fn link_dump_request() -> LinkMessage {
    LinkMessage::default()
}

/// The GETADDR message that dumps every address of both families.
pub(crate) fn address_dump_request() -> AddressMessage {
    AddressMessage::default()
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::AddressFamily;
    use rtnetlink::packet_route::link::InfoKind;

    #[test]
    fn links_report_running_as_oper_state() {
        let mut msg = LinkMessage::default();
        msg.header.index = 4;
        msg.header.flags = LinkFlags::Up | LinkFlags::Running;
        msg.attributes = vec![
            LinkAttribute::IfName("cali12345678901".into()),
            LinkAttribute::Mtu(1440),
            LinkAttribute::Address(vec![0xee; 6]),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let state = parse_link(&msg).expect("named");
        assert!(state.admin_up && state.running);
        assert_eq!((state.index, state.mtu), (4, 1440));
        assert_eq!(state.kind.as_deref(), Some("veth"));
        assert_eq!(format_mac(&state.mac), "ee:ee:ee:ee:ee:ee");
        assert_eq!(format_mac(&[0x0a, 0, 1, 2, 3, 0xff]), "0a:00:01:02:03:ff");

        msg.header.flags = LinkFlags::Up;
        assert!(!parse_link(&msg).expect("named").running, "no carrier");
        msg.attributes.clear();
        assert_eq!(parse_link(&msg), None);
    }

    #[test]
    fn addresses_prefer_the_local_address() {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = 32;
        msg.header.index = 9;
        msg.attributes = vec![
            AddressAttribute::Address("10.0.0.2".parse().expect("ip")),
            AddressAttribute::Local("10.0.0.1".parse().expect("ip")),
        ];
        assert_eq!(
            parse_address(&msg),
            Some((9, "10.0.0.1/32".parse().expect("net")))
        );
        msg.attributes = vec![AddressAttribute::Address("fd00::1".parse().expect("ip"))];
        msg.header.prefix_len = 64;
        assert_eq!(
            parse_address(&msg),
            Some((9, "fd00::1/64".parse().expect("net")))
        );
    }
}
