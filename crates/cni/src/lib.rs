//! tortie-cni: the CNI plugins (cni.md). One binary serves both, chosen by
//! the name it is run as: `tortie-cni` (alias `calico`) is the interface
//! plugin — addresses from IPAM, a veth into the container, routes, the
//! WorkloadEndpoint; `tortie-ipam` (alias `calico-ipam`) is the IPAM
//! plugin. Both speak CNI 0.1.0 to 1.1.0: ADD, DEL, CHECK, VERSION, STATUS
//! and GC.
//!
//! Layout: [`invocation`] (the `CNI_*` environment), [`config`] (stdin),
//! [`version`], [`result`] (results of every version), [`error`] (the
//! error object and codes), [`identity`] (names and handles), [`store`]
//! (datastore and its lock), [`allocation`] (the IPAM work, also run
//! in-process), [`source`] and [`delegate`] (where addresses come from),
//! [`netns`], [`netlink`], [`sysctl`] and [`dataplane`] (the kernel side),
//! [`endpoint`] (WorkloadEndpoint and Profile), [`interface`],
//! [`ipam_plugin`] and [`maintenance`] (the commands), [`logging`].
//!
//! Hard cases owned here: every failure — including a panic — becomes a
//! CNI error object on stdout with a non-zero exit; the error's
//! `cniVersion` is the requested one when usable; the environment and
//! stdin are injected ([`run_with`]) so the protocol layer is testable
//! without a runtime.

pub mod allocation;
pub mod config;
pub mod context;
pub mod dataplane;
pub mod delegate;
pub mod endpoint;
pub mod error;
pub mod identity;
pub mod interface;
pub mod invocation;
pub mod ipam_plugin;
pub mod logging;
pub mod maintenance;
pub mod netlink;
pub mod result;
pub mod source;
pub mod store;
pub mod version;

// Shared with the node daemon's reconcilers; re-exported so the plugin's
// modules keep their paths.
pub use tortie_dataplane::{netns, sysctl};

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::config::NetConf;
use crate::context::Context;
use crate::error::CniError;
use crate::invocation::{Command, Invocation};
use crate::version::{CniVersion, SUPPORTED, version_reply};

/// Which plugin the binary runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginKind {
    /// `tortie-cni` / `calico`: the interface plugin.
    Interface,
    /// `tortie-ipam` / `calico-ipam`: the IPAM plugin.
    Ipam,
}

impl PluginKind {
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Interface => "tortie-cni",
            PluginKind::Ipam => "tortie-ipam",
        }
    }
}

/// The plugin a program name (`argv[0]`, any directory) selects, if any.
pub fn plugin_kind_from_argv0(argv0: &OsStr) -> Option<PluginKind> {
    match Path::new(argv0).file_name()?.to_str()? {
        "tortie-cni" | "calico" => Some(PluginKind::Interface),
        "tortie-ipam" | "calico-ipam" => Some(PluginKind::Ipam),
        _ => None,
    }
}

/// What a run prints and how it exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginOutput {
    pub stdout: Vec<u8>,
    pub success: bool,
}

impl PluginOutput {
    fn json(value: &serde_json::Value, success: bool) -> PluginOutput {
        let mut stdout = serde_json::to_vec_pretty(value).expect("JSON values always serialise");
        stdout.push(b'\n');
        PluginOutput { stdout, success }
    }

    fn error(err: &CniError, version: CniVersion) -> PluginOutput {
        PluginOutput::json(&err.to_json(version.as_str()), false)
    }

    fn empty() -> PluginOutput {
        PluginOutput {
            stdout: Vec::new(),
            success: true,
        }
    }
}

/// Runs the plugin as a CNI runtime calls it: environment, stdin, stdout,
/// exit status. `-v` prints the version instead.
pub fn run_plugin(kind: PluginKind) -> ExitCode {
    if matches!(std::env::args().nth(1).as_deref(), Some("-v" | "--version")) {
        let list: Vec<&str> = SUPPORTED.iter().map(|v| v.as_str()).collect();
        println!(
            "{} v{}\nCNI protocol versions supported: {}",
            kind.name(),
            env!("CARGO_PKG_VERSION"),
            list.join(", ")
        );
        return ExitCode::SUCCESS;
    }
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let env = |name: &str| std::env::var(name).ok();
    let output = match read {
        Ok(_) => run_with(kind, &env, &stdin),
        Err(e) => PluginOutput::error(
            &CniError::new(
                error::codes::DECODING_FAILURE,
                format!("cannot read stdin: {e}"),
            ),
            CniVersion::LATEST,
        ),
    };
    let mut out = std::io::stdout().lock();
    let written = out.write_all(&output.stdout).and_then(|()| out.flush());
    if output.success && written.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One run with an injected environment and stdin.
pub fn run_with(
    kind: PluginKind,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> PluginOutput {
    let inv = Invocation::from_env(env);
    if let Ok(inv) = &inv
        && inv.command == Command::Version
    {
        return PluginOutput::json(&version_reply(), true);
    }
    let conf = NetConf::parse(stdin);
    let requested = conf.as_ref().ok().map(NetConf::version);
    let error_version = match requested {
        Some(Ok(v)) => v,
        _ => CniVersion::LATEST,
    };
    logging::init(
        conf.as_ref().ok().and_then(|c| c.log_level.as_deref()),
        conf.as_ref().ok().and_then(|c| c.log_file_path.as_deref()),
    );
    let prepared = inv.and_then(|inv| {
        let conf = conf?;
        conf.validate()?;
        let version = match conf.version() {
            Ok(v) => v,
            // Cleanup must not fail on a version string (cni.md §6).
            Err(_) if inv.command == Command::Del => CniVersion::LATEST,
            Err(e) => return Err(e),
        };
        Ok(Context {
            inv,
            conf,
            version,
            stdin,
            env,
        })
    });
    let ctx = match prepared {
        Ok(ctx) => ctx,
        Err(e) => {
            tracing::error!(plugin = kind.name(), error = %e, code = e.code, "invalid invocation");
            return PluginOutput::error(&e, error_version);
        }
    };
    let span = tracing::info_span!(
        "cni",
        plugin = kind.name(),
        command = ctx.inv.command.name(),
        container = %ctx.inv.container_id,
        network = %ctx.conf.name,
    );
    let _entered = span.enter();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(kind, &ctx)))
        .unwrap_or_else(|panic| {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(CniError::internal(format!(
                "{} panicked during {}: {text}",
                kind.name(),
                ctx.inv.command.name()
            )))
        });
    match outcome {
        Ok(Some(result)) => PluginOutput::json(&result.render(ctx.version), true),
        Ok(None) => PluginOutput::empty(),
        Err(e) => {
            tracing::error!(error = %e, code = e.code, "command failed");
            PluginOutput::error(&e, ctx.version)
        }
    }
}

/// Runs one command to completion on a single-threaded runtime.
fn dispatch(kind: PluginKind, ctx: &Context<'_>) -> Result<Option<result::CniResult>, CniError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::internal(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(async {
        match (kind, ctx.inv.command) {
            (_, Command::Version) => Ok(None),
            (PluginKind::Interface, Command::Add) => interface::add::add(ctx).await.map(Some),
            (PluginKind::Interface, Command::Del) => interface::del::del(ctx).await.map(|()| None),
            (PluginKind::Interface, Command::Check) => {
                interface::check::check(ctx).await.map(|()| None)
            }
            (PluginKind::Ipam, Command::Add) => ipam_plugin::add(ctx).await.map(Some),
            (PluginKind::Ipam, Command::Del) => ipam_plugin::del(ctx).await.map(|()| None),
            (PluginKind::Ipam, Command::Check) => ipam_plugin::check(ctx).await.map(|()| None),
            (_, Command::Gc) => maintenance::gc(ctx, kind == PluginKind::Ipam)
                .await
                .map(|()| None),
            (_, Command::Status) => maintenance::status(ctx, kind == PluginKind::Ipam)
                .await
                .map(|()| None),
        }
    });
    // Everything was awaited; idle blocking threads need not be waited for.
    runtime.shutdown_background();
    outcome
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn run(kind: PluginKind, vars: &[(&str, &str)], stdin: &str) -> (serde_json::Value, bool) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let out = run_with(kind, &|name| map.get(name).cloned(), stdin.as_bytes());
        let value = if out.stdout.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&out.stdout).expect("stdout is JSON")
        };
        (value, out.success)
    }

    fn add_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut vars = vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/nonexistent/netns"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        vars.extend_from_slice(extra);
        vars
    }

    #[test]
    fn argv0_selects_the_plugin() {
        for (name, kind) in [
            ("/opt/cni/bin/tortie-cni", Some(PluginKind::Interface)),
            ("calico", Some(PluginKind::Interface)),
            ("./tortie-ipam", Some(PluginKind::Ipam)),
            ("/usr/lib/cni/calico-ipam", Some(PluginKind::Ipam)),
            ("tortie", None),
            ("", None),
        ] {
            assert_eq!(plugin_kind_from_argv0(OsStr::new(name)), kind, "{name}");
        }
    }

    #[test]
    fn version_needs_no_config() {
        let (out, ok) = run(PluginKind::Ipam, &[("CNI_COMMAND", "VERSION")], "");
        assert!(ok);
        assert_eq!(out["cniVersion"], "1.1.0");
        assert!(
            out["supportedVersions"]
                .as_array()
                .is_some_and(|l| l.len() == 7)
        );
    }

    #[test]
    fn bad_input_gets_error_objects() {
        let (out, ok) = run(PluginKind::Interface, &add_env(&[]), "{nope");
        assert!(!ok);
        assert_eq!(out["code"], 6);
        assert_eq!(out["cniVersion"], "1.1.0");

        let (out, _) = run(
            PluginKind::Interface,
            &add_env(&[]),
            r#"{"cniVersion": "7.0.0", "name": "n", "type": "tortie-cni"}"#,
        );
        assert_eq!(out["code"], 1);
        assert!(out["msg"].as_str().is_some_and(|m| m.contains("7.0.0")));

        let (out, _) = run(
            PluginKind::Interface,
            &[("CNI_COMMAND", "ADD")],
            r#"{"cniVersion": "0.4.0", "name": "n"}"#,
        );
        assert_eq!(out["code"], 4);
        assert_eq!(out["cniVersion"], "0.4.0");

        let (out, _) = run(
            PluginKind::Interface,
            &add_env(&[]),
            r#"{"cniVersion": "1.0.0", "type": "tortie-cni"}"#,
        );
        assert_eq!(out["code"], 7);
    }

    #[test]
    fn missing_netns_is_unknown_container() {
        let (out, ok) = run(
            PluginKind::Interface,
            &add_env(&[]),
            r#"{"cniVersion": "1.0.0", "name": "n", "type": "tortie-cni",
                "datastore": "embedded:/nonexistent/ds.db", "ipam": {"type": "tortie-ipam"}}"#,
        );
        assert!(!ok);
        assert_eq!(out["code"], 3, "{out}");
    }

    #[test]
    fn version_gates_check_status_and_gc() {
        let mut check = add_env(&[]);
        check[0] = ("CNI_COMMAND", "CHECK");
        let (out, _) = run(
            PluginKind::Ipam,
            &check,
            r#"{"cniVersion": "0.3.1", "name": "n", "ipam": {"type": "tortie-ipam"}}"#,
        );
        assert_eq!(out["code"], 1);
        assert!(
            out["msg"]
                .as_str()
                .is_some_and(|m| m.contains("does not allow CHECK"))
        );
        let (out, _) = run(
            PluginKind::Interface,
            &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")],
            r#"{"cniVersion": "1.0.0", "name": "n"}"#,
        );
        assert_eq!(out["code"], 1);
    }

    #[test]
    fn status_of_a_missing_datastore_is_50() {
        let (out, ok) = run(
            PluginKind::Interface,
            &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")],
            r#"{"cniVersion": "1.1.0", "name": "n", "nodename": "n1",
                "datastore": "embedded:/nonexistent/ds.db", "ipam": {"type": "tortie-ipam"}}"#,
        );
        assert!(!ok);
        assert_eq!(out["code"], 50, "{out}");
    }
}
