//! The embedded backend: one SQLite file in WAL mode that the node daemon,
//! the CLI and many short-lived CNI plugin processes share.
//!
//! Layout: [`schema`] opens connections (pragmas, busy handling, schema and
//! the durability choice), [`ops`] holds the SQL transactions, [`feed`]
//! notices commits (woken by [`wake`]), [`watcher`] streams one watch.
//!
//! Concurrency inside a process: rusqlite connections are `Send` but not
//! `Sync`, and SQLite calls block. Every operation runs on tokio's blocking
//! pool (`spawn_blocking`, which also exists on a current_thread runtime)
//! so a busy wait never stalls an async worker. Writes share ONE connection
//! behind a mutex: in-process writers queue on the mutex instead of polling
//! SQLite's file lock, and only other processes contend for the lock. Reads
//! take a connection from a small pool, so they run in parallel with each
//! other and with the writer (WAL readers never block).
//!
//! Across processes: SQLite's file locks serialise writers; each write
//! checks its precondition inside its own `BEGIN IMMEDIATE` transaction, so
//! compare-and-swap is exact however many processes write.
//!
//! Errors: failing to open the file is `Unavailable`; a failing statement is
//! `Backend`, with the file path in the message (e.g.
//! `embedded datastore /x/y.db: database is locked`, which the busy timeout
//! makes rare).

mod feed;
mod ops;
mod schema;
mod wake;
mod watcher;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::mpsc;

use crate::keys::{KeyRange, validate_key};
use crate::{
    BackendKind, BackendStatus, Datastore, DatastoreError, KeyValue, ListResult, Revision,
    WATCH_CHANNEL_CAPACITY, Watch,
};
use feed::RevisionFeed;
use ops::Precondition;

/// Idle read connections kept open per instance.
const MAX_IDLE_READERS: usize = 4;

/// Tuning of the embedded backend.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How often a watching instance checks for commits made elsewhere;
    /// the worst-case latency from another process's write to the event.
    pub poll_interval: Duration,
    /// Revisions of history kept for watches (like etcd's auto-compaction);
    /// a watcher further behind gets `Compacted`. At least 1.
    pub retain_revisions: i64,
    /// How long an operation waits for the file lock held by other
    /// processes before failing.
    pub busy_timeout: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            poll_interval: Duration::from_millis(5),
            retain_revisions: 10_000,
            busy_timeout: Duration::from_secs(30),
        }
    }
}

/// Failures inside the backend, turned into [`DatastoreError`]s that name
/// the file at the boundary.
#[derive(thiserror::Error, Debug)]
enum StoreError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Corrupt(String),
    /// A semantic outcome (not found, conflict, ...) passed through as is.
    #[error("{0}")]
    Rejected(#[from] DatastoreError),
}

/// The embedded datastore. Cheap to share behind an `Arc`; every instance
/// (in this process or another) opened on the same file sees the same data.
pub struct EmbeddedDatastore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    options: EmbeddedOptions,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    feed: Arc<RevisionFeed>,
}

impl EmbeddedDatastore {
    /// Opens (creating if needed, with its parent directory) the datastore
    /// file at `path`.
    pub async fn open(
        path: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<EmbeddedDatastore, DatastoreError> {
        let path = path.as_ref().to_path_buf();
        if options.retain_revisions < 1 {
            return Err(DatastoreError::InvalidConfig(format!(
                "embedded datastore {}: retain_revisions must be at least 1, not {}",
                path.display(),
                options.retain_revisions
            )));
        }
        if options.poll_interval.is_zero() {
            return Err(DatastoreError::InvalidConfig(format!(
                "embedded datastore {}: poll_interval must be positive",
                path.display()
            )));
        }
        let shared = tokio::task::spawn_blocking(move || Shared::open(path, options))
            .await
            .map_err(|err| {
                DatastoreError::Backend(format!("embedded datastore: open task failed: {err}"))
            })??;
        Ok(EmbeddedDatastore {
            shared: Arc::new(shared),
        })
    }

    /// The datastore file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write_value(
        &self,
        key: &str,
        value: Vec<u8>,
        precondition: Precondition,
    ) -> Result<Revision, DatastoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        Shared::run_blocking(&self.shared, move |shared| {
            let retain = shared.options.retain_revisions;
            let revision = shared
                .with_writer(|conn| ops::write_value(conn, &key, &value, precondition, retain))?;
            shared.feed.publish(revision);
            Ok(revision)
        })
        .await
    }

    async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, DatastoreError> {
        Shared::run_blocking(&self.shared, move |shared| shared.with_reader(read)).await
    }
}

impl Shared {
    fn open(path: PathBuf, options: EmbeddedOptions) -> Result<Shared, DatastoreError> {
        let unavailable = |reason: String| DatastoreError::Unavailable {
            endpoint: format!("embedded:{}", path.display()),
            reason,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                unavailable(format!(
                    "cannot create directory {}: {err}",
                    parent.display()
                ))
            })?;
        }
        let writer = schema::open_connection(&path, &options).map_err(|err| match err {
            StoreError::Rejected(rejected) => rejected,
            other => unavailable(other.to_string()),
        })?;
        let revision = ops::meta(&writer)
            .map_err(|err| {
                DatastoreError::Backend(format!("embedded datastore {}: {err}", path.display()))
            })?
            .revision;
        tracing::debug!(path = %path.display(), revision, "opened embedded datastore");
        Ok(Shared {
            feed: RevisionFeed::new(path.clone(), options.clone(), revision),
            path,
            options,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs blocking datastore work on tokio's blocking pool.
    async fn run_blocking<R: Send + 'static>(
        shared: &Arc<Shared>,
        work: impl FnOnce(&Shared) -> Result<R, DatastoreError> + Send + 'static,
    ) -> Result<R, DatastoreError> {
        let shared = Arc::clone(shared);
        let path = shared.path.display().to_string();
        tokio::task::spawn_blocking(move || work(&shared))
            .await
            .map_err(|err| {
                DatastoreError::Backend(format!("embedded datastore {path}: worker failed: {err}"))
            })?
    }

    fn with_writer<R>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, DatastoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut conn).map_err(|err| self.error(err))
    }

    fn with_reader<R>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, DatastoreError> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => schema::open_connection(&self.path, &self.options).map_err(|err| {
                DatastoreError::Unavailable {
                    endpoint: format!("embedded:{}", self.path.display()),
                    reason: err.to_string(),
                }
            })?,
        };
        let result = work(&mut conn);
        let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result.map_err(|err| self.error(err))
    }

    fn error(&self, err: StoreError) -> DatastoreError {
        match err {
            StoreError::Rejected(rejected) => rejected,
            StoreError::Sqlite(err) => DatastoreError::Backend(format!(
                "embedded datastore {}: {err}",
                self.path.display()
            )),
            StoreError::Corrupt(what) => DatastoreError::Backend(format!(
                "embedded datastore {}: {what}",
                self.path.display()
            )),
        }
    }
}

#[async_trait::async_trait]
impl Datastore for EmbeddedDatastore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, DatastoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.read(move |conn| ops::get(conn, &key)).await
    }

    async fn list(&self, prefix: &str) -> Result<ListResult, DatastoreError> {
        let range = KeyRange::prefix(prefix);
        self.read(move |conn| ops::list(conn, &range)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, DatastoreError> {
        self.write_value(key, value, Precondition::Absent).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision, DatastoreError> {
        self.write_value(key, value, Precondition::ModRevision(expected_mod_revision))
            .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, DatastoreError> {
        self.write_value(key, value, Precondition::Unconditional)
            .await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        Shared::run_blocking(&self.shared, move |shared| {
            let retain = shared.options.retain_revisions;
            let (deleted, revision) = shared
                .with_writer(|conn| ops::delete_key(conn, &key, expected_mod_revision, retain))?;
            shared.feed.publish(revision);
            Ok(deleted)
        })
        .await
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch, DatastoreError> {
        if start_revision < 1 {
            return Err(DatastoreError::InvalidRequest(format!(
                "a watch must start at revision 1 or later, not {start_revision}"
            )));
        }
        let committed = Shared::run_blocking(&self.shared, move |shared| {
            let meta = shared.with_reader(|conn| ops::meta(conn))?;
            if start_revision < meta.compacted {
                return Err(DatastoreError::Compacted {
                    requested: start_revision,
                    compacted: meta.compacted,
                });
            }
            shared.feed.publish(meta.revision);
            shared.feed.subscribe()
        })
        .await?;
        let (sender, receiver) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
        let producer = tokio::spawn(watcher::run(
            Arc::clone(&self.shared),
            KeyRange::prefix(prefix),
            start_revision,
            sender,
            committed,
        ));
        Ok(Watch::new(receiver, producer.abort_handle()))
    }

    async fn revision(&self) -> Result<Revision, DatastoreError> {
        self.read(|conn| Ok(ops::meta(conn)?.revision)).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), DatastoreError> {
        Shared::run_blocking(&self.shared, move |shared| {
            shared.with_writer(|conn| ops::compact(conn, revision))
        })
        .await
    }

    async fn status(&self) -> Result<BackendStatus, DatastoreError> {
        let (meta, schema) = self
            .read(|conn| {
                let tx = conn.transaction()?;
                let meta = ops::meta(&tx)?;
                let schema: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
                tx.commit()?;
                Ok((meta, schema))
            })
            .await?;
        Ok(BackendStatus {
            kind: BackendKind::Embedded,
            location: self.describe(),
            server_version: format!("SQLite {}, schema {schema}", rusqlite::version()),
            revision: meta.revision,
            compacted_revision: Some(meta.compacted),
            members: Vec::new(),
        })
    }

    fn describe(&self) -> String {
        format!("embedded:{}", self.shared.path.display())
    }
}
