//! tortie-ipam: block-affinity IP address management (spec/ipam.md).
//!
//! Two layers:
//!
//! - A **pure core** with no I/O: [`block`] (allocate, release, cooldown,
//!   sequence numbers, attribute de-duplication, structural validation),
//!   [`pools`] (which pools a request may use), [`blockgen`] (the per-host
//!   block generator), [`affinity`] (the two-phase claim as a state
//!   machine), [`reservations`], [`handle`], [`config`], [`usage`] and
//!   [`check`] (the `ipam check` analysis).
//! - A **datastore adapter**, [`Ipam`], that runs the multi-step protocols
//!   as compare-and-swap loops over the [`tortie_datastore::Datastore`]:
//!   every change to a block, affinity or handle is one CAS at the revision
//!   that was read, retried (re-reading, never mutating a stale copy) at
//!   most 100 times per object.
//!
//! The safety argument — no address is ever given to two workloads — rests
//! on one fact: an ordinal is taken only by a CAS write of its block, and a
//! block is deleted only by a CAS delete of a copy that held no
//! allocation. Handles and affinities are bookkeeping written around those
//! block writes in an order chosen so that a crash between any two writes
//! leaves at most a leak (an over-counted handle, a stale affinity, an
//! allocation nobody uses), which [`check`] reports. See `adapter` for the
//! write orders.

pub mod affinity;
pub mod block;
pub mod blockgen;
pub mod check;
pub mod cidr;
pub mod clock;
pub mod config;
mod error;
pub mod handle;
pub mod keys;
pub mod pools;
pub mod reservations;
pub mod tunnel;
pub mod usage;

mod adapter;

pub use adapter::{
    AffinityReleaseOutcome, AffinityReleaseSummary, AllocationInfo, AssignIpRequest,
    AutoAssignRequest, AutoAssignResult, BorrowedAllocation, ClaimAffinityOutcome,
    FamilyAssignment, Ipam, MAX_CAS_ATTEMPTS, ReleaseFailure, ReleaseOutcome, ReleaseRequest,
};
pub use cidr::IpVersion;
pub use config::IpamConfig;
pub use error::IpamError;
pub use tortie_model::ippool::AllowedUse;
