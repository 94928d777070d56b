//! The daemon's HTTP endpoints: `/liveness`, `/readiness` and `/status` on
//! the health port (default 9099), `/metrics` on the metrics port (default
//! 9091). Read-only: handlers look at the latest status snapshot and the
//! metrics registry, nothing else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics;
use crate::status::NodeStatus;

/// What a handler can see.
#[derive(Clone)]
pub struct Shared {
    pub status: watch::Receiver<NodeStatus>,
    pub registry: Arc<Registry>,
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Answers one request.
pub fn route(shared: &Shared, path: &str) -> Response<Full<Bytes>> {
    let status = shared.status.borrow().clone();
    match path {
        "/liveness" => reply(StatusCode::OK, "text/plain", "live\n".into()),
        "/readiness" if status.ready() => reply(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readiness" => {
            let why = if status.in_sync {
                "dataplane not programmed yet"
            } else {
                "datastore not in sync"
            };
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            )
        }
        "/status" => match serde_json::to_string_pretty(&status) {
            Ok(json) => reply(StatusCode::OK, "application/json", json),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
            ),
        },
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics::render(&shared.registry),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /liveness, /readiness, /status or /metrics\n".into(),
        ),
    }
}

/// Serves `paths` on `addr` until the process ends. Binding errors are
/// returned at once; per-connection errors are logged.
pub async fn serve(
    addr: SocketAddr,
    shared: Shared,
    paths: &'static [&'static str],
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("listening on {addr} (is another daemon running, or pick another port)")
    })?;
    Ok(tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, %addr, "accepting an HTTP connection failed");
                    continue;
                }
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let path = req.uri().path().to_string();
                    let response = if paths.contains(&path.as_str()) {
                        route(&shared, &path)
                    } else {
                        route(&shared, "/not-found")
                    };
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_status() {
        let (tx, rx) = watch::channel(NodeStatus::default());
        let (_m, registry) = metrics::Metrics::new();
        let shared = Shared {
            status: rx,
            registry: Arc::new(registry),
        };
        assert_eq!(
            route(&shared, "/readiness").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(route(&shared, "/liveness").status(), StatusCode::OK);
        tx.send_modify(|s| {
            s.in_sync = true;
            s.programmed = true;
        });
        assert_eq!(route(&shared, "/readiness").status(), StatusCode::OK);
        assert_eq!(route(&shared, "/nope").status(), StatusCode::NOT_FOUND);
    }
}
