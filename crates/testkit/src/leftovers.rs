//! Cleaning up after test processes that died without running `Drop`
//! (killed by a CI timeout, SIGKILLed by a developer).
//!
//! Everything the kit creates carries its owner's PID in its name,
//! `<prefix><owner pid>-…`: cluster directories
//! (`tortie-etcd-<pid>-<random>`) and network namespaces
//! (`tortie-test-<pid>-<n>-<tag>`). One whose owner process no longer
//! exists is a leftover. For a cluster directory, the etcd processes still
//! running from it (found by their command line, which names the
//! directory) are SIGKILLed and the directory removed; a namespace is
//! deleted. One whose owner PID exists is left alone, even if the PID was
//! reused by another program: better to keep garbage than to break a
//! running test.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::run_bounded;

/// The prefix of every cluster directory.
pub(crate) const DIR_PREFIX: &str = "tortie-etcd-";

/// Removes leftovers under `base`; failures are reported on stderr only
/// (a leftover must never fail a new test).
pub(crate) fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if !owner_is_gone(&entry.file_name().to_string_lossy(), DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        for pid in processes_using(&dir) {
            eprintln!(
                "tortie-testkit: killing leftover etcd process {pid} of {}",
                dir.display()
            );
            let killed = run_bounded(
                Command::new("kill").args(["-KILL", &pid.to_string()]),
                Duration::from_secs(5),
            );
            if let Err(err) = killed {
                eprintln!("tortie-testkit: cannot kill process {pid}: {err:#}");
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            eprintln!(
                "tortie-testkit: cannot remove leftover {}: {err}",
                dir.display()
            );
        }
    }
}

/// Deletes the network namespaces under `dir` (`/var/run/netns`) named
/// `<prefix><pid>-…` whose owner is gone; failures are reported on stderr
/// only.
pub(crate) fn sweep_netns(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !owner_is_gone(&name, prefix) {
            continue;
        }
        eprintln!("tortie-testkit: deleting leftover network namespace {name}");
        let deleted = run_bounded(
            Command::new("ip").args(["netns", "del", &name]),
            Duration::from_secs(30),
        );
        match deleted {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "tortie-testkit: cannot delete network namespace {name}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(err) => {
                eprintln!("tortie-testkit: cannot delete network namespace {name}: {err:#}")
            }
        }
    }
}

/// True if `name` is `<prefix><pid>-…` and process `pid` does not exist.
fn owner_is_gone(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|owner| !Path::new(&format!("/proc/{owner}")).exists())
}

/// Processes whose command line mentions `dir`.
fn processes_using(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .any(|arg| arg.contains(&needle))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_owners_directories_are_removed_live_ones_kept() -> anyhow::Result<()> {
        let base = tempfile::tempdir()?;
        // PIDs above the kernel's maximum (4194304) never exist.
        let dead = base.path().join(format!("{DIR_PREFIX}4999999-abc"));
        let alive = base
            .path()
            .join(format!("{DIR_PREFIX}{}-def", std::process::id()));
        let unrelated = base.path().join("something-else");
        for dir in [&dead, &alive, &unrelated] {
            std::fs::create_dir_all(dir.join("m0/data"))?;
        }
        sweep(base.path());
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(unrelated.exists());
        Ok(())
    }

    #[test]
    fn owners_are_read_from_names() {
        let me = std::process::id();
        assert!(owner_is_gone("p-4999999-0-x", "p-"));
        assert!(!owner_is_gone(&format!("p-{me}-0-x"), "p-"));
        assert!(!owner_is_gone("q-4999999-0-x", "p-"));
        assert!(!owner_is_gone("p-notapid-0", "p-"));
    }
}
