//! Release by address and by handle, sequence numbers, cooldown, affinity
//! release, host and pool helpers, and the configuration singleton.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tortie_ipam::affinity::{AffinityOwner, AffinityState};
use tortie_ipam::keys::{CONFIG_KEY, host_marker_key};
use tortie_ipam::{AffinityReleaseOutcome, AssignIpRequest, IpamConfig, IpamError, ReleaseRequest};

use super::fixture::*;

pub async fn released_addresses_are_reused_last(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/30", |s| s.block_size = Some(30)).await?;
    let ipam = t.ipam().await?;
    let first = assign_v4(&ipam, "n", "a", 2).await?;
    ensure!(first == vec![ip("10.0.0.0"), ip("10.0.0.1")], "{first:?}");
    let out = ipam
        .release_ips(&[ReleaseRequest::address(ip("10.0.0.0"))])
        .await?;
    ensure!(out.released.len() == 1 && out.not_allocated.is_empty() && out.failed.is_empty());
    let mut order = Vec::new();
    for i in 0..3 {
        order.extend(assign_v4(&ipam, "n", &format!("b{i}"), 1).await?);
    }
    ensure!(
        order == vec![ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.0")],
        "{order:?}"
    );
    Ok(())
}

pub async fn release_reports_unallocated_and_refuses_wrong_handles(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/24", |_| {}).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    let ips = assign_v4(&ipam, "n", "owner", 2).await?;
    let out = ipam
        .release_ips(&[
            ReleaseRequest::address(ip("10.0.0.200")),
            ReleaseRequest::address(ip("192.168.1.1")),
        ])
        .await?;
    ensure!(
        out.not_allocated.len() == 2 && out.released.is_empty(),
        "{out:?}"
    );
    let out = ipam
        .release_ips(&[
            ReleaseRequest::address(ips[0]),
            ReleaseRequest {
                address: ips[1],
                handle: Some("someone-else".into()),
                sequence: None,
            },
        ])
        .await?;
    ensure!(out.released.is_empty() && out.failed.len() == 1, "{out:?}");
    let err = out.first_error().context("an error")?;
    ensure!(err.to_string().contains("bad handle"), "{err}");
    ensure!(
        all_allocations(store.as_ref()).await?.len() == 2,
        "nothing released"
    );
    let h = raw_handle(store.as_ref(), "owner")
        .await?
        .context("handle")?;
    ensure!(h.total() == 2);
    // Duplicates collapse; the handle count follows.
    let out = ipam
        .release_ips(&[
            ReleaseRequest::address(ips[0]),
            ReleaseRequest::address(ips[0]),
        ])
        .await?;
    ensure!(out.released.len() == 1, "{out:?}");
    ensure!(
        raw_handle(store.as_ref(), "owner")
            .await?
            .context("handle")?
            .total()
            == 1
    );
    Ok(())
}

pub async fn sequence_numbers_stop_a_stale_release(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/24", |_| {}).await?;
    let ipam = t.ipam().await?;
    let old = assign_v4(&ipam, "n", "old-owner", 1).await?[0];
    let seen = ipam.allocation(old).await?.context("allocated")?;
    ensure!(seen.handle_id.as_deref() == Some("old-owner") && !seen.cooling_down);
    // The old owner goes away and the address is handed to a new owner.
    ipam.release_by_handle("old-owner").await?;
    ipam.assign_ip(AssignIpRequest::new(old, "new-owner", "n"))
        .await?;
    // A garbage collector acting on what it saw earlier must not take it.
    let out = ipam
        .release_ips(&[ReleaseRequest {
            address: old,
            handle: None,
            sequence: Some(seen.sequence_number),
        }])
        .await?;
    let err = out.first_error().context("refused")?;
    ensure!(err.to_string().contains("bad sequence number"), "{err}");
    let now = ipam.allocation(old).await?.context("still allocated")?;
    ensure!(now.handle_id.as_deref() == Some("new-owner"));
    let out = ipam
        .release_ips(&[ReleaseRequest {
            address: old,
            handle: Some("new-owner".into()),
            sequence: Some(now.sequence_number),
        }])
        .await?;
    ensure!(out.released.len() == 1, "{out:?}");
    Ok(())
}

pub async fn release_by_handle_releases_everything_once(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p4", "10.0.0.0/24", |s| s.block_size = Some(30)).await?;
    add_pool(&client, "p6", "fd00::/120", |_| {}).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    let r = ipam
        .auto_assign(request("n", "k8s-pod-network.c", 6, 2))
        .await?;
    ensure!(r.ipv4.ips.len() == 6 && r.ipv6.ips.len() == 2);
    let keep = assign_v4(&ipam, "n", "other", 1).await?;
    ipam.release_by_handle("k8s-pod-network.c\rjunk").await?;
    let left = all_allocations(store.as_ref()).await?;
    ensure!(left.len() == 1 && left.contains_key(&keep[0]), "{left:?}");
    ensure!(
        raw_handle(store.as_ref(), "k8s-pod-network.c")
            .await?
            .is_none(),
        "handle deleted"
    );
    let err = ipam
        .release_by_handle("k8s-pod-network.c")
        .await
        .expect_err("gone");
    ensure!(matches!(err, IpamError::HandleNotFound { .. }), "{err}");
    Ok(())
}

pub async fn cooldown_delays_reuse(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/30", |s| s.block_size = Some(30)).await?;
    let (ipam, clock) = t.ipam_with_clock().await?;
    ipam.update_config(|c| c.ip_cooldown_seconds = 30).await?;
    let ips = assign_v4(&ipam, "n", "a", 4).await?;
    let victim = ips[1];
    ipam.release_ips(&[ReleaseRequest::address(victim)]).await?;
    let info = ipam.allocation(victim).await?.context("cooling")?;
    ensure!(info.cooling_down && info.released_at.is_some() && info.handle_id.is_none());
    let r = ipam.auto_assign(request("n", "b", 1, 0)).await?;
    ensure!(
        r.ipv4.ips.is_empty(),
        "a cooling address is not reused: {r:?}"
    );
    let err = ipam
        .assign_ip(AssignIpRequest::new(victim, "c", "n"))
        .await
        .expect_err("cooling");
    ensure!(matches!(err, IpamError::CoolingDown { .. }), "{err}");
    let again = ipam.release_ips(&[ReleaseRequest::address(victim)]).await?;
    ensure!(again.not_allocated.len() == 1, "already released");
    clock.advance(Duration::from_secs(31));
    let got = assign_v4(&ipam, "n", "b", 1).await?;
    ensure!(got == vec![victim], "{got:?}");
    // The backstop frees cooled ordinals of blocks nobody touches.
    ipam.release_ips(&[ReleaseRequest::address(victim)]).await?;
    ensure!(ipam.collect_cooled_down().await? == 0, "still cooling");
    clock.advance(Duration::from_secs(31));
    ensure!(ipam.collect_cooled_down().await? == 1);
    ensure!(ipam.allocation(victim).await?.is_none());
    Ok(())
}

pub async fn affinity_release_and_host_helpers(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/24", |s| s.block_size = Some(28)).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    let busy = assign_v4(&ipam, "node-1", "busy", 1).await?;
    let busy_block = block_of(busy[0], 28);
    let mut req = request("node-1", "tmp", 16, 0);
    req.ipv4_pools = vec!["p".into()];
    ipam.auto_assign(req).await?;
    ipam.release_by_handle("tmp").await?;
    let blocks = all_blocks(store.as_ref()).await?;
    ensure!(blocks.len() == 2, "{}", blocks.len());
    let empty_block = blocks
        .iter()
        .map(|b| b.cidr())
        .find(|c| *c != busy_block)
        .context("second block")?;

    let owner = AffinityOwner::host("node-1");
    let err = ipam
        .release_block_affinity(&owner, &busy_block, true, None)
        .await
        .expect_err("not empty");
    ensure!(matches!(err, IpamError::BlockNotEmpty { .. }));
    let (b, _) = raw_block(store.as_ref(), &empty_block)
        .await?
        .context("block")?;
    let err = ipam
        .release_block_affinity(&owner, &empty_block, true, Some(b.sequence_number() + 7))
        .await
        .expect_err("sequence moved");
    ensure!(matches!(err, IpamError::BlockChanged { .. }));

    let summary = ipam.release_host_affinities("node-1", true).await?;
    ensure!(
        summary.released == vec![empty_block] && summary.not_empty == vec![busy_block],
        "{summary:?}"
    );
    ensure!(raw_block(store.as_ref(), &empty_block).await?.is_none());

    let summary = ipam.remove_host("node-1").await?;
    ensure!(
        summary.released == vec![busy_block] && summary.errors.is_empty(),
        "{summary:?}"
    );
    let (b, _) = raw_block(store.as_ref(), &busy_block)
        .await?
        .context("kept")?;
    ensure!(b.affinity().is_none() && b.affinity_claim_time().is_none());
    ensure!(
        raw_affinity(store.as_ref(), "node-1", &busy_block)
            .await?
            .is_none()
    );
    ensure!(
        store.get(&host_marker_key("node-1")).await?.is_none(),
        "marker removed"
    );
    ensure!(
        ipam.allocation(busy[0]).await?.is_some(),
        "the address survives"
    );
    // Releasing the last address of an unaffine block deletes it.
    ipam.release_by_handle("busy").await?;
    ensure!(raw_block(store.as_ref(), &busy_block).await?.is_none());
    // Nothing left to release.
    let outcome = ipam
        .release_block_affinity(&owner, &busy_block, false, None)
        .await?;
    ensure!(outcome == AffinityReleaseOutcome::NothingToRelease);
    Ok(())
}

pub async fn deleting_a_pool_releases_its_affinities(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/24", |s| s.block_size = Some(28)).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    let kept = assign_v4(&ipam, "node-1", "kept", 1).await?;
    assign_v4(&ipam, "node-2", "gone", 1).await?;
    ipam.release_by_handle("gone").await?;
    ipam.delete_pool("p").await?;
    let blocks = all_blocks(store.as_ref()).await?;
    ensure!(
        blocks.len() == 1 && blocks[0].affinity().is_none(),
        "only the non-empty block stays, unaffine"
    );
    ensure!(
        store
            .list("/calico/ipam/v2/host/node-1/")
            .await?
            .items
            .is_empty()
    );
    ensure!(
        store
            .list("/calico/ipam/v2/host/node-2/")
            .await?
            .items
            .is_empty()
    );
    // The address outside any pool can still be looked up and released.
    ensure!(ipam.allocation(kept[0]).await?.is_some());
    let out = ipam
        .release_ips(&[ReleaseRequest::address(kept[0])])
        .await?;
    ensure!(out.released.len() == 1, "{out:?}");
    ensure!(all_blocks(store.as_ref()).await?.is_empty());
    Ok(())
}

pub async fn configuration_is_validated_and_stored_in_calico_form(t: &Target) -> Result<()> {
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    ensure!(ipam.config().await? == IpamConfig::default());
    for bad in [
        IpamConfig {
            auto_allocate_blocks: false,
            ..IpamConfig::default()
        },
        IpamConfig {
            ip_cooldown_seconds: 1201,
            ..IpamConfig::default()
        },
    ] {
        ensure!(ipam.set_config(&bad).await.is_err(), "{bad:?}");
    }
    let good = IpamConfig {
        strict_affinity: true,
        max_blocks_per_host: 4,
        ip_cooldown_seconds: 60,
        ..IpamConfig::default()
    };
    ipam.set_config(&good).await?;
    ensure!(ipam.config().await? == good);
    let raw = store.get(CONFIG_KEY).await?.context("stored")?;
    let v: serde_json::Value = serde_json::from_slice(&raw.value)?;
    ensure!(
        v == serde_json::json!({"strict_affinity": true, "auto_allocate_blocks": true,
            "maxBlocksPerHost": 4, "ipCooldownSeconds": 60}),
        "{v}"
    );
    let c = ipam.update_config(|c| c.max_blocks_per_host = 0).await?;
    ensure!(c.strict_affinity && c.max_blocks_per_host == 0);
    Ok(())
}

pub async fn unconfirmed_affinities_are_invisible_to_readers(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/24", |_| {}).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    // A pending affinity (a claim in flight) for a block that does not
    // exist: no block, no address, nothing counted.
    put_affinity(
        store.as_ref(),
        "node-9",
        &net("10.0.0.192/26"),
        AffinityState::Pending,
    )
    .await?;
    let usage = ipam.utilisation().await?;
    ensure!(usage[0].blocks.is_empty(), "{usage:?}");
    ensure!(ipam.allocation(ip("10.0.0.200")).await?.is_none());
    Ok(())
}
