//! The Calico selector language: parsing, evaluation against labels,
//! canonical printing, unique IDs, the rewrites used to scope policy
//! selectors, and the Kubernetes label validation rules.
//!
//! The normative description is `spec/selectors.md`; module comments cite
//! its sections.
//!
//! ```
//! use std::collections::BTreeMap;
//! use tortie_selector::Selector;
//!
//! let sel = Selector::parse("app == 'web' && tier in {'fe', 'be'}").unwrap();
//! assert_eq!(sel.canonical(), r#"(app == "web" && tier in {"be", "fe"})"#);
//!
//! let labels = BTreeMap::from([
//!     ("app".to_string(), "web".to_string()),
//!     ("tier".to_string(), "fe".to_string()),
//! ]);
//! assert!(sel.matches(&labels));
//! ```

#![warn(missing_docs)]

mod error;
mod eval;
mod expr;
mod id;
pub mod labels;
mod lexer;
mod parser;
mod print;
mod rewrite;
mod selector;

pub use error::{BuildError, ParseError};
pub use eval::Labels;
pub use selector::{Selector, normalise};

/// Deepest parenthesis nesting [`Selector::parse`] accepts.
pub const MAX_NESTING: usize = parser::MAX_NESTING;

/// Longest label name, in bytes, [`Selector::parse`] accepts.
pub const MAX_LABEL_LEN: usize = lexer::MAX_LABEL_LEN;
