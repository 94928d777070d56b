//! What a backend reports about itself for health checks
//! (`tortie datastore check`): kind, server version, revisions and, for
//! etcd, every member probed on its own.
//!
//! Hard case: a partly broken etcd cluster. The report must still come
//! back when some members are down (they are listed with the error that
//! probing them gave); only when nothing answers is it an error.

use std::fmt;

use crate::Revision;

/// Which backend answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Embedded,
    Etcd,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded",
            BackendKind::Etcd => "etcd",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend's report on itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendStatus {
    pub kind: BackendKind,
    /// The store in `DatastoreSpec` form (`describe()`).
    pub location: String,
    /// "SQLite 3.46.0, schema 1" or "etcd 3.4.23" (several versions are
    /// joined with ", " during an upgrade; each member's is in `members`).
    pub server_version: String,
    /// The current store revision.
    pub revision: Revision,
    /// History before this revision is gone (0: never compacted); `None`
    /// if it could not be determined.
    pub compacted_revision: Option<Revision>,
    /// etcd: every member of the cluster (or, when the member list cannot
    /// be read, every configured endpoint). Empty for the embedded store.
    pub members: Vec<MemberStatus>,
}

/// One etcd member as seen by probing it directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member's name (empty if it was only known as an endpoint).
    pub name: String,
    /// The member ID in etcd's hex form (empty if unknown).
    pub id: String,
    /// The client URL that was probed.
    pub endpoint: String,
    /// The member answered a status request with no errors reported.
    pub healthy: bool,
    /// The member is the raft leader.
    pub leader: bool,
    /// etcd server version, if it answered.
    pub version: Option<String>,
    /// Backend database size in bytes, if it answered.
    pub db_size: Option<i64>,
    /// Why it is not healthy.
    pub error: Option<String>,
}
