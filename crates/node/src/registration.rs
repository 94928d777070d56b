//! The node's own Node resource: created at start with the node's
//! addresses (IPv4, and IPv6 when given), updated (never replaced)
//! afterwards, so fields other components own — labels, BGP AS,
//! route-reflector settings — survive a restart. The tunnel addresses are
//! allocated from IPAM out of the enabled pools of their family that use
//! that encapsulation and select the node, and recorded on the Node; one
//! no such pool covers any more is released and cleared. The daemon runs
//! this at start and whenever a pool changes:
//!
//! | tunnel | IPAM handle | Node field |
//! | --- | --- | --- |
//! | VXLAN (IPv4) | `vxlan-tunnel-addr-<node>` | `spec.ipv4VXLANTunnelAddr` |
//! | VXLAN (IPv6) | `vxlan-v6-tunnel-addr-<node>` | `spec.ipv6VXLANTunnelAddr` |
//! | IPIP | `ipip-tunnel-addr-<node>` | `spec.bgp.ipv4IPIPTunnelAddr` |
//!
//! Hard case: an IPv6 VXLAN pool on a node registered without an IPv6
//! address. Its peers could not reach its VTEP, so it gets no IPv6 tunnel
//! address (and one it held is released).

use anyhow::{Context, Result};
use ipnet::IpNet;
use tortie_client::{Client, ClientError};
use tortie_ipam::tunnel::TunnelKind;
use tortie_ipam::{IpVersion, Ipam};
use tortie_model::ippool::{EncapMode, IPPoolSpec};
use tortie_model::node::{NodeAddress, NodeBGPSpec, NodeSpec};
use tortie_model::{Kind, ObjectMeta, Resource};

/// The addresses a node registers: IPv4 always, IPv6 when it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAddresses {
    pub v4: IpNet,
    pub v6: Option<IpNet>,
}

const NODE_IP: &str = "CalicoNodeIP";

fn set_addresses(spec: &mut NodeSpec, ips: &NodeAddresses) {
    let bgp = spec.bgp.get_or_insert_with(NodeBGPSpec::default);
    bgp.ipv4_address = ips.v4.to_string();
    bgp.ipv6_address = ips.v6.map(|ip| ip.to_string()).unwrap_or_default();
    spec.addresses.retain(|a| a.address_type != NODE_IP);
    let ours = [Some(ips.v4), ips.v6].into_iter().flatten();
    for (i, ip) in ours.enumerate() {
        spec.addresses.insert(
            i,
            NodeAddress {
                address: ip.addr().to_string(),
                address_type: NODE_IP.into(),
            },
        );
    }
}

/// Creates or updates the Node resource with the node's addresses (an
/// IPv6 address registered before and not given now is cleared).
pub async fn register(client: &Client, name: &str, ips: &NodeAddresses) -> Result<()> {
    match client.get(Kind::Node, "", name).await {
        Err(ClientError::NotFound { .. }) => {
            let mut spec = NodeSpec::default();
            set_addresses(&mut spec, ips);
            match client
                .create(Resource::new(ObjectMeta::named(name), spec))
                .await
            {
                Ok(_) | Err(ClientError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e).context("creating the Node resource"),
            }
        }
        Err(e) => return Err(e).context("reading the Node resource"),
        Ok(_) => {}
    }
    client
        .modify(Kind::Node, "", name, |mut r| {
            if let Some(spec) = r.spec_mut::<NodeSpec>() {
                set_addresses(spec, ips);
            }
            Ok(r)
        })
        .await
        .context("updating the Node resource")?;
    Ok(())
}

/// The IPv4 and IPv6 addresses the Node resource has (`spec.bgp`), when
/// it exists and they parse.
pub async fn registered_addresses(client: &Client, name: &str) -> Result<[Option<IpNet>; 2]> {
    let node = match client.get(Kind::Node, "", name).await {
        Ok(node) => node,
        Err(ClientError::NotFound { .. }) => return Ok([None, None]),
        Err(e) => return Err(e).context("reading the Node resource"),
    };
    let bgp = node.spec::<NodeSpec>().and_then(|s| s.bgp.as_ref());
    let parse = |text: Option<&String>| text.and_then(|t| t.parse::<IpNet>().ok());
    Ok([
        parse(bgp.map(|b| &b.ipv4_address)),
        parse(bgp.map(|b| &b.ipv6_address)),
    ])
}

/// The tunnels whose node address comes from IPAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// `vxlan.calico`.
    Vxlan,
    /// `vxlan-v6.calico`.
    VxlanV6,
    /// `tunl0`.
    Ipip,
}

impl Tunnel {
    fn kind(self) -> TunnelKind {
        match self {
            Tunnel::Vxlan | Tunnel::VxlanV6 => TunnelKind::Vxlan,
            Tunnel::Ipip => TunnelKind::Ipip,
        }
    }

    fn version(self) -> IpVersion {
        match self {
            Tunnel::VxlanV6 => IpVersion::V6,
            Tunnel::Vxlan | Tunnel::Ipip => IpVersion::V4,
        }
    }

    /// Whether `pool` (enabled, of this tunnel's family) encapsulates with
    /// this tunnel.
    fn used_by(self, pool: &IPPoolSpec) -> bool {
        let mode = match self {
            Tunnel::Vxlan | Tunnel::VxlanV6 => pool.vxlan_mode,
            Tunnel::Ipip => pool.ipip_mode,
        };
        let family = pool
            .cidr
            .parse::<IpNet>()
            .ok()
            .map(|c| IpVersion::of_net(&c));
        !pool.disabled
            && family == Some(self.version())
            && mode.is_some_and(|m| m != EncapMode::Never)
    }

    /// Whether the node can be an endpoint of this tunnel: an IPv6 tunnel
    /// needs the node's IPv6 address.
    fn possible_on(self, spec: &NodeSpec) -> bool {
        match self.version() {
            IpVersion::V4 => true,
            IpVersion::V6 => spec
                .bgp
                .as_ref()
                .is_some_and(|b| !b.ipv6_address.is_empty()),
        }
    }

    fn record(self, spec: &mut NodeSpec, address: String) {
        match self {
            Tunnel::Vxlan => spec.ipv4_vxlan_tunnel_addr = address,
            Tunnel::VxlanV6 => spec.ipv6_vxlan_tunnel_addr = address,
            Tunnel::Ipip => {
                if address.is_empty() && spec.bgp.is_none() {
                    return;
                }
                spec.bgp
                    .get_or_insert_with(NodeBGPSpec::default)
                    .ipv4_ipip_tunnel_addr = address;
            }
        }
    }
}

impl std::fmt::Display for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tunnel::Vxlan => "VXLAN",
            Tunnel::VxlanV6 => "IPv6 VXLAN",
            Tunnel::Ipip => "IPIP",
        })
    }
}

/// The node's tunnel addresses, as [`ensure_tunnel_addresses`] left them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelAddresses {
    pub vxlan: Option<IpNet>,
    pub vxlan_v6: Option<IpNet>,
    pub ipip: Option<IpNet>,
    /// The datastore revision of the pool list they were chosen from: a
    /// pool event at or below it is already accounted for.
    pub pools_revision: tortie_datastore::Revision,
}

impl TunnelAddresses {
    pub fn get(&self, tunnel: Tunnel) -> Option<IpNet> {
        match tunnel {
            Tunnel::Vxlan => self.vxlan,
            Tunnel::VxlanV6 => self.vxlan_v6,
            Tunnel::Ipip => self.ipip,
        }
    }

    fn set(&mut self, tunnel: Tunnel, address: Option<IpNet>) {
        match tunnel {
            Tunnel::Vxlan => self.vxlan = address,
            Tunnel::VxlanV6 => self.vxlan_v6 = address,
            Tunnel::Ipip => self.ipip = address,
        }
    }
}

/// Ensures each tunnel's address and records them on the Node, in one
/// pass: one pool list, one Node read, one Node update. A tunnel gets an
/// address from the enabled pools of its family that use it and select
/// the node (as Calico allocates them); a tunnel no such pool uses, or
/// the node cannot be an endpoint of, has its address released and
/// cleared.
pub async fn ensure_tunnel_addresses(client: &Client, name: &str) -> Result<TunnelAddresses> {
    let pools = client
        .list(Kind::IPPool, None)
        .await
        .context("listing IP pools")?;
    let node = client
        .get(Kind::Node, "", name)
        .await
        .context("reading the Node resource")?;
    let ipam = Ipam::new(client.clone());
    let mut addresses = TunnelAddresses {
        pools_revision: pools.revision,
        ..TunnelAddresses::default()
    };
    for tunnel in [Tunnel::Vxlan, Tunnel::VxlanV6, Tunnel::Ipip] {
        let using: Vec<String> = pools
            .items
            .iter()
            .filter(|r| r.spec::<IPPoolSpec>().is_some_and(|p| tunnel.used_by(p)))
            .map(|r| r.metadata.name.clone())
            .collect();
        let possible = node
            .spec::<NodeSpec>()
            .is_some_and(|s| tunnel.possible_on(s));
        let address = if possible && !using.is_empty() {
            ipam.ensure_tunnel_address(name, tunnel.kind(), tunnel.version(), &using)
                .await
                .with_context(|| format!("allocating the {tunnel} tunnel address"))?
        } else {
            None
        };
        addresses.set(tunnel, address);
    }
    let text = |a: Option<IpNet>| a.map(|a| a.addr().to_string()).unwrap_or_default();
    client
        .modify(Kind::Node, "", name, |mut r| {
            if let Some(spec) = r.spec_mut::<NodeSpec>() {
                for tunnel in [Tunnel::Vxlan, Tunnel::VxlanV6, Tunnel::Ipip] {
                    tunnel.record(spec, text(addresses.get(tunnel)));
                }
            }
            Ok(r)
        })
        .await
        .context("recording the tunnel addresses")?;
    // Released only once the Node no longer names them, so a failed
    // update never leaves it pointing at a free address.
    for tunnel in [Tunnel::Vxlan, Tunnel::VxlanV6, Tunnel::Ipip] {
        if addresses.get(tunnel).is_none() {
            ipam.release_tunnel_address(name, tunnel.kind(), tunnel.version())
                .await
                .with_context(|| format!("releasing the {tunnel} tunnel address"))?;
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tortie_datastore::embedded::{EmbeddedDatastore, EmbeddedOptions};
    use tortie_model::decode_documents;

    async fn client(dir: &std::path::Path) -> Client {
        let ds = EmbeddedDatastore::open(dir.join("ds.db"), EmbeddedOptions::default())
            .await
            .expect("open datastore");
        let client = Client::new(Arc::new(ds));
        client.ensure_initialized().await.expect("initialise");
        client
    }

    fn pool(vxlan: &str, ipip: &str) -> Resource {
        pool_named(
            "p",
            "10.244.0.0/16",
            &format!("vxlanMode: {vxlan}, ipipMode: {ipip}"),
        )
    }

    fn pool_named(name: &str, cidr: &str, fields: &str) -> Resource {
        let yaml = format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {{cidr: {cidr}, {fields}}}\n"
        );
        let mut r = decode_documents(&yaml, "test")
            .expect("decodes")
            .remove(0)
            .resource;
        r.apply_defaults();
        r
    }

    fn v4_only(ip: &str) -> NodeAddresses {
        NodeAddresses {
            v4: ip.parse().expect("net"),
            v6: None,
        }
    }

    async fn tunnels(client: &Client) -> TunnelAddresses {
        ensure_tunnel_addresses(client, "n1")
            .await
            .expect("tunnel addresses")
    }

    async fn node_spec(client: &Client) -> NodeSpec {
        let node = client.get(Kind::Node, "", "n1").await.expect("node");
        node.spec::<NodeSpec>().expect("node spec").clone()
    }

    #[tokio::test]
    async fn each_tunnel_gets_an_address_only_while_a_pool_uses_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = client(dir.path()).await;
        register(&client, "n1", &v4_only("172.30.0.11/24"))
            .await
            .expect("register");
        client.create(pool("Never", "Always")).await.expect("pool");

        let ipip = tunnels(&client)
            .await
            .get(Tunnel::Ipip)
            .expect("an IPIP pool exists");
        assert!(
            "10.244.0.0/16"
                .parse::<IpNet>()
                .expect("net")
                .contains(&ipip.addr())
        );
        let vxlan = tunnels(&client).await.get(Tunnel::Vxlan);
        assert_eq!(vxlan, None, "no pool uses VXLAN");
        let spec = node_spec(&client).await;
        let bgp = spec.bgp.as_ref().expect("bgp");
        assert_eq!(bgp.ipv4_ipip_tunnel_addr, ipip.addr().to_string());
        assert_eq!(bgp.ipv4_address, "172.30.0.11/24", "registration kept");
        assert!(spec.ipv4_vxlan_tunnel_addr.is_empty());
        // A restart keeps the same address.
        let again = tunnels(&client).await.get(Tunnel::Ipip);
        assert_eq!(again, Some(ipip));

        // The pool moves to VXLAN: IPIP's address is dropped from the Node.
        client
            .modify(Kind::IPPool, "", "p", |mut r| {
                if let Some(p) = r.spec_mut::<IPPoolSpec>() {
                    p.ipip_mode = Some(EncapMode::Never);
                    p.vxlan_mode = Some(EncapMode::Always);
                }
                Ok(r)
            })
            .await
            .expect("modify pool");
        let ipip = tunnels(&client).await.get(Tunnel::Ipip);
        assert_eq!(ipip, None);
        let vxlan = tunnels(&client)
            .await
            .get(Tunnel::Vxlan)
            .expect("a VXLAN pool exists");
        let spec = node_spec(&client).await;
        assert!(spec.bgp.expect("bgp").ipv4_ipip_tunnel_addr.is_empty());
        assert_eq!(spec.ipv4_vxlan_tunnel_addr, vxlan.addr().to_string());
    }

    #[tokio::test]
    async fn the_ipv6_vxlan_address_needs_an_ipv6_pool_and_node_address() {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = client(dir.path()).await;
        let dual = NodeAddresses {
            v4: "172.30.0.11/24".parse().expect("net"),
            v6: Some("fd30::11/64".parse().expect("net")),
        };
        assert_eq!(
            registered_addresses(&client, "n1").await.expect("read"),
            [None, None],
            "no Node yet"
        );
        register(&client, "n1", &dual).await.expect("register");
        assert_eq!(
            registered_addresses(&client, "n1").await.expect("read"),
            [Some(dual.v4), dual.v6]
        );
        let spec = node_spec(&client).await;
        let bgp = spec.bgp.as_ref().expect("bgp");
        assert_eq!(bgp.ipv6_address, "fd30::11/64");
        let listed: Vec<&str> = spec.addresses.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(listed, ["172.30.0.11", "fd30::11"]);

        // Only an IPv6 pool uses VXLAN: IPv6 gets a tunnel address, IPv4 not.
        client
            .create(pool_named(
                "p6",
                "fd00:10:244::/48",
                "vxlanMode: Always, blockSize: 122",
            ))
            .await
            .expect("pool");
        let v4 = tunnels(&client).await.get(Tunnel::Vxlan);
        assert_eq!(v4, None, "no IPv4 pool uses VXLAN");
        let v6 = tunnels(&client)
            .await
            .get(Tunnel::VxlanV6)
            .expect("an IPv6 VXLAN pool exists");
        assert!(
            "fd00:10:244::/48"
                .parse::<IpNet>()
                .expect("net")
                .contains(&v6.addr())
        );
        let spec = node_spec(&client).await;
        assert_eq!(spec.ipv6_vxlan_tunnel_addr, v6.addr().to_string());
        assert!(spec.ipv4_vxlan_tunnel_addr.is_empty());

        // Registered again without IPv6: the address and the tunnel go.
        register(&client, "n1", &v4_only("172.30.0.11/24"))
            .await
            .expect("register");
        let gone = tunnels(&client).await.get(Tunnel::VxlanV6);
        assert_eq!(gone, None);
        let spec = node_spec(&client).await;
        assert!(spec.bgp.expect("bgp").ipv6_address.is_empty());
        assert!(spec.ipv6_vxlan_tunnel_addr.is_empty());
        let held = Ipam::new(client.clone())
            .ips_by_handle(&TunnelKind::Vxlan.handle(IpVersion::V6, "n1"))
            .await;
        match held {
            Ok(ips) => assert!(ips.is_empty(), "still held: {ips:?}"),
            Err(tortie_ipam::IpamError::HandleNotFound { .. }) => {}
            Err(e) => panic!("reading the handle: {e}"),
        }
    }

    #[tokio::test]
    async fn each_tunnel_takes_its_address_from_a_pool_using_it_that_selects_the_node() {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = client(dir.path()).await;
        register(&client, "n1", &v4_only("172.30.0.11/24"))
            .await
            .expect("register");
        for (name, cidr, fields) in [
            ("ipip", "10.10.0.0/16", "ipipMode: Always, vxlanMode: Never"),
            (
                "vxlan-elsewhere",
                "10.20.0.0/16",
                "vxlanMode: Always, nodeSelector: zone == 'b'",
            ),
            ("vxlan", "10.30.0.0/16", "vxlanMode: Always"),
        ] {
            client
                .create(pool_named(name, cidr, fields))
                .await
                .expect("pool");
        }
        let got = tunnels(&client).await;
        let inside = |cidr: &str, ip: Option<IpNet>| {
            let ip = ip.expect("an address");
            cidr.parse::<IpNet>().expect("net").contains(&ip.addr())
        };
        assert!(inside("10.10.0.0/16", got.ipip), "{got:?}");
        assert!(inside("10.30.0.0/16", got.vxlan), "{got:?}");
        let spec = node_spec(&client).await;
        assert_eq!(
            spec.ipv4_vxlan_tunnel_addr,
            got.vxlan.expect("vxlan").addr().to_string()
        );
        assert_eq!(
            spec.bgp.expect("bgp").ipv4_ipip_tunnel_addr,
            got.ipip.expect("ipip").addr().to_string()
        );
    }
}
