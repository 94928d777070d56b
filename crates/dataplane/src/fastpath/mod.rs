//! The established-flow fast path: a tc program (tcx ingress) on every
//! workload interface that hands packets of established, policy-approved
//! TCP connections between two pods of this node straight to the
//! destination pod, instead of routing them through the host's stack,
//! netfilter and a second veth queue. What it takes and what it leaves to
//! the slow path is in [`program`]; in short it only ever shortcuts what
//! the slow path would have forwarded unchanged, and everything it is not
//! sure of continues as if it were not there.
//!
//! [`FastPath::open`] finds out whether this kernel can run it (BTF,
//! conntrack built in with the kfuncs of Linux 6.1, tcx of 6.6) and says
//! why not when it cannot; the daemon runs without it then. The links
//! reconciler has it attached to workload interfaces as they appear, taken
//! off interfaces that get a shaping qdisc, and the set kept right on
//! every resync, all through an [`attacher::Attacher`], because each
//! attach and detach costs the kernel an RCU grace period.
//!
//! Conntrack no longer sees the middle of such a stream, so its TCP window
//! tracking would call the closing FIN out of window (invalid, dropped).
//! [`FastPath::open`] sets `nf_conntrack_tcp_be_liberal=1` in the node's
//! namespace, or fails; the links reconciler keeps it set (see
//! [`crate::links::sysctls::SysctlPolicy`]). kube-proxy and Cilium offer
//! the same setting for the same reason.
//!
//! Ownership: links are tied to the daemon's file descriptors. When the
//! daemon exits, however it exits, the kernel detaches the program and
//! traffic takes the slow path, established connections included.

mod asm;
pub mod attacher;
pub mod btf;
pub mod program;
mod sys;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use btf::Btf;
use program::KernelLayout;

/// Connection timeout the program refreshes to when conntrack's own
/// setting cannot be read (its default: five days).
const DEFAULT_ESTABLISHED_TIMEOUT_S: u64 = 432_000;

/// How many workload interfaces the targets map holds.
const MAX_TARGETS: u32 = 65_536;

/// Why the fast path is not available.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    #[error("only little-endian hosts are supported")]
    BigEndian,
    #[error("{0} (needs a kernel with BTF and conntrack kfuncs, Linux 6.1 or later)")]
    Kernel(#[from] btf::BtfError),
    #[error(
        "conntrack is a kernel module here (CONFIG_NF_CONNTRACK=m); its kfuncs are described by \
         the module's own type information, which tortie does not read yet"
    )]
    ConntrackModule,
    #[error("cannot set nf_conntrack_tcp_be_liberal, which the fast path needs: {0}")]
    Liberal(crate::sysctl::SysctlError),
    #[error("cannot create the targets map: {0}")]
    Map(io::Error),
    #[error("the kernel refused the program: {0}")]
    Load(#[from] sys::LoadError),
    #[error("this kernel has no tcx (Linux 6.6) to attach the program with")]
    NoTcx,
}

/// The loaded program, its targets map, and its links by interface index.
#[derive(Debug)]
pub struct FastPath {
    program: OwnedFd,
    targets: OwnedFd,
    links: HashMap<u32, OwnedFd>,
}

impl FastPath {
    /// Loads the program for the running kernel, in the calling thread's
    /// network namespace, once its type information shows tcx (`struct
    /// tcx_link`, Linux 6.6). Sets `nf_conntrack_tcp_be_liberal=1` there
    /// first: without it, no fast path.
    pub fn open() -> Result<FastPath, FastPathError> {
        if cfg!(target_endian = "big") {
            return Err(FastPathError::BigEndian);
        }
        let btf = Btf::from_kernel()?;
        let layout = kernel_layout(&btf).map_err(|e| {
            // Built as a module, conntrack describes its kfuncs in its own
            // type information.
            if std::path::Path::new("/sys/kernel/btf/nf_conntrack").exists() {
                FastPathError::ConntrackModule
            } else {
                FastPathError::Kernel(e)
            }
        })?;
        if btf.struct_size("tcx_link").is_err() {
            return Err(FastPathError::NoTcx);
        }
        crate::sysctl::write(&["net", "netfilter", "nf_conntrack_tcp_be_liberal"], "1")
            .map_err(FastPathError::Liberal)?;
        let targets = sys::create_hash_map("tortie_targets", 4, 4, MAX_TARGETS)
            .map_err(FastPathError::Map)?;
        let insns = program::assemble(&layout, targets.as_raw_fd(), established_timeout_ms());
        let program = sys::load_tc_program("tortie_fast", &insns)?;
        Ok(FastPath {
            program,
            targets,
            links: HashMap::new(),
        })
    }

    /// Attaches to interface `ifindex` and makes it a target; a no-op
    /// when already attached.
    pub fn attach(&mut self, ifindex: u32) -> io::Result<()> {
        if self.links.contains_key(&ifindex) {
            return Ok(());
        }
        sys::map_update(&self.targets, &ifindex.to_ne_bytes(), &1u32.to_ne_bytes())?;
        match sys::attach_tcx_ingress(&self.program, ifindex) {
            Ok(link) => {
                self.links.insert(ifindex, link);
                Ok(())
            }
            Err(e) => {
                let _ = sys::map_delete(&self.targets, &ifindex.to_ne_bytes());
                Err(e)
            }
        }
    }

    /// Forgets interface `ifindex` (gone, or no longer a workload's).
    pub fn detach(&mut self, ifindex: u32) {
        self.links.remove(&ifindex);
        if let Err(e) = sys::map_delete(&self.targets, &ifindex.to_ne_bytes()) {
            tracing::warn!(ifindex, error = %e, "cannot remove a fast-path target");
        }
    }

    /// Forgets links the kernel has detached by itself (their interface
    /// was deleted, perhaps to be recreated under the same index), so the
    /// next [`FastPath::attach`] attaches again.
    pub fn forget_detached(&mut self) {
        let detached: Vec<u32> = self
            .links
            .iter()
            .filter(|(ifindex, link)| sys::tcx_link_ifindex(link).ok() != Some(**ifindex))
            .map(|(ifindex, _)| *ifindex)
            .collect();
        for ifindex in detached {
            self.links.remove(&ifindex);
        }
    }

    /// Detaches from every interface `keep` rejects.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        let gone: Vec<u32> = self.links.keys().copied().filter(|i| !keep(*i)).collect();
        for ifindex in gone {
            self.detach(ifindex);
        }
    }

    /// How many interfaces it is attached to.
    pub fn attached(&self) -> usize {
        self.links.len()
    }

    /// Whether it is attached to `ifindex`.
    pub fn is_attached(&self, ifindex: u32) -> bool {
        self.links.contains_key(&ifindex)
    }
}

fn kernel_layout(btf: &Btf) -> Result<KernelLayout, btf::BtfError> {
    // The program loads `status` as 8 bytes and the TCP state as 1.
    let offset = |path: &[&str], size: u32| -> Result<i16, btf::BtfError> {
        let field = btf.field("nf_conn", path)?;
        if field.size != size {
            return Err(btf::BtfError::Malformed(
                "nf_conn field of an unexpected size",
            ));
        }
        i16::try_from(field.offset)
            .map_err(|_| btf::BtfError::Malformed("nf_conn field offset too large"))
    };
    Ok(KernelLayout {
        ct_lookup: btf.function_id("bpf_skb_ct_lookup")?,
        ct_release: btf.function_id("bpf_ct_release")?,
        ct_change_timeout: btf.function_id("bpf_ct_change_timeout")?,
        ct_opts_size: btf.struct_size("bpf_ct_opts")?,
        status_offset: offset(&["status"], 8)?,
        tcp_state_offset: offset(&["proto", "tcp", "state"], 1)?,
    })
}

/// Conntrack's timeout for established TCP connections, in milliseconds.
fn established_timeout_ms() -> u32 {
    let seconds =
        crate::sysctl::read(&["net", "netfilter", "nf_conntrack_tcp_timeout_established"])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(DEFAULT_ESTABLISHED_TIMEOUT_S);
    u32::try_from(seconds.saturating_mul(1000).min(i32::MAX as u64)).unwrap_or(i32::MAX as u32)
}
