//! The sysctls tortie keeps (spec/dataplane.md §1.4): the global
//! forwarding switches (and conntrack's liberal TCP window with the fast
//! path), and per workload interface `accept_ra=0`; IPv4
//! `route_localnet=1`, `proxy_delay=0`, `proxy_arp=1`, `forwarding=1`,
//! `rp_filter=<host default, or 0 when the endpoint may spoof>`; IPv6
//! `proxy_ndp=1`, `forwarding=1`.
//!
//! Desired settings are plain values ([`interface_sysctls`],
//! [`global_sysctls`]); [`reconcile`] reads each one and writes only those
//! that differ, through [`SysctlAccess`] so the logic is testable without
//! `/proc`.
//!
//! Hard cases: `accept_ra` and `proxy_delay` are best effort (absent when
//! IPv6 or neighbour tables are not there for that interface) — their
//! failure is not an error; an interface can vanish between the scan and
//! the write, which surfaces as a failed setting the next resync drops
//! with the interface.

use std::io;

use crate::sysctl::{self, SysctlError};

/// One `/proc/sys` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysctl {
    /// Path components under `/proc/sys` (interface names may hold dots).
    pub path: Vec<String>,
    pub value: String,
    /// Failure degrades behaviour only: not reported as an error.
    pub best_effort: bool,
}

impl Sysctl {
    fn new(path: &[&str], value: &str) -> Sysctl {
        Sysctl {
            path: path.iter().map(|p| p.to_string()).collect(),
            value: value.to_string(),
            best_effort: false,
        }
    }

    fn best_effort(mut self) -> Sysctl {
        self.best_effort = true;
        self
    }

    /// The dotted name (`net.ipv4.conf.cali1.proxy_arp`).
    pub fn name(&self) -> String {
        self.path.join(".")
    }

    fn parts(&self) -> Vec<&str> {
        self.path.iter().map(String::as_str).collect()
    }
}

/// Which families and switches apply on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysctlPolicy {
    pub ipv4: bool,
    pub ipv6: bool,
    /// `IPForwarding=Enabled`: set the global forwarding switches.
    pub ip_forwarding: bool,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal=1`: conntrack accepts
    /// TCP segments outside the window it tracked, which it must once the
    /// fast path carries the middle of streams past it
    /// ([`crate::fastpath`]).
    pub conntrack_be_liberal: bool,
}

/// `net.ipv4.ip_forward=1` and `net.ipv6.conf.all.forwarding=1`, as enabled.
pub fn global_sysctls(policy: SysctlPolicy) -> Vec<Sysctl> {
    let mut out = Vec::new();
    if policy.ip_forwarding && policy.ipv4 {
        out.push(Sysctl::new(&["net", "ipv4", "ip_forward"], "1"));
    }
    if policy.ip_forwarding && policy.ipv6 {
        out.push(Sysctl::new(
            &["net", "ipv6", "conf", "all", "forwarding"],
            "1",
        ));
    }
    if policy.conntrack_be_liberal {
        out.push(Sysctl::new(
            &["net", "netfilter", "nf_conntrack_tcp_be_liberal"],
            "1",
        ));
    }
    out
}

/// The settings of one workload interface; `rp_filter` is the value for
/// it (the host default, or 0 when the endpoint may spoof its source).
pub fn interface_sysctls(policy: SysctlPolicy, iface: &str, rp_filter: u8) -> Vec<Sysctl> {
    let mut out =
        vec![Sysctl::new(&["net", "ipv6", "conf", iface, "accept_ra"], "0").best_effort()];
    if policy.ipv4 {
        let rp = rp_filter.to_string();
        out.extend([
            Sysctl::new(&["net", "ipv4", "conf", iface, "route_localnet"], "1"),
            Sysctl::new(&["net", "ipv4", "neigh", iface, "proxy_delay"], "0").best_effort(),
            Sysctl::new(&["net", "ipv4", "conf", iface, "proxy_arp"], "1"),
            Sysctl::new(&["net", "ipv4", "conf", iface, "forwarding"], "1"),
            Sysctl::new(&["net", "ipv4", "conf", iface, "rp_filter"], &rp),
        ]);
    }
    if policy.ipv6 {
        out.extend([
            Sysctl::new(&["net", "ipv6", "conf", iface, "proxy_ndp"], "1"),
            Sysctl::new(&["net", "ipv6", "conf", iface, "forwarding"], "1"),
        ]);
    }
    out
}

/// Reads and writes `/proc/sys` entries by parts.
pub trait SysctlAccess {
    fn read(&self, parts: &[&str]) -> io::Result<String>;
    fn write(&self, parts: &[&str], value: &str) -> Result<(), SysctlError>;
}

/// The real `/proc/sys` of the calling thread's network namespace.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSys;

impl SysctlAccess for ProcSys {
    fn read(&self, parts: &[&str]) -> io::Result<String> {
        sysctl::read(parts)
    }

    fn write(&self, parts: &[&str], value: &str) -> Result<(), SysctlError> {
        sysctl::write(parts, value)
    }
}

/// A setting that was changed: its name and the value found before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlChange {
    pub name: String,
    pub was: Option<String>,
    pub now: String,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SysctlReport {
    pub changed: Vec<SysctlChange>,
    /// Required settings that could not be written, with the error.
    pub failed: Vec<(String, String)>,
}

/// Makes every setting of `wanted` hold, writing only those that differ.
pub fn reconcile(access: &impl SysctlAccess, wanted: &[Sysctl]) -> SysctlReport {
    let mut report = SysctlReport::default();
    for s in wanted {
        let parts = s.parts();
        let was = match access.read(&parts) {
            Ok(v) if v == s.value => continue,
            Ok(v) => Some(v),
            Err(_) if s.best_effort => continue,
            Err(_) => None,
        };
        match access.write(&parts, &s.value) {
            Ok(()) => report.changed.push(SysctlChange {
                name: s.name(),
                was,
                now: s.value.clone(),
            }),
            Err(e) if s.best_effort => {
                tracing::debug!(sysctl = %s.name(), error = %e, "optional sysctl not set");
            }
            Err(e) => report.failed.push((s.name(), e.to_string())),
        }
    }
    report
}

/// The host's default `rp_filter` (1 when unreadable), the value workload
/// interfaces get unless they may spoof.
pub fn default_rp_filter(access: &impl SysctlAccess) -> u8 {
    access
        .read(&["net", "ipv4", "conf", "default", "rp_filter"])
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// An in-memory `/proc/sys`.
    #[derive(Default)]
    struct FakeProc {
        values: RefCell<HashMap<String, String>>,
        writes: RefCell<usize>,
    }

    impl FakeProc {
        fn with(entries: &[(&str, &str)]) -> FakeProc {
            let fake = FakeProc::default();
            for (k, v) in entries {
                fake.values
                    .borrow_mut()
                    .insert(k.to_string(), v.to_string());
            }
            fake
        }
    }

    impl SysctlAccess for FakeProc {
        fn read(&self, parts: &[&str]) -> io::Result<String> {
            self.values
                .borrow()
                .get(&parts.join("."))
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }

        fn write(&self, parts: &[&str], value: &str) -> Result<(), SysctlError> {
            let name = parts.join(".");
            let mut values = self.values.borrow_mut();
            if !values.contains_key(&name) {
                return Err(SysctlError {
                    name,
                    value: value.to_string(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                });
            }
            *self.writes.borrow_mut() += 1;
            values.insert(name, value.to_string());
            Ok(())
        }
    }

    const BOTH: SysctlPolicy = SysctlPolicy {
        ipv4: true,
        ipv6: true,
        ip_forwarding: true,
        conntrack_be_liberal: false,
    };

    fn names(list: &[Sysctl]) -> Vec<String> {
        list.iter()
            .map(|s| format!("{}={}", s.name(), s.value))
            .collect()
    }

    #[test]
    fn settings_follow_the_spec() {
        assert_eq!(
            names(&interface_sysctls(BOTH, "cali1", 2)),
            vec![
                "net.ipv6.conf.cali1.accept_ra=0",
                "net.ipv4.conf.cali1.route_localnet=1",
                "net.ipv4.neigh.cali1.proxy_delay=0",
                "net.ipv4.conf.cali1.proxy_arp=1",
                "net.ipv4.conf.cali1.forwarding=1",
                "net.ipv4.conf.cali1.rp_filter=2",
                "net.ipv6.conf.cali1.proxy_ndp=1",
                "net.ipv6.conf.cali1.forwarding=1",
            ]
        );
        let v4_only = SysctlPolicy {
            ipv6: false,
            ..BOTH
        };
        assert_eq!(
            names(&global_sysctls(v4_only)),
            vec!["net.ipv4.ip_forward=1"]
        );
        let off = SysctlPolicy {
            ip_forwarding: false,
            ..BOTH
        };
        assert!(global_sysctls(off).is_empty());
        assert_eq!(names(&global_sysctls(BOTH)).len(), 2);
        let fast = SysctlPolicy {
            conntrack_be_liberal: true,
            ..BOTH
        };
        assert!(
            names(&global_sysctls(fast))
                .contains(&"net.netfilter.nf_conntrack_tcp_be_liberal=1".to_string())
        );
    }

    #[test]
    fn writes_only_what_differs_and_reports_drift() {
        let fake = FakeProc::with(&[
            ("net.ipv4.conf.cali1.proxy_arp", "0"),
            ("net.ipv4.conf.cali1.forwarding", "1"),
            ("net.ipv4.conf.cali1.route_localnet", "1"),
            ("net.ipv4.conf.cali1.rp_filter", "1"),
        ]);
        let v4_only = SysctlPolicy {
            ipv6: false,
            ..BOTH
        };
        let wanted = interface_sysctls(v4_only, "cali1", 1);
        let report = reconcile(&fake, &wanted);
        // accept_ra and proxy_delay are absent here: best effort, silent.
        assert_eq!(
            report.changed,
            vec![SysctlChange {
                name: "net.ipv4.conf.cali1.proxy_arp".into(),
                was: Some("0".into()),
                now: "1".into(),
            }]
        );
        assert!(report.failed.is_empty());
        assert_eq!(*fake.writes.borrow(), 1);
        assert_eq!(reconcile(&fake, &wanted), SysctlReport::default());
    }

    #[test]
    fn required_failures_are_reported() {
        let fake = FakeProc::default();
        let wanted = global_sysctls(BOTH);
        let report = reconcile(&fake, &wanted);
        assert_eq!(report.failed.len(), 2);
        assert_eq!(report.failed[0].0, "net.ipv4.ip_forward");
    }

    #[test]
    fn rp_filter_defaults_to_the_hosts_or_one() {
        assert_eq!(default_rp_filter(&FakeProc::default()), 1);
        let fake = FakeProc::with(&[("net.ipv4.conf.default.rp_filter", "2")]);
        assert_eq!(default_rp_filter(&fake), 2);
        // And the real one parses.
        assert!(default_rp_filter(&ProcSys) <= 2);
    }
}
