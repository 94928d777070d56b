//! tortie-render: the calculation layer's desired local state, rendered
//! into tortie's one nftables table (`inet tortie`).
//!
//! The node daemon feeds every [`tortie_calc::Delta`] to
//! [`PolicyRenderer::apply`], which edits the reconciler's desired
//! [`tortie_dataplane::nft::Ruleset`]; the reconciler then sends the
//! minimal change to the kernel. The renderer touches only what a delta
//! touches: an IP set member becomes one set element, a policy update
//! rewrites that policy's two chains, a workload update its two dispatch
//! entries (and its group's chains when the group is new).
//!
//! Modules, bottom up:
//! - [`names`]: every chain, set and map name, and their length limits.
//! - [`marks`]: the packet-mark bits (ACCEPT, PASS, scratch).
//! - [`exprs`]: expression helpers beyond the dataplane's vocabulary
//!   (ranges, ports, ICMP, reject, NAT, notrack, log).
//! - [`members`]: IP set members as non-overlapping set elements.
//! - [`sets`]: set ids (calc set id → `u32`) and the elements they own.
//! - [`rule`]: one compiled rule → nftables rules.
//! - [`endpoint`]: the tier/profile walk of endpoint chains.
//! - [`groups`]: workloads with equal chains share one (`tw-g<id>`).
//! - [`skeleton`]: base chains, dispatch, failsafe, NAT.
//! - [`renderer`]: [`PolicyRenderer`], which ties them to the delta.
//!
//! The layout (policy.md §6 in nftables terms) is described in
//! `docs/policy.md`, "How tortie programs policy".

pub mod endpoint;
pub mod exprs;
pub mod groups;
pub mod marks;
pub mod members;
pub mod names;
pub mod renderer;
pub mod rule;
pub mod sets;
pub mod skeleton;

pub use renderer::{ItemError, PolicyRenderer, RenderError, RenderStats};
