//! CNI specification versions: which we speak, what each allows, and the
//! `VERSION` reply.
//!
//! Hard cases: a config without `cniVersion` means 0.2.0 (the spec's rule
//! for old configs); CHECK exists from 0.4.0, STATUS and GC from 1.1.0; a
//! version string we do not know is refused with code 1 naming what we do
//! support.

use std::fmt;

use crate::error::{CniError, codes};

/// A CNI specification version tortie can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_1_0,
    V0_2_0,
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

/// Every version, oldest first (the `VERSION` reply lists them).
pub const SUPPORTED: [CniVersion; 7] = [
    CniVersion::V0_1_0,
    CniVersion::V0_2_0,
    CniVersion::V0_3_0,
    CniVersion::V0_3_1,
    CniVersion::V0_4_0,
    CniVersion::V1_0_0,
    CniVersion::V1_1_0,
];

impl CniVersion {
    /// The newest version: what `VERSION` answers in, and errors use when
    /// the requested version is unusable.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;
    /// What a config without `cniVersion` means.
    pub const IMPLIED: CniVersion = CniVersion::V0_2_0;

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_1_0 => "0.1.0",
            CniVersion::V0_2_0 => "0.2.0",
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a `cniVersion` value; `None` (absent) means 0.2.0.
    pub fn from_config(value: Option<&str>) -> Result<CniVersion, CniError> {
        let Some(text) = value else {
            return Ok(CniVersion::IMPLIED);
        };
        SUPPORTED
            .into_iter()
            .find(|v| v.as_str() == text.trim())
            .ok_or_else(|| {
                let list: Vec<&str> = SUPPORTED.iter().map(|v| v.as_str()).collect();
                CniError::new(
                    codes::INCOMPATIBLE_VERSION,
                    format!(
                        "unsupported CNI version {text:?}; tortie supports {}",
                        list.join(", ")
                    ),
                )
            })
    }

    /// Results use the `ip4`/`ip6` shape (0.1.0 and 0.2.0).
    pub fn is_legacy(self) -> bool {
        self < CniVersion::V0_3_0
    }

    /// IP configurations carry `"version": "4"|"6"` (0.3.0 to 0.4.0).
    pub fn ips_carry_version(self) -> bool {
        (CniVersion::V0_3_0..CniVersion::V1_0_0).contains(&self)
    }

    pub fn allows_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    pub fn allows_status_and_gc(self) -> bool {
        self >= CniVersion::V1_1_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reply to `VERSION`.
pub fn version_reply() -> serde_json::Value {
    let list: Vec<&str> = SUPPORTED.iter().map(|v| v.as_str()).collect();
    serde_json::json!({
        "cniVersion": CniVersion::LATEST.as_str(),
        "supportedVersions": list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_versions_and_defaults_to_0_2_0() {
        for v in SUPPORTED {
            assert_eq!(CniVersion::from_config(Some(v.as_str())), Ok(v));
        }
        assert_eq!(CniVersion::from_config(None), Ok(CniVersion::V0_2_0));
        let err = CniVersion::from_config(Some("2.0.0")).expect_err("unknown");
        assert_eq!(err.code, 1);
        assert!(err.msg.contains("\"2.0.0\""), "{}", err.msg);
        assert!(err.msg.contains("1.1.0"), "{}", err.msg);
    }

    #[test]
    fn capabilities_follow_the_version() {
        assert!(CniVersion::V0_2_0.is_legacy());
        assert!(!CniVersion::V0_3_0.is_legacy());
        assert!(CniVersion::V0_3_1.ips_carry_version());
        assert!(CniVersion::V0_4_0.ips_carry_version());
        assert!(!CniVersion::V1_0_0.ips_carry_version());
        assert!(!CniVersion::V0_3_1.allows_check());
        assert!(CniVersion::V0_4_0.allows_check());
        assert!(!CniVersion::V1_0_0.allows_status_and_gc());
        assert!(CniVersion::V1_1_0.allows_status_and_gc());
    }

    #[test]
    fn version_reply_lists_everything() {
        let reply = version_reply();
        assert_eq!(reply["cniVersion"], "1.1.0");
        assert_eq!(reply["supportedVersions"].as_array().map(Vec::len), Some(7));
    }
}
