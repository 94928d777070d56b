//! The key-value operations as etcd requests, each wrapped in the retry
//! policy, and how a write whose outcome is unknown gets resolved.
//!
//! Transactions (spec/datastore.md section 2):
//! - create: `IF version(k) == 0 THEN put ELSE get` (else = AlreadyExists);
//! - update: `IF mod_revision(k) == R AND version(k) > 0 THEN put ELSE get`
//!   (the `version > 0` guard matters: `mod_revision == 0` alone holds for
//!   an absent key and would create it); empty else = NotFound, otherwise
//!   Conflict carrying the revision found;
//! - delete with R: the same guard, `THEN delete(prev_kv) ELSE get`;
//!   without R a plain delete with prev_kv (nothing deleted = NotFound);
//! - put: a plain put. A rejected write consumes no revision in etcd.
//!
//! Ambiguity. A write attempt that fails transiently (the connection died,
//! the attempt timed out, the leader changed) may or may not have been
//! applied. Retrying blindly could apply a put twice or report a conflict
//! with our own write, so `resolve` decides from the key (and its history)
//! whether it applied before anything is retried, and also judges the
//! else-branch of a conditional write retried after such a failure: the
//! first attempt may have committed between the read and the retry.
//! Conditional writes can never apply twice (the first to commit breaks
//! the other's condition).
//!
//! Lists read pages of [`LIST_PAGE_KEYS`] keys, every page at the first
//! page's revision, so the result is one consistent snapshot however large.
//! A page too large to decode is asked again at half the size; if the
//! snapshot revision is compacted mid-list the list starts over. The
//! overall deadline bounds the time without progress, not the whole list.

use std::future::Future;
use std::pin::Pin;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};

use super::Inner;
use super::retry::{Attempts, CallError, classify, etcd_answer, is_too_large};
use crate::keys::{KeyRange, validate_key};
use crate::{DatastoreError, KeyValue, ListResult, Revision};

/// Keys per list page.
pub(super) const LIST_PAGE_KEYS: i64 = 1_000;

/// One attempt's future (boxed: the retry loops are generic over the
/// operation, and the futures must be `Send` for `Arc<dyn Datastore>`).
pub(super) type AttemptFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, CallError>> + Send + 'a>>;

/// What an attempt or a read-back concluded.
pub(super) enum Verdict<T> {
    Done(Result<T, DatastoreError>),
    /// The write did not apply; try it again.
    Retry,
}

/// etcd's answers about compacted history.
pub(super) enum HistoryError {
    Compacted,
    Future,
}

pub(super) fn history_error(err: &etcd_client::Error) -> Option<HistoryError> {
    let answer = etcd_answer(err)?;
    if answer
        .message
        .contains("required revision has been compacted")
    {
        Some(HistoryError::Compacted)
    } else if answer
        .message
        .contains("required revision is a future revision")
    {
        Some(HistoryError::Future)
    } else {
        None
    }
}

impl Inner {
    fn attempts<'a>(&'a self, operation: &'static str, key: &'a str) -> Attempts<'a> {
        Attempts::new(&self.config.timeouts, &self.target, operation, key)
    }

    pub(super) fn call_error(&self, err: &etcd_client::Error) -> CallError {
        classify(&self.target, err)
    }

    async fn kv(&self) -> Result<KvClient, CallError> {
        self.conn.kv().await
    }

    /// Runs a read until it succeeds, fails for good, or the deadline passes.
    pub(super) async fn read<'a, T>(
        &self,
        operation: &'static str,
        key: &str,
        mut attempt: impl FnMut() -> AttemptFuture<'a, T>,
    ) -> Result<T, DatastoreError> {
        let mut attempts = self.attempts(operation, key);
        loop {
            match attempts.run(attempt()).await {
                Ok(value) => return Ok(value),
                Err(CallError::Fatal(err)) => return Err(err),
                Err(CallError::Transient(reason)) => attempts.failed(reason).await?,
            }
        }
    }

    /// Runs a write; after an ambiguous failure, `read_back` decides
    /// whether it applied before it is tried again. `attempt` is told
    /// whether an earlier attempt may have applied.
    async fn write<'a, T>(
        &self,
        operation: &'static str,
        key: &str,
        mut attempt: impl FnMut(bool) -> AttemptFuture<'a, Verdict<T>>,
        mut read_back: impl FnMut() -> AttemptFuture<'a, Verdict<T>>,
    ) -> Result<T, DatastoreError> {
        let mut attempts = self.attempts(operation, key);
        let mut ambiguous = false;
        loop {
            match attempts.run(attempt(ambiguous)).await {
                Ok(Verdict::Done(result)) => return result,
                Ok(Verdict::Retry) => {
                    attempts
                        .failed("the key changed while the write was resolved".to_owned())
                        .await?;
                }
                Err(CallError::Fatal(err)) => return Err(err),
                Err(CallError::Transient(reason)) => {
                    ambiguous = true;
                    attempts.outcome_unknown();
                    attempts.failed(reason).await?;
                    loop {
                        match attempts.run(read_back()).await {
                            Ok(Verdict::Done(result)) => return result,
                            Ok(Verdict::Retry) => break,
                            Err(CallError::Fatal(err)) => return Err(err),
                            Err(CallError::Transient(reason)) => attempts.failed(reason).await?,
                        }
                    }
                }
            }
        }
    }

    /// One linearizable read of one key.
    async fn get_once(&self, key: &str) -> Result<Option<KeyValue>, CallError> {
        let mut response = self
            .kv()
            .await?
            .get(key, None)
            .await
            .map_err(|err| self.call_error(&err))?;
        response
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| self.key_value(kv))
            .transpose()
    }

    pub(super) fn key_value(&self, kv: etcd_client::KeyValue) -> Result<KeyValue, CallError> {
        let (create_revision, mod_revision, version) =
            (kv.create_revision(), kv.mod_revision(), kv.version());
        let (key, value) = kv.into_key_value();
        let key = String::from_utf8(key).map_err(|err| {
            CallError::Fatal(DatastoreError::Backend(format!(
                "{}: key {:?} is not UTF-8",
                self.target,
                String::from_utf8_lossy(err.as_bytes())
            )))
        })?;
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
            version,
        })
    }

    /// The key as found by the else-branch of a transaction.
    fn else_branch(&self, response: &TxnResponse) -> Result<Option<KeyValue>, CallError> {
        for op in response.op_responses() {
            if let TxnOpResponse::Get(mut get) = op {
                return get
                    .take_kvs()
                    .into_iter()
                    .next()
                    .map(|kv| self.key_value(kv))
                    .transpose();
            }
        }
        Ok(None)
    }

    pub(super) fn header_revision(
        &self,
        header: Option<&etcd_client::ResponseHeader>,
    ) -> Result<Revision, CallError> {
        header.map(|header| header.revision()).ok_or_else(|| {
            CallError::Fatal(DatastoreError::Backend(format!(
                "{}: a response without a header",
                self.target
            )))
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, CallError> {
        self.kv()
            .await?
            .txn(txn)
            .await
            .map_err(|err| self.call_error(&err))
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<KeyValue>, DatastoreError> {
        validate_key(key)?;
        self.read("get", key, || Box::pin(self.get_once(key))).await
    }

    pub(super) async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Revision, DatastoreError> {
        validate_key(key)?;
        let value = value.as_slice();
        let already = || DatastoreError::AlreadyExists {
            key: key.to_owned(),
        };
        self.write(
            "create",
            key,
            move |ambiguous| {
                Box::pin(async move {
                    let txn = Txn::new()
                        .when([Compare::version(key, CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key, value, None)])
                        .or_else([TxnOp::get(key, None)]);
                    let response = self.txn(txn).await?;
                    if response.succeeded() {
                        return Ok(Verdict::Done(Ok(self.header_revision(response.header())?)));
                    }
                    if ambiguous {
                        return self.resolve_create(key, value).await;
                    }
                    Ok(Verdict::Done(Err(already())))
                })
            },
            move || Box::pin(self.resolve_create(key, value)),
        )
        .await
    }

    pub(super) async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<Revision, DatastoreError> {
        validate_key(key)?;
        let value = value.as_slice();
        let missing = || DatastoreError::NotFound {
            key: key.to_owned(),
        };
        let conflict = |actual| DatastoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual,
        };
        self.write(
            "update",
            key,
            move |ambiguous| {
                Box::pin(async move {
                    let txn = Txn::new()
                        .when([
                            Compare::mod_revision(key, CompareOp::Equal, expected),
                            Compare::version(key, CompareOp::Greater, 0),
                        ])
                        .and_then([TxnOp::put(key, value, None)])
                        .or_else([TxnOp::get(key, None)]);
                    let response = self.txn(txn).await?;
                    if response.succeeded() {
                        return Ok(Verdict::Done(Ok(self.header_revision(response.header())?)));
                    }
                    if ambiguous {
                        return self.resolve_update(key, value, expected).await;
                    }
                    Ok(Verdict::Done(match self.else_branch(&response)? {
                        None => Err(missing()),
                        Some(found) => Err(conflict(found.mod_revision)),
                    }))
                })
            },
            move || Box::pin(self.resolve_update(key, value, expected)),
        )
        .await
    }

    pub(super) async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, DatastoreError> {
        validate_key(key)?;
        let value = value.as_slice();
        self.write(
            "put",
            key,
            move |_| {
                Box::pin(async move {
                    let response = self
                        .kv()
                        .await?
                        .put(key, value, None::<PutOptions>)
                        .await
                        .map_err(|err| self.call_error(&err))?;
                    Ok(Verdict::Done(Ok(self.header_revision(response.header())?)))
                })
            },
            move || Box::pin(self.resolve_put(key, value)),
        )
        .await
    }

    pub(super) async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<KeyValue, DatastoreError> {
        validate_key(key)?;
        let missing = || DatastoreError::NotFound {
            key: key.to_owned(),
        };
        let conflict = |expected, actual| DatastoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual,
        };
        self.write(
            "delete",
            key,
            move |ambiguous| {
                Box::pin(async move {
                    let deleted = match expected {
                        Some(expected) => {
                            let txn = Txn::new()
                                .when([
                                    Compare::mod_revision(key, CompareOp::Equal, expected),
                                    Compare::version(key, CompareOp::Greater, 0),
                                ])
                                .and_then([TxnOp::delete(
                                    key,
                                    Some(DeleteOptions::new().with_prev_key()),
                                )])
                                .or_else([TxnOp::get(key, None)]);
                            let response = self.txn(txn).await?;
                            if !response.succeeded() {
                                if ambiguous {
                                    return self.resolve_delete(key, Some(expected)).await;
                                }
                                return Ok(Verdict::Done(match self.else_branch(&response)? {
                                    None => Err(missing()),
                                    Some(found) => Err(conflict(expected, found.mod_revision)),
                                }));
                            }
                            response.op_responses().into_iter().find_map(|op| match op {
                                TxnOpResponse::Delete(mut delete) => {
                                    delete.take_prev_kvs().into_iter().next()
                                }
                                _ => None,
                            })
                        }
                        None => self
                            .kv()
                            .await?
                            .delete(key, Some(DeleteOptions::new().with_prev_key()))
                            .await
                            .map_err(|err| self.call_error(&err))?
                            .take_prev_kvs()
                            .into_iter()
                            .next(),
                    };
                    Ok(Verdict::Done(match deleted {
                        Some(kv) => Ok(self.key_value(kv)?),
                        None => Err(missing()),
                    }))
                })
            },
            move || Box::pin(self.resolve_delete(key, expected)),
        )
        .await
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<ListResult, DatastoreError> {
        let range = KeyRange::prefix(prefix);
        // etcd refuses an empty key; "\0" is the smallest key there is.
        let first_key = if range.start.is_empty() {
            vec![0]
        } else {
            range.start.into_bytes()
        };
        // An end of "\0" means "no upper bound".
        let end = range.end.map_or_else(|| vec![0], String::into_bytes);
        let mut attempts = self.attempts("list", prefix);
        let mut page_keys = LIST_PAGE_KEYS;
        let mut from = first_key.clone();
        let mut snapshot: Option<Revision> = None;
        let mut items = Vec::new();
        loop {
            let page = attempts
                .run(self.list_page(&from, &end, snapshot, page_keys))
                .await;
            match page {
                Ok(Page::Keys {
                    kvs,
                    more,
                    revision,
                }) => {
                    let snapshot = *snapshot.get_or_insert(revision);
                    let last = kvs.last().map(|kv| kv.key().to_vec());
                    for kv in kvs {
                        match self.key_value(kv) {
                            Ok(item) => items.push(item),
                            Err(CallError::Fatal(err)) => {
                                tracing::warn!(endpoint = %self.target, %prefix, error = %err, "skipping a key that is not UTF-8");
                            }
                            Err(CallError::Transient(_)) => {}
                        }
                    }
                    match last {
                        Some(mut last) if more => {
                            last.push(0);
                            from = last;
                            attempts = self.attempts("list", prefix);
                        }
                        _ => {
                            return Ok(ListResult {
                                items,
                                revision: snapshot,
                            });
                        }
                    }
                }
                Ok(Page::TooLarge) if page_keys > 1 => {
                    page_keys /= 2;
                    tracing::debug!(endpoint = %self.target, %prefix, page_keys, "list page too large; asking for fewer keys");
                }
                Ok(Page::TooLarge) => {
                    return Err(DatastoreError::Backend(format!(
                        "{}: one value under {prefix:?} is larger than {} bytes",
                        self.target,
                        super::connection::MAX_RESPONSE_BYTES
                    )));
                }
                Ok(Page::SnapshotCompacted) => {
                    from = first_key.clone();
                    snapshot = None;
                    items.clear();
                    attempts
                        .failed(
                            "the list's revision was compacted mid-list; starting over".to_owned(),
                        )
                        .await?;
                }
                Err(CallError::Fatal(err)) => return Err(err),
                Err(CallError::Transient(reason)) => attempts.failed(reason).await?,
            }
        }
    }

    async fn list_page(
        &self,
        from: &[u8],
        end: &[u8],
        snapshot: Option<Revision>,
        page_keys: i64,
    ) -> Result<Page, CallError> {
        let options = GetOptions::new()
            .with_range(end)
            .with_limit(page_keys)
            .with_revision(snapshot.unwrap_or(0));
        let result = self.kv().await?.get(from, Some(options)).await;
        match result {
            Ok(mut response) => Ok(Page::Keys {
                revision: self.header_revision(response.header())?,
                more: response.more(),
                kvs: response.take_kvs(),
            }),
            Err(err) if is_too_large(&err) => Ok(Page::TooLarge),
            Err(err)
                if snapshot.is_some()
                    && matches!(history_error(&err), Some(HistoryError::Compacted)) =>
            {
                Ok(Page::SnapshotCompacted)
            }
            Err(err) => Err(self.call_error(&err)),
        }
    }

    /// The current store revision: an empty transaction, which is a
    /// linearizable read that needs no permission on any key.
    pub(super) async fn revision(&self) -> Result<Revision, DatastoreError> {
        self.read("revision", "", || {
            Box::pin(async {
                let response = self.txn(Txn::new()).await?;
                self.header_revision(response.header())
            })
        })
        .await
    }

    pub(super) async fn compact(&self, revision: Revision) -> Result<(), DatastoreError> {
        let key = revision.to_string();
        let mut ambiguous = false;
        let mut attempts = self.attempts("compact", &key);
        loop {
            let attempt = attempts
                .run(async {
                    let result = self.kv().await?.compact(revision, None).await;
                    match result {
                        Ok(_) => Ok(None),
                        Err(err) => match history_error(&err) {
                            Some(history) => Ok(Some(history)),
                            None => Err(self.call_error(&err)),
                        },
                    }
                })
                .await;
            match attempt {
                Ok(None) => return Ok(()),
                Ok(Some(HistoryError::Future)) => {
                    return Err(DatastoreError::InvalidRequest(format!(
                        "cannot compact to revision {revision}: it is in the future"
                    )));
                }
                Ok(Some(HistoryError::Compacted)) => {
                    let compacted = self.compacted_revision().await.unwrap_or(revision);
                    // An earlier attempt of ours may be what compacted it.
                    if ambiguous && compacted == revision {
                        return Ok(());
                    }
                    return Err(DatastoreError::Compacted {
                        requested: revision,
                        compacted,
                    });
                }
                Err(CallError::Fatal(err)) => return Err(err),
                Err(CallError::Transient(reason)) => {
                    ambiguous = true;
                    attempts.outcome_unknown();
                    attempts.failed(reason).await?;
                }
            }
        }
    }

    /// The compacted revision (history before it is gone; 0 if never
    /// compacted), found by bisecting with reads at past revisions: etcd
    /// has no request that reports it directly.
    pub(super) async fn compacted_revision(&self) -> Result<Revision, DatastoreError> {
        let current = self.revision().await?;
        if self.readable_at(1).await? {
            return Ok(0);
        }
        // Invariant: `low` is compacted, `high` is readable.
        let (mut low, mut high) = (1, current);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if self.readable_at(middle).await? {
                high = middle;
            } else {
                low = middle;
            }
        }
        Ok(high)
    }
}

impl Inner {
    /// Whether the store can still be read at `revision`.
    async fn readable_at(&self, revision: Revision) -> Result<bool, DatastoreError> {
        self.read("probe compaction", "", || {
            Box::pin(async move {
                let options = GetOptions::new()
                    .with_revision(revision)
                    .with_count_only()
                    .with_limit(1);
                match self.kv().await?.get(vec![0u8], Some(options)).await {
                    Ok(_) => Ok(true),
                    Err(err) if matches!(history_error(&err), Some(HistoryError::Compacted)) => {
                        Ok(false)
                    }
                    Err(err) => Err(self.call_error(&err)),
                }
            })
        })
        .await
    }
}

enum Page {
    Keys {
        kvs: Vec<etcd_client::KeyValue>,
        more: bool,
        revision: Revision,
    },
    TooLarge,
    SnapshotCompacted,
}
