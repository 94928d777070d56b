//! Podman runs containers on a tortie network (root): Debian's podman 4.3
//! with runc and its CNI network backend, a busybox-static directory as
//! the root filesystem, `tortie-cni` chained with `portmap`. A container
//! gets its address, reaches another container, and its published port
//! answers from the host.
//!
//! Workarounds for this machine (all scoped to the test's own files):
//! `containers.conf` selects the CNI backend, our plugin directory and
//! config directory, and plain cgroups; storage is vfs under a temporary
//! directory; runc (crun 1.8 refuses the mixed cgroup layout); explicit
//! ulimits; the lab's "host" namespace is entered with nsenter (not `ip
//! netns exec`, which hides the cgroup filesystem); `--rootfs` options come
//! before the rootfs path. Every podman call is bounded; containers are
//! removed with `rm -f` when the test ends, however it ends.

mod cni_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cni_support::{Lab, run_bounded};
use serde_json::json;

const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);

struct Podman<'a> {
    lab: &'a Lab,
    dir: PathBuf,
}

impl Podman<'_> {
    fn command(&self) -> Command {
        let mut c = self.lab.host.command("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--storage-driver", "vfs"]);
        c
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let mut c = self.command();
        c.args(args);
        let out = run_bounded(&mut c, b"", PODMAN_TIMEOUT)?;
        ensure!(
            out.status == Some(0),
            "podman {args:?} failed ({:?}): {}{}",
            out.status,
            out.stdout,
            out.stderr
        );
        Ok(out.stdout.trim().to_string())
    }

    /// `podman run` of busybox from the directory rootfs on the network.
    fn run_container(&self, extra: &[&str], command: &[&str]) -> Result<String> {
        let rootfs = self.dir.join("rootfs");
        let rootfs = rootfs.to_str().context("rootfs path")?;
        let mut args = vec![
            "run",
            "--network",
            "tortienet",
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--rootfs", rootfs]);
        args.extend_from_slice(command);
        self.run(&args)
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        let mut c = self.command();
        c.args(["rm", "-f", "-a", "-t", "0"]);
        let _ = run_bounded(&mut c, b"", PODMAN_TIMEOUT);
    }
}

fn write_rootfs(root: &Path) -> Result<()> {
    for dir in ["bin", "etc", "proc", "sys", "dev", "tmp", "run", "www"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    for applet in ["sh", "ping", "httpd", "sleep", "ip"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(root.join("www/index.html"), "hello-from-podman\n")?;
    Ok(())
}

#[test]
fn root_podman_containers_on_a_tortie_network() -> Result<()> {
    let lab = Lab::new()?;
    lab.pools(&[("pool4", "10.66.0.0/16", 26)])?;
    let dir = lab.dir.path().join("podman");
    let net_dir = dir.join("net.d");
    std::fs::create_dir_all(&net_dir)?;
    write_rootfs(&dir.join("rootfs"))?;
    let mut first = lab.conf("1.0.0", json!({}));
    if let Some(o) = first.as_object_mut() {
        o.remove("name");
        o.remove("cniVersion");
    }
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "tortienet",
        "plugins": [first, {"type": "portmap", "capabilities": {"portMappings": true}}],
    });
    std::fs::write(
        net_dir.join("tortie.conflist"),
        serde_json::to_vec_pretty(&conflist)?,
    )?;
    std::fs::write(
        dir.join("containers.conf"),
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]\n\
             network_config_dir = \"{}\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n",
            lab.bin_dir.display(),
            net_dir.display()
        ),
    )?;
    let podman = Podman { lab: &lab, dir };

    podman.run_container(
        &["-d", "--name", "web", "-p", "8080:80"],
        &["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
    )?;
    let ip = podman.run(&[
        "inspect",
        "web",
        "--format",
        "{{.NetworkSettings.Networks.tortienet.IPAddress}}",
    ])?;
    ensure!(ip.starts_with("10.66."), "web's address: {ip:?}");
    let weps = lab.workload_endpoints()?;
    ensure!(weps.len() == 1, "{weps:?}");

    // Another container reaches it.
    let ping = podman.run_container(
        &["--rm", "--name", "client"],
        &["/bin/busybox", "ping", "-c", "2", "-W", "2", &ip],
    )?;
    ensure!(ping.contains("2 packets received"), "{ping}");

    // The published port answers from the host.
    let mut body = String::new();
    for _ in 0..50 {
        let out = run_bounded(
            lab.host
                .command("curl")
                .args(["-s", "-m", "2", "http://192.0.2.1:8080/index.html"]),
            b"",
            Duration::from_secs(10),
        )?;
        body = out.stdout;
        if body.contains("hello-from-podman") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(body.contains("hello-from-podman"), "curl got {body:?}");

    podman.run(&["rm", "-f", "-t", "0", "web"])?;
    ensure!(
        lab.workload_endpoints()?.is_empty(),
        "podman's DEL removed the endpoint"
    );
    ensure!(
        lab.allocations()?.is_empty(),
        "podman's DEL released the address"
    );
    Ok(())
}
