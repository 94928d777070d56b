//! Check analysis over hand-built snapshots.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use tortie_model::ippool::IPPoolSpec;
use tortie_model::{ObjectMeta, Resource};

use super::*;
use crate::block::OrdinalRelease;
use crate::reservations::Reservations;

fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn pool(cidr: &str) -> Pool {
    let mut r = Resource::new(
        ObjectMeta::named("p"),
        IPPoolSpec {
            cidr: cidr.to_string(),
            ..IPPoolSpec::default()
        },
    );
    r.apply_defaults();
    Pool::from_resource(&r).expect("pool")
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn handle(id: &str, revision: i64, blocks: &[(&str, u64)]) -> StoredHandle {
    StoredHandle {
        id: id.to_string(),
        revision,
        record: Ok(HandleRecord {
            block: blocks.iter().map(|(b, n)| ((*b).to_string(), *n)).collect(),
            deleted: false,
        }),
    }
}

/// A healthy cluster: one node, one pod, one tunnel address, and the
/// bookkeeping matching the blocks.
fn healthy() -> Snapshot {
    let owner = AffinityOwner::host("node-1");
    let mut b = Block::new(net("10.0.0.0/26"), Some(&owner), UNIX_EPOCH, false);
    let r = Reservations::none();
    b.assign(
        1,
        Some("k8s-pod-network.c1"),
        &attrs(&[
            ("namespace", "default"),
            ("pod", "web-0"),
            ("node", "node-1"),
        ]),
        &r,
    );
    b.assign(
        1,
        Some("vxlan-tunnel-addr-node-1"),
        &attrs(&[("node", "node-1"), ("type", "vxlanTunnelAddress")]),
        &r,
    );
    b.assign(1, Some("legacy"), &attrs(&[]), &r);
    Snapshot {
        blocks: vec![StoredBlock::Valid(b)],
        affinities: vec![StoredAffinity {
            owner,
            block: net("10.0.0.0/26"),
            state: Ok(AffinityState::Confirmed),
        }],
        handles: vec![
            handle("k8s-pod-network.c1", 10, &[("10.0.0.0/26", 1)]),
            handle("vxlan-tunnel-addr-node-1", 11, &[("10.0.0.0/26", 1)]),
            handle("legacy", 12, &[("10.0.0.0/26", 1)]),
        ],
        pools: vec![pool("10.0.0.0/16")],
        nodes: ["node-1".to_string()].into(),
        node_ips: vec![],
        workload_ips: vec![(
            "default/node--1-k8s-web--0-eth0".to_string(),
            ip("10.0.0.0"),
        )],
        cluster: ClusterMeta {
            guid: "abc".into(),
            cluster_type: "tortie,bgp".into(),
            revision: "7".into(),
            locked: true,
        },
    }
}

#[test]
fn a_healthy_cluster_has_no_problems() {
    let f = check(&healthy());
    assert_eq!(f.problem_count(), 0, "{f:#?}");
    assert_eq!(f.allocation_count, 3);
    assert_eq!(f.in_use_ip_count, 1);
    assert_eq!(f.good_handle_count, 3);
    let records = &f.allocations[&ip("10.0.0.0")];
    assert!(records[0].in_use);
    assert_eq!(
        records[0].owners,
        vec!["Workload(default/node--1-k8s-web--0-eth0)".to_string()]
    );
    assert!(!records[0].borrowed);
    assert!(
        f.allocations[&ip("10.0.0.1")][0].in_use,
        "tunnel of an existing node"
    );
    assert!(f.allocations[&ip("10.0.0.2")][0].in_use, "unknown owner");
}

#[test]
fn leaks_and_bookkeeping_problems_are_found() {
    let mut s = healthy();
    s.workload_ips.clear(); // the pod is gone
    s.nodes.clear(); // and so is the node
    s.workload_ips
        .push(("default/other".into(), ip("10.0.0.9"))); // in use, no allocation
    s.workload_ips.push(("default/dup".into(), ip("10.0.0.9")));
    s.workload_ips
        .push(("default/outside".into(), ip("192.168.1.1")));
    s.handles.push(handle("orphan", 20, &[("10.0.0.0/26", 2)]));
    s.handles[2] = handle("legacy", 12, &[("10.0.0.0/26", 3)]); // over-counts
    s.handles.remove(0); // the pod's handle is missing
    s.affinities.push(StoredAffinity {
        owner: AffinityOwner::host("node-2"),
        block: net("10.0.1.0/26"),
        state: Ok(AffinityState::Pending),
    });
    s.blocks.push(StoredBlock::Invalid {
        key: "/calico/ipam/v2/assignment/ipv4/block/10.0.2.0-26".into(),
        problems: vec!["bad".into()],
    });
    let f = check(&s);
    let leaked: Vec<IpAddr> = f.leaked.iter().map(|(ip, _)| *ip).collect();
    assert_eq!(
        leaked,
        vec![ip("10.0.0.0"), ip("10.0.0.1")],
        "pod and tunnel of gone node"
    );
    assert_eq!(
        f.leaked[0].1,
        "Main:k8s-pod-network.c1 Extra:namespace=default,node=node-1,pod=web-0"
    );
    assert_eq!(f.not_allocated.len(), 1);
    assert_eq!(f.not_allocated[0].owners.len(), 2);
    assert_eq!(f.multiple_owners.len(), 1);
    assert_eq!(f.not_in_pool.len(), 1);
    assert_eq!(f.leaked_handles.len(), 1);
    assert_eq!(f.leaked_handles[0].id, "orphan");
    assert_eq!(f.leaked_handles[0].revision, "20");
    assert_eq!(f.missing_handles, vec!["k8s-pod-network.c1".to_string()]);
    assert_eq!(f.handle_mismatches.len(), 1, "{:?}", f.handle_mismatches);
    assert_eq!(f.invalid_blocks.len(), 1);
    // node-1 and node-2 have no Node; node-2's affinity has no block and is pending.
    assert_eq!(f.affinity_problems.len(), 3, "{:?}", f.affinity_problems);
    assert_eq!(f.problem_count(), 2 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 3);
}

#[test]
fn cooling_addresses_are_reported_but_not_leaked() {
    let mut s = healthy();
    let StoredBlock::Valid(b) = &mut s.blocks[0] else {
        panic!("valid block");
    };
    b.release(
        &[OrdinalRelease {
            ordinal: 2,
            handle: None,
            sequence: None,
        }],
        UNIX_EPOCH + Duration::from_secs(5),
        Duration::from_secs(60),
    )
    .expect("release");
    s.handles.pop();
    let f = check(&s);
    assert_eq!(f.problem_count(), 0, "{f:#?}");
    let r = &f.allocations[&ip("10.0.0.2")][0];
    assert!(r.cooling_down && !r.in_use);
}

#[test]
fn report_json_uses_calico_field_names_and_round_trips() {
    let mut s = healthy();
    s.handles.push(handle("orphan", 20, &[]));
    s.handles.last_mut().expect("pushed").record = Ok(HandleRecord {
        block: [("10.0.0.0/26".to_string(), 1)].into(),
        deleted: false,
    });
    let f = check(&s);
    let report = f.report("v0.1.0", &s.cluster);
    let v = serde_json::to_value(&report).expect("json");
    assert_eq!(v["version"], "v0.1.0");
    assert_eq!(v["clusterGUID"], "abc");
    assert_eq!(v["datastoreLocked"], true);
    assert_eq!(v["clusterInformationRevision"], "7");
    assert_eq!(v["clusterType"], "tortie,bgp");
    let a = &v["allocations"]["10.0.0.0"][0];
    assert_eq!(a["ip"], "10.0.0.0");
    assert_eq!(a["handle"], "k8s-pod-network.c1");
    assert!(a["sequenceNumber"].is_u64());
    assert_eq!(a["pod"], "web-0");
    assert_eq!(a["namespace"], "default");
    assert_eq!(a["node"], "node-1");
    assert_eq!(a["inUse"], true);
    assert_eq!(
        v["allocations"]["10.0.0.1"][0]["type"],
        "vxlanTunnelAddress"
    );
    assert_eq!(v["leakedHandles"][0]["ID"], "orphan");
    assert_eq!(v["leakedHandles"][0]["Revision"], "20");
    let back: CheckReport = serde_json::from_value(v).expect("parse back");
    assert_eq!(back, report);
    // Go writes `null` for an empty owner list.
    let go = r#"{"version":"v","clusterGUID":"g","datastoreLocked":false,
        "clusterInformationRevision":"1","clusterType":"k8s",
        "allocations":{"10.0.0.1":[{"ip":"10.0.0.1","inUse":false,"owners":null}]}}"#;
    let parsed: CheckReport = serde_json::from_str(go).expect("calico report");
    assert!(parsed.allocations["10.0.0.1"][0].owners.is_empty());
}

fn record(ip: &str, handle: &str, seq: u64, in_use: bool) -> AllocationRecord {
    AllocationRecord {
        ip: ip.to_string(),
        handle: handle.to_string(),
        sequence_number: Some(seq),
        pod: String::new(),
        namespace: String::new(),
        node: "n".into(),
        kind: String::new(),
        creation_timestamp: String::new(),
        in_use,
        borrowed: false,
        cooling_down: false,
        owners: Vec::new(),
    }
}

fn report(allocs: &[(&str, &str, u64, bool)], handles: &[(&str, &str)]) -> CheckReport {
    CheckReport {
        version: "v".into(),
        cluster_guid: "g".into(),
        datastore_locked: true,
        cluster_information_revision: "1".into(),
        cluster_type: String::new(),
        allocations: allocs
            .iter()
            .map(|(ip, h, s, u)| (ip.to_string(), vec![record(ip, h, *s, *u)]))
            .collect(),
        leaked_handles: handles
            .iter()
            .map(|(id, rev)| HandleInfo {
                id: id.to_string(),
                uid: None,
                revision: rev.to_string(),
            })
            .collect(),
    }
}

#[test]
fn only_leaks_in_every_report_are_released() {
    let old = report(
        &[
            ("10.0.0.1", "a", 1, false),
            ("10.0.0.2", "b", 2, false),
            ("10.0.0.3", "c", 3, true),
        ],
        &[("h1", "10"), ("h2", "11")],
    );
    let new = report(
        &[
            ("10.0.0.1", "a", 1, false),
            ("10.0.0.2", "b", 2, true),
            ("10.0.0.3", "c", 3, false),
        ],
        &[("h1", "10"), ("h2", "12")],
    );
    let merged = merge_reports(&[old, new]).expect("merge");
    assert_eq!(merged.ips.keys().collect::<Vec<_>>(), vec!["10.0.0.1"]);
    let r = &merged.ips["10.0.0.1"];
    assert_eq!(r.handle.as_deref(), Some("a"));
    assert_eq!(r.sequence, Some(1));
    assert_eq!(
        merged.handles.keys().collect::<Vec<_>>(),
        vec!["h1"],
        "h2 changed between reports"
    );
    let bad = report(&[("nonsense", "a", 1, false)], &[]);
    assert!(merge_reports(&[bad]).is_err());
    assert_eq!(merge_reports(&[]).expect("empty"), MergedLeaks::default());
}
