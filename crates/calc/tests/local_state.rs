//! Specific parts of the local state: host endpoint classes, interface
//! conflicts, staged and hinted policies, IPv6 VXLAN, configuration
//! layering, and how bad input and the in-sync gate behave.

mod common;

use std::net::IpAddr;

use base64::Engine;
use common::{Datastore, calculator, namespace_profile, parse, wep, wep_with_ports};
use sha2::Digest;
use tortie_calc::state::{LocalState, RouteTarget};
use tortie_calc::{Calculator, PolicyId, PolicyKind, Update, UpdateError};

fn gnp(name: &str) -> PolicyId {
    PolicyId::new(PolicyKind::GlobalNetworkPolicy, "", name)
}

#[test]
fn host_endpoint_policies_split_into_classes() {
    let mut ds = Datastore::default();
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {role: edge}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.10], profiles: [projectcalico-default-allow]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n2-eth0, labels: {role: edge}}
spec: {node: n2, interfaceName: eth0}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: normal}
spec: {selector: role == "edge", ingress: [{action: Allow}], egress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: forward}
spec: {selector: role == "edge", applyOnForward: true, ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pre}
spec: {selector: role == "edge", applyOnForward: true, preDNAT: true, ingress: [{action: Deny, source: {nets: [10.0.0.0/8]}}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: raw}
spec: {selector: role == "edge", applyOnForward: true, doNotTrack: true, ingress: [{action: Allow}]}
"#,
    ));
    let c = calculator("n1", &ds);
    let s = c.local_state();
    assert_eq!(s.host_endpoints.len(), 1, "only this node's host endpoints");
    let h = &s.host_endpoints["n1-eth0"];
    assert_eq!(h.iface.as_deref(), Some("eth0"));
    let ids = |tiers: &[tortie_calc::state::TierPolicies]| -> Vec<PolicyId> {
        tiers.iter().flat_map(|t| t.policies.clone()).collect()
    };
    assert_eq!(ids(&h.ingress.tiers), [gnp("forward"), gnp("normal")]);
    assert_eq!(ids(&h.egress.tiers), [gnp("normal")]);
    assert_eq!(h.ingress.profiles, ["projectcalico-default-allow"]);
    assert_eq!(ids(&h.forward.ingress), [gnp("forward")]);
    assert_eq!(ids(&h.pre_dnat.ingress), [gnp("pre")]);
    assert_eq!(ids(&h.untracked.ingress), [gnp("raw")]);
    use tortie_calc::policy::TierAction;
    assert_eq!(h.pre_dnat.ingress[0].default_action, TierAction::Pass);
    assert_eq!(h.untracked.ingress[0].default_action, TierAction::Pass);
    assert_eq!(h.forward.ingress[0].default_action, TierAction::Deny);
    assert!(s.policies[&gnp("pre")].pre_dnat);
    assert!(s.policies[&gnp("raw")].untracked);
    assert!(s.profiles.contains_key("projectcalico-default-allow"));
}

#[test]
fn the_smallest_workload_id_wins_a_shared_interface() {
    let mut a = wep("ns", "a", "n1", "10.65.0.2/32", &[]);
    let mut b = wep("ns", "b", "n1", "10.65.0.3/32", &[]);
    for r in [&mut a, &mut b] {
        if let Some(s) = r.spec_mut::<tortie_model::endpoint::WorkloadEndpointSpec>() {
            s.interface_name = "calishared".into();
        }
    }
    let mut c = Calculator::new("n1");
    c.apply(Update::InSync).unwrap();
    c.apply(Update::Put(Box::new(b.clone()))).unwrap();
    c.apply(Update::Put(Box::new(a.clone()))).unwrap();
    let winner = &c.local_state().workload_endpoints["calishared"];
    assert_eq!(winner.id.name, a.metadata.name);
    c.apply(Update::Delete {
        kind: tortie_model::Kind::WorkloadEndpoint,
        namespace: "ns".into(),
        name: a.metadata.name.clone(),
    })
    .unwrap();
    let d = c.take_delta().unwrap();
    assert_eq!(
        d.workload_endpoints_upserted["calishared"].id.name, b.metadata.name,
        "the held-back workload takes over"
    );
}

#[test]
fn staged_policies_stay_out_and_hinted_ones_are_always_in() {
    let mut ds = Datastore::default();
    ds.put(&namespace_profile("ns", &[]));
    ds.put(&wep("ns", "p", "n1", "10.65.0.2/32", &[]));
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: staged}
spec: {selector: all(), ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: elsewhere}
spec:
  selector: app == "nothing-here"
  performanceHints: [AssumeNeededOnEveryNode]
  ingress: [{action: Allow, source: {selector: app == "x"}}]
"#,
    ));
    let c = calculator("n1", &ds);
    let s = c.local_state();
    assert!(
        s.workload_endpoints
            .values()
            .all(|w| w.ingress.tiers.is_empty())
    );
    assert_eq!(
        s.policies.keys().cloned().collect::<Vec<_>>(),
        [gnp("elsewhere")]
    );
    assert_eq!(s.ip_sets.len(), 1, "the hinted policy's set is built");
}

#[test]
fn named_port_set_ids_follow_calico() {
    let mut ds = Datastore::default();
    ds.put(&namespace_profile("ns", &[]));
    ds.put(&wep_with_ports(
        "ns",
        "p",
        "n1",
        "10.65.0.2/32",
        &[("app", "web")],
        &[("http", "TCP", 8080)],
    ));
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  selector: app == "web"
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [http]}}]
"#,
    ));
    let c = calculator("n1", &ds);
    let s = c.local_state();
    let sel = tortie_selector::Selector::all().unique_id();
    let digest = sha2::Sha224::digest(format!("n:{sel},tcp,http").as_bytes());
    let want = format!(
        "n:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    );
    assert_eq!(
        s.policies[&gnp("web")].ingress[0]
            .destination
            .named_port_sets,
        std::slice::from_ref(&want)
    );
    let members: Vec<_> = s.named_port_sets[&want].iter().collect();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].addr, "10.65.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(members[0].port, 8080);
}

#[test]
fn ipv6_vxlan_vteps_and_routes() {
    let mut ds = Datastore::default();
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v6}
spec: {cidr: "fd00:65::/112", vxlanMode: Always}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec: {bgp: {ipv6Address: "2001:db8::1/64"}, ipv6VXLANTunnelAddr: "fd00:65::ff01"}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n2}
spec: {bgp: {ipv6Address: "2001:db8:1::2/64"}, ipv6VXLANTunnelAddr: "fd00:65::ff02"}
"#,
    ));
    ds.block("fd00:65::/122", "n2");
    let c = calculator("n1", &ds);
    let s = c.local_state();
    assert!(s.config.vxlan_enabled_v6 && !s.config.vxlan_enabled_v4);
    let peer = s.vxlan.peers["n2"].v6.as_ref().unwrap();
    assert_eq!(peer.mac, tortie_calc::vxlan::derived_mac("n2", true));
    assert_eq!(
        s.vxlan.local.v6.as_ref().unwrap().mac,
        tortie_calc::vxlan::derived_mac("n1", true)
    );
    assert_eq!(
        s.routes.get(&"fd00:65::/122".parse().unwrap()),
        Some(&RouteTarget::Vxlan {
            gateway: "fd00:65::ff02".parse().unwrap()
        })
    );
}

#[test]
fn configuration_layers_node_over_default() {
    let mut ds = Datastore::default();
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {logPrefix: global, vxlanPort: 4790}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.n1}
spec: {logPrefix: mine}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.n2}
spec: {vxlanPort: 9999}
"#,
    ));
    let c = calculator("n1", &ds);
    assert_eq!(c.local_state().config.log_prefix, "mine");
    assert_eq!(c.local_state().config.vxlan_port, 4790);
}

#[test]
fn bad_input_is_counted_and_deletes_the_key() {
    let mut ds = Datastore::default();
    ds.put(&namespace_profile("ns", &[]));
    ds.put(&wep("ns", "p", "n1", "10.65.0.2/32", &[]));
    ds.put_all(&parse(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny}\nspec: {selector: all(), ingress: [{action: Deny}]}\n",
    ));
    let mut c = calculator("n1", &ds);
    assert!(c.local_state().policies.contains_key(&gnp("deny")));
    let key = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/deny";
    let err = c.apply_kv(key, Some(b"{\"kind\": 7")).unwrap_err();
    assert!(matches!(err, UpdateError::Decode { .. }));
    assert!(!c.local_state().policies.contains_key(&gnp("deny")));
    // A value that decodes but does not parse (a bad selector).
    let bad = br#"{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"deny"},"spec":{"selector":"a ==","ingress":[{"action":"Deny"}]}}"#;
    let err = c.apply_kv(key, Some(bad)).unwrap_err();
    assert!(matches!(err, UpdateError::Invalid { .. }), "{err}");
    assert_eq!(c.stats().errors, 2);
    assert!(!c.local_state().policies.contains_key(&gnp("deny")));
    // Garbage in keys and values never panics; unknown keys are ignored.
    for (k, v) in [
        (
            "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26",
            &b"null"[..],
        ),
        ("/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26", b"[1,2]"),
        (
            "/calico/resources/v3/projectcalico.org/workloadendpoints/ns/x",
            b"\xff\xfe",
        ),
        ("/calico/resources/v3/projectcalico.org/nodes/n1", b"{}"),
        ("/somewhere/else", b"whatever"),
    ] {
        let _ = c.apply_kv(k, Some(v));
    }
    assert!(c.local_state().workload_endpoints.len() == 1);
}

#[test]
fn nothing_is_handed_out_before_sync_then_everything_is() {
    let mut ds = Datastore::default();
    ds.put(&namespace_profile("ns", &[]));
    ds.put(&wep("ns", "p", "n1", "10.65.0.2/32", &[]));
    let mut c = Calculator::new("n1");
    for (k, v) in &ds.0 {
        c.apply_kv(k, Some(v)).unwrap();
    }
    assert!(c.take_delta().is_none(), "not in sync yet");
    c.apply(Update::InSync).unwrap();
    let mut replica = LocalState::default();
    replica.apply_delta(&c.take_delta().unwrap());
    assert_eq!(replica, *c.local_state());
    assert_eq!(replica.workload_endpoints.len(), 1);
}

#[test]
fn the_state_serialises_and_round_trips() {
    let mut ds = Datastore::default();
    ds.put(&namespace_profile("ns", &[]));
    ds.put(&wep_with_ports(
        "ns",
        "p",
        "n1",
        "10.65.0.2/32, fd00::2/128",
        &[("app", "a")],
        &[("http", "TCP", 80)],
    ));
    ds.put_all(&parse(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {selector: all(), ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'a'}, destination: {ports: [http, 443]}}]}\n",
    ));
    ds.block("10.65.0.0/26", "n1");
    let mut c = calculator("n1", &ds);
    let json = serde_json::to_string(c.local_state()).unwrap();
    let back: LocalState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, *c.local_state());
    let delta = c.take_delta().unwrap();
    let json = serde_json::to_string(&delta).unwrap();
    assert_eq!(
        serde_json::from_str::<tortie_calc::Delta>(&json).unwrap(),
        delta
    );
}
