//! tortie-calc: the calculation layer (ARCHITECTURE.md). Pure: no I/O, no
//! clock, no tasks. From the datastore's resources it derives this node's
//! desired dataplane state, incrementally, and explains policy verdicts.
//!
//! - Input: syncer updates, raw ([`Calculator::apply_kv`]) or decoded
//!   ([`Calculator::apply`] with an [`Update`]).
//! - [`model`]: every resource in the cluster, parsed, with label
//!   inheritance from profiles (selectors.md §6).
//! - [`Calculator`]: the incremental engine. Label indexes match local
//!   endpoints against policy selectors and every endpoint or network set
//!   against the rule selectors in use here; a change re-evaluates only
//!   the selectors and endpoints it touches.
//! - Output: [`LocalState`] (endpoints with ordered tiers and profiles,
//!   compiled policies, IP sets, routes, VXLAN, NAT, configuration) and
//!   [`Delta`]s of it, ordered for safe application (STYLE.md §2).
//! - [`explain`]: the verdict for one packet and what decided it.
//! - [`reference`]: the same state computed by brute force, the oracle for
//!   tests and the benchmark baseline.

pub mod compile;
pub mod config;
pub mod delta;
mod engine;
pub mod explain;
mod guard;
pub mod ids;
mod index;
pub mod labels;
pub mod model;
pub mod policy;
pub mod reference;
pub mod routes;
pub mod rules;
pub mod selectors;
pub mod state;
pub mod update;
pub mod vxlan;

pub use config::EffectiveConfig;
pub use delta::Delta;
pub use engine::{Calculator, Stats};
pub use explain::{Explanation, Request, explain};
pub use ids::{ItemKey, NetworkSetId, PolicyId, PolicyKind, WorkloadId};
pub use model::ClusterModel;
pub use state::LocalState;
pub use update::{Decoded, Update, UpdateError, decode_kv};
