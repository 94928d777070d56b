//! The main plugin (`tortie-cni`, alias `calico`): one module per command
//! with real work. GC and STATUS are shared with the IPAM plugin
//! (`crate::maintenance`).

pub mod add;
pub mod check;
pub mod del;
