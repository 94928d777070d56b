//! IP reservations (ipam.md §4): the addresses automatic assignment must
//! never hand out, as merged integer intervals per family.
//!
//! Hard cases: reservations overlap and touch, so they are merged before
//! any question is asked; "is this block wholly reserved" must consider the
//! union of several reservations, not each one alone; and a walk over a
//! huge IPv6 pool must be able to jump past a large reserved range in one
//! step (`covering_end`) instead of visiting each block inside it.

use std::net::IpAddr;

use ipnet::IpNet;
use tortie_model::Resource;
use tortie_model::ippool::IPReservationSpec;

use crate::cidr::{IpVersion, addr_to_u128, net_range, parse_ip_or_cidr};

/// Merged reserved ranges of both families.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reservations {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl Reservations {
    /// No reservations.
    pub fn none() -> Reservations {
        Reservations::default()
    }

    /// Reservations from networks (any order, overlaps allowed).
    pub fn from_nets<I: IntoIterator<Item = IpNet>>(nets: I) -> Reservations {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            let range = net_range(&net);
            match IpVersion::of_net(&net) {
                IpVersion::V4 => v4.push(range),
                IpVersion::V6 => v6.push(range),
            }
        }
        Reservations {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Reservations from `IPReservation` resources. Entries that do not
    /// parse are returned as warnings (validation normally prevents them).
    pub fn from_resources(resources: &[Resource]) -> (Reservations, Vec<String>) {
        let mut nets = Vec::new();
        let mut warnings = Vec::new();
        for r in resources {
            let Some(spec) = r.spec::<IPReservationSpec>() else {
                continue;
            };
            for text in &spec.reserved_cidrs {
                match parse_ip_or_cidr(text) {
                    Some(net) => nets.push(net),
                    None => warnings.push(format!(
                        "IPReservation {}: cannot parse reserved CIDR {text:?}",
                        r.metadata.name
                    )),
                }
            }
        }
        (Reservations::from_nets(nets), warnings)
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn ranges(&self, version: IpVersion) -> &[(u128, u128)] {
        match version {
            IpVersion::V4 => &self.v4,
            IpVersion::V6 => &self.v6,
        }
    }

    /// The merged range containing `n`, if any.
    fn range_containing(&self, version: IpVersion, n: u128) -> Option<(u128, u128)> {
        let ranges = self.ranges(version);
        let after = ranges.partition_point(|(start, _)| *start <= n);
        let (start, end) = *ranges.get(after.checked_sub(1)?)?;
        (start <= n && n <= end).then_some((start, end))
    }

    /// Whether `ip` is reserved.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_containing(IpVersion::of_addr(&ip), addr_to_u128(ip))
            .is_some()
    }

    /// How many addresses of `net` are reserved.
    pub fn count_in(&self, net: &IpNet) -> u128 {
        let (lo, hi) = net_range(net);
        self.ranges(IpVersion::of_net(net))
            .iter()
            .filter(|(start, end)| *end >= lo && *start <= hi)
            .map(|(start, end)| {
                // Saturating: only `::/0` wholly reserved could overflow.
                ((*end).min(hi) - (*start).max(lo)).saturating_add(1)
            })
            .fold(0u128, u128::saturating_add)
    }

    /// Whether every address of `net` is reserved.
    pub fn covers(&self, net: &IpNet) -> bool {
        self.covering_end(net).is_some()
    }

    /// If `net` is wholly reserved: the last address (as an integer) of the
    /// merged reserved range that covers it, so a walk can skip past it.
    pub fn covering_end(&self, net: &IpNet) -> Option<u128> {
        let (lo, hi) = net_range(net);
        let (_, end) = self.range_containing(IpVersion::of_net(net), lo)?;
        (end >= hi).then_some(end)
    }
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some((_, last_end)) if start <= last_end.saturating_add(1) => {
                *last_end = (*last_end).max(end);
            }
            _ => merged.push((start, end)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Reservations {
        Reservations::from_nets(list.iter().map(|s| s.parse().expect("test CIDR")))
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn union_of_reservations_can_cover_a_block() {
        let r = nets(&["10.0.0.0/27", "10.0.0.32/27", "fd00::/127"]);
        assert!(r.covers(&net("10.0.0.0/26")), "two halves cover the block");
        assert!(!r.covers(&net("10.0.0.0/25")));
        assert_eq!(r.count_in(&net("10.0.0.0/25")), 64);
        assert_eq!(r.count_in(&net("10.0.0.48/28")), 16);
        assert!(r.contains("10.0.0.63".parse().expect("ip")));
        assert!(!r.contains("10.0.0.64".parse().expect("ip")));
        assert!(r.contains("fd00::1".parse().expect("ip")));
        assert!(!r.contains("fd00::2".parse().expect("ip")));
        assert!(
            !r.contains("0.0.0.0".parse().expect("ip")),
            "families are separate"
        );
        assert_eq!(
            r.covering_end(&net("10.0.0.0/28")),
            Some(u128::from(u32::from(
                "10.0.0.63".parse::<std::net::Ipv4Addr>().expect("ip")
            )))
        );
    }

    #[test]
    fn overlapping_and_nested_ranges_merge() {
        let r = nets(&["10.0.0.0/24", "10.0.0.16/28", "10.0.1.0/32", "10.0.3.0/24"]);
        assert_eq!(r.count_in(&net("10.0.0.0/22")), 256 + 1 + 256);
        assert!(!r.covers(&net("10.0.0.0/23")));
        assert!(Reservations::none().is_empty());
        assert_eq!(Reservations::none().count_in(&net("10.0.0.0/8")), 0);
    }
}
