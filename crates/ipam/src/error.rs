//! The IPAM error type. Texts that callers, scripts or the CNI plugin match
//! on are Calico's (ipam.md §3-§6); variants carry the address, block,
//! handle or key concerned.

use std::net::IpAddr;

use ipnet::IpNet;
use tortie_client::ClientError;
use tortie_datastore::DatastoreError;

use crate::block::ReleaseConflict;

#[derive(thiserror::Error, Debug)]
pub enum IpamError {
    /// No automatic pool selects the host (§3.3 step 3).
    #[error("no configured Calico pools for node {host}")]
    NoPoolsForHost { host: String },

    /// Pools select the host but none allows the intended use (§3.3 step 4).
    #[error("cannot find a qualified ippool")]
    NoQualifiedPool,

    /// An explicitly requested pool is missing or disabled (§3.3 step 2).
    #[error("the given pool ({pool}) does not exist, or is not enabled")]
    PoolNotUsable { pool: String },

    /// A specific IP outside every enabled pool (§3.7 step 1).
    #[error("The provided IP address is not in a configured pool")]
    NotInPool { ip: IpAddr },

    /// A specific IP in a pool that does not allow the intended use.
    #[error(
        "The provided IP address {ip} is in pool {pool}, which does not allow use {intended_use}"
    )]
    UseNotAllowed {
        ip: IpAddr,
        pool: IpNet,
        intended_use: String,
    },

    /// A specific IP that is already allocated (§3.7 step 4).
    #[error("Address already assigned in block")]
    AlreadyAssigned { ip: IpAddr, block: IpNet },

    /// A specific IP that was released and is still cooling down (§5.3).
    #[error("Address {ip} was released recently and is cooling down in block {block}")]
    CoolingDown { ip: IpAddr, block: IpNet },

    /// Strict affinity forbids using another owner's block (§3.7 step 3).
    #[error(
        "block {block} is affine to {owner}; strict affinity forbids assigning {ip} to {requester}"
    )]
    StrictAffinity {
        ip: IpAddr,
        block: IpNet,
        owner: String,
        requester: String,
    },

    /// Release by handle of a handle that does not exist (§5.2).
    #[error("resource does not exist: IPAMHandle({handle})")]
    HandleNotFound { handle: String },

    /// A release whose sequence number or handle does not match (§5.1, §5.4).
    #[error("update conflict: release of {ip} in block {block}: {conflict}")]
    ReleaseConflict {
        ip: IpAddr,
        block: IpNet,
        conflict: ReleaseConflict,
    },

    /// Affinity release of a block that still holds addresses (§6 step 3).
    #[error("block {block} is not empty")]
    BlockNotEmpty { block: IpNet },

    /// Affinity release whose required sequence number no longer matches.
    #[error("block {block} changed since it was read (sequence number {expected}, now {actual})")]
    BlockChanged {
        block: IpNet,
        expected: u64,
        actual: u64,
    },

    /// A compare-and-swap loop lost too many races (§3.1).
    #[error("Max retries hit - excessive concurrent IPAM requests")]
    MaxRetries { key: String },

    /// A stored IPAM value that cannot be read (or a structurally invalid
    /// block, which is never allocated from).
    #[error("the IPAM value stored at {key} is invalid: {reason}")]
    Corrupt { key: String, reason: String },

    #[error("invalid IPAM configuration: {0}")]
    InvalidConfig(String),

    #[error("invalid IPAM request: {0}")]
    InvalidRequest(String),

    #[error(transparent)]
    Datastore(#[from] DatastoreError),

    #[error(transparent)]
    Client(#[from] ClientError),
}
