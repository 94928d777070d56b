//! Choosing pools (ipam.md §1.1, §3.3): which IP pools a request may use,
//! in order, as a pure function of the stored pools and the request.
//!
//! Hard cases: explicit pools (names or CIDRs) bypass the node and namespace
//! selectors but not `allowedUses`; `Manual` pools are only used when named;
//! a pool whose status says `Allocatable=False` counts as disabled; a pool
//! whose selector does not parse selects nothing (and says so in the log).

use std::collections::BTreeMap;

use ipnet::IpNet;
use tortie_model::Resource;
use tortie_model::ippool::{AllowedUse, AssignmentMode, IPPoolSpec};
use tortie_selector::Selector;

use crate::cidr::{IpVersion, parse_cidr};
use crate::error::IpamError;

/// What IPAM needs of one IPPool.
#[derive(Clone, Debug)]
pub struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub block_prefix: u8,
    /// `None` when the stored selector does not parse: selects nothing.
    pub node_selector: Option<Selector>,
    /// Empty text = no namespace restriction.
    pub namespace_selector: Option<Selector>,
    pub namespace_selector_text: String,
    pub allowed_uses: Vec<AllowedUse>,
    pub manual: bool,
    pub enabled: bool,
}

fn allocatable_false(status: Option<&serde_json::Value>) -> bool {
    let conditions = status
        .and_then(|s| s.get("conditions"))
        .and_then(|c| c.as_array());
    conditions.is_some_and(|list| {
        list.iter().any(|c| {
            c.get("type").and_then(|t| t.as_str()) == Some("Allocatable")
                && c.get("status").and_then(|s| s.as_str()) == Some("False")
        })
    })
}

fn parse_selector(text: &str, pool: &str, which: &str) -> Option<Selector> {
    let text = if text.trim().is_empty() {
        "all()"
    } else {
        text
    };
    match Selector::parse(text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(pool, which, selector = text, error = %e, "pool selector does not parse; the pool selects nothing");
            None
        }
    }
}

impl Pool {
    /// The view of an IPPool resource; `None` for other kinds or an
    /// unusable CIDR / block size.
    pub fn from_resource(r: &Resource) -> Option<Pool> {
        let spec = r.spec::<IPPoolSpec>()?;
        let cidr = parse_cidr(&spec.cidr)?;
        let block_prefix = spec.effective_block_size()?;
        if block_prefix < cidr.prefix_len() || block_prefix > cidr.max_prefix_len() {
            return None;
        }
        let name = r.metadata.name.clone();
        Some(Pool {
            node_selector: parse_selector(&spec.node_selector, &name, "nodeSelector"),
            namespace_selector: parse_selector(
                &spec.namespace_selector,
                &name,
                "namespaceSelector",
            ),
            namespace_selector_text: spec.namespace_selector.clone(),
            allowed_uses: spec.effective_allowed_uses(),
            manual: spec.assignment_mode == Some(AssignmentMode::Manual),
            enabled: !spec.disabled && !allocatable_false(r.status.as_ref()),
            block_prefix,
            cidr,
            name,
        })
    }

    pub fn version(&self) -> IpVersion {
        IpVersion::of_net(&self.cidr)
    }

    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector
            .as_ref()
            .is_some_and(|s| s.matches(labels))
    }

    pub fn selects_namespace(&self, labels: &BTreeMap<String, String>) -> bool {
        self.namespace_selector
            .as_ref()
            .is_some_and(|s| s.matches(labels))
    }

    pub fn allows(&self, intended_use: AllowedUse) -> bool {
        self.allowed_uses.contains(&intended_use)
    }

    /// Whether blocks of this pool can hold the Windows reserved ends
    /// (v4 /30-/32 and v6 /126-/128 cannot).
    pub fn fits_reserved_ends(&self) -> bool {
        self.cidr.max_prefix_len() - self.block_prefix > 2
    }
}

/// The pools of all IPPool resources, in list order.
pub fn pools_from_resources(resources: &[Resource]) -> Vec<Pool> {
    resources.iter().filter_map(Pool::from_resource).collect()
}

/// A pool selection request (one family).
#[derive(Clone, Debug)]
pub struct PoolRequest<'a> {
    pub version: IpVersion,
    /// Pool names or CIDRs; empty = automatic selection.
    pub explicit: &'a [String],
    pub host: &'a str,
    pub intended_use: AllowedUse,
    pub node_labels: &'a BTreeMap<String, String>,
    /// `None` = no namespace object: evaluated against no labels.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// Blocks will reserve Windows ends: skip pools too small for them.
    pub reserve_block_ends: bool,
}

fn names_pool(entry: &str, pool: &Pool) -> bool {
    let entry = entry.trim();
    entry == pool.name || parse_cidr(entry).is_some_and(|c| c == pool.cidr)
}

/// The pools a request may allocate from, in order (§3.3 steps 1-4).
pub fn choose_pools(pools: &[Pool], req: &PoolRequest<'_>) -> Result<Vec<Pool>, IpamError> {
    let enabled: Vec<&Pool> = pools
        .iter()
        .filter(|p| p.enabled && p.version() == req.version)
        .filter(|p| !req.reserve_block_ends || p.fits_reserved_ends())
        .collect();
    let selected: Vec<&Pool> = if req.explicit.is_empty() {
        let empty = BTreeMap::new();
        let ns_labels = req.namespace_labels.unwrap_or(&empty);
        let chosen: Vec<&Pool> = enabled
            .iter()
            .copied()
            .filter(|p| {
                !p.manual && p.selects_node(req.node_labels) && p.selects_namespace(ns_labels)
            })
            .collect();
        if chosen.is_empty() {
            return Err(IpamError::NoPoolsForHost {
                host: req.host.to_string(),
            });
        }
        chosen
    } else {
        let mut chosen = Vec::new();
        for entry in req.explicit {
            match enabled.iter().find(|p| names_pool(entry, p)) {
                Some(p) => chosen.push(*p),
                None => {
                    return Err(IpamError::PoolNotUsable {
                        pool: entry.trim().to_string(),
                    });
                }
            }
        }
        chosen
    };
    let usable: Vec<Pool> = selected
        .into_iter()
        .filter(|p| p.allows(req.intended_use))
        .cloned()
        .collect();
    if usable.is_empty() {
        return Err(IpamError::NoQualifiedPool);
    }
    Ok(usable)
}

/// The enabled pools of a family whose node selector picks the host: the
/// pools a host may keep affine blocks in (§3.3 step 5).
pub fn pools_selecting_node<'a>(
    pools: &'a [Pool],
    version: IpVersion,
    node_labels: &BTreeMap<String, String>,
) -> Vec<&'a Pool> {
    pools
        .iter()
        .filter(|p| p.enabled && p.version() == version && p.selects_node(node_labels))
        .collect()
}

/// The pool (any, enabled or not) containing an address or block.
pub fn pool_containing<'a>(pools: &'a [Pool], net: &IpNet) -> Option<&'a Pool> {
    pools.iter().find(|p| p.cidr.contains(net))
}

#[cfg(test)]
mod tests {
    use tortie_model::ObjectMeta;

    use super::*;

    fn pool(name: &str, cidr: &str, edit: impl FnOnce(&mut IPPoolSpec)) -> Resource {
        let mut spec = IPPoolSpec {
            cidr: cidr.to_string(),
            ..IPPoolSpec::default()
        };
        edit(&mut spec);
        let mut r = Resource::new(ObjectMeta::named(name), spec);
        r.apply_defaults();
        r
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn req<'a>(
        explicit: &'a [String],
        node: &'a BTreeMap<String, String>,
        ns: Option<&'a BTreeMap<String, String>>,
        intended_use: AllowedUse,
    ) -> PoolRequest<'a> {
        PoolRequest {
            version: IpVersion::V4,
            explicit,
            host: "node-1",
            intended_use,
            node_labels: node,
            namespace_labels: ns,
            reserve_block_ends: false,
        }
    }

    fn names(pools: &[Pool]) -> Vec<&str> {
        pools.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn automatic_selection_honours_every_filter() {
        let resources = vec![
            pool("a-rack1", "10.1.0.0/16", |s| {
                s.node_selector = "rack == '1'".into()
            }),
            pool("b-disabled", "10.2.0.0/16", |s| s.disabled = true),
            pool("c-manual", "10.3.0.0/16", |s| {
                s.assignment_mode = Some(AssignmentMode::Manual)
            }),
            pool("d-tunnel", "10.4.0.0/16", |s| {
                s.allowed_uses = vec![AllowedUse::Tunnel]
            }),
            pool("e-prod", "10.5.0.0/16", |s| {
                s.namespace_selector = "env == 'prod'".into()
            }),
            pool("f-v6", "fd00::/48", |_| {}),
            pool("g-all", "10.7.0.0/16", |_| {}),
        ];
        let pools = pools_from_resources(&resources);
        let rack1 = labels(&[("rack", "1")]);
        let prod = labels(&[("env", "prod")]);
        let got = choose_pools(&pools, &req(&[], &rack1, Some(&prod), AllowedUse::Workload))
            .expect("pools");
        assert_eq!(names(&got), ["a-rack1", "e-prod", "g-all"]);
        let got = choose_pools(&pools, &req(&[], &labels(&[]), None, AllowedUse::Workload))
            .expect("pools");
        assert_eq!(names(&got), ["g-all"], "no namespace object: empty labels");
        let got =
            choose_pools(&pools, &req(&[], &labels(&[]), None, AllowedUse::Tunnel)).expect("pools");
        assert_eq!(names(&got), ["d-tunnel", "g-all"]);
        let err = choose_pools(
            &pools,
            &req(&[], &labels(&[]), None, AllowedUse::LoadBalancer),
        )
        .expect_err("no LB pool");
        assert_eq!(err.to_string(), "cannot find a qualified ippool");
    }

    #[test]
    fn explicit_pools_bypass_selectors_but_not_uses() {
        let resources = vec![
            pool("rack1", "10.1.0.0/16", |s| {
                s.node_selector = "rack == '1'".into()
            }),
            pool("manual", "10.3.0.0/16", |s| {
                s.assignment_mode = Some(AssignmentMode::Manual)
            }),
            pool("off", "10.2.0.0/16", |s| s.disabled = true),
            pool("lb", "10.9.0.0/16", |s| {
                s.allowed_uses = vec![AllowedUse::LoadBalancer]
            }),
        ];
        let pools = pools_from_resources(&resources);
        let none = labels(&[]);
        let explicit = vec!["10.3.0.0/16".to_string(), "rack1".to_string()];
        let got = choose_pools(&pools, &req(&explicit, &none, None, AllowedUse::Workload))
            .expect("pools");
        assert_eq!(names(&got), ["manual", "rack1"], "in the order given");
        let err = choose_pools(
            &pools,
            &req(&["off".to_string()], &none, None, AllowedUse::Workload),
        )
        .expect_err("disabled");
        assert_eq!(
            err.to_string(),
            "the given pool (off) does not exist, or is not enabled"
        );
        let err = choose_pools(
            &pools,
            &req(
                &["10.8.0.0/16".to_string()],
                &none,
                None,
                AllowedUse::Workload,
            ),
        )
        .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "the given pool (10.8.0.0/16) does not exist, or is not enabled"
        );
        let err = choose_pools(
            &pools,
            &req(&["lb".to_string()], &none, None, AllowedUse::Workload),
        )
        .expect_err("wrong use");
        assert!(matches!(err, IpamError::NoQualifiedPool));
        let err = choose_pools(&pools, &req(&[], &none, None, AllowedUse::Workload))
            .expect_err("only the LB pool selects the node");
        assert!(matches!(err, IpamError::NoQualifiedPool));
        let err = choose_pools(&pools[..3], &req(&[], &none, None, AllowedUse::Workload))
            .expect_err("none");
        assert_eq!(
            err.to_string(),
            "no configured Calico pools for node node-1"
        );
    }

    #[test]
    fn allocatable_false_disables_and_small_blocks_skip_reserved_ends() {
        let mut r = pool("p", "10.1.0.0/16", |_| {});
        r.status =
            Some(serde_json::json!({"conditions": [{"type": "Allocatable", "status": "False"}]}));
        assert!(!Pool::from_resource(&r).expect("pool").enabled);
        let small = Pool::from_resource(&pool("s", "10.1.0.0/16", |s| s.block_size = Some(30)))
            .expect("pool");
        assert!(!small.fits_reserved_ends());
        let ok = Pool::from_resource(&pool("s", "10.1.0.0/16", |s| s.block_size = Some(29)))
            .expect("pool");
        assert!(ok.fits_reserved_ends());
    }
}
