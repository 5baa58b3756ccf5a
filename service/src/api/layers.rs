//! The layers around the routes that are the service's own: request metrics, the audit line
//! of a privileged request refused before its handler, the errors of tower's layers, and the
//! draining of a body left unread.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

use crate::audit::Pending;
use crate::auth::Operation;
use crate::error::{ApiError, ErrorCode};
use crate::rules::AppState;

/// Gives each privileged request a pending audit line, and writes it as refused if the request
/// ends without its own (refused before its handler could write it: no or unknown key,
/// unreadable or oversized body, overload, timeout). `operation` is the routes' own.
pub(super) async fn audit_refusals(
    State((state, operation)): State<(AppState, Operation)>,
    mut request: Request,
    next: Next,
) -> Response {
    let pending = Arc::new(Pending::default());
    request.extensions_mut().insert(pending.clone());
    let response = next.run(request).await;
    let reason = response
        .extensions()
        .get::<ErrorCode>()
        .map_or("internal", |ErrorCode(code)| code);
    state
        .0
        .audit
        .record_unanswered(operation.as_str(), &pending, reason);
    response
}

/// The answer to a request whose handler panicked: 500 `internal`, counted and, on a privileged
/// route, audited by the layers around it like any other answer. The panic's message is not
/// logged, nor answered: it could quote the request.
pub(super) fn panic_answer(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request's handler panicked: answered 500 internal");
    ApiError::Internal.into_response()
}

pub(super) async fn layer_error(error: BoxError) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else {
        tracing::error!(%error, "middleware failed");
        ApiError::Internal
    }
}

/// Counts every answer by route and status, its latency, and request-level error codes.
pub(super) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The route's pattern as the router matched it; a path no route matches counts as `other`,
    // so callers cannot grow the label set.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("other", MatchedPath::as_str);
    let metrics = state.metrics();
    let start = Instant::now();
    metrics.in_flight().inc();
    let _in_flight = scopeguard(|| {
        metrics.in_flight().dec();
    });
    let response = next.run(request).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        metrics.add_errors(code, 1);
    }
    metrics.observe_request(
        route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// Runs `f` when dropped, so a cancelled request still leaves the in-flight gauge.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Keeps the HTTP/1 connection of a request answered before its body was read (shed under
/// overload, refused for its credentials, timed out): what is left of the body is read and
/// thrown away in the background, up to the body limit and for at most one more request
/// timeout.
///
/// Closing a socket with bytes of the body still unread makes the kernel send a reset, which
/// can reach the client before the answer and its `Retry-After` do (hyperium/hyper#3078).
/// Reading a body the service would have accepted costs far less than the request it would
/// have been, and the client sends it again when it retries anyway.
///
/// Not for HTTP/2, where an unread body ends its stream, not the connection; nor for a
/// request that waits for `100 Continue` before it sends its body: reading would ask for it.
pub(super) async fn drain_unread_bodies(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let awaits_continue = request.headers().get(header::EXPECT).is_some();
    if matches!(request.version(), Version::HTTP_2 | Version::HTTP_3) || awaits_continue {
        return next.run(request).await;
    }
    let limits = &state.0.limits;
    let budget = u64::try_from(limits.max_body_bytes).unwrap_or(u64::MAX);
    let drain_timeout = limits.request_timeout();
    let request = request.map(|body| {
        Body::new(DrainedOnDrop {
            body: Some(body),
            budget,
            drain_timeout,
        })
    });
    next.run(request).await
}

/// A request body that, dropped before its end, has its remaining bytes read by a task of
/// their own, if they fit in `budget`.
struct DrainedOnDrop {
    body: Option<Body>,
    /// Bytes of the body the service still accepts to read: the body limit less what was read.
    budget: u64,
    /// How long the rest may take to arrive, from when the body is dropped.
    drain_timeout: Duration,
}

impl HttpBody for DrainedOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.budget = this.budget.saturating_sub(data_len(frame))
            }
            // The end (a chunked body read whole does not say so in `is_end_stream`).
            Poll::Ready(None) => this.body = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or(SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for DrainedOnDrop {
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        // A body declared longer than the limit is refused whole: its connection closes.
        if body.is_end_stream() || body.size_hint().lower() > self.budget {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut budget = self.budget;
        let drain = async move {
            while let Some(Ok(frame)) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                // Past the limit after all (a chunked body): dropped, the connection closes.
                let Some(left) = budget.checked_sub(data_len(&frame)) else {
                    return;
                };
                budget = left;
            }
        };
        runtime.spawn(tokio::time::timeout(self.drain_timeout, drain));
    }
}

/// The bytes of body data in `frame` (none in a trailers frame).
fn data_len(frame: &Frame<Bytes>) -> u64 {
    frame.data_ref().map_or(0, |data| data.len() as u64)
}
