//! The bpf(2) calls the fast path makes: load a program, create a hash
//! map and change its elements, and attach a program to an interface's
//! ingress as a tcx link. Nothing in tortie's dependencies wraps bpf(2)
//! for hand-assembled programs, so this is the one module of the crate
//! with `unsafe`: each call passes a `repr(C)` attribute block the kernel
//! reads (and, for the verifier log, writes into a buffer we own) for the
//! length of the call only.
//!
//! Every object comes back as an [`OwnedFd`]: closing the last descriptor
//! of a tcx link detaches the program, so a daemon that exits, however it
//! exits, leaves no program behind.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_HASH: u32 = 1;
/// Elements are allocated as they are added, not all up front.
const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// `BPF_TCX_INGRESS` (Linux 6.6).
const BPF_TCX_INGRESS: u32 = 46;

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised repr(C) block of the size we
    // pass; the kernel reads it (and writes only into buffers it points
    // to, which the callers keep alive across the call).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd_of(rc: libc::c_long) -> OwnedFd {
    // SAFETY: a successful object-creating bpf(2) call returns a new file
    // descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// A hash map of `key_size`-byte keys and `value_size`-byte values,
/// holding memory only for the elements it has.
pub fn create_hash_map(
    name: &str,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreate {
        map_type: BPF_MAP_TYPE_HASH,
        key_size,
        value_size,
        max_entries,
        map_flags: BPF_F_NO_PREALLOC,
        map_name: object_name(name),
        ..MapCreate::default()
    };
    bpf(BPF_MAP_CREATE, &mut attr).map(fd_of)
}

#[repr(C)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl MapElem {
    /// `value` 0 for a delete; flags 0 (`BPF_ANY`).
    fn new(map: &OwnedFd, key: &[u8], value: u64) -> MapElem {
        MapElem {
            map_fd: map.as_raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value,
            flags: 0,
        }
    }
}

/// Inserts or replaces `key` → `value`.
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElem::new(map, key, value.as_ptr() as u64);
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Removes `key`; absent keys are not an error.
pub fn map_delete(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    let mut attr = MapElem::new(map, key, 0);
    match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other.map(drop),
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// A program the verifier refused, or a kernel that cannot load it.
#[derive(Debug, thiserror::Error)]
#[error("{source}{}", if log.is_empty() { String::new() } else { format!("; verifier: {log}") })]
pub struct LoadError {
    pub source: io::Error,
    /// The last lines of the verifier's log.
    pub log: String,
}

/// Loads a tc classifier (`insns` in the kernel's 8-byte encoding) for
/// tcx ingress. On refusal the verifier's log is loaded again with the
/// log on, so the error says which instruction it objected to.
pub fn load_tc_program(name: &str, insns: &[u64]) -> Result<OwnedFd, LoadError> {
    let license = b"GPL\0";
    let load = |log: &mut Vec<u8>| {
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_SCHED_CLS,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            prog_name: object_name(name),
            expected_attach_type: BPF_TCX_INGRESS,
            ..ProgLoad::default()
        };
        bpf(BPF_PROG_LOAD, &mut attr).map(fd_of)
    };
    match load(&mut Vec::new()) {
        Ok(fd) => Ok(fd),
        Err(source) => {
            let mut log = vec![0u8; 256 * 1024];
            let _ = load(&mut log);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let tail: Vec<&str> = text.lines().rev().take(6).collect();
            let log = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
            Err(LoadError { source, log })
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

/// Attaches `prog` to the ingress of interface `ifindex` (tcx, after the
/// programs already there). Detached when the returned link is closed or
/// the interface goes away.
pub fn attach_tcx_ingress(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_TCX_INGRESS,
        ..LinkCreate::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr).map(fd_of)
}

#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_link_info` up to the tcx member.
#[repr(C)]
#[derive(Default)]
struct TcxLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    ifindex: u32,
    attach_type: u32,
}

/// The interface a tcx link is attached to; 0 once the kernel detached
/// it (the interface was deleted).
pub fn tcx_link_ifindex(link: &OwnedFd) -> io::Result<u32> {
    let mut info = TcxLinkInfo::default();
    let mut attr = InfoByFd {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: std::mem::size_of::<TcxLinkInfo>() as u32,
        info: &mut info as *mut TcxLinkInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.ifindex)
}

fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}
