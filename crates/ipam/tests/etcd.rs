//! The IPAM adapter suite on the etcd backend: each case against its own
//! fresh one-member etcd started by `tortie-testkit` (the `etcd` binary,
//! Debian package etcd-server, must be installed).

#[macro_use]
mod suite;

use anyhow::Result;
use tortie_testkit::EtcdCluster;

use suite::fixture::Target;

fn etcd_target() -> Result<(EtcdCluster, Target)> {
    let cluster = EtcdCluster::start(1)?;
    let target = Target {
        spec: cluster.spec(),
    };
    Ok((cluster, target))
}

ipam_suite!(etcd_target);
