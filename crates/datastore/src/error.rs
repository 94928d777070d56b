//! The one error type of the datastore boundary.
//!
//! Variants carry the key or endpoint they concern so a message read in a
//! log names what failed. `Conflict` carries the revision actually found so
//! a compare-and-swap loop can report or retry without another read.
//! `Clone` because errors travel through watch channels and syncer retries.

use crate::Revision;

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DatastoreError {
    #[error("key {key} does not exist")]
    NotFound { key: String },

    #[error("key {key} already exists")]
    AlreadyExists { key: String },

    #[error("update conflict on {key}: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },

    #[error(
        "revision {requested} has been compacted; the oldest revision still available is {compacted}"
    )]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    #[error("cannot reach {endpoint}: {reason}")]
    Unavailable { endpoint: String, reason: String },

    #[error("invalid datastore configuration: {0}")]
    InvalidConfig(String),

    /// A backend or datastore type tortie does not provide.
    #[error("{0}")]
    Unsupported(String),

    /// A request no backend could serve (empty key, future revision).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The backend failed; the message names the backend (e.g. the file).
    #[error("{0}")]
    Backend(String),
}
