//! The HTTP API: routes, thin handlers, and the tower layers around them.
//!
//! Handlers parse, call the service layer ([`service`]) and map its answer. Limits, timeouts,
//! load shedding, metrics, request tracing and the audit of refused privileged requests are
//! layers ([`layers`]), not handler code. Each request's `Authenticated` extractor
//! ([`extract`]) holds one snapshot of the keys in service and the API key's place among its
//! requests in flight, for the whole request; the request's values are read (bounded by
//! `limits.max_values`) only once it is authorized.

mod extract;
mod layers;
mod service;

use std::sync::atomic::Ordering;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pseudonym_client::Mode;
use pseudonym_client::wire::{
    CompatPseudonymizeRequest, CompatPseudonymizeResponse, CompatReidentifyRequest,
    CompatReidentifyResponse, PseudonymizeRequest, PseudonymizeResponse, ReidentifyRequest,
    ReidentifyResponse, RewrapRequest, RewrapResponse,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use self::extract::{Authenticated, Body};
use self::layers::{audit_refusals, layer_error, track};
pub use self::service::AppState;
use crate::config::TokenFormat;
use crate::error::ApiError;

/// The OpenAPI description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The router with every route and layer.
pub fn router(state: AppState) -> Router {
    let limits = &state.0.limits;
    let guarded = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(layer_error))
        .timeout(limits.request_timeout())
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests,
        ));
    // The replaced service sat behind an API Gateway stage (`/Dev/pseudonymization`), and its
    // callers put the stage in their URLs.
    let pseudonymizing = Router::new()
        .route("/v1/pseudonymize", post(pseudonymize))
        .route("/pseudonymization", post(compat_pseudonymize))
        .route("/{stage}/pseudonymization", post(compat_pseudonymize))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(guarded.clone());
    // Every request here leaves an audit line, those refused before their handler included.
    let privileged = Router::new()
        .route("/v1/reidentify", post(reidentify))
        .route("/v1/rewrap", post(rewrap))
        .route("/reidentification", post(compat_reidentify))
        .route("/{stage}/reidentification", post(compat_reidentify))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(guarded)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit_refusals,
        ));
    let api = pseudonymizing.merge(privileged);
    let operations = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi));
    api.merge(operations)
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn_with_state(state.clone(), track))
        // Failures (5xx) at DEBUG: under overload every 503 would otherwise be an ERROR line.
        // Faults of the service itself are logged where they happen, at ERROR.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(state)
}

async fn pseudonymize(
    State(state): State<AppState>,
    caller: Authenticated,
    body: Body,
) -> Result<Json<PseudonymizeResponse>, ApiError> {
    let request: PseudonymizeRequest<&RawValue> = body.parse()?;
    let pseudonyms = state
        .pseudonymize(
            &caller,
            &request.domain.0,
            request.mode,
            &body.items(request.values),
            TokenFormat::Native,
        )
        .await?;
    Ok(Json(PseudonymizeResponse {
        pseudonyms,
        key_version: caller.keyed.engine.primary_version(),
    }))
}

async fn reidentify(
    State(state): State<AppState>,
    caller: Authenticated,
    body: Body,
) -> Result<Json<ReidentifyResponse>, ApiError> {
    let request: ReidentifyRequest<&RawValue> = body.parse()?;
    let tokens = body.items(request.pseudonyms);
    let answer = state
        .reidentify(&caller, &request.domain.0, &tokens)
        .await?;
    Ok(Json(answer))
}

async fn rewrap(
    State(state): State<AppState>,
    caller: Authenticated,
    body: Body,
) -> Result<Json<RewrapResponse>, ApiError> {
    let request: RewrapRequest<&RawValue> = body.parse()?;
    let tokens = body.items(request.pseudonyms);
    let answer = state.rewrap(&caller, &request.domain.0, &tokens).await?;
    Ok(Json(answer))
}

/// The query of the replaced service's `/pseudonymization`.
#[derive(Deserialize)]
struct CompatQuery {
    deterministic: Option<String>,
}

impl CompatQuery {
    /// `true` in any letter case is deterministic, `false` in any letter case or no parameter
    /// randomized, as the replaced service read it; anything else is refused, never guessed.
    fn mode(&self) -> Result<Mode, ApiError> {
        match self.deterministic.as_deref() {
            None => Ok(Mode::Randomized),
            Some(text) if text.eq_ignore_ascii_case("true") => Ok(Mode::Deterministic),
            Some(text) if text.eq_ignore_ascii_case("false") => Ok(Mode::Randomized),
            Some(_) => Err(ApiError::InvalidArgument(
                "query parameter deterministic must be true or false (any letter case)",
            )),
        }
    }
}

async fn compat_pseudonymize(
    State(state): State<AppState>,
    caller: Authenticated,
    query: Result<Query<CompatQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Json<CompatPseudonymizeResponse>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::InvalidArgument(
            "the query string could not be read: give deterministic once, as true or false",
        )
    })?;
    let mode = query.mode()?;
    let request: CompatPseudonymizeRequest<&RawValue> = body.parse()?;
    let pseudonyms = state
        .pseudonymize(
            &caller,
            &state.0.compat_domain,
            mode,
            &body.items(request.identifiers),
            state.0.compat_tokens,
        )
        .await?;
    Ok(Json(CompatPseudonymizeResponse { pseudonyms }))
}

async fn compat_reidentify(
    State(state): State<AppState>,
    caller: Authenticated,
    body: Body,
) -> Result<Json<CompatReidentifyResponse>, ApiError> {
    let request: CompatReidentifyRequest<&RawValue> = body.parse()?;
    let tokens = body.items(request.pseudonyms);
    let response = state
        .reidentify(&caller, &state.0.compat_domain, &tokens)
        .await?;
    Ok(Json(CompatReidentifyResponse {
        identifiers: response.values,
    }))
}

/// Readiness, and the keys this replica holds, so a balancer or an operator can check a
/// rollout (every replica must hold a version before any makes it primary).
#[derive(serde::Serialize)]
struct Readiness {
    status: &'static str,
    primary_key_version: u32,
    key_versions: Vec<u32>,
    seed_key: bool,
}

async fn readyz(State(state): State<AppState>) -> Response {
    let keyed = state.0.keyed.load();
    let ready = state.0.ready.load(Ordering::Relaxed);
    let answer = Readiness {
        status: if ready { "ready" } else { "shutting_down" },
        primary_key_version: keyed.engine.primary_version(),
        key_versions: keyed.engine.versions(),
        seed_key: keyed.engine.has_seed_key(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(answer)).into_response()
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.0.metrics_require_api_key {
        if let Err(refused) = Authenticated::from_headers(&headers, &state) {
            return refused.into_response();
        }
    }
    state.metrics().set_audit_dropped(state.0.audit.dropped());
    state
        .metrics()
        .set_primary_version(state.0.keyed.load().engine.primary_version());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
