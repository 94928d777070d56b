//! `lab pod add|del` and `lab exec`: pods attached the way Kubernetes
//! attaches them — the real `tortie-cni` plugin, run in the node's
//! namespace with `K8S_POD_NAMESPACE`/`K8S_POD_NAME` in `CNI_ARGS` — so each
//! WorkloadEndpoint has orchestrator `k8s`, the namespace and orchestrator
//! labels, and the profile `kns.<ns>`. When a namespace first appears its
//! profile is created as Kubernetes namespaces get it (allow all); an
//! existing profile is never overwritten. Pods of a dual-stack lab get an
//! address of each family (`assign_ipv6`), and every pod the MTU its
//! node's daemon computed (the VXLAN MTU, less over IPv6).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

use crate::cluster::cni_bin_dir;
use crate::net;
use crate::state::{LabState, PodState, StateLock, mtu_file, netns_prefix, split_pod_id};

/// The CNI network name pods are attached to (Calico's default).
const NETWORK_NAME: &str = "k8s-pod-network";

#[derive(Subcommand, Debug, Clone)]
pub enum PodCommand {
    /// Create a pod on a node, attached through tortie-cni
    Add {
        /// Lab name
        lab: String,
        /// Node to run the pod on, e.g. node-1
        node: String,
        /// NAMESPACE/POD
        pod: String,
        /// Pod labels: k=v,k2=v2
        #[arg(long, default_value = "")]
        labels: String,
    },
    /// Delete a pod (CNI DEL, then its namespace)
    Del {
        /// Lab name
        lab: String,
        /// NAMESPACE/POD
        pod: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// Lab name
    pub lab: String,
    /// NAMESPACE/POD
    pub pod: String,
    /// The command and its arguments (after --)
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--labels {text:?}: expected k=v pairs separated by commas");
        };
        tortie_selector::labels::validate_label_key(k)
            .map_err(|e| anyhow::anyhow!("--labels: key {k:?}: {e}"))?;
        tortie_selector::labels::validate_label_value(v)
            .map_err(|e| anyhow::anyhow!("--labels: value {v:?} of {k}: {e}"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

fn pod_netns(lab: &str, ns: &str, pod: &str) -> String {
    let digest = Sha256::digest(format!("{ns}/{pod}").as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{}p{hex}", netns_prefix(lab))
}

fn container_id(lab: &str, ns: &str, pod: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{lab}/{ns}/{pod}/{nanos}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The pod MTU node `node`'s daemon wrote (`lab up` waits for it).
fn pod_mtu(lab: &LabState, node: &str) -> Result<u32> {
    let path = mtu_file(&lab.name, node);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the pod MTU of {node} from {}; is its daemon running? (tortie lab status {})",
            path.display(),
            lab.name
        )
    })?;
    text.trim()
        .parse()
        .with_context(|| format!("{} holds {text:?}, not an MTU", path.display()))
}

/// Runs the lab's tortie-cni inside the node's namespace.
fn cni(
    lab: &LabState,
    node_netns: &str,
    command: &str,
    pod: &PodState,
) -> Result<serde_json::Value> {
    let config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "type": "tortie-cni",
        "datastore": lab.datastore,
        "nodename": pod.node,
        "mtu": pod_mtu(lab, &pod.node)?,
        "nodename_file_optional": true,
        "ipam": {
            "type": "tortie-ipam",
            "assign_ipv6": if lab.dual_stack() { "true" } else { "false" },
        },
        "runtimeConfig": {"labels": pod.labels},
    });
    let plugin = cni_bin_dir(&lab.name).join("tortie-cni");
    let mut child = Command::new("ip")
        .args(["netns", "exec", node_netns])
        .arg(&plugin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &pod.container_id)
        .env("CNI_NETNS", format!("/var/run/netns/{}", pod.netns))
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
                pod.namespace, pod.name
            ),
        )
        .env("CNI_PATH", cni_bin_dir(&lab.name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running tortie-cni")?;
    child
        .stdin
        .take()
        .context("tortie-cni stdin")?
        .write_all(config.to_string().as_bytes())
        .context("writing the CNI configuration")?;
    let out = child.wait_with_output().context("waiting for tortie-cni")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let msg = serde_json::from_str::<serde_json::Value>(&stdout)
            .ok()
            .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
        bail!("tortie-cni {command} for {} failed: {msg}", pod.id());
    }
    if stdout.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&stdout).context("reading the CNI result")
}

/// Creates profile `kns.<ns>` (allow all, `pcns.projectcalico.org/name`) if absent.
fn ensure_namespace_profile(lab: &LabState, ns: &str) -> Result<()> {
    let yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {{name: kns.{ns}}}\nspec:\n  ingress: [{{action: Allow}}]\n  egress: [{{action: Allow}}]\n  labelsToApply: {{pcns.projectcalico.org/name: {ns}}}\n"
    );
    let netns = lab.datastore_netns();
    crate::store::with_client(&lab.datastore, netns.as_deref(), |client| async move {
        let decoded = tortie_model::decode_documents(&yaml, "namespace profile")
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for d in decoded {
            match client.create(d.resource).await {
                Ok(_) | Err(tortie_client::ClientError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    })
}

fn add(lab_name: &str, node: &str, pod_id: &str, labels: &str) -> Result<ExitCode> {
    let (ns, name) = split_pod_id(pod_id)?;
    let labels = parse_labels(labels)?;
    let _lock = StateLock::acquire(lab_name)?;
    let mut lab = LabState::load(lab_name)?;
    let node_netns = lab.node(node)?.netns.clone();
    if lab.pods.iter().any(|p| p.namespace == ns && p.name == name) {
        bail!(
            "pod {ns}/{name} already exists in lab {lab_name}; delete it first with: tortie lab pod del {lab_name} {ns}/{name}"
        );
    }
    ensure_namespace_profile(&lab, &ns)?;
    let mut pod = PodState {
        namespace: ns.clone(),
        name: name.clone(),
        node: node.to_string(),
        netns: pod_netns(lab_name, &ns, &name),
        container_id: container_id(lab_name, &ns, &name),
        ips: Vec::new(),
        labels,
    };
    net::add_netns(&pod.netns)?;
    let result = match cni(&lab, &node_netns, "ADD", &pod) {
        Ok(r) => r,
        Err(e) => {
            let _ = net::del_netns(&pod.netns);
            return Err(e);
        }
    };
    pod.ips = result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect()
        })
        .unwrap_or_default();
    println!(
        "Pod {} on {} has {}",
        pod.id(),
        pod.node,
        pod.ips.join(", ")
    );
    lab.pods.push(pod);
    lab.save()?;
    Ok(ExitCode::SUCCESS)
}

fn del(lab_name: &str, pod_id: &str) -> Result<ExitCode> {
    let (ns, name) = split_pod_id(pod_id)?;
    let _lock = StateLock::acquire(lab_name)?;
    let mut lab = LabState::load(lab_name)?;
    let pod = lab.pod(&format!("{ns}/{name}"))?.clone();
    let node_netns = lab.node(&pod.node)?.netns.clone();
    cni(&lab, &node_netns, "DEL", &pod)?;
    net::del_netns(&pod.netns)?;
    lab.pods.retain(|p| p.id() != pod.id());
    lab.save()?;
    println!("Pod {} deleted", pod.id());
    Ok(ExitCode::SUCCESS)
}

pub fn run(cmd: &PodCommand) -> Result<ExitCode> {
    match cmd {
        PodCommand::Add {
            lab,
            node,
            pod,
            labels,
        } => add(lab, node, pod, labels),
        PodCommand::Del { lab, pod } => del(lab, pod),
    }
}

pub fn exec(args: &ExecArgs) -> Result<ExitCode> {
    let lab = LabState::load(&args.lab)?;
    let (ns, name) = split_pod_id(&args.pod)?;
    let pod = lab.pod(&format!("{ns}/{name}"))?;
    let status = Command::new("ip")
        .args(["netns", "exec", &pod.netns])
        .args(&args.command)
        .status()
        .with_context(|| format!("running {:?} in {}", args.command, pod.id()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
