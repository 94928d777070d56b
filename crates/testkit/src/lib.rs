//! tortie-testkit: real etcd clusters and network namespaces for tests
//! and benchmarks.
//!
//! [`EtcdCluster::start`] runs `members` etcd processes on free loopback
//! ports with their data under /dev/shm, waits until each is healthy, and
//! hands out endpoints and a ready [`DatastoreSpec`]. Members can be
//! killed, restarted (same data, same ports), stopped and started all at
//! once; [`EtcdCluster::leader`] says which one leads. [`TlsFiles`] makes a
//! throwaway CA with server and client certificates for TLS clusters.
//! [`TcpProxy`] sits between a client and a member and can swallow
//! answers or black-hole a connection (faults a kill cannot produce).
//!
//! [`TestChildren`] runs copies of the calling test binary as child
//! processes (many writers racing, clients killed mid-operation) and
//! collects the result line each prints.
//!
//! [`TestNetns`] (needs root) is a throwaway network namespace for kernel
//! and real-packet tests: bounded `ip`/`nft`/`sysctl` commands inside it,
//! veth pairs between two, and work run on a thread `setns`ed into it
//! (plain, or a future on that thread's own tokio runtime).
//!
//! Everything started is owned: dropping the cluster SIGKILLs every process
//! by PID, reaps it, and removes the data; dropping a namespace deletes
//! it. Leftovers of a test process that was itself killed (so no `Drop`
//! ran) are swept by the next [`EtcdCluster::start`] or [`TestNetns::new`].
//!
//! The API is blocking (a member start takes about a second). From async
//! code that must keep running meanwhile, call it on
//! `tokio::task::spawn_blocking`; methods take `&self`, so an
//! `Arc<EtcdCluster>` can be shared.
//!
//! Layout: `cluster` (the cluster and its members' lifecycle), `children`,
//! `process`
//! (one member process, its log and its HTTP health endpoint), `ports`,
//! `proxy`, `tls`, `netns`, `leftovers`.

mod children;
mod cluster;
mod leftovers;
mod netns;
mod ports;
mod process;
mod proxy;
mod tls;

pub use children::{ChildReport, TestChildren, print_child_result};
pub use cluster::{EtcdCluster, EtcdOptions};
pub use netns::{TestNetns, run_command, run_in};
pub use proxy::{ProxyMode, TcpProxy};
pub use tls::TlsFiles;

pub use tortie_datastore::DatastoreSpec;
