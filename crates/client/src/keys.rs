//! Where each resource lives in the key space (datastore.md §1.1, ipam.md §2).
//!
//! `/calico/resources/v3/projectcalico.org/<plural>/<name>` for cluster
//! kinds, `.../<plural>/<namespace>/<name>` for namespaced ones. The one
//! exception is IPAMConfiguration, which Calico keeps at the IPAM config key.

use tortie_model::Kind;

/// Prefix of every v3 resource key.
pub const RESOURCES_PREFIX: &str = "/calico/resources/v3/projectcalico.org/";

/// The IPAM configuration singleton (ipam.md §2.4).
pub const IPAM_CONFIG_KEY: &str = "/calico/ipam/v2/config";

/// The key of one resource.
pub fn resource_key(kind: Kind, namespace: &str, name: &str) -> String {
    if kind == Kind::IPAMConfiguration {
        return IPAM_CONFIG_KEY.to_string();
    }
    if kind.namespaced() {
        format!("{RESOURCES_PREFIX}{}/{namespace}/{name}", kind.plural())
    } else {
        format!("{RESOURCES_PREFIX}{}/{name}", kind.plural())
    }
}

/// The prefix listing every resource of `kind`, optionally in one namespace.
pub fn list_prefix(kind: Kind, namespace: Option<&str>) -> String {
    if kind == Kind::IPAMConfiguration {
        return IPAM_CONFIG_KEY.to_string();
    }
    match namespace {
        Some(ns) if kind.namespaced() => format!("{RESOURCES_PREFIX}{}/{ns}/", kind.plural()),
        _ => format!("{RESOURCES_PREFIX}{}/", kind.plural()),
    }
}

/// Splits a resource key into kind, namespace and name.
pub fn parse_key(key: &str) -> Option<(Kind, String, String)> {
    if key == IPAM_CONFIG_KEY {
        return Some((
            Kind::IPAMConfiguration,
            String::new(),
            "default".to_string(),
        ));
    }
    let rest = key.strip_prefix(RESOURCES_PREFIX)?;
    let mut parts = rest.split('/');
    let kind = Kind::from_plural(parts.next()?)?;
    let (ns, name) = if kind.namespaced() {
        (parts.next()?.to_string(), parts.next()?.to_string())
    } else {
        (String::new(), parts.next()?.to_string())
    };
    if parts.next().is_some() || name.is_empty() {
        return None;
    }
    Some((kind, ns, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_calico_layout() {
        assert_eq!(
            resource_key(Kind::IPPool, "", "default-ipv4-ippool"),
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
        );
        assert_eq!(
            resource_key(Kind::NetworkPolicy, "prod", "allow-db"),
            "/calico/resources/v3/projectcalico.org/networkpolicies/prod/allow-db"
        );
        assert_eq!(
            resource_key(Kind::FelixConfiguration, "", "node.node-1"),
            "/calico/resources/v3/projectcalico.org/felixconfigurations/node.node-1"
        );
        assert_eq!(
            list_prefix(Kind::WorkloadEndpoint, Some("default")),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/"
        );
        assert_eq!(
            list_prefix(Kind::Tier, Some("x")),
            "/calico/resources/v3/projectcalico.org/tiers/"
        );
        for (kind, ns, name) in [
            (Kind::IPPool, "", "p1"),
            (Kind::WorkloadEndpoint, "default", "node--1-k8s-web-eth0"),
            (Kind::IPAMConfiguration, "", "default"),
        ] {
            let key = resource_key(kind, ns, name);
            assert_eq!(
                parse_key(&key),
                Some((kind, ns.to_string(), name.to_string()))
            );
        }
        assert_eq!(
            parse_key("/calico/resources/v3/projectcalico.org/bananas/x"),
            None
        );
        assert_eq!(
            parse_key("/calico/resources/v3/projectcalico.org/ippools/a/b"),
            None
        );
    }
}
