//! tortie's command-line commands: calicoctl-compatible resource commands
//! (`create`, `apply`, `replace`, `delete`, `get`, `patch`, `label`,
//! `validate`, `version`), `selector`, `ipam` (show, check, release, configure) and `datastore`
//! (migrate, check). Argument structs live next to the
//! commands; the `tortie` binary composes and dispatches them.

pub mod columns;
pub mod config;
pub mod datastore_cmd;
pub mod explain_cmd;
pub mod get;
pub mod input;
pub mod ipam_cmd;
pub mod kinds;
pub mod output;
pub mod patch;
pub mod selector;
pub mod version;
pub mod write;
