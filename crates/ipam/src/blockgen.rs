//! The per-host block-CIDR generator (ipam.md §3.5): every block of a pool
//! exactly once, starting at a pseudo-random index derived from the host
//! name and wrapping around, so retries by one host revisit the same blocks
//! in the same order while different hosts spread over the pool.
//!
//! Seed: the 32-bit FNV-1 hash of the host name (the current time when the
//! block is a single address, /32 or /128). Start: uniform in
//! `[0, numBlocks)` from a SplitMix64 generator seeded with it. Bit-exact
//! agreement with Calico's PRNG is not required by the spec.
//!
//! Hard cases: IPv6 pools hold up to 2^108 blocks, so positions are `u128`
//! and nothing is materialised; a walk can jump over a large wholly reserved
//! range in one step; and the order of *existing* blocks along the walk can
//! be computed directly (`position_of`), which borrowing uses.

use ipnet::IpNet;

use crate::cidr::{IpVersion, addr_to_u128, u128_to_addr};
use crate::reservations::Reservations;

const FNV_OFFSET_BASIS: u32 = 2_166_136_261;
const FNV_PRIME: u32 = 16_777_619;

/// FNV-1 (multiply, then xor) over the bytes.
pub fn fnv1_32(data: &[u8]) -> u32 {
    data.iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        hash.wrapping_mul(FNV_PRIME) ^ u32::from(*byte)
    })
}

/// SplitMix64: tiny, well-distributed, deterministic.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The seed a host walks a pool with; `now_nanos` is used for single-address
/// blocks, where spreading by host name buys nothing.
pub fn host_seed(host: &str, block_prefix: u8, version: IpVersion, now_nanos: u128) -> u32 {
    if block_prefix == version.bits() {
        // Truncation is fine: any 32 bits of the clock will do.
        now_nanos as u32
    } else {
        fnv1_32(host.as_bytes())
    }
}

/// One walk over the blocks of a pool.
#[derive(Clone, Debug)]
pub struct BlockWalk {
    version: IpVersion,
    block_prefix: u8,
    base: u128,
    /// Addresses per block, as a shift.
    block_shift: u32,
    /// Number of blocks in the pool.
    count: u128,
    /// Index the walk starts at.
    start: u128,
    /// Blocks visited (or skipped) so far: position in the walk.
    step: u128,
}

impl BlockWalk {
    /// A walk over `pool`'s blocks of prefix `block_prefix` seeded with
    /// `seed`; `None` if a block would be larger than the pool.
    pub fn new(pool: &IpNet, block_prefix: u8, seed: u32) -> Option<BlockWalk> {
        let version = IpVersion::of_net(pool);
        if block_prefix < pool.prefix_len() || block_prefix > version.bits() {
            return None;
        }
        let block_shift = u32::from(version.bits() - block_prefix);
        let count_shift = u32::from(block_prefix - pool.prefix_len());
        let count = 1u128.checked_shl(count_shift).unwrap_or(u128::MAX);
        let mut rng = SplitMix64(u64::from(seed));
        let random = (u128::from(rng.next()) << 64) | u128::from(rng.next());
        Some(BlockWalk {
            version,
            block_prefix,
            base: addr_to_u128(pool.network()),
            block_shift,
            count,
            start: random % count,
            step: 0,
        })
    }

    /// The walk a host uses for a pool (see [`host_seed`]).
    pub fn for_host(
        pool: &IpNet,
        block_prefix: u8,
        host: &str,
        now_nanos: u128,
    ) -> Option<BlockWalk> {
        let seed = host_seed(host, block_prefix, IpVersion::of_net(pool), now_nanos);
        BlockWalk::new(pool, block_prefix, seed)
    }

    /// Number of blocks in the pool.
    pub fn block_count(&self) -> u128 {
        self.count
    }

    /// Index of the first block of the walk.
    pub fn start_index(&self) -> u128 {
        self.start
    }

    fn index_at(&self, step: u128) -> u128 {
        let first_leg = self.count - self.start;
        if step < first_leg {
            self.start + step
        } else {
            step - first_leg
        }
    }

    fn block_at(&self, index: u128) -> IpNet {
        let addr = u128_to_addr(self.version, self.base + (index << self.block_shift));
        IpNet::new(addr, self.block_prefix).expect("a block prefix is valid for its family")
    }

    /// Index of `block` in the pool, if it is one of this pool's blocks.
    pub fn index_of(&self, block: &IpNet) -> Option<u128> {
        if IpVersion::of_net(block) != self.version || block.prefix_len() != self.block_prefix {
            return None;
        }
        let offset = addr_to_u128(block.network()).checked_sub(self.base)?;
        let index = offset >> self.block_shift;
        (index < self.count).then_some(index)
    }

    /// Where `block` comes in the walk (0 = first); lets callers order
    /// existing blocks the way the walk would visit them.
    pub fn position_of(&self, block: &IpNet) -> Option<u128> {
        let index = self.index_of(block)?;
        Some(if index >= self.start {
            index - self.start
        } else {
            self.count - self.start + index
        })
    }

    /// Moves the walk so that the next block returned has an index greater
    /// than `index` (or ends the current leg of the walk).
    fn skip_past_index(&mut self, index: u128) {
        let first_leg = self.count - self.start;
        let next = index.saturating_add(1);
        if self.step < first_leg {
            // In the first leg: indices start..count.
            self.step = (next.min(self.count) - self.start).max(self.step + 1);
        } else {
            // In the second leg: indices 0..start.
            self.step = (first_leg + next.min(self.start)).max(self.step + 1);
        }
    }

    /// The next block that is not wholly reserved, or `None` when every
    /// block has been visited. A covered run of blocks is skipped in one
    /// step.
    pub fn next_unreserved(&mut self, reservations: &Reservations) -> Option<IpNet> {
        while self.step < self.count {
            let index = self.index_at(self.step);
            let block = self.block_at(index);
            match reservations.covering_end(&block) {
                None => {
                    self.step += 1;
                    return Some(block);
                }
                Some(end) => {
                    // Every block that ends at or before `end` is covered.
                    let offset = end - self.base;
                    let holding_end = offset >> self.block_shift;
                    let block_mask = (1u128 << self.block_shift) - 1;
                    let last_covered = if offset & block_mask == block_mask {
                        holding_end
                    } else {
                        holding_end - 1
                    };
                    self.skip_past_index(last_covered.min(self.count - 1));
                }
            }
        }
        None
    }
}

impl Iterator for BlockWalk {
    type Item = IpNet;

    fn next(&mut self) -> Option<IpNet> {
        if self.step >= self.count {
            return None;
        }
        let block = self.block_at(self.index_at(self.step));
        self.step += 1;
        Some(block)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn fnv1_matches_reference_vectors() {
        // FNV-1 32-bit reference values (not FNV-1a).
        assert_eq!(fnv1_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1_32(b"a"), 0x050c_5d7e);
        assert_eq!(fnv1_32(b"foobar"), 0x31f0_b262);
    }

    #[test]
    fn walk_is_deterministic_per_host_and_differs_between_hosts() {
        let pool = net("10.0.0.0/16");
        let a: Vec<IpNet> = BlockWalk::for_host(&pool, 26, "node-1", 0)
            .expect("walk")
            .take(5)
            .collect();
        let again: Vec<IpNet> = BlockWalk::for_host(&pool, 26, "node-1", 99)
            .expect("walk")
            .take(5)
            .collect();
        let b: Vec<IpNet> = BlockWalk::for_host(&pool, 26, "node-2", 0)
            .expect("walk")
            .take(5)
            .collect();
        assert_eq!(a, again);
        assert_ne!(a[0], b[0]);
        assert!(
            BlockWalk::new(&pool, 15, 1).is_none(),
            "block larger than pool"
        );
    }

    #[test]
    fn reserved_runs_are_skipped_in_one_step() {
        // A /64 pool of /122 blocks: 2^58 blocks, most of them reserved.
        let pool = net("fd00::/64");
        let reservations = Reservations::from_nets([net("fd00::/65")]);
        let mut walk = BlockWalk::new(&pool, 122, 7).expect("walk");
        for _ in 0..4 {
            let block = walk.next_unreserved(&reservations).expect("a free block");
            assert!(!net("fd00::/65").contains(&block), "{block}");
        }
        let whole = Reservations::from_nets([pool]);
        let mut walk = BlockWalk::new(&pool, 122, 7).expect("walk");
        assert_eq!(walk.next_unreserved(&whole), None);
    }

    proptest! {
        #[test]
        fn every_block_exactly_once(prefix in 20u8..=28, extra in 0u8..=6, seed in any::<u32>()) {
            let pool = IpNet::new("10.0.0.0".parse().expect("ip"), prefix).expect("pool");
            let block_prefix = (prefix + extra).min(32);
            let walk = BlockWalk::new(&pool, block_prefix, seed).expect("walk");
            let expected = walk.block_count();
            let positions = walk.clone();
            let blocks: Vec<IpNet> = walk.collect();
            prop_assert_eq!(blocks.len() as u128, expected);
            let unique: BTreeSet<IpNet> = blocks.iter().copied().collect();
            prop_assert_eq!(unique.len(), blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                prop_assert!(pool.contains(b));
                prop_assert_eq!(positions.position_of(b), Some(i as u128));
            }
        }

        #[test]
        fn skipping_reserved_blocks_visits_exactly_the_unreserved(
            seed in any::<u32>(),
            reserved in proptest::collection::vec((0u32..256, 24u8..=30), 0..6),
        ) {
            let pool = net("10.0.0.0/22");
            let nets: Vec<IpNet> = reserved
                .iter()
                .map(|(offset, p)| IpNet::new(
                    std::net::IpAddr::V4((u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + offset * 4).into()),
                    *p,
                ).expect("net").trunc())
                .collect();
            let reservations = Reservations::from_nets(nets);
            let mut walk = BlockWalk::new(&pool, 26, seed).expect("walk");
            let mut seen = Vec::new();
            while let Some(b) = walk.next_unreserved(&reservations) {
                seen.push(b);
            }
            let expected: Vec<IpNet> = BlockWalk::new(&pool, 26, seed)
                .expect("walk")
                .filter(|b| !reservations.covers(b))
                .collect();
            prop_assert_eq!(seen, expected);
        }
    }
}
