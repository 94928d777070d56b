//! DEL of the main plugin (cni.md §6, §7): idempotent cleanup that never
//! touches another container's endpoint or veth.
//!
//! Order: open the datastore (unreachable or locked: fail before touching
//! anything); then
//! - when the container's interface still has its host-side peer:
//!   withdraw the host routes, then remove the container's interface (the
//!   kernel takes ~15 ms to destroy a veth) while deleting the endpoint (if
//!   ours) and then releasing the addresses;
//! - otherwise: delete the endpoint (if ours); if the host side lingers
//!   (its namespace is being destroyed) and is provably ours, withdraw its
//!   routes and delete it while releasing; else remove the container's
//!   interface, then release.
//!
//! The endpoint goes before the addresses, and the routes before an
//! address can be handed out again: a crash in between leaves a leaked
//! allocation (which `tortie ipam check` finds), never an endpoint or a
//! route for an address someone else may be given.
//!
//! Hard case: a pod's host veth name is shared by all its sandboxes, and a
//! newer sandbox may be re-creating it while an old one's DEL runs. The
//! host side is found as the peer of the container's own interface
//! (checked to carry the expected name). When that is out of reach it is
//! taken by name only if provably ours: a plain container's (named after
//! its container ID), or one routing only to addresses of the endpoint
//! this DEL deleted.

use crate::context::Context;
use crate::dataplane;
use crate::endpoint::{self, Removal};
use crate::error::CniError;
use crate::netlink::{LinkState, Netlink};
use crate::source::AddressSource;
use crate::store;

pub async fn del(ctx: &Context<'_>) -> Result<(), CniError> {
    let identity = ctx.identity()?;
    // Unreachable or locked: fail here, before anything is touched.
    let client = store::open_ready(&ctx.datastore()?).await?;
    let source = AddressSource::new(&ctx.conf, &ctx.inv, &identity, &client, ctx.stdin)?;
    let netns = ctx.inv.netns.as_str();
    let ifname = ctx.inv.ifname.as_str();
    let name = identity.host_veth_name(&ctx.interface_prefix());
    let host = Netlink::connect().map_err(dataplane::DataplaneError::from)?;
    // The peer of the container's interface is this sandbox's host veth,
    // whoever's endpoint carries its name now.
    let paired = match dataplane::container_peer(netns, ifname).await? {
        Some(index) => host
            .link_by_index(index)
            .await
            .map_err(dataplane::DataplaneError::from)?
            .filter(|link| link.name == name),
        None => None,
    };
    if let Some(link) = paired {
        // Once its routes are withdrawn nothing sends to its addresses:
        // the endpoint and the addresses go while the kernel (slowly)
        // destroys the pair.
        dataplane::withdraw_host_routes(&host, link.index).await?;
        let (container, released) = tokio::join!(
            dataplane::remove_container_interface(netns, ifname),
            async {
                delete_endpoint(&client, &identity).await?;
                source.del().await
            },
        );
        container?;
        return released;
    }
    let removal = delete_endpoint(&client, &identity).await?;
    match lingering_host_veth(&host, &identity, &name, &removal).await? {
        // The namespace is gone but the host side lingers a moment.
        Some(link) => {
            dataplane::withdraw_host_routes(&host, link.index).await?;
            let (deleted, released) = tokio::join!(host.delete_link(link.index), source.del());
            deleted.map_err(dataplane::DataplaneError::from)?;
            released
        }
        None => {
            dataplane::remove_container_interface(netns, ifname).await?;
            source.del().await
        }
    }
}

/// Deletes the endpoint if it is this container's.
async fn delete_endpoint(
    client: &tortie_client::Client,
    identity: &crate::identity::Identity,
) -> Result<Removal, CniError> {
    let removal = endpoint::delete_if_owned(client, identity).await?;
    match &removal {
        Removal::Deleted(_) => {
            tracing::info!(endpoint = identity.wep_name(), "deleted the endpoint")
        }
        Removal::AlreadyGone => {
            tracing::debug!(endpoint = identity.wep_name(), "no endpoint to delete")
        }
        Removal::KeptForOtherContainer(owner) => tracing::info!(
            endpoint = identity.wep_name(),
            owner,
            "the endpoint belongs to a newer container; keeping it and its host veth"
        ),
    }
    Ok(removal)
}

/// The host veth `name` when the container side is out of reach, if it
/// is provably this workload's: a plain container's (named after its
/// container ID), or one whose routes all lead to addresses of the
/// endpoint this DEL just deleted (a newer sandbox's would have others).
async fn lingering_host_veth(
    host: &Netlink,
    identity: &crate::identity::Identity,
    name: &str,
    removal: &Removal,
) -> Result<Option<LinkState>, CniError> {
    let Some(link) = host
        .link(name)
        .await
        .map_err(dataplane::DataplaneError::from)?
    else {
        return Ok(None);
    };
    if identity.owns_host_veth_name() {
        return Ok(Some(link));
    }
    let Removal::Deleted(addresses) = removal else {
        return Ok(None);
    };
    let routed = dataplane::routed_addresses(host, link.index).await?;
    let ours = !routed.is_empty() && routed.iter().all(|a| addresses.contains(a));
    Ok(ours.then_some(link))
}
