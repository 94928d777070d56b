//! Human-readable rendering of an [`Explanation`] for the CLI:
//!
//! ```text
//! 10.65.0.2 (WorkloadEndpoint blue/ui) -> 10.65.0.3:9001 (WorkloadEndpoint blue/api) proto 6: DENY
//!   egress at WorkloadEndpoint blue/ui: allow by profile kns.blue rule 0 (Allow)
//!   ingress at WorkloadEndpoint blue/api: deny by end of tier default (default action Deny)
//! ```

use std::fmt;

use super::{Decision, DirectionReport, Explanation, Step, Verdict};

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        })
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Rule {
                tier,
                policy,
                rule,
                action,
            } => write!(f, "tier {tier}, policy {policy}, rule {rule} ({action:?})"),
            Decision::EndOfTier { tier } => {
                write!(f, "end of tier {tier} (default action Deny)")
            }
            Decision::Profile {
                profile,
                rule,
                action,
            } => write!(f, "profile {profile} rule {rule} ({action:?})"),
            Decision::NoProfileAllowed => f.write_str("no profile allowed it"),
            Decision::Failsafe { protocol, port } => {
                write!(f, "failsafe port {port} (protocol {protocol})")
            }
            Decision::HostToLocalWorkload => {
                f.write_str("host to local workload traffic is always allowed")
            }
            Decision::EndpointToHost { action } => {
                write!(f, "defaultEndpointToHostAction {action:?}")
            }
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Logged { policy, rule } => write!(f, "logged by {policy} rule {rule}"),
            Step::PassedByRule { tier, policy, rule } => {
                write!(f, "passed by {policy} rule {rule}, leaving tier {tier}")
            }
            Step::TierDefaultPass { tier } => write!(f, "end of tier {tier}: default pass"),
            Step::StagedOnlyTier { tier } => {
                write!(f, "tier {tier} has only staged policies: pass")
            }
            Step::ProfilePassed { profile, rule } => {
                write!(f, "passed by profile {profile} rule {rule}")
            }
        }
    }
}

impl fmt::Display for DirectionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            crate::policy::Direction::Ingress => "ingress",
            crate::policy::Direction::Egress => "egress",
        };
        writeln!(
            f,
            "  {dir} at {}: {} by {}",
            self.endpoint, self.verdict, self.decided_by
        )?;
        for s in &self.steps {
            writeln!(f, "    - {s}")?;
        }
        for s in &self.staged {
            match &s.rule {
                Some((rule, action)) => writeln!(
                    f,
                    "    - staged {} (tier {}) would: rule {rule} ({action:?})",
                    s.policy, s.tier
                )?,
                None => writeln!(
                    f,
                    "    - staged {} (tier {}) would: no rule matches",
                    s.policy, s.tier
                )?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.dst_port.map(|p| format!(":{p}")).unwrap_or_default();
        let verdict = match self.verdict {
            Verdict::Allow => "ALLOW",
            Verdict::Deny => "DENY",
        };
        writeln!(
            f,
            "{} ({}) -> {}{port} ({}) proto {}: {verdict}",
            self.src_addr, self.src, self.dst_addr, self.dst, self.protocol
        )?;
        if let Some(r) = &self.egress {
            write!(f, "{r}")?;
        }
        if let Some(r) = &self.ingress {
            write!(f, "{r}")?;
        }
        if self.egress.is_none() && self.ingress.is_none() {
            writeln!(f, "  neither end is an endpoint: no policy applies")?;
        }
        Ok(())
    }
}
