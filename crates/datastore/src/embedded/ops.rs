//! The datastore operations as SQLite transactions on one connection.
//! Everything here is synchronous; the caller runs it off the async workers.
//!
//! Each write is ONE `BEGIN IMMEDIATE` transaction: read the meta row and
//! the key, check the precondition, take revision + 1, write `kv`, append
//! to `events`, store the new revision, trim old events when the retention
//! window is exceeded, commit. IMMEDIATE takes the write lock up front, so
//! the precondition is checked against the state the write commits on:
//! compare-and-swap holds across processes. A rejected write rolls back and
//! consumes no revision.
//!
//! Reads that return more than one fact (list + revision, compaction check +
//! events) run inside one read transaction so they see one snapshot.
//!
//! Hard cases: deletes keep the previous value for watchers; the event read
//! is limited per batch and reports how far it scanned, so a watcher whose
//! prefix matched nothing still advances to the newest revision.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::StoreError;
use crate::keys::KeyRange;
use crate::{DatastoreError, EventKind, KeyValue, ListResult, Revision, WatchEvent};

const KIND_PUT: i64 = 0;
const KIND_DELETE: i64 = 1;

/// The meta row.
#[derive(Clone, Copy, Debug)]
pub(super) struct Meta {
    pub revision: Revision,
    pub compacted: Revision,
}

/// What a value write requires of the key's current state.
#[derive(Clone, Copy, Debug)]
pub(super) enum Precondition {
    /// Create: the key must be absent.
    Absent,
    /// Update: the key must exist at exactly this mod_revision.
    ModRevision(Revision),
    /// Put: anything goes.
    Unconditional,
}

/// Events read for one watcher.
pub(super) struct EventBatch {
    pub events: Vec<WatchEvent>,
    /// The first revision not yet examined.
    pub next: Revision,
}

pub(super) fn meta(conn: &Connection) -> Result<Meta, StoreError> {
    conn.prepare_cached("SELECT revision, compacted FROM meta WHERE id = 0")?
        .query_row([], |row| {
            Ok(Meta {
                revision: row.get(0)?,
                compacted: row.get(1)?,
            })
        })
        .optional()?
        .ok_or_else(|| StoreError::Corrupt("the meta row is missing".to_owned()))
}

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
    let kv = conn
        .prepare_cached(
            "SELECT key, value, create_revision, mod_revision, version FROM kv WHERE key = ?1",
        )?
        .query_row([key], key_value_from_row)
        .optional()?;
    Ok(kv)
}

pub(super) fn list(conn: &mut Connection, range: &KeyRange) -> Result<ListResult, StoreError> {
    let tx = conn.transaction()?;
    let revision = meta(&tx)?.revision;
    let items = {
        let columns = "SELECT key, value, create_revision, mod_revision, version FROM kv";
        let rows: Result<Vec<KeyValue>, rusqlite::Error> = match &range.end {
            Some(end) => tx
                .prepare_cached(&format!(
                    "{columns} WHERE key >= ?1 AND key < ?2 ORDER BY key"
                ))?
                .query_map(params![range.start, end], key_value_from_row)?
                .collect(),
            None => tx
                .prepare_cached(&format!("{columns} WHERE key >= ?1 ORDER BY key"))?
                .query_map(params![range.start], key_value_from_row)?
                .collect(),
        };
        rows?
    };
    tx.commit()?;
    Ok(ListResult { items, revision })
}

/// Create, update or put: returns the new revision.
pub(super) fn write_value(
    conn: &mut Connection,
    key: &str,
    value: &[u8],
    precondition: Precondition,
    retain_revisions: i64,
) -> Result<Revision, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let meta = meta(&tx)?;
    let existing = get(&tx, key)?;
    match (precondition, &existing) {
        (Precondition::Absent, Some(_)) => {
            return Err(DatastoreError::AlreadyExists {
                key: key.to_owned(),
            }
            .into());
        }
        (Precondition::ModRevision(_), None) => {
            return Err(DatastoreError::NotFound {
                key: key.to_owned(),
            }
            .into());
        }
        (Precondition::ModRevision(expected), Some(current))
            if current.mod_revision != expected =>
        {
            return Err(DatastoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: current.mod_revision,
            }
            .into());
        }
        _ => {}
    }
    let revision = meta.revision + 1;
    let (create_revision, version, prev_value) = match existing {
        Some(current) => (
            current.create_revision,
            current.version + 1,
            Some(current.value),
        ),
        None => (revision, 1, None),
    };
    tx.prepare_cached(
        "INSERT INTO kv (key, value, create_revision, mod_revision, version)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET
             value = excluded.value,
             mod_revision = excluded.mod_revision,
             version = excluded.version",
    )?
    .execute(params![key, value, create_revision, revision, version])?;
    append_event(
        &tx,
        revision,
        key,
        KIND_PUT,
        Some(value),
        prev_value.as_deref(),
        create_revision,
    )?;
    finish_write(tx, meta, revision, retain_revisions)?;
    Ok(revision)
}

/// Deletes a key: returns the deleted key as it was, and the revision of
/// the delete.
pub(super) fn delete_key(
    conn: &mut Connection,
    key: &str,
    expected: Option<Revision>,
    retain_revisions: i64,
) -> Result<(KeyValue, Revision), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let meta = meta(&tx)?;
    let Some(current) = get(&tx, key)? else {
        return Err(DatastoreError::NotFound {
            key: key.to_owned(),
        }
        .into());
    };
    match expected {
        Some(expected) if expected != current.mod_revision => {
            return Err(DatastoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: current.mod_revision,
            }
            .into());
        }
        _ => {}
    }
    let revision = meta.revision + 1;
    tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
        .execute([key])?;
    append_event(
        &tx,
        revision,
        key,
        KIND_DELETE,
        None,
        Some(&current.value),
        current.create_revision,
    )?;
    finish_write(tx, meta, revision, retain_revisions)?;
    Ok((current, revision))
}

/// Explicit compaction: history before `target` is dropped.
pub(super) fn compact(conn: &mut Connection, target: Revision) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let meta = meta(&tx)?;
    if target > meta.revision {
        return Err(DatastoreError::InvalidRequest(format!(
            "cannot compact to revision {target}: the current revision is {}",
            meta.revision
        ))
        .into());
    }
    if target <= meta.compacted {
        return Err(DatastoreError::Compacted {
            requested: target,
            compacted: meta.compacted,
        }
        .into());
    }
    trim_events(&tx, target)?;
    tx.commit()?;
    Ok(())
}

/// Events for keys in `range` with revisions in `from..=to`, at most `limit`
/// of them, or `Compacted` if `from` is no longer held.
pub(super) fn read_events(
    conn: &mut Connection,
    range: &KeyRange,
    from: Revision,
    to: Revision,
    limit: usize,
) -> Result<EventBatch, StoreError> {
    let tx = conn.transaction()?;
    let meta = meta(&tx)?;
    if from < meta.compacted {
        return Err(DatastoreError::Compacted {
            requested: from,
            compacted: meta.compacted,
        }
        .into());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let columns = "SELECT revision, key, kind, value, prev_value, create_revision FROM events";
    let events: Vec<WatchEvent> = match &range.end {
        Some(end) => tx
            .prepare_cached(&format!(
                "{columns} WHERE revision >= ?1 AND revision <= ?2 AND key >= ?3 AND key < ?4
                 ORDER BY revision LIMIT ?5"
            ))?
            .query_map(params![from, to, range.start, end, limit], event_from_row)?
            .collect::<Result<Vec<_>, _>>()?,
        None => tx
            .prepare_cached(&format!(
                "{columns} WHERE revision >= ?1 AND revision <= ?2 AND key >= ?3
                 ORDER BY revision LIMIT ?4"
            ))?
            .query_map(params![from, to, range.start, limit], event_from_row)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    tx.commit()?;
    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= limit;
    let next = match events.last() {
        Some(last) if full => last.mod_revision + 1,
        _ => to + 1,
    };
    Ok(EventBatch { events, next })
}

fn append_event(
    tx: &Transaction<'_>,
    revision: Revision,
    key: &str,
    kind: i64,
    value: Option<&[u8]>,
    prev_value: Option<&[u8]>,
    create_revision: Revision,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO events (revision, key, kind, value, prev_value, create_revision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        revision,
        key,
        kind,
        value,
        prev_value,
        create_revision
    ])?;
    Ok(())
}

/// Stores the new revision, applies retention and commits.
///
/// Retention: once more than `retain + retain/10` revisions of history are
/// held, history is compacted to the newest `retain`. The slack turns the
/// trim into one batch per `retain/10` writes instead of a delete per write.
fn finish_write(
    tx: Transaction<'_>,
    meta: Meta,
    revision: Revision,
    retain_revisions: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE meta SET revision = ?1 WHERE id = 0")?
        .execute([revision])?;
    let slack = (retain_revisions / 10).max(1);
    if revision - meta.compacted > retain_revisions + slack {
        let target = revision - retain_revisions;
        trim_events(&tx, target)?;
        tracing::debug!(compacted = target, revision, "auto-compacted the event log");
    }
    tx.commit()?;
    Ok(())
}

fn trim_events(tx: &Transaction<'_>, target: Revision) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM events WHERE revision < ?1")?
        .execute([target])?;
    tx.prepare_cached("UPDATE meta SET compacted = ?1 WHERE id = 0")?
        .execute([target])?;
    Ok(())
}

fn key_value_from_row(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: row.get(0)?,
        value: row.get(1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
        version: row.get(4)?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<WatchEvent> {
    let kind = match row.get::<_, i64>(2)? {
        KIND_PUT => EventKind::Put,
        KIND_DELETE => EventKind::Delete,
        other => {
            return Err(rusqlite::Error::IntegralValueOutOfRange(2, other));
        }
    };
    Ok(WatchEvent {
        mod_revision: row.get(0)?,
        key: row.get(1)?,
        kind,
        value: row.get(3)?,
        prev_value: row.get(4)?,
        create_revision: row.get(5)?,
    })
}
