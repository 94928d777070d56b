//! Opening one SQLite connection to the datastore file: pragmas, busy
//! handling and the schema.
//!
//! Schema (version 1, in `PRAGMA user_version`):
//! - `meta`: one row (id 0) holding the store `revision` (starts at 1, as in
//!   etcd) and the `compacted` revision (watches must start at or after it).
//! - `kv`: the live keys with `create_revision`, `mod_revision`, `version`.
//! - `events`: one row per write, keyed by revision, with the new value
//!   (NULL for deletes), the previous value and the key's creation revision.
//!   Watches replay it; compaction trims its head.
//!
//! Durability: `synchronous=FULL`. In WAL mode `NORMAL` skips the fsync at
//! each commit and may lose the last commits on power loss. IPAM hands out
//! addresses on the strength of a commit, so a lost commit can mean a reused
//! address. FULL costs one fsync per write: on the development VM's disk a
//! compare-and-swap took ~197 us with FULL and ~81 us with NORMAL
//! (`benches/embedded.rs`, `TORTIE_BENCH_DIR=/var/tmp`), i.e. ~5,000 vs
//! ~12,000 writes/s. Control-plane writes come nowhere near 5,000/s, so we
//! pay for durability.
//!
//! Hard cases:
//! - Many processes open a fresh file at the same moment. A fresh file is
//!   still in rollback-journal mode, where SQLite answers SQLITE_BUSY
//!   WITHOUT calling the busy handler when waiting could deadlock (two
//!   connections holding SHARED, both wanting to write, as when both switch
//!   the file to WAL). So initialisation (WAL switch, then schema) retries
//!   itself on BUSY/LOCKED with short growing pauses until the busy timeout.
//!   The schema is created inside `BEGIN IMMEDIATE` after re-checking
//!   `user_version`, so exactly one process creates it.
//! - Contention: SQLite's stock busy handler sleeps up to 100 ms between
//!   attempts, far longer than our sub-millisecond write transactions. Ours
//!   retries after 100 us at first and backs off to 5 ms, up to the
//!   configured timeout, so dozens of CNI invocations queue fairly quickly.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::{EmbeddedOptions, StoreError};
use crate::DatastoreError;

/// The schema this build reads and writes.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (0, 1, 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    value BLOB,
    prev_value BLOB,
    create_revision INTEGER NOT NULL
);
";

/// Opens a connection, switching the file to WAL and creating the schema if
/// this is the first open.
pub(super) fn open_connection(
    path: &Path,
    options: &EmbeddedOptions,
) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    install_busy_handler(&mut conn, options.busy_timeout)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let deadline = Instant::now() + options.busy_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match ensure_wal(&conn).and_then(|()| ensure_schema(&mut conn, path)) {
            Err(StoreError::Sqlite(err)) if is_busy(&err) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(err) => return Err(err),
            Ok(()) => return Ok(conn),
        }
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn install_busy_handler(conn: &mut Connection, timeout: Duration) -> Result<(), StoreError> {
    let mut waiting_since = Instant::now();
    conn.busy_handler(Some(move |attempt: i32| {
        if attempt == 0 {
            waiting_since = Instant::now();
        }
        if waiting_since.elapsed() >= timeout {
            return false;
        }
        let pause_us = match attempt {
            0..=9 => 100,
            10..=49 => 1_000,
            _ => 5_000,
        };
        std::thread::sleep(Duration::from_micros(pause_us));
        true
    }))?;
    Ok(())
}

fn ensure_wal(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "cannot switch to WAL journal mode (still {mode}); \
             the file must be on a local filesystem with shared-memory support"
        )))
    }
}

fn ensure_schema(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    if check_version(conn, path)? {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !check_version(&tx, path)? {
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tracing::info!(path = %path.display(), "created embedded datastore schema");
    }
    tx.commit()?;
    Ok(())
}

/// True if the schema exists; false if the file is new; an error if a newer
/// tortie wrote it.
fn check_version(conn: &Connection, path: &Path) -> Result<bool, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    match version {
        0 => Ok(false),
        SCHEMA_VERSION => Ok(true),
        newer => Err(StoreError::Rejected(DatastoreError::InvalidConfig(
            format!(
                "embedded datastore {}: schema version {newer} was written by a newer tortie; \
                 this build understands version {SCHEMA_VERSION}",
                path.display()
            ),
        ))),
    }
}
