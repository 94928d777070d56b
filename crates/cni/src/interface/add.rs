//! ADD of the main plugin (cni.md §4): addresses from IPAM, the veth and
//! routes (dataplane.md §1), the network's Profile (plain CNI), the
//! WorkloadEndpoint, and the result.
//!
//! Order: IPAM assignment and the creation of the veth pair run at the
//! same time (neither needs the other); then addresses, routes and
//! sysctls; then the Profile and the endpoint.
//!
//! Rollback: every step that succeeded is undone, in reverse order, when a
//! later one (or its concurrent sibling) fails — the veth is deleted
//! (taking its routes), the addresses are released — so a failed ADD
//! leaves no link, route, allocation or endpoint behind. The endpoint is
//! written last, so it never needs undoing.
//!
//! Hard cases: a plain-CNI container whose endpoint and host veth already
//! exist gets a result built from its endpoint, with no new networking
//! (cni.md §4.3); a repeated ADD for a pod recreates the veth and updates
//! the endpoint (cni.md §7), reusing the addresses its handle holds.

use std::net::IpAddr;

use ipnet::IpNet;
use tortie_client::Client;
use tortie_model::Resource;
use tortie_model::endpoint::WorkloadEndpointSpec;

use crate::config::NetConf;
use crate::context::Context;
use crate::dataplane::{self, HOST_MAC, IPV4_GATEWAY, IPV6_HOST_LINK_LOCAL, VethOutcome, VethPlan};
use crate::endpoint::{self, EndpointFacts};
use crate::error::CniError;
use crate::identity::Identity;
use crate::netlink::{Netlink, format_mac};
use crate::netns::Netns;
use crate::result::{CniResult, Interface, IpConfig, Route};
use crate::source::{AddressSource, Addresses};
use crate::store;

/// Something to undo if a later step fails.
enum Undo {
    ReleaseAddresses,
    DeleteHostVeth(String),
}

#[derive(Default)]
struct Rollback(Vec<Undo>);

impl Rollback {
    fn push(&mut self, undo: Undo) {
        self.0.push(undo);
    }

    async fn unwind(self, source: &AddressSource, host: &Netlink) {
        for undo in self.0.into_iter().rev() {
            match undo {
                Undo::DeleteHostVeth(name) => {
                    if let Err(e) = dataplane::delete_host_veth(host, &name).await {
                        tracing::error!(link = name, error = %e, "rollback: could not delete the host veth");
                    }
                }
                Undo::ReleaseAddresses => {
                    if let Err(e) = source.del().await {
                        tracing::error!(error = %e, "rollback: could not release the addresses; `tortie ipam check` will report them");
                    }
                }
            }
        }
    }
}

/// The container's routed destinations: IPAM's routes if it gave any
/// (plus the defaults with `include_default_routes`), else a default route
/// per family present.
pub fn container_destinations(
    conf: &NetConf,
    addresses: &[IpAddr],
    ipam_routes: &[Route],
) -> Vec<IpNet> {
    let has = |v4: bool| addresses.iter().any(|a| a.is_ipv4() == v4);
    let defaults: Vec<IpNet> = [(true, "0.0.0.0/0"), (false, "::/0")]
        .into_iter()
        .filter(|(v4, _)| has(*v4))
        .filter_map(|(_, d)| d.parse().ok())
        .collect();
    let mut custom: Vec<IpNet> = ipam_routes
        .iter()
        .map(|r| r.dst)
        .filter(|d| has(d.addr().is_ipv4()))
        .collect();
    if custom.is_empty() {
        return defaults;
    }
    if conf.include_default_routes {
        for d in defaults {
            if !custom.contains(&d) {
                custom.push(d);
            }
        }
    }
    custom
}

fn gateway_for(dst: &IpNet, ipv6_gateway: Option<std::net::Ipv6Addr>) -> Option<IpAddr> {
    match dst {
        IpNet::V4(_) => Some(IpAddr::V4(IPV4_GATEWAY)),
        IpNet::V6(_) => ipv6_gateway.map(IpAddr::V6),
    }
}

/// The ADD result: host and container interfaces, /32 and /128
/// addresses on the container interface, gateways cleared.
fn build_result(
    plan: &VethPlan,
    sandbox: &str,
    outcome: &VethOutcome,
    dns: crate::config::Dns,
) -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: plan.host_name.clone(),
                mac: format_mac(&HOST_MAC),
                ..Interface::default()
            },
            Interface {
                name: plan.container_ifname.clone(),
                mac: outcome.container_mac.clone(),
                mtu: Some(plan.mtu),
                sandbox: sandbox.to_string(),
                ..Interface::default()
            },
        ],
        ips: plan
            .addresses
            .iter()
            .map(|a| IpConfig {
                interface: Some(1),
                address: IpNet::from(*a),
                gateway: None,
            })
            .collect(),
        routes: plan
            .routes
            .iter()
            .map(|d| Route::new(*d, gateway_for(d, outcome.ipv6_gateway)))
            .collect(),
        dns,
    }
}

pub async fn add(ctx: &Context<'_>) -> Result<CniResult, CniError> {
    ctx.conf.check_device_type()?;
    let netns = Netns::open(&ctx.inv.netns).map_err(dataplane::DataplaneError::from)?;
    let mtu = ctx.mtu()?;
    let identity = ctx.identity()?;
    let client = store::open_ready(&ctx.datastore()?).await?;
    let host_veth = identity.host_veth_name(&ctx.interface_prefix());
    let host_ns = Netns::current().map_err(dataplane::DataplaneError::from)?;
    let host = Netlink::connect().map_err(dataplane::DataplaneError::from)?;
    let wants_profile = !identity.is_k8s() && ctx.conf.policy.policy_type.is_empty();

    if !identity.is_k8s()
        && let Some(existing) = endpoint::get(&client, &identity).await?
        && host
            .link(&host_veth)
            .await
            .map_err(dataplane::DataplaneError::from)?
            .is_some()
    {
        tracing::info!(
            endpoint = existing.metadata.name,
            "the container already has an endpoint; returning it"
        );
        if wants_profile {
            endpoint::ensure_profile(&client, &identity.network).await?;
        }
        let current = endpoint::add_profile(&client, &identity)
            .await?
            .unwrap_or(existing);
        return result_from_endpoint(ctx, &current, mtu);
    }

    let source = AddressSource::new(&ctx.conf, &ctx.inv, &identity, &client, ctx.stdin)?;
    let mut rollback = Rollback::default();
    let steps = Steps {
        ctx,
        identity: &identity,
        client: &client,
        source: &source,
        host: &host,
        host_ns: &host_ns,
        netns: &netns,
        host_veth: &host_veth,
        mtu,
        wants_profile,
    };
    let outcome = steps.run(&mut rollback).await;
    if let Err(e) = &outcome {
        tracing::warn!(error = %e, "ADD failed; undoing what was done");
        rollback.unwind(&source, &host).await;
    }
    outcome
}

struct Steps<'a> {
    ctx: &'a Context<'a>,
    identity: &'a Identity,
    client: &'a Client,
    source: &'a AddressSource,
    host: &'a Netlink,
    host_ns: &'a Netns,
    netns: &'a Netns,
    host_veth: &'a str,
    mtu: u32,
    wants_profile: bool,
}

impl Steps<'_> {
    async fn run(&self, rollback: &mut Rollback) -> Result<CniResult, CniError> {
        // IPAM and the veth pair do not depend on each other: run both.
        let ifname = &self.ctx.inv.ifname;
        let (assigned, pair) = tokio::join!(
            self.source.add(),
            dataplane::create_pair(
                self.host_veth,
                ifname,
                self.mtu,
                self.netns,
                self.host,
                self.host_ns
            ),
        );
        if assigned.is_ok() {
            rollback.push(Undo::ReleaseAddresses);
        }
        if pair.is_ok() {
            rollback.push(Undo::DeleteHostVeth(self.host_veth.to_string()));
        }
        let assigned: Addresses = assigned?;
        let container_mac = pair?;
        let addresses: Vec<IpAddr> = assigned.ips.iter().map(IpNet::addr).collect();
        let plan = VethPlan {
            host_name: self.host_veth.to_string(),
            container_ifname: ifname.clone(),
            mtu: self.mtu,
            routes: container_destinations(&self.ctx.conf, &addresses, &assigned.routes),
            addresses,
            allow_ip_forwarding: self.ctx.conf.container_settings.allow_ip_forwarding,
        };
        let ipv6_gateway = dataplane::configure(&plan, self.netns, self.host).await?;
        let outcome = VethOutcome {
            container_mac,
            ipv6_gateway,
        };
        if self.wants_profile {
            endpoint::ensure_profile(self.client, &self.identity.network).await?;
        }
        let labels = self.ctx.conf.labels();
        let wep = endpoint::build(&EndpointFacts {
            identity: self.identity,
            user_labels: &labels,
            addresses: &plan.addresses,
            host_veth: &plan.host_name,
            container_mac: &outcome.container_mac,
        });
        let stored = endpoint::write(self.client, &wep).await?;
        tracing::info!(
            endpoint = stored.metadata.name,
            namespace = stored.metadata.namespace,
            ips = ?plan.addresses,
            "workload networked"
        );
        let dns = self
            .ctx
            .conf
            .dns
            .clone()
            .or(assigned.dns)
            .unwrap_or_default();
        Ok(build_result(&plan, self.netns.path(), &outcome, dns))
    }
}

/// The result for a container whose endpoint already exists.
fn result_from_endpoint(
    ctx: &Context<'_>,
    wep: &Resource,
    mtu: u32,
) -> Result<CniResult, CniError> {
    let spec = wep
        .spec::<WorkloadEndpointSpec>()
        .ok_or_else(|| CniError::internal("the stored endpoint is not a WorkloadEndpoint"))?;
    let addresses: Vec<IpAddr> = spec
        .ip_networks
        .iter()
        .filter_map(|n| n.parse::<IpNet>().ok())
        .map(|n| n.addr())
        .collect();
    let plan = VethPlan {
        host_name: spec.interface_name.clone(),
        container_ifname: ctx.inv.ifname.clone(),
        mtu,
        routes: container_destinations(&ctx.conf, &addresses, &[]),
        addresses,
        allow_ip_forwarding: ctx.conf.container_settings.allow_ip_forwarding,
    };
    let outcome = VethOutcome {
        container_mac: spec.mac.clone(),
        ipv6_gateway: Some(IPV6_HOST_LINK_LOCAL),
    };
    Ok(build_result(
        &plan,
        &ctx.inv.netns,
        &outcome,
        ctx.conf.dns.clone().unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().expect("ip")).collect()
    }

    fn conf(json: &str) -> NetConf {
        NetConf::parse(json.as_bytes()).expect("config")
    }

    #[test]
    fn default_routes_follow_the_families() {
        let c = conf(r#"{"name": "n"}"#);
        let both = container_destinations(&c, &ips(&["10.0.0.1", "fd00::1"]), &[]);
        assert_eq!(
            both,
            vec![
                "0.0.0.0/0".parse::<IpNet>().expect("net"),
                "::/0".parse().expect("net")
            ]
        );
        let v6 = container_destinations(&c, &ips(&["fd00::1"]), &[]);
        assert_eq!(v6, vec!["::/0".parse::<IpNet>().expect("net")]);
    }

    #[test]
    fn ipam_routes_replace_defaults_unless_asked() {
        let routes = vec![Route::new("10.96.0.0/12".parse().expect("net"), None)];
        let only = container_destinations(&conf(r#"{"name": "n"}"#), &ips(&["10.0.0.1"]), &routes);
        assert_eq!(only, vec!["10.96.0.0/12".parse::<IpNet>().expect("net")]);
        let with = container_destinations(
            &conf(r#"{"name": "n", "include_default_routes": true}"#),
            &ips(&["10.0.0.1"]),
            &routes,
        );
        assert_eq!(with.len(), 2);
    }
}
