//! Global options and how the CLI finds its datastore.
//!
//! Precedence: `--datastore` > `TORTIE_DATASTORE` > the calicoctl config file
//! (`-c FILE`, or `/etc/calico/calicoctl.cfg` when it exists) > Calico's
//! environment (`DATASTORE_TYPE`, `ETCD_ENDPOINTS`, with `CALICO_` prefixes)
//! > the default embedded file. Before acting, commands compare their
//! > version with the cluster's (`ClusterInformation default`) unless
//! > `--allow-version-mismatch`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use tortie_client::{Client, TORTIE_VERSION};
use tortie_datastore::DatastoreSpec;

/// The calicoctl default config file, read only when it exists.
const DEFAULT_CONFIG_FILE: &str = "/etc/calico/calicoctl.cfg";

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Datastore: embedded:PATH or etcd:URL[,URL...] (default embedded:/var/lib/tortie/datastore.db)
    #[arg(long, global = true, value_name = "URL")]
    pub datastore: Option<String>,

    /// calicoctl client configuration file (CalicoAPIConfig)
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log level on stderr: panic, fatal, error, warn, info, debug
    #[arg(
        short = 'l',
        long = "log-level",
        global = true,
        default_value = "panic"
    )]
    pub log_level: String,

    /// Act even if the cluster was written by another tortie version
    #[arg(long, global = true)]
    pub allow_version_mismatch: bool,

    /// How long one datastore call may take, retries included, before the
    /// command fails (etcd; seconds)
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 15.0)]
    pub timeout: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: serde_json::Value,
    #[serde(default)]
    spec: ClientConfigSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientConfigSpec {
    #[serde(default)]
    datastore_type: String,
    #[serde(default)]
    etcd_endpoints: String,
    #[serde(default, rename = "etcdDiscoverySrv")]
    etcd_discovery_srv: String,
    #[serde(default)]
    etcd_username: String,
    #[serde(default)]
    etcd_password: String,
    #[serde(default)]
    etcd_key_file: String,
    #[serde(default)]
    etcd_cert_file: String,
    #[serde(default, rename = "etcdCACertFile")]
    etcd_ca_cert_file: String,
    #[serde(default, rename = "kubeconfig")]
    _kubeconfig: String,
}

/// `Some(value)` for a non-empty string.
fn set(s: &str) -> Option<String> {
    Some(s.to_string()).filter(|s| !s.is_empty())
}

fn spec_from_config_file(path: &Path) -> Result<DatastoreSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Error reading config file: {}", path.display()))?;
    let cfg: ClientConfigFile = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("invalid config file {}", path.display()))?;
    if cfg.api_version != "projectcalico.org/v3" {
        bail!(
            "invalid config file: unknown APIVersion '{}'",
            cfg.api_version
        );
    }
    if cfg.kind != "CalicoAPIConfig" {
        bail!(
            "invalid config file: expected kind 'CalicoAPIConfig', got '{}'",
            cfg.kind
        );
    }
    let spec = &cfg.spec;
    if !spec.etcd_discovery_srv.is_empty() {
        bail!(
            "{}: etcdDiscoverySrv is not supported by tortie; list the members in etcdEndpoints",
            path.display()
        );
    }
    match (spec.datastore_type.as_str(), spec.etcd_endpoints.is_empty()) {
        ("etcdv3", _) | ("", false) => {
            let endpoints = if spec.etcd_endpoints.is_empty() {
                "http://127.0.0.1:2379"
            } else {
                &spec.etcd_endpoints
            };
            let DatastoreSpec::Etcd(mut etcd) = DatastoreSpec::parse(&format!("etcd:{endpoints}"))?
            else {
                bail!(
                    "{}: etcdEndpoints {endpoints:?} do not name etcd members",
                    path.display()
                );
            };
            etcd.ca_file = set(&spec.etcd_ca_cert_file).map(PathBuf::from);
            etcd.cert_file = set(&spec.etcd_cert_file).map(PathBuf::from);
            etcd.key_file = set(&spec.etcd_key_file).map(PathBuf::from);
            etcd.username = set(&spec.etcd_username);
            etcd.password = set(&spec.etcd_password);
            if let Err(e) = etcd.validate() {
                bail!("{}: {e}", path.display());
            }
            Ok(DatastoreSpec::Etcd(etcd))
        }
        ("kubernetes", _) | ("", true) => bail!(
            "{}: the kubernetes datastore is not supported by tortie; set datastoreType: etcdv3 with etcdEndpoints, or use --datastore embedded:PATH",
            path.display()
        ),
        (other, _) => bail!(
            "{}: unknown datastoreType {other:?}: use etcdv3",
            path.display()
        ),
    }
}

impl GlobalArgs {
    /// Which datastore the options and environment name, with `--timeout`
    /// applied.
    pub fn datastore_spec(&self) -> Result<DatastoreSpec> {
        let mut spec = self.located_spec()?;
        if let DatastoreSpec::Etcd(etcd) = &mut spec {
            if !(self.timeout.is_finite() && self.timeout > 0.0 && self.timeout <= 3600.0) {
                bail!(
                    "--timeout {}: must be between 0 and 3600 seconds",
                    self.timeout
                );
            }
            let overall = std::time::Duration::from_secs_f64(self.timeout);
            etcd.timeouts.overall = overall;
            etcd.timeouts.request = etcd.timeouts.request.min(overall);
            etcd.timeouts.dial = etcd.timeouts.dial.min(overall);
        }
        Ok(spec)
    }

    fn located_spec(&self) -> Result<DatastoreSpec> {
        if let Some(flag) = &self.datastore {
            // TLS files and credentials still come from Calico's variables.
            return Ok(DatastoreSpec::resolve(Some(flag))?);
        }
        if std::env::var_os("TORTIE_DATASTORE").is_some() {
            return Ok(DatastoreSpec::resolve(None)?);
        }
        if let Some(path) = &self.config {
            return spec_from_config_file(path);
        }
        if Path::new(DEFAULT_CONFIG_FILE).exists() {
            return spec_from_config_file(Path::new(DEFAULT_CONFIG_FILE));
        }
        Ok(DatastoreSpec::resolve(None)?)
    }

    /// Opens the datastore.
    pub async fn client(&self) -> Result<Client> {
        let spec = self.datastore_spec()?;
        let ds = tortie_datastore::connect(&spec)
            .await
            .with_context(|| format!("cannot open the datastore {spec}"))?;
        Ok(Client::new(Arc::clone(&ds)))
    }

    /// Opens the datastore for a command that reads only, after the version check.
    pub async fn reading_client(&self) -> Result<Client> {
        let client = self.client().await?;
        self.check_version(&client).await?;
        Ok(client)
    }

    /// Opens the datastore for a command that writes: the cluster's built-in
    /// objects are created first if this is a new datastore.
    pub async fn writing_client(&self) -> Result<Client> {
        let client = self.client().await?;
        client.ensure_initialized().await?;
        self.check_version(&client).await?;
        Ok(client)
    }

    async fn check_version(&self, client: &Client) -> Result<()> {
        if self.allow_version_mismatch {
            return Ok(());
        }
        let info = client
            .cluster_information()
            .await
            .context("unable to get Cluster Information to verify version mismatch")?;
        match info {
            Some(info)
                if !info.calico_version.is_empty() && info.calico_version != TORTIE_VERSION =>
            {
                bail!(
                    "version mismatch.\nClient Version:   {TORTIE_VERSION}\nCluster Version:  {}\nUse --allow-version-mismatch to override",
                    info.calico_version
                )
            }
            _ => Ok(()),
        }
    }

    /// Sends logs at the chosen level to stderr.
    pub fn init_logging(&self) -> Result<()> {
        let level = match self.log_level.to_ascii_lowercase().as_str() {
            "panic" | "fatal" => "off",
            "error" => "error",
            "warn" | "warning" => "warn",
            "info" => "info",
            "debug" => "debug",
            "trace" => "trace",
            other => {
                bail!("invalid log level {other:?}: use panic, fatal, error, warn, info or debug")
            }
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(std::io::stderr)
            .try_init();
        Ok(())
    }
}
