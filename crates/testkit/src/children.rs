//! Tests that run copies of themselves in other processes (many writers
//! racing on one datastore, clients SIGKILLed mid-operation): the parent
//! re-executes its own test binary on one named child test, passes it its
//! part through environment variables, and reads back the one result line
//! the child prints.
//!
//! Hard cases: a child that hangs is bounded by the caller's deadline; a
//! child still running when the parent fails or returns is SIGKILLed by
//! PID and reaped (`Drop`), so no test leaves processes behind; a child
//! that dies or prints no result fails the parent with the child's whole
//! output, which is where the reason is.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

/// How often running children are looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

/// What a finished child reported.
#[derive(Debug, Clone)]
pub struct ChildReport {
    pub name: String,
    /// The text after the result marker on the child's result line.
    pub result: String,
    /// Everything the child wrote to stderr (its logs).
    pub stderr: String,
}

/// Prints `result` as a child's result line, for [`TestChildren`] to find.
pub fn print_child_result(marker: &str, result: &str) {
    println!("\n{marker}{result}");
}

/// The children of one test, killed by PID if still running when dropped.
pub struct TestChildren {
    /// The test the children run (`cargo test -- <name> --exact`).
    child_test: &'static str,
    /// What starts a child's result line.
    marker: &'static str,
    running: Vec<(String, Child)>,
}

impl TestChildren {
    pub fn new(child_test: &'static str, marker: &'static str) -> TestChildren {
        TestChildren {
            child_test,
            marker,
            running: Vec::new(),
        }
    }

    /// Starts child `name`: this test binary running only the child test,
    /// with `vars` in its environment.
    pub fn spawn(&mut self, name: &str, vars: &[(&str, String)]) -> Result<()> {
        let exe = std::env::current_exe().context("locating the test binary")?;
        let child = Command::new(exe)
            .args([
                self.child_test,
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(vars.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning child {name}"))?;
        self.running.push((name.to_owned(), child));
        Ok(())
    }

    /// Fails if a child has exited already (for children that run until
    /// they are told to stop).
    pub fn check_running(&mut self) -> Result<()> {
        for index in 0..self.running.len() {
            if self.running[index].1.try_wait()?.is_some() {
                let (name, child) = self.running.swap_remove(index);
                let output = child.wait_with_output()?;
                bail!("child {name} stopped early:\n{}", describe(&output));
            }
        }
        Ok(())
    }

    /// SIGKILLs every running child (by PID) and reaps it; returns how many
    /// were still running.
    pub fn kill_all(&mut self) -> usize {
        let mut killed = 0;
        for (name, mut child) in self.running.drain(..) {
            if let Ok(None) = child.try_wait() {
                if child.kill().is_ok() {
                    killed += 1;
                } else {
                    eprintln!("could not kill child {name} (pid {})", child.id());
                }
            }
            let _ = child.wait();
        }
        killed
    }

    /// Waits for every child; each must succeed and print a result line.
    pub async fn wait_all(&mut self, timeout: Duration) -> Result<Vec<ChildReport>> {
        self.wait_for(|_| true, timeout).await
    }

    /// Waits for the children `selected` picks; each must succeed and
    /// print a result line. The others keep running.
    pub async fn wait_for(
        &mut self,
        selected: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ChildReport>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reports = Vec::new();
        while self.running.iter().any(|(name, _)| selected(name)) {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "children still running after {timeout:?}"
            );
            let mut index = 0;
            while index < self.running.len() {
                let (name, child) = &mut self.running[index];
                if selected(name) && child.try_wait()?.is_some() {
                    let (name, child) = self.running.swap_remove(index);
                    let output = child.wait_with_output()?;
                    reports.push(self.report(name, &output)?);
                } else {
                    index += 1;
                }
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(reports)
    }

    fn report(&self, name: String, output: &Output) -> Result<ChildReport> {
        ensure!(
            output.status.success(),
            "child {name} failed:\n{}",
            describe(output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let result = stdout
            .lines()
            .find_map(|line| line.split_once(self.marker).map(|(_, r)| r.to_owned()))
            .with_context(|| format!("child {name} reported no result:\n{stdout}"))?;
        Ok(ChildReport {
            name,
            result,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

impl Drop for TestChildren {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A child's exit status and both outputs, for error messages.
fn describe(output: &Output) -> String {
    format!(
        "{}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
