//! Tunnel addresses for the node daemon (§7): one address per node, tunnel
//! kind and family, under the conventional handle, allocated with intended
//! use `Tunnel`, kept while it is still inside a usable pool.

use ipnet::IpNet;
use tortie_model::ippool::AllowedUse;

use super::release::ReleaseRequest;
use super::{AutoAssignRequest, Ipam};
use crate::cidr::IpVersion;
use crate::error::IpamError;
use crate::pools::pools_selecting_node;
use crate::tunnel::TunnelKind;

impl Ipam {
    /// The node's tunnel address of `kind` and `version`: the one it already
    /// holds if that is still inside an enabled, automatically assigned
    /// Tunnel pool selecting the node (and one of `pools`, when given),
    /// else a new one from such a pool. Addresses it held outside them are
    /// released. `Ok(None)` when no address could be assigned (the reason
    /// is logged).
    pub async fn ensure_tunnel_address(
        &self,
        node: &str,
        kind: TunnelKind,
        version: IpVersion,
        pools: &[String],
    ) -> Result<Option<IpNet>, IpamError> {
        let handle = kind.handle(version, node);
        let held = match self.ips_by_handle(&handle).await {
            Ok(ips) => ips,
            Err(IpamError::HandleNotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let all_pools = self.pools().await?;
        let labels = self.node_labels(node).await?;
        let usable: Vec<IpNet> = pools_selecting_node(&all_pools, version, &labels)
            .into_iter()
            .filter(|p| p.allows(AllowedUse::Tunnel) && !p.manual)
            .filter(|p| {
                pools.is_empty()
                    || pools.iter().any(|wanted| {
                        wanted == &p.name || wanted.parse::<IpNet>().ok() == Some(p.cidr)
                    })
            })
            .map(|p| p.cidr)
            .collect();
        let (keep, stale): (Vec<IpNet>, Vec<IpNet>) = held
            .into_iter()
            .filter(|ip| IpVersion::of_net(ip) == version)
            .partition(|ip| usable.iter().any(|p| p.contains(&ip.addr())));
        if !stale.is_empty() {
            let requests: Vec<ReleaseRequest> = stale
                .iter()
                .map(|ip| ReleaseRequest {
                    address: ip.addr(),
                    handle: Some(handle.clone()),
                    sequence: None,
                })
                .collect();
            let outcome = self.release_ips(&requests).await?;
            if let Some(e) = outcome.first_error() {
                tracing::warn!(node, handle, error = %e, "could not release a stale tunnel address");
            }
        }
        if let Some(ip) = keep.first() {
            return Ok(Some(*ip));
        }
        if usable.is_empty() {
            tracing::warn!(
                node,
                handle,
                "no enabled pool for this tunnel selects the node"
            );
            return Ok(None);
        }
        let usable: Vec<String> = usable.iter().map(IpNet::to_string).collect();
        let (num_v4, num_v6) = match version {
            IpVersion::V4 => (1, 0),
            IpVersion::V6 => (0, 1),
        };
        let (ipv4_pools, ipv6_pools) = match version {
            IpVersion::V4 => (usable, Vec::new()),
            IpVersion::V6 => (Vec::new(), usable),
        };
        let result = self
            .auto_assign(AutoAssignRequest {
                num_v4,
                num_v6,
                handle_id: handle.clone(),
                attrs: kind.attrs(version, node),
                hostname: node.to_string(),
                ipv4_pools,
                ipv6_pools,
                intended_use: AllowedUse::Tunnel,
                ..AutoAssignRequest::default()
            })
            .await?;
        let family = match version {
            IpVersion::V4 => result.ipv4,
            IpVersion::V6 => result.ipv6,
        };
        if let Some(reason) = family.shortfall(version) {
            tracing::warn!(node, handle, reason, "no tunnel address assigned");
        }
        Ok(family.ips.first().copied())
    }

    /// Releases the node's tunnel address of `kind` and `version` (when the
    /// tunnel is disabled). Releasing an address that is not held is fine.
    pub async fn release_tunnel_address(
        &self,
        node: &str,
        kind: TunnelKind,
        version: IpVersion,
    ) -> Result<(), IpamError> {
        match self.release_by_handle(&kind.handle(version, node)).await {
            Ok(()) | Err(IpamError::HandleNotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
