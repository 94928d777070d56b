//! Kubernetes rules for label keys, label values and annotation keys
//! stored on resources (selectors.md §5).
//!
//! These are stricter than what a selector accepts as a label name: a key
//! is `[prefix/]name` where the name is 1–63 characters, alphanumeric at
//! both ends with `-`, `_`, `.` inside, and the optional prefix is a
//! lower-case DNS-1123 subdomain of at most 253 characters.
//!
//! Hard cases: more than one `/`; an empty prefix (`/name`); upper case is
//! fine in the name but not in the prefix, except for annotation keys,
//! which are checked case-insensitively; a label value may be empty. The
//! first problem found is reported; wording is not part of the API.

const MAX_NAME_LEN: usize = 63;
const MAX_PREFIX_LEN: usize = 253;

/// Checks a label key against the Kubernetes qualified-name rule.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        None => (None, key),
        Some((_, name)) if name.contains('/') => {
            return Err(
                "a qualified name must be a name part with an optional DNS subdomain prefix \
                 and a single '/' (e.g. 'example.com/MyName')"
                    .to_owned(),
            );
        }
        Some((prefix, name)) => (Some(prefix), name),
    };
    if let Some(prefix) = prefix {
        validate_prefix(prefix)?;
    }
    validate_name(name)
}

/// Checks a label value: empty, or a name of at most 63 characters.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > MAX_NAME_LEN {
        return Err(format!(
            "must be no more than {MAX_NAME_LEN} characters (got {})",
            value.len()
        ));
    }
    if !is_name(value) {
        return Err(
            "a label value must be empty or consist of alphanumeric characters, \
                    '-', '_' or '.', and must start and end with an alphanumeric character"
                .to_owned(),
        );
    }
    Ok(())
}

/// Checks an annotation key: the label-key rule applied to the key folded
/// to lower case.
pub fn validate_annotation_key(key: &str) -> Result<(), String> {
    validate_label_key(&key.to_ascii_lowercase())
}

fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("prefix part must be non-empty".to_owned());
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(format!(
            "prefix part must be no more than {MAX_PREFIX_LEN} characters (got {})",
            prefix.len()
        ));
    }
    let is_dns_label = |part: &str| {
        let bytes = part.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                is_lower_alnum(*first)
                    && is_lower_alnum(*last)
                    && bytes.iter().all(|&b| is_lower_alnum(b) || b == b'-')
            }
            _ => false,
        }
    };
    if !prefix.split('.').all(is_dns_label) {
        return Err(
            "prefix part must be a lowercase RFC 1123 subdomain: lower case \
                    alphanumeric characters, '-' or '.', and must start and end with an \
                    alphanumeric character (e.g. 'example.com')"
                .to_owned(),
        );
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name part must be non-empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "name part must be no more than {MAX_NAME_LEN} characters (got {})",
            name.len()
        ));
    }
    if !is_name(name) {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', \
                    and must start and end with an alphanumeric character"
                .to_owned(),
        );
    }
    Ok(())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` for a non-empty string.
fn is_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        let long_name = "a".repeat(63);
        let too_long_name = "a".repeat(64);
        let long_prefix = format!("{}.com", "a".repeat(249));
        let too_long_prefix = format!("{}.com", "a".repeat(250));
        for ok in [
            "app",
            "App.Name_1-x",
            "9",
            "projectcalico.org/namespace",
            "kubernetes.io/metadata.name",
            "a-b.c/Name",
            long_name.as_str(),
            &format!("{long_prefix}/{long_name}"),
        ] {
            assert_eq!(validate_label_key(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a b",
            "a:b",
            "é",
            "/a",
            "a/",
            "a/b/c",
            "Example.com/a",
            "ex_ample.com/a",
            "a..b/c",
            "-a.com/b",
            "a-.com/b",
            too_long_name.as_str(),
            &format!("{too_long_prefix}/a"),
        ] {
            assert!(validate_label_key(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn label_key_messages() {
        assert_eq!(
            validate_label_key("a_").unwrap_err(),
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
             start and end with an alphanumeric character"
        );
        assert_eq!(
            validate_label_key("/a").unwrap_err(),
            "prefix part must be non-empty"
        );
        assert_eq!(
            validate_label_key("a/").unwrap_err(),
            "name part must be non-empty"
        );
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "A-b_c.D", "0", &"v".repeat(63)] {
            assert_eq!(validate_label_value(ok), Ok(()), "{ok:?}");
        }
        for bad in ["-", "a-", ".a", "a b", "a/b", "é", &"v".repeat(64)] {
            assert!(
                validate_label_value(bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn annotation_keys_ignore_case() {
        assert_eq!(validate_annotation_key("Example.COM/Thing"), Ok(()));
        assert!(validate_label_key("Example.COM/Thing").is_err());
        assert!(validate_annotation_key("a/b/c").is_err());
        assert!(validate_annotation_key("").is_err());
    }
}
