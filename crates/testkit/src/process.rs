//! One child process: finding the binary, spawning it with its output in a
//! log file, killing it for sure, and the tiny HTTP client used for etcd's
//! `/health` and `/metrics`.
//!
//! Hard cases:
//! - "Is it dead?" `kill -0` reports a zombie as alive, and a reaped PID
//!   can be reused. We hold the `Child`, send SIGKILL and then `wait()` for
//!   it: once `wait` returns the process is gone and reaped, nothing else
//!   to check.
//! - A program that never answers: every socket operation and every
//!   helper command has a time bound.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Finds an executable: `$override_var` if set, else the first `name` on
/// PATH (or in /usr/bin, /usr/local/bin); the error names the Debian
/// package that provides it.
pub(crate) fn find_binary(name: &str, override_var: &str, package: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(override_var).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{override_var}={} does not exist", path.display());
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::split_paths(&path_var)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name));
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{name} is not installed: install the Debian package {package} \
         (apt-get install {package}) or point {override_var} at the binary"
    )
}

/// Starts `binary` with `args`, stdout and stderr appended to `log`.
pub(crate) fn spawn(binary: &Path, args: &[String], log: &Path) -> Result<Child> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log file {}", log.display()))
    };
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// SIGKILLs the child and reaps it.
pub(crate) fn kill(child: &mut Child) -> Result<()> {
    let pid = child.id();
    // Fails only if the child was already reaped, which `wait` tolerates.
    let _ = child.kill();
    child
        .wait()
        .with_context(|| format!("waiting for process {pid} to exit"))?;
    Ok(())
}

/// Runs a command to completion within `timeout`, killing it if it takes
/// longer; returns its output (the caller checks the status).
pub(crate) fn run_bounded(command: &mut Command, timeout: Duration) -> Result<Output> {
    run_bounded_with_input(command, None, timeout)
}

/// Like [`run_bounded`], feeding `input` (if any) on standard input.
/// The input is written and the output read on threads while the command
/// runs: a command that fills a pipe, or does not read its input, must
/// still end at the deadline.
pub(crate) fn run_bounded_with_input(
    command: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        // A write error means the command exited or was killed; its
        // status says what happened.
        std::thread::spawn(move || stdin.write_all(&input));
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Output {
                status,
                stdout: stdout.join().unwrap_or_default(),
                stderr: stderr.join().unwrap_or_default(),
            });
        }
        if Instant::now() >= deadline {
            kill(&mut child)?;
            bail!("{command:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads a pipe to its end on a thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the output early; the status still counts.
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// The last `lines` lines of a log file ("" if unreadable).
pub(crate) fn log_tail(log: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read(log) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A plain HTTP/1.0 GET on a loopback port: (status code, body).
pub(crate) fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response without a header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("a malformed HTTP status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_name_their_package() {
        let err = find_binary(
            "tortie-no-such-binary",
            "TORTIE_TESTKIT_UNSET_VARIABLE",
            "etcd-server",
        )
        .expect_err("not installed");
        let message = err.to_string();
        assert!(
            message.contains("install the Debian package etcd-server"),
            "{message}"
        );
    }

    #[test]
    fn bounded_commands_are_killed_at_the_deadline() -> Result<()> {
        let started = Instant::now();
        let result = run_bounded(Command::new("sleep").arg("10"), Duration::from_millis(200));
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        let output = run_bounded(Command::new("true").arg(""), Duration::from_secs(5))?;
        assert!(output.status.success());
        Ok(())
    }

    #[test]
    fn bounded_commands_take_input_and_give_large_output() -> Result<()> {
        // More than a pipe buffer (64 KiB) each way.
        let input = "x".repeat(1 << 20);
        let output = run_bounded_with_input(
            &mut Command::new("cat"),
            Some(input.as_bytes()),
            Duration::from_secs(10),
        )?;
        assert!(output.status.success());
        assert_eq!(output.stdout.len(), input.len());
        Ok(())
    }

    #[test]
    fn log_tails_keep_the_last_lines() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("x.log");
        std::fs::write(&log, "1\n2\n3\n4\n")?;
        assert_eq!(log_tail(&log, 2), "3\n4");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
        Ok(())
    }
}
