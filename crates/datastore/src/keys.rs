//! Keys and prefixes: validation, and turning a prefix into a half-open key
//! range `[start, end)` that an ordered index can scan.
//!
//! Hard case: the end of the range. Keys compare bytewise, and for UTF-8
//! bytewise order equals code point order, so the smallest string above
//! every string with prefix `p` is `p` with its last character replaced by
//! the next code point (skipping the surrogate gap, and dropping trailing
//! U+10FFFF characters). An empty prefix, or one made only of U+10FFFF, has
//! no upper bound.

use crate::DatastoreError;

/// Rejects keys no backend accepts (etcd refuses the empty key).
pub(crate) fn validate_key(key: &str) -> Result<(), DatastoreError> {
    if key.is_empty() {
        return Err(DatastoreError::InvalidRequest(
            "the key must not be empty".to_owned(),
        ));
    }
    Ok(())
}

/// The keys starting with a prefix, as a half-open range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub start: String,
    /// Exclusive upper bound; `None` = unbounded.
    pub end: Option<String>,
}

impl KeyRange {
    pub fn prefix(prefix: &str) -> KeyRange {
        KeyRange {
            start: prefix.to_owned(),
            end: prefix_end(prefix),
        }
    }
}

fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn next_char(c: char) -> Option<char> {
    match u32::from(c) {
        0xD7FF => Some('\u{E000}'),
        n => char::from_u32(n + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn in_range(range: &KeyRange, key: &str) -> bool {
        key >= range.start.as_str() && range.end.as_deref().is_none_or(|end| key < end)
    }

    #[test]
    fn ends_of_simple_prefixes() {
        assert_eq!(prefix_end("/a/b/").as_deref(), Some("/a/b0"));
        assert_eq!(prefix_end("/a/b").as_deref(), Some("/a/c"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
    }

    #[test]
    fn empty_key_is_rejected() {
        assert!(matches!(
            validate_key(""),
            Err(DatastoreError::InvalidRequest(_))
        ));
        assert!(validate_key("/a").is_ok());
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        // A small alphabet makes shared prefixes likely; the extremes cover
        // the surrogate gap and the last code point.
        proptest::collection::vec(
            prop_oneof![
                Just('/'),
                Just('a'),
                Just('b'),
                Just('\u{7F}'),
                Just('\u{D7FF}'),
                Just('\u{E000}'),
                Just('\u{10FFFF}'),
            ],
            0..6,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn range_holds_exactly_the_prefixed_keys(prefix in key_strategy(), key in key_strategy()) {
            let range = KeyRange::prefix(&prefix);
            prop_assert_eq!(in_range(&range, &key), key.starts_with(&prefix));
        }
    }
}
