//! Identifiers of the things the calculation tracks: policies, workload
//! endpoints, network sets, and the `ItemKey` that names anything a
//! selector can match.
//!
//! [`PolicyId`] and [`WorkloadId`] serialise as their display strings
//! (`np/prod/allow-db`, `prod/node--1-k8s-web-eth0`) so they can key JSON
//! maps in the serialised local state. Names never contain `/`, so the
//! strings parse back unambiguously.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tortie_model::Kind;

/// The policy kinds the calculation evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    NetworkPolicy,
    GlobalNetworkPolicy,
    StagedNetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 5] = [
        PolicyKind::NetworkPolicy,
        PolicyKind::GlobalNetworkPolicy,
        PolicyKind::StagedNetworkPolicy,
        PolicyKind::StagedGlobalNetworkPolicy,
        PolicyKind::StagedKubernetesNetworkPolicy,
    ];

    /// The resource kind as written in documents; also the last part of the
    /// ordering tie-break string (policy.md §2).
    pub fn name(self) -> &'static str {
        self.resource_kind().name()
    }

    pub fn resource_kind(self) -> Kind {
        match self {
            PolicyKind::NetworkPolicy => Kind::NetworkPolicy,
            PolicyKind::GlobalNetworkPolicy => Kind::GlobalNetworkPolicy,
            PolicyKind::StagedNetworkPolicy => Kind::StagedNetworkPolicy,
            PolicyKind::StagedGlobalNetworkPolicy => Kind::StagedGlobalNetworkPolicy,
            PolicyKind::StagedKubernetesNetworkPolicy => Kind::StagedKubernetesNetworkPolicy,
        }
    }

    pub fn from_kind(kind: Kind) -> Option<PolicyKind> {
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.resource_kind() == kind)
    }

    /// The short form used in policy chain names (policy.md §6).
    pub fn short(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "np",
            PolicyKind::GlobalNetworkPolicy => "gnp",
            PolicyKind::StagedNetworkPolicy => "snp",
            PolicyKind::StagedGlobalNetworkPolicy => "sgnp",
            PolicyKind::StagedKubernetesNetworkPolicy => "sknp",
        }
    }

    pub fn is_staged(self) -> bool {
        matches!(
            self,
            PolicyKind::StagedNetworkPolicy
                | PolicyKind::StagedGlobalNetworkPolicy
                | PolicyKind::StagedKubernetesNetworkPolicy
        )
    }

    pub fn is_namespaced(self) -> bool {
        self.resource_kind().namespaced()
    }
}

/// A policy: kind, namespace (empty for global kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    pub kind: PolicyKind,
    pub namespace: String,
    pub name: String,
}

impl PolicyId {
    pub fn new(kind: PolicyKind, namespace: &str, name: &str) -> PolicyId {
        PolicyId {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for PolicyId {
    /// `<kindShort>/<ns>/<name>` or `<kindShort>/<name>` (policy.md §6).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind.short(), self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind.short(), self.namespace, self.name)
        }
    }
}

/// Why an identifier string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid identifier {text:?}: {reason}")]
pub struct IdParseError {
    pub text: String,
    pub reason: &'static str,
}

impl FromStr for PolicyId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<PolicyId, IdParseError> {
        let err = |reason| IdParseError {
            text: s.to_string(),
            reason,
        };
        let mut parts = s.split('/');
        let short = parts.next().ok_or_else(|| err("empty"))?;
        let kind = PolicyKind::ALL
            .into_iter()
            .find(|k| k.short() == short)
            .ok_or_else(|| err("unknown policy kind"))?;
        let rest: Vec<&str> = parts.collect();
        let (namespace, name) = match (kind.is_namespaced(), rest.as_slice()) {
            (true, [ns, name]) => (*ns, *name),
            (false, [name]) => ("", *name),
            _ => return Err(err("wrong number of parts for the kind")),
        };
        if name.is_empty() || (kind.is_namespaced() && namespace.is_empty()) {
            return Err(err("empty name or namespace"));
        }
        Ok(PolicyId::new(kind, namespace, name))
    }
}

/// A workload endpoint: namespace and resource name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadId {
    pub namespace: String,
    pub name: String,
}

impl WorkloadId {
    pub fn new(namespace: &str, name: &str) -> WorkloadId {
        WorkloadId {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for WorkloadId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<WorkloadId, IdParseError> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(WorkloadId::new(ns, name))
            }
            _ => Err(IdParseError {
                text: s.to_string(),
                reason: "expected <namespace>/<name>",
            }),
        }
    }
}

/// A NetworkSet (namespace set) or GlobalNetworkSet (namespace empty).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetworkSetId {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for NetworkSetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "GlobalNetworkSet {}", self.name)
        } else {
            write!(f, "NetworkSet {}/{}", self.namespace, self.name)
        }
    }
}

/// Anything a selector can match: endpoints and network sets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemKey {
    Workload(WorkloadId),
    Host(String),
    NetworkSet(NetworkSetId),
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemKey::Workload(id) => write!(f, "WorkloadEndpoint {id}"),
            ItemKey::Host(name) => write!(f, "HostEndpoint {name}"),
            ItemKey::NetworkSet(id) => id.fmt(f),
        }
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(PolicyId);
string_serde!(WorkloadId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_ids_round_trip_through_their_strings() {
        for id in [
            PolicyId::new(PolicyKind::NetworkPolicy, "prod", "allow-db"),
            PolicyId::new(PolicyKind::GlobalNetworkPolicy, "", "deny.all"),
            PolicyId::new(PolicyKind::StagedKubernetesNetworkPolicy, "a", "b"),
        ] {
            assert_eq!(id.to_string().parse::<PolicyId>(), Ok(id));
        }
        assert_eq!(
            PolicyId::new(PolicyKind::NetworkPolicy, "prod", "x").to_string(),
            "np/prod/x"
        );
        for bad in ["", "np/x", "gnp/a/b", "zz/a", "np//x", "gnp/"] {
            assert!(bad.parse::<PolicyId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn workload_ids_round_trip() {
        let id = WorkloadId::new("ns", "node--1-k8s-a-eth0");
        assert_eq!(id.to_string().parse::<WorkloadId>(), Ok(id));
        assert!("nope".parse::<WorkloadId>().is_err());
        assert!("a/b/c".parse::<WorkloadId>().is_err());
    }
}
