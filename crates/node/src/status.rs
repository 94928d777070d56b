//! What the daemon reports about itself: the status snapshot served on
//! `/status` and printed by `tortie node status`, and the readiness rule.
//!
//! The main loop owns the status and publishes snapshots through a
//! `tokio::sync::watch` channel; the HTTP server only reads them.

use serde::{Deserialize, Serialize};

/// One snapshot of the daemon's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub version: String,
    pub datastore: String,
    /// The datastore is reachable and the syncer has delivered a complete
    /// snapshot.
    pub in_sync: bool,
    /// The kernel has been programmed from an in-sync snapshot.
    pub programmed: bool,
    /// The node's address (with prefix) registered in its Node resource.
    pub node_ip: String,
    /// The node's IPv6 address (with prefix), when it has one (`--ip6`).
    #[serde(default)]
    pub node_ip6: Option<String>,
    /// The VXLAN tunnel address, when a VXLAN pool is in use.
    pub vxlan_tunnel_address: Option<String>,
    /// The IPv6 VXLAN tunnel address, when an IPv6 VXLAN pool is in use.
    #[serde(default)]
    pub vxlan_v6_tunnel_address: Option<String>,
    /// The IPIP tunnel address (`tunl0`), when an IPIP pool is in use.
    #[serde(default)]
    pub ipip_tunnel_address: Option<String>,
    /// IPIP support of this kernel: `None` until probed.
    pub ipip_supported: Option<bool>,
    /// Why IPIP is unavailable, when it is.
    pub ipip_detail: String,
    /// Whether the established-flow fast path is on: `None` until known.
    #[serde(default)]
    pub fast_path: Option<bool>,
    /// Why it is off, when it is.
    #[serde(default)]
    pub fast_path_detail: String,
    pub local_endpoints: usize,
    pub active_policies: usize,
    /// Local workload endpoints whose interface is up.
    #[serde(default)]
    pub endpoints_up: usize,
    /// Local workload endpoints whose interface is down or missing.
    #[serde(default)]
    pub endpoints_down: usize,
    /// Their names and interfaces (the first [`MAX_LISTED`]).
    #[serde(default)]
    pub down_endpoints: Vec<String>,
    /// Reconcilers whose kernel state is behind the desired state.
    #[serde(default)]
    pub behind: Vec<String>,
    /// Policy changes that could not be rendered into nftables.
    #[serde(default)]
    pub render_errors: u64,
    /// Problems an operator should know about, newest last (bounded).
    pub problems: Vec<String>,
}

/// How many down endpoints the status names.
pub const MAX_LISTED: usize = 50;

/// How many recent problems the status keeps.
pub const MAX_PROBLEMS: usize = 20;

impl NodeStatus {
    /// Ready once in sync with the datastore and programmed.
    pub fn ready(&self) -> bool {
        self.in_sync && self.programmed
    }

    pub fn add_problem(&mut self, problem: String) {
        if self.problems.last() != Some(&problem) {
            self.problems.push(problem);
        }
        let excess = self.problems.len().saturating_sub(MAX_PROBLEMS);
        self.problems.drain(..excess);
    }

    /// The human-readable report of `tortie node status`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "tortie node {} ({}) is {}\n",
            self.node,
            self.version,
            if self.ready() { "ready" } else { "NOT READY" }
        );
        out.push_str(&format!(
            "Datastore:   {} ({})\n",
            self.datastore,
            if self.in_sync {
                "in sync"
            } else {
                "not in sync"
            }
        ));
        out.push_str(&format!("Node IP:     {}\n", self.node_ip));
        if let Some(ip6) = &self.node_ip6 {
            out.push_str(&format!("Node IPv6:   {ip6}\n"));
        }
        match (&self.vxlan_tunnel_address, &self.vxlan_v6_tunnel_address) {
            (None, None) => out.push_str("VXLAN:       not in use (no pool has vxlanMode)\n"),
            (v4, v6) => {
                if let Some(a) = v4 {
                    out.push_str(&format!("VXLAN:       vxlan.calico, tunnel address {a}\n"));
                }
                if let Some(a) = v6 {
                    out.push_str(&format!(
                        "VXLAN:       vxlan-v6.calico, tunnel address {a}\n"
                    ));
                }
            }
        }
        match (self.ipip_supported, &self.ipip_tunnel_address) {
            (Some(true), Some(a)) => {
                out.push_str(&format!("IPIP:        tunl0, tunnel address {a}\n"))
            }
            (Some(true), None) => {
                out.push_str("IPIP:        supported, not in use (no pool has ipipMode)\n")
            }
            (Some(false), _) => {
                out.push_str(&format!("IPIP:        UNAVAILABLE: {}\n", self.ipip_detail))
            }
            (None, _) => out.push_str("IPIP:        not probed yet\n"),
        }
        match self.fast_path {
            Some(true) => out.push_str("Fast path:   on (tc-BPF for established pod-to-pod TCP)\n"),
            Some(false) => out.push_str(&format!("Fast path:   off: {}\n", self.fast_path_detail)),
            None => {}
        }
        out.push_str(&format!(
            "Dataplane:   {} ({} local endpoints, {} active policies)\n",
            if self.programmed {
                "programmed".to_string()
            } else if self.behind.is_empty() {
                "not programmed yet".to_string()
            } else {
                format!("not programmed yet: {} behind", self.behind.join(", "))
            },
            self.local_endpoints,
            self.active_policies
        ));
        out.push_str(&format!(
            "Endpoints:   {} up, {} down\n",
            self.endpoints_up, self.endpoints_down
        ));
        for e in &self.down_endpoints {
            out.push_str(&format!("  down:      {e}\n"));
        }
        if self.render_errors > 0 {
            out.push_str(&format!(
                "Policy:      {} change(s) could not be programmed; see the daemon log\n",
                self.render_errors
            ));
        }
        for p in &self.problems {
            out.push_str(&format!("Problem:     {p}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_sync_and_programming() {
        let mut s = NodeStatus::default();
        assert!(!s.ready());
        s.in_sync = true;
        assert!(!s.ready());
        s.programmed = true;
        assert!(s.ready());
        for i in 0..30 {
            s.add_problem(format!("p{i}"));
        }
        assert_eq!(s.problems.len(), MAX_PROBLEMS);
        assert_eq!(s.problems.last().map(String::as_str), Some("p29"));
    }

    #[test]
    fn render_names_ipip_unavailability_and_fast_path_state() {
        let s = NodeStatus {
            node: "n1".into(),
            ipip_supported: Some(false),
            ipip_detail: "this kernel has no IPIP support".into(),
            fast_path: Some(false),
            fast_path_detail: "turned off (--no-fast-path)".into(),
            ..NodeStatus::default()
        };
        let text = s.render();
        assert!(
            text.contains("Fast path:   off: turned off (--no-fast-path)"),
            "{text}"
        );
        assert!(
            text.contains("IPIP:        UNAVAILABLE: this kernel has no IPIP support"),
            "{text}"
        );
        assert!(text.contains("NOT READY"), "{text}");
    }
}
