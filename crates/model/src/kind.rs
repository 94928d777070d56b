//! The registry of kinds and the generic `Resource`.
//!
//! One table (the `kinds!` invocation below) says, for every kind: its spec
//! type, its plural (the datastore key segment), whether it is namespaced,
//! whether it has a status, and the names the CLI accepts. Everything that
//! dispatches on kind is generated from that table, so adding a kind is one
//! line plus its spec type.

use std::fmt;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bgp::{BGPConfigurationSpec, BGPFilterSpec, BGPPeerSpec};
use crate::config::{
    CalicoNodeStatusSpec, ClusterInformationSpec, FelixConfigurationSpec,
    KubeControllersConfigurationSpec,
};
use crate::endpoint::{
    GlobalNetworkSetSpec, HostEndpointSpec, NetworkSetSpec, WorkloadEndpointSpec,
};
use crate::ippool::{IPAMConfigurationSpec, IPPoolSpec, IPReservationSpec};
use crate::k8s::StagedKubernetesNetworkPolicySpec;
use crate::meta::ObjectMeta;
use crate::node::NodeSpec;
use crate::policy::{
    GlobalNetworkPolicySpec, NetworkPolicySpec, ProfileSpec, StagedGlobalNetworkPolicySpec,
    StagedNetworkPolicySpec, TierSpec,
};
use crate::validate::{Checker, ValidationError};

/// The API group and version of every tortie resource.
pub const API_VERSION: &str = "projectcalico.org/v3";

/// Per-kind defaults and validation. Every spec type implements it.
pub trait SpecRules {
    /// Fills defaults on write (may also add labels or annotations).
    fn apply_defaults(&mut self, _meta: &mut ObjectMeta) {}
    /// Checks everything that depends on this resource alone.
    fn validate(&self, _meta: &ObjectMeta, _c: &mut Checker) {}
    /// Checks `metadata.name`; most kinds take a DNS subdomain.
    fn validate_name(name: &str, c: &mut Checker) {
        c.subdomain("metadata.name", name);
    }
}

/// A spec type that belongs to exactly one kind.
pub trait KindSpec:
    SpecRules
    + Clone
    + fmt::Debug
    + Default
    + PartialEq
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn into_spec(self) -> Spec;
    fn from_spec(spec: &Spec) -> Option<&Self>;
    fn from_spec_mut(spec: &mut Spec) -> Option<&mut Self>;
}

/// The document shape shared by every kind, used for typed decoding.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TypedDocument<S> {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
    #[serde(default)]
    status: Option<serde_json::Value>,
}

macro_rules! kinds {
    ($( $kind:ident : $spec:ty, $plural:literal, namespaced = $ns:literal, status = $st:literal,
        aliases = [$($alias:literal),* $(,)?] ; )*) => {
        /// Every resource kind tortie stores.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $($kind),* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$kind),*];

            /// The kind as written in documents, e.g. `IPPool`.
            pub fn name(self) -> &'static str {
                match self { $(Kind::$kind => stringify!($kind)),* }
            }

            /// Lower-case plural: the datastore key segment, e.g. `ippools`.
            pub fn plural(self) -> &'static str {
                match self { $(Kind::$kind => $plural),* }
            }

            pub fn namespaced(self) -> bool {
                match self { $(Kind::$kind => $ns),* }
            }

            pub fn has_status(self) -> bool {
                match self { $(Kind::$kind => $st),* }
            }

            /// Names the CLI accepts for this kind (matched case-insensitively).
            pub fn aliases(self) -> &'static [&'static str] {
                match self { $(Kind::$kind => &[$($alias),*]),* }
            }
        }

        /// The spec of a resource, by kind. Variants differ in size (Felix
        /// configuration is the largest); resources are built once and moved
        /// rarely, so boxing would only add indirection.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Spec { $($kind($spec)),* }

        impl Spec {
            pub fn kind(&self) -> Kind {
                match self { $(Spec::$kind(_) => Kind::$kind),* }
            }

            /// The default (empty) spec of a kind.
            pub fn empty(kind: Kind) -> Spec {
                match kind { $(Kind::$kind => Spec::$kind(<$spec>::default())),* }
            }

            fn apply_defaults(&mut self, meta: &mut ObjectMeta) {
                match self { $(Spec::$kind(s) => s.apply_defaults(meta)),* }
            }

            fn validate(&self, meta: &ObjectMeta, c: &mut Checker) {
                match self { $(Spec::$kind(s) => {
                    <$spec as SpecRules>::validate_name(&meta.name, c);
                    s.validate(meta, c);
                }),* }
            }
        }

        $(
        impl KindSpec for $spec {
            const KIND: Kind = Kind::$kind;
            fn into_spec(self) -> Spec { Spec::$kind(self) }
            fn from_spec(spec: &Spec) -> Option<&Self> {
                #[allow(unreachable_patterns)]
                match spec { Spec::$kind(s) => Some(s), _ => None }
            }
            fn from_spec_mut(spec: &mut Spec) -> Option<&mut Self> {
                #[allow(unreachable_patterns)]
                match spec { Spec::$kind(s) => Some(s), _ => None }
            }
        }
        )*

        /// Decodes one document of a known kind (strict: unknown fields fail).
        pub fn decode_as<'de, D: Deserializer<'de>>(kind: Kind, d: D) -> Result<Resource, D::Error> {
            match kind {
                $(Kind::$kind => {
                    let doc = TypedDocument::<$spec>::deserialize(d)?;
                    if doc.status.is_some() && !kind.has_status() {
                        return Err(D::Error::custom(
                            "unknown field `status`: this kind has no status",
                        ));
                    }
                    Ok(Resource { metadata: doc.metadata, spec: Spec::$kind(doc.spec), status: doc.status })
                }),*
            }
        }
    };
}

kinds! {
    BGPConfiguration: BGPConfigurationSpec, "bgpconfigurations", namespaced = false, status = false,
        aliases = ["bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"];
    BGPFilter: BGPFilterSpec, "bgpfilters", namespaced = false, status = false,
        aliases = ["bgpfilter", "bgpfilters", "bgpf", "bgpfs", "bf", "bfs"];
    BGPPeer: BGPPeerSpec, "bgppeers", namespaced = false, status = false,
        aliases = ["bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"];
    CalicoNodeStatus: CalicoNodeStatusSpec, "caliconodestatuses", namespaced = false, status = true,
        aliases = ["caliconodestatus", "caliconodestatuses", "nodestatus", "nodestatuses"];
    ClusterInformation: ClusterInformationSpec, "clusterinformations", namespaced = false, status = false,
        aliases = ["clusterinformation", "clusterinformations", "clusterinfo", "clusterinfos"];
    FelixConfiguration: FelixConfigurationSpec, "felixconfigurations", namespaced = false, status = false,
        aliases = ["felixconfiguration", "felixconfigurations", "felixconfig", "felixconfigs"];
    GlobalNetworkPolicy: GlobalNetworkPolicySpec, "globalnetworkpolicies", namespaced = false, status = false,
        aliases = ["globalnetworkpolicy", "globalnetworkpolicies", "gnp", "gnps"];
    GlobalNetworkSet: GlobalNetworkSetSpec, "globalnetworksets", namespaced = false, status = false,
        aliases = ["globalnetworkset", "globalnetworksets", "gnetset", "gnetsets"];
    HostEndpoint: HostEndpointSpec, "hostendpoints", namespaced = false, status = false,
        aliases = ["hostendpoint", "hostendpoints", "hep", "heps"];
    IPAMConfiguration: IPAMConfigurationSpec, "ipamconfigurations", namespaced = false, status = false,
        aliases = ["ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"];
    IPPool: IPPoolSpec, "ippools", namespaced = false, status = true,
        aliases = ["ippool", "ippools", "ipp", "ipps", "pool", "pools"];
    IPReservation: IPReservationSpec, "ipreservations", namespaced = false, status = false,
        aliases = ["ipreservation", "ipreservations", "reservation", "reservations"];
    KubeControllersConfiguration: KubeControllersConfigurationSpec, "kubecontrollersconfigurations",
        namespaced = false, status = true,
        aliases = ["kubecontrollersconfiguration", "kubecontrollersconfigurations",
                   "kubecontrollersconfig", "kubecontrollersconfigs"];
    NetworkPolicy: NetworkPolicySpec, "networkpolicies", namespaced = true, status = false,
        aliases = ["networkpolicy", "networkpolicies", "policy", "policies", "np", "nps", "pol", "pols"];
    NetworkSet: NetworkSetSpec, "networksets", namespaced = true, status = false,
        aliases = ["networkset", "networksets", "netset", "netsets"];
    Node: NodeSpec, "nodes", namespaced = false, status = true,
        aliases = ["node", "nodes", "no", "nos"];
    Profile: ProfileSpec, "profiles", namespaced = false, status = false,
        aliases = ["profile", "profiles", "pro", "pros"];
    StagedGlobalNetworkPolicy: StagedGlobalNetworkPolicySpec, "stagedglobalnetworkpolicies",
        namespaced = false, status = false,
        aliases = ["stagedglobalnetworkpolicy", "stagedglobalnetworkpolicies", "sgnp", "sgnps"];
    StagedKubernetesNetworkPolicy: StagedKubernetesNetworkPolicySpec, "stagedkubernetesnetworkpolicies",
        namespaced = true, status = false,
        aliases = ["stagedkubernetesnetworkpolicy", "stagedkubernetesnetworkpolicies", "sknp", "sknps",
                   "skpol", "skpols"];
    StagedNetworkPolicy: StagedNetworkPolicySpec, "stagednetworkpolicies", namespaced = true, status = false,
        aliases = ["stagednetworkpolicy", "stagednetworkpolicies", "stagedpolicy", "stagedpolicies",
                   "snp", "snps", "spol", "spols"];
    Tier: TierSpec, "tiers", namespaced = false, status = false,
        aliases = ["tier", "tiers"];
    WorkloadEndpoint: WorkloadEndpointSpec, "workloadendpoints", namespaced = true, status = false,
        aliases = ["workloadendpoint", "workloadendpoints", "wep", "weps"];
}

impl Kind {
    /// Looks a kind up by any CLI name (singular, plural, alias), ignoring case.
    pub fn from_cli_name(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        Kind::ALL.iter().copied().find(|k| {
            k.name().eq_ignore_ascii_case(&lower) || k.aliases().contains(&lower.as_str())
        })
    }

    /// Looks a kind up by its document name (`kind: IPPool`), exact case.
    pub fn from_document_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Looks a kind up by its plural key segment (`ippools`).
    pub fn from_plural(plural: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.plural() == plural)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One v3 resource of any kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub metadata: ObjectMeta,
    pub spec: Spec,
    /// System-maintained status, for the kinds that have one; kept as written.
    pub status: Option<serde_json::Value>,
}

impl Resource {
    pub fn new<S: KindSpec>(metadata: ObjectMeta, spec: S) -> Resource {
        Resource {
            metadata,
            spec: spec.into_spec(),
            status: None,
        }
    }

    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    pub fn spec<S: KindSpec>(&self) -> Option<&S> {
        S::from_spec(&self.spec)
    }

    pub fn spec_mut<S: KindSpec>(&mut self) -> Option<&mut S> {
        S::from_spec_mut(&mut self.spec)
    }

    /// How errors name this resource: `IPPool "p1"`, `NetworkPolicy "shop/web"`.
    pub fn id(&self) -> String {
        resource_id(self.kind(), &self.metadata.namespace, &self.metadata.name)
    }

    /// Fills the defaults Calico fills on write.
    pub fn apply_defaults(&mut self) {
        self.spec.apply_defaults(&mut self.metadata);
    }

    /// Checks every rule that depends on this resource alone.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut c = Checker::default();
        if self.kind().namespaced() {
            if self.metadata.namespace.is_empty() {
                c.fail("metadata.namespace", "is required for a namespaced kind");
            } else {
                c.subdomain("metadata.namespace", &self.metadata.namespace);
            }
        } else if !self.metadata.namespace.is_empty() {
            c.bad(
                "metadata.namespace",
                format!("{:?}", self.metadata.namespace),
                format!("{} is not a namespaced resource", self.kind()),
            );
        }
        if self.metadata.name.is_empty() {
            c.fail("metadata.name", "is required");
        } else {
            self.spec.validate(&self.metadata, &mut c);
        }
        c.labels("metadata.labels", &self.metadata.labels);
        c.annotations("metadata.annotations", &self.metadata.annotations);
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                resource: self.id(),
                errors: c.errors,
            })
        }
    }

    /// JSON as stored and printed (`kind`, `apiVersion`, `metadata`, `spec`).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a resource always serialises to JSON")
    }

    /// Decodes stored JSON of a known kind.
    pub fn from_json(kind: Kind, bytes: &[u8]) -> Result<Resource, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let r = decode_as(kind, &mut de)?;
        de.end()?;
        Ok(r)
    }
}

/// `Kind "name"` or `Kind "namespace/name"`.
pub fn resource_id(kind: Kind, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind} {name:?}")
    } else {
        format!("{kind} \"{namespace}/{name}\"")
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("kind", self.kind().name())?;
        m.serialize_entry("apiVersion", API_VERSION)?;
        m.serialize_entry("metadata", &self.metadata)?;
        m.serialize_entry("spec", &self.spec)?;
        if let Some(status) = &self.status {
            m.serialize_entry("status", status)?;
        }
        m.end()
    }
}
