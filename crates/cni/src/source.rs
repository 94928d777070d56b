//! Where the main plugin's addresses come from: tortie's IPAM run
//! in-process (`ipam.type` `calico-ipam` or `tortie-ipam`, same semantics
//! and lock as the `tortie-ipam` plugin), or any other IPAM plugin
//! executed from `CNI_PATH` with the same stdin (CNI delegation).
//!
//! Hard case: the same four operations (ADD, DEL, CHECK, GC) must mean the
//! same thing for both, including DEL releasing Calico's legacy handle and
//! "nothing to release" being success.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipnet::IpNet;
use tortie_client::Client;
use tortie_ipam::Ipam;

use crate::allocation::{self, AssignRequest};
use crate::config::{Dns, NetConf};
use crate::delegate;
use crate::error::CniError;
use crate::identity::{Identity, Workload};
use crate::invocation::{Command, Invocation};
use crate::result::{CniResult, Route};

/// Addresses (with the prefix lengths IPAM gave) and any routes and DNS
/// settings the IPAM result carried.
#[derive(Clone, Debug, Default)]
pub struct Addresses {
    pub ips: Vec<IpNet>,
    pub routes: Vec<Route>,
    pub dns: Option<Dns>,
}

/// The IPAM request for one workload (cni.md §5.2).
pub fn assign_request(
    conf: &NetConf,
    inv: &Invocation,
    identity: &Identity,
) -> Result<AssignRequest, CniError> {
    let (num_v4, num_v6) = conf.ipam.families()?;
    let mut attrs = BTreeMap::new();
    if let Workload::Kubernetes { namespace, pod, .. } = &identity.workload {
        attrs.insert("namespace".to_string(), namespace.clone());
        attrs.insert("pod".to_string(), pod.clone());
    }
    Ok(AssignRequest {
        handle: identity.handle(),
        node: identity.node.clone(),
        network: identity.network.clone(),
        attrs,
        num_v4,
        num_v6,
        v4_pools: conf.ipam.ipv4_pools.clone(),
        v6_pools: conf.ipam.ipv6_pools.clone(),
        specific: inv.args.requested_ips()?,
    })
}

/// tortie's IPAM, run in this process.
pub struct LocalIpam {
    pub ipam: Ipam,
    pub lock_file: PathBuf,
    pub request: AssignRequest,
    pub legacy_handle: String,
}

pub enum AddressSource {
    InProcess(Box<LocalIpam>),
    Delegated { plugin: PathBuf, stdin: Vec<u8> },
}

impl AddressSource {
    pub fn new(
        conf: &NetConf,
        inv: &Invocation,
        identity: &Identity,
        client: &Client,
        stdin: &[u8],
    ) -> Result<AddressSource, CniError> {
        if conf.ipam.is_tortie() {
            return Ok(AddressSource::InProcess(Box::new(LocalIpam {
                ipam: Ipam::new(client.clone()),
                lock_file: conf.ipam_lock_file(),
                request: assign_request(conf, inv, identity)?,
                legacy_handle: identity.legacy_handle(),
            })));
        }
        if conf.ipam.plugin_type.is_empty() {
            return Err(CniError::invalid_config(
                "the network configuration has no ipam.type",
            ));
        }
        Ok(AddressSource::Delegated {
            plugin: delegate::find_plugin(&conf.ipam.plugin_type, &inv.path)?,
            stdin: stdin.to_vec(),
        })
    }

    /// Assigns the workload's addresses.
    pub async fn add(&self) -> Result<Addresses, CniError> {
        let addresses = match self {
            AddressSource::InProcess(local) => Addresses {
                ips: allocation::assign(&local.ipam, &local.lock_file, &local.request).await?,
                ..Addresses::default()
            },
            AddressSource::Delegated { plugin, stdin } => {
                let output = delegate::run(plugin, Command::Add, stdin).await?;
                let value = output.ok_or_else(|| {
                    CniError::internal(format!(
                        "IPAM plugin {} printed no result",
                        plugin.display()
                    ))
                })?;
                let result = CniResult::parse("IPAM result", &value)?;
                Addresses {
                    ips: result.ips.iter().map(|ip| ip.address).collect(),
                    routes: result.routes,
                    dns: Some(result.dns).filter(|d| *d != Dns::default()),
                }
            }
        };
        if addresses.ips.is_empty() {
            return Err(CniError::internal(
                "IPAM plugin returned no IP addresses in result",
            ));
        }
        Ok(addresses)
    }

    /// Releases the workload's addresses; nothing to release is success.
    pub async fn del(&self) -> Result<(), CniError> {
        match self {
            AddressSource::InProcess(local) => {
                let handles = [local.request.handle.clone(), local.legacy_handle.clone()];
                allocation::release(&local.ipam, &local.lock_file, &handles).await
            }
            AddressSource::Delegated { plugin, stdin } => {
                delegate::run(plugin, Command::Del, stdin).await.map(drop)
            }
        }
    }

    /// Problems with the allocation behind `prev`.
    pub async fn check(&self, prev: &CniResult) -> Result<Vec<String>, CniError> {
        match self {
            AddressSource::InProcess(local) => {
                allocation::verify(&local.ipam, &local.request.handle, &prev.addresses()).await
            }
            AddressSource::Delegated { plugin, stdin } => {
                match delegate::run(plugin, Command::Check, stdin).await {
                    Ok(_) => Ok(Vec::new()),
                    Err(e) => Ok(vec![format!("IPAM CHECK failed: {}", e.msg)]),
                }
            }
        }
    }
}
