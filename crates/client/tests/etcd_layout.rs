//! What tortie stores in etcd, read back with etcd's own tool: keys and
//! values follow Calico's layout (spec/datastore.md §1-2), so an existing
//! Calico etcd datastore and a tortie one hold the same things.

use std::process::Command;
use std::sync::Arc;

use tortie_client::Client;
use tortie_model::decode_documents;
use tortie_testkit::EtcdCluster;

/// Every key under `prefix` with its value and mod revision, via etcdctl.
fn etcdctl_dump(cluster: &EtcdCluster, prefix: &str) -> Vec<(String, serde_json::Value, i64)> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &cluster.endpoints().join(","),
            "get",
            "--prefix",
            prefix,
            "-w",
            "json",
        ])
        .output()
        .expect("etcdctl runs (Debian package etcd-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("etcdctl prints JSON");
    // etcdctl prints keys and values in standard base64.
    let decode = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("base64 from etcdctl")
    };
    reply["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    let key = String::from_utf8(decode(&kv["key"])).expect("utf-8 key");
                    let value = serde_json::from_slice(&decode(&kv["value"])).expect("JSON value");
                    (key, value, kv["mod_revision"].as_i64().unwrap_or(-1))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_keys_and_values_follow_the_calico_layout() {
    let cluster = EtcdCluster::start(1).expect("etcd starts");
    let ds = tortie_datastore::connect(&cluster.spec())
        .await
        .expect("connect");
    let client = Client::new(Arc::clone(&ds));
    client.ensure_initialized().await.expect("initialise");
    let manifests = "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 192.168.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-db, namespace: prod}
spec: {selector: app == 'db', ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.node-1}
spec: {logSeverityScreen: Debug}
---
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata: {name: default}
spec: {strictAffinity: true}
";
    let mut stored = Vec::new();
    for d in decode_documents(manifests, "test").expect("decodes") {
        let mut r = d.resource;
        if r.kind().namespaced() && r.metadata.namespace.is_empty() {
            r.metadata.namespace = "default".into();
        }
        stored.push(client.apply(r).await.expect("stored").0);
    }

    let dump = etcdctl_dump(&cluster, "/calico/");
    let keys: Vec<&str> = dump.iter().map(|(k, _, _)| k.as_str()).collect();
    for key in [
        "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
        "/calico/resources/v3/projectcalico.org/networkpolicies/prod/allow-db",
        "/calico/resources/v3/projectcalico.org/felixconfigurations/node.node-1",
        "/calico/resources/v3/projectcalico.org/clusterinformations/default",
        "/calico/resources/v3/projectcalico.org/tiers/default",
        "/calico/resources/v3/projectcalico.org/tiers/kube-admin",
        "/calico/resources/v3/projectcalico.org/tiers/kube-baseline",
        "/calico/ipam/v2/config",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(keys.len(), 8, "nothing else is stored: {keys:?}");

    let (_, pool, pool_rev) = dump
        .iter()
        .find(|(k, _, _)| k.ends_with("/ippools/default-ipv4-ippool"))
        .unwrap();
    assert_eq!(pool["kind"], "IPPool");
    assert_eq!(pool["apiVersion"], "projectcalico.org/v3");
    assert_eq!(pool["metadata"]["name"], "default-ipv4-ippool");
    assert!(
        pool["metadata"].get("resourceVersion").is_none(),
        "the revision is not stored in the value"
    );
    assert!(
        pool["metadata"]["uid"].is_string() && pool["metadata"]["creationTimestamp"].is_string()
    );
    assert_eq!(pool["spec"]["cidr"], "192.168.0.0/16");
    assert_eq!(pool["spec"]["blockSize"], 26);
    assert_eq!(pool["spec"]["ipipMode"], "Never");
    assert_eq!(pool["spec"]["nodeSelector"], "all()");
    assert_eq!(
        stored[0].metadata.resource_version,
        pool_rev.to_string(),
        "resourceVersion is the key's mod revision"
    );

    let (_, np, _) = dump
        .iter()
        .find(|(k, _, _)| k.ends_with("/networkpolicies/prod/allow-db"))
        .unwrap();
    assert_eq!(np["metadata"]["namespace"], "prod");
    assert_eq!(
        np["metadata"]["annotations"]["projectcalico.org/metadata"],
        r#"{"name":"allow-db"}"#
    );
    assert_eq!(
        np["metadata"]["labels"]["projectcalico.org/tier"],
        "default"
    );
    assert_eq!(np["spec"]["types"], serde_json::json!(["Ingress"]));

    let (_, tier, _) = dump
        .iter()
        .find(|(k, _, _)| k.ends_with("/tiers/default"))
        .unwrap();
    assert_eq!(
        tier["spec"],
        serde_json::json!({"order": 1000000, "defaultAction": "Deny"})
    );

    let (_, ipam, _) = dump
        .iter()
        .find(|(k, _, _)| k == "/calico/ipam/v2/config")
        .unwrap();
    assert_eq!(
        ipam,
        &serde_json::json!({"strict_affinity": true, "auto_allocate_blocks": true, "maxBlocksPerHost": 0})
    );
}
