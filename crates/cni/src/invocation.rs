//! The `CNI_*` environment of one invocation (CNI SPEC "Parameters"):
//! which command, which container, which namespace and interface, the
//! `CNI_ARGS` pairs and the plugin search path.
//!
//! Hard cases: which variables each command needs (DEL may have no netns;
//! VERSION needs nothing); the character rules for container IDs and
//! interface names that libcni's skeleton enforces; `CNI_ARGS` pairs
//! without `=` (code 4). Calico always behaves as if `IgnoreUnknown=1` was
//! given, and so do we: unknown keys are kept but never an error. The
//! environment is injected (a lookup function) so tests need no process
//! environment.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::error::CniError;

/// `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(text: &str) -> Result<Command, CniError> {
        match text {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "VERSION" => Ok(Command::Version),
            "STATUS" => Ok(Command::Status),
            "GC" => Ok(Command::Gc),
            other => Err(CniError::invalid_env(format!(
                "unknown CNI_COMMAND {other:?}; expected ADD, DEL, CHECK, VERSION, STATUS or GC"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    /// Whether the command concerns one container attachment.
    fn per_container(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// `CNI_ARGS`: `K=V` pairs separated by `;`, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    pub fn parse(text: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for item in text.split(';').filter(|s| !s.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(CniError::invalid_env(format!(
                    "CNI_ARGS: invalid pair {item:?}: expected KEY=VALUE"
                )));
            };
            if key.is_empty() {
                return Err(CniError::invalid_env(format!(
                    "CNI_ARGS: invalid pair {item:?}: the key is empty"
                )));
            }
            pairs.push((key.to_string(), value.to_string()));
        }
        Ok(CniArgs { pairs })
    }

    /// The last value given for `key` (later pairs win), if not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `K8S_POD_NAMESPACE` and `K8S_POD_NAME`, when both are given.
    pub fn k8s_pod(&self) -> Option<(&str, &str)> {
        Some((self.get("K8S_POD_NAMESPACE")?, self.get("K8S_POD_NAME")?))
    }

    /// `IP=<addr>[,<addr>]`: specific addresses requested from IPAM.
    pub fn requested_ips(&self) -> Result<Vec<IpAddr>, CniError> {
        let Some(list) = self.get("IP") else {
            return Ok(Vec::new());
        };
        list.split(',')
            .map(|item| {
                item.trim().parse::<IpAddr>().map_err(|_| {
                    CniError::invalid_env(format!("CNI_ARGS: IP={item:?} is not an IP address"))
                })
            })
            .collect()
    }
}

/// Everything the runtime told us through the environment.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// Empty when not given (allowed for DEL, STATUS, GC, VERSION).
    pub netns: String,
    pub ifname: String,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
}

/// Container IDs: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (libcni's rule).
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(CniError::invalid_env(format!(
            "CNI_CONTAINERID {id:?} has invalid characters: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
        )));
    }
    Ok(())
}

/// Interface names: 1-15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let problem = if name.len() > 15 {
        Some("is longer than 15 characters")
    } else if name == "." || name == ".." {
        Some("may not be . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("may not contain '/', ':' or whitespace")
    } else {
        None
    };
    match problem {
        Some(why) => Err(CniError::invalid_env(format!("CNI_IFNAME {name:?} {why}"))),
        None => Ok(()),
    }
}

impl Invocation {
    /// Reads the `CNI_*` variables through `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Invocation, CniError> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let command = match var("CNI_COMMAND") {
            Some(c) => Command::parse(&c)?,
            None => {
                return Err(CniError::invalid_env(
                    "required env variables [CNI_COMMAND] missing",
                ));
            }
        };
        let mut missing = Vec::new();
        let mut require = |name: &'static str, needed: bool| {
            let value = var(name);
            if needed && value.is_none() {
                missing.push(name);
            }
            value.unwrap_or_default()
        };
        let per_container = command.per_container();
        let container_id = require("CNI_CONTAINERID", per_container);
        let netns = require(
            "CNI_NETNS",
            matches!(command, Command::Add | Command::Check),
        );
        let ifname = require("CNI_IFNAME", per_container);
        let path = require("CNI_PATH", command != Command::Version);
        if !missing.is_empty() {
            return Err(CniError::invalid_env(format!(
                "required env variables [{}] missing",
                missing.join(", ")
            )));
        }
        if per_container {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
        }
        let args = CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?;
        Ok(Invocation {
            command,
            container_id,
            netns,
            ifname,
            args,
            path: std::env::split_paths(&path)
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn invocation(vars: &[(&str, &str)]) -> Result<Invocation, CniError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Invocation::from_env(&|name| map.get(name).cloned())
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn reads_a_complete_add() {
        let mut vars = ADD.to_vec();
        vars.push((
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-1;FOO=bar",
        ));
        let inv = invocation(&vars).expect("valid");
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.args.k8s_pod(), Some(("ns1", "web-1")));
        assert_eq!(inv.args.get("FOO"), Some("bar"));
        assert_eq!(inv.path.len(), 2);
    }

    #[test]
    fn names_every_missing_variable() {
        let err = invocation(&[("CNI_COMMAND", "ADD")]).expect_err("missing");
        assert_eq!(err.code, 4);
        assert_eq!(
            err.msg,
            "required env variables [CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH] missing"
        );
        let err = invocation(&[]).expect_err("no command");
        assert!(err.msg.contains("CNI_COMMAND"), "{}", err.msg);
        let err = invocation(&[("CNI_COMMAND", "FROB")]).expect_err("bad command");
        assert_eq!(err.code, 4);
    }

    #[test]
    fn del_needs_no_netns_and_version_needs_nothing() {
        let del: Vec<_> = ADD
            .iter()
            .map(|&(k, v)| {
                if k == "CNI_COMMAND" {
                    (k, "DEL")
                } else {
                    (k, v)
                }
            })
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        assert!(invocation(&del).is_ok());
        assert!(invocation(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(invocation(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")]).is_ok());
    }

    #[test]
    fn rejects_bad_ids_names_and_pairs() {
        for (key, value, needle) in [
            ("CNI_CONTAINERID", "-abc", "CNI_CONTAINERID"),
            ("CNI_CONTAINERID", "a b", "CNI_CONTAINERID"),
            ("CNI_IFNAME", "averyveryverylongname", "longer than 15"),
            ("CNI_IFNAME", "eth/0", "'/'"),
            ("CNI_ARGS", "K8S_POD_NAME", "invalid pair"),
            ("CNI_ARGS", "=x", "key is empty"),
        ] {
            let vars: Vec<_> = ADD
                .iter()
                .copied()
                .filter(|(k, _)| *k != key)
                .chain([(key, value)])
                .collect();
            let err = invocation(&vars).expect_err(value);
            assert_eq!(err.code, 4, "{value}");
            assert!(err.msg.contains(needle), "{}", err.msg);
        }
    }

    #[test]
    fn requested_ips_parse_or_fail_with_code_4() {
        let args = CniArgs::parse("IP=10.0.0.5,fd00::5").expect("pairs");
        assert_eq!(args.requested_ips().expect("ips").len(), 2);
        let bad = CniArgs::parse("IP=10.0.0.300").expect("pairs");
        assert_eq!(bad.requested_ips().expect_err("bad ip").code, 4);
        assert!(
            CniArgs::parse("")
                .expect("empty")
                .requested_ips()
                .expect("none")
                .is_empty()
        );
    }
}
