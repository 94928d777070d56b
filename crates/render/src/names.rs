//! Names of everything tortie puts in its table: the table itself, the
//! named sets and verdict maps, the base chains (`<layer>-<HOOK>`, as
//! Calico's nftables mode names them, dataplane.md §5.3) and the regular
//! chains (policy.md §6 without the `cali-` prefix: the table is ours).
//!
//! Hard cases: nftables allows 255 bytes for a chain name, and policy
//! and host endpoint names can be longer than that once prefixed; such a
//! name keeps as much of its readable start as fits and ends with `_`
//! and a base64url SHA-256 of the whole name, so distinct names stay
//! distinct. Rule comments are cut to 127 bytes on a character boundary.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use tortie_calc::PolicyId;
use tortie_calc::policy::Direction;
use tortie_dataplane::nft::model::COMMENT_MAX;
use tortie_dataplane::nft::rules::Iface;
use tortie_dataplane::nft::{Family, TableId};

/// Tortie's table: `inet tortie`.
pub fn table() -> TableId {
    TableId::new(Family::Inet, "tortie")
}

/// Longest chain name nftables accepts (`NFT_NAME_MAXLEN` less the NUL).
pub const CHAIN_NAME_MAX: usize = 255;

// ---- sets and maps ----
/// Selector membership, `mark . ipv4_addr` intervals: calc selector sets
/// holding a CIDR (network sets) and rule net lists, one id each.
pub const SEL4: &str = "sel4";
pub const SEL6: &str = "sel6";
/// Selector membership, `mark . ipv4_addr` exact (a hash): calc selector
/// sets whose members are all single addresses.
pub const SEL4_HOSTS: &str = "sel4h";
pub const SEL6_HOSTS: &str = "sel6h";
/// Named ports, `mark . ipv4_addr . inet_proto . inet_service` (exact).
pub const NAMED_PORTS4: &str = "namedports4";
pub const NAMED_PORTS6: &str = "namedports6";
/// Rule port lists with more than one entry, `mark . inet_service` intervals.
pub const PORTS: &str = "ports";
/// Workload interface name → `goto` its chain group's chain (`groups`).
pub const TO_WL: &str = "to-wl";
pub const FROM_WL: &str = "from-wl";
/// Node addresses of the VXLAN peers (other nodes' VTEPs), per family.
pub const VXLAN_PEERS4: &str = "vxlan-peers4";
pub const VXLAN_PEERS6: &str = "vxlan-peers6";
/// NAT outgoing: pools to masquerade from, and all pools (not masqueraded to).
pub const NAT_MASQ4: &str = "nat-masq4";
pub const NAT_MASQ6: &str = "nat-masq6";
pub const NAT_POOLS4: &str = "nat-pools4";
pub const NAT_POOLS6: &str = "nat-pools6";

// ---- base chains ----
pub const FILTER_INPUT: &str = "filter-INPUT";
pub const FILTER_FORWARD: &str = "filter-FORWARD";
pub const FILTER_OUTPUT: &str = "filter-OUTPUT";
pub const MANGLE_PREROUTING: &str = "mangle-PREROUTING";
pub const RAW_PREROUTING: &str = "raw-PREROUTING";
pub const RAW_OUTPUT: &str = "raw-OUTPUT";
pub const NAT_POSTROUTING: &str = "nat-POSTROUTING";

// ---- fixed regular chains ----
pub const FROM_WL_DISPATCH: &str = "from-wl-dispatch";
pub const TO_WL_DISPATCH: &str = "to-wl-dispatch";
pub const WL_TO_HOST: &str = "wl-to-host";
pub const HOST_TO_WL: &str = "host-to-wl";
pub const FAILSAFE_IN: &str = "failsafe-in";
pub const FAILSAFE_OUT: &str = "failsafe-out";
pub const NAT_OUTGOING: &str = "nat-outgoing";

/// The per-endpoint chain classes of host endpoints, each with its own
/// verdict map and dispatch chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HepClass {
    /// Traffic to the host through the interface (normal policy).
    FromHost,
    /// Traffic from the host out of the interface.
    ToHost,
    /// Forwarded traffic entering through the interface (applyOnForward).
    FromForward,
    /// Forwarded traffic leaving through the interface.
    ToForward,
    /// preDNAT policy (ingress only).
    FromPreDnat,
    /// doNotTrack policy, ingress and egress.
    FromRaw,
    ToRaw,
}

impl HepClass {
    pub const ALL: [HepClass; 7] = [
        HepClass::FromHost,
        HepClass::ToHost,
        HepClass::FromForward,
        HepClass::ToForward,
        HepClass::FromPreDnat,
        HepClass::FromRaw,
        HepClass::ToRaw,
    ];

    /// Chain name prefix (policy.md §6: `fh-` = from host endpoint, ...).
    fn prefix(self) -> &'static str {
        match self {
            HepClass::FromHost => "fh-",
            HepClass::ToHost => "th-",
            HepClass::FromForward => "fhfw-",
            HepClass::ToForward => "thfw-",
            HepClass::FromPreDnat => "fhpd-",
            HepClass::FromRaw => "fhr-",
            HepClass::ToRaw => "thr-",
        }
    }

    /// The verdict map from interface name to this class's chains.
    pub fn map(self) -> &'static str {
        match self {
            HepClass::FromHost => "from-hep",
            HepClass::ToHost => "to-hep",
            HepClass::FromForward => "from-hep-fwd",
            HepClass::ToForward => "to-hep-fwd",
            HepClass::FromPreDnat => "from-hep-prednat",
            HepClass::FromRaw => "from-hep-raw",
            HepClass::ToRaw => "to-hep-raw",
        }
    }

    /// The chain that looks the interface up in [`HepClass::map`].
    pub fn dispatch_chain(self) -> &'static str {
        match self {
            HepClass::FromHost => "from-hep-dispatch",
            HepClass::ToHost => "to-hep-dispatch",
            HepClass::FromForward => "from-hep-fwd-dispatch",
            HepClass::ToForward => "to-hep-fwd-dispatch",
            HepClass::FromPreDnat => "from-hep-prednat-dispatch",
            HepClass::FromRaw => "from-hep-raw-dispatch",
            HepClass::ToRaw => "to-hep-raw-dispatch",
        }
    }

    /// Which interface of the packet names the endpoint.
    pub fn iface(self) -> Iface {
        match self {
            HepClass::FromHost
            | HepClass::FromForward
            | HepClass::FromPreDnat
            | HepClass::FromRaw => Iface::In,
            HepClass::ToHost | HepClass::ToForward | HepClass::ToRaw => Iface::Out,
        }
    }

    /// The policy direction evaluated: ingress for traffic entering.
    pub fn direction(self) -> Direction {
        match self.iface() {
            Iface::In => Direction::Ingress,
            Iface::Out => Direction::Egress,
        }
    }

    /// The chain of host endpoint `name` in this class.
    pub fn chain(self, name: &str) -> String {
        chain(self.prefix(), name)
    }
}

/// `prefix` + `suffix`, shortened with a hash if over [`CHAIN_NAME_MAX`].
pub fn chain(prefix: &str, suffix: &str) -> String {
    let full = format!("{prefix}{suffix}");
    if full.len() <= CHAIN_NAME_MAX {
        return full;
    }
    let mut hash = String::from("_");
    URL_SAFE_NO_PAD.encode_string(Sha256::digest(full.as_bytes()), &mut hash);
    let mut keep = CHAIN_NAME_MAX - hash.len();
    while !full.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{hash}", &full[..keep])
}

/// A policy's rule chain for one direction: `pi-<id>` / `po-<id>`.
pub fn policy_chain(id: &PolicyId, dir: Direction) -> String {
    let prefix = match dir {
        Direction::Ingress => "pi-",
        Direction::Egress => "po-",
    };
    chain(prefix, &id.to_string())
}

/// A profile's rule chain: `pri-<name>` / `pro-<name>`.
pub fn profile_chain(name: &str, dir: Direction) -> String {
    let prefix = match dir {
        Direction::Ingress => "pri-",
        Direction::Egress => "pro-",
    };
    chain(prefix, name)
}

/// The chain shared by the workloads of group `id` (`groups`): `tw-g<id>`
/// for traffic to them (ingress policy), `fw-g<id>` from them (egress).
pub fn workload_group(dir: Direction, id: u32) -> String {
    match dir {
        Direction::Ingress => format!("tw-g{id}"),
        Direction::Egress => format!("fw-g{id}"),
    }
}

/// A rule comment cut to what nftables keeps.
pub fn comment(text: &str) -> String {
    if text.len() <= COMMENT_MAX {
        return text.to_string();
    }
    let mut keep = COMMENT_MAX;
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    text[..keep].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_calc::PolicyKind;

    #[test]
    fn short_names_are_kept_and_long_ones_hashed_within_the_limit() {
        let id = PolicyId::new(PolicyKind::NetworkPolicy, "blue", "api-in");
        assert_eq!(policy_chain(&id, Direction::Ingress), "pi-np/blue/api-in");
        let long_a = "a".repeat(300);
        let mut long_b = long_a.clone();
        long_b.push('b');
        let a = HepClass::ToForward.chain(&long_a);
        let b = HepClass::ToForward.chain(&long_b);
        assert_eq!(a.len(), CHAIN_NAME_MAX);
        assert!(a.starts_with("thfw-aaa"));
        assert_ne!(a, b, "the hash keeps distinct names distinct");
        let wide = "é".repeat(200);
        assert!(chain("pi-", &wide).len() <= CHAIN_NAME_MAX);
    }

    #[test]
    fn comments_are_cut_on_a_character_boundary() {
        let c = comment(&"é".repeat(100));
        assert!(c.len() <= COMMENT_MAX);
        assert!(c.chars().all(|ch| ch == 'é'));
    }
}
