//! Per-workload plumbing (dataplane.md §1.1-§1.3): the veth pair, its
//! sysctls, the container's addresses and routes, and the host's /32
//! (/128) routes — set up, torn down and checked.
//!
//! Set-up order (each container step runs on a thread inside the
//! container's namespace, each host step in the plugin's own namespace):
//!
//! 1. host: delete a leftover host veth of the same name;
//! 2. container: create the pair — container side `CNI_IFNAME`, peer
//!    created directly in the host namespace with its final name, MTU and
//!    MAC `ee:ee:ee:ee:ee:ee` — then link up, read MAC (steps 1-2 need no
//!    addresses: ADD runs them while IPAM works);
//! 3. host: host-side sysctls (before up, so DAD never runs), link up,
//!    then (IPv6) discover the host side's link-local address (see
//!    `host_link_local`);
//! 4. container: sysctls, addresses (/32, /128 without DAD), `169.254.1.1/32
//!    scope link` then routes via 169.254.1.1, IPv6 routes via the link-local;
//! 5. host: `<ip>/32 dev <host veth> scope link` per address; an identical
//!    route is accepted, one via another interface is an error.
//!
//! Rollback: a failure in steps 3-5 deletes the host veth, which takes its
//! peer and every route through either end with it; a failure in step 2
//! deletes what it created. A failed set-up leaves nothing behind.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::packet_route::route::RouteProtocol;

use crate::error::{CniError, codes};
use crate::netlink::{LinkState, Netlink, NetlinkError, RouteSpec, format_mac};
use crate::netns::{Netns, NetnsError};
use crate::sysctl::{self, SysctlError};

/// The host side's MAC (dataplane.md §1.2).
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The container's IPv4 next hop, answered by proxy ARP on the host.
pub const IPV4_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The EUI-64 link-local address of a link with MAC `ee:ee:ee:ee:ee:ee`.
pub const IPV6_HOST_LINK_LOCAL: Ipv6Addr =
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);
/// Tries and pause while waiting for the host side's link-local address.
/// IPv6 assigns it once the link is operationally up, which the kernel's
/// link watcher may delay by up to a second (it does when the two ends
/// happen to have the same ifindex in their namespaces), so the bound is
/// 2 s rather than Calico's 500 ms.
const LINK_LOCAL_TRIES: u32 = 200;
const LINK_LOCAL_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error("{0}")]
    Conflict(String),
}

impl From<DataplaneError> for CniError {
    fn from(err: DataplaneError) -> CniError {
        let code = match &err {
            DataplaneError::Netns(NetnsError::Missing { .. } | NetnsError::NotANetns { .. }) => {
                codes::UNKNOWN_CONTAINER
            }
            _ => codes::INTERNAL,
        };
        CniError::new(code, err.to_string())
    }
}

/// What to build for one workload.
#[derive(Clone, Debug)]
pub struct VethPlan {
    pub host_name: String,
    pub container_ifname: String,
    pub mtu: u32,
    /// Container addresses (installed as /32 and /128).
    pub addresses: Vec<IpAddr>,
    /// Destinations routed via the gateway in the container.
    pub routes: Vec<IpNet>,
    pub allow_ip_forwarding: bool,
}

impl VethPlan {
    fn has_v4(&self) -> bool {
        self.addresses.iter().any(IpAddr::is_ipv4)
    }

    fn has_v6(&self) -> bool {
        self.addresses.iter().any(IpAddr::is_ipv6)
    }
}

/// What set-up learnt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethOutcome {
    pub container_mac: String,
    /// The container's IPv6 next hop (the host side's link-local).
    pub ipv6_gateway: Option<Ipv6Addr>,
}

fn host_net(addr: IpAddr) -> IpNet {
    IpNet::from(addr)
}

/// Steps 1 and 2 (independent of the addresses, so they may run while
/// IPAM works): delete a leftover host veth, create the pair, bring the
/// container side up. Returns the container side's MAC.
pub async fn create_pair(
    host_name: &str,
    container_ifname: &str,
    mtu: u32,
    netns: &Netns,
    host: &Netlink,
    host_ns: &Netns,
) -> Result<String, DataplaneError> {
    if let Some(old) = host.link(host_name).await? {
        tracing::info!(link = host_name, "deleting a leftover host veth");
        host.delete_link(old.index).await?;
    }
    let peer_ns = host_ns
        .file()
        .try_clone()
        .map_err(|source| NetnsError::Open {
            path: host_ns.path().to_string(),
            source,
        })?;
    let (host_name, ifname) = (host_name.to_string(), container_ifname.to_string());
    netns
        .run(move || async move { create_in_container(&host_name, &ifname, mtu, &peer_ns).await })
        .await?
}

/// Steps 3 to 5 for a pair [`create_pair`] made. On failure the pair is
/// deleted. Returns the container's IPv6 next hop, if it has IPv6.
pub async fn configure(
    plan: &VethPlan,
    netns: &Netns,
    host: &Netlink,
) -> Result<Option<Ipv6Addr>, DataplaneError> {
    match configure_steps(plan, netns, host).await {
        Ok(gateway) => Ok(gateway),
        Err(e) => {
            if let Err(undo) = delete_host_veth(host, &plan.host_name).await {
                tracing::error!(link = plan.host_name, error = %undo, "could not remove the veth of a failed set-up");
            }
            Err(e)
        }
    }
}

async fn configure_steps(
    plan: &VethPlan,
    netns: &Netns,
    host: &Netlink,
) -> Result<Option<Ipv6Addr>, DataplaneError> {
    let host_link = configure_host_side(plan, host).await?;
    let ipv6_gateway = if plan.has_v6() {
        Some(host_link_local(host, &host_link).await?)
    } else {
        None
    };
    let route_plan = plan.clone();
    netns
        .run(move || async move { configure_container(&route_plan, ipv6_gateway).await })
        .await??;
    add_host_routes(plan, host, host_link.index).await?;
    Ok(ipv6_gateway)
}

/// Step 2, in the container: create the pair, bring the container side
/// up; returns its MAC.
async fn create_in_container(
    host_name: &str,
    ifname: &str,
    mtu: u32,
    peer_ns: &std::fs::File,
) -> Result<String, DataplaneError> {
    let nl = Netlink::connect()?;
    nl.create_veth(ifname, host_name, mtu, HOST_MAC, peer_ns)
        .await?;
    let outcome = async {
        let link = nl.link(ifname).await?.ok_or_else(|| {
            DataplaneError::Conflict(format!(
                "the container interface {ifname} vanished right after it was created"
            ))
        })?;
        nl.set_up(link.index, true).await?;
        Ok::<_, DataplaneError>(format_mac(&link.mac))
    }
    .await;
    if outcome.is_err()
        && let Ok(Some(link)) = nl.link(ifname).await
    {
        // Deleting one end deletes the pair, host side included.
        let _ = nl.delete_link(link.index).await;
    }
    outcome
}

fn container_sysctls(plan: &VethPlan) -> Result<(), SysctlError> {
    let forward = if plan.allow_ip_forwarding { "1" } else { "0" };
    if plan.has_v4() {
        sysctl::write(&["net", "ipv4", "ip_forward"], forward)?;
    }
    if plan.has_v6() {
        for scope in ["all", "default", "lo"] {
            sysctl::write(&["net", "ipv6", "conf", scope, "disable_ipv6"], "0")?;
        }
        let ifname = plan.container_ifname.as_str();
        sysctl::write(&["net", "ipv6", "conf", ifname, "disable_ipv6"], "0")?;
        sysctl::write(&["net", "ipv6", "conf", ifname, "accept_dad"], "0")?;
        sysctl::write(&["net", "ipv6", "conf", "all", "forwarding"], forward)?;
    }
    Ok(())
}

/// Step 3, on the host: sysctls, then up.
async fn configure_host_side(plan: &VethPlan, host: &Netlink) -> Result<LinkState, DataplaneError> {
    let name = plan.host_name.as_str();
    let link = host.link(name).await?.ok_or_else(|| {
        DataplaneError::Conflict(format!(
            "the host side {name} did not appear in the host namespace"
        ))
    })?;
    sysctl::write_best_effort(&["net", "ipv6", "conf", name, "accept_ra"], "0");
    if plan.has_v4() {
        sysctl::write(&["net", "ipv4", "conf", name, "route_localnet"], "1")?;
        sysctl::write_best_effort(&["net", "ipv4", "neigh", name, "proxy_delay"], "0");
        sysctl::write(&["net", "ipv4", "conf", name, "proxy_arp"], "1")?;
        sysctl::write(&["net", "ipv4", "conf", name, "forwarding"], "1")?;
    }
    if plan.has_v6() {
        sysctl::write(&["net", "ipv6", "conf", name, "accept_dad"], "0")?;
        sysctl::write(&["net", "ipv6", "conf", name, "disable_ipv6"], "0")?;
        sysctl::write(&["net", "ipv6", "conf", name, "proxy_ndp"], "1")?;
        sysctl::write(&["net", "ipv6", "conf", name, "forwarding"], "1")?;
    }
    host.set_up(link.index, true).await?;
    Ok(link)
}

fn is_link_local(addr: &IpAddr) -> Option<Ipv6Addr> {
    match addr {
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some(*v6),
        _ => None,
    }
}

/// The EUI-64 link-local address of a link with this MAC.
pub fn eui64_link_local(mac: &[u8]) -> Option<Ipv6Addr> {
    let mac: [u8; 6] = mac.try_into().ok()?;
    let mut octets = [0u8; 16];
    octets[0] = 0xfe;
    octets[1] = 0x80;
    octets[8..].copy_from_slice(&[
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]);
    Some(Ipv6Addr::from(octets))
}

/// The host side's IPv6 link-local address. If the kernel has assigned
/// it, that one; if not yet and the link generates it from its MAC
/// (`addr_gen_mode` 0), the EUI-64 address it is about to get; otherwise
/// wait for it (bounded). The address is used whatever its form (hosts
/// using stable-privacy generation do not derive it from the MAC).
async fn host_link_local(host: &Netlink, link: &LinkState) -> Result<Ipv6Addr, DataplaneError> {
    let name = link.name.as_str();
    let eui64_mode =
        sysctl::read(&["net", "ipv6", "conf", name, "addr_gen_mode"]).is_ok_and(|mode| mode == "0");
    for attempt in 0..LINK_LOCAL_TRIES {
        let found = host
            .addresses(link.index)
            .await?
            .iter()
            .find_map(|a| is_link_local(&a.addr));
        if let Some(ll) = found {
            tracing::debug!(link = name, attempt, %ll, "found the host side's link-local address");
            return Ok(ll);
        }
        if eui64_mode && let Some(ll) = eui64_link_local(&link.mac) {
            tracing::debug!(link = name, %ll, "host side's link-local not assigned yet; using its EUI-64 address");
            return Ok(ll);
        }
        tokio::time::sleep(LINK_LOCAL_PAUSE).await;
    }
    Err(DataplaneError::Conflict(format!(
        "the host side {name} has no IPv6 link-local address after {} ms",
        u128::from(LINK_LOCAL_TRIES) * LINK_LOCAL_PAUSE.as_millis()
    )))
}

fn container_routes(plan: &VethPlan, oif: u32, ipv6_gateway: Option<Ipv6Addr>) -> Vec<RouteSpec> {
    let mut specs = Vec::new();
    if plan.has_v4() {
        specs.push(RouteSpec {
            dst: host_net(IpAddr::V4(IPV4_GATEWAY)),
            gateway: None,
            oif,
            scope_link: true,
            protocol: RouteProtocol::Boot,
        });
    }
    for dst in &plan.routes {
        let gateway = match dst {
            IpNet::V4(_) if plan.has_v4() => Some(IpAddr::V4(IPV4_GATEWAY)),
            IpNet::V6(_) => ipv6_gateway.map(IpAddr::V6),
            IpNet::V4(_) => None,
        };
        if let Some(gateway) = gateway {
            specs.push(RouteSpec {
                dst: *dst,
                gateway: Some(gateway),
                oif,
                scope_link: false,
                protocol: RouteProtocol::Boot,
            });
        }
    }
    specs
}

/// Step 4, in the container: addresses and routes.
async fn configure_container(
    plan: &VethPlan,
    ipv6_gateway: Option<Ipv6Addr>,
) -> Result<(), DataplaneError> {
    container_sysctls(plan)?;
    let nl = Netlink::connect()?;
    let link = nl.link(&plan.container_ifname).await?.ok_or_else(|| {
        DataplaneError::Conflict(format!(
            "the container interface {} disappeared during set-up",
            plan.container_ifname
        ))
    })?;
    for addr in &plan.addresses {
        let net = host_net(*addr);
        nl.add_address(link.index, *addr, net.prefix_len(), addr.is_ipv6())
            .await?;
    }
    for spec in container_routes(plan, link.index, ipv6_gateway) {
        nl.add_route(&spec).await?;
    }
    Ok(())
}

/// Step 5, on the host: a /32 (/128) per address.
async fn add_host_routes(
    plan: &VethPlan,
    host: &Netlink,
    index: u32,
) -> Result<(), DataplaneError> {
    for addr in &plan.addresses {
        let spec = RouteSpec {
            dst: host_net(*addr),
            gateway: None,
            oif: index,
            scope_link: true,
            protocol: RouteProtocol::Boot,
        };
        match host.add_route(&spec).await {
            Ok(()) => {}
            Err(e) if e.is(Errno::EEXIST) => {
                let existing = host.routes(addr.is_ipv6()).await?;
                let other = existing
                    .iter()
                    .find(|r| r.dst == spec.dst && r.oif != Some(index));
                if let Some(other) = other {
                    return Err(DataplaneError::Conflict(format!(
                        "route ({}) already exists for an interface other than '{}' (interface index {})",
                        spec.dst,
                        plan.host_name,
                        other
                            .oif
                            .map_or_else(|| "none".to_string(), |i| i.to_string())
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes the host side of a workload's veth (and with it the peer).
/// Returns whether it existed.
pub async fn delete_host_veth(host: &Netlink, name: &str) -> Result<bool, DataplaneError> {
    match host.link(name).await? {
        Some(link) => {
            host.delete_link(link.index).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Withdraws every main-table route through host link `index` except the
/// kernel's own link-local ones (so the link's addresses can be released
/// while the kernel destroys it). Returns how many routes went.
pub async fn withdraw_host_routes(host: &Netlink, index: u32) -> Result<usize, DataplaneError> {
    let mut withdrawn = 0;
    for v6 in [false, true] {
        for route in host.routes(v6).await? {
            if route.oif == Some(index) && route.gateway.is_none() && !is_link_local_net(&route.dst)
            {
                host.delete_route(route.dst, index).await?;
                withdrawn += 1;
            }
        }
    }
    Ok(withdrawn)
}

/// The single addresses routed through host link `index` (its /32 and
/// /128 routes).
pub async fn routed_addresses(host: &Netlink, index: u32) -> Result<Vec<IpAddr>, DataplaneError> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        for route in host.routes(v6).await? {
            if route.oif == Some(index) && route.dst.prefix_len() == route.dst.max_prefix_len() {
                out.push(route.dst.addr());
            }
        }
    }
    Ok(out)
}

/// The index (in its own namespace) of the peer of the veth `ifname` in
/// the container namespace at `path`; `None` when the namespace or the
/// interface is gone, or it is not a veth.
pub async fn container_peer(path: &str, ifname: &str) -> Result<Option<u32>, DataplaneError> {
    if path.is_empty() {
        return Ok(None);
    }
    let netns = match Netns::open(path) {
        Ok(ns) => ns,
        Err(NetnsError::Missing { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let ifname = ifname.to_string();
    let outcome = netns
        .run(move || async move {
            let nl = Netlink::connect()?;
            let link = nl.link(&ifname).await?;
            Ok::<_, DataplaneError>(link.filter(|l| l.is_veth).and_then(|l| l.peer_index))
        })
        .await;
    match outcome {
        Ok(inner) => inner,
        Err(NetnsError::Missing { .. } | NetnsError::NotANetns { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// fe80::/64 and the like: the kernel's own routes of a link.
fn is_link_local_net(net: &IpNet) -> bool {
    is_link_local(&net.addr()).is_some()
}

/// Deletes `ifname` in the container namespace at `path`. A namespace or
/// interface that is already gone is success.
pub async fn remove_container_interface(path: &str, ifname: &str) -> Result<(), DataplaneError> {
    if path.is_empty() {
        return Ok(());
    }
    let netns = match Netns::open(path) {
        Ok(ns) => ns,
        Err(NetnsError::Missing { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let ifname = ifname.to_string();
    let outcome = netns
        .run(move || async move {
            let nl = Netlink::connect()?;
            if let Some(link) = nl.link(&ifname).await? {
                nl.delete_link(link.index).await?;
            }
            Ok::<_, DataplaneError>(())
        })
        .await;
    match outcome {
        Ok(inner) => inner,
        Err(NetnsError::Missing { .. } | NetnsError::NotANetns { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What CHECK expects to find.
#[derive(Clone, Debug)]
pub struct CheckPlan {
    pub veth: VethPlan,
    /// The container MAC the previous result reported, if any.
    pub container_mac: Option<String>,
}

/// Compares the kernel with the plan; every mismatch is one entry.
pub async fn check(
    plan: &CheckPlan,
    netns: &Netns,
    host: &Netlink,
) -> Result<Vec<String>, DataplaneError> {
    let mut problems = Vec::new();
    let veth = &plan.veth;
    let host_link = match host.link(&veth.host_name).await? {
        None => {
            problems.push(format!("host interface {} does not exist", veth.host_name));
            None
        }
        Some(link) => {
            if !link.is_veth {
                problems.push(format!("host interface {} is not a veth", veth.host_name));
            }
            if link.mac != HOST_MAC {
                problems.push(format!(
                    "host interface {} has MAC {}, expected {}",
                    veth.host_name,
                    format_mac(&link.mac),
                    format_mac(&HOST_MAC)
                ));
            }
            if !link.up {
                problems.push(format!("host interface {} is down", veth.host_name));
            }
            Some(link)
        }
    };
    let mut ipv6_gateway = None;
    if let Some(link) = &host_link {
        for addr in &veth.addresses {
            let routes = host.routes(addr.is_ipv6()).await?;
            let dst = host_net(*addr);
            // IPv6 routes have no scope (the kernel reports universe).
            if !routes.iter().any(|r| {
                r.dst == dst && r.oif == Some(link.index) && (r.scope_link || addr.is_ipv6())
            }) {
                problems.push(format!(
                    "host route {dst} dev {} scope link is missing",
                    veth.host_name
                ));
            }
        }
        if veth.has_v6() {
            ipv6_gateway = host
                .addresses(link.index)
                .await?
                .iter()
                .find_map(|a| is_link_local(&a.addr));
            if ipv6_gateway.is_none() {
                problems.push(format!(
                    "host interface {} has no IPv6 link-local address",
                    veth.host_name
                ));
            }
        }
    }
    let container_plan = plan.clone();
    let container_problems = netns
        .run(move || async move { check_container(&container_plan, ipv6_gateway).await })
        .await??;
    problems.extend(container_problems);
    Ok(problems)
}

async fn check_container(
    plan: &CheckPlan,
    ipv6_gateway: Option<Ipv6Addr>,
) -> Result<Vec<String>, DataplaneError> {
    let veth = &plan.veth;
    let ifname = veth.container_ifname.as_str();
    let nl = Netlink::connect()?;
    let Some(link) = nl.link(ifname).await? else {
        return Ok(vec![format!("container interface {ifname} does not exist")]);
    };
    let mut problems = Vec::new();
    let mac = format_mac(&link.mac);
    if let Some(want) = &plan.container_mac
        && !want.eq_ignore_ascii_case(&mac)
    {
        problems.push(format!(
            "container interface {ifname} has MAC {mac}, expected {want}"
        ));
    }
    if !link.up {
        problems.push(format!("container interface {ifname} is down"));
    }
    if link.mtu != veth.mtu {
        problems.push(format!(
            "container interface {ifname} has MTU {}, expected {}",
            link.mtu, veth.mtu
        ));
    }
    let addresses = nl.addresses(link.index).await?;
    for addr in &veth.addresses {
        let want = host_net(*addr);
        if !addresses
            .iter()
            .any(|a| a.addr == *addr && a.prefix == want.prefix_len())
        {
            problems.push(format!("container address {want} on {ifname} is missing"));
        }
    }
    let mut routes = nl.routes(false).await?;
    routes.extend(nl.routes(true).await?);
    for spec in container_routes(veth, link.index, ipv6_gateway) {
        let present = routes.iter().any(|r| {
            r.dst == spec.dst
                && r.oif == Some(link.index)
                && r.gateway == spec.gateway
                && (!spec.scope_link || r.scope_link)
        });
        if !present {
            let via = spec
                .gateway
                .map(|g| format!(" via {g}"))
                .unwrap_or_else(|| " scope link".to_string());
            problems.push(format!(
                "container route {}{via} dev {ifname} is missing",
                spec.dst
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(addresses: &[&str], routes: &[&str]) -> VethPlan {
        VethPlan {
            host_name: "cali0".into(),
            container_ifname: "eth0".into(),
            mtu: 1500,
            addresses: addresses.iter().map(|a| a.parse().expect("ip")).collect(),
            routes: routes.iter().map(|r| r.parse().expect("net")).collect(),
            allow_ip_forwarding: false,
        }
    }

    #[test]
    fn the_link_local_constant_is_the_eui64_of_the_host_mac() {
        assert_eq!(eui64_link_local(&HOST_MAC), Some(IPV6_HOST_LINK_LOCAL));
        assert_eq!(
            IPV6_HOST_LINK_LOCAL.to_string(),
            "fe80::ecee:eeff:feee:eeee"
        );
        // The kernel's own derivation, as seen on a veth with this MAC.
        assert_eq!(
            eui64_link_local(&[0x7e, 0x7a, 0x37, 0x19, 0x16, 0x0d]).map(|a| a.to_string()),
            Some("fe80::7c7a:37ff:fe19:160d".to_string())
        );
        assert_eq!(eui64_link_local(&[1, 2, 3]), None);
    }

    #[test]
    fn container_routes_per_family() {
        let gw6: Ipv6Addr = "fe80::1".parse().expect("ip");
        let dual = plan(&["10.0.0.5", "fd00::5"], &["0.0.0.0/0", "::/0"]);
        let specs = container_routes(&dual, 4, Some(gw6));
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].dst.to_string(), "169.254.1.1/32");
        assert!(specs[0].scope_link);
        assert_eq!(specs[1].gateway, Some(IpAddr::V4(IPV4_GATEWAY)));
        assert_eq!(specs[2].gateway, Some(IpAddr::V6(gw6)));
        let v6_only = plan(&["fd00::5"], &["::/0"]);
        assert_eq!(container_routes(&v6_only, 4, Some(gw6)).len(), 1);
    }

    #[test]
    fn link_locals_are_recognised() {
        assert!(is_link_local(&"fe80::1".parse().expect("ip")).is_some());
        assert!(is_link_local(&"febf::1".parse().expect("ip")).is_some());
        assert!(is_link_local(&"fec0::1".parse().expect("ip")).is_none());
        assert!(is_link_local(&"10.0.0.1".parse().expect("ip")).is_none());
    }
}
