//! Finding the node's own address: the IPv4 address (with its prefix) of
//! the interface that holds the default route, else the first global IPv4
//! address of any interface. `--ip` overrides it. An IPv6 address is
//! never guessed: `--ip6` gives it, and is checked to be this host's.
//! Also the host MTU: the smallest MTU of the oper-up interfaces whose
//! name matches `MTUIfacePattern` (spec/dataplane.md §4).

use std::collections::HashSet;
use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use futures::TryStreamExt as _;
use ipnet::IpNet;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, State};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};

/// The interface index of the IPv4 default route, if there is one.
async fn default_route_interface(handle: &rtnetlink::Handle) -> Result<Option<u32>> {
    let filter = RouteMessageBuilder::<std::net::Ipv4Addr>::new().build();
    let mut routes = handle.route().get(filter).execute();
    while let Some(route) = routes.try_next().await.context("listing routes")? {
        if route.header.destination_prefix_length != 0 || route.header.table != 254 {
            continue;
        }
        let is_default_v4 = !route
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(RouteAddress::Inet(_))))
            || route.attributes.iter().any(
                |a| matches!(a, RouteAttribute::Destination(RouteAddress::Inet(ip)) if ip.is_unspecified()),
            );
        if !is_default_v4 {
            continue;
        }
        if let Some(oif) = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        }) {
            return Ok(Some(oif));
        }
    }
    Ok(None)
}

/// IPv4 addresses with prefix, optionally of one interface.
async fn ipv4_addresses(handle: &rtnetlink::Handle, index: Option<u32>) -> Result<Vec<IpNet>> {
    let mut req = handle.address().get();
    if let Some(i) = index {
        req = req.set_link_index_filter(i);
    }
    let mut out = Vec::new();
    let mut stream = req.execute();
    while let Some(msg) = stream.try_next().await.context("listing addresses")? {
        let prefix = msg.header.prefix_len;
        for attr in &msg.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                if ip.is_loopback() || ip.is_link_local() {
                    continue;
                }
                if let Ok(net) = IpNet::new(IpAddr::V4(*ip), prefix) {
                    out.push(net);
                }
            }
        }
    }
    Ok(out)
}

/// The node address to register, e.g. `172.30.0.11/24`.
pub async fn node_address() -> Result<IpNet> {
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a netlink socket")?;
    let task = tokio::spawn(connection);
    let result = async {
        if let Some(oif) = default_route_interface(&handle).await?
            && let Some(net) = ipv4_addresses(&handle, Some(oif)).await?.into_iter().next()
        {
            return Ok(net);
        }
        match ipv4_addresses(&handle, None).await?.into_iter().next() {
            Some(net) => Ok(net),
            None => bail!(
                "this host has no IPv4 address to register; give one with --ip ADDRESS/PREFIX"
            ),
        }
    }
    .await;
    task.abort();
    result
}

/// Every address on this host's interfaces (one dump).
pub async fn host_addresses() -> Result<HashSet<IpAddr>> {
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a netlink socket")?;
    let task = tokio::spawn(connection);
    let result = async {
        let mut out = HashSet::new();
        let mut stream = handle.address().get().execute();
        while let Some(msg) = stream.try_next().await.context("listing addresses")? {
            out.extend(msg.attributes.iter().filter_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            }));
        }
        Ok(out)
    }
    .await;
    task.abort();
    result
}

/// The name and MTU of the interface holding `addr` (the node's own
/// address): routes without encapsulation leave through it; its MTU is
/// the host MTU only until [`host_mtu`] has read `mtuIfacePattern`.
pub async fn interface_holding(addr: IpAddr) -> Result<(String, u32)> {
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a netlink socket")?;
    let task = tokio::spawn(connection);
    let result = async {
        let mut index = None;
        let mut stream = handle.address().get().execute();
        while let Some(msg) = stream.try_next().await.context("listing addresses")? {
            if msg
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == addr))
            {
                index = Some(msg.header.index);
                break;
            }
        }
        let Some(index) = index else {
            let flag = if addr.is_ipv6() { "--ip6" } else { "--ip" };
            bail!("no interface of this host holds the node address {addr}; check {flag}");
        };
        let mut links = handle.link().get().match_index(index).execute();
        let Some(link) = links
            .try_next()
            .await
            .context("reading the node interface")?
        else {
            bail!("interface {index} holding {addr} disappeared");
        };
        let mut name = None;
        let mut mtu = None;
        for attr in link.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n),
                LinkAttribute::Mtu(m) => mtu = Some(m),
                _ => {}
            }
        }
        match (name, mtu) {
            (Some(name), Some(mtu)) => Ok((name, mtu)),
            _ => bail!("interface {index} holding {addr} has no name or MTU"),
        }
    }
    .await;
    task.abort();
    result
}

/// The host MTU when no interface matches `MTUIfacePattern` (as Felix).
pub const FALLBACK_HOST_MTU: u32 = 1460;

/// The smallest MTU among `links` (name, MTU, oper up) that are up and
/// match `pattern`; [`FALLBACK_HOST_MTU`] when none does.
pub fn smallest_matching_mtu(links: &[(String, u32, bool)], pattern: &regex::Regex) -> u32 {
    links
        .iter()
        .filter(|(name, _, up)| *up && pattern.is_match(name))
        .map(|(_, mtu, _)| *mtu)
        .min()
        .unwrap_or(FALLBACK_HOST_MTU)
}

/// The host MTU: the smallest MTU of this host's oper-up interfaces whose
/// name matches `pattern` (FelixConfiguration `mtuIfacePattern`).
pub async fn host_mtu(pattern: &str) -> Result<u32> {
    let pattern = regex::Regex::new(pattern)
        .with_context(|| format!("mtuIfacePattern {pattern:?} is not a regular expression"))?;
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a netlink socket")?;
    let task = tokio::spawn(connection);
    let result = async {
        let mut links = Vec::new();
        let mut stream = handle.link().get().execute();
        while let Some(msg) = stream.try_next().await.context("listing interfaces")? {
            let (mut name, mut mtu, mut up) = (None, None, true);
            for attr in msg.attributes {
                match attr {
                    LinkAttribute::IfName(n) => name = Some(n),
                    LinkAttribute::Mtu(m) => mtu = Some(m),
                    // Many drivers report UNKNOWN while passing traffic:
                    // only an interface known to be down is left out.
                    LinkAttribute::OperState(state) => {
                        up = !matches!(
                            state,
                            State::Down | State::LowerLayerDown | State::NotPresent
                        )
                    }
                    _ => {}
                }
            }
            if let (Some(name), Some(mtu)) = (name, mtu) {
                links.push((name, mtu, up));
            }
        }
        Ok(smallest_matching_mtu(&links, &pattern))
    }
    .await;
    task.abort();
    result
}

#[cfg(test)]
mod mtu_tests {
    use super::*;

    #[test]
    fn the_smallest_up_interface_matching_the_pattern_sets_the_host_mtu() {
        let pattern =
            regex::Regex::new(tortie_calc::config::DEFAULT_MTU_IFACE_PATTERN).expect("pattern");
        let link = |name: &str, mtu: u32, up: bool| (name.to_string(), mtu, up);
        let links = [
            link("lo", 65536, true),
            link("eth0", 9000, true),
            link("ens3", 1500, true),
            link("eth1", 1400, false), // down: ignored
            link("cali12345", 1200, true),
            link("vxlan.calico", 1450, true),
            link("docker0", 1000, true),
        ];
        assert_eq!(smallest_matching_mtu(&links, &pattern), 1500);
        assert_eq!(
            smallest_matching_mtu(&links[..1], &pattern),
            FALLBACK_HOST_MTU,
            "nothing matches"
        );
        let bonds = regex::Regex::new("^bond").expect("pattern");
        assert_eq!(
            smallest_matching_mtu(&[link("bond0", 9000, true)], &bonds),
            9000
        );
    }
}
