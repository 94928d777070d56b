//! The network configuration on stdin (cni.md §2, §5.1): Calico's fields,
//! tortie's `datastore`, the standard CNI fields, and what they resolve to
//! (node name, MTU, datastore, lock file, labels).
//!
//! Hard cases:
//! - Configs carry foreign fields (other plugins', runtime extras): unknown
//!   fields are ignored, but a known field of the wrong JSON type is a
//!   decoding error (code 6) naming the field's path.
//! - Datastore precedence: `datastore` ("embedded:PATH" | "etcd:URL,...")
//!   beats Calico's config fields (`datastore_type`, `etcd_endpoints`, the
//!   TLS files), which beat the plugin's environment (`TORTIE_DATASTORE`,
//!   then Calico's `DATASTORE_TYPE`/`ETCD_*`), as Calico exports its config
//!   fields to the environment before reading it.
//! - Node name: `nodename`, else the `nodename_file` (default
//!   /var/lib/calico/nodename) when present, else the deprecated
//!   `hostname`, else the OS host name. Unlike Calico the file is optional
//!   unless `nodename_file_optional` is explicitly `false` (tortie does not
//!   require a calico/node container to have written it).
//! - MTU 0 or absent reads /var/lib/calico/mtu when present, else 1500.
//! - Pod labels (a tortie extension, as tortie has no Kubernetes API):
//!   `args.cni.labels` then `runtimeConfig.labels`, each either a string
//!   map or the CNI-conventions list of `{"key", "value"}` objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tortie_datastore::DatastoreSpec;

use crate::error::{CniError, codes};
use crate::version::CniVersion;

/// Default host-wide IPAM lock (cni.md §2).
pub const DEFAULT_IPAM_LOCK_FILE: &str = "/var/run/calico/ipam.lock";
/// Where calico/node (or the operator) records the node name.
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";
/// Where Felix records the pod MTU (dataplane.md §4).
pub const MTU_FILE: &str = "/var/lib/calico/mtu";
/// MTU when neither the config nor the MTU file gives one.
pub const DEFAULT_MTU: u32 = 1500;

/// Labels as a string map or as `[{"key": k, "value": v}]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum LabelsWire {
    Map(BTreeMap<String, String>),
    List(Vec<LabelPair>),
}

#[derive(Clone, Debug, Deserialize)]
struct LabelPair {
    key: String,
    value: String,
}

fn labels_of(wire: Option<&LabelsWire>) -> BTreeMap<String, String> {
    match wire {
        None => BTreeMap::new(),
        Some(LabelsWire::Map(map)) => map.clone(),
        Some(LabelsWire::List(list)) => list
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
    }
}

/// `"true"`/`"false"` as Calico writes them; JSON booleans are accepted too.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn value(&self, field: &str) -> Result<bool, CniError> {
        match self {
            Flag::Bool(b) => Ok(*b),
            Flag::Text(t) if t.eq_ignore_ascii_case("true") => Ok(true),
            Flag::Text(t) if t.eq_ignore_ascii_case("false") => Ok(false),
            Flag::Text(t) => Err(CniError::invalid_config(format!(
                "ipam.{field} is {t:?}; expected \"true\" or \"false\""
            ))),
        }
    }
}

/// A route in `ipam.routes` (tortie-ipam) or in a delegated IPAM result.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RouteConf {
    pub dst: String,
    #[serde(default)]
    pub gw: Option<String>,
}

/// The `ipam` section.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct IpamConf {
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    #[serde(default)]
    pub assign_ipv4: Option<Flag>,
    #[serde(default)]
    pub assign_ipv6: Option<Flag>,
    #[serde(default)]
    pub ipv4_pools: Vec<String>,
    #[serde(default)]
    pub ipv6_pools: Vec<String>,
    /// tortie-ipam only: routes to put in its result (none by default).
    #[serde(default)]
    pub routes: Vec<RouteConf>,
}

impl IpamConf {
    /// Whether this IPAM is ours, run in-process by the main plugin.
    pub fn is_tortie(&self) -> bool {
        matches!(self.plugin_type.as_str(), "calico-ipam" | "tortie-ipam")
    }

    /// How many addresses of each family to assign (1/0 by default).
    pub fn families(&self) -> Result<(usize, usize), CniError> {
        let v4 = match &self.assign_ipv4 {
            Some(f) => f.value("assign_ipv4")?,
            None => true,
        };
        let v6 = match &self.assign_ipv6 {
            Some(f) => f.value("assign_ipv6")?,
            None => false,
        };
        if !v4 && !v6 {
            return Err(CniError::invalid_config(
                "ipam: assign_ipv4 and assign_ipv6 are both false; nothing to assign",
            ));
        }
        Ok((usize::from(v4), usize::from(v6)))
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PolicyConf {
    #[serde(rename = "type", default)]
    pub policy_type: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerSettings {
    #[serde(default)]
    pub allow_ip_forwarding: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(default)]
    labels: Option<LabelsWire>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ArgsCni {
    #[serde(default)]
    labels: Option<LabelsWire>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ArgsConf {
    #[serde(default)]
    cni: ArgsCni,
}

/// The standard `dns` section (also the result's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// One entry of `cni.dev/valid-attachments` (GC, CNI 1.1).
#[derive(Clone, Debug, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(default)]
    pub ifname: String,
}

/// The network configuration as given.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    #[serde(default)]
    pub datastore: Option<String>,
    #[serde(default)]
    pub datastore_type: Option<String>,
    #[serde(default)]
    pub etcd_endpoints: Option<String>,
    #[serde(default)]
    pub etcd_discovery_srv: Option<String>,
    #[serde(default)]
    pub etcd_authority: Option<String>,
    #[serde(default)]
    pub etcd_scheme: Option<String>,
    #[serde(default)]
    pub etcd_key_file: Option<String>,
    #[serde(default)]
    pub etcd_cert_file: Option<String>,
    #[serde(default)]
    pub etcd_ca_cert_file: Option<String>,
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub log_file_path: Option<String>,
    #[serde(default)]
    pub nodename: Option<String>,
    #[serde(default)]
    pub nodename_file: Option<String>,
    #[serde(default)]
    pub nodename_file_optional: Option<bool>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub mtu: Option<i64>,
    #[serde(default)]
    pub require_mtu_file: bool,
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub ipam: IpamConf,
    #[serde(default)]
    pub policy: PolicyConf,
    #[serde(default)]
    pub container_settings: ContainerSettings,
    #[serde(default)]
    pub include_default_routes: bool,
    #[serde(default)]
    pub ipam_lock_file: Option<String>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: RuntimeConfig,
    #[serde(default)]
    args: ArgsConf,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<serde_json::Value>,
    #[serde(default)]
    pub dns: Option<Dns>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// Network names: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (libcni's rule).
fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::invalid_config("missing network name"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(CniError::invalid_config(format!(
            "invalid network name {name:?}: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
        )));
    }
    Ok(())
}

impl NetConf {
    /// Decodes stdin. JSON errors are code 6 and name the field's path.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let conf: NetConf = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let at = if path == "." {
                String::new()
            } else {
                format!(" at {path}")
            };
            CniError::new(
                codes::DECODING_FAILURE,
                format!("failed to decode the network configuration{at}: {inner}"),
            )
        })?;
        Ok(conf)
    }

    /// The requested spec version (absent = 0.2.0).
    pub fn version(&self) -> Result<CniVersion, CniError> {
        CniVersion::from_config(self.cni_version.as_deref())
    }

    /// The checks every command but VERSION needs: the network name.
    pub fn validate(&self) -> Result<(), CniError> {
        validate_network_name(&self.name)
    }

    /// Pod labels: `args.cni.labels`, overridden by `runtimeConfig.labels`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = labels_of(self.args.cni.labels.as_ref());
        labels.extend(labels_of(self.runtime_config.labels.as_ref()));
        labels
    }

    pub fn ipam_lock_file(&self) -> PathBuf {
        PathBuf::from(
            self.ipam_lock_file
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or(DEFAULT_IPAM_LOCK_FILE),
        )
    }

    /// `device_type`: veth, or netkit (which tortie serves with a veth).
    pub fn check_device_type(&self) -> Result<(), CniError> {
        match self.device_type.as_deref() {
            None | Some("") | Some("veth") => Ok(()),
            Some("netkit") => {
                tracing::warn!("device_type netkit is not supported by tortie; using a veth");
                Ok(())
            }
            Some(other) => Err(CniError::invalid_config(format!(
                "unsupported device_type {other:?}: expected veth or netkit"
            ))),
        }
    }

    /// Calico's config fields as the environment variables Calico exports
    /// them to; `None` when the config sets none of them.
    fn calico_datastore_vars(&self) -> Result<Option<BTreeMap<&'static str, String>>, CniError> {
        if self
            .etcd_discovery_srv
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        {
            return Err(CniError::invalid_config(
                "etcd_discovery_srv is not supported by tortie; list the members in etcd_endpoints",
            ));
        }
        let mut vars = BTreeMap::new();
        let mut set = |name: &'static str, value: Option<&String>| {
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                vars.insert(name, v.clone());
            }
        };
        set("DATASTORE_TYPE", self.datastore_type.as_ref());
        let legacy = self
            .etcd_authority
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|authority| {
                let scheme = self
                    .etcd_scheme
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("http");
                format!("{scheme}://{authority}")
            });
        set(
            "ETCD_ENDPOINTS",
            self.etcd_endpoints.as_ref().or(legacy.as_ref()),
        );
        set("ETCD_KEY_FILE", self.etcd_key_file.as_ref());
        set("ETCD_CERT_FILE", self.etcd_cert_file.as_ref());
        set("ETCD_CA_CERT_FILE", self.etcd_ca_cert_file.as_ref());
        Ok((!vars.is_empty()).then_some(vars))
    }

    /// Which datastore to open (see the module comment for precedence).
    pub fn datastore_spec(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DatastoreSpec, CniError> {
        let flag = self.datastore.as_deref().filter(|d| !d.trim().is_empty());
        let resolved = match (flag, self.calico_datastore_vars()?) {
            (Some(_), _) | (None, None) => DatastoreSpec::resolve_with(flag, env),
            (None, Some(vars)) => DatastoreSpec::resolve_with(None, |name| {
                // The config's values win over the environment, including
                // over the CALICO_-prefixed twins and TORTIE_DATASTORE.
                let plain = name.strip_prefix("CALICO_").unwrap_or(name);
                if name == "TORTIE_DATASTORE" {
                    return None;
                }
                vars.get(plain).cloned().or_else(|| env(name))
            }),
        };
        resolved.map_err(|e| CniError::invalid_config(format!("datastore: {e}")))
    }

    /// The node name (see the module comment for the order).
    pub fn node_name(&self, nodename_file_default: &Path) -> Result<String, CniError> {
        if let Some(name) = self
            .nodename
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            return Ok(name.to_string());
        }
        let file = self
            .nodename_file
            .as_deref()
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| nodename_file_default.to_path_buf());
        match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
            Ok(_) => {}
            Err(e) if self.nodename_file_optional == Some(false) => {
                return Err(CniError::invalid_config(format!(
                    "{}: {e}: check that the node agent is running and has written the node name",
                    file.display()
                )));
            }
            Err(_) => {}
        }
        if let Some(name) = self
            .hostname
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            return Ok(name.to_string());
        }
        os_hostname()
    }

    /// The pod interface MTU.
    pub fn mtu(&self, mtu_file: &Path) -> Result<u32, CniError> {
        match self.mtu {
            Some(m) if m != 0 => {
                return u32::try_from(m)
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| {
                        CniError::invalid_config(format!("mtu {m} is outside 68-65535"))
                    });
            }
            _ => {}
        }
        match std::fs::read_to_string(mtu_file) {
            Ok(text) => text.trim().parse::<u32>().map_err(|_| {
                CniError::invalid_config(format!(
                    "{} holds {:?}, not an MTU",
                    mtu_file.display(),
                    text.trim()
                ))
            }),
            Err(e) if self.require_mtu_file => Err(CniError::invalid_config(format!(
                "require_mtu_file is set but {} cannot be read: {e}",
                mtu_file.display()
            ))),
            Err(_) => Ok(DEFAULT_MTU),
        }
    }
}

/// The host name of this UTS namespace.
fn os_hostname() -> Result<String, CniError> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            CniError::invalid_config(
                "no node name: set nodename in the network configuration (the host name cannot be read)",
            )
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn conf(json: &str) -> NetConf {
        NetConf::parse(json.as_bytes()).expect("valid config")
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn parses_calicos_example_and_tolerates_foreign_fields() {
        let c = conf(
            r#"{
              "name": "k8s-pod-network", "cniVersion": "1.0.0", "type": "calico",
              "log_level": "info", "datastore_type": "etcdv3",
              "etcd_endpoints": "https://10.0.0.10:2379", "nodename": "node-1", "mtu": 0,
              "ipam": {"type": "calico-ipam", "assign_ipv6": "true", "ipv4_pools": ["p1"]},
              "policy": {"type": "k8s"},
              "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
              "capabilities": {"portMappings": true}, "someone_elses": [1, 2]
            }"#,
        );
        assert_eq!(c.name, "k8s-pod-network");
        assert_eq!(c.version(), Ok(CniVersion::V1_0_0));
        assert!(c.ipam.is_tortie());
        assert_eq!(c.ipam.families(), Ok((1, 1)));
        assert_eq!(c.policy.policy_type, "k8s");
        assert_eq!(c.ipam.ipv4_pools, ["p1"]);
    }

    #[test]
    fn wrong_types_and_bad_json_are_code_6_with_the_path() {
        let err = NetConf::parse(br#"{"name": "n", "mtu": "big"}"#).expect_err("type");
        assert_eq!(err.code, 6);
        assert!(err.msg.contains("at mtu"), "{}", err.msg);
        let err =
            NetConf::parse(br#"{"name": "n", "ipam": {"ipv4_pools": "p"}}"#).expect_err("type");
        assert!(err.msg.contains("ipam.ipv4_pools"), "{}", err.msg);
        let err = NetConf::parse(b"{not json").expect_err("syntax");
        assert_eq!(err.code, 6);
    }

    #[test]
    fn names_and_flags_are_validated() {
        assert_eq!(conf(r#"{}"#).validate().expect_err("no name").code, 7);
        assert_eq!(
            conf(r#"{"name": "-x"}"#).validate().expect_err("bad").code,
            7
        );
        assert!(conf(r#"{"name": "net_1.a-b"}"#).validate().is_ok());
        let c = conf(r#"{"name": "n", "ipam": {"assign_ipv4": "maybe"}}"#);
        assert_eq!(c.ipam.families().expect_err("flag").code, 7);
        let c = conf(r#"{"name": "n", "ipam": {"assign_ipv4": false, "assign_ipv6": "false"}}"#);
        assert!(c.ipam.families().is_err());
        let c = conf(r#"{"name": "n", "device_type": "macvlan"}"#);
        assert_eq!(c.check_device_type().expect_err("device").code, 7);
    }

    #[test]
    fn datastore_precedence() {
        let env = env_of(&[
            ("TORTIE_DATASTORE", "embedded:/env.db"),
            ("ETCD_CERT_FILE", "/env-cert.pem"),
        ]);
        let c = conf(
            r#"{"name": "n", "datastore": "embedded:/conf.db", "etcd_endpoints": "http://x:1"}"#,
        );
        assert_eq!(
            c.datastore_spec(&env).expect("spec").to_string(),
            "embedded:/conf.db"
        );
        let c = conf(r#"{"name": "n"}"#);
        assert_eq!(
            c.datastore_spec(&env).expect("spec").to_string(),
            "embedded:/env.db"
        );
        let c = conf(
            r#"{"name": "n", "etcd_endpoints": "https://e1:2379,https://e2:2379",
                "etcd_cert_file": "/c.pem", "etcd_key_file": "/k.pem", "etcd_ca_cert_file": "/ca.pem"}"#,
        );
        match c.datastore_spec(&env).expect("spec") {
            DatastoreSpec::Etcd(e) => {
                assert_eq!(e.endpoints, ["https://e1:2379", "https://e2:2379"]);
                assert_eq!(e.cert_file, Some(PathBuf::from("/c.pem")));
                assert_eq!(e.ca_file, Some(PathBuf::from("/ca.pem")));
            }
            other => panic!("expected etcd, got {other}"),
        }
        let c = conf(r#"{"name": "n", "etcd_authority": "e:2379"}"#);
        assert_eq!(
            c.datastore_spec(&env_of(&[])).expect("spec").to_string(),
            "etcd:http://e:2379"
        );
        let c = conf(r#"{"name": "n", "datastore_type": "kubernetes"}"#);
        assert_eq!(c.datastore_spec(&env).expect_err("k8s").code, 7);
        let c = conf(r#"{"name": "n", "datastore": "sqlite:/x"}"#);
        assert_eq!(c.datastore_spec(&env).expect_err("bad form").code, 7);
        let c = conf(r#"{"name": "n", "etcd_discovery_srv": "example.com"}"#);
        assert_eq!(c.datastore_spec(&env).expect_err("srv").code, 7);
    }

    #[test]
    fn node_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("nodename");
        let missing = dir.path().join("missing");
        std::fs::write(&file, "node-from-file\n").expect("write");
        assert_eq!(
            conf(r#"{"nodename": "n1"}"#).node_name(&file),
            Ok("n1".into())
        );
        assert_eq!(conf(r#"{}"#).node_name(&file), Ok("node-from-file".into()));
        assert_eq!(
            conf(r#"{"hostname": "legacy"}"#).node_name(&missing),
            Ok("legacy".into())
        );
        assert!(
            conf(r#"{}"#)
                .node_name(&missing)
                .is_ok_and(|h| !h.is_empty())
        );
        let err = conf(r#"{"nodename_file_optional": false}"#)
            .node_name(&missing)
            .expect_err("required file");
        assert!(err.msg.contains("missing"), "{}", err.msg);
    }

    #[test]
    fn mtu_resolution() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("mtu");
        let missing = dir.path().join("missing");
        assert_eq!(conf(r#"{"mtu": 1400}"#).mtu(&missing), Ok(1400));
        assert_eq!(conf(r#"{"mtu": 0}"#).mtu(&missing), Ok(1500));
        std::fs::write(&file, "1440").expect("write");
        assert_eq!(conf(r#"{}"#).mtu(&file), Ok(1440));
        assert_eq!(
            conf(r#"{"mtu": 70000}"#)
                .mtu(&file)
                .expect_err("range")
                .code,
            7
        );
        assert!(conf(r#"{"require_mtu_file": true}"#).mtu(&missing).is_err());
    }

    #[test]
    fn labels_from_args_and_runtime_config() {
        let c = conf(
            r#"{"args": {"cni": {"labels": [{"key": "app", "value": "web"}, {"key": "tier", "value": "a"}]}},
                "runtimeConfig": {"labels": {"tier": "b"}, "portMappings": []}}"#,
        );
        let labels = c.labels();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("b"));
    }
}
