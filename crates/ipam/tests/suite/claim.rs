//! The two-phase claim (§3.2) from every state a crash can leave, stale
//! affinities, reclaiming long-empty blocks (§3.5) and housekeeping of
//! blocks in pools that no longer select the host (§3.3 step 5). Crash
//! states are written straight into the datastore.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use tortie_ipam::affinity::{AffinityOwner, AffinityState};
use tortie_ipam::block::Block;
use tortie_ipam::keys::block_key;

use super::fixture::*;

/// A pool holding exactly one /26 block, so every claim targets it.
async fn one_block_pool(t: &Target) -> Result<()> {
    add_pool(&t.client().await?, "one", "10.0.0.0/26", |_| {}).await
}

fn new_block(host: Option<&str>) -> Vec<u8> {
    let owner = host.map(AffinityOwner::host);
    Block::new(
        net("10.0.0.0/26"),
        owner.as_ref(),
        UNIX_EPOCH + Duration::from_secs(1),
        false,
    )
    .encode()
}

pub async fn pending_affinity_without_block_is_finished(t: &Target) -> Result<()> {
    one_block_pool(t).await?;
    let store = t.store().await?;
    let b = net("10.0.0.0/26");
    // Crash after step 1.
    put_affinity(store.as_ref(), "node-1", &b, AffinityState::Pending).await?;
    let ips = assign_v4(&t.ipam().await?, "node-1", "h", 1).await?;
    ensure!(b.contains(&ips[0]));
    ensure!(raw_affinity(store.as_ref(), "node-1", &b).await? == Some(AffinityState::Confirmed));
    let (blk, _) = raw_block(store.as_ref(), &b)
        .await?
        .context("block created")?;
    ensure!(blk.affinity() == Some("host:node-1"));
    Ok(())
}

pub async fn block_with_pending_affinity_is_confirmed_after_a_rewrite(t: &Target) -> Result<()> {
    one_block_pool(t).await?;
    let store = t.store().await?;
    let b = net("10.0.0.0/26");
    // Crash after step 2.
    put_affinity(store.as_ref(), "node-1", &b, AffinityState::Pending).await?;
    store
        .create(&block_key(&b), new_block(Some("node-1")))
        .await?;
    let (before, _) = raw_block(store.as_ref(), &b).await?.context("block")?;
    let ips = assign_v4(&t.ipam().await?, "node-1", "h", 1).await?;
    ensure!(b.contains(&ips[0]));
    ensure!(raw_affinity(store.as_ref(), "node-1", &b).await? == Some(AffinityState::Confirmed));
    let (after, _) = raw_block(store.as_ref(), &b).await?.context("block")?;
    // One rewrite (recovery) and one allocation write.
    ensure!(
        after.sequence_number() == before.sequence_number() + 2,
        "{} -> {}",
        before.sequence_number(),
        after.sequence_number()
    );
    Ok(())
}

pub async fn pending_deletion_affinity_is_recovered(t: &Target) -> Result<()> {
    one_block_pool(t).await?;
    let store = t.store().await?;
    let b = net("10.0.0.0/26");
    // A release crashed after marking the affinity.
    put_affinity(store.as_ref(), "node-1", &b, AffinityState::PendingDeletion).await?;
    store
        .create(&block_key(&b), new_block(Some("node-1")))
        .await?;
    let ips = assign_v4(&t.ipam().await?, "node-1", "h", 2).await?;
    ensure!(ips.iter().all(|a| b.contains(a)));
    ensure!(raw_affinity(store.as_ref(), "node-1", &b).await? == Some(AffinityState::Confirmed));
    Ok(())
}

pub async fn block_without_affinity_key_is_adopted(t: &Target) -> Result<()> {
    one_block_pool(t).await?;
    let store = t.store().await?;
    let b = net("10.0.0.0/26");
    // The block says node-1, but node-1 holds no affinity (it was deleted).
    store
        .create(&block_key(&b), new_block(Some("node-1")))
        .await?;
    let ips = assign_v4(&t.ipam().await?, "node-1", "h", 1).await?;
    ensure!(b.contains(&ips[0]), "{ips:?}");
    ensure!(raw_affinity(store.as_ref(), "node-1", &b).await? == Some(AffinityState::Confirmed));
    Ok(())
}

pub async fn confirmed_affinity_with_missing_block_is_claimed_again(t: &Target) -> Result<()> {
    one_block_pool(t).await?;
    let store = t.store().await?;
    let b = net("10.0.0.0/26");
    put_affinity(store.as_ref(), "node-1", &b, AffinityState::Confirmed).await?;
    let ips = assign_v4(&t.ipam().await?, "node-1", "h", 1).await?;
    ensure!(b.contains(&ips[0]));
    let (blk, _) = raw_block(store.as_ref(), &b).await?.context("block")?;
    ensure!(blk.affinity() == Some("host:node-1"));
    Ok(())
}

pub async fn stale_and_conflicting_affinities_are_dropped(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/24", |_| {}).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    // node-2 owns a block; node-1 holds a confirmed (stale) and node-3 a
    // pending (lost claim) affinity for it.
    let theirs = assign_v4(&ipam, "node-2", "h2", 1).await?;
    let b = block_of(theirs[0], 26);
    put_affinity(store.as_ref(), "node-1", &b, AffinityState::Confirmed).await?;
    put_affinity(store.as_ref(), "node-3", &b, AffinityState::Pending).await?;
    let mine = assign_v4(&ipam, "node-1", "h1", 1).await?;
    ensure!(!b.contains(&mine[0]), "node-1 must not use node-2's block");
    ensure!(
        raw_affinity(store.as_ref(), "node-1", &b).await?.is_none(),
        "stale affinity deleted"
    );
    let third = assign_v4(&ipam, "node-3", "h3", 1).await?;
    ensure!(!b.contains(&third[0]));
    ensure!(
        raw_affinity(store.as_ref(), "node-3", &b).await?.is_none(),
        "lost claim deleted"
    );
    let (blk, _) = raw_block(store.as_ref(), &b).await?.context("block")?;
    ensure!(
        blk.affinity() == Some("host:node-2"),
        "the owner is untouched"
    );
    ensure!(raw_affinity(store.as_ref(), "node-2", &b).await? == Some(AffinityState::Confirmed));
    Ok(())
}

pub async fn long_empty_blocks_of_other_hosts_are_reclaimed(t: &Target) -> Result<()> {
    one_block_pool(t).await?;
    let store = t.store().await?;
    let (ipam, clock) = t.ipam_with_clock().await?;
    ipam.update_config(|c| c.strict_affinity = true).await?;
    let b = net("10.0.0.0/26");
    let ips = assign_v4(&ipam, "node-1", "h1", 1).await?;
    ipam.release_by_handle("h1").await?;
    ensure!(b.contains(&ips[0]));
    // Empty, but claimed moments ago: node-2 may not take it yet.
    let r = ipam.auto_assign(request("node-2", "h2", 1, 0)).await?;
    ensure!(r.ipv4.ips.is_empty(), "{r:?}");
    clock.advance(Duration::from_secs(61));
    let got = assign_v4(&ipam, "node-2", "h2", 1).await?;
    ensure!(b.contains(&got[0]), "{got:?}");
    let (blk, _) = raw_block(store.as_ref(), &b).await?.context("block")?;
    ensure!(blk.affinity() == Some("host:node-2"));
    ensure!(raw_affinity(store.as_ref(), "node-1", &b).await?.is_none());
    ensure!(raw_affinity(store.as_ref(), "node-2", &b).await? == Some(AffinityState::Confirmed));
    // A non-empty block is never reclaimed.
    clock.advance(Duration::from_secs(120));
    let r = ipam.auto_assign(request("node-1", "h3", 1, 0)).await?;
    ensure!(r.ipv4.ips.is_empty(), "{r:?}");
    Ok(())
}

pub async fn blocks_outside_the_hosts_pools_are_released_when_empty(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_node(&client, "node-1", &[("zone", "a")]).await?;
    add_pool(&client, "a", "10.1.0.0/24", |_| {}).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    let used = assign_v4(&ipam, "node-1", "keep", 1).await?;
    let kept_block = block_of(used[0], 26);
    let empty = assign_v4(&ipam, "node-1", "gone", 1).await?;
    ensure!(block_of(empty[0], 26) == kept_block);
    // A second block in pool a, emptied.
    let mut req = request("node-1", "x", 64, 0);
    req.ipv4_pools = vec!["a".into()];
    let filled = ipam.auto_assign(req).await?;
    let second = filled
        .ipv4
        .ips
        .iter()
        .map(|n| n.trunc())
        .find(|b| *b != kept_block)
        .context("a second block")?;
    ipam.release_by_handle("x").await?;
    ipam.release_by_handle("gone").await?;
    // Pool a stops selecting node-1; pool b takes over.
    edit_pool(&client, "a", |s| s.node_selector = "zone == 'b'".into()).await?;
    add_pool(&client, "b", "10.2.0.0/24", |_| {}).await?;
    let now = assign_v4(&ipam, "node-1", "new", 1).await?;
    ensure!(net("10.2.0.0/24").contains(&now[0]));
    ensure!(
        raw_affinity(store.as_ref(), "node-1", &second)
            .await?
            .is_none(),
        "empty block released"
    );
    ensure!(
        raw_block(store.as_ref(), &second).await?.is_none(),
        "and deleted"
    );
    ensure!(
        raw_affinity(store.as_ref(), "node-1", &kept_block).await?
            == Some(AffinityState::Confirmed),
        "a block still holding an address keeps its affinity"
    );
    Ok(())
}

pub async fn claim_affinity_for_a_range(t: &Target) -> Result<()> {
    let client = t.client().await?;
    add_pool(&client, "p", "10.0.0.0/24", |_| {}).await?;
    let ipam = t.ipam().await?;
    let theirs = assign_v4(&ipam, "node-2", "h", 1).await?;
    let out = ipam.claim_affinity(&net("10.0.0.0/24"), "node-1").await?;
    ensure!(
        out.claimed.len() == 3 && out.failed == vec![block_of(theirs[0], 26)],
        "{out:?}"
    );
    let err = ipam
        .claim_affinity(&net("10.0.0.0/28"), "node-1")
        .await
        .expect_err("smaller than a block");
    ensure!(err.to_string().contains("smaller than one block"), "{err}");
    Ok(())
}
