//! The node's own Node resource: created at start with the node's address,
//! updated (never replaced) afterwards, so fields other components own —
//! labels, BGP AS, route-reflector settings — survive a restart. The VXLAN
//! and IPIP tunnel addresses are allocated from IPAM (handles
//! `vxlan-tunnel-addr-<node>`, `ipip-tunnel-addr-<node>`) while a pool
//! uses that encapsulation, and recorded in `spec.ipv4VXLANTunnelAddr` and
//! `spec.bgp.ipv4IPIPTunnelAddr`.

use anyhow::{Context, Result};
use ipnet::IpNet;
use tortie_client::{Client, ClientError};
use tortie_ipam::tunnel::TunnelKind;
use tortie_ipam::{IpVersion, Ipam};
use tortie_model::ippool::{EncapMode, IPPoolSpec};
use tortie_model::node::{NodeAddress, NodeBGPSpec, NodeSpec};
use tortie_model::{Kind, ObjectMeta, Resource};

fn set_address(spec: &mut NodeSpec, ip: &IpNet) {
    let bgp = spec.bgp.get_or_insert_with(NodeBGPSpec::default);
    bgp.ipv4_address = ip.to_string();
    let addr = ip.addr().to_string();
    spec.addresses.retain(|a| a.address_type != "CalicoNodeIP");
    spec.addresses.insert(
        0,
        NodeAddress {
            address: addr,
            address_type: "CalicoNodeIP".into(),
        },
    );
}

/// Creates or updates the Node resource with the node's address.
pub async fn register(client: &Client, name: &str, ip: &IpNet) -> Result<()> {
    match client.get(Kind::Node, "", name).await {
        Err(ClientError::NotFound { .. }) => {
            let mut spec = NodeSpec::default();
            set_address(&mut spec, ip);
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
                set_address(spec, ip);
            }
            Ok(r)
        })
        .await
        .context("updating the Node resource")?;
    Ok(())
}

/// The tunnels whose node address comes from IPAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// `vxlan.calico`: handle `vxlan-tunnel-addr-<node>`,
    /// `spec.ipv4VXLANTunnelAddr`.
    Vxlan,
    /// `tunl0`: handle `ipip-tunnel-addr-<node>`,
    /// `spec.bgp.ipv4IPIPTunnelAddr`.
    Ipip,
}

impl Tunnel {
    fn kind(self) -> TunnelKind {
        match self {
            Tunnel::Vxlan => TunnelKind::Vxlan,
            Tunnel::Ipip => TunnelKind::Ipip,
        }
    }

    /// Whether `pool` encapsulates with this tunnel.
    fn used_by(self, pool: &IPPoolSpec) -> bool {
        let mode = match self {
            Tunnel::Vxlan => pool.vxlan_mode,
            Tunnel::Ipip => pool.ipip_mode,
        };
        !pool.disabled && mode.is_some_and(|m| m != EncapMode::Never)
    }

    fn record(self, spec: &mut NodeSpec, address: String) {
        match self {
            Tunnel::Vxlan => spec.ipv4_vxlan_tunnel_addr = address,
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
            Tunnel::Ipip => "IPIP",
        })
    }
}

/// Ensures the node's `tunnel` address and records it on the Node.
/// Returns it, or `None` when no enabled pool uses that tunnel (a stale
/// address is then removed from the Node).
pub async fn ensure_tunnel_address(
    client: &Client,
    name: &str,
    tunnel: Tunnel,
) -> Result<Option<IpNet>> {
    let pools = client
        .list(Kind::IPPool, None)
        .await
        .context("listing IP pools")?;
    let in_use = pools
        .items
        .iter()
        .filter_map(|r| r.spec::<IPPoolSpec>())
        .any(|p| tunnel.used_by(p));
    let address = if in_use {
        Ipam::new(client.clone())
            .ensure_tunnel_address(name, tunnel.kind(), IpVersion::V4, &[])
            .await
            .with_context(|| format!("allocating the {tunnel} tunnel address"))?
    } else {
        None
    };
    let text = address.map(|a| a.addr().to_string()).unwrap_or_default();
    client
        .modify(Kind::Node, "", name, |mut r| {
            if let Some(spec) = r.spec_mut::<NodeSpec>() {
                tunnel.record(spec, text.clone());
            }
            Ok(r)
        })
        .await
        .with_context(|| format!("recording the {tunnel} tunnel address"))?;
    Ok(address)
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
        let yaml = format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.244.0.0/16, vxlanMode: {vxlan}, ipipMode: {ipip}}}\n"
        );
        let mut r = decode_documents(&yaml, "test")
            .expect("decodes")
            .remove(0)
            .resource;
        r.apply_defaults();
        r
    }

    async fn node_spec(client: &Client) -> NodeSpec {
        let node = client.get(Kind::Node, "", "n1").await.expect("node");
        node.spec::<NodeSpec>().expect("node spec").clone()
    }

    #[tokio::test]
    async fn each_tunnel_gets_an_address_only_while_a_pool_uses_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = client(dir.path()).await;
        register(&client, "n1", &"172.30.0.11/24".parse().expect("net"))
            .await
            .expect("register");
        client.create(pool("Never", "Always")).await.expect("pool");

        let ipip = ensure_tunnel_address(&client, "n1", Tunnel::Ipip)
            .await
            .expect("ipip")
            .expect("an IPIP pool exists");
        assert!(
            "10.244.0.0/16"
                .parse::<IpNet>()
                .expect("net")
                .contains(&ipip.addr())
        );
        let vxlan = ensure_tunnel_address(&client, "n1", Tunnel::Vxlan)
            .await
            .expect("vxlan");
        assert_eq!(vxlan, None, "no pool uses VXLAN");
        let spec = node_spec(&client).await;
        let bgp = spec.bgp.as_ref().expect("bgp");
        assert_eq!(bgp.ipv4_ipip_tunnel_addr, ipip.addr().to_string());
        assert_eq!(bgp.ipv4_address, "172.30.0.11/24", "registration kept");
        assert!(spec.ipv4_vxlan_tunnel_addr.is_empty());
        // A restart keeps the same address.
        let again = ensure_tunnel_address(&client, "n1", Tunnel::Ipip)
            .await
            .expect("ipip");
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
        let ipip = ensure_tunnel_address(&client, "n1", Tunnel::Ipip)
            .await
            .expect("ipip");
        assert_eq!(ipip, None);
        let vxlan = ensure_tunnel_address(&client, "n1", Tunnel::Vxlan)
            .await
            .expect("vxlan")
            .expect("a VXLAN pool exists");
        let spec = node_spec(&client).await;
        assert!(spec.bgp.expect("bgp").ipv4_ipip_tunnel_addr.is_empty());
        assert_eq!(spec.ipv4_vxlan_tunnel_addr, vxlan.addr().to_string());
    }
}
