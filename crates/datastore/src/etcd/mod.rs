//! The etcd v3 backend: the same [`Datastore`] contract as the embedded
//! store, on an etcd cluster shared by many machines.
//!
//! Layout: `config` says how to reach the cluster, `connection` builds
//! the client (TLS, keepalive, lazy authentication), `retry` bounds every
//! call in time and classifies failures, `kv` holds the operations,
//! `resolve` decides whether a write whose outcome is unknown was applied,
//! `watcher` keeps one watch
//! alive across member restarts and leader changes, `status` probes the
//! members.
//!
//! Semantics map one to one: `resourceVersion` is etcd's `mod_revision`,
//! the store revision is etcd's revision, compaction is etcd's.
//!
//! Hard cases a long-running daemon meets, each handled where named: a
//! member dies or restarts (requests that land on it fail at once and are
//! retried on another; watches resume from the last delivered revision +
//! 1), the leader changes (same), every member is down (each call fails
//! with `Unavailable` within `timeouts.overall`; watches end so the syncer
//! re-lists once the cluster is back), history is compacted under a watch
//! (`Compacted`, the syncer re-lists), a write attempt fails ambiguously
//! (`kv`: the key is read back before anything is retried).

mod config;
mod connection;
mod kv;
mod resolve;
mod retry;
mod status;
mod watcher;

use std::sync::Arc;

pub use config::{EtcdConfig, EtcdTimeouts};

use crate::{
    BackendStatus, Datastore, DatastoreError, DatastoreSpec, KeyValue, ListResult, Revision, Watch,
};
use connection::Connection;

/// A client of an etcd cluster. Cheap to share behind an `Arc`; one
/// instance multiplexes every request and watch over one connection per
/// member.
pub struct EtcdDatastore {
    inner: Arc<Inner>,
}

/// What the operations and watch tasks share.
struct Inner {
    conn: Connection,
    config: EtcdConfig,
    /// "etcd at URL,URL", for messages.
    target: String,
}

impl EtcdDatastore {
    /// Prepares a client of the cluster. No network I/O happens here (see
    /// `connection`): an unreachable cluster shows up as `Unavailable` from
    /// the first call, within `config.timeouts.overall`. Invalid settings
    /// and unreadable TLS files are `InvalidConfig` at once.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdDatastore, DatastoreError> {
        let conn = Connection::open(&config).await?;
        Ok(EtcdDatastore {
            inner: Arc::new(Inner {
                conn,
                target: config.target(),
                config,
            }),
        })
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }
}

fn describe(config: &EtcdConfig) -> String {
    DatastoreSpec::Etcd(config.clone()).to_string()
}

#[async_trait::async_trait]
impl Datastore for EtcdDatastore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, DatastoreError> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<ListResult, DatastoreError> {
        self.inner.list(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, DatastoreError> {
        self.inner.create(key, value).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision, DatastoreError> {
        self.inner.update(key, value, expected_mod_revision).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, DatastoreError> {
        self.inner.put(key, value).await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        self.inner.delete(key, expected_mod_revision).await
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch, DatastoreError> {
        if start_revision < 1 {
            return Err(DatastoreError::InvalidRequest(format!(
                "a watch must start at revision 1 or later, not {start_revision}"
            )));
        }
        watcher::start(Arc::clone(&self.inner), prefix, start_revision).await
    }

    async fn revision(&self) -> Result<Revision, DatastoreError> {
        self.inner.revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<(), DatastoreError> {
        self.inner.compact(revision).await
    }

    async fn status(&self) -> Result<BackendStatus, DatastoreError> {
        status::status(&self.inner).await
    }

    fn describe(&self) -> String {
        describe(&self.inner.config)
    }
}
