//! Delegation to another plugin (CNI SPEC "Delegated plugins"): find
//! `ipam.type` on `CNI_PATH`, run it with our environment (the command
//! possibly changed) and our stdin, and read its result or error object.
//!
//! Hard cases: the delegate's error object is passed through with its
//! code; a delegate that prints something else, hangs (bounded by
//! [`DELEGATE_TIMEOUT`], then killed — we only ever kill the child we
//! started) or cannot be found gets an error that names it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::error::{CniError, codes};
use crate::invocation::Command;

/// How long a delegated plugin may run.
pub const DELEGATE_TIMEOUT: Duration = Duration::from_secs(120);

/// Finds `name` in the plugin directories.
pub fn find_plugin(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    if name.is_empty() || name.contains('/') {
        return Err(CniError::invalid_config(format!(
            "invalid plugin type {name:?}"
        )));
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            CniError::invalid_config(format!(
                "failed to find plugin {name:?} in path [{}]",
                list.join(" ")
            ))
        })
}

/// Runs `plugin` for `command` with `stdin`; returns its parsed stdout
/// (`None` when it printed nothing, as DEL, CHECK, GC and STATUS may).
pub async fn run(
    plugin: &Path,
    command: Command,
    stdin: &[u8],
) -> Result<Option<serde_json::Value>, CniError> {
    let name = plugin.display().to_string();
    let mut child = tokio::process::Command::new(plugin)
        .env("CNI_COMMAND", command.name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CniError::internal(format!("cannot run delegated plugin {name}: {e}")))?;
    if let Some(mut input) = child.stdin.take() {
        match input.write_all(stdin).await {
            Ok(()) => {}
            // It exited without reading everything: its output says why.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                return Err(CniError::internal(format!(
                    "cannot write to delegated plugin {name}: {e}"
                )));
            }
        }
    }
    let output = match tokio::time::timeout(DELEGATE_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(CniError::internal(format!(
                "delegated plugin {name} failed: {e}"
            )));
        }
        Err(_) => {
            // Dropping the child (kill_on_drop) killed it.
            return Err(CniError::try_again(format!(
                "delegated plugin {name} did not answer {} within {} s",
                command.name(),
                DELEGATE_TIMEOUT.as_secs()
            )));
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let parsed = if text.trim().is_empty() {
        None
    } else {
        Some(
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                CniError::new(
                    codes::DECODING_FAILURE,
                    format!("delegated plugin {name} printed something that is not JSON: {e}"),
                )
            })?,
        )
    };
    if output.status.success() {
        return Ok(parsed);
    }
    let from_object = parsed.as_ref().and_then(|v| {
        let code = v.get("code")?.as_u64()?;
        let msg = v.get("msg").and_then(|m| m.as_str()).unwrap_or_default();
        let details = v
            .get("details")
            .and_then(|d| d.as_str())
            .unwrap_or_default();
        Some(
            CniError::new(u32::try_from(code).unwrap_or(codes::INTERNAL), msg)
                .with_details(details),
        )
    });
    Err(from_object
        .unwrap_or_else(|| CniError::internal(format!("{}: {}", output.status, text.trim())))
        .context(format!("delegated plugin {name} {}", command.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_plugins() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("fake"), "").expect("write");
        let dirs = vec![PathBuf::from("/nonexistent"), dir.path().to_path_buf()];
        assert_eq!(find_plugin("fake", &dirs), Ok(dir.path().join("fake")));
        let err = find_plugin("host-local", &dirs).expect_err("missing");
        assert!(err.msg.contains("host-local"), "{}", err.msg);
        assert!(find_plugin("../x", &dirs).is_err());
    }

    #[tokio::test]
    async fn passes_error_objects_through_and_reads_results() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("plugin");
        // Written by a child process: a write descriptor of ours, inherited
        // by a child another test forks meanwhile, would make exec fail
        // with ETXTBSY.
        let body = "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then cat; exit 0; fi\n\
                    echo '{\"code\": 11, \"msg\": \"busy\"}'; exit 1\n";
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg("printf '%s' \"$1\" > \"$2\" && chmod +x \"$2\"")
            .arg("sh")
            .arg(body)
            .arg(&script)
            .status()
            .await
            .expect("write the script");
        assert!(status.success());
        let echoed = run(&script, Command::Add, br#"{"ips": []}"#)
            .await
            .expect("add");
        assert_eq!(echoed, Some(serde_json::json!({"ips": []})));
        let err = run(&script, Command::Del, b"{}")
            .await
            .expect_err("del fails");
        assert_eq!(err.code, 11);
        assert!(err.msg.contains("busy"), "{}", err.msg);
    }
}
