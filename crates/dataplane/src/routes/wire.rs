//! Routes on the wire: [`KernelRoute`] to RTM_NEWROUTE/RTM_DELROUTE
//! messages and RTM_NEWROUTE dump entries back to [`KernelRoute`]
//! (rtnetlink(7), include/uapi/linux/rtnetlink.h).
//!
//! Hard cases: tables above 255 only fit RTA_TABLE (the header byte says
//! RT_TABLE_UNSPEC); a deletion names the exact route (type, protocol,
//! interface, gateway) with scope "nowhere" so it can only remove what we
//! read; the kernel reports IPv6 blackholes on `lo`, which is not an
//! interface of the route; cloned (cache) entries and multipath routes are
//! recognised so they never pass for one of ours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};

use super::model::{KernelRoute, RouteKey, RouteKind};

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// The message that installs (NEWROUTE) `route`.
pub(crate) fn route_message(route: &KernelRoute) -> RouteMessage {
    let key = &route.key;
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = family(key.is_ipv6());
    h.destination_prefix_length = key.dst.prefix_len();
    h.tos = key.tos;
    h.table = u8::try_from(key.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    h.protocol = RouteProtocol::from(route.protocol);
    h.scope = if route.scope_link {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    h.kind = match route.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Other => RouteType::Unspec,
    };
    if route.onlink {
        h.flags = RouteFlags::Onlink;
    }
    let attrs = &mut msg.attributes;
    attrs.push(RouteAttribute::Table(key.table));
    attrs.push(RouteAttribute::Destination(key.dst.addr().into()));
    attrs.push(RouteAttribute::Priority(key.metric));
    if let Some(oif) = route.oif {
        attrs.push(RouteAttribute::Oif(oif));
    }
    if let Some(gw) = route.gateway {
        attrs.push(RouteAttribute::Gateway(gw.into()));
    }
    if let Some(mtu) = route.mtu {
        attrs.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    msg
}

/// The message that deletes (DELROUTE) exactly the installed `route`.
pub(crate) fn delete_message(route: &KernelRoute) -> RouteMessage {
    let mut msg = route_message(route);
    // Any scope; the type only when we know it (multipath etc. match any).
    msg.header.scope = RouteScope::NoWhere;
    msg.attributes
        .retain(|a| !matches!(a, RouteAttribute::Metrics(_)));
    msg
}

/// The GETROUTE message that dumps one family's routes of every table.
pub(crate) fn dump_request(v6: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(v6);
    msg
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A dumped route, or `None` for what is not an IPv4/IPv6 FIB entry.
pub(crate) fn parse_route(msg: &RouteMessage) -> Option<KernelRoute> {
    let h = &msg.header;
    let v6 = match h.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    if h.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst = None;
    let mut oif = None;
    let mut gateway = None;
    let mut metric = 0;
    let mut mtu = None;
    let mut multipath = false;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = address(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(a) => gateway = address(a),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Metrics(metrics) => {
                mtu = metrics.iter().find_map(|m| match m {
                    RouteMetric::Mtu(v) => Some(*v),
                    _ => None,
                });
            }
            RouteAttribute::MultiPath(_) => multipath = true,
            _ => {}
        }
    }
    let unspecified = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let dst = IpNet::new(dst.unwrap_or(unspecified), h.destination_prefix_length).ok()?;
    let kind = match h.kind {
        RouteType::Unicast if !multipath => RouteKind::Unicast,
        RouteType::BlackHole => RouteKind::Blackhole,
        _ => RouteKind::Other,
    };
    Some(KernelRoute {
        key: RouteKey {
            table,
            dst,
            metric,
            tos: h.tos,
        },
        kind,
        oif: if kind == RouteKind::Blackhole {
            None
        } else {
            oif
        },
        gateway,
        onlink: h.flags.contains(RouteFlags::Onlink),
        scope_link: !v6 && h.scope == RouteScope::Link,
        protocol: u8::from(h.protocol),
        mtu,
    })
}

/// The interface index a dumped route is on (IPv6 blackholes included,
/// which the kernel puts on `lo`), for ownership decisions.
pub(crate) fn route_oif(msg: &RouteMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::model::MAIN_TABLE;
    use super::*;
    use rtnetlink::packet_core::{Emitable, NetlinkMessage, NetlinkPayload};
    use rtnetlink::packet_route::RouteNetlinkMessage;

    fn route(dst: &str) -> KernelRoute {
        KernelRoute {
            key: RouteKey::new(dst.parse().expect("net"), 1024),
            kind: RouteKind::Unicast,
            oif: Some(5),
            gateway: None,
            onlink: false,
            scope_link: !dst.contains(':'),
            protocol: 80,
            mtu: None,
        }
    }

    /// Parses the netlink message `ip` sent (captured with `strace -xx`).
    fn decode(bytes: &[u8]) -> RouteMessage {
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
            .expect("decodes")
            .payload
        {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(m)) => m,
            other => panic!("not a NEWROUTE: {other:?}"),
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    #[test]
    fn messages_round_trip_through_bytes() {
        let mut via = route("10.65.0.0/26");
        via.gateway = Some("10.65.1.0".parse().expect("ip"));
        via.onlink = true;
        via.scope_link = false;
        via.mtu = Some(1450);
        let mut hole = route("10.66.0.0/26");
        hole.kind = RouteKind::Blackhole;
        hole.oif = None;
        hole.scope_link = false;
        let mut big_table = route("fd00:1::/122");
        big_table.key.table = 1000;
        let mut v6_via = route("fd00:2::/122");
        v6_via.gateway = Some("fd00:ff::2".parse().expect("ip"));
        v6_via.onlink = true;
        for r in [route("10.65.0.5/32"), via, hole, big_table, v6_via] {
            let msg = route_message(&r);
            let mut nl = NetlinkMessage::from(RouteNetlinkMessage::NewRoute(msg));
            nl.finalize();
            let mut buf = vec![0; nl.buffer_len()];
            nl.emit(&mut buf);
            assert_eq!(parse_route(&decode(&buf)).as_ref(), Some(&r), "{r:?}");
        }
    }

    #[test]
    fn reads_iproute2s_messages() {
        // `ip route replace 10.65.0.0/26 via 10.65.1.0 dev veth0 onlink proto
        // 80 metric 1024 mtu 1450` (veth0 = index 3), as iproute2 6.1 sent it
        // (`strace -e write=3`).
        let bytes = hex("48 00 00 00 18 00 05 05 18 66 07 6b 00 00 00 00 \
             02 1a 00 00 fe 50 00 01 04 00 00 00 08 00 01 00 \
             0a 41 00 00 08 00 05 00 0a 41 01 00 08 00 06 00 \
             00 04 00 00 08 00 04 00 03 00 00 00 0c 00 08 00 \
             08 00 02 00 aa 05 00 00");
        let msg = decode(&bytes);
        let got = parse_route(&msg).expect("route");
        let mut want = route("10.65.0.0/26");
        want.oif = Some(3);
        want.gateway = Some("10.65.1.0".parse().expect("ip"));
        want.onlink = true;
        want.scope_link = false;
        want.mtu = Some(1450);
        assert_eq!(got, want);
        assert_eq!(got.key.table, MAIN_TABLE);
        assert_eq!(route_oif(&msg), Some(3));
        // Ours carries the same header and attributes (order aside).
        let ours = route_message(&want);
        assert_eq!(ours.header, msg.header);
        for attr in &msg.attributes {
            assert!(ours.attributes.contains(attr), "{attr:?}");
        }

        // `ip -6 route replace blackhole fd00:1::/122 table 1000 proto 80
        // metric 1024`: the table only fits RTA_TABLE.
        let bytes = hex("40 00 00 00 18 00 05 05 18 66 07 6b 00 00 00 00 \
             0a 7a 00 00 00 50 00 06 00 00 00 00 14 00 01 00 \
             fd 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 \
             08 00 0f 00 e8 03 00 00 08 00 06 00 00 04 00 00");
        let msg = decode(&bytes);
        let got = parse_route(&msg).expect("route");
        let mut want = route("fd00:1::/122");
        want.key.table = 1000;
        want.kind = RouteKind::Blackhole;
        want.oif = None;
        assert_eq!(got, want);
        assert_eq!(route_message(&want).header, msg.header);
    }

    #[test]
    fn deletes_match_any_scope_and_blackholes_drop_lo() {
        let msg = delete_message(&route("10.65.0.5/32"));
        assert_eq!(msg.header.scope, RouteScope::NoWhere);
        let mut v6_hole = route("fd00::/122");
        v6_hole.kind = RouteKind::Blackhole;
        let mut msg = route_message(&v6_hole);
        msg.header.kind = RouteType::BlackHole;
        let parsed = parse_route(&msg).expect("route");
        assert_eq!(parsed.oif, None, "the kernel's `dev lo` is not the route's");
        msg.header.flags = RouteFlags::Cloned;
        assert_eq!(parse_route(&msg), None);
        assert_eq!(
            dump_request(true).header.address_family,
            AddressFamily::Inet6
        );
    }
}
