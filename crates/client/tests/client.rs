//! The resource client on a real embedded datastore: metadata rules,
//! compare-and-swap, rejected writes storing nothing, and the stored layout.

use std::sync::Arc;

use tortie_client::{Client, ClientError, codec::POLICY_METADATA_ANNOTATION};
use tortie_datastore::embedded::{EmbeddedDatastore, EmbeddedOptions};
use tortie_model::{Kind, Resource, decode_documents};

async fn client() -> (Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = EmbeddedDatastore::open(&dir.path().join("ds.db"), EmbeddedOptions::default())
        .await
        .expect("open datastore");
    let client = Client::new(Arc::new(ds));
    client.ensure_initialized().await.expect("initialise");
    (client, dir)
}

fn resource(yaml: &str) -> Resource {
    let mut d = decode_documents(yaml, "test").expect("decodes");
    let mut r = d.remove(0).resource;
    if r.kind().namespaced() && r.metadata.namespace.is_empty() {
        r.metadata.namespace = "default".into();
    }
    r
}

fn pool(name: &str, cidr: &str) -> Resource {
    resource(&format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {{cidr: {cidr}}}\n"
    ))
}

#[tokio::test]
async fn initialisation_creates_cluster_objects_once() {
    let (client, _dir) = client().await;
    let tiers: Vec<String> = client
        .list(Kind::Tier, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|t| t.metadata.name)
        .collect();
    assert_eq!(tiers, ["default", "kube-admin", "kube-baseline"]);
    let info = client
        .cluster_information()
        .await
        .unwrap()
        .expect("cluster information");
    assert_eq!(info.datastore_ready, Some(true));
    let rev = client.datastore().revision().await.unwrap();
    client.ensure_initialized().await.unwrap();
    assert_eq!(
        client.datastore().revision().await.unwrap(),
        rev,
        "second initialisation writes nothing"
    );
}

#[tokio::test]
async fn create_sets_metadata_and_update_keeps_it() {
    let (client, _dir) = client().await;
    let created = client.create(pool("p", "10.0.0.0/16")).await.unwrap();
    assert!(!created.metadata.uid.is_empty());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv: i64 = created.metadata.resource_version.parse().unwrap();
    assert_eq!(rv, client.datastore().revision().await.unwrap());

    // An update takes labels, annotations and spec from the input; uid and
    // creationTimestamp stay.
    let mut change = pool("p", "10.0.0.0/16");
    change.metadata.resource_version = created.metadata.resource_version.clone();
    change.metadata.uid = "forged".into();
    change.metadata.labels.insert("zone".into(), "east".into());
    let updated = client.update(change).await.unwrap();
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    assert_eq!(
        updated.metadata.creation_timestamp,
        created.metadata.creation_timestamp
    );
    assert_eq!(
        updated.metadata.labels.get("zone").map(String::as_str),
        Some("east")
    );
    assert!(updated.metadata.resource_version.parse::<i64>().unwrap() > rv);

    // The stale version is refused, naming both versions.
    let mut stale = pool("p", "10.0.0.0/16");
    stale.metadata.resource_version = created.metadata.resource_version.clone();
    match client.update(stale).await {
        Err(ClientError::OutOfDate { given, latest, .. }) => {
            assert_eq!(given, created.metadata.resource_version);
            assert_eq!(latest, updated.metadata.resource_version);
        }
        other => panic!("expected OutOfDate, got {other:?}"),
    }

    // Applying what is stored changes nothing, not even the revision.
    let rev = client.datastore().revision().await.unwrap();
    let (same, created_now) = client.apply(updated.clone()).await.unwrap();
    assert!(!created_now);
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );
    assert_eq!(client.datastore().revision().await.unwrap(), rev);
}

#[tokio::test]
async fn rejected_writes_store_nothing() {
    let (client, _dir) = client().await;
    client
        .create(pool("existing", "10.0.0.0/16"))
        .await
        .unwrap();
    let rev = client.datastore().revision().await.unwrap();
    let bad = [
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.1.0.0/16, blockSize: 33}\n",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 10.0.1.0/24}\n",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: existing}\nspec: {cidr: 10.9.0.0/16}\n",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: n}\nspec: {tier: missing}\n",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: n}\nspec: {ingress: [{action: Allow, destination: {ports: [80]}}]}\n",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {preDNAT: true}\n",
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: b}\nspec: {peerIP: 10.0.0.1, peerSelector: all()}\n",
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: default}\nspec: {order: 1}\n",
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {node: n1}\n",
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ipNetworks: [10.0.0.0/24]}\n",
        "apiVersion: projectcalico.org/v3\nkind: ClusterInformation\nmetadata: {name: default}\nspec: {}\n",
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: projectcalico-default-allow}\nspec: {}\n",
    ];
    for yaml in bad {
        let r = resource(yaml);
        let id = r.id();
        let err = client.apply(r).await.expect_err(yaml);
        assert!(!err.to_string().is_empty(), "{id}");
        assert_eq!(
            client.datastore().revision().await.unwrap(),
            rev,
            "{id} wrote something: {err}"
        );
    }
}

#[tokio::test]
async fn stored_layout_follows_the_calico_key_space() {
    let (client, _dir) = client().await;
    let np = resource(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: allow-db, namespace: prod}\nspec: {selector: all()}\n",
    );
    client.create(np).await.unwrap();
    let kv = client
        .datastore()
        .get("/calico/resources/v3/projectcalico.org/networkpolicies/prod/allow-db")
        .await
        .unwrap()
        .expect("stored under the Calico key");
    let stored: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(stored["kind"], "NetworkPolicy");
    assert_eq!(stored["apiVersion"], "projectcalico.org/v3");
    assert!(
        stored["metadata"].get("resourceVersion").is_none(),
        "resourceVersion is the key's revision"
    );
    assert!(
        stored["metadata"]["uid"].is_string()
            && stored["metadata"]["creationTimestamp"].is_string()
    );
    assert_eq!(
        stored["metadata"]["annotations"][POLICY_METADATA_ANNOTATION],
        r#"{"name":"allow-db"}"#
    );
    // ... and the annotation is Calico's business, not the user's.
    let read = client
        .get(Kind::NetworkPolicy, "prod", "allow-db")
        .await
        .unwrap();
    assert!(read.metadata.annotations.is_empty());
    assert_eq!(read.metadata.resource_version, kv.mod_revision.to_string());

    // IPAMConfiguration is Calico's IPAM config record.
    let cfg = resource(
        "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata: {name: default}\nspec: {strictAffinity: true, maxBlocksPerHost: 3}\n",
    );
    client.apply(cfg).await.unwrap();
    let kv = client
        .datastore()
        .get("/calico/ipam/v2/config")
        .await
        .unwrap()
        .expect("ipam config");
    let stored: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"strict_affinity": true, "auto_allocate_blocks": true, "maxBlocksPerHost": 3})
    );
    let read = client
        .get(Kind::IPAMConfiguration, "", "default")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&read).unwrap()["spec"]["maxBlocksPerHost"],
        3
    );
}

#[tokio::test]
async fn concurrent_modifications_lose_nothing() {
    let (client, _dir) = client().await;
    client.create(pool("p", "10.0.0.0/16")).await.unwrap();
    // 8 tasks each add 5 distinct labels with read-modify-write; every label
    // must be there at the end (the client retries lost races, up to its
    // limit, and reports Conflict rather than losing a write).
    let mut tasks = Vec::new();
    for t in 0..8 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for i in 0..5 {
                loop {
                    let res = c
                        .modify(Kind::IPPool, "", "p", |mut r| {
                            r.metadata.labels.insert(format!("t{t}-{i}"), "x".into());
                            Ok(r)
                        })
                        .await;
                    match res {
                        Ok(_) => break,
                        Err(ClientError::Conflict { .. }) if conflicts < 50 => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let p = client.get(Kind::IPPool, "", "p").await.unwrap();
    assert_eq!(p.metadata.labels.len(), 40);
}
