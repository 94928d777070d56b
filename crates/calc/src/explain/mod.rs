//! `policy explain`: would a packet from A to B be allowed, and what
//! decided it — evaluated from the cluster model exactly as policy.md
//! §1-4 and §7 describe, for egress at the source endpoint and ingress at
//! the destination endpoint.
//!
//! Peers are workload endpoints, host endpoints, (global) network sets or
//! plain addresses. Endpoints and sets stand for one of their addresses
//! (the first of the chosen family; a network set's first net's network
//! address). Rule selectors are matched the way the dataplane matches
//! them — by address: a selector matches an address when it selects any
//! endpoint or network set holding that address — so an external address
//! never matches a positive selector (selectors.md §6.4) but one inside a
//! selected network set does, and a named port matches when an endpoint at
//! the address declares it with the packet's protocol and port.
//!
//! Hard cases the dataplane imposes: traffic from a host to a workload on
//! the same node is always allowed (it never traverses the workload's
//! chains); workload-to-host traffic on the same node is decided by
//! `defaultEndpointToHostAction` (with `Return`, an all-interfaces host
//! endpoint's policy applies); host endpoint traffic is checked against the
//! failsafe ports first. Not modelled: traffic forwarded through a host
//! endpoint (`applyOnForward`, preDNAT, doNotTrack classes), DNAT, and
//! Kubernetes services (rules naming services never match).

mod eval;
mod report;

use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tortie_model::rule::Action;

use crate::config::EndpointToHostAction;
use crate::ids::{NetworkSetId, PolicyId, WorkloadId};
use crate::policy::Direction;
use crate::rules::IpFamily;

pub use eval::explain;

/// One end of the packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "id")]
pub enum Peer {
    Workload(WorkloadId),
    Host(String),
    /// A NetworkSet, or a GlobalNetworkSet when the namespace is empty.
    NetworkSet(NetworkSetId),
    Address(IpAddr),
}

/// The packet to explain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub from: Peer,
    pub to: Peer,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, …).
    pub protocol: u8,
    pub dst_port: Option<u16>,
    /// Without one, rules that require source ports do not match.
    pub src_port: Option<u16>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// Address family to use when both ends have both.
    pub family: Option<IpFamily>,
}

/// Allowed or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

/// What decided one direction's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "by")]
pub enum Decision {
    /// A policy rule (Allow or Deny).
    Rule {
        tier: String,
        policy: PolicyId,
        rule: usize,
        action: Action,
    },
    /// The end of a tier whose default action is Deny.
    EndOfTier { tier: String },
    /// A profile rule (Allow or Deny).
    Profile {
        profile: String,
        rule: usize,
        action: Action,
    },
    /// No tier decided and no profile allowed.
    NoProfileAllowed,
    /// A failsafe port of a host endpoint.
    Failsafe { protocol: u8, port: u16 },
    /// Host to a workload on the same node: never blocked.
    HostToLocalWorkload,
    /// Workload to its own host: `defaultEndpointToHostAction`.
    EndpointToHost { action: EndpointToHostAction },
}

/// Something that happened on the way to the decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "step")]
pub enum Step {
    /// A Log rule matched (evaluation continued).
    Logged { policy: String, rule: usize },
    /// A Pass rule skipped the rest of the tier.
    PassedByRule {
        tier: String,
        policy: PolicyId,
        rule: usize,
    },
    /// The end of a tier whose default action is Pass.
    TierDefaultPass { tier: String },
    /// Every applicable policy of the tier is staged: implicit pass.
    StagedOnlyTier { tier: String },
    /// A profile's Pass rule moved on to the next profile.
    ProfilePassed { profile: String, rule: usize },
}

/// What a staged policy would have done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedOutcome {
    pub tier: String,
    pub policy: PolicyId,
    /// The first matching Allow/Deny/Pass rule, or `None`: no rule matched.
    pub rule: Option<(usize, Action)>,
}

/// One direction's evaluation at one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectionReport {
    /// The endpoint, e.g. `WorkloadEndpoint prod/web-eth0`.
    pub endpoint: String,
    pub direction: Direction,
    pub verdict: Verdict,
    pub decided_by: Decision,
    pub steps: Vec<Step>,
    pub staged: Vec<StagedOutcome>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub src: String,
    pub src_addr: IpAddr,
    pub dst: String,
    pub dst_addr: IpAddr,
    pub protocol: u8,
    pub dst_port: Option<u16>,
    /// Allowed only if both directions allow.
    pub verdict: Verdict,
    /// Egress at the source, when the source is an endpoint.
    pub egress: Option<DirectionReport>,
    /// Ingress at the destination, when the destination is an endpoint.
    pub ingress: Option<DirectionReport>,
}

/// Why a request cannot be explained.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{peer} has no {family:?} address")]
    NoAddress { peer: String, family: IpFamily },
    #[error("{from} and {to} have no address family in common")]
    NoCommonFamily { from: String, to: String },
    #[error(
        "invalid peer {0:?}: use an IP, NAMESPACE/NAME, NAME, or a hep:/wep:/netset:/gnetset: prefix"
    )]
    BadPeer(String),
}

impl FromStr for Peer {
    type Err = ExplainError;

    /// Parses the explicit forms: an IP address, `wep:NS/NAME`,
    /// `hep:NAME`, `netset:NS/NAME`, `gnetset:NAME`. Bare `NS/NAME` and
    /// `NAME` need the model to resolve: see [`resolve_peer`].
    fn from_str(s: &str) -> Result<Peer, ExplainError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Peer::Address(ip));
        }
        let bad = || ExplainError::BadPeer(s.to_string());
        let (prefix, rest) = s.split_once(':').ok_or_else(bad)?;
        match prefix {
            "wep" => rest.parse().map(Peer::Workload).map_err(|_| bad()),
            "hep" if !rest.is_empty() => Ok(Peer::Host(rest.to_string())),
            "gnetset" if !rest.is_empty() => Ok(Peer::NetworkSet(NetworkSetId {
                namespace: String::new(),
                name: rest.to_string(),
            })),
            "netset" => match rest.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                    Ok(Peer::NetworkSet(NetworkSetId {
                        namespace: ns.to_string(),
                        name: name.to_string(),
                    }))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

pub use eval::resolve_peer;
