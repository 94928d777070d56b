//! Configuration kinds: FelixConfiguration, KubeControllersConfiguration,
//! ClusterInformation and CalicoNodeStatus (resources.md §16-18).
//!
//! FelixConfiguration has far more fields in Calico than tortie implements.
//! The supported ones are typed; any other field Calico defines is accepted
//! and kept (so existing manifests apply) but reported as unsupported by
//! [`FelixConfigurationSpec::unsupported_fields`]; a name Calico does not
//! define is rejected like any unknown field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bgp::{LOG_SEVERITIES, validate_singleton_name};
use crate::kind::SpecRules;
use crate::meta::ObjectMeta;
use crate::scalar::{Port, PortValue, normalise_duration};
use crate::validate::{Checker, quoted};

/// `{protocol, port, net}`: a failsafe port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtoPort {
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub port: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub net: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file_path: Option<String>,
    #[serde(
        default,
        rename = "ipv6Support",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_support: Option<bool>,
    #[serde(
        default,
        rename = "bpfEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_insert_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_filter_allow_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_filter_deny_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_mark_mask: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_mark_mask: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_exclude: Option<String>,
    /// Interfaces whose MTU is the host MTU (a regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_iface_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    #[serde(
        default,
        rename = "ipipEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipip_enabled: Option<bool>,
    #[serde(
        default,
        rename = "vxlanEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_enabled: Option<bool>,
    #[serde(default, rename = "ipipMTU", skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<i64>,
    #[serde(default, rename = "vxlanMTU", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<i64>,
    #[serde(
        default,
        rename = "vxlanMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mtu_v6: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<i64>,
    #[serde(default, rename = "vxlanVNI", skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<i64>,
    #[serde(
        default,
        rename = "allowVXLANPacketsFromWorkloads",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_vxlan_packets_from_workloads: Option<bool>,
    #[serde(
        default,
        rename = "allowIPIPPacketsFromWorkloads",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_ipip_packets_from_workloads: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_enabled: Option<bool>,
    #[serde(
        default,
        rename = "wireguardEnabledV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_enabled_v6: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_listening_port: Option<i64>,
    #[serde(
        default,
        rename = "wireguardListeningPortV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_listening_port_v6: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_interface_name: Option<String>,
    #[serde(
        default,
        rename = "natOutgoingAddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_outgoing_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_port_range: Option<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_node_port_ranges: Option<Vec<Port>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_refresh_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsets_refresh_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_conntrack_invalid_check: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_loop_prevention: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_source_spoofing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_reporting_enabled: Option<bool>,
    /// Calico fields tortie does not implement: kept as written, reported.
    #[serde(flatten)]
    pub unsupported: BTreeMap<String, serde_json::Value>,
}

/// FelixConfiguration fields Calico defines that tortie accepts but does not
/// act on. Anything neither typed above nor listed here is an unknown field.
const CALICO_ONLY_FELIX_FIELDS: &[&str] = &[
    "allowedIPNetworks",
    "awsSrcDstCheck",
    "bpfAttachType",
    "bpfCTLBLogFilter",
    "bpfConnectTimeLoadBalancing",
    "bpfConnectTimeLoadBalancingEnabled",
    "bpfConntrackCleanupMode",
    "bpfConntrackLogLevel",
    "bpfConntrackTimeouts",
    "bpfDSROptoutCIDRs",
    "bpfDataIfacePattern",
    "bpfDisableGROForIfaces",
    "bpfDisableUnprivileged",
    "bpfEnforceRPF",
    "bpfExcludeCIDRsFromNAT",
    "bpfExportBufferSizeMB",
    "bpfExtToServiceConnmark",
    "bpfExternalServiceMode",
    "bpfForceTrackPacketsFromIfaces",
    "bpfHostConntrackBypass",
    "bpfHostNetworkedNATWithoutCTLB",
    "bpfKubeProxyEndpointSlicesEnabled",
    "bpfKubeProxyIptablesCleanupEnabled",
    "bpfKubeProxyMinSyncPeriod",
    "bpfL3IfacePattern",
    "bpfLogFilters",
    "bpfLogLevel",
    "bpfMapSizeConntrack",
    "bpfMapSizeIPSets",
    "bpfMapSizeIfState",
    "bpfMapSizeNATAffinity",
    "bpfMapSizeNATBackend",
    "bpfMapSizeNATFrontend",
    "bpfMapSizePerCPUConntrack",
    "bpfMapSizeRoute",
    "bpfPSNATPorts",
    "bpfPolicyDebugEnabled",
    "bpfProfiling",
    "bpfRedirectToPeer",
    "cgroupV2Path",
    "dataplaneDriver",
    "dataplaneWatchdogTimeout",
    "debugDisableLogDropping",
    "debugHost",
    "debugMemoryProfilePath",
    "debugPort",
    "debugSimulateCalcGraphHangAfter",
    "debugSimulateDataplaneApplyDelay",
    "debugSimulateDataplaneHangAfter",
    "deviceRouteProtocol",
    "deviceRouteSourceAddress",
    "deviceRouteSourceAddressIPv6",
    "endpointReportingDelay",
    "endpointStatusPathPrefix",
    "externalNodesCIDRList",
    "featureDetectOverride",
    "featureGates",
    "floatingIPs",
    "flowLogsCollectorDebugTrace",
    "flowLogsFlushInterval",
    "flowLogsGoldmaneServer",
    "flowLogsLocalReporter",
    "flowLogsPolicyEvaluationMode",
    "genericXDPEnabled",
    "goGCThreshold",
    "goMaxProcs",
    "goMemoryLimitMB",
    "healthTimeoutOverrides",
    "interfaceRefreshInterval",
    "ipForwarding",
    "ipsecMode",
    "iptablesLockFilePath",
    "iptablesLockProbeInterval",
    "iptablesLockTimeout",
    "iptablesMangleAllowAction",
    "iptablesNATOutgoingInterfaceFilter",
    "iptablesPostWriteCheckInterval",
    "liveMigrationRouteConvergenceTime",
    "logDebugFilenameRegex",
    "logSeveritySys",
    "maxIpsetSize",
    "metadataAddr",
    "metadataPort",
    "natOutgoingExclusions",
    "netlinkTimeout",
    "nfNetlinkBufSize",
    "nftablesFilterAllowAction",
    "nftablesFilterDenyAction",
    "nftablesMangleAllowAction",
    "nftablesRefreshInterval",
    "nodeSelector",
    "openstackRegion",
    "policySyncPathPrefix",
    "prometheusGoMetricsEnabled",
    "prometheusMetricsHost",
    "prometheusProcessMetricsEnabled",
    "prometheusWireGuardMetricsEnabled",
    "removeExternalRoutes",
    "reportingInterval",
    "reportingTTL",
    "requireMTUFile",
    "routeSyncDisabled",
    "routeTableRange",
    "routeTableRanges",
    "serviceLoopPreventionMode",
    "sidecarAccelerationEnabled",
    "statsDumpFilePath",
    "tproxyMode",
    "tproxyPort",
    "tproxyUpstreamConnMark",
    "usageReportingEnabled",
    "usageReportingInitialDelay",
    "usageReportingInterval",
    "useInternalDataplaneDriver",
    "windowsManageFirewallRules",
    "wireguardHostEncryptionEnabled",
    "wireguardInterfaceNameV6",
    "wireguardKeepAlive",
    "wireguardMTU",
    "wireguardMTUV6",
    "wireguardRoutingRulePriority",
    "wireguardThreadingEnabled",
    "xdpEnabled",
    "xdpRefreshInterval",
];

impl FelixConfigurationSpec {
    /// Calico fields present in this spec that tortie does not act on.
    pub fn unsupported_fields(&self) -> Vec<&str> {
        self.unsupported
            .keys()
            .map(String::as_str)
            .filter(|k| CALICO_ONLY_FELIX_FIELDS.contains(k))
            .collect()
    }
}

fn validate_proto_ports(c: &mut Checker, path: &str, ports: &[ProtoPort]) {
    for (i, pp) in ports.iter().enumerate() {
        let p = format!("{path}[{i}]");
        c.one_of_ignore_case(
            &format!("{p}.protocol"),
            &pp.protocol,
            &["TCP", "UDP", "SCTP"],
        );
        c.range(&format!("{p}.port"), pp.port, 1, 65535);
        if !pp.net.is_empty() {
            c.cidr(&format!("{p}.net"), &pp.net);
        }
    }
}

impl SpecRules for FelixConfigurationSpec {
    fn apply_defaults(&mut self, _meta: &mut ObjectMeta) {
        for d in [
            &mut self.route_refresh_interval,
            &mut self.iptables_refresh_interval,
            &mut self.ipsets_refresh_interval,
        ]
        .into_iter()
        .flatten()
        {
            *d = normalise_duration(d);
        }
        for list in [
            &mut self.failsafe_inbound_host_ports,
            &mut self.failsafe_outbound_host_ports,
        ]
        .into_iter()
        .flatten()
        {
            for pp in list {
                pp.protocol = pp.protocol.to_ascii_uppercase();
            }
        }
        if let Some(ranges) = &mut self.kube_node_port_ranges {
            for r in ranges {
                *r = r.normalised();
            }
        }
    }

    fn validate_name(name: &str, c: &mut Checker) {
        validate_singleton_name("FelixConfiguration", name, c);
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        for key in self.unsupported.keys() {
            if !CALICO_ONLY_FELIX_FIELDS.contains(&key.as_str()) {
                c.fail(
                    format!("spec.{key}"),
                    "field in document is not recognized or is in the wrong location",
                );
            }
        }
        for (field, v) in [
            ("logSeverityScreen", &self.log_severity_screen),
            ("logSeverityFile", &self.log_severity_file),
        ] {
            if let Some(v) = v {
                c.one_of_ignore_case(&format!("spec.{field}"), v, &LOG_SEVERITIES);
            }
        }
        let enums: [(&str, &Option<String>, &[&str]); 10] = [
            (
                "nftablesMode",
                &self.nftables_mode,
                &["Enabled", "Disabled", "Auto"],
            ),
            (
                "iptablesBackend",
                &self.iptables_backend,
                &["Auto", "Legacy", "NFT"],
            ),
            (
                "chainInsertMode",
                &self.chain_insert_mode,
                &["Insert", "Append"],
            ),
            (
                "defaultEndpointToHostAction",
                &self.default_endpoint_to_host_action,
                &["Drop", "Return", "Accept"],
            ),
            (
                "iptablesFilterAllowAction",
                &self.iptables_filter_allow_action,
                &["Accept", "Return"],
            ),
            (
                "iptablesFilterDenyAction",
                &self.iptables_filter_deny_action,
                &["Drop", "Reject"],
            ),
            (
                "serviceLoopPrevention",
                &self.service_loop_prevention,
                &["Drop", "Reject", "Disabled"],
            ),
            (
                "workloadSourceSpoofing",
                &self.workload_source_spoofing,
                &["Disabled", "Any"],
            ),
            (
                "routeSource",
                &self.route_source,
                &["WorkloadIPs", "CalicoIPAM"],
            ),
            (
                "programClusterRoutes",
                &self.program_cluster_routes,
                &[
                    "Enabled",
                    "Disabled",
                    "EnabledIPIPOnly",
                    "EnabledNoEncapOnly",
                ],
            ),
        ];
        for (field, v, allowed) in enums {
            if let Some(v) = v {
                c.one_of(&format!("spec.{field}"), v, allowed);
            }
        }
        for (field, v) in [
            ("iptablesMarkMask", self.iptables_mark_mask),
            ("nftablesMarkMask", self.nftables_mark_mask),
        ] {
            if let Some(v) = v {
                c.range(&format!("spec.{field}"), v, 0, i64::from(u32::MAX));
            }
        }
        for (field, v) in [
            ("vxlanPort", self.vxlan_port),
            ("wireguardListeningPort", self.wireguard_listening_port),
            ("wireguardListeningPortV6", self.wireguard_listening_port_v6),
            ("healthPort", self.health_port),
            ("prometheusMetricsPort", self.prometheus_metrics_port),
        ] {
            if let Some(v) = v {
                c.range(&format!("spec.{field}"), v, 1, 65535);
            }
        }
        if let Some(vni) = self.vxlan_vni {
            c.range("spec.vxlanVNI", vni, 1, 16_777_215);
        }
        for (field, v) in [
            ("ipipMTU", self.ipip_mtu),
            ("vxlanMTU", self.vxlan_mtu),
            ("vxlanMTUV6", self.vxlan_mtu_v6),
        ] {
            if let Some(v) = v {
                c.range(&format!("spec.{field}"), v, 0, 65535);
            }
        }
        if let Some(p) = &self.failsafe_inbound_host_ports {
            validate_proto_ports(c, "spec.failsafeInboundHostPorts", p);
        }
        if let Some(p) = &self.failsafe_outbound_host_ports {
            validate_proto_ports(c, "spec.failsafeOutboundHostPorts", p);
        }
        if let Some(a) = &self.nat_outgoing_address {
            c.ipv4("spec.natOutgoingAddress", a);
        }
        if let Some(r) = &self.nat_port_range
            && let Err(e) = r.parse().and_then(|v| match v {
                PortValue::Range { .. } => Ok(()),
                PortValue::Named(_) => Err("must be a port number or range".to_string()),
            })
        {
            c.bad("spec.natPortRange", r, e);
        }
        if let Some(ranges) = &self.kube_node_port_ranges {
            if ranges.len() > 7 {
                c.fail("spec.kubeNodePortRanges", "at most 7 ranges are allowed");
            }
            for (i, r) in ranges.iter().enumerate() {
                let p = format!("spec.kubeNodePortRanges[{i}]");
                match r.parse() {
                    Ok(PortValue::Range { .. }) => {}
                    Ok(PortValue::Named(_)) => c.bad(&p, r, "must be a port number or range"),
                    Err(e) => c.bad(&p, r, e),
                }
            }
        }
        for (field, d) in [
            ("routeRefreshInterval", &self.route_refresh_interval),
            ("iptablesRefreshInterval", &self.iptables_refresh_interval),
            ("ipsetsRefreshInterval", &self.ipsets_refresh_interval),
        ] {
            if let Some(d) = d {
                c.duration(&format!("spec.{field}"), d);
            }
        }
        if let Some(prefix) = &self.log_prefix {
            let ok = prefix.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'%' | b':' | b' ' | b'/' | b'_' | b'-')
            });
            if !ok {
                c.bad(
                    "spec.logPrefix",
                    quoted(prefix),
                    "may only contain [a-zA-Z0-9%: /_-]",
                );
            }
        }
        if let Some(p) = &self.mtu_iface_pattern
            && let Err(e) = regex::Regex::new(p)
        {
            let reason = format!("must be a regular expression: {e}");
            c.bad("spec.mtuIfacePattern", quoted(p), &reason);
        }
        if let Some(p) = &self.interface_prefix {
            for part in p.split(',') {
                if !crate::scalar::is_interface_name(part) {
                    c.bad(
                        "spec.interfacePrefix",
                        quoted(p),
                        "must be a comma-separated list of interface name prefixes",
                    );
                    break;
                }
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeControllersConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<String>,
    #[serde(
        default,
        rename = "etcdV3CompactionPeriod",
        skip_serializing_if = "Option::is_none"
    )]
    pub etcd_v3_compaction_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_profile_port: Option<i64>,
    #[serde(default)]
    pub controllers: ControllersConfig,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllersConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeControllerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ReconcilerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_endpoint: Option<ReconcilerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ReconcilerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<ReconcilerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerControllerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationControllerConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcilerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciler_period: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeControllerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciler_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_labels: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_endpoint: Option<AutoHostEndpointConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_grace_period: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoHostEndpointConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_default_host_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerControllerConfig {
    #[serde(default, rename = "assignIPs", skip_serializing_if = "Option::is_none")]
    pub assign_ips: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationControllerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name_migrator: Option<String>,
}

impl SpecRules for KubeControllersConfigurationSpec {
    fn validate_name(name: &str, c: &mut Checker) {
        if name != "default" {
            c.bad(
                "metadata.name",
                quoted(name),
                "the only KubeControllersConfiguration is named \"default\"",
            );
        }
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        if let Some(l) = &self.log_severity_screen {
            c.one_of(
                "spec.logSeverityScreen",
                l,
                &[
                    "None", "Debug", "Info", "Warning", "Error", "Fatal", "Panic",
                ],
            );
        }
        if let Some(h) = &self.health_checks {
            c.one_of("spec.healthChecks", h, &["Enabled", "Disabled"]);
        }
        if let Some(d) = &self.etcd_v3_compaction_period {
            c.duration("spec.etcdV3CompactionPeriod", d);
        }
        for (field, v) in [
            ("prometheusMetricsPort", self.prometheus_metrics_port),
            ("debugProfilePort", self.debug_profile_port),
        ] {
            if let Some(v) = v {
                c.range(&format!("spec.{field}"), v, 0, 65535);
            }
        }
        let ctl = &self.controllers;
        if let Some(n) = &ctl.node {
            if let Some(d) = &n.reconciler_period {
                c.duration("spec.controllers.node.reconcilerPeriod", d);
            }
            if let Some(d) = &n.leak_grace_period {
                c.duration("spec.controllers.node.leakGracePeriod", d);
            }
            if let Some(s) = &n.sync_labels {
                c.one_of(
                    "spec.controllers.node.syncLabels",
                    s,
                    &["Enabled", "Disabled"],
                );
            }
            if let Some(h) = &n.host_endpoint {
                if let Some(a) = &h.auto_create {
                    c.one_of(
                        "spec.controllers.node.hostEndpoint.autoCreate",
                        a,
                        &["Enabled", "Disabled"],
                    );
                }
                if let Some(a) = &h.create_default_host_endpoint {
                    c.one_of(
                        "spec.controllers.node.hostEndpoint.createDefaultHostEndpoint",
                        a,
                        &["Enabled", "Disabled"],
                    );
                }
            }
        }
        for (name, r) in [
            ("policy", &ctl.policy),
            ("workloadEndpoint", &ctl.workload_endpoint),
            ("serviceAccount", &ctl.service_account),
            ("namespace", &ctl.namespace),
        ] {
            if let Some(d) = r.as_ref().and_then(|r| r.reconciler_period.as_ref()) {
                c.duration(&format!("spec.controllers.{name}.reconcilerPeriod"), d);
            }
        }
        if let Some(a) = ctl
            .load_balancer
            .as_ref()
            .and_then(|l| l.assign_ips.as_ref())
        {
            c.one_of(
                "spec.controllers.loadBalancer.assignIPs",
                a,
                &["AllServices", "RequestedServicesOnly"],
            );
        }
        if let Some(m) = ctl
            .migration
            .as_ref()
            .and_then(|m| m.policy_name_migrator.as_ref())
        {
            c.one_of(
                "spec.controllers.migration.policyNameMigrator",
                m,
                &["Enabled", "Disabled"],
            );
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterInformationSpec {
    #[serde(
        default,
        rename = "clusterGUID",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_guid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub calico_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_ready: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl SpecRules for ClusterInformationSpec {
    fn validate_name(name: &str, c: &mut Checker) {
        if name != "default" {
            c.bad(
                "metadata.name",
                quoted(name),
                "the only ClusterInformation is named \"default\"",
            );
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeStatusSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_period_seconds: Option<i64>,
}

impl SpecRules for CalicoNodeStatusSpec {
    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        if self.node.is_empty() {
            c.fail("spec.node", "is required");
        } else {
            c.subdomain("spec.node", &self.node);
        }
        for (i, cl) in self.classes.iter().enumerate() {
            c.one_of(
                &format!("spec.classes[{i}]"),
                cl,
                &["Agent", "BGP", "Routes"],
            );
        }
        if let Some(p) = self.update_period_seconds {
            c.range("spec.updatePeriodSeconds", p, 0, i64::from(u32::MAX));
        }
    }
}
