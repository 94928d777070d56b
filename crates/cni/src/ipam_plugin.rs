//! The IPAM plugin (`tortie-ipam`, alias `calico-ipam`; cni.md §5) for
//! ADD, DEL and CHECK. GC and STATUS are in `crate::maintenance`.
//!
//! DESIGN DECISION (gateways): Calico's IPAM result has no gateway, but
//! interface plugins such as the reference `ptp` require one. tortie-ipam
//! returns `169.254.1.1` for IPv4 and `fe80::ecee:eeff:feee:eeee` for IPv6
//! as every address's gateway: addresses no pool ever hands out, which
//! `ptp` puts on each host-side veth — the same next-hop trick Calico plays
//! with proxy ARP. Routes come only from `ipam.routes` (none by default);
//! addresses carry their block's prefix length, IPv4 first.

use std::net::IpAddr;

use ipnet::IpNet;
use tortie_ipam::Ipam;

use crate::allocation;
use crate::context::Context;
use crate::dataplane::{IPV4_GATEWAY, IPV6_HOST_LINK_LOCAL};
use crate::error::CniError;
use crate::invocation::Command;
use crate::result::{CniResult, IpConfig, Route};
use crate::source::assign_request;
use crate::store;

/// The gateway tortie-ipam reports for an address.
pub fn gateway_for(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => IpAddr::V4(IPV4_GATEWAY),
        IpAddr::V6(_) => IpAddr::V6(IPV6_HOST_LINK_LOCAL),
    }
}

/// `ipam.routes`, parsed.
fn configured_routes(ctx: &Context<'_>) -> Result<Vec<Route>, CniError> {
    ctx.conf
        .ipam
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let dst = r.dst.parse::<IpNet>().map_err(|_| {
                CniError::invalid_config(format!("ipam.routes[{i}].dst {:?} is not a CIDR", r.dst))
            })?;
            let gw = match r.gw.as_deref().filter(|g| !g.is_empty()) {
                None => None,
                Some(g) => Some(g.parse::<IpAddr>().map_err(|_| {
                    CniError::invalid_config(format!(
                        "ipam.routes[{i}].gw {g:?} is not an IP address"
                    ))
                })?),
            };
            Ok(Route::new(dst, gw))
        })
        .collect()
}

pub async fn add(ctx: &Context<'_>) -> Result<CniResult, CniError> {
    let routes = configured_routes(ctx)?;
    let identity = ctx.identity()?;
    let request = assign_request(&ctx.conf, &ctx.inv, &identity)?;
    let client = store::open_ready(&ctx.datastore()?).await?;
    let ipam = Ipam::new(client);
    let ips = allocation::assign(&ipam, &ctx.conf.ipam_lock_file(), &request).await?;
    Ok(CniResult {
        interfaces: Vec::new(),
        ips: ips
            .iter()
            .map(|net| IpConfig {
                interface: None,
                address: *net,
                gateway: Some(gateway_for(net.addr())),
            })
            .collect(),
        routes,
        dns: ctx.conf.dns.clone().unwrap_or_default(),
    })
}

pub async fn del(ctx: &Context<'_>) -> Result<(), CniError> {
    let identity = ctx.identity()?;
    let client = store::open_ready(&ctx.datastore()?).await?;
    let ipam = Ipam::new(client);
    allocation::release(
        &ipam,
        &ctx.conf.ipam_lock_file(),
        &[identity.handle(), identity.legacy_handle()],
    )
    .await
}

pub async fn check(ctx: &Context<'_>) -> Result<(), CniError> {
    ctx.require_version_for(Command::Check)?;
    let prev = ctx.prev_result()?;
    let identity = ctx.identity()?;
    let client = store::connect(&ctx.datastore()?).await?;
    let ipam = Ipam::new(client);
    let problems = allocation::verify(&ipam, &identity.handle(), &prev.addresses()).await?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::internal(format!(
            "CHECK found {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn gateways_are_never_pool_addresses() {
        assert_eq!(
            gateway_for("10.0.0.5".parse().expect("ip")),
            IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1))
        );
        assert_eq!(
            gateway_for("fd00::5".parse().expect("ip")).to_string(),
            "fe80::ecee:eeff:feee:eeee"
        );
    }
}
