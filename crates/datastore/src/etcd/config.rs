//! How to reach an etcd cluster: endpoints, TLS files, credentials, and the
//! time bounds of every call.
//!
//! Hard cases:
//! - The password never appears in `Display` or `Debug` output (specs end up
//!   in logs and error messages).
//! - TLS follows the endpoints: `https://` switches it on. The client takes
//!   one TLS setting for all endpoints, so mixing `http://` and `https://`
//!   is refused, and so are TLS files next to plain `http://` endpoints
//!   (Calico silently ignores them there; a user who configured
//!   certificates expects them to be used, so we say so instead).
//! - A client certificate needs its key and the other way round; a password
//!   needs a user name.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Time bounds of the etcd backend. Every call is bounded by `overall`;
/// each attempt inside it by `request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EtcdTimeouts {
    /// Establishing one TCP (and TLS) connection to one endpoint.
    pub dial: Duration,
    /// One attempt of one request: a read, a write, creating a watch.
    pub request: Duration,
    /// Everything one call may take, retries included; also how long a
    /// broken watch keeps trying to re-establish itself.
    pub overall: Duration,
    /// The first pause between attempts; pauses double up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// HTTP/2 keepalive: ping interval and how long an answer may take
    /// before the connection is declared dead (spec: 30 s and 10 s).
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for EtcdTimeouts {
    fn default() -> Self {
        EtcdTimeouts {
            dial: Duration::from_secs(5),
            request: Duration::from_secs(5),
            overall: Duration::from_secs(15),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// An etcd v3 cluster and how to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://` or `https://` URLs of some or all members.
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) that signed the servers' certificates. Without
    /// it, `https://` endpoints are verified against the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that require them.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user name and password (etcd's own authentication).
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeouts: EtcdTimeouts,
}

impl EtcdConfig {
    /// Plain endpoints, default timeouts, no TLS files, no credentials.
    pub fn new<E: Into<String>>(endpoints: impl IntoIterator<Item = E>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
            timeouts: EtcdTimeouts::default(),
        }
    }

    /// Whether the endpoints are `https://` (checked by [`EtcdConfig::validate`]
    /// to be all or none).
    pub fn uses_tls(&self) -> bool {
        self.endpoints
            .first()
            .is_some_and(|endpoint| endpoint.starts_with("https://"))
    }

    /// "etcd at URL,URL": how errors name the cluster.
    pub fn target(&self) -> String {
        format!("etcd at {}", self.endpoints.join(","))
    }

    /// Checks the combination of settings; the message names the Calico
    /// variables that carry each setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("no etcd endpoints are configured".to_owned());
        }
        let secure = self
            .endpoints
            .iter()
            .filter(|endpoint| endpoint.starts_with("https://"))
            .count();
        if secure != 0 && secure != self.endpoints.len() {
            return Err(format!(
                "etcd endpoints {} mix http:// and https://; use one scheme for all",
                self.endpoints.join(",")
            ));
        }
        let has_tls_files =
            self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some();
        if secure == 0 && has_tls_files {
            return Err(format!(
                "TLS files are configured (ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE) but \
                 the etcd endpoints {} are plain http://; use https:// endpoints",
                self.endpoints.join(",")
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(
                    "a client certificate (ETCD_CERT_FILE) needs its key (ETCD_KEY_FILE)"
                        .to_owned(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "a client key (ETCD_KEY_FILE) needs its certificate (ETCD_CERT_FILE)"
                        .to_owned(),
                );
            }
            _ => {}
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("an etcd password (ETCD_PASSWORD) needs a user (ETCD_USERNAME)".to_owned());
        }
        let t = &self.timeouts;
        if [t.dial, t.request, t.overall, t.backoff_initial]
            .iter()
            .any(Duration::is_zero)
        {
            return Err("etcd timeouts and the initial backoff must be positive".to_owned());
        }
        Ok(())
    }
}

/// Shows everything but the password.
impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoints: &[&str]) -> EtcdConfig {
        EtcdConfig::new(endpoints.iter().copied())
    }

    #[test]
    fn debug_hides_the_password() {
        let mut config = config(&["http://a:2379"]);
        config.username = Some("root".to_owned());
        config.password = Some("s3cret-value".to_owned());
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(shown.contains("root"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn tls_follows_the_scheme() {
        assert!(config(&["https://a:2379", "https://b:2379"]).uses_tls());
        assert!(!config(&["http://a:2379"]).uses_tls());
        let mixed = config(&["https://a:2379", "http://b:2379"]).validate();
        assert!(
            mixed.as_ref().is_err_and(|why| why.contains("mix")),
            "{mixed:?}"
        );
        let mut plain_with_ca = config(&["http://a:2379"]);
        plain_with_ca.ca_file = Some(PathBuf::from("/ca.pem"));
        let refused = plain_with_ca.validate();
        assert!(
            refused
                .as_ref()
                .is_err_and(|why| why.contains("use https://")),
            "{refused:?}"
        );
    }

    #[test]
    fn pairs_must_be_complete() {
        let mut cert_only = config(&["https://a:2379"]);
        cert_only.cert_file = Some(PathBuf::from("/c.pem"));
        assert!(
            cert_only
                .validate()
                .is_err_and(|why| why.contains("ETCD_KEY_FILE"))
        );
        let mut password_only = config(&["http://a:2379"]);
        password_only.password = Some("x".to_owned());
        assert!(
            password_only
                .validate()
                .is_err_and(|why| why.contains("ETCD_USERNAME"))
        );
        let mut complete = config(&["https://a:2379"]);
        complete.cert_file = Some(PathBuf::from("/c.pem"));
        complete.key_file = Some(PathBuf::from("/k.pem"));
        complete.username = Some("u".to_owned());
        complete.password = Some("p".to_owned());
        assert_eq!(complete.validate(), Ok(()));
        assert!(config(&[]).validate().is_err());
    }
}
