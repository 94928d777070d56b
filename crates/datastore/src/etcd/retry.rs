//! Time bounds, retries and error classification for every etcd call.
//!
//! A call is a series of attempts. Each attempt is bounded by
//! `timeouts.request` and by what is left of `timeouts.overall`. The first
//! retry is immediate: the typical failure is the balanced channel having
//! picked a dead member, which fails at once, and the next pick is most
//! likely a live one. Later pauses double from `backoff_initial` to
//! `backoff_max`. When the overall deadline passes, the call fails with
//! `Unavailable`: "cannot reach etcd at URL,...: (last reason)". Nothing
//! here can hang: every await is under a timeout.
//!
//! Each failed attempt is classified:
//! - [`CallError::Transient`]: no answer, or an answer meaning "not now".
//!   The balanced channel sends some requests to a member that just died
//!   (they fail at once with `Unavailable` or `Cancelled`); a member may
//!   have no leader, the leader may change mid-request, etcd may be busy.
//!   Reads simply retry. A write may or may not have been applied; the
//!   caller resolves that (see `kv`).
//! - [`CallError::Fatal`]: etcd itself answered with an error retrying
//!   cannot change (invalid request, permission denied, bad credentials).
//!
//! Hard case: tonic turns local I/O failures into gRPC codes too (an
//! unexpected EOF becomes `OutOfRange`, a bad TLS record `DataLoss`), so a
//! code alone does not prove that etcd answered. Only statuses whose
//! message carries etcd's `etcdserver:` prefix are taken as etcd's answer;
//! everything else counts as transient and is retried until the deadline,
//! whose error then carries the last reason.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

use super::config::EtcdTimeouts;
use crate::DatastoreError;

/// Why one attempt failed.
#[derive(Debug)]
pub(super) enum CallError {
    /// Retry (reads) or resolve, then retry (writes); the reason is kept
    /// for the final error.
    Transient(String),
    /// The call's result.
    Fatal(DatastoreError),
}

/// What etcd's own error messages start with.
const ETCD_PREFIX: &str = "etcdserver:";

/// An etcd answer: code and message.
pub(super) struct EtcdAnswer<'a> {
    pub code: Code,
    pub message: &'a str,
}

/// The status etcd answered with, if the error is one.
pub(super) fn etcd_answer(err: &etcd_client::Error) -> Option<EtcdAnswer<'_>> {
    match err {
        etcd_client::Error::GRpcStatus(status) if status.message().starts_with(ETCD_PREFIX) => {
            Some(EtcdAnswer {
                code: status.code(),
                message: status.message(),
            })
        }
        _ => None,
    }
}

/// Whether the error is tonic refusing a response larger than the decode
/// limit (the caller can ask for less).
pub(super) fn is_too_large(err: &etcd_client::Error) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(status)
        if status.code() == Code::OutOfRange && status.message().contains("message length too large"))
}

/// The generic classification of a client error; `target` is
/// "etcd at URL,..." for messages.
pub(super) fn classify(target: &str, err: &etcd_client::Error) -> CallError {
    let Some(answer) = etcd_answer(err) else {
        return match err {
            etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
                CallError::Fatal(DatastoreError::InvalidConfig(format!("{target}: {err}")))
            }
            _ => CallError::Transient(describe(err)),
        };
    };
    let message = answer.message;
    match answer.code {
        // Leader elections, dead members, overload, timeouts inside etcd.
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Unknown
        | Code::Internal => CallError::Transient(message.to_owned()),
        // Wrong credentials or missing ones: a configuration problem.
        Code::Unauthenticated => CallError::Fatal(DatastoreError::InvalidConfig(format!(
            "{target}: {message}"
        ))),
        Code::InvalidArgument if message.contains("authentication failed") => CallError::Fatal(
            DatastoreError::InvalidConfig(format!("{target}: {message}")),
        ),
        Code::InvalidArgument | Code::OutOfRange => CallError::Fatal(
            DatastoreError::InvalidRequest(format!("{target}: {message}")),
        ),
        _ => CallError::Fatal(DatastoreError::Backend(format!("{target}: {message}"))),
    }
}

/// A one-line description of a client error with its causes (tonic hides
/// the interesting part, e.g. "Connection refused", in the source chain).
pub(super) fn describe(err: &etcd_client::Error) -> String {
    let mut text = match err {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.is_empty() {
                format!("{:?}", status.code())
            } else {
                message.to_owned()
            }
        }
        other => other.to_string(),
    };
    let mut source = match err {
        etcd_client::Error::GRpcStatus(status) => std::error::Error::source(status),
        etcd_client::Error::TransportError(transport) => std::error::Error::source(transport),
        other => std::error::Error::source(other),
    };
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The attempts of one call: its deadline, the pause before the next
/// attempt, and the last transient reason.
pub(super) struct Attempts<'a> {
    timeouts: &'a EtcdTimeouts,
    target: &'a str,
    operation: &'static str,
    key: &'a str,
    deadline: Instant,
    /// The pause before the next retry (none before the first).
    pause: Duration,
    failures: u32,
    /// Set once a write attempt failed in a way that may have applied it:
    /// the final error must then say the outcome is unknown.
    outcome_unknown: bool,
}

impl<'a> Attempts<'a> {
    pub fn new(
        timeouts: &'a EtcdTimeouts,
        target: &'a str,
        operation: &'static str,
        key: &'a str,
    ) -> Attempts<'a> {
        Attempts {
            timeouts,
            target,
            operation,
            key,
            deadline: Instant::now() + timeouts.overall,
            pause: Duration::ZERO,
            failures: 0,
            outcome_unknown: false,
        }
    }

    /// Runs one attempt, bounded by the request timeout and the deadline.
    pub async fn run<T>(
        &self,
        attempt: impl Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let limit = self.timeouts.request.min(remaining);
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Transient(format!(
                "no answer within {}",
                format_duration(limit)
            ))),
        }
    }

    /// Marks that a write may have been applied without us knowing.
    pub fn outcome_unknown(&mut self) {
        self.outcome_unknown = true;
    }

    /// Records a transient failure: pauses before the next attempt, or
    /// gives up with `Unavailable` if the deadline would pass first.
    pub async fn failed(&mut self, reason: String) -> Result<(), DatastoreError> {
        self.failures += 1;
        let now = Instant::now();
        if now + self.pause >= self.deadline {
            let mut reason = format!(
                "{reason} (gave up after {} attempts in {})",
                self.failures,
                format_duration(self.timeouts.overall)
            );
            if self.outcome_unknown {
                reason.push_str(&format!(
                    "; the {} of {} may or may not have been applied",
                    self.operation, self.key
                ));
            }
            return Err(DatastoreError::Unavailable {
                endpoint: self.target.to_owned(),
                reason,
            });
        }
        tracing::warn!(
            endpoint = %self.target,
            operation = self.operation,
            key = self.key,
            attempt = self.failures,
            retry_in = ?self.pause,
            error = %reason,
            "etcd request failed; retrying"
        );
        tokio::time::sleep(self.pause).await;
        let ceiling = self.timeouts.backoff_max.max(self.timeouts.backoff_initial);
        self.pause = (self.pause * 2)
            .max(self.timeouts.backoff_initial)
            .min(ceiling);
        Ok(())
    }
}

/// "1.5s", "200ms": durations in messages.
pub(super) fn format_duration(duration: Duration) -> String {
    if duration >= Duration::from_secs(1) {
        let seconds = duration.as_secs_f64();
        if seconds.fract() == 0.0 {
            format!("{seconds:.0}s")
        } else {
            format!("{seconds:.1}s")
        }
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn only_etcd_answers_are_final() {
        let target = "etcd at http://x:2379";
        for (code, message) in [
            (Code::Unavailable, "etcdserver: leader changed"),
            (Code::Unavailable, "etcdserver: request timed out"),
            (Code::ResourceExhausted, "etcdserver: too many requests"),
            (Code::Cancelled, "operation was canceled"),
            (Code::Unknown, "transport error"),
            // A local failure dressed up as a server code.
            (Code::OutOfRange, "unexpected end of file"),
            (Code::InvalidArgument, "invalid input"),
        ] {
            assert!(
                matches!(
                    classify(target, &status(code, message)),
                    CallError::Transient(_)
                ),
                "{code:?} {message}"
            );
        }
        assert!(matches!(
            classify(
                target,
                &status(Code::InvalidArgument, "etcdserver: request is too large")
            ),
            CallError::Fatal(DatastoreError::InvalidRequest(_))
        ));
        assert!(matches!(
            classify(
                target,
                &status(
                    Code::InvalidArgument,
                    "etcdserver: authentication failed, invalid user ID or password"
                )
            ),
            CallError::Fatal(DatastoreError::InvalidConfig(_))
        ));
        match classify(
            target,
            &status(Code::PermissionDenied, "etcdserver: permission denied"),
        ) {
            CallError::Fatal(DatastoreError::Backend(message)) => {
                assert_eq!(
                    message,
                    "etcd at http://x:2379: etcdserver: permission denied"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_responses_are_recognised() {
        assert!(is_too_large(&status(
            Code::OutOfRange,
            "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes"
        )));
        assert!(!is_too_large(&status(
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision"
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline_with_the_last_reason() {
        let timeouts = EtcdTimeouts {
            overall: Duration::from_secs(2),
            ..EtcdTimeouts::default()
        };
        let mut attempts = Attempts::new(&timeouts, "etcd at http://x:2379", "update", "/k");
        attempts.outcome_unknown();
        let started = Instant::now();
        let mut pauses = 0;
        let err = loop {
            match attempts.failed("connection refused".to_owned()).await {
                Ok(()) => pauses += 1,
                Err(err) => break err,
            }
        };
        // 0 + 50 + 100 + 200 + 400 + 800 ms fit in 2 s; the next 1 s does not.
        assert_eq!(pauses, 6);
        assert!(started.elapsed() <= Duration::from_secs(2));
        let message = err.to_string();
        assert!(
            message.starts_with("cannot reach etcd at http://x:2379: connection refused"),
            "{message}"
        );
        assert!(
            message.contains("may or may not have been applied"),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_without_answer_times_out() {
        let timeouts = EtcdTimeouts {
            request: Duration::from_millis(300),
            ..EtcdTimeouts::default()
        };
        let attempts = Attempts::new(&timeouts, "etcd at http://x:2379", "get", "/k");
        let result: Result<(), CallError> = attempts.run(std::future::pending()).await;
        match result {
            Err(CallError::Transient(reason)) => assert_eq!(reason, "no answer within 300ms"),
            other => panic!("{other:?}"),
        }
    }
}
