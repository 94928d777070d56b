//! CHECK of the main plugin: compares the previous result with the kernel
//! (container interface, addresses, routes; host veth and routes), the
//! WorkloadEndpoint and the IPAM allocation, and names every mismatch.
//!
//! Hard case: in a chain the previous result is the whole chain's, so our
//! interfaces are found by name (the container side: `CNI_IFNAME` with a
//! sandbox; the host side: the veth name we derive), and other plugins'
//! interfaces and routes are ignored.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use tortie_model::endpoint::WorkloadEndpointSpec;

use crate::context::Context;
use crate::dataplane::{self, CheckPlan, VethPlan};
use crate::endpoint;
use crate::error::CniError;
use crate::identity::Identity;
use crate::invocation::Command;
use crate::netlink::Netlink;
use crate::netns::Netns;
use crate::result::CniResult;
use crate::source::AddressSource;
use crate::store;

pub async fn check(ctx: &Context<'_>) -> Result<(), CniError> {
    ctx.require_version_for(Command::Check)?;
    let prev = ctx.prev_result()?;
    let netns = Netns::open(&ctx.inv.netns).map_err(dataplane::DataplaneError::from)?;
    let identity = ctx.identity()?;
    let host_veth = identity.host_veth_name(&ctx.interface_prefix());
    let client = store::connect(&ctx.datastore()?).await?;
    let host = Netlink::connect().map_err(dataplane::DataplaneError::from)?;

    let container = prev
        .interfaces
        .iter()
        .position(|i| i.name == ctx.inv.ifname && !i.sandbox.is_empty());
    let mut problems = Vec::new();
    if container.is_none() {
        problems.push(format!(
            "prevResult lists no container interface {}",
            ctx.inv.ifname
        ));
    }
    if !prev
        .interfaces
        .iter()
        .any(|i| i.name == host_veth && i.sandbox.is_empty())
    {
        problems.push(format!("prevResult lists no host interface {host_veth}"));
    }
    let addresses: Vec<IpAddr> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none() || ip.interface == container)
        .map(|ip| ip.address.addr())
        .collect();
    let plan = CheckPlan {
        veth: VethPlan {
            host_name: host_veth.clone(),
            container_ifname: ctx.inv.ifname.clone(),
            mtu: ctx.mtu()?,
            routes: prev
                .routes
                .iter()
                .map(|r| r.dst)
                .filter(|d| addresses.iter().any(|a| a.is_ipv4() == d.addr().is_ipv4()))
                .collect(),
            addresses: addresses.clone(),
            allow_ip_forwarding: ctx.conf.container_settings.allow_ip_forwarding,
        },
        container_mac: container
            .and_then(|i| prev.interfaces.get(i))
            .map(|i| i.mac.clone())
            .filter(|m| !m.is_empty()),
    };
    problems.extend(dataplane::check(&plan, &netns, &host).await?);
    problems.extend(check_endpoint(&client, &identity, &plan, &host_veth).await?);
    let source = AddressSource::new(&ctx.conf, &ctx.inv, &identity, &client, ctx.stdin)?;
    problems.extend(source.check(&prev_for_ipam(&prev, &addresses)).await?);
    if problems.is_empty() {
        return Ok(());
    }
    Err(CniError::internal(format!(
        "CHECK found {} problem(s): {}",
        problems.len(),
        problems.join("; ")
    ))
    .with_details(problems.join("\n")))
}

/// The previous result restricted to our container interface's addresses.
fn prev_for_ipam(prev: &CniResult, addresses: &[IpAddr]) -> CniResult {
    let mut only = prev.clone();
    only.ips.retain(|ip| addresses.contains(&ip.address.addr()));
    only
}

async fn check_endpoint(
    client: &tortie_client::Client,
    identity: &Identity,
    plan: &CheckPlan,
    host_veth: &str,
) -> Result<Vec<String>, CniError> {
    let name = identity.wep_name();
    let Some(wep) = endpoint::get(client, identity).await? else {
        return Ok(vec![format!(
            "WorkloadEndpoint {}/{name} does not exist",
            identity.namespace()
        )]);
    };
    let Some(spec) = wep.spec::<WorkloadEndpointSpec>() else {
        return Ok(vec![format!("{name} is not a WorkloadEndpoint")]);
    };
    let mut problems = Vec::new();
    let mut differs = |field: &str, have: &str, want: &str| {
        if have != want {
            problems.push(format!(
                "WorkloadEndpoint {name} has {field} {have:?}, expected {want:?}"
            ));
        }
    };
    differs("containerID", &spec.container_id, &identity.container_id);
    differs("interfaceName", &spec.interface_name, host_veth);
    differs("node", &spec.node, &identity.node);
    differs("endpoint", &spec.endpoint, &identity.ifname);
    if let Some(mac) = &plan.container_mac {
        differs(
            "mac",
            &spec.mac.to_ascii_lowercase(),
            &mac.to_ascii_lowercase(),
        );
    }
    let have: BTreeSet<String> = spec.ip_networks.iter().cloned().collect();
    let want: BTreeSet<String> = plan
        .veth
        .addresses
        .iter()
        .map(|a| IpNet::from(*a).to_string())
        .collect();
    if have != want {
        problems.push(format!(
            "WorkloadEndpoint {name} has ipNetworks {have:?}, expected {want:?}"
        ));
    }
    Ok(problems)
}
