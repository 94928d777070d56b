//! The IPAM plugin's work (cni.md §5), shared by `tortie-ipam` and by the
//! main plugin when its `ipam.type` is ours (run in-process): the
//! host-wide lock, assign (or reuse), release, verify and GC of one
//! workload's addresses.
//!
//! Hard cases:
//! - Every operation takes the host-wide `flock` on the lock file (created
//!   with its directory if missing) and runs under one 90 s deadline; a
//!   lock that stays busy is "try again later" (code 11).
//! - A repeated ADD for the same container (same handle) returns what the
//!   handle already holds when it matches the request, instead of
//!   allocating a second set; a non-matching holding is released first.
//! - Dual stack is all or nothing: if either family comes up short,
//!   everything assigned by this call is released before failing with
//!   Calico's text (`failed to request IPv4 addresses: Assigned 0 out of 1
//!   requested IPv4 addresses; ...`).
//! - Allocations carry a `network` attribute so GC can tell this network's
//!   handles from another network's whose name shares a prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tortie_ipam::block::OrdinalState;
use tortie_ipam::check::StoredBlock;
use tortie_ipam::{AllowedUse, AssignIpRequest, AutoAssignRequest, IpVersion, Ipam, IpamError};

use crate::error::CniError;

/// Bound of one IPAM operation, lock wait included (cni.md §5.2).
pub const IPAM_TIMEOUT: Duration = Duration::from_secs(90);
/// Attribute naming the CNI network that made an allocation.
pub const NETWORK_ATTR: &str = "network";
/// Longest pause between attempts at a busy lock.
const LOCK_POLL_MAX: Duration = Duration::from_millis(20);

/// The host-wide IPAM lock, held until dropped.
pub struct IpamLock {
    _file: File,
}

impl IpamLock {
    /// Waits (polling, bounded by `deadline`) for the exclusive flock.
    pub async fn acquire(path: &Path, deadline: Instant) -> Result<IpamLock, CniError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                CniError::internal(format!(
                    "cannot create the directory of the IPAM lock file {}: {e}",
                    path.display()
                ))
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| {
                CniError::internal(format!(
                    "cannot open the IPAM lock file {}: {e}",
                    path.display()
                ))
            })?;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(IpamLock { _file: file }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(CniError::internal(format!(
                        "cannot lock the IPAM lock file {}: {e}",
                        path.display()
                    )));
                }
            }
            if Instant::now() + pause > deadline {
                return Err(CniError::try_again(format!(
                    "timed out waiting for the IPAM lock {}; try again later",
                    path.display()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LOCK_POLL_MAX);
        }
    }
}

/// What one workload asks of IPAM.
#[derive(Clone, Debug, Default)]
pub struct AssignRequest {
    pub handle: String,
    pub node: String,
    pub network: String,
    /// `pod`/`namespace` for Kubernetes workloads.
    pub attrs: BTreeMap<String, String>,
    pub num_v4: usize,
    pub num_v6: usize,
    pub v4_pools: Vec<String>,
    pub v6_pools: Vec<String>,
    /// Specific addresses (`IP=` in CNI_ARGS); overrides the counts.
    pub specific: Vec<IpAddr>,
}

async fn bounded<T>(
    what: &str,
    work: impl std::future::Future<Output = Result<T, CniError>>,
) -> Result<T, CniError> {
    match tokio::time::timeout(IPAM_TIMEOUT, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(CniError::try_again(format!(
            "{what} did not finish within {} s; try again later",
            IPAM_TIMEOUT.as_secs()
        ))),
    }
}

/// IPv4 first, then IPv6, each in address order.
fn ordered(mut ips: Vec<IpNet>) -> Vec<IpNet> {
    ips.sort_by_key(|n| (n.addr().is_ipv6(), n.addr()));
    ips
}

/// What the handle holds, if that is what `req` asks for.
fn reusable(held: &[IpNet], req: &AssignRequest) -> Option<Vec<IpNet>> {
    if held.is_empty() {
        return None;
    }
    if !req.specific.is_empty() {
        let have: BTreeSet<IpAddr> = held.iter().map(IpNet::addr).collect();
        let want: BTreeSet<IpAddr> = req.specific.iter().copied().collect();
        return (have == want).then(|| ordered(want.into_iter().map(IpNet::from).collect()));
    }
    let v4 = held.iter().filter(|n| n.addr().is_ipv4()).count();
    (v4 == req.num_v4 && held.len() - v4 == req.num_v6).then(|| ordered(held.to_vec()))
}

async fn held_by(ipam: &Ipam, handle: &str) -> Result<Vec<IpNet>, CniError> {
    match ipam.ips_by_handle(handle).await {
        Ok(ips) => Ok(ips),
        Err(IpamError::HandleNotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

async fn release_handle(ipam: &Ipam, handle: &str) -> Result<(), CniError> {
    match ipam.release_by_handle(handle).await {
        Ok(()) | Err(IpamError::HandleNotFound { .. }) => Ok(()),
        Err(e) => Err(CniError::from(e).context(format!("release handle {handle}"))),
    }
}

/// Assigns the workload's addresses (block prefix lengths for automatic
/// ones, /32 or /128 for specific ones), IPv4 first.
pub async fn assign(
    ipam: &Ipam,
    lock_path: &Path,
    req: &AssignRequest,
) -> Result<Vec<IpNet>, CniError> {
    let deadline = Instant::now() + IPAM_TIMEOUT;
    bounded("IPAM assignment", async {
        let _lock = IpamLock::acquire(lock_path, deadline).await?;
        let held = held_by(ipam, &req.handle).await?;
        if let Some(ips) = reusable(&held, req) {
            tracing::info!(
                handle = req.handle,
                ?ips,
                "the handle already holds the requested addresses; reusing them"
            );
            return Ok(ips);
        }
        if !held.is_empty() {
            tracing::info!(
                handle = req.handle,
                ?held,
                "the handle holds other addresses; releasing them first"
            );
            release_handle(ipam, &req.handle).await?;
        }
        let mut attrs = req.attrs.clone();
        attrs.insert("node".to_string(), req.node.clone());
        attrs.insert(NETWORK_ATTR.to_string(), req.network.clone());
        attrs.insert(
            "timestamp".to_string(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        );
        let assigned = if req.specific.is_empty() {
            assign_auto(ipam, req, attrs).await?
        } else {
            assign_specific(ipam, req, attrs).await?
        };
        tracing::info!(handle = req.handle, ips = ?assigned, "assigned addresses");
        Ok(ordered(assigned))
    })
    .await
}

async fn assign_specific(
    ipam: &Ipam,
    req: &AssignRequest,
    attrs: BTreeMap<String, String>,
) -> Result<Vec<IpNet>, CniError> {
    let mut done = Vec::new();
    for ip in &req.specific {
        let request = AssignIpRequest {
            ip: *ip,
            handle_id: req.handle.clone(),
            attrs: attrs.clone(),
            hostname: req.node.clone(),
            intended_use: Some(AllowedUse::Workload),
        };
        if let Err(e) = ipam.assign_ip(request).await {
            if !done.is_empty() {
                release_handle(ipam, &req.handle).await?;
            }
            return Err(CniError::from(e).context(format!("failed to assign IP {ip}")));
        }
        done.push(IpNet::from(*ip));
    }
    Ok(done)
}

async fn assign_auto(
    ipam: &Ipam,
    req: &AssignRequest,
    attrs: BTreeMap<String, String>,
) -> Result<Vec<IpNet>, CniError> {
    let request = AutoAssignRequest {
        num_v4: req.num_v4,
        num_v6: req.num_v6,
        handle_id: req.handle.clone(),
        attrs,
        hostname: req.node.clone(),
        ipv4_pools: req.v4_pools.clone(),
        ipv6_pools: req.v6_pools.clone(),
        intended_use: AllowedUse::Workload,
        ..AutoAssignRequest::default()
    };
    let result = ipam.auto_assign(request).await?;
    let mut short = Vec::new();
    for (version, family) in [(IpVersion::V4, &result.ipv4), (IpVersion::V6, &result.ipv6)] {
        if let Some(text) = family.shortfall(version) {
            short.push(format!("failed to request {version} addresses: {text}"));
        }
    }
    let assigned: Vec<IpNet> = result
        .ipv4
        .ips
        .iter()
        .chain(&result.ipv6.ips)
        .copied()
        .collect();
    if short.is_empty() {
        return Ok(assigned);
    }
    if !assigned.is_empty() {
        release_handle(ipam, &req.handle).await?;
    }
    Err(CniError::internal(short.join("; ")))
}

/// Releases everything the handles hold; a missing handle is success.
pub async fn release(ipam: &Ipam, lock_path: &Path, handles: &[String]) -> Result<(), CniError> {
    let deadline = Instant::now() + IPAM_TIMEOUT;
    bounded("IPAM release", async {
        let _lock = IpamLock::acquire(lock_path, deadline).await?;
        for handle in handles {
            release_handle(ipam, handle).await?;
        }
        Ok(())
    })
    .await
}

/// Differences between what the handle holds and `expected`.
pub async fn verify(
    ipam: &Ipam,
    handle: &str,
    expected: &[IpAddr],
) -> Result<Vec<String>, CniError> {
    let held: BTreeSet<IpAddr> = match ipam.ips_by_handle(handle).await {
        Ok(ips) => ips.iter().map(IpNet::addr).collect(),
        Err(IpamError::HandleNotFound { .. }) => {
            return Ok(vec![format!("IPAM handle {handle} does not exist")]);
        }
        Err(e) => return Err(e.into()),
    };
    let want: BTreeSet<IpAddr> = expected.iter().copied().collect();
    let mut problems = Vec::new();
    for ip in want.difference(&held) {
        problems.push(format!("IPAM handle {handle} does not hold {ip}"));
    }
    for ip in held.difference(&want) {
        problems.push(format!(
            "IPAM handle {handle} also holds {ip}, which the result does not list"
        ));
    }
    Ok(problems)
}

/// Releases this network's handles on `node` whose container ID is not in
/// `valid`. Returns the handles released.
pub async fn collect_garbage(
    ipam: &Ipam,
    lock_path: &Path,
    network: &str,
    node: &str,
    valid: &BTreeSet<String>,
) -> Result<Vec<String>, CniError> {
    let deadline = Instant::now() + IPAM_TIMEOUT;
    bounded("IPAM garbage collection", async {
        let _lock = IpamLock::acquire(lock_path, deadline).await?;
        let prefix = format!("{network}.");
        let mut stale = BTreeSet::new();
        for stored in ipam.blocks().await? {
            let StoredBlock::Valid(block) = stored else {
                continue;
            };
            for (_, state) in block.occupied() {
                let OrdinalState::Allocated(attr) = state else {
                    continue;
                };
                let attrs = &attr.active_owner_attrs;
                let ours = attrs.get(NETWORK_ATTR).map(String::as_str) == Some(network)
                    && attrs.get("node").map(String::as_str) == Some(node);
                let Some(handle) = attr.handle_id.as_deref().filter(|_| ours) else {
                    continue;
                };
                if let Some(container) = handle.strip_prefix(&prefix)
                    && !valid.contains(container)
                {
                    stale.insert(handle.to_string());
                }
            }
        }
        for handle in &stale {
            tracing::info!(
                handle,
                "GC: releasing the addresses of an attachment the runtime no longer has"
            );
            release_handle(ipam, handle).await?;
        }
        Ok(stale.into_iter().collect())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("net")).collect()
    }

    #[test]
    fn reuse_only_what_matches_the_request() {
        let auto = AssignRequest {
            num_v4: 1,
            num_v6: 1,
            ..AssignRequest::default()
        };
        let held = nets(&["fd00::5/122", "10.0.0.5/26"]);
        assert_eq!(
            reusable(&held, &auto),
            Some(nets(&["10.0.0.5/26", "fd00::5/122"]))
        );
        let v4_only = AssignRequest {
            num_v4: 1,
            ..AssignRequest::default()
        };
        assert_eq!(reusable(&held, &v4_only), None);
        assert_eq!(reusable(&[], &v4_only), None);
        let specific = AssignRequest {
            specific: vec!["10.0.0.5".parse().expect("ip")],
            ..AssignRequest::default()
        };
        assert_eq!(
            reusable(&nets(&["10.0.0.5/26"]), &specific),
            Some(nets(&["10.0.0.5/32"]))
        );
        assert_eq!(reusable(&nets(&["10.0.0.6/26"]), &specific), None);
    }

    #[tokio::test]
    async fn the_lock_is_exclusive_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/ipam.lock");
        let held = IpamLock::acquire(&path, Instant::now() + Duration::from_secs(1))
            .await
            .expect("first lock");
        let err = IpamLock::acquire(&path, Instant::now() + Duration::from_millis(30))
            .await
            .err()
            .expect("second lock times out");
        assert_eq!(err.code, 11);
        drop(held);
        assert!(
            IpamLock::acquire(&path, Instant::now() + Duration::from_secs(1))
                .await
                .is_ok()
        );
    }
}
