//! The node's own Node resource: created at start with the node's address,
//! updated (never replaced) afterwards, so fields other components own —
//! labels, BGP AS, route-reflector settings — survive a restart. The VXLAN
//! tunnel address is allocated from IPAM (handle `vxlan-tunnel-addr-<node>`)
//! when a pool uses VXLAN, and recorded in `spec.ipv4VXLANTunnelAddr`.

use anyhow::{Context, Result};
use ipnet::IpNet;
use tortie_client::{Client, ClientError};
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

/// True when any enabled pool uses VXLAN.
pub async fn vxlan_in_use(client: &Client) -> Result<bool> {
    let pools = client
        .list(Kind::IPPool, None)
        .await
        .context("listing IP pools")?;
    Ok(pools
        .items
        .iter()
        .filter_map(|r| r.spec::<IPPoolSpec>())
        .any(|p| !p.disabled && p.vxlan_mode.is_some_and(|m| m != EncapMode::Never)))
}

/// Ensures the node's VXLAN tunnel address and records it on the Node.
/// Returns it, or `None` when VXLAN is not in use (a stale address is then
/// removed from the Node).
pub async fn ensure_vxlan_tunnel_address(client: &Client, name: &str) -> Result<Option<IpNet>> {
    let address = if vxlan_in_use(client).await? {
        Ipam::new(client.clone())
            .ensure_tunnel_address(
                name,
                tortie_ipam::tunnel::TunnelKind::Vxlan,
                IpVersion::V4,
                &[],
            )
            .await
            .context("allocating the VXLAN tunnel address")?
    } else {
        None
    };
    let text = address.map(|a| a.addr().to_string()).unwrap_or_default();
    client
        .modify(Kind::Node, "", name, |mut r| {
            if let Some(spec) = r.spec_mut::<NodeSpec>() {
                spec.ipv4_vxlan_tunnel_addr = text.clone();
            }
            Ok(r)
        })
        .await
        .context("recording the VXLAN tunnel address")?;
    Ok(address)
}
