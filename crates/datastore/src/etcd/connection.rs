//! The client connection: TLS material, keepalive, authentication.
//!
//! Connecting does no network I/O: the client's balanced channel dials
//! lazily, so `connect()` returns at once whether or not etcd is up, and
//! a daemon's syncer reports the outage (`WaitForDatastore`) instead of
//! the daemon failing to start. Every later call is bounded by the retry
//! policy, so "etcd is down" is an `Unavailable` error within
//! `timeouts.overall`, never a hang.
//!
//! Authentication is lazy too: the first attempt of any call authenticates
//! (once, shared by concurrent callers) inside its own time bound, and a
//! failure is retried like any other. Expired tokens are renewed by the
//! client itself (`with_auto_token_refresh`). A server with authentication
//! disabled accepts us without a token (as Calico's client does).
//!
//! Hard case: TLS files are read at connect time, so a missing or
//! unreadable file is an `InvalidConfig` error naming the file, not a
//! retried transport error later.

use std::path::Path;

use etcd_client::{
    Certificate, Client, ConnectOptions, Identity, KvClient, TlsOptions, WatchClient,
};
use tokio::sync::OnceCell;

use super::config::EtcdConfig;
use super::retry::{CallError, classify, etcd_answer};
use crate::DatastoreError;

/// Largest response accepted (tonic's default is 4 MiB). Lists page by key
/// count and halve the page when a page still exceeds this.
pub(super) const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

pub(super) struct Connection {
    client: Client,
    options: ConnectOptions,
    credentials: Option<(String, String)>,
    authenticated: OnceCell<()>,
    target: String,
}

impl Connection {
    /// Builds the client (no I/O beyond reading the TLS files).
    pub async fn open(config: &EtcdConfig) -> Result<Connection, DatastoreError> {
        let target = config.target();
        config
            .validate()
            .map_err(|why| DatastoreError::InvalidConfig(format!("{target}: {why}")))?;
        let options = connect_options(config)?;
        let client = Client::connect(&config.endpoints, Some(options.clone()))
            .await
            .map_err(|err| DatastoreError::InvalidConfig(format!("{target}: {err}")))?;
        Ok(Connection {
            client,
            options,
            credentials: config
                .username
                .clone()
                .map(|user| (user, config.password.clone().unwrap_or_default())),
            authenticated: OnceCell::new(),
            target,
        })
    }

    /// Options for extra single-endpoint clients (the status probes).
    pub fn options(&self) -> ConnectOptions {
        let mut options = self.options.clone();
        if let Some((user, password)) = &self.credentials {
            options = options.with_user(user.clone(), password.clone());
        }
        options
    }

    pub async fn kv(&self) -> Result<KvClient, CallError> {
        self.authenticate().await?;
        Ok(self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES))
    }

    pub async fn watch(&self) -> Result<WatchClient, CallError> {
        self.authenticate().await?;
        Ok(self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES))
    }

    pub async fn cluster(&self) -> Result<etcd_client::ClusterClient, CallError> {
        self.authenticate().await?;
        Ok(self.client.cluster_client())
    }

    async fn authenticate(&self) -> Result<(), CallError> {
        let Some((user, password)) = &self.credentials else {
            return Ok(());
        };
        self.authenticated
            .get_or_try_init(|| async {
                let mut client = self.client.clone();
                match client
                    .update_user(Some((user.clone(), password.clone())))
                    .await
                {
                    Ok(()) => {
                        tracing::debug!(endpoint = %self.target, %user, "authenticated to etcd");
                        Ok(())
                    }
                    Err(err)
                        if etcd_answer(&err)
                            .is_some_and(|answer| answer.message.contains("not enabled")) =>
                    {
                        tracing::warn!(
                            endpoint = %self.target,
                            %user,
                            "etcd has authentication disabled; continuing without credentials"
                        );
                        Ok(())
                    }
                    Err(err) => Err(match classify(&self.target, &err) {
                        CallError::Fatal(DatastoreError::InvalidConfig(message)) => {
                            CallError::Fatal(DatastoreError::InvalidConfig(format!(
                                "{message} (user {user})"
                            )))
                        }
                        other => other,
                    }),
                }
            })
            .await
            .map(|_| ())
    }
}

fn connect_options(config: &EtcdConfig) -> Result<ConnectOptions, DatastoreError> {
    let timeouts = &config.timeouts;
    let mut options = ConnectOptions::new()
        .with_connect_timeout(timeouts.dial.min(timeouts.request))
        .with_keep_alive(timeouts.keepalive_interval, timeouts.keepalive_timeout)
        .with_keep_alive_while_idle(true)
        // A member cut off from its leader refuses requests and ends its
        // watches instead of serving stale data or hanging.
        .with_require_leader(true)
        .with_auto_token_refresh(true);
    if config.uses_tls() {
        let mut tls = TlsOptions::new().timeout(timeouts.dial.min(timeouts.request));
        tls = match &config.ca_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read_pem(ca, "CA certificate")?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
            tls = tls.identity(Identity::from_pem(
                read_pem(cert, "client certificate")?,
                read_pem(key, "client key")?,
            ));
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, DatastoreError> {
    std::fs::read(path).map_err(|err| {
        DatastoreError::InvalidConfig(format!(
            "cannot read the etcd {what} {}: {err}",
            path.display()
        ))
    })
}
