//! Reading and writing `/proc/sys` entries by their dotted names.
//!
//! `/proc/sys/net` belongs to the network namespace of the thread that
//! opens the file, so these functions act on the caller's namespace: call
//! them from a [`crate::netns::Netns::run`] worker for the container.
//!
//! Hard case: interface names may contain dots (`eth0.100`), which the
//! dotted form cannot express; the per-interface helpers build the path
//! from parts instead.

use std::io;
use std::path::PathBuf;

/// A sysctl that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot set {name}={value}: {source}")]
pub struct SysctlError {
    pub name: String,
    pub value: String,
    pub source: io::Error,
}

fn path_of(parts: &[&str]) -> PathBuf {
    let mut path = PathBuf::from("/proc/sys");
    for p in parts {
        path.push(p);
    }
    path
}

/// Writes `value` to `/proc/sys/<parts...>`.
pub fn write(parts: &[&str], value: &str) -> Result<(), SysctlError> {
    std::fs::write(path_of(parts), value).map_err(|source| SysctlError {
        name: parts.join("."),
        value: value.to_string(),
        source,
    })
}

/// Reads `/proc/sys/<parts...>`, trimmed.
pub fn read(parts: &[&str]) -> io::Result<String> {
    std::fs::read_to_string(path_of(parts)).map(|s| s.trim().to_string())
}

/// Writes a sysctl whose absence or refusal only degrades behaviour:
/// failures are logged at debug level.
pub fn write_best_effort(parts: &[&str], value: &str) {
    if let Err(e) = write(parts, value) {
        tracing::debug!(error = %e, "optional sysctl not set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_dotted_interface_names_whole() {
        assert_eq!(
            path_of(&["net", "ipv4", "conf", "eth0.100", "proxy_arp"]),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/proxy_arp")
        );
    }

    #[test]
    fn reads_and_reports_failures_by_name() {
        assert!(read(&["kernel", "ostype"]).is_ok_and(|s| s == "Linux"));
        let err = write(&["net", "ipv4", "conf", "no-such-if", "proxy_arp"], "1")
            .expect_err("no such interface");
        assert_eq!(err.name, "net.ipv4.conf.no-such-if.proxy_arp");
    }
}
