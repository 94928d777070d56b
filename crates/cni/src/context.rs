//! One invocation's inputs — environment, configuration, requested
//! version, raw stdin — and the values every command derives from them
//! (node, identity, datastore, previous result, valid attachments).
//!
//! Hard case: which version rules apply to which command: CHECK needs
//! 0.4.0, STATUS and GC need 1.1.0 (code 1 otherwise), and DEL must work
//! even when the version is one we do not know (cleanup should not fail
//! on a version string).

use std::collections::BTreeSet;
use std::path::Path;

use tortie_datastore::DatastoreSpec;

use crate::config::{DEFAULT_NODENAME_FILE, MTU_FILE, NetConf};
use crate::error::{CniError, codes};
use crate::identity::{Identity, interface_prefix};
use crate::invocation::{Command, Invocation};
use crate::result::CniResult;
use crate::version::CniVersion;

pub struct Context<'a> {
    pub inv: Invocation,
    pub conf: NetConf,
    /// The requested version (the newest one when DEL names an unknown one).
    pub version: CniVersion,
    pub stdin: &'a [u8],
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Context<'_> {
    pub fn node(&self) -> Result<String, CniError> {
        self.conf.node_name(Path::new(DEFAULT_NODENAME_FILE))
    }

    pub fn mtu(&self) -> Result<u32, CniError> {
        self.conf.mtu(Path::new(MTU_FILE))
    }

    pub fn identity(&self) -> Result<Identity, CniError> {
        Ok(Identity::new(&self.inv, &self.node()?, &self.conf.name))
    }

    pub fn datastore(&self) -> Result<DatastoreSpec, CniError> {
        self.conf.datastore_spec(self.env)
    }

    pub fn interface_prefix(&self) -> String {
        interface_prefix(self.env)
    }

    /// Refuses a command the requested version does not have.
    pub fn require_version_for(&self, command: Command) -> Result<(), CniError> {
        let allowed = match command {
            Command::Check => self.version.allows_check(),
            Command::Status | Command::Gc => self.version.allows_status_and_gc(),
            _ => true,
        };
        if allowed {
            Ok(())
        } else {
            Err(CniError::new(
                codes::INCOMPATIBLE_VERSION,
                format!(
                    "config version {} does not allow {}",
                    self.version,
                    command.name()
                ),
            ))
        }
    }

    /// The `prevResult` CHECK works from.
    pub fn prev_result(&self) -> Result<CniResult, CniError> {
        match &self.conf.prev_result {
            Some(value) => CniResult::parse("prevResult", value),
            None => Err(CniError::invalid_config(
                "CHECK needs the previous result (prevResult) in the network configuration",
            )),
        }
    }

    /// The container IDs in `cni.dev/valid-attachments` (GC).
    pub fn valid_containers(&self) -> Result<BTreeSet<String>, CniError> {
        match &self.conf.valid_attachments {
            Some(list) => Ok(list.iter().map(|a| a.container_id.clone()).collect()),
            None => Err(CniError::invalid_config(
                "GC needs cni.dev/valid-attachments in the network configuration",
            )),
        }
    }
}
