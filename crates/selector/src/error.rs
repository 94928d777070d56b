//! Error types: [`ParseError`] for selector text, [`BuildError`] for selectors
//! assembled from parts in code.
//!
//! A parse error carries the byte offset of the offending token (after any
//! whitespace before it) and a short message; `Display` renders
//! `"<message> at position <n>"`. The message wording is for people and is
//! not a stable API (selectors.md §7).

use thiserror::Error;

/// A selector string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} at position {position}")]
pub struct ParseError {
    /// Byte offset into the input where the problem was found.
    pub position: usize,
    /// What went wrong, without the position.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        ParseError {
            position,
            message: message.into(),
        }
    }
}

/// A selector could not be built from parts because a part cannot be
/// written in the selector language.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// The label name is empty, longer than 512 bytes, or contains a byte
    /// outside `[A-Za-z0-9_./-]`.
    #[error("invalid label name {name:?}: {reason}")]
    InvalidLabel {
        /// The rejected label name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The value contains both `"` and `'`; string literals have no escapes,
    /// so such a value cannot be quoted.
    #[error("value {value:?} contains both quote characters and cannot be written in a selector")]
    UnquotableValue {
        /// The rejected value.
        value: String,
    },
}
