//! tortie-dataplane: the reconcilers that program this host's kernel from
//! the desired state the calculation layer derives (ARCHITECTURE.md,
//! STYLE.md §2). Each owns one kind of kernel object, keeps desired versus
//! believed-installed state, applies minimal batched deltas and resyncs on
//! a timer so that anything removed or altered behind its back comes back.
//! Everything tortie creates carries its tag (route protocol number, the
//! `cali` interface prefix, its own device names, its own nftables table);
//! foreign objects are never touched.
//!
//! Kernel plumbing shared by the reconcilers: [`netns`] (work inside
//! another network namespace), [`sysctl`] (`/proc/sys` by parts) and
//! [`netlink`] (pipelined rtnetlink requests and dumps), and [`driver`],
//! the loop every desired-state reconciler runs. Reconcilers: [`routes`],
//! [`links`] (interface monitoring and sysctls), [`vxlan`], with [`ipip`]
//! detection and `tunl0` programming.

pub mod driver;
pub mod fastpath;
pub mod ipip;
pub mod links;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod routes;
pub mod sysctl;
pub mod vxlan;
