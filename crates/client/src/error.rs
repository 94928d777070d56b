//! Errors of resource operations, worded as calicoctl words them so scripts
//! and operators see familiar messages.

use tortie_datastore::DatastoreError;
use tortie_model::ValidationError;

#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    #[error("resource does not exist: {id}")]
    NotFound { id: String },

    #[error("resource already exists: {id}")]
    AlreadyExists { id: String },

    /// The caller's resourceVersion is not the stored one.
    #[error(
        "resource version '{given}' is out of date (latest: {latest}). Update the resource YAML/JSON in order to make changes"
    )]
    OutOfDate {
        id: String,
        given: String,
        latest: String,
    },

    /// Another writer kept winning the compare-and-swap.
    #[error("update conflict: {id}: the resource kept changing; try again")]
    Conflict { id: String },

    #[error(transparent)]
    Invalid(#[from] ValidationError),

    /// A write refused for a reason that involves other resources or the
    /// stored state (overlapping pools, immutable fields, missing tiers).
    #[error("{id}: {reason}")]
    Rejected { id: String, reason: String },

    #[error(transparent)]
    Datastore(#[from] DatastoreError),

    #[error("the value stored at {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
}

/// Calico's way of naming a resource in datastore errors: `IPPool(p1)`,
/// `NetworkPolicy(ns/name)`.
pub fn calico_id(kind: tortie_model::Kind, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind}({name})")
    } else {
        format!("{kind}({namespace}/{name})")
    }
}
