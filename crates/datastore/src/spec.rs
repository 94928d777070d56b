//! Which datastore to use: the `--datastore` value and how it is resolved
//! from flags and environment.
//!
//! Forms: `embedded:PATH` (one SQLite file) and `etcd:URL[,URL...]`.
//! Precedence in [`DatastoreSpec::resolve`]: explicit flag, then
//! `TORTIE_DATASTORE`, then Calico's variables (`CALICO_DATASTORE_TYPE` over
//! `DATASTORE_TYPE`; endpoints from `CALICO_ETCD_ENDPOINTS` over
//! `ETCD_ENDPOINTS`), then the default `embedded:/var/lib/tortie/datastore.db`.
//!
//! Hard cases: Calico users arrive with Calico's environment. As in Calico,
//! the datastore type defaults to `etcdv3` when only endpoints are set, and
//! `etcdv3` without endpoints means `http://127.0.0.1:2379`. `kubernetes` is
//! refused with a message saying what to use instead. Empty variables count
//! as unset (as in Calico). The environment is injected so tests never
//! mutate the process environment.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::DatastoreError;

/// Where the embedded datastore lives unless told otherwise.
pub const DEFAULT_EMBEDDED_PATH: &str = "/var/lib/tortie/datastore.db";

/// Calico's default etcd endpoint when `etcdv3` is chosen without endpoints.
const CALICO_DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";

const ACCEPTED_FORMS: &str = "expected embedded:PATH or etcd:URL[,URL...]";

/// A datastore location, as given to `--datastore`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreSpec {
    /// One SQLite file shared by every process on the host.
    Embedded { path: PathBuf },
    /// An etcd v3 cluster (TLS and auth settings will join the endpoints).
    Etcd { endpoints: Vec<String> },
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
            return Ok(DatastoreSpec::Etcd { endpoints });
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
                .map(|endpoints| DatastoreSpec::Etcd { endpoints })
                .map_err(|why| DatastoreError::InvalidConfig(format!("{name}={list:?}: {why}"))),
            None => Ok(DatastoreSpec::Etcd {
                endpoints: vec![CALICO_DEFAULT_ETCD_ENDPOINT.to_owned()],
            }),
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
            DatastoreSpec::Etcd { endpoints } => write!(f, "etcd:{}", endpoints.join(",")),
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
        DatastoreSpec::Etcd {
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
        }
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

    fn spec_strategy() -> impl Strategy<Value = DatastoreSpec> {
        prop_oneof![
            "/[a-z0-9_./ -]{1,30}".prop_map(|path| DatastoreSpec::Embedded {
                path: PathBuf::from(path)
            }),
            proptest::collection::vec("https?://[a-z0-9.-]{1,12}(:[0-9]{1,5})?", 1..4)
                .prop_map(|endpoints| DatastoreSpec::Etcd { endpoints }),
        ]
    }

    proptest! {
        #[test]
        fn display_parses_back(spec in spec_strategy()) {
            prop_assert_eq!(DatastoreSpec::parse(&spec.to_string()).ok(), Some(spec));
        }
    }
}
