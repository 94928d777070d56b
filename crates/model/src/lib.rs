//! The `projectcalico.org/v3` resource model: every kind tortie stores, with
//! strict YAML/JSON decoding, the defaults filled on write, and validation
//! that names the field and the reason. No I/O: checks that need other
//! resources (pool overlap, tier existence, immutable fields) belong to the
//! client, which sees the datastore.
//!
//! Layout: `kind` holds the registry of kinds and the generic `Resource`;
//! one module per family of kinds holds its spec types and rules; `rule`
//! holds policy rules; `decode` turns files into resources; `scalar` and
//! `validate` hold the shared field types and the error machinery.

pub mod bgp;
pub mod config;
pub mod decode;
pub mod endpoint;
pub mod ippool;
pub mod k8s;
pub mod kind;
pub mod meta;
pub mod node;
pub mod policy;
pub mod rule;
pub mod scalar;
pub mod validate;

pub use decode::{DecodeError, Decoded, Origin, decode_documents};
pub use kind::{API_VERSION, Kind, KindSpec, Resource, Spec, resource_id};
pub use meta::ObjectMeta;
pub use validate::{FieldError, ValidationError};
