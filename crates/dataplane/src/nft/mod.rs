//! nftables for tortie, programmed with nf_tables netlink messages
//! directly — no `nft` process and no re-reading of the whole ruleset per
//! change (`nft` does, which the issue notes measured at 0.2-0.6 s per
//! call on a large ruleset; `benches/nft.rs` compares the two).
//!
//! Layers, bottom up:
//! - [`msg`], [`expr`] (with private `attr`, `sys`): the codec. Every
//!   nf_tables message tortie sends or reads (tables, chains, rules, sets,
//!   set elements, generation id, batch delimiters, errors) encodes and
//!   decodes losslessly; numbers come from `linux/netfilter/nf_tables.h`
//!   and `nfnetlink.h`.
//! - [`socket`]: the transport. One batch = one datagram = one kernel
//!   transaction; errors map back to the message that caused them.
//! - [`model`]: the desired table ([`Ruleset`]), keyed as the kernel keys
//!   it, remembering what changed.
//! - `installed`, `diff`, `plan`: believed-installed state read from the
//!   kernel, the minimal rule edit per chain, and the ordered delta.
//! - [`reconcile`]: [`Reconciler`] — apply, resync, failure isolation.
//! - [`rules`]: the rule vocabulary (conntrack, dispatch maps, selector
//!   lookups in concatenated sets, mark bits).
//!
//! Tortie owns exactly one table (an `inet` table: one copy of the
//! family-independent chains, conntrack handling and dispatch for IPv4
//! and IPv6, and dual-stack changes in one transaction; only address
//! matches differ, guarded by `meta nfproto`). Everything in that table
//! is tortie's: foreign chains, sets and rules found in it are removed;
//! every other table is never named in any message tortie sends.

mod attr;
mod diff;
pub mod expr;
mod installed;
pub mod model;
pub mod msg;
mod plan;
pub mod reconcile;
pub mod rules;
pub mod socket;
mod sys;

pub use attr::{DecodeError, EncodeError};
pub use expr::{Data, Expr, Reg, Verdict};
pub use model::{
    BaseChain, Chain, ChainType, Hook, Key, KeyField, MapData, Policy, Rule, Ruleset, SetSpec,
    TableId,
};
pub use msg::Family;
pub use plan::Item;
pub use reconcile::{ApplyReport, Failure, Kernel, NftError, Reconciler};
pub use socket::{NftSocket, TransportError};
