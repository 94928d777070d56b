//! `ipam check` against a real store (leaks found, released through the
//! report's handle and sequence numbers, then a clean check), tunnel
//! addresses, and the read-only views.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use tortie_client::TORTIE_VERSION;
use tortie_ipam::handle::HandleRecord;
use tortie_ipam::keys::handle_key;
use tortie_ipam::tunnel::TunnelKind;
use tortie_ipam::{AllowedUse, IpVersion, ReleaseRequest};
use tortie_model::Kind;
use tortie_model::node::NodeSpec;

use super::fixture::*;

pub async fn check_finds_leaks_and_a_report_release_fixes_them(t: &Target) -> Result<()> {
    let client = t.client().await?;
    client.ensure_initialized().await?;
    add_pool(&client, "p", "10.0.0.0/24", |_| {}).await?;
    add_node(&client, "node-1", &[]).await?;
    let ipam = t.ipam().await?;
    let mut live = Vec::new();
    for pod in ["web-0", "web-1", "gone-0", "gone-1"] {
        let mut req = request("node-1", &format!("k8s-pod-network.{pod}"), 1, 0);
        req.attrs = pod_attrs("default", pod, "node-1");
        let ips: Vec<_> = ipam
            .auto_assign(req)
            .await?
            .ipv4
            .ips
            .iter()
            .map(|n| n.addr())
            .collect();
        if pod.starts_with("web") {
            add_wep(&client, "default", pod, "node-1", &ips).await?;
            live.extend(ips);
        }
    }
    // A handle whose allocation never happened (crash between the writes).
    let store = t.store().await?;
    let block = block_of(live[0], 26);
    let mut record = HandleRecord::default();
    record.increment(&block, 1);
    store
        .create(&handle_key("k8s-pod-network.crashed"), record.encode())
        .await?;

    let (findings, snapshot) = ipam.check().await?;
    ensure!(findings.allocation_count == 4 && findings.workload_ip_count == 2);
    let leaked: Vec<_> = findings.leaked.iter().map(|(ip, _)| *ip).collect();
    ensure!(
        leaked.len() == 2 && leaked.iter().all(|ip| !live.contains(ip)),
        "{leaked:?}"
    );
    ensure!(
        findings.leaked_handles.len() == 1,
        "{:?}",
        findings.leaked_handles
    );
    ensure!(findings.problem_count() == 3, "{findings:#?}");
    ensure!(!snapshot.cluster.guid.is_empty());

    // What `ipam release --from-report` does with the report.
    let report = findings.report(TORTIE_VERSION, &snapshot.cluster);
    let requests: Vec<ReleaseRequest> = report
        .allocations
        .values()
        .flatten()
        .filter(|a| !a.in_use && !a.cooling_down)
        .map(|a| ReleaseRequest {
            address: a.ip.parse().expect("report address"),
            handle: Some(a.handle.clone()),
            sequence: a.sequence_number,
        })
        .collect();
    let out = ipam.release_ips(&requests).await?;
    ensure!(out.released.len() == 2 && out.failed.is_empty(), "{out:?}");
    for h in &report.leaked_handles {
        let rev: i64 = h.revision.parse()?;
        ensure!(
            ipam.delete_handle_if_unchanged(&h.id, rev).await?,
            "handle {} changed",
            h.id
        );
    }
    let (findings, _) = ipam.check().await?;
    ensure!(findings.problem_count() == 0, "{findings:#?}");
    Ok(())
}

pub async fn tunnel_addresses_follow_the_conventions(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_node(&client, "node-1", &[]).await?;
    add_pool(&client, "workloads", "10.0.0.0/24", |s| {
        s.allowed_uses = vec![AllowedUse::Workload]
    })
    .await?;
    add_pool(&client, "tunnels", "10.9.0.0/24", |s| {
        s.allowed_uses = vec![AllowedUse::Tunnel]
    })
    .await?;
    add_pool(&client, "v6", "fd00::/120", |_| {}).await?;
    let ipam = t.ipam().await?;
    let v4 = ipam
        .ensure_tunnel_address("node-1", TunnelKind::Vxlan, IpVersion::V4, &[])
        .await?
        .context("a v4 tunnel address")?;
    ensure!(net("10.9.0.0/24").contains(&v4.addr()), "{v4}");
    let info = ipam.allocation(v4.addr()).await?.context("allocated")?;
    ensure!(info.handle_id.as_deref() == Some("vxlan-tunnel-addr-node-1"));
    ensure!(
        info.active_owner_attrs
            == BTreeMap::from([
                ("node".to_string(), "node-1".to_string()),
                ("type".to_string(), "vxlanTunnelAddress".to_string())
            ])
    );
    let again = ipam
        .ensure_tunnel_address("node-1", TunnelKind::Vxlan, IpVersion::V4, &[])
        .await?;
    ensure!(again == Some(v4), "kept while valid");
    let v6 = ipam
        .ensure_tunnel_address("node-1", TunnelKind::Vxlan, IpVersion::V6, &[])
        .await?
        .context("a v6 tunnel address")?;
    ensure!(
        ipam.allocation(v6.addr())
            .await?
            .and_then(|i| i.handle_id)
            .as_deref()
            == Some("vxlan-v6-tunnel-addr-node-1")
    );
    // The pool stops allowing tunnels: a new address elsewhere, the old one released.
    edit_pool(&client, "tunnels", |s| {
        s.allowed_uses = vec![AllowedUse::Workload]
    })
    .await?;
    add_pool(&client, "tunnels2", "10.8.0.0/24", |s| {
        s.allowed_uses = vec![AllowedUse::Tunnel]
    })
    .await?;
    let moved = ipam
        .ensure_tunnel_address("node-1", TunnelKind::Vxlan, IpVersion::V4, &[])
        .await?
        .context("moved")?;
    ensure!(net("10.8.0.0/24").contains(&moved.addr()), "{moved}");
    ensure!(
        ipam.allocation(v4.addr()).await?.is_none(),
        "old one released"
    );
    // The node lists its address: check agrees it is in use.
    client
        .modify(Kind::Node, "", "node-1", |mut r| {
            if let Some(spec) = r.spec_mut::<NodeSpec>() {
                spec.ipv4_vxlan_tunnel_addr = moved.addr().to_string();
            }
            Ok(r)
        })
        .await?;
    let (findings, _) = ipam.check().await?;
    ensure!(findings.problem_count() == 0, "{findings:#?}");
    ipam.release_tunnel_address("node-1", TunnelKind::Vxlan, IpVersion::V4)
        .await?;
    ipam.release_tunnel_address("node-1", TunnelKind::Vxlan, IpVersion::V4)
        .await?;
    ensure!(ipam.allocation(moved.addr()).await?.is_none());
    Ok(())
}
