//! The typed resource client: create, update, apply, replace, delete, get and
//! list of `projectcalico.org/v3` resources on any datastore backend.
//!
//! Every write fills defaults and validates (model), checks what depends on
//! other stored resources (`checks`), and is one compare-and-swap on the
//! datastore, so a resource is never half-written and concurrent writers
//! never lose an update silently. Metadata rules follow datastore.md §2:
//! create sets `uid` and `creationTimestamp`; update keeps every stored
//! metadata field but labels and annotations; `resourceVersion` is the key's
//! revision.

mod checks;
pub mod codec;
mod error;
mod init;
pub mod keys;

use std::sync::Arc;

use tortie_datastore::{Datastore, DatastoreError, Revision};
use tortie_model::policy::ProfileSpec;
use tortie_model::rule::{Action, Rule};
use tortie_model::{Kind, ObjectMeta, Resource};

pub use error::{ClientError, calico_id};
pub use init::{CLUSTER_TYPE, TORTIE_VERSION};

/// The virtual profile every datastore has and none stores (datastore.md §1.1).
pub const DEFAULT_ALLOW_PROFILE: &str = "projectcalico-default-allow";

/// How many times a read-modify-write retries after losing a race.
pub(crate) const MAX_RETRIES: usize = 5;

/// Resources of one kind read at one datastore revision.
#[derive(Clone, Debug)]
pub struct ResourceList {
    pub items: Vec<Resource>,
    pub revision: Revision,
}

/// Typed access to resources in a datastore.
#[derive(Clone)]
pub struct Client {
    ds: Arc<dyn Datastore>,
}

fn default_allow_profile() -> Resource {
    Resource::new(
        ObjectMeta::named(DEFAULT_ALLOW_PROFILE),
        ProfileSpec {
            ingress: vec![Rule::action(Action::Allow)],
            egress: vec![Rule::action(Action::Allow)],
            ..ProfileSpec::default()
        },
    )
}

fn is_virtual(kind: Kind, name: &str) -> bool {
    kind == Kind::Profile && name == DEFAULT_ALLOW_PROFILE
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Client {
    pub fn new(ds: Arc<dyn Datastore>) -> Client {
        Client { ds }
    }

    pub fn datastore(&self) -> &Arc<dyn Datastore> {
        &self.ds
    }

    fn key_of(r: &Resource) -> String {
        keys::resource_key(r.kind(), &r.metadata.namespace, &r.metadata.name)
    }

    fn id_of(r: &Resource) -> String {
        calico_id(r.kind(), &r.metadata.namespace, &r.metadata.name)
    }

    fn decode(
        kind: Kind,
        namespace: &str,
        name: &str,
        kv: &tortie_datastore::KeyValue,
    ) -> Result<Resource, ClientError> {
        codec::decode(kind, namespace, name, kv).map_err(|reason| ClientError::Corrupt {
            key: kv.key.clone(),
            reason,
        })
    }

    /// Reads one resource.
    pub async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Resource, ClientError> {
        if is_virtual(kind, name) {
            return Ok(default_allow_profile());
        }
        let key = keys::resource_key(kind, namespace, name);
        match self.ds.get(&key).await? {
            Some(kv) => Self::decode(kind, namespace, name, &kv),
            None => Err(ClientError::NotFound {
                id: calico_id(kind, namespace, name),
            }),
        }
    }

    /// Lists resources of `kind`, in one namespace or (None) in all, sorted
    /// by namespace then name.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<ResourceList, ClientError> {
        let listed = self.ds.list(&keys::list_prefix(kind, namespace)).await?;
        let mut items = Vec::with_capacity(listed.items.len());
        for kv in &listed.items {
            // Keys that do not parse as this kind are not resources (Calico
            // ignores them too).
            let Some((k, ns, name)) = keys::parse_key(&kv.key) else {
                continue;
            };
            if k != kind {
                continue;
            }
            items.push(Self::decode(kind, &ns, &name, kv)?);
        }
        if kind == Kind::Profile {
            let at = items.partition_point(|r| r.metadata.name.as_str() < DEFAULT_ALLOW_PROFILE);
            items.insert(at, default_allow_profile());
        }
        Ok(ResourceList {
            items,
            revision: listed.revision,
        })
    }

    /// Fills defaults and validates: everything that needs no datastore.
    fn admit(r: &mut Resource) -> Result<(), ClientError> {
        r.apply_defaults();
        r.validate()?;
        Ok(())
    }

    fn refuse_system_kinds(r: &Resource) -> Result<(), ClientError> {
        if r.kind() == Kind::ClusterInformation {
            return Err(ClientError::Rejected {
                id: r.id(),
                reason: "ClusterInformation is read-only: tortie maintains it".to_string(),
            });
        }
        if is_virtual(r.kind(), &r.metadata.name) {
            return Err(ClientError::Rejected {
                id: r.id(),
                reason: format!(
                    "{DEFAULT_ALLOW_PROFILE} is a built-in profile and cannot be changed"
                ),
            });
        }
        Ok(())
    }

    /// Creates a resource; fails if it exists. Any resourceVersion given is
    /// ignored. Returns the stored resource.
    pub async fn create(&self, r: Resource) -> Result<Resource, ClientError> {
        Self::refuse_system_kinds(&r)?;
        self.create_unchecked(r).await
    }

    async fn create_unchecked(&self, mut r: Resource) -> Result<Resource, ClientError> {
        r.metadata.resource_version.clear();
        Self::admit(&mut r)?;
        self.check_create(&r).await?;
        if r.metadata.uid.is_empty() {
            r.metadata.uid = uuid::Uuid::new_v4().to_string();
        }
        if r.metadata.creation_timestamp.is_none() {
            r.metadata.creation_timestamp = Some(now_rfc3339());
        }
        let key = Self::key_of(&r);
        match self.ds.create(&key, codec::encode(&r)).await {
            Ok(rev) => {
                r.metadata.resource_version = rev.to_string();
                Ok(r)
            }
            Err(DatastoreError::AlreadyExists { .. }) => Err(ClientError::AlreadyExists {
                id: Self::id_of(&r),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Updates a resource at the resourceVersion it carries (required).
    /// Stored metadata is kept except labels and annotations.
    pub async fn update(&self, r: Resource) -> Result<Resource, ClientError> {
        Self::refuse_system_kinds(&r)?;
        self.update_unchecked(r).await
    }

    async fn update_unchecked(&self, input: Resource) -> Result<Resource, ClientError> {
        let given = input.metadata.resource_version.clone();
        let Ok(expected) = given.parse::<Revision>() else {
            return Err(ClientError::Rejected {
                id: input.id(),
                reason: format!(
                    "metadata.resourceVersion {given:?}: an update needs the resourceVersion of the stored object"
                ),
            });
        };
        let current = self
            .get(
                input.kind(),
                &input.metadata.namespace,
                &input.metadata.name,
            )
            .await?;
        if current.metadata.resource_version != given {
            return Err(ClientError::OutOfDate {
                id: Self::id_of(&input),
                given,
                latest: current.metadata.resource_version,
            });
        }
        let mut r = Resource {
            metadata: ObjectMeta {
                labels: input.metadata.labels,
                annotations: input.metadata.annotations,
                ..current.metadata.clone()
            },
            spec: input.spec,
            status: input.status.or(current.status.clone()),
        };
        Self::admit(&mut r)?;
        self.check_update(&current, &r).await?;
        let value = codec::encode(&r);
        if value == codec::encode(&current) {
            // Nothing changes: keep the revision, wake no watcher.
            return Ok(current);
        }
        let key = Self::key_of(&r);
        match self.ds.update(&key, value, expected).await {
            Ok(rev) => {
                r.metadata.resource_version = rev.to_string();
                Ok(r)
            }
            Err(DatastoreError::Conflict { actual, .. }) => Err(ClientError::OutOfDate {
                id: Self::id_of(&r),
                given,
                latest: actual.to_string(),
            }),
            Err(DatastoreError::NotFound { .. }) => Err(ClientError::NotFound {
                id: Self::id_of(&r),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Updates a resource that must exist. With a resourceVersion, that
    /// version must be current; without one, the current version is read and
    /// the update retried if another writer gets in first.
    pub async fn replace(&self, r: Resource) -> Result<Resource, ClientError> {
        Self::refuse_system_kinds(&r)?;
        if !r.metadata.resource_version.is_empty() {
            return self.update_unchecked(r).await;
        }
        for _ in 0..MAX_RETRIES {
            let current = self
                .get(r.kind(), &r.metadata.namespace, &r.metadata.name)
                .await?;
            let mut attempt = r.clone();
            attempt.metadata.resource_version = current.metadata.resource_version;
            match self.update_unchecked(attempt).await {
                Err(ClientError::OutOfDate { .. }) => continue,
                other => return other,
            }
        }
        Err(ClientError::Conflict {
            id: Self::id_of(&r),
        })
    }

    /// Creates, or updates if it exists (calicoctl `apply`). Returns the
    /// stored resource and whether it was created.
    pub async fn apply(&self, r: Resource) -> Result<(Resource, bool), ClientError> {
        Self::refuse_system_kinds(&r)?;
        for _ in 0..MAX_RETRIES {
            match self.create_unchecked(r.clone()).await {
                Ok(stored) => return Ok((stored, true)),
                Err(ClientError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            match self.replace(r.clone()).await {
                Ok(stored) => return Ok((stored, false)),
                // Deleted between our create and update: try again.
                Err(ClientError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Conflict {
            id: Self::id_of(&r),
        })
    }

    /// Deletes a resource, optionally only at a given resourceVersion.
    /// Returns it as it was.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Resource, ClientError> {
        let id = calico_id(kind, namespace, name);
        if kind == Kind::ClusterInformation || is_virtual(kind, name) {
            return Err(ClientError::Rejected {
                id,
                reason: "this resource is maintained by tortie and cannot be deleted".to_string(),
            });
        }
        let expected = match resource_version.filter(|v| !v.is_empty()) {
            Some(v) => Some(v.parse::<Revision>().map_err(|_| ClientError::Rejected {
                id: id.clone(),
                reason: format!("metadata.resourceVersion {v:?} is not a valid resource version"),
            })?),
            None => None,
        };
        self.check_delete(kind, name).await?;
        let key = keys::resource_key(kind, namespace, name);
        match self.ds.delete(&key, expected).await {
            Ok(kv) => Self::decode(kind, namespace, name, &kv),
            Err(DatastoreError::NotFound { .. }) => Err(ClientError::NotFound { id }),
            Err(DatastoreError::Conflict { actual, .. }) => Err(ClientError::OutOfDate {
                id,
                given: resource_version.unwrap_or_default().to_string(),
                latest: actual.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads, changes and writes one resource with compare-and-swap,
    /// retrying if another writer gets in between (used by patch and label).
    pub async fn modify<F>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        mut change: F,
    ) -> Result<Resource, ClientError>
    where
        F: FnMut(Resource) -> Result<Resource, ClientError>,
    {
        for _ in 0..MAX_RETRIES {
            let current = self.get(kind, namespace, name).await?;
            let rv = current.metadata.resource_version.clone();
            let mut changed = change(current)?;
            if changed.kind() != kind
                || changed.metadata.namespace != namespace
                || changed.metadata.name != name
            {
                return Err(ClientError::Rejected {
                    id: calico_id(kind, namespace, name),
                    reason: "the kind, namespace and name of a resource cannot be changed"
                        .to_string(),
                });
            }
            changed.metadata.resource_version = rv;
            match self.update(changed).await {
                Err(ClientError::OutOfDate { .. }) => continue,
                other => return other,
            }
        }
        Err(ClientError::Conflict {
            id: calico_id(kind, namespace, name),
        })
    }
}
