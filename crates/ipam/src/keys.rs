//! The IPAM key layout (ipam.md §2): blocks, affinities, handles, the host
//! marker and the config singleton, all under `/calico/ipam/v2/`.
//!
//! Hard cases: the host marker `/calico/ipam/v2/host/<host>` is a prefix of
//! that host's affinity keys *and* of other hosts' markers (`node-1` vs
//! `node-10`), so host listings always use the prefix with a trailing `/`;
//! parsing rejects anything that does not round-trip, so stray keys are
//! ignored rather than misread.

use ipnet::IpNet;

use crate::affinity::AffinityOwner;
use crate::cidr::{IpVersion, dashed, parse_dashed};

pub const IPAM_PREFIX: &str = "/calico/ipam/v2/";
pub const BLOCKS_PREFIX: &str = "/calico/ipam/v2/assignment/";
pub const HOST_PREFIX: &str = "/calico/ipam/v2/host/";
pub const VIRTUAL_PREFIX: &str = "/calico/ipam/v2/virtual/";
pub const HANDLES_PREFIX: &str = "/calico/ipam/v2/handle/";
pub const CONFIG_KEY: &str = "/calico/ipam/v2/config";

/// `/calico/ipam/v2/assignment/ipv4/block/` (or ipv6).
pub fn blocks_prefix(version: IpVersion) -> String {
    format!("{BLOCKS_PREFIX}{}/block/", version.key_segment())
}

/// `/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26`.
pub fn block_key(cidr: &IpNet) -> String {
    format!("{}{}", blocks_prefix(IpVersion::of_net(cidr)), dashed(cidr))
}

/// The block CIDR a block key names.
pub fn parse_block_key(key: &str) -> Option<IpNet> {
    let rest = key.strip_prefix(BLOCKS_PREFIX)?;
    let (family, rest) = rest.split_once('/')?;
    let dashed_cidr = rest.strip_prefix("block/")?;
    let cidr = parse_dashed(dashed_cidr)?;
    (IpVersion::of_net(&cidr).key_segment() == family).then_some(cidr)
}

fn owner_root(owner: &AffinityOwner) -> String {
    format!("{IPAM_PREFIX}{}/{}/", owner.key_kind(), owner.name())
}

/// Every affinity of an owner (both families): `/calico/ipam/v2/host/<h>/`.
pub fn owner_affinities_prefix(owner: &AffinityOwner) -> String {
    owner_root(owner)
}

/// One owner's affinities of one family.
pub fn owner_family_prefix(owner: &AffinityOwner, version: IpVersion) -> String {
    format!("{}{}/block/", owner_root(owner), version.key_segment())
}

/// `/calico/ipam/v2/host/<host>/ipv4/block/10.0.0.0-26`.
pub fn affinity_key(owner: &AffinityOwner, cidr: &IpNet) -> String {
    format!(
        "{}{}",
        owner_family_prefix(owner, IpVersion::of_net(cidr)),
        dashed(cidr)
    )
}

/// The owner and block an affinity key names.
pub fn parse_affinity_key(key: &str) -> Option<(AffinityOwner, IpNet)> {
    let (make, rest): (fn(String) -> AffinityOwner, &str) =
        if let Some(rest) = key.strip_prefix(HOST_PREFIX) {
            (AffinityOwner::Host, rest)
        } else {
            (AffinityOwner::Virtual, key.strip_prefix(VIRTUAL_PREFIX)?)
        };
    let mut parts = rest.split('/');
    let name = parts.next()?;
    let family = parts.next()?;
    if parts.next()? != "block" {
        return None;
    }
    let cidr = parse_dashed(parts.next()?)?;
    if name.is_empty() || parts.next().is_some() {
        return None;
    }
    (IpVersion::of_net(&cidr).key_segment() == family).then(|| (make(name.to_string()), cidr))
}

/// `/calico/ipam/v2/host/<host>`: the host marker (an empty JSON object).
pub fn host_marker_key(host: &str) -> String {
    format!("{HOST_PREFIX}{host}")
}

/// `/calico/ipam/v2/handle/<id>`.
pub fn handle_key(id: &str) -> String {
    format!("{HANDLES_PREFIX}{id}")
}

pub fn parse_handle_key(key: &str) -> Option<&str> {
    key.strip_prefix(HANDLES_PREFIX).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn keys_follow_the_spec_layout() {
        assert_eq!(
            block_key(&net("10.0.0.0/26")),
            "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26"
        );
        assert_eq!(
            block_key(&net("fd00::/122")),
            "/calico/ipam/v2/assignment/ipv6/block/fd00::-122"
        );
        let h = AffinityOwner::host("node-1");
        assert_eq!(
            affinity_key(&h, &net("10.0.0.0/26")),
            "/calico/ipam/v2/host/node-1/ipv4/block/10.0.0.0-26"
        );
        let lb = AffinityOwner::Virtual("load-balancer".into());
        assert_eq!(
            affinity_key(&lb, &net("fd00::/122")),
            "/calico/ipam/v2/virtual/load-balancer/ipv6/block/fd00::-122"
        );
        assert_eq!(host_marker_key("node-1"), "/calico/ipam/v2/host/node-1");
        assert_eq!(
            handle_key("k8s-pod-network.abc"),
            "/calico/ipam/v2/handle/k8s-pod-network.abc"
        );
        assert_eq!(
            owner_family_prefix(&h, IpVersion::V6),
            "/calico/ipam/v2/host/node-1/ipv6/block/"
        );
    }

    #[test]
    fn parsing_round_trips_and_rejects_strays() {
        for cidr in ["10.0.0.0/26", "fd00::40/122"] {
            let c = net(cidr);
            assert_eq!(parse_block_key(&block_key(&c)), Some(c));
            for owner in [
                AffinityOwner::host("n-1"),
                AffinityOwner::Virtual("lb".into()),
            ] {
                assert_eq!(
                    parse_affinity_key(&affinity_key(&owner, &c)),
                    Some((owner, c))
                );
            }
        }
        assert_eq!(
            parse_affinity_key("/calico/ipam/v2/host/node-1"),
            None,
            "marker"
        );
        assert_eq!(
            parse_affinity_key("/calico/ipam/v2/host/n/ipv6/block/10.0.0.0-26"),
            None
        );
        assert_eq!(
            parse_block_key("/calico/ipam/v2/assignment/ipv4/block/10.0.0.1-26"),
            None
        );
        assert_eq!(
            parse_block_key("/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26/x"),
            None
        );
        assert_eq!(parse_handle_key("/calico/ipam/v2/handle/h"), Some("h"));
        assert_eq!(parse_handle_key("/calico/ipam/v2/handle/"), None);
    }
}
