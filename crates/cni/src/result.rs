//! CNI results: one version-independent [`CniResult`] and its JSON forms —
//! the current shape (0.3.0 to 1.1.0: `interfaces`, `ips`, `routes`, `dns`)
//! and the legacy shape (0.1.0/0.2.0: `ip4`, `ip6`, `dns`).
//!
//! Conversions follow libcni's: legacy -> current puts `ip4`/`ip6` into
//! `ips` (no interface index) and merges their routes; current -> legacy
//! keeps the first address of each family and sorts routes by the family
//! of their destination. 0.3.x/0.4.0 IP entries carry `"version"`; 1.1.0
//! adds interface `mtu`/`socketPath`/`pciID` and route
//! `mtu`/`advmss`/`priority`/`table`/`scope`, which older versions drop.
//!
//! Hard case: a `prevResult` arrives in whatever shape the config's version
//! uses (or another, from a sloppy runtime); it is recognised by its keys,
//! and every address that does not parse is reported with its path.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::Dns;
use crate::error::{CniError, codes};
use crate::version::CniVersion;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// Empty when unknown.
    pub mac: String,
    pub mtu: Option<u32>,
    /// The netns path for container-side interfaces; empty on the host.
    pub sandbox: String,
    pub socket_path: String,
    pub pci_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// Index into `interfaces`.
    pub interface: Option<usize>,
    /// The address with its prefix length (`10.0.0.5/26`).
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// A result in no particular version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct InterfaceWire {
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sandbox: String,
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    socket_path: String,
    #[serde(rename = "pciID", default, skip_serializing_if = "String::is_empty")]
    pci_id: String,
}

#[derive(Serialize, Deserialize)]
struct IpWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct RouteWire {
    dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct CurrentWire {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<InterfaceWire>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpWire>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteWire>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct LegacyIpWire {
    ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteWire>,
}

#[derive(Serialize, Deserialize)]
struct LegacyWire {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<LegacyIpWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<LegacyIpWire>,
    #[serde(default)]
    dns: Dns,
}

fn bad(what: &str, value: &str) -> CniError {
    CniError::new(
        codes::DECODING_FAILURE,
        format!("{what}: {value:?} is not valid"),
    )
}

fn parse_net(what: &str, value: &str) -> Result<IpNet, CniError> {
    value.parse::<IpNet>().map_err(|_| bad(what, value))
}

fn parse_ip(what: &str, value: Option<&String>) -> Result<Option<IpAddr>, CniError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<IpAddr>().map_err(|_| bad(what, v)))
        .transpose()
}

fn route_from_wire(what: &str, r: &RouteWire) -> Result<Route, CniError> {
    Ok(Route {
        dst: parse_net(&format!("{what}.dst"), &r.dst)?,
        gw: parse_ip(&format!("{what}.gw"), r.gw.as_ref())?,
        mtu: r.mtu,
        advmss: r.advmss,
        priority: r.priority,
        table: r.table,
        scope: r.scope,
    })
}

fn route_to_wire(r: &Route, extended: bool) -> RouteWire {
    RouteWire {
        dst: r.dst.to_string(),
        gw: r.gw.map(|g| g.to_string()),
        mtu: r.mtu.filter(|_| extended),
        advmss: r.advmss.filter(|_| extended),
        priority: r.priority.filter(|_| extended),
        table: r.table.filter(|_| extended),
        scope: r.scope.filter(|_| extended),
    }
}

fn decode<T: for<'de> Deserialize<'de>>(
    what: &str,
    value: serde_json::Value,
) -> Result<T, CniError> {
    serde_json::from_value(value).map_err(|e| {
        CniError::new(
            codes::DECODING_FAILURE,
            format!("{what}: cannot decode: {e}"),
        )
    })
}

impl CniResult {
    /// Parses a result of any version (a `prevResult`, or a delegated
    /// plugin's output); `what` names it in errors.
    pub fn parse(what: &str, value: &serde_json::Value) -> Result<CniResult, CniError> {
        let Some(object) = value.as_object() else {
            return Err(CniError::new(
                codes::DECODING_FAILURE,
                format!("{what}: expected a JSON object"),
            ));
        };
        if object.contains_key("ip4") || object.contains_key("ip6") {
            let wire: LegacyWire = decode(what, value.clone())?;
            let mut result = CniResult {
                dns: wire.dns,
                ..CniResult::default()
            };
            for (family, ip) in [("ip4", wire.ip4), ("ip6", wire.ip6)] {
                let Some(ip) = ip else { continue };
                result.ips.push(IpConfig {
                    interface: None,
                    address: parse_net(&format!("{what}.{family}.ip"), &ip.ip)?,
                    gateway: parse_ip(&format!("{what}.{family}.gateway"), ip.gateway.as_ref())?,
                });
                for (i, r) in ip.routes.iter().enumerate() {
                    result
                        .routes
                        .push(route_from_wire(&format!("{what}.{family}.routes[{i}]"), r)?);
                }
            }
            return Ok(result);
        }
        let wire: CurrentWire = decode(what, value.clone())?;
        let mut result = CniResult {
            dns: wire.dns,
            ..CniResult::default()
        };
        for i in wire.interfaces {
            result.interfaces.push(Interface {
                name: i.name,
                mac: i.mac,
                mtu: i.mtu,
                sandbox: i.sandbox,
                socket_path: i.socket_path,
                pci_id: i.pci_id,
            });
        }
        for (n, ip) in wire.ips.iter().enumerate() {
            result.ips.push(IpConfig {
                interface: ip.interface,
                address: parse_net(&format!("{what}.ips[{n}].address"), &ip.address)?,
                gateway: parse_ip(&format!("{what}.ips[{n}].gateway"), ip.gateway.as_ref())?,
            });
        }
        for (n, r) in wire.routes.iter().enumerate() {
            result
                .routes
                .push(route_from_wire(&format!("{what}.routes[{n}]"), r)?);
        }
        Ok(result)
    }

    /// The result in the shape of `version`.
    pub fn render(&self, version: CniVersion) -> serde_json::Value {
        let encoded = if version.is_legacy() {
            serde_json::to_value(self.legacy_wire(version))
        } else {
            serde_json::to_value(self.current_wire(version))
        };
        encoded.expect("results hold only strings and numbers")
    }

    fn current_wire(&self, version: CniVersion) -> CurrentWire {
        let extended = version >= CniVersion::V1_1_0;
        CurrentWire {
            cni_version: version.as_str().to_string(),
            interfaces: self
                .interfaces
                .iter()
                .map(|i| InterfaceWire {
                    name: i.name.clone(),
                    mac: i.mac.clone(),
                    mtu: i.mtu.filter(|_| extended),
                    sandbox: i.sandbox.clone(),
                    socket_path: if extended {
                        i.socket_path.clone()
                    } else {
                        String::new()
                    },
                    pci_id: if extended {
                        i.pci_id.clone()
                    } else {
                        String::new()
                    },
                })
                .collect(),
            ips: self
                .ips
                .iter()
                .map(|ip| IpWire {
                    version: version.ips_carry_version().then(|| {
                        if ip.address.addr().is_ipv4() {
                            "4"
                        } else {
                            "6"
                        }
                        .to_string()
                    }),
                    interface: ip.interface,
                    address: ip.address.to_string(),
                    gateway: ip.gateway.map(|g| g.to_string()),
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| route_to_wire(r, extended))
                .collect(),
            dns: self.dns.clone(),
        }
    }

    fn legacy_wire(&self, version: CniVersion) -> LegacyWire {
        let family = |v4: bool| {
            let ip = self
                .ips
                .iter()
                .find(|ip| ip.address.addr().is_ipv4() == v4)?;
            Some(LegacyIpWire {
                ip: ip.address.to_string(),
                gateway: ip.gateway.map(|g| g.to_string()),
                routes: self
                    .routes
                    .iter()
                    .filter(|r| r.dst.addr().is_ipv4() == v4)
                    .map(|r| route_to_wire(r, false))
                    .collect(),
            })
        };
        LegacyWire {
            cni_version: version.as_str().to_string(),
            ip4: family(true),
            ip6: family(false),
            dns: self.dns.clone(),
        }
    }

    /// The addresses, without prefix lengths.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.ips.iter().map(|ip| ip.address.addr()).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::version::SUPPORTED;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cali0123456789a".into(),
                    mac: "ee:ee:ee:ee:ee:ee".into(),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "6a:1f:00:00:00:01".into(),
                    mtu: Some(1440),
                    sandbox: "/var/run/netns/x".into(),
                    ..Interface::default()
                },
            ],
            ips: vec![
                IpConfig {
                    interface: Some(1),
                    address: net("10.244.12.7/32"),
                    gateway: None,
                },
                IpConfig {
                    interface: Some(1),
                    address: net("fd00:10:244::c07/128"),
                    gateway: None,
                },
            ],
            routes: vec![
                Route::new(net("0.0.0.0/0"), Some("169.254.1.1".parse().expect("ip"))),
                Route::new(
                    net("::/0"),
                    Some("fe80::ecee:eeff:feee:eeee".parse().expect("ip")),
                ),
            ],
            dns: Dns::default(),
        }
    }

    #[test]
    fn renders_1_0_0_like_the_spec_example() {
        assert_eq!(
            sample().render(CniVersion::V1_0_0),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"},
                    {"name": "eth0", "mac": "6a:1f:00:00:00:01", "sandbox": "/var/run/netns/x"}
                ],
                "ips": [
                    {"interface": 1, "address": "10.244.12.7/32"},
                    {"interface": 1, "address": "fd00:10:244::c07/128"}
                ],
                "routes": [
                    {"dst": "0.0.0.0/0", "gw": "169.254.1.1"},
                    {"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}
                ],
                "dns": {}
            })
        );
    }

    #[test]
    fn version_specific_fields() {
        let r = sample();
        let v031 = r.render(CniVersion::V0_3_1);
        assert_eq!(v031["ips"][0]["version"], "4");
        assert_eq!(v031["ips"][1]["version"], "6");
        let v110 = r.render(CniVersion::V1_1_0);
        assert_eq!(v110["interfaces"][1]["mtu"], 1440);
        assert!(v110["ips"][0].get("version").is_none());
        let legacy = r.render(CniVersion::V0_2_0);
        assert_eq!(
            legacy,
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.244.12.7/32", "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]},
                "ip6": {"ip": "fd00:10:244::c07/128", "routes": [{"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}]},
                "dns": {}
            })
        );
    }

    #[test]
    fn parses_every_rendered_version() {
        let r = sample();
        for v in SUPPORTED {
            let back = CniResult::parse("prevResult", &r.render(v)).expect("parse");
            assert_eq!(back.addresses(), r.addresses(), "{v}");
            assert_eq!(back.routes, r.routes, "{v}");
            if !v.is_legacy() {
                assert_eq!(back.interfaces.len(), 2, "{v}");
                assert_eq!(back.ips[0].interface, Some(1), "{v}");
            }
        }
    }

    #[test]
    fn legacy_input_converts_to_current() {
        let legacy = json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "dns": {"nameservers": ["10.1.0.10"]}
        });
        let r = CniResult::parse("prevResult", &legacy).expect("parse");
        assert_eq!(
            r.render(CniVersion::V0_4_0),
            json!({
                "cniVersion": "0.4.0",
                "ips": [{"version": "4", "address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {"nameservers": ["10.1.0.10"]}
            })
        );
    }

    #[test]
    fn bad_addresses_name_their_path() {
        let err = CniResult::parse(
            "prevResult",
            &json!({"ips": [{"address": "10.0.0.300/32"}]}),
        )
        .expect_err("bad");
        assert_eq!(err.code, 6);
        assert!(err.msg.contains("prevResult.ips[0].address"), "{}", err.msg);
        assert!(CniResult::parse("prevResult", &json!([1])).is_err());
        let err = CniResult::parse("prevResult", &json!({"ip4": {"ip": 5}})).expect_err("type");
        assert_eq!(err.code, 6);
    }

    proptest! {
        #[test]
        fn current_versions_round_trip(
            a in any::<u32>(), p in 0u8..=32, b in any::<u128>(), q in 0u8..=128,
            gw in proptest::option::of(any::<u32>()),
        ) {
            let r = CniResult {
                interfaces: vec![Interface { name: "eth0".into(), sandbox: "/x".into(), ..Interface::default() }],
                ips: vec![
                    IpConfig { interface: Some(0), address: IpNet::new(IpAddr::from(a.to_be_bytes()), p).expect("prefix"), gateway: gw.map(|g| IpAddr::from(g.to_be_bytes())) },
                    IpConfig { interface: Some(0), address: IpNet::new(IpAddr::from(b.to_be_bytes()), q).expect("prefix"), gateway: None },
                ],
                routes: vec![Route::new(IpNet::new(IpAddr::from(a.to_be_bytes()), p).expect("prefix"), None)],
                dns: Dns::default(),
            };
            for v in SUPPORTED.into_iter().filter(|v| !v.is_legacy()) {
                let back = CniResult::parse("r", &r.render(v)).expect("parse");
                prop_assert_eq!(&back, &r);
            }
        }
    }
}
