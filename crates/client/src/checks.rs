//! Checks a write must pass that depend on other stored resources:
//! IP pools may not overlap and keep their CIDR and block size; policies
//! need their tier to exist; reserved tiers and tiers still in use cannot be
//! deleted. Everything that depends on the resource alone is the model's.

use tortie_model::ippool::{AllowedUse, IPPoolSpec};
use tortie_model::policy::{
    GlobalNetworkPolicySpec, NetworkPolicySpec, RESERVED_TIERS, StagedGlobalNetworkPolicySpec,
    StagedNetworkPolicySpec,
};
use tortie_model::{Kind, Resource};

use crate::{Client, ClientError, calico_id};

/// The tier a policy-like resource names, if it is one.
fn policy_tier(r: &Resource) -> Option<&str> {
    if let Some(s) = r.spec::<NetworkPolicySpec>() {
        return Some(&s.tier);
    }
    if let Some(s) = r.spec::<GlobalNetworkPolicySpec>() {
        return Some(&s.tier);
    }
    if let Some(s) = r.spec::<StagedNetworkPolicySpec>() {
        return Some(&s.policy.tier);
    }
    r.spec::<StagedGlobalNetworkPolicySpec>()
        .map(|s| s.policy.tier.as_str())
}

const TIERED_KINDS: [Kind; 4] = [
    Kind::NetworkPolicy,
    Kind::GlobalNetworkPolicy,
    Kind::StagedNetworkPolicy,
    Kind::StagedGlobalNetworkPolicy,
];

impl Client {
    pub(crate) async fn check_create(&self, r: &Resource) -> Result<(), ClientError> {
        self.check_tier_exists(r).await?;
        if let Some(pool) = r.spec::<IPPoolSpec>() {
            self.check_pool_overlap(r, pool).await?;
        }
        Ok(())
    }

    pub(crate) async fn check_update(
        &self,
        current: &Resource,
        r: &Resource,
    ) -> Result<(), ClientError> {
        self.check_tier_exists(r).await?;
        if let (Some(old), Some(new)) = (current.spec::<IPPoolSpec>(), r.spec::<IPPoolSpec>()) {
            let reject = |reason: String| ClientError::Rejected { id: r.id(), reason };
            if old.cidr != new.cidr {
                return Err(reject(format!(
                    "spec.cidr {:?}: is immutable (stored: {})",
                    new.cidr, old.cidr
                )));
            }
            if old.block_size != new.block_size {
                return Err(reject(format!(
                    "spec.blockSize {}: is immutable (stored: {})",
                    new.block_size.unwrap_or_default(),
                    old.block_size.unwrap_or_default()
                )));
            }
            let lb = |p: &IPPoolSpec| p.allowed_uses.contains(&AllowedUse::LoadBalancer);
            if lb(old) && !lb(new) {
                return Err(reject(
                    "spec.allowedUses: a LoadBalancer pool cannot be changed to another use"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }

    pub(crate) async fn check_delete(&self, kind: Kind, name: &str) -> Result<(), ClientError> {
        if kind != Kind::Tier {
            return Ok(());
        }
        let id = calico_id(kind, "", name);
        if RESERVED_TIERS.iter().any(|(n, _, _)| *n == name) {
            return Err(ClientError::Rejected {
                id,
                reason: format!("tier {name:?} is reserved and cannot be deleted"),
            });
        }
        let mut users = Vec::new();
        for k in TIERED_KINDS {
            for p in self.list(k, None).await?.items {
                if policy_tier(&p) == Some(name) {
                    users.push(p.id());
                }
            }
        }
        if !users.is_empty() {
            return Err(ClientError::Rejected {
                id,
                reason: format!(
                    "tier {name:?} is still used by {} polic{}: {}; delete or move them first",
                    users.len(),
                    if users.len() == 1 { "y" } else { "ies" },
                    users.join(", ")
                ),
            });
        }
        Ok(())
    }

    async fn check_tier_exists(&self, r: &Resource) -> Result<(), ClientError> {
        let Some(tier) = policy_tier(r) else {
            return Ok(());
        };
        match self.get(Kind::Tier, "", tier).await {
            Ok(_) => Ok(()),
            Err(ClientError::NotFound { .. }) => Err(ClientError::Rejected {
                id: r.id(),
                reason: format!("spec.tier {tier:?}: tier does not exist; create the Tier first"),
            }),
            Err(e) => Err(e),
        }
    }

    async fn check_pool_overlap(&self, r: &Resource, pool: &IPPoolSpec) -> Result<(), ClientError> {
        let Some(net) = pool.network() else {
            return Ok(());
        };
        for other in self.list(Kind::IPPool, None).await?.items {
            if other.metadata.name == r.metadata.name {
                continue;
            }
            let Some(other_net) = other.spec::<IPPoolSpec>().and_then(IPPoolSpec::network) else {
                continue;
            };
            if net.contains(&other_net.network()) || other_net.contains(&net.network()) {
                return Err(ClientError::Rejected {
                    id: r.id(),
                    reason: format!("spec.cidr {net}: overlaps {} ({other_net})", other.id()),
                });
            }
        }
        Ok(())
    }
}
