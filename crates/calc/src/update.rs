//! The input: datastore updates as the syncer delivers them, decoded.
//!
//! Keys handled: v3 resources (`/calico/resources/v3/projectcalico.org/…`,
//! decoded with the client's codec), IPAM blocks
//! (`/calico/ipam/v2/assignment/…`) and host block affinities
//! (`/calico/ipam/v2/host/<node>/ipvN/block/<cidr>`). Every other key —
//! handles, the IPAM config, virtual affinities, host markers, kinds the
//! calculation does not use — decodes to nothing.
//!
//! Hard cases: a soft-deleted block or affinity (`deleted: true`) is a
//! removal; the name and namespace come from the key, never the value;
//! an undecodable value is an error the caller counts, and the calculation
//! treats the key as deleted (a half-understood policy is worse than none).

use ipnet::IpNet;
use tortie_client::{codec, keys};
use tortie_datastore::KeyValue;
use tortie_ipam::affinity::{AffinityOwner, AffinityRecord, AffinityState};
use tortie_ipam::block::Block;
use tortie_ipam::keys as ipam_keys;
use tortie_model::{Kind, Resource};

/// One decoded datastore update.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// A v3 resource was created or changed (boxed: resources are large).
    Put(Box<Resource>),
    /// A v3 resource was deleted.
    Delete {
        kind: Kind,
        namespace: String,
        name: String,
    },
    /// An IPAM block was written (`Some`) or removed (`None`).
    Block { cidr: IpNet, block: Option<Block> },
    /// A host's affinity for a block was written (`Some`) or removed.
    Affinity {
        host: String,
        cidr: IpNet,
        state: Option<AffinityState>,
    },
    /// The syncer has delivered a complete snapshot.
    InSync,
}

/// Why an update was rejected. The calculation counts these and treats the
/// key as deleted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("cannot decode the value at {key}: {reason}")]
    Decode { key: String, reason: String },
    #[error("{resource} is invalid: {reason}")]
    Invalid { resource: String, reason: String },
}

/// Kinds the calculation consumes; updates of other kinds are ignored.
pub fn is_relevant_kind(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::WorkloadEndpoint
            | Kind::HostEndpoint
            | Kind::NetworkSet
            | Kind::GlobalNetworkSet
            | Kind::Profile
            | Kind::NetworkPolicy
            | Kind::GlobalNetworkPolicy
            | Kind::StagedNetworkPolicy
            | Kind::StagedGlobalNetworkPolicy
            | Kind::StagedKubernetesNetworkPolicy
            | Kind::Tier
            | Kind::Node
            | Kind::IPPool
            | Kind::FelixConfiguration
    )
}

/// What a key names, before its value is decoded.
enum KeyTarget {
    Resource(Kind, String, String),
    Block(IpNet),
    Affinity(String, IpNet),
}

fn classify(key: &str) -> Option<KeyTarget> {
    if let Some((kind, ns, name)) = keys::parse_key(key) {
        return is_relevant_kind(kind).then_some(KeyTarget::Resource(kind, ns, name));
    }
    if let Some(cidr) = ipam_keys::parse_block_key(key) {
        return Some(KeyTarget::Block(cidr));
    }
    match ipam_keys::parse_affinity_key(key) {
        Some((AffinityOwner::Host(host), cidr)) => Some(KeyTarget::Affinity(host, cidr)),
        _ => None,
    }
}

/// The outcome of decoding one `(key, value)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// A key the calculation does not use.
    Ignored,
    Update(Update),
    /// The value does not decode; `deletion` removes whatever the key held.
    Invalid {
        error: UpdateError,
        deletion: Update,
    },
}

/// Decodes one `(key, value)` from the syncer (`None` value: deleted).
pub fn decode_kv(key: &str, value: Option<&[u8]>) -> Decoded {
    let Some(target) = classify(key) else {
        return Decoded::Ignored;
    };
    match decode_target(key, target, value) {
        Ok(update) => Decoded::Update(update),
        Err((error, deletion)) => Decoded::Invalid {
            error,
            deletion: *deletion,
        },
    }
}

type DecodeFailure = (UpdateError, Box<Update>);

fn decode_target(
    key: &str,
    target: KeyTarget,
    value: Option<&[u8]>,
) -> Result<Update, DecodeFailure> {
    let deletion = match &target {
        KeyTarget::Resource(kind, ns, name) => Update::Delete {
            kind: *kind,
            namespace: ns.clone(),
            name: name.clone(),
        },
        KeyTarget::Block(cidr) => Update::Block {
            cidr: *cidr,
            block: None,
        },
        KeyTarget::Affinity(host, cidr) => Update::Affinity {
            host: host.clone(),
            cidr: *cidr,
            state: None,
        },
    };
    let Some(bytes) = value else {
        return Ok(deletion);
    };
    let fail = |reason: String| {
        (
            UpdateError::Decode {
                key: key.to_string(),
                reason,
            },
            Box::new(deletion.clone()),
        )
    };
    let update = match target {
        KeyTarget::Resource(kind, ns, name) => {
            let kv = KeyValue {
                key: key.to_string(),
                value: bytes.to_vec(),
                create_revision: 0,
                mod_revision: 0,
                version: 0,
            };
            Update::Put(Box::new(
                codec::decode(kind, &ns, &name, &kv).map_err(fail)?,
            ))
        }
        KeyTarget::Block(cidr) => {
            let block = Block::decode(bytes).map_err(|e| fail(e.to_string()))?;
            if let Some(b) = &block
                && b.cidr() != cidr
            {
                return Err(fail(format!(
                    "the block value names {} but the key names {cidr}",
                    b.cidr()
                )));
            }
            Update::Block { cidr, block }
        }
        KeyTarget::Affinity(host, cidr) => {
            let record = AffinityRecord::decode(bytes).map_err(fail)?;
            Update::Affinity {
                host,
                cidr,
                state: (!record.deleted).then_some(record.state),
            }
        }
    };
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_classified() {
        let tier = br#"{"apiVersion":"projectcalico.org/v3","kind":"Tier","metadata":{"name":"x"},"spec":{"order":5}}"#;
        match decode_kv(
            "/calico/resources/v3/projectcalico.org/tiers/sec",
            Some(tier),
        ) {
            Decoded::Update(Update::Put(r)) => {
                assert_eq!(r.kind(), Kind::Tier);
                assert_eq!(r.metadata.name, "sec", "the name comes from the key");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            decode_kv(
                "/calico/resources/v3/projectcalico.org/bgppeers/p",
                Some(b"{}")
            ),
            Decoded::Ignored
        ));
        assert!(matches!(
            decode_kv("/calico/ipam/v2/handle/h", Some(b"{}")),
            Decoded::Ignored
        ));
        assert!(matches!(
            decode_kv("/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26", Some(b"")),
            Decoded::Update(Update::Affinity {
                state: Some(AffinityState::Confirmed),
                ..
            })
        ));
        assert!(matches!(
            decode_kv(
                "/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26",
                Some(br#"{"state":"pending","deleted":true}"#)
            ),
            Decoded::Update(Update::Affinity { state: None, .. })
        ));
        assert!(matches!(
            decode_kv("/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26", None),
            Decoded::Update(Update::Block { block: None, .. })
        ));
    }

    #[test]
    fn bad_values_are_errors_that_delete() {
        let key = "/calico/resources/v3/projectcalico.org/networkpolicies/ns/p";
        match decode_kv(key, Some(b"{not json")) {
            Decoded::Invalid {
                error: UpdateError::Decode { .. },
                deletion: Update::Delete { kind, name, .. },
            } => {
                assert_eq!(kind, Kind::NetworkPolicy);
                assert_eq!(name, "p");
            }
            other => panic!("unexpected {other:?}"),
        }
        let key = "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26";
        let wrong = br#"{"cidr":"10.0.1.0/26","allocations":[],"unallocated":[],"attributes":[]}"#;
        assert!(matches!(
            decode_kv(key, Some(wrong)),
            Decoded::Invalid { .. }
        ));
    }
}
