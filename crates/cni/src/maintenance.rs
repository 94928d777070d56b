//! The CNI 1.1 commands that concern the network rather than one
//! attachment: GC (release what the runtime no longer has) and STATUS (can
//! an ADD succeed now?), for both plugins.
//!
//! Hard cases:
//! - GC only touches this network's objects on this node: endpoints
//!   annotated with the network, allocations whose `network` and `node`
//!   attributes match; anything whose container ID is in
//!   `cni.dev/valid-attachments` stays.
//! - STATUS answers code 50 for every reason an ADD would fail now: the
//!   datastore is unreachable or locked, no enabled pool of a requested
//!   family serves this node, or the delegated IPAM plugin is missing.

use std::collections::BTreeMap;

use tortie_client::{Client, ClientError};
use tortie_ipam::pools::{PoolRequest, choose_pools, pools_from_resources};
use tortie_ipam::{AllowedUse, IpVersion, Ipam};
use tortie_model::Kind;

use crate::allocation;
use crate::context::Context;
use crate::delegate;
use crate::endpoint;
use crate::error::{CniError, codes};
use crate::invocation::Command;
use crate::store;

/// Whether the plugin's addresses come from tortie's IPAM (always for the
/// IPAM plugin; for the main plugin, per `ipam.type`).
fn own_ipam(ctx: &Context<'_>, is_ipam_plugin: bool) -> bool {
    is_ipam_plugin || ctx.conf.ipam.is_tortie()
}

pub async fn gc(ctx: &Context<'_>, is_ipam_plugin: bool) -> Result<(), CniError> {
    ctx.require_version_for(Command::Gc)?;
    let valid = ctx.valid_containers()?;
    let node = ctx.node()?;
    let network = &ctx.conf.name;
    let client = store::open_ready(&ctx.datastore()?).await?;
    if !is_ipam_plugin {
        let deleted = endpoint::collect_garbage(&client, network, &node, &valid).await?;
        tracing::info!(count = deleted.len(), "GC: endpoints deleted");
    }
    if own_ipam(ctx, is_ipam_plugin) {
        let ipam = Ipam::new(client);
        let released =
            allocation::collect_garbage(&ipam, &ctx.conf.ipam_lock_file(), network, &node, &valid)
                .await?;
        tracing::info!(count = released.len(), "GC: handles released");
        return Ok(());
    }
    let plugin = delegate::find_plugin(&ctx.conf.ipam.plugin_type, &ctx.inv.path)?;
    delegate::run(&plugin, Command::Gc, ctx.stdin)
        .await
        .map(drop)
}

fn unavailable(err: CniError) -> CniError {
    CniError::new(codes::NOT_AVAILABLE, err.msg).with_details(err.details)
}

pub async fn status(ctx: &Context<'_>, is_ipam_plugin: bool) -> Result<(), CniError> {
    ctx.require_version_for(Command::Status)?;
    let node = ctx.node()?;
    let client = store::open_ready(&ctx.datastore()?)
        .await
        .map_err(unavailable)?;
    if own_ipam(ctx, is_ipam_plugin) {
        return usable_pools(ctx, &client, &node).await.map_err(unavailable);
    }
    delegate::find_plugin(&ctx.conf.ipam.plugin_type, &ctx.inv.path)
        .map(drop)
        .map_err(unavailable)
}

/// Fails unless every requested family has a pool this node may use.
async fn usable_pools(ctx: &Context<'_>, client: &Client, node: &str) -> Result<(), CniError> {
    let (num_v4, num_v6) = ctx.conf.ipam.families()?;
    let list = client.list(Kind::IPPool, None).await?;
    let pools = pools_from_resources(&list.items);
    let node_labels = match client.get(Kind::Node, "", node).await {
        Ok(r) => r.metadata.labels,
        Err(ClientError::NotFound { .. }) => BTreeMap::new(),
        Err(e) => return Err(e.into()),
    };
    for (version, wanted, explicit) in [
        (IpVersion::V4, num_v4, &ctx.conf.ipam.ipv4_pools),
        (IpVersion::V6, num_v6, &ctx.conf.ipam.ipv6_pools),
    ] {
        if wanted == 0 {
            continue;
        }
        let request = PoolRequest {
            version,
            explicit,
            host: node,
            intended_use: AllowedUse::Workload,
            node_labels: &node_labels,
            namespace_labels: None,
            reserve_block_ends: false,
        };
        match choose_pools(&pools, &request) {
            Ok(usable) if !usable.is_empty() => {}
            Ok(_) => {
                return Err(CniError::internal(format!(
                    "no usable {version} pool for node {node}"
                )));
            }
            Err(e) => {
                return Err(CniError::internal(format!(
                    "no usable {version} pool for node {node}: {e}"
                )));
            }
        }
    }
    Ok(())
}
