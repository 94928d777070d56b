//! The datastore adapter: [`Ipam`] runs the IPAM protocols of ipam.md §3-§6
//! as compare-and-swap loops over the pure core.
//!
//! Write orders (each arrow is one CAS; a crash may stop the sequence at any
//! arrow):
//!
//! - claim (§3.2): affinity `pending` -> block created `host:H` -> affinity
//!   `confirmed`. Stopped early: a pending affinity (ignored by readers,
//!   finished or removed by the next claimer, reported by check) or a block
//!   with an unconfirmed affinity (recovered the same way).
//! - assign (§3.6): handle += n -> block with the n ordinals. Stopped
//!   early: the handle over-counts (check reports it). A lost block CAS
//!   takes the increment back.
//! - release (§5): block without the ordinals (or deleted, if now empty and
//!   unaffine) -> handle -= n. Stopped early: the handle over-counts.
//! - affinity release (§6): affinity `pendingDeletion` -> block deleted (if
//!   empty) or its affinity cleared -> affinity deleted. Stopped early: an
//!   unconfirmed or stale affinity, cleaned up by the next look.
//!
//! Nothing here keeps state between calls: every loop iteration re-reads the
//! objects it writes, so concurrent tasks and processes only ever cost
//! retries. Each call reads the IPAM config, pools and reservations once.

mod affinity_release;
mod assign;
mod claim;
mod inspect;
mod release;
mod store;
mod tunnel;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tortie_client::Client;
use tortie_client::codec::IpamConfigRecord;
use tortie_datastore::Datastore;
use tortie_model::ippool::{AllowedUse, IPPoolSpec};
use tortie_model::{Kind, Resource};

use crate::clock::{Clock, SystemClock};
use crate::config::IpamConfig;
use crate::error::IpamError;
use crate::keys::CONFIG_KEY;
use crate::pools::{Pool, pools_from_resources};
use crate::reservations::Reservations;

pub use affinity_release::{AffinityReleaseOutcome, AffinityReleaseSummary};
pub use claim::ClaimAffinityOutcome;
pub use inspect::{AllocationInfo, BorrowedAllocation};
pub use release::{ReleaseFailure, ReleaseOutcome, ReleaseRequest};

/// At most this many compare-and-swap attempts per object (§3.1).
pub const MAX_CAS_ATTEMPTS: usize = 100;

/// How many blocks a release processes at once.
const RELEASE_CONCURRENCY: usize = 8;

/// A request for automatically chosen addresses (§3.4).
#[derive(Clone, Debug)]
pub struct AutoAssignRequest {
    pub num_v4: usize,
    pub num_v6: usize,
    /// The owner of the addresses; empty = no handle. `\r` and what follows
    /// are cut off.
    pub handle_id: String,
    /// Attributes stored with the allocation (`pod`, `namespace`, `node`...).
    pub attrs: BTreeMap<String, String>,
    /// The host allocating (ignored for LoadBalancer use, whose blocks
    /// belong to the virtual owner `load-balancer`).
    pub hostname: String,
    /// Pool names or CIDRs to use, in order; empty = automatic selection.
    pub ipv4_pools: Vec<String>,
    pub ipv6_pools: Vec<String>,
    pub intended_use: AllowedUse,
    /// Labels of the workload's namespace, for namespace selectors; `None`
    /// evaluates them against no labels.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// Per-request cap on the host's affine blocks (0/None = unset).
    pub max_blocks_per_host: Option<u32>,
    /// Pre-allocate the first 3 and last ordinal of new blocks (Windows
    /// hosts, §3.6); pools whose blocks are too small are skipped.
    pub reserve_block_ends: bool,
}

impl Default for AutoAssignRequest {
    fn default() -> Self {
        AutoAssignRequest {
            num_v4: 0,
            num_v6: 0,
            handle_id: String::new(),
            attrs: BTreeMap::new(),
            hostname: String::new(),
            ipv4_pools: Vec::new(),
            ipv6_pools: Vec::new(),
            intended_use: AllowedUse::Workload,
            namespace_labels: None,
            max_blocks_per_host: None,
            reserve_block_ends: false,
        }
    }
}

/// The outcome for one family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilyAssignment {
    pub requested: usize,
    /// Assigned addresses with the *block's* prefix length (`10.0.0.5/26`).
    pub ips: Vec<IpNet>,
    /// Why fewer than requested were assigned, in the order encountered.
    pub messages: Vec<String>,
    /// The host's block cap stopped a new block claim.
    pub hit_block_limit: bool,
}

impl FamilyAssignment {
    /// `Assigned <got> out of <N> requested IPv<v> addresses; <msg>...`
    /// when short (what the CNI plugin reports, §3.4 step 5).
    pub fn shortfall(&self, version: crate::IpVersion) -> Option<String> {
        if self.ips.len() >= self.requested {
            return None;
        }
        let mut text = format!(
            "Assigned {} out of {} requested {version} addresses",
            self.ips.len(),
            self.requested
        );
        for m in &self.messages {
            text.push_str("; ");
            text.push_str(m);
        }
        Some(text)
    }
}

/// Result of [`Ipam::auto_assign`]: one outcome per family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoAssignResult {
    pub ipv4: FamilyAssignment,
    pub ipv6: FamilyAssignment,
}

/// A request for one specific address (§3.7).
#[derive(Clone, Debug)]
pub struct AssignIpRequest {
    pub ip: IpAddr,
    /// Empty = no handle.
    pub handle_id: String,
    pub attrs: BTreeMap<String, String>,
    pub hostname: String,
    /// If set, the pool must allow it.
    pub intended_use: Option<AllowedUse>,
}

impl AssignIpRequest {
    /// A request for `ip` by `hostname` under `handle_id`, no attributes.
    pub fn new(ip: IpAddr, handle_id: &str, hostname: &str) -> AssignIpRequest {
        AssignIpRequest {
            ip,
            handle_id: handle_id.to_string(),
            attrs: BTreeMap::new(),
            hostname: hostname.to_string(),
            intended_use: None,
        }
    }
}

/// The IPAM client. Cheap to clone; every clone shares the datastore.
#[derive(Clone)]
pub struct Ipam {
    client: Client,
    clock: Arc<dyn Clock>,
}

/// What one request reads once: config, pools and reservations.
pub(crate) struct RequestContext {
    pub config: IpamConfig,
    pub pools: Vec<Pool>,
    pub reservations: Reservations,
}

impl Ipam {
    pub fn new(client: Client) -> Ipam {
        Ipam::with_clock(client, Arc::new(SystemClock))
    }

    /// An IPAM client with an injected clock (tests).
    pub fn with_clock(client: Client, clock: Arc<dyn Clock>) -> Ipam {
        Ipam { client, clock }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn ds(&self) -> &Arc<dyn Datastore> {
        self.client.datastore()
    }

    pub(crate) fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    /// The effective IPAM configuration (defaults when none is stored).
    pub async fn config(&self) -> Result<IpamConfig, IpamError> {
        Ok(self.config_slot().await?.1)
    }

    async fn config_slot(&self) -> Result<(Option<i64>, IpamConfig), IpamError> {
        match self.ds().get(CONFIG_KEY).await? {
            None => Ok((None, IpamConfig::default())),
            Some(kv) => {
                let record: IpamConfigRecord =
                    serde_json::from_slice(&kv.value).map_err(|e| IpamError::Corrupt {
                        key: CONFIG_KEY.to_string(),
                        reason: e.to_string(),
                    })?;
                Ok((Some(kv.mod_revision), IpamConfig::from_record(&record)))
            }
        }
    }

    /// Validates and stores the IPAM configuration.
    pub async fn set_config(&self, config: &IpamConfig) -> Result<(), IpamError> {
        config.validate()?;
        let bytes = serde_json::to_vec(&config.to_record()).map_err(|e| {
            IpamError::InvalidConfig(format!("cannot encode the configuration: {e}"))
        })?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (revision, _) = self.config_slot().await?;
            if self
                .cas_write(CONFIG_KEY, revision, bytes.clone())
                .await?
                .is_some()
            {
                tracing::info!(?config, "IPAM configuration updated");
                return Ok(());
            }
        }
        Err(IpamError::MaxRetries {
            key: CONFIG_KEY.to_string(),
        })
    }

    /// Reads the IPAM configuration, changes it and stores it (retrying if
    /// another writer gets in between).
    pub async fn update_config<F>(&self, mut change: F) -> Result<IpamConfig, IpamError>
    where
        F: FnMut(&mut IpamConfig),
    {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (revision, mut config) = self.config_slot().await?;
            change(&mut config);
            config.validate()?;
            let bytes = serde_json::to_vec(&config.to_record()).map_err(|e| {
                IpamError::InvalidConfig(format!("cannot encode the configuration: {e}"))
            })?;
            if self.cas_write(CONFIG_KEY, revision, bytes).await?.is_some() {
                tracing::info!(?config, "IPAM configuration updated");
                return Ok(config);
            }
        }
        Err(IpamError::MaxRetries {
            key: CONFIG_KEY.to_string(),
        })
    }

    /// Every IPPool, in list order.
    pub(crate) async fn pools(&self) -> Result<Vec<Pool>, IpamError> {
        let list = self.client.list(Kind::IPPool, None).await?;
        Ok(pools_from_resources(&list.items))
    }

    pub(crate) async fn reservations(&self) -> Result<Reservations, IpamError> {
        let list = self.client.list(Kind::IPReservation, None).await?;
        let (reservations, warnings) = Reservations::from_resources(&list.items);
        for w in warnings {
            tracing::warn!(problem = %w, "ignoring an IPReservation entry");
        }
        Ok(reservations)
    }

    pub(crate) async fn context(&self) -> Result<RequestContext, IpamError> {
        Ok(RequestContext {
            config: self.config().await?,
            pools: self.pools().await?,
            reservations: self.reservations().await?,
        })
    }

    /// The labels of a Node; a host with no Node resource has none (tortie
    /// runs without Kubernetes, where hosts need not be registered first).
    pub(crate) async fn node_labels(
        &self,
        host: &str,
    ) -> Result<BTreeMap<String, String>, IpamError> {
        match self.client.get(Kind::Node, "", host).await {
            Ok(r) => Ok(r.metadata.labels),
            Err(tortie_client::ClientError::NotFound { .. }) => {
                tracing::debug!(host, "no Node resource; pool node selectors see no labels");
                Ok(BTreeMap::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an IP pool the way §1.1 prescribes: disable it, release every
    /// block affinity inside it (empty blocks are deleted, others lose their
    /// affinity), then delete it. Existing allocations stay valid.
    pub async fn delete_pool(&self, name: &str) -> Result<Resource, IpamError> {
        let disabled = self
            .client
            .modify(Kind::IPPool, "", name, |mut r| {
                if let Some(spec) = r.spec_mut::<IPPoolSpec>() {
                    spec.disabled = true;
                }
                Ok(r)
            })
            .await?;
        if let Some(cidr) = disabled.spec::<IPPoolSpec>().and_then(IPPoolSpec::network) {
            let summary = self.release_pool_affinities(&cidr).await?;
            if let Some((block, err)) = summary.errors.into_iter().next() {
                return Err(IpamError::InvalidRequest(format!(
                    "pool {name} was disabled but releasing the affinity of block {block} failed: {err}; run the delete again"
                )));
            }
        }
        Ok(self.client.delete(Kind::IPPool, "", name, None).await?)
    }
}
