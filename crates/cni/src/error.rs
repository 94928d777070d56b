//! The CNI error object (CNI SPEC "Error" section): `{cniVersion, code,
//! msg, details}` on stdout with a non-zero exit, and the codes tortie uses.
//!
//! Codes 1-99 are the spec's; 100+ are plugin-specific, 999 is Calico's
//! "internal" code for everything else. The mapping from library errors is
//! here so every command words and numbers a failure the same way:
//!
//! | code | when |
//! |---|---|
//! | 1 | unsupported `cniVersion`; CHECK below 0.4.0; STATUS/GC below 1.1.0 |
//! | 3 | the container's network namespace does not exist (ADD, CHECK) |
//! | 4 | a missing or malformed `CNI_*` variable or `CNI_ARGS` pair |
//! | 6 | stdin is not valid JSON, or a field has the wrong JSON type |
//! | 7 | a field has a value we cannot use (bad name, unknown datastore...) |
//! | 11 | try again later: datastore locked, unreachable, IPAM lock busy |
//! | 50 | STATUS: not ready to serve ADD |
//! | 999 | anything else (pool exhausted, kernel refusal, ...) |
//!
//! Hard case: an unreachable datastore must be recognised through the
//! layers that wrap it (IPAM error -> client error -> datastore error).

use tortie_client::ClientError;
use tortie_datastore::DatastoreError;
use tortie_ipam::IpamError;

/// CNI error codes (CNI SPEC "Well-known error codes" plus Calico's 999).
pub mod codes {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const INTERNAL: u32 = 999;
}

/// A failure reported to the runtime as a CNI error object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    pub fn internal(msg: impl Into<String>) -> CniError {
        CniError::new(codes::INTERNAL, msg)
    }

    pub fn invalid_config(msg: impl Into<String>) -> CniError {
        CniError::new(codes::INVALID_CONFIG, msg)
    }

    pub fn invalid_env(msg: impl Into<String>) -> CniError {
        CniError::new(codes::INVALID_ENVIRONMENT, msg)
    }

    pub fn try_again(msg: impl Into<String>) -> CniError {
        CniError::new(codes::TRY_AGAIN_LATER, msg)
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl std::fmt::Display) -> CniError {
        self.msg = format!("{what}: {}", self.msg);
        self
    }

    /// The JSON object printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut object = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            object["details"] = serde_json::Value::String(self.details.clone());
        }
        object
    }
}

fn datastore_code(err: &DatastoreError) -> u32 {
    match err {
        DatastoreError::Unavailable { .. } => codes::TRY_AGAIN_LATER,
        DatastoreError::InvalidConfig(_) | DatastoreError::Unsupported(_) => codes::INVALID_CONFIG,
        _ => codes::INTERNAL,
    }
}

impl From<DatastoreError> for CniError {
    fn from(err: DatastoreError) -> CniError {
        let code = datastore_code(&err);
        let mut out = CniError::new(code, err.to_string());
        if code == codes::TRY_AGAIN_LATER {
            out.msg.push_str("; try again later");
        }
        out
    }
}

impl From<ClientError> for CniError {
    fn from(err: ClientError) -> CniError {
        match err {
            ClientError::Datastore(e) => e.into(),
            ClientError::Invalid(e) => CniError::invalid_config(e.to_string()),
            other => CniError::internal(other.to_string()),
        }
    }
}

impl From<IpamError> for CniError {
    fn from(err: IpamError) -> CniError {
        match err {
            IpamError::Datastore(e) => e.into(),
            IpamError::Client(e) => e.into(),
            other => CniError::internal(other.to_string()),
        }
    }
}

/// Whether an error means "the datastore could not be reached".
pub fn is_unreachable(err: &CniError) -> bool {
    err.code == codes::TRY_AGAIN_LATER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_has_the_spec_fields() {
        let e = CniError::invalid_config("bad mtu").with_details("mtu 70000");
        assert_eq!(
            e.to_json("1.0.0"),
            serde_json::json!({"cniVersion": "1.0.0", "code": 7, "msg": "bad mtu", "details": "mtu 70000"})
        );
        let bare = CniError::internal("boom").to_json("0.4.0");
        assert!(bare.get("details").is_none(), "{bare}");
        assert_eq!(bare["code"], 999);
    }

    #[test]
    fn unreachable_datastore_is_try_again_through_every_layer() {
        let ds = DatastoreError::Unavailable {
            endpoint: "etcd at http://a:2379".into(),
            reason: "connection refused".into(),
        };
        let via_ipam: CniError = IpamError::Client(ClientError::Datastore(ds.clone())).into();
        assert_eq!(via_ipam.code, codes::TRY_AGAIN_LATER);
        assert!(via_ipam.msg.contains("http://a:2379"), "{}", via_ipam.msg);
        assert!(
            via_ipam.msg.ends_with("try again later"),
            "{}",
            via_ipam.msg
        );
        let other: CniError = IpamError::NoQualifiedPool.into();
        assert_eq!(other.code, codes::INTERNAL);
        let unsupported: CniError = DatastoreError::Unsupported("kubernetes".into()).into();
        assert_eq!(unsupported.code, codes::INVALID_CONFIG);
    }
}
