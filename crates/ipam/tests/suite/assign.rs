//! Automatic and specific assignment: block affinity, pool selection,
//! caps, strict affinity, borrowing, reservations, IPv6 and dual stack.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use ipnet::IpNet;
use tortie_ipam::affinity::AffinityState;
use tortie_ipam::block::{OrdinalState, WINDOWS_RESERVED_HANDLE};
use tortie_ipam::keys::host_marker_key;
use tortie_ipam::{
    AllowedUse, AssignIpRequest, AutoAssignRequest, IpVersion, IpamConfig, IpamError,
};
use tortie_model::ippool::AssignmentMode;

use super::fixture::*;

pub async fn claims_an_affine_block_and_fills_it_in_order(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "pool1", "10.0.0.0/16", |_| {}).await?;
    let ipam = t.ipam().await?;
    let store = t.store().await?;
    let r = ipam
        .auto_assign(request("node-1", "k8s-pod-network.c1", 3, 0))
        .await?;
    ensure!(r.ipv4.ips.len() == 3 && r.ipv4.messages.is_empty(), "{r:?}");
    ensure!(r.ipv6.ips.is_empty() && r.ipv6.requested == 0);
    ensure!(
        r.ipv4.ips.iter().all(|n| n.prefix_len() == 26),
        "block prefix: {r:?}"
    );
    let block = r.ipv4.ips[0].trunc();
    let expected: Vec<IpNet> = (0..3)
        .map(|o| IpNet::new(tortie_ipam::cidr::address_at(&block, o), 26).expect("net"))
        .collect();
    ensure!(r.ipv4.ips == expected, "head of the queue first: {r:?}");
    let (b, _) = raw_block(store.as_ref(), &block)
        .await?
        .context("block stored")?;
    ensure!(b.affinity() == Some("host:node-1"));
    ensure!(b.affinity_claim_time().is_some());
    ensure!(
        raw_affinity(store.as_ref(), "node-1", &block).await? == Some(AffinityState::Confirmed)
    );
    let h = raw_handle(store.as_ref(), "k8s-pod-network.c1")
        .await?
        .context("handle")?;
    ensure!(h.block.get(&block.to_string()) == Some(&3), "{h:?}");
    ensure!(
        store.get(&host_marker_key("node-1")).await?.is_some(),
        "host marker"
    );

    // More addresses come from the same block; another host gets another.
    let more = assign_v4(&ipam, "node-1", "k8s-pod-network.c2", 2).await?;
    ensure!(more.iter().all(|a| block.contains(a)));
    let other = assign_v4(&ipam, "node-2", "k8s-pod-network.c3", 1).await?;
    ensure!(!block.contains(&other[0]), "node-2 claims its own block");
    Ok(())
}

pub async fn full_blocks_lead_to_new_claims_and_the_default_cap(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "tiny-blocks", "10.1.0.0/24", |s| {
        s.block_size = Some(30)
    })
    .await?;
    let ipam = t.ipam().await?;
    let ips = assign_v4(&ipam, "node-1", "h", 10).await?;
    ensure!(ips.len() == 10);
    assert_unique(&ips)?;
    let blocks: std::collections::BTreeSet<IpNet> = ips.iter().map(|a| block_of(*a, 30)).collect();
    ensure!(blocks.len() == 3, "4 + 4 + 2: {blocks:?}");

    // With single-address blocks the default cap of 20 blocks shows.
    add_pool(&client, "single", "10.2.0.0/24", |s| {
        s.block_size = Some(32)
    })
    .await?;
    let mut req = request("node-9", "h9", 25, 0);
    req.ipv4_pools = vec!["single".into()];
    let r = ipam.auto_assign(req).await?;
    ensure!(r.ipv4.ips.len() == 20, "{}", r.ipv4.ips.len());
    ensure!(r.ipv4.hit_block_limit);
    ensure!(
        r.ipv4.messages[0]
            == "Need to allocate an IPAM block but could not - limit of 20 blocks reached for this node",
        "{:?}",
        r.ipv4.messages
    );
    ensure!(
        r.ipv4
            .shortfall(IpVersion::V4)
            .as_deref()
            .is_some_and(|s| s
                .starts_with("Assigned 20 out of 25 requested IPv4 addresses; Need to allocate")),
        "{:?}",
        r.ipv4.shortfall(IpVersion::V4)
    );
    Ok(())
}

pub async fn max_blocks_per_host_from_config_and_request(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.1.0.0/24", |s| s.block_size = Some(30)).await?;
    let ipam = t.ipam().await?;
    let err = ipam
        .set_config(&IpamConfig {
            max_blocks_per_host: 1,
            ..IpamConfig::default()
        })
        .await
        .expect_err("needs strict affinity");
    ensure!(err.to_string().contains("requires strictAffinity"), "{err}");
    ipam.set_config(&IpamConfig {
        strict_affinity: true,
        max_blocks_per_host: 2,
        ..IpamConfig::default()
    })
    .await?;
    let r = ipam.auto_assign(request("node-1", "a", 10, 0)).await?;
    ensure!(r.ipv4.ips.len() == 8, "two blocks of four: {r:?}");
    ensure!(
        r.ipv4
            .messages
            .iter()
            .any(|m| m.contains("limit of 2 blocks")),
        "{r:?}"
    );
    let mut req = request("node-2", "b", 10, 0);
    req.max_blocks_per_host = Some(1);
    let r = ipam.auto_assign(req).await?;
    ensure!(
        r.ipv4.ips.len() == 4,
        "the request's smaller cap wins: {r:?}"
    );
    Ok(())
}

pub async fn borrowing_and_strict_affinity(t: &Target) -> Result<()> {
    let client = t.client().await?;
    // Two blocks of four addresses.
    add_pool(&client, "p", "10.0.0.0/29", |s| s.block_size = Some(30)).await?;
    let ipam = t.ipam().await?;
    let one = assign_v4(&ipam, "node-1", "h1", 4).await?;
    let two = assign_v4(&ipam, "node-2", "h2", 4).await?;
    ensure!(block_of(one[0], 30) != block_of(two[0], 30));
    let r = ipam.auto_assign(request("node-2", "h3", 1, 0)).await?;
    ensure!(r.ipv4.ips.is_empty());
    ensure!(
        r.ipv4.messages == vec!["No IPs available in pools: [10.0.0.0/29]".to_string()],
        "{r:?}"
    );
    // node-1 frees one; node-2 borrows it (strict affinity is off).
    let freed = one[1];
    let out = ipam
        .release_ips(&[tortie_ipam::ReleaseRequest::address(freed)])
        .await?;
    ensure!(out.released.len() == 1);
    let borrowed = assign_v4(&ipam, "node-2", "h3", 1).await?;
    ensure!(borrowed == vec![freed], "borrowed {borrowed:?}");
    let (list, unclassified) = ipam.borrowed().await?;
    ensure!(list.len() == 1 && unclassified == 0, "{list:?}");
    ensure!(list[0].borrowing_node == "node-2" && list[0].block_owner == "node-1");
    // With strict affinity on, nothing is borrowed.
    ipam.release_ips(&[tortie_ipam::ReleaseRequest::address(freed)])
        .await?;
    ipam.update_config(|c| c.strict_affinity = true).await?;
    let r = ipam.auto_assign(request("node-2", "h4", 1, 0)).await?;
    ensure!(r.ipv4.ips.is_empty());
    ensure!(
        r.ipv4.messages
            == vec!["No more free affine blocks and strict affinity enabled".to_string()],
        "{r:?}"
    );
    // A specific address in node-1's block is refused under strict affinity.
    let err = ipam
        .assign_ip(AssignIpRequest::new(freed, "h5", "node-2"))
        .await
        .expect_err("strict");
    ensure!(matches!(err, IpamError::StrictAffinity { .. }), "{err}");
    Ok(())
}

pub async fn pool_selection_follows_selectors_uses_and_modes(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_node(&client, "node-1", &[("rack", "a")]).await?;
    add_node(&client, "node-2", &[("rack", "b")]).await?;
    add_pool(&client, "a-rack-a", "10.1.0.0/16", |s| {
        s.node_selector = "rack == 'a'".into();
        s.allowed_uses = vec![AllowedUse::Workload];
    })
    .await?;
    add_pool(&client, "b-prod", "10.2.0.0/16", |s| {
        s.namespace_selector = "env == 'prod'".into();
        s.allowed_uses = vec![AllowedUse::Workload];
    })
    .await?;
    add_pool(&client, "c-tunnel", "10.3.0.0/16", |s| {
        s.allowed_uses = vec![AllowedUse::Tunnel];
        s.node_selector = "rack == 'a'".into();
    })
    .await?;
    add_pool(&client, "d-manual", "10.4.0.0/16", |s| {
        s.assignment_mode = Some(AssignmentMode::Manual)
    })
    .await?;
    add_pool(&client, "e-off", "10.5.0.0/16", |s| s.disabled = true).await?;
    let ipam = t.ipam().await?;

    let first = |r: &tortie_ipam::AutoAssignResult| r.ipv4.ips.first().map(IpNet::addr);
    let r = ipam.auto_assign(request("node-1", "h1", 1, 0)).await?;
    ensure!(
        first(&r).is_some_and(|a| net("10.1.0.0/16").contains(&a)),
        "{r:?}"
    );
    let err = ipam
        .auto_assign(request("node-2", "h2", 1, 0))
        .await
        .expect_err("no pool selects node-2 without a namespace");
    ensure!(
        err.to_string() == "no configured Calico pools for node node-2",
        "{err}"
    );
    let mut req = request("node-2", "h2", 1, 0);
    req.namespace_labels = Some(BTreeMap::from([("env".to_string(), "prod".to_string())]));
    let r = ipam.auto_assign(req).await?;
    ensure!(
        first(&r).is_some_and(|a| net("10.2.0.0/16").contains(&a)),
        "{r:?}"
    );
    let mut req = request("node-1", "tunnel", 1, 0);
    req.intended_use = AllowedUse::Tunnel;
    let r = ipam.auto_assign(req).await?;
    ensure!(
        first(&r).is_some_and(|a| net("10.3.0.0/16").contains(&a)),
        "{r:?}"
    );
    let mut req = request("node-1", "lb", 1, 0);
    req.intended_use = AllowedUse::LoadBalancer;
    let err = ipam.auto_assign(req).await.expect_err("no LB pool");
    ensure!(
        err.to_string() == "no configured Calico pools for node load-balancer",
        "LoadBalancer blocks belong to the virtual owner: {err}"
    );
    // A Workload request restricted to the tunnel-only pool.
    let mut req = request("node-1", "h", 1, 0);
    req.ipv4_pools = vec!["c-tunnel".into()];
    let err = ipam.auto_assign(req).await.expect_err("tunnel-only pool");
    ensure!(matches!(err, IpamError::NoQualifiedPool), "{err}");

    // Explicit pools: names or CIDRs, selectors ignored, manual allowed.
    let mut req = request("node-2", "h3", 1, 0);
    req.ipv4_pools = vec!["d-manual".into()];
    let r = ipam.auto_assign(req).await?;
    ensure!(
        first(&r).is_some_and(|a| net("10.4.0.0/16").contains(&a)),
        "{r:?}"
    );
    let mut req = request("node-2", "h4", 1, 0);
    req.ipv4_pools = vec!["10.1.0.0/16".into()];
    let r = ipam.auto_assign(req).await?;
    ensure!(
        first(&r).is_some_and(|a| net("10.1.0.0/16").contains(&a)),
        "{r:?}"
    );
    for bad in ["e-off", "10.9.0.0/16", "no-such-pool"] {
        let mut req = request("node-2", "h5", 1, 0);
        req.ipv4_pools = vec![bad.into()];
        let err = ipam.auto_assign(req).await.expect_err("unusable pool");
        ensure!(
            err.to_string() == format!("the given pool ({bad}) does not exist, or is not enabled"),
            "{err}"
        );
    }
    let err = ipam
        .auto_assign(request("", "h", 1, 0))
        .await
        .expect_err("no host");
    ensure!(matches!(err, IpamError::InvalidRequest(_)));
    Ok(())
}

pub async fn reservations_are_never_handed_out(t: &Target) -> Result<()> {
    let client = t.client().await?;
    // Four blocks of four; the first wholly reserved, the second partly.
    add_pool(&client, "p", "10.0.0.0/28", |s| s.block_size = Some(30)).await?;
    add_reservation(&client, "r1", &["10.0.0.0/30", "10.0.0.4/31", "10.0.0.13"]).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    let mut got = Vec::new();
    for (i, host) in ["n1", "n2", "n3", "n4"].iter().enumerate() {
        got.extend(assign_v4(&ipam, host, &format!("h{i}"), 4).await?);
    }
    assert_unique(&got)?;
    let reserved = [
        "10.0.0.0",
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.0.0.4",
        "10.0.0.5",
        "10.0.0.13",
    ];
    ensure!(
        got.iter()
            .all(|a| !reserved.contains(&a.to_string().as_str())),
        "{got:?}"
    );
    ensure!(
        got.len() == 16 - reserved.len(),
        "every unreserved address: {got:?}"
    );
    ensure!(
        raw_block(store.as_ref(), &net("10.0.0.0/30"))
            .await?
            .is_none(),
        "a wholly reserved block is never claimed"
    );
    // Reserved ordinals stay queued in the partly reserved block.
    let (b, _) = raw_block(store.as_ref(), &net("10.0.0.4/30"))
        .await?
        .context("block")?;
    ensure!(
        b.unallocated().collect::<Vec<_>>() == vec![0, 1],
        "{:?}",
        b.unallocated().collect::<Vec<_>>()
    );
    // Specific requests ignore reservations.
    ipam.assign_ip(AssignIpRequest::new(ip("10.0.0.13"), "explicit", "n4"))
        .await
        .ok();
    let info = ipam.allocation(ip("10.0.0.13")).await?;
    ensure!(info.is_some_and(|i| i.handle_id.as_deref() == Some("explicit")));
    // Utilisation: pool 16, in use 10, reserved 7 (one both), free 0.
    let usage = ipam.utilisation().await?;
    let pool = usage[0].pool.as_ref().context("pool row")?;
    ensure!(
        (pool.total, pool.in_use, pool.reserved, pool.free) == (16, 10, 7, 0),
        "{pool:?}"
    );
    Ok(())
}

pub async fn ipv6_and_dual_stack(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "v4", "10.0.0.0/24", |_| {}).await?;
    add_pool(&client, "v6", "fd00:10::/120", |_| {}).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    let r = ipam.auto_assign(request("node-1", "dual", 1, 2)).await?;
    ensure!(r.ipv4.ips.len() == 1 && r.ipv6.ips.len() == 2, "{r:?}");
    ensure!(r.ipv6.ips.iter().all(|n| n.prefix_len() == 122));
    let b6 = r.ipv6.ips[0].trunc();
    ensure!(b6 == net("fd00:10::/122") || net("fd00:10::/120").contains(&b6));
    let key = format!("/calico/ipam/v2/assignment/ipv6/block/{}-122", b6.network());
    ensure!(store.get(&key).await?.is_some(), "v6 block key {key}");
    let h = raw_handle(store.as_ref(), "dual")
        .await?
        .context("handle")?;
    ensure!(h.block.len() == 2, "one entry per family: {h:?}");
    ensure!(ipam.ips_by_handle("dual").await?.len() == 3);

    // v6 fails outright: the v4 address assigned first is given back.
    let mut req = request("node-1", "half", 1, 1);
    req.ipv6_pools = vec!["fd99::/120".into()];
    let err = ipam.auto_assign(req).await.expect_err("no such v6 pool");
    ensure!(matches!(err, IpamError::PoolNotUsable { .. }), "{err}");
    let leftovers = all_allocations(store.as_ref()).await?;
    ensure!(!leftovers.values().any(|h| h == "half"), "{leftovers:?}");
    ensure!(raw_handle(store.as_ref(), "half").await?.is_none());

    ipam.release_by_handle("dual").await?;
    ensure!(all_allocations(store.as_ref()).await?.is_empty());
    Ok(())
}

pub async fn specific_addresses(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/24", |_| {}).await?;
    add_pool(&client, "off", "10.9.0.0/24", |s| s.disabled = true).await?;
    add_pool(&client, "tun", "10.8.0.0/24", |s| {
        s.allowed_uses = vec![AllowedUse::Tunnel]
    })
    .await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    let mut req = AssignIpRequest::new(ip("10.0.0.77"), "k8s-pod-network.x\r\ngarbage", "node-1");
    req.attrs = pod_attrs("default", "p1", "node-1");
    ipam.assign_ip(req.clone()).await?;
    let (b, _) = raw_block(store.as_ref(), &net("10.0.0.64/26"))
        .await?
        .context("claimed")?;
    ensure!(b.affinity() == Some("host:node-1"));
    ensure!(
        matches!(b.ordinal_state(13), OrdinalState::Allocated(a) if a.handle_id.as_deref() == Some("k8s-pod-network.x"))
    );
    ensure!(!b.unallocated().any(|o| o == 13));
    ensure!(
        raw_handle(store.as_ref(), "k8s-pod-network.x")
            .await?
            .is_some(),
        "sanitised handle"
    );
    let err = ipam.assign_ip(req).await.expect_err("taken");
    ensure!(
        err.to_string() == "Address already assigned in block",
        "{err}"
    );
    for (addr, text) in [
        (
            "10.7.0.1",
            "The provided IP address is not in a configured pool",
        ),
        (
            "10.9.0.1",
            "The provided IP address is not in a configured pool",
        ),
    ] {
        let err = ipam
            .assign_ip(AssignIpRequest::new(ip(addr), "h", "node-1"))
            .await
            .expect_err("refused");
        ensure!(err.to_string() == text, "{err}");
    }
    let mut req = AssignIpRequest::new(ip("10.8.0.1"), "h", "node-1");
    req.intended_use = Some(AllowedUse::Workload);
    let err = ipam.assign_ip(req).await.expect_err("tunnel-only pool");
    ensure!(matches!(err, IpamError::UseNotAllowed { .. }), "{err}");
    // Auto-assignment in the same block skips the taken ordinal.
    let got = assign_v4(&ipam, "node-1", "auto", 64).await?;
    ensure!(!got.contains(&ip("10.0.0.77")));
    Ok(())
}

pub async fn windows_hosts_reserve_block_ends(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "small", "10.1.0.0/24", |s| s.block_size = Some(30)).await?;
    add_pool(&client, "p", "10.0.0.0/24", |s| s.block_size = Some(28)).await?;
    let ipam = t.ipam().await?;
    let store = t.store().await?;
    let req = AutoAssignRequest {
        reserve_block_ends: true,
        ..request("win-1", "w", 1, 0)
    };
    let r = ipam.auto_assign(req).await?;
    let got = r.ipv4.ips[0];
    ensure!(
        net("10.0.0.0/24").contains(&got.addr()),
        "the /30 pool is skipped: {r:?}"
    );
    let block = got.trunc();
    ensure!(
        got.addr() == tortie_ipam::cidr::address_at(&block, 3),
        "{got}"
    );
    let (b, _) = raw_block(store.as_ref(), &block).await?.context("block")?;
    for o in [0, 1, 2, 15] {
        ensure!(
            matches!(b.ordinal_state(o), OrdinalState::Allocated(a) if a.handle_id.as_deref() == Some(WINDOWS_RESERVED_HANDLE))
        );
    }
    ipam.release_by_handle("w").await?;
    // Only reserved ends left: the block counts as empty.
    let (b, _) = raw_block(store.as_ref(), &block).await?.context("block")?;
    ensure!(b.is_empty());
    Ok(())
}
