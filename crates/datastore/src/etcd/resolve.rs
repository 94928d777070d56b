//! Deciding whether a write whose outcome is unknown was applied.
//!
//! The current value alone cannot say: with other writers on the key, our
//! update may have applied and been overwritten before we look (we would
//! report a conflict and the caller would increment twice), or another
//! client may have written the same bytes. etcd keeps the key's history
//! until compaction, and a compare-and-swap can only ever apply as the
//! FIRST change after the revision it expected. So:
//! - update of R: if the key is still at R, it did not apply (retry).
//!   Otherwise find the first change after R (bisecting with reads at
//!   past revisions, about log2(writes since R) reads): our write applied
//!   iff that change put our bytes; then it is a success at that revision,
//!   else a conflict (or NotFound if the key is gone now).
//! - create: absent = not applied (retry). Present: applied iff the value
//!   the key was created with is ours (a read at its create revision).
//! - delete of R: still at R = retry. Otherwise applied iff the first
//!   change after R was a deletion (returning the key as it was at R).
//! - delete without R: gone = NotFound (we cannot tell our delete from
//!   another's), present = retry.
//! - put: holding our bytes = applied, otherwise retry.
//!
//! When the history needed has been compacted, the current value decides
//! (our bytes = applied). Callers that need exact answers in every case
//! write unique bytes (resources carry a fresh uid and timestamps; the
//! fault tests' counters carry the writer's id).
//!
//! Left approximate, because nothing tells us which revision to search
//! from: a create or put that applied and was then deleted or overwritten
//! by another client before we looked is applied again (a create of a
//! key someone deleted, a put of the bytes we meant to put anyway).
//!
//! Every read here is one request inside the caller's attempt, so the
//! whole resolution is bounded by the attempt timeout and retried (as a
//! read) like any other attempt.

use super::Inner;
use super::kv::{HistoryError, Verdict, history_error};
use super::retry::CallError;
use crate::{DatastoreError, KeyValue, Revision};

/// A key's state at a past revision, or `Compacted` if etcd no longer
/// holds it.
enum PastState {
    At(Option<KeyValue>),
    Compacted,
}

impl Inner {
    /// The key now, and the revision it was read at.
    pub(super) async fn get_now(
        &self,
        key: &str,
    ) -> Result<(Option<KeyValue>, Revision), CallError> {
        let mut response = self
            .conn
            .kv()
            .await?
            .get(key, None)
            .await
            .map_err(|err| self.call_error(&err))?;
        let revision = self.header_revision(response.header())?;
        let kv = response
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| self.key_value(kv))
            .transpose()?;
        Ok((kv, revision))
    }

    async fn get_at(&self, key: &str, revision: Revision) -> Result<PastState, CallError> {
        let options = etcd_client::GetOptions::new().with_revision(revision);
        match self.conn.kv().await?.get(key, Some(options)).await {
            Ok(mut response) => Ok(PastState::At(
                response
                    .take_kvs()
                    .into_iter()
                    .next()
                    .map(|kv| self.key_value(kv))
                    .transpose()?,
            )),
            Err(err) if matches!(history_error(&err), Some(HistoryError::Compacted)) => {
                Ok(PastState::Compacted)
            }
            Err(err) => Err(self.call_error(&err)),
        }
    }

    /// The first change to a key that was at mod_revision `since` and had
    /// changed by `until`: its revision and the key's state right after
    /// it. `None` if the history is compacted.
    async fn first_change_after(
        &self,
        key: &str,
        since: Revision,
        until: Revision,
    ) -> Result<Option<(Revision, Option<KeyValue>)>, CallError> {
        // Invariant: unchanged at `low`, changed at `high`.
        let (mut low, mut high) = (since, until);
        let mut after: Option<Option<KeyValue>> = None;
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            match self.get_at(key, middle).await? {
                PastState::Compacted => return Ok(None),
                PastState::At(state) => {
                    if state.as_ref().is_some_and(|kv| kv.mod_revision == since) {
                        low = middle;
                    } else {
                        high = middle;
                        after = Some(state);
                    }
                }
            }
        }
        let state = match after {
            Some(state) => state,
            None => match self.get_at(key, high).await? {
                PastState::Compacted => return Ok(None),
                PastState::At(state) => state,
            },
        };
        Ok(Some((high, state)))
    }

    /// Whether the key was at mod_revision `revision` at that revision
    /// (`None` if compacted): only then can a write expecting it apply.
    async fn state_at_expected(
        &self,
        key: &str,
        revision: Revision,
    ) -> Result<Option<Option<KeyValue>>, CallError> {
        Ok(match self.get_at(key, revision).await? {
            PastState::Compacted => None,
            PastState::At(state) => Some(state.filter(|kv| kv.mod_revision == revision)),
        })
    }

    pub(super) async fn resolve_update(
        &self,
        key: &str,
        value: &[u8],
        expected: Revision,
    ) -> Result<Verdict<Revision>, CallError> {
        let (current, now) = self.get_now(key).await?;
        if current
            .as_ref()
            .is_some_and(|kv| kv.mod_revision == expected)
        {
            return Ok(Verdict::Retry);
        }
        let lost = match &current {
            None => DatastoreError::NotFound {
                key: key.to_owned(),
            },
            Some(kv) => DatastoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: kv.mod_revision,
            },
        };
        let by_current_value = |current: Option<KeyValue>, lost| match current {
            Some(kv) if kv.value == value => Verdict::Done(Ok(kv.mod_revision)),
            _ => Verdict::Done(Err(lost)),
        };
        match self.state_at_expected(key, expected).await? {
            None => return Ok(by_current_value(current, lost)),
            Some(None) => return Ok(Verdict::Done(Err(lost))),
            Some(Some(_)) => {}
        }
        Ok(match self.first_change_after(key, expected, now).await? {
            Some((revision, Some(kv))) if kv.value == value => Verdict::Done(Ok(revision)),
            Some(_) => Verdict::Done(Err(lost)),
            None => by_current_value(current, lost),
        })
    }

    pub(super) async fn resolve_create(
        &self,
        key: &str,
        value: &[u8],
    ) -> Result<Verdict<Revision>, CallError> {
        let (current, _) = self.get_now(key).await?;
        let Some(current) = current else {
            return Ok(Verdict::Retry);
        };
        let ours = match self.get_at(key, current.create_revision).await? {
            PastState::At(Some(created)) => created.value == value,
            PastState::At(None) => false,
            PastState::Compacted => current.value == value,
        };
        Ok(if ours {
            Verdict::Done(Ok(current.create_revision))
        } else {
            Verdict::Done(Err(DatastoreError::AlreadyExists {
                key: key.to_owned(),
            }))
        })
    }

    pub(super) async fn resolve_delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<Verdict<KeyValue>, CallError> {
        let (current, now) = self.get_now(key).await?;
        let Some(expected) = expected else {
            return Ok(match current {
                None => Verdict::Done(Err(DatastoreError::NotFound {
                    key: key.to_owned(),
                })),
                Some(_) => Verdict::Retry,
            });
        };
        if current
            .as_ref()
            .is_some_and(|kv| kv.mod_revision == expected)
        {
            return Ok(Verdict::Retry);
        }
        let lost = match &current {
            None => DatastoreError::NotFound {
                key: key.to_owned(),
            },
            Some(kv) => DatastoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: kv.mod_revision,
            },
        };
        let Some(Some(before)) = self.state_at_expected(key, expected).await? else {
            return Ok(Verdict::Done(Err(lost)));
        };
        Ok(match self.first_change_after(key, expected, now).await? {
            // Deleted while still at `expected`: what our delete would do.
            Some((_, None)) => Verdict::Done(Ok(before)),
            _ => Verdict::Done(Err(lost)),
        })
    }

    pub(super) async fn resolve_put(
        &self,
        key: &str,
        value: &[u8],
    ) -> Result<Verdict<Revision>, CallError> {
        Ok(match self.get_now(key).await?.0 {
            Some(kv) if kv.value == value => Verdict::Done(Ok(kv.mod_revision)),
            _ => Verdict::Retry,
        })
    }
}
