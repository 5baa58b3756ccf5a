//! The layers around the routes that are the service's own: request metrics, the audit line
//! of a privileged request refused before its handler, and the errors of tower's layers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::BoxError;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::service::AppState;
use crate::audit::{AuditRecord, Outcome};
use crate::auth::Operation;
use crate::error::{ApiError, ErrorCode};

/// What a privileged request's handler tells the audit layer around it.
#[derive(Debug, Default)]
pub(super) struct AuditContext {
    /// The API key's name, once it was recognised.
    pub(super) caller: std::sync::OnceLock<String>,
    /// Whether the handler wrote the request's audit line.
    pub(super) recorded: AtomicBool,
}

/// Writes a refused audit line for a privileged request that ends without one: one refused
/// before its handler could write it (no or unknown key, unreadable or oversized body,
/// overload, timeout).
pub(super) async fn audit_refusals(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let operation = match request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    {
        Some("/v1/rewrap") => Operation::Rewrap,
        _ => Operation::Reidentify,
    };
    let context = Arc::new(AuditContext::default());
    request.extensions_mut().insert(context.clone());
    let response = next.run(request).await;
    if !context.recorded.load(Ordering::SeqCst) {
        let mut record = AuditRecord::now(operation.as_str(), Outcome::Refused);
        record.api_key = context.caller.get().map(String::as_str);
        record.reason = Some(
            response
                .extensions()
                .get::<ErrorCode>()
                .map_or("internal", |ErrorCode(code)| code),
        );
        state.0.audit.record_refusal(&record);
    }
    response
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
