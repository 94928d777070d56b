//! Running the real `tortie` binary against a datastore of the test's own,
//! shared by the CLI test files.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Cli {
    pub dir: tempfile::TempDir,
    datastore: Option<String>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn fails(self) -> Run {
        assert_eq!(
            self.code, 1,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Cli {
    /// A CLI on a fresh embedded datastore in a temporary directory.
    pub fn new() -> Cli {
        Cli {
            dir: tempfile::tempdir().expect("temp dir"),
            datastore: None,
        }
    }

    /// A CLI on the given datastore (e.g. an etcd cluster of the test's own).
    pub fn with_datastore(datastore: &str) -> Cli {
        Cli {
            dir: tempfile::tempdir().expect("temp dir"),
            datastore: Some(datastore.to_string()),
        }
    }

    pub fn datastore(&self) -> String {
        self.datastore
            .clone()
            .unwrap_or_else(|| format!("embedded:{}", self.dir.path().join("ds.db").display()))
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tortie"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TORTIE_DATASTORE", self.datastore());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command().args(args).output().expect("tortie runs"))
    }

    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tortie runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("tortie exits"))
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }

    pub fn apply(&self, text: &str) -> Run {
        self.run_stdin(&["apply", "-f", "-"], text)
    }

    /// Every resource of every kind as JSON, to compare whole datastores.
    pub fn dump(&self) -> String {
        let mut all = String::new();
        for kind in [
            "ippools",
            "tiers",
            "gnp",
            "np",
            "bgpconfig",
            "bgppeers",
            "bgpfilters",
            "gnetsets",
            "heps",
            "profiles",
            "felixconfig",
            "ipreservations",
            "netsets",
            "weps",
            "nodes",
        ] {
            let r = self.run(&["get", kind, "-A", "-o", "json"]);
            let r = if r.code == 0 {
                r
            } else {
                self.run(&["get", kind, "-o", "json"])
            };
            all.push_str(&r.stdout);
        }
        all
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures")
        .join(name)
}

pub fn pool(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n"
    )
}
