//! One case per validation rule of resources.md and policy.md §4: a manifest
//! that breaks the rule must be rejected with a message naming the field.
//! The positive cases next to them show the rule's boundary is where the
//! spec puts it.

mod common;

use common::{admit, doc};

/// Asserts `yaml` is rejected and the message contains `expect`.
#[track_caller]
fn rejects(yaml: &str, expect: &str) {
    match admit(yaml) {
        Ok(r) => panic!("accepted, but should fail with {expect:?}:\n{yaml}\nstored as {r:?}"),
        Err(msg) => assert!(
            msg.contains(expect),
            "error does not mention {expect:?}:\n  got: {msg}\n  for: {yaml}"
        ),
    }
}

#[track_caller]
fn accepts(yaml: &str) -> tortie_model::Resource {
    admit(yaml).unwrap_or_else(|e| panic!("rejected: {e}\nfor: {yaml}"))
}

#[test]
fn ippool_rules() {
    let pool = |spec: &str| doc("IPPool", "p1", spec);
    rejects(
        &pool("{cidr: 10.0.0.1/16}"),
        "spec.cidr \"10.0.0.1/16\": \"10.0.0.1/16\" has host bits set",
    );
    rejects(&pool("{cidr: 10.0.0.0/33}"), "spec.cidr");
    rejects(&pool("{blockSize: 26}"), "spec.cidr: is required");
    rejects(
        &pool(&format!("{{cidr: \"{}\"}}", "1".repeat(49))),
        "spec.cidr",
    );
    rejects(&pool("{cidr: 169.254.0.0/16}"), "link-local");
    rejects(&pool("{cidr: 169.0.0.0/8}"), "link-local");
    rejects(&pool("{cidr: 'fe80::/64'}"), "link-local");
    rejects(
        &pool("{cidr: 10.0.0.0/16, blockSize: 33}"),
        "IPPool \"p1\": spec.blockSize 33: must be between 20 and 32",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, blockSize: 19}"),
        "spec.blockSize 19: must be between 20 and 32",
    );
    rejects(
        &pool("{cidr: 'fd00::/48', blockSize: 115}"),
        "spec.blockSize 115: must be between 116 and 128",
    );
    rejects(
        &pool("{cidr: 'fd00::/48', blockSize: 129}"),
        "spec.blockSize 129",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/28, blockSize: 26}"),
        "spec.blockSize 26: the pool /28 is smaller than one block",
    );
    accepts(&pool("{cidr: 10.0.0.0/28, blockSize: 26, disabled: true}"));
    rejects(
        &pool("{cidr: 'fd00::/48', ipipMode: Always}"),
        "spec.ipipMode",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, ipipMode: Always, vxlanMode: CrossSubnet}"),
        "ipipMode and vxlanMode cannot both be enabled",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, ipipMode: always}"),
        "spec.ipipMode: unknown variant `always`",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, vxlanMode: sometimes}"),
        "spec.vxlanMode",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, nodeSelector: 'a ='}"),
        "spec.nodeSelector",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, nodeSelector: global()}"),
        "spec.nodeSelector \"global()\": global() is not allowed here",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, namespaceSelector: global()}"),
        "spec.namespaceSelector",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, allowedUses: [Workload, Workload]}"),
        "spec.allowedUses[1]",
    );
    rejects(
        &pool(
            "{cidr: 10.0.0.0/16, allowedUses: [Workload, Tunnel, Workload, Tunnel, Workload, Tunnel, Workload, Tunnel, Workload, Tunnel, Workload]}",
        ),
        "at most 10",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, allowedUses: [Workload, Banana]}"),
        "spec.allowedUses[1]",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer, Workload]}"),
        "LoadBalancer cannot be combined with Workload or Tunnel",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer], vxlanMode: Always}"),
        "LoadBalancer pool must have ipipMode and vxlanMode Never",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer], disableBGPExport: true}"),
        "spec.disableBGPExport",
    );
    rejects(
        &pool("{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer], nodeSelector: 'a == \"b\"'}"),
        "spec.nodeSelector",
    );
    accepts(&pool("{cidr: 10.0.0.0/16, allowedUses: [LoadBalancer]}"));
    rejects(
        &pool("{cidr: 10.0.0.0/16, allowedUses: [Tunnel], namespaceSelector: 'a == \"b\"'}"),
        "spec.namespaceSelector: cannot be set",
    );
    accepts(&pool(
        "{cidr: 10.0.0.0/16, allowedUses: [Workload], namespaceSelector: 'a == \"b\"'}",
    ));
    rejects(
        &pool("{cidr: 10.0.0.0/16, assignmentMode: Sometimes}"),
        "spec.assignmentMode",
    );
}

#[test]
fn ippool_defaults_and_deprecated_fields() {
    let r = accepts(&doc("IPPool", "p1", "{cidr: 10.1.0.0/16}"));
    let yaml = serde_json::to_value(&r).unwrap();
    assert_eq!(yaml["spec"]["blockSize"], 26);
    assert_eq!(yaml["spec"]["ipipMode"], "Never");
    assert_eq!(yaml["spec"]["vxlanMode"], "Never");
    assert_eq!(yaml["spec"]["nodeSelector"], "all()");
    assert_eq!(
        yaml["spec"]["allowedUses"],
        serde_json::json!(["Workload", "Tunnel"])
    );
    assert_eq!(yaml["spec"]["assignmentMode"], "Automatic");
    let v6 = accepts(&doc("IPPool", "p6", "{cidr: 'fd00:0:0::/48'}"));
    let v6 = serde_json::to_value(&v6).unwrap();
    assert_eq!(v6["spec"]["blockSize"], 122);
    assert_eq!(v6["spec"]["cidr"], "fd00::/48", "stored in normalised form");
    let old = accepts(&doc(
        "IPPool",
        "old",
        "{cidr: 10.2.0.0/16, ipip: {enabled: true, mode: cross-subnet}, nat-outgoing: true}",
    ));
    let old = serde_json::to_value(&old).unwrap();
    assert_eq!(old["spec"]["ipipMode"], "CrossSubnet");
    assert_eq!(old["spec"]["natOutgoing"], true);
    assert!(old["spec"].get("ipip").is_none() && old["spec"].get("nat-outgoing").is_none());
}

#[test]
fn ipreservation_and_ipam_config_rules() {
    rejects(
        &doc(
            "IPReservation",
            "r",
            "{reservedCIDRs: [10.0.0.1, 10.0.0.0/33]}",
        ),
        "spec.reservedCIDRs[1]",
    );
    accepts(&doc(
        "IPReservation",
        "r",
        "{reservedCIDRs: [10.0.0.1, 10.0.0.5/24]}",
    ));
    rejects(
        &doc("IPAMConfiguration", "other", "{strictAffinity: true}"),
        "metadata.name",
    );
    rejects(
        &doc(
            "IPAMConfiguration",
            "default",
            "{strictAffinity: false, maxBlocksPerHost: 4}",
        ),
        "spec.maxBlocksPerHost 4: requires strictAffinity",
    );
    rejects(
        &doc(
            "IPAMConfiguration",
            "default",
            "{strictAffinity: false, autoAllocateBlocks: false}",
        ),
        "spec.autoAllocateBlocks",
    );
    accepts(&doc(
        "IPAMConfiguration",
        "default",
        "{strictAffinity: true, maxBlocksPerHost: 4}",
    ));
}

#[test]
fn bgp_configuration_rules() {
    let bc = |spec: &str| doc("BGPConfiguration", "default", spec);
    rejects(&doc("BGPConfiguration", "mine", "{}"), "metadata.name");
    accepts(&doc("BGPConfiguration", "node.node-1", "{}"));
    rejects(&bc("{logSeverityScreen: Loud}"), "spec.logSeverityScreen");
    accepts(&bc("{logSeverityScreen: info}"));
    rejects(&bc("{asNumber: 4294967296}"), "spec.asNumber 4294967296");
    rejects(&bc("{asNumber: '65536.1'}"), "spec.asNumber");
    let dotted = accepts(&bc("{asNumber: '1.10'}"));
    assert_eq!(
        serde_json::to_value(&dotted).unwrap()["spec"]["asNumber"],
        65546
    );
    rejects(
        &bc("{listenPort: 0}"),
        "spec.listenPort 0: must be between 1 and 65535",
    );
    rejects(&bc("{listenPort: 65536}"), "spec.listenPort");
    rejects(&bc("{bindMode: All}"), "spec.bindMode");
    rejects(
        &bc("{serviceClusterIPs: [{cidr: 10.96.0.1/12}]}"),
        "spec.serviceClusterIPs[0].cidr",
    );
    rejects(
        &bc("{serviceExternalIPs: [{cidr: nope}]}"),
        "spec.serviceExternalIPs[0].cidr",
    );
    rejects(
        &bc("{serviceLoadBalancerIPs: [{cidr: 10.0.0.1/8}]}"),
        "spec.serviceLoadBalancerIPs[0].cidr",
    );
    rejects(
        &bc("{serviceLoadBalancerAggregation: Maybe}"),
        "spec.serviceLoadBalancerAggregation",
    );
    rejects(
        &bc(
            "{communities: [{name: c1, value: '70000:1'}], prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [c1]}]}",
        ),
        "spec.communities[0].value",
    );
    accepts(&bc(
        "{communities: [{name: c1, value: '65000:100'}, {name: c2, value: '70000:1:2'}], prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [c1, c2, '1:1']}]}",
    ));
    rejects(
        &bc("{communities: [{name: c1, value: '1:1'}]}"),
        "spec.communities[0].name \"c1\": is not referenced",
    );
    rejects(
        &bc("{prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [undefined]}]}"),
        "spec.prefixAdvertisements[0].communities[0]",
    );
    rejects(
        &bc("{prefixAdvertisements: [{cidr: 10.0.0.1/8}]}"),
        "spec.prefixAdvertisements[0].cidr",
    );
    let many: Vec<String> = (0..501)
        .map(|i| format!("{{name: c{i}, value: '1:{i}'}}"))
        .collect();
    let names: Vec<String> = (0..501).map(|i| format!("c{i}")).collect();
    rejects(
        &bc(&format!(
            "{{communities: [{}], prefixAdvertisements: [{{cidr: 10.0.0.0/8, communities: [{}]}}]}}",
            many.join(", "),
            names.join(", ")
        )),
        "spec.communities: at most 500",
    );
    rejects(
        &bc("{nodeToNodeMeshEnabled: false, nodeMeshPassword: {secretKeyRef: {name: s, key: k}}}"),
        "spec.nodeMeshPassword",
    );
    rejects(
        &bc("{nodeMeshPassword: {secretKeyRef: {name: s}}}"),
        "spec.nodeMeshPassword.secretKeyRef.key",
    );
    rejects(
        &bc("{nodeToNodeMeshEnabled: false, nodeMeshMaxRestartTime: 120s}"),
        "spec.nodeMeshMaxRestartTime",
    );
    rejects(
        &bc("{nodeMeshMaxRestartTime: 2 minutes}"),
        "spec.nodeMeshMaxRestartTime",
    );
    rejects(
        &bc("{ignoredInterfaces: ['*']}"),
        "spec.ignoredInterfaces[0]",
    );
    rejects(
        &bc("{ignoredInterfaces: [eth0, 'bad name']}"),
        "spec.ignoredInterfaces[1]",
    );
    accepts(&bc("{ignoredInterfaces: ['eth*', 'ens3.100']}"));
    rejects(
        &bc("{localWorkloadPeeringIPV4: 'fd00::1'}"),
        "spec.localWorkloadPeeringIPV4",
    );
    rejects(
        &bc("{localWorkloadPeeringIPV6: 10.0.0.1}"),
        "spec.localWorkloadPeeringIPV6",
    );
    rejects(
        &bc("{programClusterRoutes: Sometimes}"),
        "spec.programClusterRoutes",
    );
    rejects(
        &bc("{ipv4NormalRoutePriority: 0}"),
        "spec.ipv4NormalRoutePriority 0",
    );
    rejects(
        &bc("{ipv6NormalRoutePriority: 2147483647}"),
        "spec.ipv6NormalRoutePriority",
    );
}

#[test]
fn bgp_peer_rules() {
    let peer = |spec: &str| doc("BGPPeer", "peer1", spec);
    rejects(
        &peer("{node: n1, nodeSelector: 'a == \"b\"', peerIP: 10.0.0.1, asNumber: 64500}"),
        "spec.nodeSelector: cannot be combined with spec.node",
    );
    rejects(
        &peer("{peerIP: 10.0.0.300, asNumber: 64500}"),
        "spec.peerIP",
    );
    rejects(
        &peer("{peerIP: '10.0.0.1:0', asNumber: 64500}"),
        "spec.peerIP",
    );
    rejects(
        &peer("{peerIP: '10.0.0.1:70000', asNumber: 64500}"),
        "spec.peerIP",
    );
    accepts(&peer("{peerIP: '10.0.0.1:1179', asNumber: 64500}"));
    accepts(&peer("{peerIP: '[fd00::1]:179', asNumber: 64500}"));
    rejects(
        &peer("{peerIP: 10.0.0.1, peerSelector: 'rr == \"true\"'}"),
        "spec.peerSelector: cannot be combined with spec.peerIP",
    );
    rejects(
        &peer("{peerSelector: 'rr == \"true\"', asNumber: 64500}"),
        "spec.asNumber 64500: must be empty when peerSelector is set",
    );
    rejects(
        &peer("{localWorkloadSelector: 'app == \"bgp\"'}"),
        "spec.asNumber: is required with localWorkloadSelector",
    );
    rejects(
        &peer("{localWorkloadSelector: 'app == \"bgp\"', peerIP: 10.0.0.1, asNumber: 1}"),
        "spec.localWorkloadSelector: cannot be combined",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, keepOriginalNextHop: true, nextHopMode: Self}"),
        "spec.keepOriginalNextHop",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, nextHopMode: Other}"),
        "spec.nextHopMode",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, sourceAddress: Any}"),
        "spec.sourceAddress",
    );
    rejects(
        &peer("{asNumber: 1, reachableBy: 10.0.0.254}"),
        "spec.reachableBy: requires spec.peerIP",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, reachableBy: 'fd00::1'}"),
        "spec.reachableBy",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, filters: [Bad_Name]}"),
        "spec.filters[0]",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, ttlSecurity: 300}"),
        "spec.ttlSecurity 300",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, password: {secretKeyRef: {key: k}}}"),
        "spec.password.secretKeyRef.name",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, reversePeering: Never}"),
        "spec.reversePeering",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, keepaliveTime: soon}"),
        "spec.keepaliveTime",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, nodeSelector: 'x =='}"),
        "spec.nodeSelector",
    );
    rejects(
        &peer("{peerIP: 10.0.0.1, asNumber: 1, localASNumber: -1}"),
        "spec.localASNumber",
    );
}

#[test]
fn bgp_filter_rules() {
    let f = |spec: &str| doc("BGPFilter", "f1", spec);
    rejects(
        &f("{importV4: [{cidr: 10.0.0.0/8, matchOperator: In}]}"),
        "spec.importV4[0].action: is required",
    );
    rejects(
        &f("{importV4: [{action: Maybe}]}"),
        "spec.importV4[0].action",
    );
    rejects(
        &f("{exportV4: [{action: Accept, cidr: 'fd00::/8', matchOperator: In}]}"),
        "spec.exportV4[0].cidr",
    );
    rejects(
        &f("{exportV6: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: In}]}"),
        "spec.exportV6[0].cidr",
    );
    rejects(
        &f("{importV4: [{action: Accept, cidr: 10.0.0.1/8, matchOperator: In}]}"),
        "spec.importV4[0].cidr",
    );
    rejects(
        &f("{importV4: [{action: Accept, cidr: 10.0.0.0/8}]}"),
        "cidr and matchOperator must be set together",
    );
    rejects(
        &f("{importV4: [{action: Accept, matchOperator: In}]}"),
        "cidr and matchOperator must be set together",
    );
    rejects(
        &f("{importV4: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: Like}]}"),
        "spec.importV4[0].matchOperator",
    );
    rejects(
        &f("{importV4: [{action: Accept, prefixLength: {min: 8}}]}"),
        "spec.importV4[0].prefixLength: requires cidr",
    );
    rejects(
        &f(
            "{importV4: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {max: 33}}]}",
        ),
        "spec.importV4[0].prefixLength.max 33",
    );
    rejects(
        &f(
            "{importV6: [{action: Accept, cidr: 'fd00::/8', matchOperator: In, prefixLength: {min: 129}}]}",
        ),
        "spec.importV6[0].prefixLength.min 129",
    );
    rejects(
        &f("{importV4: [{action: Accept, source: Everyone}]}"),
        "spec.importV4[0].source",
    );
    rejects(
        &f("{importV4: [{action: Accept, interface: 'eth 0'}]}"),
        "spec.importV4[0].interface",
    );
    rejects(
        &f("{importV4: [{action: Accept, peerType: xBGP}]}"),
        "spec.importV4[0].peerType",
    );
    rejects(
        &f("{importV4: [{action: Accept, communities: {values: ['1:1', '2:2']}}]}"),
        "spec.importV4[0].communities.values",
    );
    rejects(
        &f("{importV4: [{action: Accept, communities: {values: ['x']}}]}"),
        "spec.importV4[0].communities.values[0]",
    );
    rejects(
        &f("{importV4: [{action: Accept, asPathPrefix: [4294967296]}]}"),
        "spec.importV4[0].asPathPrefix[0]",
    );
    rejects(
        &f("{importV4: [{action: Accept, priority: 0}]}"),
        "spec.importV4[0].priority 0",
    );
    rejects(
        &f("{importV4: [{action: Reject, operations: [{setPriority: {value: 5}}]}]}"),
        "spec.importV4[0].operations: are only allowed with action Accept",
    );
    rejects(
        &f(
            "{importV4: [{action: Accept, operations: [{setPriority: {value: 5}, addCommunity: {value: '1:1'}}]}]}",
        ),
        "spec.importV4[0].operations[0]: must set exactly one",
    );
    rejects(
        &f("{importV4: [{action: Accept, operations: [{}]}]}"),
        "spec.importV4[0].operations[0]",
    );
    let ops: Vec<&str> = std::iter::repeat_n("{setPriority: {value: 5}}", 11).collect();
    rejects(
        &f(&format!(
            "{{importV4: [{{action: Accept, operations: [{}]}}]}}",
            ops.join(", ")
        )),
        "at most 10 operations",
    );
    rejects(
        &f("{importV4: [{action: Accept, operations: [{addCommunity: {value: 'nope'}}]}]}"),
        "spec.importV4[0].operations[0].addCommunity.value",
    );
    rejects(
        &f("{importV4: [{action: Accept, operations: [{prependASPath: {prefix: []}}]}]}"),
        "prependASPath.prefix",
    );
    accepts(&f(
        "{importV4: [{action: Reject, cidr: 0.0.0.0/0, matchOperator: Equal}, {action: Accept, operations: [{prependASPath: {prefix: [65000, 65000]}}]}]}",
    ));
}

#[test]
fn node_rules() {
    let n = |spec: &str| doc("Node", "node-1", spec);
    rejects(&n("{bgp: {}}"), "spec.bgp: is present but empty");
    rejects(
        &n("{bgp: {ipv4Address: 'fd00::1/64'}}"),
        "spec.bgp.ipv4Address",
    );
    rejects(
        &n("{bgp: {ipv6Address: 10.0.0.1/24}}"),
        "spec.bgp.ipv6Address",
    );
    accepts(&n("{bgp: {ipv4Address: 10.0.0.5/24, asNumber: 64512}}"));
    rejects(
        &n("{bgp: {ipv4Address: 10.0.0.5/24, routeReflectorClusterID: 'x'}}"),
        "spec.bgp.routeReflectorClusterID",
    );
    rejects(
        &n("{bgp: {ipv4Address: 10.0.0.5/24, ipv4IPIPTunnelAddr: 'fd00::1'}}"),
        "spec.bgp.ipv4IPIPTunnelAddr",
    );
    rejects(
        &n("{ipv4VXLANTunnelAddr: 10.0.0.256}"),
        "spec.ipv4VXLANTunnelAddr",
    );
    rejects(
        &n("{vxlanTunnelMACAddr: 'ee:ee'}"),
        "spec.vxlanTunnelMACAddr",
    );
    rejects(
        &n("{addresses: [{address: 10.0.0.1, type: PublicIP}]}"),
        "spec.addresses[0].type",
    );
    rejects(
        &n("{wireguard: {interfaceIPv4Address: 'fd00::1'}}"),
        "spec.wireguard.interfaceIPv4Address",
    );
    rejects(
        &n("{orchRefs: [{nodeName: x}]}"),
        "spec.orchRefs[0].orchestrator",
    );
}

#[test]
fn tier_rules() {
    rejects(
        &doc("Tier", "sec.urity", "{order: 100}"),
        "metadata.name \"sec.urity\": a tier name must be a DNS label",
    );
    rejects(&doc("Tier", "Security", "{order: 100}"), "metadata.name");
    rejects(
        &doc("Tier", "security", "{defaultAction: Allow}"),
        "spec.defaultAction",
    );
    rejects(
        &doc("Tier", "default", "{order: 5}"),
        "spec.order: the order of the reserved tier",
    );
    rejects(
        &doc("Tier", "kube-admin", "{defaultAction: Deny}"),
        "spec.defaultAction: the default action of the reserved tier",
    );
    let t = accepts(&doc("Tier", "kube-baseline", "{}"));
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(
        v["spec"]["order"], 10000000,
        "whole-number orders print without a fraction"
    );
    assert_eq!(v["spec"]["defaultAction"], "Pass");
    let t = accepts(&doc("Tier", "security", "{order: 100.5}"));
    assert_eq!(
        serde_json::to_value(&t).unwrap()["spec"]["defaultAction"],
        "Deny"
    );
}

#[test]
fn policy_names_selectors_and_types() {
    let np = |name: &str, spec: &str| doc("NetworkPolicy", name, spec);
    rejects(&np("a.b.c", "{}"), "metadata.name \"a.b.c\"");
    rejects(&np("-a", "{}"), "metadata.name");
    rejects(&np("a_b", "{}"), "metadata.name");
    rejects(&np("Web", "{}"), "metadata.name");
    accepts(&np("default.web", "{}"));
    accepts(&np("knp.default.some.k8s-name", "{}"));
    accepts(&np("ossg.default.x.y", "{}"));
    rejects(&doc("GlobalNetworkPolicy", "a.b.c", "{}"), "metadata.name");
    rejects(
        &doc("GlobalNetworkPolicy", "knp.default.x", "{}"),
        "metadata.name",
    );
    rejects(&np("p", "{selector: 'app = \"x\"'}"), "spec.selector");
    rejects(
        &np("p", "{selector: global()}"),
        "spec.selector \"global()\": global() is not allowed here",
    );
    rejects(
        &np(
            "p",
            &format!("{{selector: 'a == \"{}\"'}}", "x".repeat(1030)),
        ),
        "spec.selector: selector is longer than 1024",
    );
    rejects(&np("p", "{types: [Ingress, Ingress]}"), "spec.types[1]");
    rejects(
        &np("p", "{types: [Ingress, Egress, Ingress]}"),
        "spec.types: at most 2",
    );
    rejects(&np("p", "{types: [Sideways]}"), "spec.types[0]");
    rejects(&np("p", "{tier: Bad.Tier}"), "spec.tier");
    rejects(
        &np("p", "{serviceAccountSelector: 'x =='}"),
        "spec.serviceAccountSelector",
    );
    rejects(
        &np("p", "{performanceHints: [GoFast]}"),
        "spec.performanceHints[0]",
    );
    let rules: Vec<&str> = std::iter::repeat_n("{action: Allow}", 1025).collect();
    rejects(
        &np("p", &format!("{{ingress: [{}]}}", rules.join(", "))),
        "spec.ingress: has 1025 rules",
    );
    rejects(
        &doc("GlobalNetworkPolicy", "g", "{namespaceSelector: global()}"),
        "spec.namespaceSelector",
    );

    let types = |spec: &str| {
        let r = accepts(&np("p", spec));
        serde_json::to_value(&r).unwrap()["spec"]["types"].clone()
    };
    assert_eq!(types("{}"), serde_json::json!(["Ingress"]));
    assert_eq!(
        types("{ingress: [{action: Allow}]}"),
        serde_json::json!(["Ingress"])
    );
    assert_eq!(
        types("{egress: [{action: Allow}]}"),
        serde_json::json!(["Egress"])
    );
    assert_eq!(
        types("{ingress: [{action: Allow}], egress: [{action: Allow}]}"),
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(
        types("{types: [Egress], ingress: [{action: Allow}]}"),
        serde_json::json!(["Egress"]),
        "explicit types honoured"
    );

    let r = accepts(&np("p", "{}"));
    assert_eq!(
        r.metadata
            .labels
            .get("projectcalico.org/tier")
            .map(String::as_str),
        Some("default")
    );
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["spec"]["tier"], "default");
}

#[test]
fn rule_protocol_icmp_and_family_rules() {
    let ing = |rule: &str| doc("NetworkPolicy", "p", &format!("{{ingress: [{rule}]}}"));
    rejects(
        &ing("{action: Accept}"),
        "spec.ingress[0].action: unknown variant `Accept`",
    );
    rejects(
        &ing("{protocol: TCP}"),
        "spec.ingress[0]: missing field `action`",
    );
    rejects(
        &ing("{action: Allow, ipVersion: 5}"),
        "spec.ingress[0].ipVersion 5: must be 4 or 6",
    );
    rejects(
        &ing("{action: Allow, protocol: tcp}"),
        "spec.ingress[0].protocol tcp",
    );
    rejects(
        &ing("{action: Allow, protocol: 0}"),
        "spec.ingress[0].protocol 0",
    );
    rejects(
        &ing("{action: Allow, protocol: 256}"),
        "spec.ingress[0].protocol 256",
    );
    rejects(
        &ing("{action: Allow, notProtocol: Udp}"),
        "spec.ingress[0].notProtocol",
    );
    accepts(&ing("{action: Allow, protocol: 132}"));
    accepts(&ing("{action: Allow, protocol: '17'}"));
    rejects(
        &ing("{action: Allow, icmp: {type: 8}}"),
        "spec.ingress[0].icmp: requires protocol ICMP or ICMPv6",
    );
    rejects(
        &ing("{action: Allow, protocol: TCP, notICMP: {type: 8}}"),
        "spec.ingress[0].notICMP",
    );
    rejects(
        &ing("{action: Allow, protocol: ICMP, icmp: {code: 0}}"),
        "spec.ingress[0].icmp.code 0: requires type",
    );
    rejects(
        &ing("{action: Allow, protocol: ICMP, icmp: {type: 255}}"),
        "spec.ingress[0].icmp.type 255",
    );
    rejects(
        &ing("{action: Allow, protocol: ICMP, icmp: {type: 3, code: 256}}"),
        "spec.ingress[0].icmp.code 256",
    );
    accepts(&ing(
        "{action: Allow, protocol: ICMPv6, icmp: {type: 128, code: 0}}",
    ));
    rejects(
        &ing("{action: Allow, protocol: ICMP, ipVersion: 6}"),
        "protocol ICMP conflicts with ipVersion 6",
    );
    rejects(
        &ing("{action: Allow, protocol: ICMPv6, ipVersion: 4}"),
        "spec.ingress[0].protocol",
    );
    rejects(
        &ing("{action: Allow, source: {nets: [10.0.0.1/8]}}"),
        "spec.ingress[0].source.nets[0]",
    );
    rejects(
        &ing("{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {nets: ['fd00::/8']}}"),
        "spec.ingress[0].destination.nets[0]: nets fd00::/8 conflicts with nets 10.0.0.0/8",
    );
    rejects(
        &ing("{action: Allow, ipVersion: 6, source: {notNets: [10.0.0.0/8]}}"),
        "spec.ingress[0].source.notNets[0]",
    );
    rejects(
        &ing("{action: Allow, source: {notNets: [0.0.0.0/0]}}"),
        "notNets may not match every address",
    );
    rejects(
        &ing("{action: Allow, source: {notNets: ['::/0']}}"),
        "spec.ingress[0].source.notNets[0]",
    );
    let nets: Vec<String> = (0..257)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    rejects(
        &ing(&format!(
            "{{action: Allow, source: {{nets: [{}]}}}}",
            nets.join(", ")
        )),
        "spec.ingress[0].source.nets: at most 256",
    );
}

#[test]
fn rule_port_rules() {
    let ing = |rule: &str| doc("NetworkPolicy", "p", &format!("{{ingress: [{rule}]}}"));
    rejects(
        &ing("{action: Allow, destination: {ports: [80]}}"),
        "spec.ingress[0].destination.ports[0] 80: numeric ports require protocol TCP, UDP or SCTP",
    );
    rejects(
        &ing("{action: Allow, protocol: ICMP, destination: {ports: [80]}}"),
        "spec.ingress[0].destination.ports[0] 80: protocol ICMP does not have ports",
    );
    rejects(
        &ing("{action: Allow, protocol: ICMP, destination: {ports: [http]}}"),
        "spec.ingress[0].destination.ports[0] http",
    );
    rejects(
        &ing("{action: Allow, protocol: TCP, destination: {ports: [0]}}"),
        "spec.ingress[0].destination.ports[0] 0",
    );
    rejects(
        &ing("{action: Allow, protocol: TCP, destination: {ports: [65536]}}"),
        "spec.ingress[0].destination.ports[0]",
    );
    rejects(
        &ing("{action: Allow, protocol: TCP, destination: {ports: ['9:1']}}"),
        "minimum is greater than maximum",
    );
    rejects(
        &ing("{action: Allow, protocol: TCP, source: {notPorts: ['Bad_Name']}}"),
        "spec.ingress[0].source.notPorts[0]",
    );
    accepts(&ing(
        "{action: Allow, destination: {ports: [http, metrics-2]}}",
    ));
    let r = accepts(&ing(
        "{action: Allow, protocol: UDP, destination: {ports: ['53', '1000:2000', 5000]}}",
    ));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v["spec"]["ingress"][0]["destination"]["ports"],
        serde_json::json!([53, "1000:2000", 5000])
    );
}

#[test]
fn rule_selector_service_and_http_rules() {
    let ing = |rule: &str| doc("NetworkPolicy", "p", &format!("{{ingress: [{rule}]}}"));
    let eg = |rule: &str| doc("NetworkPolicy", "p", &format!("{{egress: [{rule}]}}"));
    rejects(
        &ing("{action: Allow, source: {selector: global()}}"),
        "spec.ingress[0].source.selector",
    );
    rejects(
        &ing("{action: Allow, source: {notSelector: 'a =='}}"),
        "spec.ingress[0].source.notSelector",
    );
    rejects(
        &ing("{action: Allow, source: {namespaceSelector: 'global() && a == \"b\"'}}"),
        "global() must stand alone",
    );
    accepts(&ing(
        "{action: Allow, source: {namespaceSelector: global(), selector: 'a == \"b\"'}}",
    ));
    accepts(&ing("{action: Allow, source: {namespaceSelector: all()}}"));
    rejects(
        &ing("{action: Allow, source: {serviceAccounts: {names: [Bad_SA]}}}"),
        "spec.ingress[0].source.serviceAccounts.names[0]",
    );
    rejects(
        &ing("{action: Allow, source: {serviceAccounts: {selector: global()}}}"),
        "spec.ingress[0].source.serviceAccounts.selector",
    );
    rejects(
        &eg("{action: Allow, source: {services: {name: s}}}"),
        "spec.egress[0].source.services: source services are only allowed in ingress rules",
    );
    rejects(
        &ing("{action: Allow, destination: {services: {name: s}}}"),
        "spec.ingress[0].destination.services: destination services are only allowed in egress rules",
    );
    rejects(
        &eg("{action: Allow, destination: {services: {name: s}, selector: 'a == \"b\"'}}"),
        "cannot be combined with nets",
    );
    rejects(
        &eg("{action: Allow, protocol: TCP, destination: {services: {name: s}, ports: [80]}}"),
        "cannot be combined with ports",
    );
    rejects(
        &eg("{action: Allow, destination: {services: {namespace: x}}}"),
        "spec.egress[0].destination.services.name: is required",
    );
    rejects(
        &ing(
            "{action: Allow, source: {services: {name: s}}, destination: {selector: 'a == \"b\"'}}",
        ),
        "with source services, the destination may only specify ports",
    );
    accepts(&ing(
        "{action: Allow, protocol: TCP, source: {services: {name: s}}, destination: {ports: [80]}}",
    ));
    rejects(
        &doc(
            "GlobalNetworkPolicy",
            "g",
            "{egress: [{action: Allow, destination: {services: {name: s}}}]}",
        ),
        "spec.egress[0].destination.services.namespace: is required in a global policy",
    );
    rejects(
        &eg("{action: Allow, http: {methods: [GET]}}"),
        "spec.egress[0].http: HTTP matches are only allowed in ingress rules",
    );
    rejects(
        &ing("{action: Deny, http: {methods: [GET]}}"),
        "HTTP matches are only allowed in Allow rules",
    );
    rejects(
        &ing("{action: Allow, protocol: UDP, http: {methods: [GET]}}"),
        "HTTP matches require protocol TCP",
    );
    rejects(
        &ing("{action: Allow, http: {methods: [GET, GET]}}"),
        "spec.ingress[0].http.methods[1]",
    );
    rejects(
        &ing("{action: Allow, http: {paths: [{exact: foo}]}}"),
        "spec.ingress[0].http.paths[0]",
    );
    rejects(
        &ing("{action: Allow, http: {paths: [{prefix: '/a?b'}]}}"),
        "spec.ingress[0].http.paths[0]",
    );
    rejects(
        &ing("{action: Allow, http: {paths: [{exact: /a, prefix: /b}]}}"),
        "exactly one of exact or prefix",
    );
    accepts(&ing(
        "{action: Allow, protocol: TCP, http: {methods: [GET, PUT], paths: [{prefix: /api}]}}",
    ));
}

#[test]
fn global_policy_rules() {
    let g = |spec: &str| doc("GlobalNetworkPolicy", "g", spec);
    rejects(
        &g("{doNotTrack: true, preDNAT: true, applyOnForward: true}"),
        "doNotTrack and preDNAT cannot both be true",
    );
    rejects(
        &g("{preDNAT: true}"),
        "spec.applyOnForward: must be true when doNotTrack or preDNAT",
    );
    rejects(&g("{doNotTrack: true}"), "spec.applyOnForward");
    rejects(
        &g("{preDNAT: true, applyOnForward: true, egress: [{action: Allow}]}"),
        "spec.egress: a preDNAT policy may not have egress rules",
    );
    rejects(
        &g("{preDNAT: true, applyOnForward: true, types: [Egress]}"),
        "spec.types: a preDNAT policy may not have the Egress type",
    );
    accepts(&g(
        "{preDNAT: true, applyOnForward: true, ingress: [{action: Deny}]}",
    ));
}

#[test]
fn staged_policy_rules() {
    rejects(
        &doc("StagedNetworkPolicy", "s", "{stagedAction: Maybe}"),
        "stagedAction",
    );
    rejects(
        &doc(
            "StagedNetworkPolicy",
            "s",
            "{stagedAction: Delete, selector: 'a == \"b\"'}",
        ),
        "with stagedAction Delete",
    );
    accepts(&doc(
        "StagedNetworkPolicy",
        "s",
        "{stagedAction: Delete, tier: default}",
    ));
    rejects(
        &doc(
            "StagedGlobalNetworkPolicy",
            "s",
            "{stagedAction: Delete, order: 5}",
        ),
        "with stagedAction Delete",
    );
    rejects(
        &doc(
            "StagedNetworkPolicy",
            "s",
            "{ingress: [{action: Allow, protocol: tcp}]}",
        ),
        "spec.ingress[0].protocol",
    );
    rejects(&doc("StagedNetworkPolicy", "s", "{bogus: 1}"), "bogus");
    rejects(
        &doc(
            "StagedKubernetesNetworkPolicy",
            "s",
            "{stagedAction: Delete, podSelector: {matchLabels: {a: b}}}",
        ),
        "with stagedAction Delete",
    );
    rejects(
        &doc(
            "StagedKubernetesNetworkPolicy",
            "s",
            "{ingress: [{ports: [{port: 0}]}]}",
        ),
        "spec.ingress[0].ports[0].port 0",
    );
}

#[test]
fn network_set_and_endpoint_rules() {
    rejects(
        &doc("NetworkSet", "s", "{nets: [10.0.0.0/8, not-a-net]}"),
        "spec.nets[1]",
    );
    accepts(&doc(
        "GlobalNetworkSet",
        "s",
        "{nets: [198.51.100.0/24, 203.0.113.7, 10.0.0.5/8]}",
    ));
    rejects(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s, labels: {projectcalico.org/namespace: x}}\nspec: {}\n",
        "metadata.labels.projectcalico.org/namespace: is set by tortie",
    );
    let hep = |spec: &str| doc("HostEndpoint", "h", spec);
    rejects(&hep("{interfaceName: eth0}"), "spec.node: is required");
    rejects(
        &hep("{node: n1}"),
        "interfaceName or expectedIPs is required",
    );
    rejects(
        &hep("{node: n1, interfaceName: averyveryverylongname}"),
        "spec.interfaceName",
    );
    accepts(&hep("{node: n1, interfaceName: '*'}"));
    rejects(
        &hep("{node: n1, expectedIPs: [10.0.0.1/32]}"),
        "spec.expectedIPs[0]",
    );
    rejects(
        &hep("{node: n1, interfaceName: eth0, profiles: [Bad]}"),
        "spec.profiles[0]",
    );
    rejects(
        &hep("{node: n1, interfaceName: eth0, ports: [{protocol: TCP, port: 443}]}"),
        "spec.ports[0].name: is required",
    );
    rejects(
        &hep("{node: n1, interfaceName: eth0, ports: [{name: https, protocol: ICMP, port: 443}]}"),
        "spec.ports[0].protocol",
    );
    rejects(
        &hep("{node: n1, interfaceName: eth0, ports: [{name: https, protocol: TCP, port: 0}]}"),
        "spec.ports[0].port 0",
    );
    rejects(
        &hep("{node: n1, interfaceName: eth0, ports: [{name: HTTPS, protocol: TCP, port: 443}]}"),
        "spec.ports[0].name",
    );

    let wep = |name: &str, spec: &str| doc("WorkloadEndpoint", name, spec);
    let ident = "orchestrator: k8s, node: node1, pod: web-1, endpoint: eth0";
    rejects(
        &wep("wrong", &format!("{{{ident}}}")),
        "metadata.name \"wrong\": does not match the endpoint's identity: expected \"node1-k8s-web--1-eth0\"",
    );
    accepts(&wep(
        "node1-k8s-web--1-eth0",
        &format!("{{{ident}, ipNetworks: [10.244.3.7/32]}}"),
    ));
    let w = |extra: &str| wep("node1-k8s-web--1-eth0", &format!("{{{ident}, {extra}}}"));
    rejects(
        &w("ipNetworks: [10.244.3.0/24]"),
        "spec.ipNetworks[0] \"10.244.3.0/24\": must be a single address",
    );
    rejects(
        &w("ipNetworks: [10.0.0.1/32], ipNATs: [{internalIP: 10.0.0.2, externalIP: 1.2.3.4}]"),
        "spec.ipNATs[0].internalIP",
    );
    rejects(
        &w("ipNetworks: [10.0.0.1/32], ipNATs: [{internalIP: 10.0.0.1, externalIP: 'fd00::1'}]"),
        "spec.ipNATs[0]: internalIP and externalIP must be the same address family",
    );
    rejects(&w("interfaceName: 'cali 0'"), "spec.interfaceName");
    rejects(&w("mac: 'zz:ee:ee:ee:ee:ee'"), "spec.mac");
    rejects(
        &w("ports: [{protocol: TCP, port: 80}]"),
        "spec.ports[0].name: is required unless hostPort is set",
    );
    accepts(&w("ports: [{protocol: TCP, port: 80, hostPort: 8080}]"));
    rejects(
        &w("ports: [{name: web, protocol: TCP, port: 80, hostPort: 70000}]"),
        "spec.ports[0].hostPort 70000",
    );
    rejects(&w("ipv4Gateway: 'fd00::1'"), "spec.ipv4Gateway");
    rejects(
        &w("allowSpoofedSourcePrefixes: [nope]"),
        "spec.allowSpoofedSourcePrefixes[0]",
    );
    rejects(
        &w("qosControls: {ingressBandwidth: -1}"),
        "spec.qosControls.ingressBandwidth",
    );
    rejects(&w("qosControls: {dscp: 64}"), "spec.qosControls.dscp 64");
}

#[test]
fn profile_and_config_rules() {
    rejects(
        &doc("Profile", "p", "{labelsToApply: {'bad key!': x}}"),
        "spec.labelsToApply",
    );
    rejects(
        &doc(
            "Profile",
            "p",
            "{ingress: [{action: Allow, protocol: TCP, destination: {ports: [0]}}]}",
        ),
        "spec.ingress[0].destination.ports[0]",
    );
    let fc = |spec: &str| doc("FelixConfiguration", "default", spec);
    rejects(&doc("FelixConfiguration", "mine", "{}"), "metadata.name");
    rejects(
        &fc("{notAFelixField: 1}"),
        "field in document is not recognized or is in the wrong location",
    );
    let r = accepts(&fc("{bpfLogLevel: Debug, routeRefreshInterval: 90s}"));
    let spec: &tortie_model::config::FelixConfigurationSpec = r.spec().unwrap();
    assert_eq!(spec.unsupported_fields(), vec!["bpfLogLevel"]);
    assert_eq!(spec.route_refresh_interval.as_deref(), Some("1m30s"));
    let r = accepts(&fc("{mtuIfacePattern: '^(eth|bond).*'}"));
    let spec: &tortie_model::config::FelixConfigurationSpec = r.spec().unwrap();
    assert_eq!(spec.mtu_iface_pattern.as_deref(), Some("^(eth|bond).*"));
    assert!(spec.unsupported_fields().is_empty());
    rejects(&fc("{logSeverityScreen: Chatty}"), "spec.logSeverityScreen");
    rejects(
        &fc("{defaultEndpointToHostAction: Allow}"),
        "spec.defaultEndpointToHostAction",
    );
    rejects(&fc("{nftablesMode: On}"), "spec.nftablesMode");
    rejects(&fc("{vxlanPort: 0}"), "spec.vxlanPort 0");
    rejects(&fc("{vxlanVNI: 16777216}"), "spec.vxlanVNI");
    rejects(
        &fc("{failsafeInboundHostPorts: [{protocol: TCP, port: 0}]}"),
        "spec.failsafeInboundHostPorts[0].port 0",
    );
    rejects(
        &fc("{failsafeOutboundHostPorts: [{protocol: ICMP, port: 1}]}"),
        "spec.failsafeOutboundHostPorts[0].protocol",
    );
    rejects(
        &fc("{natOutgoingAddress: 'fd00::1'}"),
        "spec.natOutgoingAddress",
    );
    rejects(
        &fc(
            "{kubeNodePortRanges: ['1:2', '3:4', '5:6', '7:8', '9:10', '11:12', '13:14', '15:16']}",
        ),
        "spec.kubeNodePortRanges: at most 7",
    );
    rejects(
        &fc("{kubeNodePortRanges: [nodeports]}"),
        "spec.kubeNodePortRanges[0]",
    );
    rejects(
        &fc("{routeRefreshInterval: often}"),
        "spec.routeRefreshInterval",
    );
    rejects(&fc("{logPrefix: 'bad$prefix'}"), "spec.logPrefix");
    rejects(&fc("{mtuIfacePattern: '^(eth'}"), "spec.mtuIfacePattern");
    rejects(&fc("{iptablesMarkMask: -1}"), "spec.iptablesMarkMask");
    rejects(
        &doc("KubeControllersConfiguration", "other", "{}"),
        "metadata.name",
    );
    rejects(
        &doc(
            "KubeControllersConfiguration",
            "default",
            "{logSeverityScreen: Chatty}",
        ),
        "spec.logSeverityScreen",
    );
    rejects(
        &doc(
            "KubeControllersConfiguration",
            "default",
            "{healthChecks: Yes}",
        ),
        "spec.healthChecks",
    );
    rejects(
        &doc(
            "KubeControllersConfiguration",
            "default",
            "{controllers: {node: {reconcilerPeriod: soon}}}",
        ),
        "spec.controllers.node.reconcilerPeriod",
    );
    rejects(&doc("ClusterInformation", "other", "{}"), "metadata.name");
    rejects(
        &doc("CalicoNodeStatus", "s", "{node: n1, classes: [Everything]}"),
        "spec.classes[0]",
    );
}

#[test]
fn metadata_rules() {
    let with_meta = |meta: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {meta}\nspec: {{}}\n"
        )
    };
    rejects(&with_meta("{name: Bad_Name}"), "metadata.name \"Bad_Name\"");
    rejects(
        &with_meta("{name: s, namespace: ns1}"),
        "metadata.namespace \"ns1\": GlobalNetworkSet is not a namespaced resource",
    );
    rejects(
        &with_meta("{name: s, labels: {'-bad': x}}"),
        "metadata.labels",
    );
    rejects(
        &with_meta("{name: s, labels: {good: 'bad value!'}}"),
        "metadata.labels.good",
    );
    rejects(
        &with_meta("{name: s, annotations: {'in valid': x}}"),
        "metadata.annotations",
    );
    rejects(
        &with_meta(&format!(
            "{{name: s, annotations: {{big: '{}'}}}}",
            "x".repeat(262_145)
        )),
        "more than 256 KiB",
    );
    accepts(&with_meta(
        "{name: s, labels: {example.com/Tier: front-end_1}}",
    ));
}
