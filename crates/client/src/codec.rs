//! Stored form of resources: the JSON value under each key.
//!
//! A v3 resource is stored whole (`kind`, `apiVersion`, `metadata`, `spec`)
//! with `metadata.resourceVersion` removed — the key's revision is the
//! resource version — and, for policy kinds, the annotation
//! `projectcalico.org/metadata` holding the user's name (datastore.md §1.1),
//! which is removed again on read. IPAMConfiguration is stored in Calico's
//! IPAM config format instead (ipam.md §2.4).

use serde::{Deserialize, Serialize};
use tortie_datastore::KeyValue;
use tortie_model::ippool::IPAMConfigurationSpec;
use tortie_model::{Kind, ObjectMeta, Resource};

/// Annotation holding a policy's user-supplied name, as Calico stores it.
pub const POLICY_METADATA_ANNOTATION: &str = "projectcalico.org/metadata";

fn carries_policy_metadata(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::NetworkPolicy
            | Kind::GlobalNetworkPolicy
            | Kind::StagedNetworkPolicy
            | Kind::StagedGlobalNetworkPolicy
    )
}

/// The IPAM configuration record at `/calico/ipam/v2/config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IpamConfigRecord {
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default = "yes")]
    pub auto_allocate_blocks: bool,
    #[serde(default, rename = "maxBlocksPerHost")]
    pub max_blocks_per_host: i64,
    #[serde(
        default,
        rename = "kubeVirtVMAddressPersistence",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubevirt_vm_address_persistence: Option<String>,
    #[serde(
        default,
        rename = "ipCooldownSeconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_cooldown_seconds: Option<i64>,
}

fn yes() -> bool {
    true
}

/// Encodes a resource for storage.
pub fn encode(r: &Resource) -> Vec<u8> {
    if let Some(spec) = r.spec::<IPAMConfigurationSpec>() {
        let record = IpamConfigRecord {
            strict_affinity: spec.strict_affinity,
            auto_allocate_blocks: spec.auto_allocate_blocks.unwrap_or(true),
            max_blocks_per_host: spec.max_blocks_per_host.unwrap_or(0),
            kubevirt_vm_address_persistence: spec.kubevirt_vm_address_persistence.clone(),
            ip_cooldown_seconds: spec.ip_cooldown_seconds.filter(|s| *s > 0),
        };
        return serde_json::to_vec(&record).expect("IPAM config always serialises");
    }
    let mut stored = r.clone();
    stored.metadata.resource_version.clear();
    stored.metadata.self_link.clear();
    if carries_policy_metadata(r.kind()) {
        let name = serde_json::json!({ "name": r.metadata.name }).to_string();
        stored
            .metadata
            .annotations
            .insert(POLICY_METADATA_ANNOTATION.to_string(), name);
    }
    stored.to_json()
}

/// Decodes a stored value of `kind` found at a key naming `namespace`/`name`.
/// The resource version comes from the key's revision.
pub fn decode(kind: Kind, namespace: &str, name: &str, kv: &KeyValue) -> Result<Resource, String> {
    let mut r = if kind == Kind::IPAMConfiguration {
        let record: IpamConfigRecord =
            serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?;
        let spec = IPAMConfigurationSpec {
            strict_affinity: record.strict_affinity,
            auto_allocate_blocks: Some(record.auto_allocate_blocks),
            max_blocks_per_host: Some(record.max_blocks_per_host),
            kubevirt_vm_address_persistence: record.kubevirt_vm_address_persistence,
            ip_cooldown_seconds: record.ip_cooldown_seconds,
        };
        Resource::new(ObjectMeta::named("default"), spec)
    } else {
        Resource::from_json(kind, &kv.value).map_err(|e| e.to_string())?
    };
    r.metadata.name = name.to_string();
    r.metadata.namespace = namespace.to_string();
    r.metadata.resource_version = kv.mod_revision.to_string();
    r.metadata.annotations.remove(POLICY_METADATA_ANNOTATION);
    Ok(r)
}
