//! Datastore initialisation: the objects every cluster has (datastore.md
//! §1.1): `ClusterInformation default` and the reserved tiers `kube-admin`,
//! `default` and `kube-baseline`. Idempotent and safe to race: each object
//! is created only if absent.

use tortie_model::config::ClusterInformationSpec;
use tortie_model::policy::{RESERVED_TIERS, TierSpec};
use tortie_model::{Kind, ObjectMeta, Resource};

use crate::{Client, ClientError};

/// The version tortie records in ClusterInformation and compares against.
pub const TORTIE_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// `ClusterInformation.spec.clusterType` of a tortie cluster.
pub const CLUSTER_TYPE: &str = "tortie,bgp";

impl Client {
    /// Creates the cluster's built-in objects if they are missing.
    pub async fn ensure_initialized(&self) -> Result<(), ClientError> {
        if self
            .get(Kind::ClusterInformation, "", "default")
            .await
            .is_ok()
        {
            return Ok(());
        }
        for (name, order, action) in RESERVED_TIERS {
            let tier = Resource::new(
                ObjectMeta::named(name),
                TierSpec {
                    order: Some(order),
                    default_action: Some(action.to_string()),
                },
            );
            match self.create(tier).await {
                Ok(_) | Err(ClientError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let info = Resource::new(
            ObjectMeta::named("default"),
            ClusterInformationSpec {
                cluster_guid: uuid::Uuid::new_v4().simple().to_string(),
                cluster_type: CLUSTER_TYPE.to_string(),
                calico_version: TORTIE_VERSION.to_string(),
                datastore_ready: Some(true),
                variant: "tortie".to_string(),
            },
        );
        match self.create_unchecked(info).await {
            Ok(_) | Err(ClientError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The cluster's ClusterInformation, if the datastore has been initialised.
    pub async fn cluster_information(&self) -> Result<Option<ClusterInformationSpec>, ClientError> {
        match self.get(Kind::ClusterInformation, "", "default").await {
            Ok(r) => Ok(r.spec::<ClusterInformationSpec>().cloned()),
            Err(ClientError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Client {
    /// Locks (`ready = false`) or unlocks the datastore for maintenance:
    /// `ClusterInformation.spec.datastoreReady`, which CNI ADD/DEL and the
    /// daemons honour. Initialises the datastore first if needed.
    pub async fn set_datastore_ready(&self, ready: bool) -> Result<(), ClientError> {
        self.ensure_initialized().await?;
        for _ in 0..crate::MAX_RETRIES {
            let mut info = self.get(Kind::ClusterInformation, "", "default").await?;
            if let Some(spec) = info.spec_mut::<ClusterInformationSpec>() {
                spec.datastore_ready = Some(ready);
            }
            match self.update_unchecked(info).await {
                Err(ClientError::OutOfDate { .. }) => continue,
                other => return other.map(drop),
            }
        }
        Err(ClientError::Conflict {
            id: crate::calico_id(Kind::ClusterInformation, "", "default"),
        })
    }
}
