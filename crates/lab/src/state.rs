//! What a lab is made of, recorded on disk so every `tortie lab` command
//! (and `lab down` after a crash) can find it again.
//!
//! One directory per lab under `/run/tortie/lab/<name>/` holds `state.json`
//! (nodes, their namespaces, addresses and daemon PIDs; pods; whether the
//! lab is dual-stack), the embedded datastore file unless another
//! datastore was chosen, daemon logs, the pod MTU each daemon writes
//! (`<node>.mtu`), and `bin/` with the CNI plugin links. Every namespace a lab creates carries
//! the prefix `tl-<name>-`, so `down` can also find what a crashed `up`
//! never recorded.
//!
//! Hard case: several `tortie lab pod add` processes at once. Updates take
//! an exclusive lock on `state.lock` and re-read the file under it.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Where labs live.
pub const LABS_DIR: &str = "/run/tortie/lab";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    /// `embedded:PATH` or `etcd:URL,...`: what every node and pod uses.
    pub datastore: String,
    /// `vxlan` (the only cross-node mode until BGP lands).
    pub mode: String,
    /// The data-centre subnet, e.g. `172.30.0.0/24`; `.1` is the bridge.
    pub subnet: String,
    /// The IPv6 data-centre subnet of a dual-stack lab (`lab up --ipv6`),
    /// e.g. `fd30::/64`; `::1` is the bridge. Pods of a dual-stack lab get
    /// an address of each family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    pub nodes: Vec<NodeState>,
    pub pods: Vec<PodState>,
    /// The lab's own etcd member (`lab up --etcd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<crate::store::EtcdState>,
    /// The node daemons run without the fast path (`lab up --no-fast-path`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_fast_path: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub netns: String,
    /// The node's address on the data-centre bridge, with prefix.
    pub ip: String,
    /// Its IPv6 address there, with prefix (dual-stack labs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    /// PID of `tortie node run` in the node's namespace, once started.
    pub pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodState {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub netns: String,
    pub container_id: String,
    /// Addresses the CNI plugin gave the pod (no prefix).
    pub ips: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl PodState {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Lab names become parts of interface and namespace names: keep them short
/// and plain.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 12
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if !ok {
        bail!(
            "lab name {name:?}: use 1-12 lower-case letters, digits or '-', starting with a letter or digit"
        );
    }
    Ok(())
}

impl LabState {
    /// The namespace datastore clients must run in: the data-centre
    /// namespace when the lab hosts its etcd there, else `None` (here).
    pub fn datastore_netns(&self) -> Option<String> {
        self.etcd
            .as_ref()
            .map(|_| format!("{}dc", netns_prefix(&self.name)))
    }

    /// Whether pods get an IPv6 address too.
    pub fn dual_stack(&self) -> bool {
        self.subnet6.is_some()
    }
}

pub fn lab_dir(name: &str) -> PathBuf {
    Path::new(LABS_DIR).join(name)
}

/// Where node `node`'s daemon writes the pod MTU (its `--mtu-file`); the
/// lab's CNI configuration takes the MTU from there, as Calico's CNI
/// plugin takes it from `/var/lib/calico/mtu`.
pub fn mtu_file(lab: &str, node: &str) -> PathBuf {
    lab_dir(lab).join(format!("{node}.mtu"))
}

/// The namespace prefix of everything lab `name` creates.
pub fn netns_prefix(name: &str) -> String {
    format!("tl-{name}-")
}

fn state_path(name: &str) -> PathBuf {
    lab_dir(name).join("state.json")
}

/// An exclusive hold on a lab's state while it is being changed.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Locks the state of an existing lab (`up` creates the directory
    /// first); a missing lab is an error, and nothing is created for it.
    pub fn acquire(name: &str) -> Result<StateLock> {
        let dir = lab_dir(name);
        if !dir.is_dir() {
            bail!("there is no lab {name:?}; create it with: tortie lab up {name} --nodes 3");
        }
        let path = dir.join("state.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(StateLock { _file: file })
    }
}

impl LabState {
    /// Reads lab `name`, or says how to create it.
    pub fn load(name: &str) -> Result<LabState> {
        let path = state_path(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("there is no lab {name:?}; create it with: tortie lab up {name} --nodes 3")
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged; run tortie lab down {name}", path.display()))
    }

    pub fn exists(name: &str) -> bool {
        state_path(name).exists()
    }

    /// Writes the state atomically (temp file + rename).
    pub fn save(&self) -> Result<()> {
        let path = state_path(&self.name);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    pub fn node(&self, name: &str) -> Result<&NodeState> {
        match self.nodes.iter().find(|n| n.name == name) {
            Some(n) => Ok(n),
            None => {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                bail!(
                    "lab {} has no node {name:?}; its nodes are {}",
                    self.name,
                    names.join(", ")
                )
            }
        }
    }

    pub fn pod(&self, id: &str) -> Result<&PodState> {
        match self.pods.iter().find(|p| p.id() == id) {
            Some(p) => Ok(p),
            None => bail!(
                "lab {} has no pod {id:?}; see tortie lab status {}",
                self.name,
                self.name
            ),
        }
    }

    /// Names every lab that has a state file.
    pub fn all_names() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(LABS_DIR)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("state.json").exists())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Splits `ns/pod` (a bare pod name means namespace `default`).
pub fn split_pod_id(id: &str) -> Result<(String, String)> {
    let (ns, name) = id.split_once('/').unwrap_or(("default", id));
    let ok = |s: &str| !s.is_empty() && tortie_model::scalar::is_dns_subdomain(s);
    if !ok(ns) || !ok(name) {
        bail!("pod {id:?}: expected NAMESPACE/POD with lower-case DNS names, e.g. shop/web-1");
    }
    Ok((ns.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pod_ids() {
        assert!(validate_name("demo").is_ok());
        assert!(validate_name("a-very-long-name").is_err());
        assert!(validate_name("Demo").is_err());
        assert_eq!(
            split_pod_id("shop/web-1").unwrap(),
            ("shop".into(), "web-1".into())
        );
        assert_eq!(
            split_pod_id("web").unwrap(),
            ("default".into(), "web".into())
        );
        assert!(split_pod_id("shop/Web").is_err());
        assert!(split_pod_id("/x").is_err());
    }
}
