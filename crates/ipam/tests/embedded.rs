//! The IPAM adapter suite on the embedded backend: a fresh SQLite file per
//! case under /dev/shm (or `TORTIE_TEST_DIR`, e.g. a disk-backed directory
//! to run with real fsyncs).

#[macro_use]
mod suite;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::TempDir;
use tortie_datastore::DatastoreSpec;

use suite::fixture::Target;

fn embedded_target() -> Result<(TempDir, Target)> {
    let shm = Path::new("/dev/shm");
    let base = match std::env::var_os("TORTIE_TEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None if shm.is_dir() => shm.to_path_buf(),
        None => std::env::temp_dir(),
    };
    let dir = tempfile::Builder::new()
        .prefix("tortie-ipam-test-")
        .tempdir_in(base)
        .context("creating a scratch directory")?;
    let spec = DatastoreSpec::Embedded {
        path: dir.path().join("datastore.db"),
    };
    Ok((dir, Target { spec }))
}

ipam_suite!(embedded_target);
