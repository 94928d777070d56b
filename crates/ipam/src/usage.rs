//! Address utilisation per pool and per block (ipam.md §9.1), computed from
//! pools, blocks and reservations with no I/O, for `ipam show`.
//!
//! Counts: TOTAL is the CIDR size (a pool's whole CIDR, including space no
//! block covers yet); IN USE counts allocated ordinals (cooling ones too);
//! RESERVED counts addresses covered by IPReservations; FREE counts
//! addresses that are neither. IN USE and RESERVED may overlap (an address
//! allocated before it was reserved). Counts are `u128`: IPv6 pools are big.

use ipnet::IpNet;

use crate::block::Block;
use crate::cidr::{address_at, net_size};
use crate::pools::Pool;
use crate::reservations::Reservations;

/// Utilisation of one CIDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub cidr: IpNet,
    pub total: u128,
    pub in_use: u128,
    pub reserved: u128,
    pub free: u128,
}

/// A pool (or, for blocks outside every pool, `pool: None`) and its blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    pub pool: Option<Usage>,
    pub pool_name: Option<String>,
    pub blocks: Vec<Usage>,
}

fn block_usage(block: &Block, reservations: &Reservations) -> (Usage, u128) {
    let cidr = block.cidr();
    let total = u128::from(block.size());
    let in_use = u128::from(block.in_use_count());
    let reserved = reservations.count_in(&cidr);
    let reserved_and_used = if reservations.is_empty() {
        0
    } else {
        block
            .occupied()
            .filter(|(o, _)| reservations.contains(address_at(&cidr, *o)))
            .count() as u128
    };
    let free = total.saturating_sub(in_use + reserved - reserved_and_used);
    (
        Usage {
            cidr,
            total,
            in_use,
            reserved,
            free,
        },
        reserved_and_used,
    )
}

/// Utilisation of every pool (in the given order) with its blocks sorted by
/// address, followed by one group of orphan blocks if there are any.
pub fn utilisation(
    pools: &[Pool],
    blocks: &[Block],
    reservations: &Reservations,
) -> Vec<PoolUsage> {
    let mut sorted: Vec<&Block> = blocks.iter().collect();
    sorted.sort_by_key(|b| (b.cidr().addr(), b.cidr().prefix_len()));
    let mut claimed = vec![false; sorted.len()];
    let mut out = Vec::new();
    for pool in pools {
        let mut rows = Vec::new();
        let (mut in_use, mut overlap) = (0u128, 0u128);
        for (i, block) in sorted.iter().enumerate() {
            if claimed[i] || !pool.cidr.contains(&block.cidr()) {
                continue;
            }
            claimed[i] = true;
            let (usage, both) = block_usage(block, reservations);
            in_use += usage.in_use;
            overlap += both;
            rows.push(usage);
        }
        let total = net_size(&pool.cidr);
        let reserved = reservations.count_in(&pool.cidr);
        let free = total.saturating_sub(in_use.saturating_add(reserved) - overlap);
        out.push(PoolUsage {
            pool: Some(Usage {
                cidr: pool.cidr,
                total,
                in_use,
                reserved,
                free,
            }),
            pool_name: Some(pool.name.clone()),
            blocks: rows,
        });
    }
    let orphans: Vec<Usage> = sorted
        .iter()
        .zip(&claimed)
        .filter(|(_, c)| !**c)
        .map(|(b, _)| block_usage(b, reservations).0)
        .collect();
    if !orphans.is_empty() {
        out.push(PoolUsage {
            pool: None,
            pool_name: None,
            blocks: orphans,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::UNIX_EPOCH;

    use tortie_model::ippool::IPPoolSpec;
    use tortie_model::{ObjectMeta, Resource};

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    fn pool(cidr: &str, block: i64) -> Pool {
        let mut r = Resource::new(
            ObjectMeta::named("p"),
            IPPoolSpec {
                cidr: cidr.to_string(),
                block_size: Some(block),
                ..IPPoolSpec::default()
            },
        );
        r.apply_defaults();
        Pool::from_resource(&r).expect("pool")
    }

    #[test]
    fn pool_and_block_counts() {
        let reservations = Reservations::from_nets([net("10.0.0.0/30"), net("10.0.1.0/24")]);
        let mut b = Block::new(net("10.0.0.0/26"), None, UNIX_EPOCH, false);
        b.assign_ordinal(0, Some("h"), &BTreeMap::new())
            .expect("free");
        b.assign(4, Some("h"), &BTreeMap::new(), &reservations);
        let orphan = Block::new(net("192.168.0.0/26"), None, UNIX_EPOCH, false);
        let usage = utilisation(&[pool("10.0.0.0/16", 26)], &[orphan, b], &reservations);
        assert_eq!(usage.len(), 2);
        let p = usage[0].pool.as_ref().expect("pool row");
        assert_eq!((p.total, p.in_use, p.reserved), (65536, 5, 260));
        assert_eq!(
            p.free,
            65536 - 5 - 260 + 1,
            "ordinal 0 is both used and reserved"
        );
        let blk = &usage[0].blocks[0];
        assert_eq!(
            (blk.total, blk.in_use, blk.reserved, blk.free),
            (64, 5, 4, 56)
        );
        assert!(usage[1].pool.is_none());
        assert_eq!(usage[1].blocks[0].cidr, net("192.168.0.0/26"));
        let v6 = utilisation(&[pool("fd00::/48", 122)], &[], &Reservations::none());
        assert_eq!(v6[0].pool.as_ref().map(|u| u.total), Some(1u128 << 80));
    }
}
