//! tortie-datastore: the key-value store every tortie component shares.
//!
//! The model is etcd v3's, exactly: string keys, opaque byte values (JSON in
//! practice) and ONE global revision counter. Every successful write
//! (create, update, put, delete) increments the store revision by exactly 1
//! and stamps the key with it (`mod_revision`); each key also remembers the
//! revision that created it and how many times it was written since
//! (`version`). A resource's `resourceVersion` anywhere in tortie is the
//! decimal `mod_revision` of its key, so compare-and-swap behaves identically
//! on every backend (spec/datastore.md section 2).
//!
//! What lives where:
//! - [`Datastore`]: the backend-agnostic trait, with the semantics every
//!   backend must honour (checked by `tests/conformance`).
//! - [`embedded`]: one SQLite file in WAL mode shared by many processes.
//! - [`etcd`]: an etcd v3 cluster, with bounded, retried calls and watches
//!   that survive member restarts.
//! - [`sync`]: the "list, then watch, with an in-sync marker" syncer that
//!   daemons consume (spec/datastore.md section 4).
//! - [`DatastoreSpec`] and [`connect`]: choosing and opening a backend.
//!
//! Hard cases owned here: identical revision semantics across backends, and
//! watch streams that never skip, duplicate or reorder a revision.

pub mod embedded;
mod error;
pub mod etcd;
mod keys;
mod spec;
mod status;
pub mod sync;
mod watch;

use std::sync::Arc;

pub use error::DatastoreError;
pub use etcd::{EtcdConfig, EtcdTimeouts};
pub use spec::{DEFAULT_EMBEDDED_PATH, DatastoreSpec};
pub use status::{BackendKind, BackendStatus, MemberStatus};
pub use watch::{WATCH_CHANNEL_CAPACITY, Watch};

/// A store revision: the value of the global write counter. Revisions start
/// at 1 for an empty store (as in etcd), so the first write gets revision 2.
pub type Revision = i64;

/// One key with its value and revision metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (unchanged by updates).
    pub create_revision: Revision,
    /// Revision of the latest write to the key: the `resourceVersion`.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 right after creation).
    pub version: i64,
}

/// The result of a prefix list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Every key starting with the prefix, sorted bytewise by key.
    pub items: Vec<KeyValue>,
    /// The store revision the list was read at. Watching from
    /// `revision + 1` continues with no gap and no duplicate.
    pub revision: Revision,
}

/// What a watch event did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

/// One write, as seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub key: String,
    /// The new value; `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// The value before this write; `None` when the write created the key.
    pub prev_value: Option<Vec<u8>>,
    /// Creation revision of the key (for a delete: of the deleted key).
    /// A put with `create_revision == mod_revision` created the key.
    pub create_revision: Revision,
    /// The revision of this write.
    pub mod_revision: Revision,
}

/// The datastore contract. Every backend must pass `tests/conformance`
/// unchanged.
///
/// Keys must be non-empty (`InvalidRequest` otherwise). Writes are atomic
/// and linearisable: each successful one gets the next revision.
///
/// Networked backends (etcd) bound every call in time and retry where it is
/// safe; a store that cannot be reached is `Unavailable` within the
/// configured deadline. When a write attempt fails without an answer (a
/// member died mid-request), the backend finds out from the key and its
/// history whether the write was applied before retrying, so a write is
/// neither lost nor applied twice. It recognises its own write by the
/// bytes written: a caller that must tell its write from an identical one
/// by another client writes unique bytes (resources carry a fresh uid and
/// timestamps). Two answers stay approximate: an unconditional `delete`
/// whose answer was lost reports `NotFound` if the key is gone (whoever
/// removed it), and when the history needed has been compacted the current
/// value decides.
#[async_trait::async_trait]
pub trait Datastore: Send + Sync + 'static {
    /// The key's current value, or `None` if absent.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, DatastoreError>;

    /// All keys starting with `prefix` (bytewise; the empty prefix lists
    /// everything), sorted by key, read at one revision.
    async fn list(&self, prefix: &str) -> Result<ListResult, DatastoreError>;

    /// Creates the key; `AlreadyExists` if present. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, DatastoreError>;

    /// Replaces the value if the key's `mod_revision` equals
    /// `expected_mod_revision`: `NotFound` if absent, `Conflict` (carrying the
    /// actual revision) otherwise. Returns the new revision.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision, DatastoreError>;

    /// Unconditional upsert (status keys, singletons). Returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, DatastoreError>;

    /// Deletes the key, optionally only at the given `mod_revision`; returns
    /// the deleted key as it was. `NotFound` if absent, `Conflict` on a
    /// revision mismatch. The delete itself consumes a revision.
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError>;

    /// Streams every write to keys under `prefix` with revision
    /// `>= start_revision`, in revision order: first the history still held,
    /// then live writes. `start_revision` must be at least 1; to watch "from
    /// now" use `revision() + 1` (or a list's revision + 1).
    ///
    /// If `start_revision` is older than the compacted revision the watch
    /// fails with `Compacted`, either from this call or as the stream's first
    /// item. Any error ends the stream; the consumer re-lists.
    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch, DatastoreError>;

    /// The current store revision (that of the latest write).
    async fn revision(&self) -> Result<Revision, DatastoreError>;

    /// Discards history older than `revision`: watches may then start at
    /// `revision` or later only. `Compacted` if already compacted to it or
    /// past it; `InvalidRequest` if `revision` is in the future.
    async fn compact(&self, revision: Revision) -> Result<(), DatastoreError>;

    /// The backend's report on itself: kind, server version, revisions and
    /// (etcd) each member's health. Fails only when nothing answers.
    async fn status(&self) -> Result<BackendStatus, DatastoreError>;

    /// Where this store lives, in `DatastoreSpec` form, for logs and status.
    fn describe(&self) -> String;
}

/// Opens the backend a spec names.
pub async fn connect(spec: &DatastoreSpec) -> Result<Arc<dyn Datastore>, DatastoreError> {
    match spec {
        DatastoreSpec::Embedded { path } => {
            let store =
                embedded::EmbeddedDatastore::open(path, embedded::EmbeddedOptions::default())
                    .await?;
            Ok(Arc::new(store))
        }
        DatastoreSpec::Etcd(config) => {
            let store = etcd::EtcdDatastore::connect(config.clone()).await?;
            Ok(Arc::new(store))
        }
    }
}
