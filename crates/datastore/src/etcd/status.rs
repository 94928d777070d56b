//! The etcd backend's status report: the cluster revision and compacted
//! revision, then every member probed on its own client URL.
//!
//! Why separate probes: the client's balanced channel hides which member
//! answered, and a health check needs each member's view (is it up, who
//! does it think leads, which version does it run). Each probe is a
//! single-endpoint client with the same TLS settings and credentials,
//! bounded by `timeouts.request`; probes run concurrently, so a dead
//! member costs one timeout, not one per member.
//!
//! Hard cases: the member list comes from whichever member answers; if
//! it cannot be read, the configured endpoints are probed instead so the
//! report still says which endpoint failed how. Members may advertise
//! client URLs this host cannot reach (NAT, another network): they are
//! then reported unhealthy with the probe's error while the cluster, read
//! through the configured endpoints, still answers. The call fails
//! (`Unavailable`) only when the cluster itself cannot be read.

use std::sync::Arc;

use etcd_client::Client;

use super::Inner;
use super::retry::{CallError, describe};
use crate::{BackendKind, BackendStatus, DatastoreError, MemberStatus};

/// A member as listed by the cluster (or an endpoint from the config).
struct Listed {
    name: String,
    id: Option<u64>,
    endpoint: String,
}

pub(super) async fn status(inner: &Arc<Inner>) -> Result<BackendStatus, DatastoreError> {
    // Fails with `Unavailable` when no member answers at all.
    let revision = inner.revision().await?;
    let listed: Vec<Listed> = match inner
        .read("member list", "", || {
            Box::pin(async {
                let mut cluster = inner.conn.cluster().await?;
                cluster
                    .member_list()
                    .await
                    .map_err(|err| super::retry::classify(&inner.target, &err))
            })
        })
        .await
    {
        Ok(response) => response
            .members()
            .iter()
            .map(|member| Listed {
                name: member.name().to_owned(),
                id: Some(member.id()),
                endpoint: member.client_urls().first().cloned().unwrap_or_default(),
            })
            .collect(),
        Err(err) => {
            tracing::warn!(endpoint = %inner.target, error = %err, "cannot list etcd members; probing the configured endpoints");
            inner
                .config
                .endpoints
                .iter()
                .map(|endpoint| Listed {
                    name: String::new(),
                    id: None,
                    endpoint: endpoint.clone(),
                })
                .collect()
        }
    };
    let probes: Vec<_> = listed
        .into_iter()
        .map(|member| {
            let inner = Arc::clone(inner);
            tokio::spawn(async move { probe(&inner, member).await })
        })
        .collect();
    let mut members = Vec::with_capacity(probes.len());
    for probe in probes {
        match probe.await {
            Ok(member) => members.push(member),
            Err(err) => {
                return Err(DatastoreError::Backend(format!(
                    "{}: a member probe failed: {err}",
                    inner.target
                )));
            }
        }
    }
    let compacted_revision = match inner.compacted_revision().await {
        Ok(compacted) => Some(compacted),
        Err(err) => {
            tracing::warn!(endpoint = %inner.target, error = %err, "cannot determine the compacted revision");
            None
        }
    };
    let mut versions: Vec<&str> = members
        .iter()
        .filter_map(|member| member.version.as_deref())
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let server_version = versions
        .iter()
        .map(|version| format!("etcd {version}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(BackendStatus {
        kind: BackendKind::Etcd,
        location: super::describe(&inner.config),
        server_version,
        revision,
        compacted_revision,
        members,
    })
}

async fn probe(inner: &Inner, member: Listed) -> MemberStatus {
    let mut status = MemberStatus {
        name: member.name,
        id: member.id.map(|id| format!("{id:x}")).unwrap_or_default(),
        endpoint: member.endpoint.clone(),
        healthy: false,
        leader: false,
        version: None,
        db_size: None,
        error: None,
    };
    if member.endpoint.is_empty() {
        status.error = Some("the member advertises no client URL (not started yet?)".to_owned());
        return status;
    }
    let timeout = inner.config.timeouts.request;
    let answer = tokio::time::timeout(timeout, async {
        let client = Client::connect([member.endpoint.as_str()], Some(inner.conn.options()))
            .await
            .map_err(|err| describe(&err))?;
        client.maintenance_client().status().await.map_err(|err| {
            match super::retry::classify(&inner.target, &err) {
                CallError::Fatal(err) => err.to_string(),
                CallError::Transient(reason) => reason,
            }
        })
    })
    .await;
    match answer {
        Err(_) => {
            status.error = Some(format!(
                "no answer within {}",
                super::retry::format_duration(timeout)
            ));
        }
        Ok(Err(reason)) => status.error = Some(reason),
        Ok(Ok(answer)) => {
            let member_id = answer.header().map(|header| header.member_id());
            if status.id.is_empty() {
                status.id = member_id.map(|id| format!("{id:x}")).unwrap_or_default();
            }
            status.leader = member_id.is_some_and(|id| id != 0 && id == answer.leader());
            status.version = Some(answer.version().to_owned());
            status.db_size = Some(answer.db_size());
            if answer.leader() == 0 {
                status.error = Some("the member has no leader".to_owned());
            } else if !answer.errors().is_empty() {
                status.error = Some(answer.errors().join("; "));
            } else {
                status.healthy = true;
            }
        }
    }
    status
}
