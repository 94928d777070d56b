//! Selector unique IDs (selectors.md §4): `"s:" + base64url_nopad(SHA-224("s:" + canonical))`.
//!
//! The ID is derived from the canonical form only, so equivalent spellings
//! share an ID (and therefore an IP set).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha224};

/// The unique ID for a selector whose canonical form is `canonical`.
pub(crate) fn unique_id(canonical: &str) -> String {
    let mut hasher = Sha224::new();
    hasher.update(b"s:");
    hasher.update(canonical.as_bytes());
    let digest = hasher.finalize();
    let mut id = String::from("s:");
    URL_SAFE_NO_PAD.encode_string(digest, &mut id);
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn id_of_all() {
        assert_eq!(
            super::unique_id("all()"),
            "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"
        );
    }
}
