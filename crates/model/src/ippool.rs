//! Address management kinds: IPPool, IPReservation and IPAMConfiguration
//! (resources.md §3-4, ipam.md §1.1 and §2.4).
//!
//! Hard cases: the deprecated `ipip: {enabled, mode}` and `nat-outgoing`
//! fields of old manifests are mapped onto `ipipMode`/`natOutgoing` on write;
//! the LoadBalancer use constrains most other fields. Checks that need other
//! resources (overlap with existing pools, immutable fields) live in the
//! client, which sees the datastore.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::kind::SpecRules;
use crate::meta::ObjectMeta;
use crate::scalar::parse_strict_cidr;
use crate::validate::{Checker, quoted};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EncapMode {
    Never,
    Always,
    CrossSubnet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssignmentMode {
    Automatic,
    Manual,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPPoolSpec {
    #[serde(default)]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nat_outgoing: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    #[serde(default, rename = "disableBGPExport", skip_serializing_if = "is_false")]
    pub disable_bgp_export: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
    /// Deprecated v1 form of `ipipMode`; mapped and cleared on write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip: Option<DeprecatedIpip>,
    /// Deprecated v1 form of `natOutgoing`; mapped and cleared on write.
    #[serde(
        default,
        rename = "nat-outgoing",
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_outgoing_v1: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprecatedIpip {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub mode: Option<String>,
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

impl IPPoolSpec {
    /// The pool's network, if `cidr` is valid.
    pub fn network(&self) -> Option<IpNet> {
        parse_strict_cidr(&self.cidr).ok()
    }

    /// The effective block size (the default for the family when unset).
    pub fn effective_block_size(&self) -> Option<u8> {
        match (self.block_size, self.network()) {
            (Some(b), _) => u8::try_from(b).ok(),
            (None, Some(IpNet::V4(_))) => Some(26),
            (None, Some(IpNet::V6(_))) => Some(122),
            (None, None) => None,
        }
    }

    pub fn effective_allowed_uses(&self) -> Vec<AllowedUse> {
        if self.allowed_uses.is_empty() {
            vec![AllowedUse::Workload, AllowedUse::Tunnel]
        } else {
            self.allowed_uses.clone()
        }
    }
}

impl SpecRules for IPPoolSpec {
    fn apply_defaults(&mut self, _meta: &mut ObjectMeta) {
        if let Some(old) = self.ipip.take()
            && self.ipip_mode.is_none()
        {
            self.ipip_mode = Some(match (old.enabled, old.mode.as_deref()) {
                (Some(false), _) => EncapMode::Never,
                (_, Some("cross-subnet")) => EncapMode::CrossSubnet,
                _ => EncapMode::Always,
            });
        }
        if let Some(nat) = self.nat_outgoing_v1.take() {
            self.nat_outgoing |= nat;
        }
        if let Some(net) = self.network() {
            self.cidr = net.to_string();
            if self.block_size.is_none() {
                self.block_size = Some(if net.addr().is_ipv4() { 26 } else { 122 });
            }
        }
        self.ipip_mode.get_or_insert(EncapMode::Never);
        self.vxlan_mode.get_or_insert(EncapMode::Never);
        if self.node_selector.trim().is_empty() {
            self.node_selector = "all()".to_string();
        }
        if self.allowed_uses.is_empty() {
            self.allowed_uses = vec![AllowedUse::Workload, AllowedUse::Tunnel];
        }
        self.assignment_mode
            .get_or_insert(AssignmentMode::Automatic);
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        let net = if self.cidr.is_empty() {
            c.fail("spec.cidr", "is required");
            None
        } else if self.cidr.len() > 48 {
            c.bad(
                "spec.cidr",
                quoted(&self.cidr),
                "must be at most 48 characters",
            );
            None
        } else {
            c.strict_cidr("spec.cidr", &self.cidr)
        };
        if let Some(net) = net {
            let link_local: IpNet = if net.addr().is_ipv4() {
                "169.254.0.0/16".parse().expect("literal CIDR")
            } else {
                "fe80::/10".parse().expect("literal CIDR")
            };
            if link_local.contains(&net.network()) || net.contains(&link_local.network()) {
                c.bad(
                    "spec.cidr",
                    quoted(&self.cidr),
                    format!("must not overlap the link-local range {link_local}"),
                );
            }
            let (lo, hi) = if net.addr().is_ipv4() {
                (20, 32)
            } else {
                (116, 128)
            };
            if let Some(bs) = self.block_size {
                if bs < lo || bs > hi {
                    c.bad(
                        "spec.blockSize",
                        bs,
                        format!("must be between {lo} and {hi}"),
                    );
                } else if !self.disabled && i64::from(net.prefix_len()) > bs {
                    c.bad(
                        "spec.blockSize",
                        bs,
                        format!(
                            "the pool /{} is smaller than one block: blockSize must be at least the pool's prefix length",
                            net.prefix_len()
                        ),
                    );
                }
            }
            if net.addr().is_ipv6() && self.ipip_mode.is_some_and(|m| m != EncapMode::Never) {
                c.fail(
                    "spec.ipipMode",
                    "IPIP is not supported for IPv6 pools: must be Never",
                );
            }
        }
        let ipip_on = self.ipip_mode.is_some_and(|m| m != EncapMode::Never);
        let vxlan_on = self.vxlan_mode.is_some_and(|m| m != EncapMode::Never);
        if ipip_on && vxlan_on {
            c.fail("spec", "ipipMode and vxlanMode cannot both be enabled");
        }
        let node_sel = c.opt_selector("spec.nodeSelector", &self.node_selector, false);
        c.opt_selector("spec.namespaceSelector", &self.namespace_selector, false);

        let uses = &self.allowed_uses;
        if uses.len() > 10 {
            c.fail("spec.allowedUses", "at most 10 entries are allowed");
        }
        for (i, u) in uses.iter().enumerate() {
            if uses[..i].contains(u) {
                c.bad(
                    format!("spec.allowedUses[{i}]"),
                    format!("{u:?}"),
                    "duplicate entry",
                );
            }
        }
        let lb = uses.contains(&AllowedUse::LoadBalancer);
        if lb {
            if uses.iter().any(|u| *u != AllowedUse::LoadBalancer) {
                c.fail(
                    "spec.allowedUses",
                    "LoadBalancer cannot be combined with Workload or Tunnel",
                );
            }
            if ipip_on || vxlan_on {
                c.fail(
                    "spec",
                    "a LoadBalancer pool must have ipipMode and vxlanMode Never",
                );
            }
            if self.disable_bgp_export {
                c.fail(
                    "spec.disableBGPExport",
                    "must be false for a LoadBalancer pool",
                );
            }
            if node_sel.is_some_and(|s| !s.is_all()) {
                c.bad(
                    "spec.nodeSelector",
                    quoted(&self.node_selector),
                    "must be all() for a LoadBalancer pool",
                );
            }
        }
        if uses.contains(&AllowedUse::Tunnel) && !self.namespace_selector.is_empty() {
            c.fail(
                "spec.namespaceSelector",
                "cannot be set on a pool whose allowedUses include Tunnel",
            );
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPReservationSpec {
    #[serde(
        default,
        rename = "reservedCIDRs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reserved_cidrs: Vec<String>,
}

impl SpecRules for IPReservationSpec {
    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        for (i, cidr) in self.reserved_cidrs.iter().enumerate() {
            c.cidr(&format!("spec.reservedCIDRs[{i}]"), cidr);
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMConfigurationSpec {
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocate_blocks: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blocks_per_host: Option<i64>,
    #[serde(
        default,
        rename = "kubeVirtVMAddressPersistence",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubevirt_vm_address_persistence: Option<String>,
    /// Seconds a released address waits before it can be handed out again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_cooldown_seconds: Option<i64>,
}

impl SpecRules for IPAMConfigurationSpec {
    fn apply_defaults(&mut self, _meta: &mut ObjectMeta) {
        self.auto_allocate_blocks.get_or_insert(true);
    }

    fn validate_name(name: &str, c: &mut Checker) {
        if name != "default" {
            c.bad(
                "metadata.name",
                quoted(name),
                "the only IPAMConfiguration is named \"default\"",
            );
        }
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        if let Some(m) = self.max_blocks_per_host {
            c.range("spec.maxBlocksPerHost", m, 0, i64::from(i32::MAX));
            if m > 0 && !self.strict_affinity {
                c.bad("spec.maxBlocksPerHost", m, "requires strictAffinity: true");
            }
        }
        if self.auto_allocate_blocks == Some(false) && !self.strict_affinity {
            c.fail(
                "spec.autoAllocateBlocks",
                "cannot be false while strictAffinity is false",
            );
        }
        if let Some(secs) = self.ip_cooldown_seconds {
            c.range("spec.ipCooldownSeconds", secs, 0, 1200);
        }
        if let Some(p) = &self.kubevirt_vm_address_persistence {
            c.one_of(
                "spec.kubeVirtVMAddressPersistence",
                p,
                &["Enabled", "Disabled"],
            );
        }
    }
}
