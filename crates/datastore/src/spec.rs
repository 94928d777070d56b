//! Which datastore to use: the `--datastore` value and how it is resolved
//! from flags and environment.
//!
//! Forms: `embedded:PATH` (one SQLite file) and `etcd:URL[,URL...]`.
//! Precedence in [`DatastoreSpec::resolve`]: explicit flag, then
//! `TORTIE_DATASTORE`, then Calico's variables (`CALICO_DATASTORE_TYPE` over
//! `DATASTORE_TYPE`; endpoints from `CALICO_ETCD_ENDPOINTS` over
//! `ETCD_ENDPOINTS`), then the default `embedded:/var/lib/tortie/datastore.db`.
//!
//! etcd's TLS files and credentials come from Calico's variables whichever
//! form named the endpoints: `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`,
//! `ETCD_KEY_FILE`, `ETCD_USERNAME`, `ETCD_PASSWORD`, each overridden by its
//! `CALICO_`-prefixed twin. [`DatastoreSpec::parse`] alone reads no
//! environment.
//!
//! Hard cases: Calico users arrive with Calico's environment. As in Calico,
//! the datastore type defaults to `etcdv3` when only endpoints are set, and
//! `etcdv3` without endpoints means `http://127.0.0.1:2379`. `kubernetes` is
//! refused with a message saying what to use instead. Empty variables count
//! as unset (as in Calico). The environment is injected so tests never
//! mutate the process environment. `Display` prints the parseable form
//! only, so it never shows the password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::DatastoreError;
use crate::etcd::EtcdConfig;

/// Where the embedded datastore lives unless told otherwise.
pub const DEFAULT_EMBEDDED_PATH: &str = "/var/lib/tortie/datastore.db";

/// Calico's default etcd endpoint when `etcdv3` is chosen without endpoints.
const CALICO_DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";

const ACCEPTED_FORMS: &str = "expected embedded:PATH or etcd:URL[,URL...]";

/// A datastore location, as given to `--datastore`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a spec is built once per process; boxing would only complicate construction"
)]
pub enum DatastoreSpec {
    /// One SQLite file shared by every process on the host.
    Embedded { path: PathBuf },
    /// An etcd v3 cluster: endpoints, TLS files, credentials, timeouts.
    Etcd(EtcdConfig),
}

impl Default for DatastoreSpec {
    fn default() -> Self {
        DatastoreSpec::Embedded {
            path: PathBuf::from(DEFAULT_EMBEDDED_PATH),
        }
    }
}

impl DatastoreSpec {
    /// Parses `embedded:PATH` or `etcd:URL[,URL...]`.
    pub fn parse(text: &str) -> Result<DatastoreSpec, DatastoreError> {
        let invalid = |why: &str| {
            DatastoreError::InvalidConfig(format!(
                "invalid datastore {text:?}: {why}; {ACCEPTED_FORMS}"
            ))
        };
        if let Some(path) = text.strip_prefix("embedded:") {
            if path.is_empty() {
                return Err(invalid("the path is empty"));
            }
            return Ok(DatastoreSpec::Embedded {
                path: PathBuf::from(path),
            });
        }
        if let Some(list) = text.strip_prefix("etcd:") {
            let endpoints = parse_endpoints(list).map_err(|why| invalid(&why))?;
            return Ok(DatastoreSpec::Etcd(EtcdConfig::new(endpoints)));
        }
        Err(invalid("unknown form"))
    }

    /// Resolves the datastore from an explicit flag and the process
    /// environment (see the module comment for the precedence).
    pub fn resolve(flag: Option<&str>) -> Result<DatastoreSpec, DatastoreError> {
        Self::resolve_with(flag, |name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// [`DatastoreSpec::resolve`] with the environment supplied by `env`
    /// (variable name to value).
    pub fn resolve_with(
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<DatastoreSpec, DatastoreError> {
        match Self::resolve_location(flag, &env)? {
            DatastoreSpec::Etcd(config) => Ok(DatastoreSpec::Etcd(etcd_settings(config, &env)?)),
            embedded => Ok(embedded),
        }
    }

    /// Which backend and where, without etcd's TLS and credentials.
    fn resolve_location(
        flag: Option<&str>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<DatastoreSpec, DatastoreError> {
        if let Some(flag) = flag {
            return DatastoreSpec::parse(flag);
        }
        let var = |name: &'static str| {
            env(name)
                .filter(|value| !value.trim().is_empty())
                .map(|value| (name, value))
        };
        if let Some((name, value)) = var("TORTIE_DATASTORE") {
            return DatastoreSpec::parse(&value).map_err(|err| in_variable(name, err));
        }
        let datastore_type = var("CALICO_DATASTORE_TYPE").or_else(|| var("DATASTORE_TYPE"));
        let endpoints = var("CALICO_ETCD_ENDPOINTS").or_else(|| var("ETCD_ENDPOINTS"));
        let etcd = |endpoints: Option<(&str, String)>| match endpoints {
            Some((name, list)) => parse_endpoints(&list)
                .map(|endpoints| DatastoreSpec::Etcd(EtcdConfig::new(endpoints)))
                .map_err(|why| DatastoreError::InvalidConfig(format!("{name}={list:?}: {why}"))),
            None => Ok(DatastoreSpec::Etcd(EtcdConfig::new([
                CALICO_DEFAULT_ETCD_ENDPOINT,
            ]))),
        };
        match datastore_type {
            Some((_, kind)) if kind.trim().eq_ignore_ascii_case("etcdv3") => etcd(endpoints),
            Some((name, kind)) if kind.trim().eq_ignore_ascii_case("kubernetes") => {
                Err(DatastoreError::Unsupported(format!(
                    "{name}={kind}: the kubernetes datastore is not supported by tortie, \
                     use etcdv3 or embedded (e.g. TORTIE_DATASTORE=embedded:{DEFAULT_EMBEDDED_PATH})"
                )))
            }
            Some((name, kind)) => Err(DatastoreError::InvalidConfig(format!(
                "{name}={kind:?}: unknown datastore type; expected etcdv3, \
                 or set TORTIE_DATASTORE ({ACCEPTED_FORMS})"
            ))),
            None if endpoints.is_some() => etcd(endpoints),
            None => Ok(DatastoreSpec::default()),
        }
    }
}

/// Fills etcd's TLS files and credentials from Calico's variables (the
/// `CALICO_` form wins) and checks the combination.
fn etcd_settings(
    mut config: EtcdConfig,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<EtcdConfig, DatastoreError> {
    let var = |name: &str| {
        env(&format!("CALICO_{name}"))
            .filter(|value| !value.trim().is_empty())
            .or_else(|| env(name).filter(|value| !value.trim().is_empty()))
    };
    config.ca_file = var("ETCD_CA_CERT_FILE").map(PathBuf::from);
    config.cert_file = var("ETCD_CERT_FILE").map(PathBuf::from);
    config.key_file = var("ETCD_KEY_FILE").map(PathBuf::from);
    config.username = var("ETCD_USERNAME");
    config.password = var("ETCD_PASSWORD");
    config.validate().map_err(DatastoreError::InvalidConfig)?;
    Ok(config)
}

fn in_variable(name: &str, err: DatastoreError) -> DatastoreError {
    match err {
        DatastoreError::InvalidConfig(message) => {
            DatastoreError::InvalidConfig(format!("{name}: {message}"))
        }
        other => other,
    }
}

/// Parses a comma-separated list of http(s) URLs; the error says which one
/// is wrong.
fn parse_endpoints(list: &str) -> Result<Vec<String>, String> {
    let mut endpoints = Vec::new();
    for raw in list.split(',') {
        let endpoint = raw.trim();
        let rest = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => {
                endpoints.push(endpoint.to_owned());
            }
            _ => {
                return Err(format!(
                    "etcd endpoint {endpoint:?} is not an http:// or https:// URL with a host"
                ));
            }
        }
    }
    Ok(endpoints)
}

impl FromStr for DatastoreSpec {
    type Err = DatastoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DatastoreSpec::parse(text)
    }
}

impl fmt::Display for DatastoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatastoreSpec::Embedded { path } => write!(f, "embedded:{}", path.display()),
            DatastoreSpec::Etcd(config) => write!(f, "etcd:{}", config.endpoints.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn resolve(flag: Option<&str>, vars: &[(&str, &str)]) -> Result<DatastoreSpec, DatastoreError> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        DatastoreSpec::resolve_with(flag, |name| env.get(name).cloned())
    }

    fn etcd(endpoints: &[&str]) -> DatastoreSpec {
        DatastoreSpec::Etcd(EtcdConfig::new(endpoints.iter().copied()))
    }

    fn embedded(path: &str) -> DatastoreSpec {
        DatastoreSpec::Embedded {
            path: PathBuf::from(path),
        }
    }

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            DatastoreSpec::parse("embedded:/tmp/x.db").ok(),
            Some(embedded("/tmp/x.db"))
        );
        assert_eq!(
            "etcd:http://10.0.0.1:2379, https://etcd-2:2379"
                .parse::<DatastoreSpec>()
                .ok(),
            Some(etcd(&["http://10.0.0.1:2379", "https://etcd-2:2379"]))
        );
    }

    #[test]
    fn errors_name_the_bad_string_and_the_accepted_forms() {
        for bad in [
            "sqlite:/x",
            "embedded:",
            "etcd:",
            "etcd:10.0.0.1:2379",
            "/var/x.db",
        ] {
            let message = DatastoreSpec::parse(bad)
                .expect_err("the string is invalid")
                .to_string();
            assert!(message.contains(&format!("{bad:?}")), "{message}");
            assert!(message.contains("embedded:PATH or etcd:URL"), "{message}");
        }
        let message = DatastoreSpec::parse("etcd:http://a:1,ftp://b")
            .expect_err("ftp is not accepted")
            .to_string();
        assert!(message.contains("\"ftp://b\""), "{message}");
    }

    #[test]
    fn default_is_the_system_file() {
        assert_eq!(
            DatastoreSpec::default().to_string(),
            "embedded:/var/lib/tortie/datastore.db"
        );
        assert_eq!(resolve(None, &[]).ok(), Some(DatastoreSpec::default()));
    }

    #[test]
    fn flag_beats_every_variable() {
        let vars = [
            ("TORTIE_DATASTORE", "embedded:/from/env.db"),
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", "http://e:2379"),
        ];
        assert_eq!(
            resolve(Some("embedded:/from/flag.db"), &vars).ok(),
            Some(embedded("/from/flag.db"))
        );
        assert_eq!(resolve(None, &vars).ok(), Some(embedded("/from/env.db")));
    }

    #[test]
    fn tortie_variable_errors_name_the_variable() {
        let message = resolve(None, &[("TORTIE_DATASTORE", "nonsense")])
            .expect_err("invalid")
            .to_string();
        assert!(message.contains("TORTIE_DATASTORE"), "{message}");
        assert!(message.contains("\"nonsense\""), "{message}");
    }

    #[test]
    fn calico_variables_select_etcd() {
        assert_eq!(
            resolve(
                None,
                &[
                    ("DATASTORE_TYPE", "etcdv3"),
                    ("ETCD_ENDPOINTS", "http://a:2379,http://b:2379"),
                ]
            )
            .ok(),
            Some(etcd(&["http://a:2379", "http://b:2379"]))
        );
        assert_eq!(
            resolve(
                None,
                &[
                    ("CALICO_DATASTORE_TYPE", "etcdv3"),
                    ("DATASTORE_TYPE", "kubernetes"),
                    ("CALICO_ETCD_ENDPOINTS", "https://c:2379"),
                    ("ETCD_ENDPOINTS", "http://ignored:2379"),
                ]
            )
            .ok(),
            Some(etcd(&["https://c:2379"]))
        );
        assert_eq!(
            resolve(None, &[("DATASTORE_TYPE", "etcdv3")]).ok(),
            Some(etcd(&["http://127.0.0.1:2379"]))
        );
        assert_eq!(
            resolve(None, &[("ETCD_ENDPOINTS", "http://only:2379")]).ok(),
            Some(etcd(&["http://only:2379"]))
        );
        assert_eq!(
            resolve(None, &[("TORTIE_DATASTORE", ""), ("DATASTORE_TYPE", " ")]).ok(),
            Some(DatastoreSpec::default())
        );
    }

    #[test]
    fn kubernetes_is_refused_with_advice() {
        let err = resolve(None, &[("DATASTORE_TYPE", "kubernetes")]).expect_err("unsupported");
        assert!(matches!(err, DatastoreError::Unsupported(_)));
        let message = err.to_string();
        assert!(message.contains("not supported by tortie"), "{message}");
        assert!(message.contains("use etcdv3 or embedded"), "{message}");

        let message = resolve(None, &[("CALICO_DATASTORE_TYPE", "consul")])
            .expect_err("unknown type")
            .to_string();
        assert!(message.contains("CALICO_DATASTORE_TYPE"), "{message}");
        assert!(message.contains("consul"), "{message}");
    }

    #[test]
    fn bad_calico_endpoints_name_the_variable() {
        let message = resolve(
            None,
            &[("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", "a:2379")],
        )
        .expect_err("not a URL")
        .to_string();
        assert!(message.contains("ETCD_ENDPOINTS"), "{message}");
        assert!(message.contains("\"a:2379\""), "{message}");
    }

    fn etcd_config(spec: Result<DatastoreSpec, DatastoreError>) -> EtcdConfig {
        match spec {
            Ok(DatastoreSpec::Etcd(config)) => config,
            other => panic!("expected an etcd spec, got {other:?}"),
        }
    }

    #[test]
    fn etcd_tls_and_credentials_come_from_calico_variables() {
        let vars = [
            ("ETCD_ENDPOINTS", "https://a:2379,https://b:2379"),
            ("ETCD_CA_CERT_FILE", "/etc/ca.pem"),
            ("ETCD_CERT_FILE", "/etc/plain-cert.pem"),
            ("CALICO_ETCD_CERT_FILE", "/etc/calico-cert.pem"),
            ("ETCD_KEY_FILE", "/etc/key.pem"),
            ("ETCD_USERNAME", "felix"),
            ("CALICO_ETCD_PASSWORD", "pw-from-calico"),
            ("ETCD_PASSWORD", "pw-plain"),
        ];
        let config = etcd_config(resolve(None, &vars));
        assert_eq!(config.endpoints, ["https://a:2379", "https://b:2379"]);
        assert_eq!(config.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            config.cert_file,
            Some(PathBuf::from("/etc/calico-cert.pem"))
        );
        assert_eq!(config.key_file, Some(PathBuf::from("/etc/key.pem")));
        assert_eq!(config.username.as_deref(), Some("felix"));
        assert_eq!(config.password.as_deref(), Some("pw-from-calico"));

        // The flag and TORTIE_DATASTORE forms take the same settings.
        for flag in [Some("etcd:https://flag:2379"), None] {
            let mut with_tortie = vars.to_vec();
            with_tortie.push(("TORTIE_DATASTORE", "etcd:https://tortie:2379"));
            let config = etcd_config(resolve(flag, &with_tortie));
            assert_eq!(config.username.as_deref(), Some("felix"));
            assert_eq!(
                config.cert_file,
                Some(PathBuf::from("/etc/calico-cert.pem"))
            );
        }
        // ...and an embedded spec ignores them.
        assert_eq!(
            resolve(Some("embedded:/x.db"), &vars).ok(),
            Some(embedded("/x.db"))
        );
    }

    #[test]
    fn etcd_settings_are_checked_and_the_password_never_shown() {
        let err = resolve(Some("etcd:https://a:2379"), &[("ETCD_CERT_FILE", "/c.pem")])
            .expect_err("a certificate without its key");
        assert!(err.to_string().contains("ETCD_KEY_FILE"), "{err}");
        let err = resolve(
            Some("etcd:http://a:2379"),
            &[("ETCD_CA_CERT_FILE", "/ca.pem")],
        )
        .expect_err("TLS files with http://");
        assert!(err.to_string().contains("https://"), "{err}");

        let spec = resolve(
            Some("etcd:http://a:2379"),
            &[
                ("ETCD_USERNAME", "root"),
                ("ETCD_PASSWORD", "hunter2-secret"),
            ],
        )
        .expect("valid");
        for shown in [spec.to_string(), format!("{spec:?}")] {
            assert!(!shown.contains("hunter2-secret"), "{shown}");
        }
        assert_eq!(spec.to_string(), "etcd:http://a:2379");
    }

    fn spec_strategy() -> impl Strategy<Value = DatastoreSpec> {
        prop_oneof![
            "/[a-z0-9_./ -]{1,30}".prop_map(|path| DatastoreSpec::Embedded {
                path: PathBuf::from(path)
            }),
            proptest::collection::vec("https?://[a-z0-9.-]{1,12}(:[0-9]{1,5})?", 1..4)
                .prop_map(|endpoints| DatastoreSpec::Etcd(EtcdConfig::new(endpoints))),
        ]
    }

    proptest! {
        #[test]
        fn display_parses_back(spec in spec_strategy()) {
            prop_assert_eq!(DatastoreSpec::parse(&spec.to_string()).ok(), Some(spec));
        }
    }
}
