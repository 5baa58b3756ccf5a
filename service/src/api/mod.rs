//! The HTTP API: routes, thin handlers, and the tower layers around them. It only extracts and
//! answers; what a request may do and what it costs is decided by the rules ([`crate::rules`]).
//!
//! - `extract.rs`: the admitted caller (by its API key) and the batch (JSON or Arrow, its
//!   domain, mode and items, read only once the caller is authorized);
//! - `answer.rs`: the one responder, answering in the request's form;
//! - `arrow.rs`, `json.rs`: the two forms' answers, written from one buffer;
//! - `layers.rs`: limits, timeouts, load shedding, metrics, request tracing, the audit line of
//!   a privileged request refused before its handler, and the draining of unread bodies;
//! - `document.rs`: the OpenAPI document's conventions.

mod answer;
mod arrow;
mod document;
mod extract;
mod json;
mod layers;

use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use pseudonym_client::Mode;
use pseudonym_client::wire::{
    CompatPseudonymizeRequest, CompatPseudonymizeResponse, CompatReidentifyRequest,
    CompatReidentifyResponse, ErrorBody, PseudonymizeRequest, PseudonymizeResponse,
    ReidentifyRequest, ReidentifyResponse, RewrapRequest, RewrapResponse,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::answer::{Reply, reply};
use self::extract::{Batch, Body, presented_key};
use self::json::JsonObject;
use self::layers::{audit_refusals, drain_unread_bodies, layer_error, panic_answer, track};
use crate::auth::Operation;
use crate::config::TokenFormat;
use crate::error::ApiError;
use crate::rules::Admitted;
pub use crate::rules::AppState;

/// The router with every route and layer, documented as it is built (see [`document`]).
pub fn router(state: AppState) -> Router {
    let limits = &state.0.limits;
    let guarded = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(layer_error))
        .timeout(limits.request_timeout())
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests,
        ))
        // Inside the audit layer, so that a panic is answered, counted and audited.
        .layer(CatchPanicLayer::custom(panic_answer));
    let pseudonymizing = pseudonymizing_routes()
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(guarded.clone());
    // Every request here leaves an audit line, those refused before their handler included.
    let audited = |routes: OpenApiRouter<AppState>, operation: Operation| {
        routes
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            .layer(guarded.clone())
            .layer(middleware::from_fn_with_state(
                (state.clone(), operation),
                audit_refusals,
            ))
    };
    let (routes, _) = pseudonymizing
        .merge(audited(reidentifying_routes(), Operation::Reidentify))
        .merge(audited(rewrapping_routes(), Operation::Rewrap))
        .merge(operations_routes())
        .split_for_parts();
    routes
        .fallback(|| async { ApiError::NotFound })
        // For the operations routes; the others catch their panics within their own layers.
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        // Failures (5xx) at DEBUG: under overload every 503 would otherwise be an ERROR line.
        // Faults of the service itself are logged where they happen, at ERROR.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        // Outermost, so that no layer or handler can drop a body unread without it.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            drain_unread_bodies,
        ))
        .with_state(state)
}

/// The OpenAPI 3.1 document of every route, served at `/openapi.json`: generated from the
/// same route tables as [`router`] and from the wire types, so it cannot miss a route.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut document) = OpenApiRouter::with_openapi(document::Conventions::openapi())
        .merge(pseudonymizing_routes())
        .merge(reidentifying_routes())
        .merge(rewrapping_routes())
        .merge(operations_routes())
        .split_for_parts();
    document::Conventions.modify(&mut document);
    document
}

// The replaced service sat behind an API Gateway stage (`/Dev/pseudonymization`), and its
// callers put the stage in their URLs: each of its routes is served with and without one.
fn pseudonymizing_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pseudonymize))
        .routes(routes!(compat_pseudonymize))
        .routes(routes!(compat_pseudonymize_staged))
}

fn reidentifying_routes() -> OpenApiRouter<AppState> {
    let routes = OpenApiRouter::new()
        .routes(routes!(reidentify))
        .routes(routes!(compat_reidentify))
        .routes(routes!(compat_reidentify_staged));
    // A privileged route that panics, with every layer of the others, for the test below.
    #[cfg(test)]
    let routes = routes.route(tests::PANICS, axum::routing::post(tests::panics));
    routes
}

fn rewrapping_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(rewrap))
}

fn operations_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

/// Values to pseudonyms
///
/// One pseudonym per value, in the same order; `null` stays `null`. Needs the `pseudonymize`
/// operation in the domain.
#[utoipa::path(post, path = "/v1/pseudonymize", tag = "v1",
    params(arrow::ArrowQuery),
    request_body(description = "JSON, or an Arrow IPC stream of one string column, the values (uncompressed, no dictionary; domain and mode in the query)", content(
        (PseudonymizeRequest = "application/json"),
        (arrow::ArrowStream = "application/vnd.apache.arrow.stream"),
    )),
    responses((status = 200, description = "Same length and order as the request; as Arrow: `pseudonyms`, the key version in the schema's metadata, and in format-preserving mode `error`, the code where a value failed", content(
        (PseudonymizeResponse = "application/json"),
        (arrow::ArrowStream = "application/vnd.apache.arrow.stream"),
    ))))]
async fn pseudonymize(
    State(state): State<AppState>,
    caller: Admitted,
    batch: Batch,
) -> Result<Response, ApiError> {
    let named = batch.named::<PseudonymizeRequest<&RawValue>>()?;
    let (domain, mode, native) = (&named.domain, named.mode, TokenFormat::Native);
    let answer = state
        .pseudonymize(&caller, domain, mode, &named.items, native)
        .await?;
    let per_item = mode == Mode::FormatPreserving;
    reply(named.form, Reply::Pseudonyms { per_item }, answer)
}

/// Pseudonyms back to values (privileged)
///
/// Needs the `reidentify` operation in the domain, and leaves an audit line. An item that
/// cannot be opened is `null` and listed in `errors`; the others are answered.
#[utoipa::path(post, path = "/v1/reidentify", tag = "v1",
    params(arrow::ArrowQuery),
    request_body(description = "JSON, or an Arrow IPC stream of one string column, the pseudonyms (uncompressed, no dictionary; domain in the query)", content(
        (ReidentifyRequest = "application/json"),
        (arrow::ArrowStream = "application/vnd.apache.arrow.stream"),
    )),
    responses((status = 200, description = "Same length and order as the request; as Arrow: `values`, and `error`, the code where an item failed", content(
        (ReidentifyResponse = "application/json"),
        (arrow::ArrowStream = "application/vnd.apache.arrow.stream"),
    ))))]
async fn reidentify(
    State(state): State<AppState>,
    caller: Admitted,
    batch: Batch,
) -> Result<Response, ApiError> {
    let named = batch.named::<ReidentifyRequest<&RawValue>>()?;
    let answer = state
        .reidentify(&caller, &named.domain, &named.items)
        .await?;
    reply(named.form, Reply::Values, answer)
}

/// Pseudonyms of older key versions made again under the primary one, without plaintext
///
/// Needs the `rewrap` operation in the domain, and leaves an audit line. Each pseudonym keeps
/// its mode; an item that cannot be opened is `null` and listed in `errors`.
#[utoipa::path(post, path = "/v1/rewrap", tag = "v1",
    params(arrow::ArrowQuery),
    request_body(description = "JSON, or an Arrow IPC stream of one string column, the pseudonyms (uncompressed, no dictionary; domain in the query)", content(
        (RewrapRequest = "application/json"),
        (arrow::ArrowStream = "application/vnd.apache.arrow.stream"),
    )),
    responses((status = 200, description = "Same length and order as the request; as Arrow: `pseudonyms`, and `error`, the code where an item failed", content(
        (RewrapResponse = "application/json"),
        (arrow::ArrowStream = "application/vnd.apache.arrow.stream"),
    ))))]

async fn rewrap(
    State(state): State<AppState>,
    caller: Admitted,
    batch: Batch,
) -> Result<Response, ApiError> {
    let named = batch.named::<RewrapRequest<&RawValue>>()?;
    let answer = state.rewrap(&caller, &named.domain, &named.items).await?;
    reply(named.form, Reply::Rewrapped, answer)
}

/// The query of the replaced service's `/pseudonymization`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CompatQuery {
    /// `true` in any letter case gives deterministic pseudonyms; `false` in any letter case, or
    /// no parameter, randomized ones (as the replaced service read it).
    #[param(
        pattern = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$",
        default = "false"
    )]
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

/// Compatible with the replaced service; uses the configured compat domain
///
/// Answers our tokens, or with `compat_tokens = "lambda"` the Lambda service's own.
#[utoipa::path(post, path = "/pseudonymization", tag = "compat",
    params(CompatQuery),
    request_body = CompatPseudonymizeRequest,
    responses((status = 200, body = CompatPseudonymizeResponse, description = "Same length and order as the request")))]
async fn compat_pseudonymize(
    State(state): State<AppState>,
    caller: Admitted,
    query: Result<Query<CompatQuery>, QueryRejection>,
    body: Body,
) -> Result<JsonObject, ApiError> {
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
    Ok(JsonObject::sized_for(&pseudonyms.texts).texts("pseudonyms", &pseudonyms.texts))
}

/// Compatible with the replaced service; `null` where an item fails
///
/// Reads our tokens and, with the replaced service's key in the keyring, its tokens too. The
/// body's list may also be named `reidentifications`. A query string (e.g.
/// `deterministic=True`) is ignored.
#[utoipa::path(post, path = "/reidentification", tag = "compat",
    request_body = CompatReidentifyRequest,
    responses((status = 200, body = CompatReidentifyResponse, description = "Same length and order as the request")))]
async fn compat_reidentify(
    State(state): State<AppState>,
    caller: Admitted,
    body: Body,
) -> Result<JsonObject, ApiError> {
    let request: CompatReidentifyRequest<&RawValue> = body.parse()?;
    let tokens = body.items(request.pseudonyms);
    let response = state
        .reidentify(&caller, &state.0.compat_domain, &tokens)
        .await?;
    Ok(JsonObject::sized_for(&response.texts).texts("identifiers", &response.texts))
}

/// `/pseudonymization` behind a stage segment, e.g. `/Dev/pseudonymization`
#[utoipa::path(post, path = "/{stage}/pseudonymization", tag = "compat",
    params(("stage" = String, Path, description = "The replaced service's API Gateway stage, e.g. Dev; any segment"), CompatQuery),
    request_body = CompatPseudonymizeRequest,
    responses((status = 200, body = CompatPseudonymizeResponse, description = "Same length and order as the request")))]
async fn compat_pseudonymize_staged(
    state: State<AppState>,
    caller: Admitted,
    query: Result<Query<CompatQuery>, QueryRejection>,
    body: Body,
) -> Result<JsonObject, ApiError> {
    compat_pseudonymize(state, caller, query, body).await
}

/// `/reidentification` behind a stage segment, e.g. `/Dev/reidentification`
#[utoipa::path(post, path = "/{stage}/reidentification", tag = "compat",
    params(("stage" = String, Path, description = "The replaced service's API Gateway stage, e.g. Dev; any segment")),
    request_body = CompatReidentifyRequest,
    responses((status = 200, body = CompatReidentifyResponse, description = "Same length and order as the request")))]
async fn compat_reidentify_staged(
    state: State<AppState>,
    caller: Admitted,
    body: Body,
) -> Result<JsonObject, ApiError> {
    compat_reidentify(state, caller, body).await
}

/// Liveness
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, body = String, content_type = "text/plain", description = "ok")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness, and the keys this replica holds, so a balancer or an operator can check a
/// rollout (every replica must hold a version before any makes it primary).
#[derive(serde::Serialize, ToSchema)]
struct Readiness {
    /// `ready`, or `shutting_down` (with status 503).
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
    /// The version new pseudonyms are made with.
    #[schema(minimum = 1)]
    primary_key_version: u32,
    /// Every version this replica can open.
    #[schema(value_type = Vec<u32>)]
    key_versions: Vec<u32>,
    /// The fingerprint of each version held (16 hex digits, not secret): replicas that hold a
    /// version under the same secret show the same one (`keygen --check-replicas` compares them).
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    key_fingerprints: std::collections::BTreeMap<u32, String>,
    /// Whether the Lambda service's key (the AWS sample's) is held.
    lambda_key: bool,
    /// `lambda_key`'s deprecated name, answered for one more release.
    #[schema(deprecated)]
    seed_key: bool,
    /// The key version each format-preserving domain pins (replicas rolling a new pin differ
    /// here until all have it).
    #[schema(value_type = std::collections::BTreeMap<String, u32>)]
    pinned_key_versions: std::collections::BTreeMap<String, u32>,
    /// The domains whose deterministic pseudonyms are Tink tokens.
    tink_domains: Vec<String>,
}

/// Readiness and the key versions held; 503 while shutting down
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, body = Readiness, description = "Ready"),
              (status = 503, body = Readiness, description = "Shutting down: finishing in-flight requests")))]
async fn readyz(State(state): State<AppState>) -> Response {
    let keyed = state.0.keyed.load();
    let ready = state.0.ready.load(Ordering::Relaxed);
    let answer = Readiness {
        status: if ready { "ready" } else { "shutting_down" },
        primary_key_version: keyed.engine.primary_version(),
        key_versions: keyed.engine.versions(),
        key_fingerprints: keyed.engine.fingerprints(),
        lambda_key: keyed.engine.has_lambda_key(),
        seed_key: keyed.engine.has_lambda_key(),
        pinned_key_versions: state.0.formats.pins(),
        tink_domains: keyed.engine.tink_domains(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(answer)).into_response()
}

/// Prometheus text metrics
///
/// With `metrics_require_api_key = true` it needs an API key (`Authorization: Bearer` or
/// `x-api-key`).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, body = String, content_type = "text/plain", description = "Prometheus text format 0.0.4"),
              (status = 401, body = ErrorBody, description = "metrics_require_api_key is set and no valid key was sent")))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.0.metrics_require_api_key
        && let Err(refused) = presented_key(&headers).and_then(|key| state.authenticate(key))
    {
        return refused.into_response();
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

/// This document
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")))]
async fn openapi() -> Response {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        document()
            .to_pretty_json()
            .expect("the generated document serializes")
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use secrecy::ExposeSecret;
    use tower::ServiceExt;

    use crate::auth::{self, ApiKeys, Operation};
    use crate::config::Config;
    use crate::keyring::Keyring;
    use crate::keys::Keys;
    use crate::server::Service;

    pub(super) const PANICS: &str = "/v1/test-panic";

    pub(super) async fn panics(_: super::Admitted) -> &'static str {
        panic!("a panic in a handler")
    }

    /// A panic on the request path is an answer (500 `internal`, JSON, no word of the panic),
    /// counted in the metrics and audited, never a reset connection.
    #[tokio::test]
    async fn a_panic_is_answered_500_counted_and_audited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = dir.path().join("audit.jsonl");
        let (key, entry) = auth::generate_key(
            "ops",
            [Operation::Reidentify].into(),
            ["*".to_owned()].into(),
        );
        let config = Config {
            audit_log: Some(audit.clone()),
            ..Config::default()
        };
        let keys = Keys::in_memory(Keyring::generate(), ApiKeys::new(vec![entry]).expect("key"));
        let service = Service::new(&config, &keys).expect("service");
        let request = Request::post(PANICS)
            .header("x-api-key", key.expose_secret())
            .body(Body::empty())
            .expect("request");
        let answer = service.router().oneshot(request).await.expect("answered");
        assert_eq!(answer.status().as_u16(), 500);
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("a panic in a handler"), "{body}");
        let metrics = service.state().metrics().render();
        assert!(
            metrics.contains("pseudonym_errors_total{code=\"internal\"} 1"),
            "{metrics}"
        );
        // A refusal's line is queued, not waited for: give the writer a moment.
        let mut lines = String::new();
        for _ in 0..500 {
            lines = std::fs::read_to_string(&audit).expect("audit file");
            if !lines.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let line: serde_json::Value = serde_json::from_str(lines.trim()).expect("one line");
        assert_eq!(
            (&line["api_key"], &line["outcome"], &line["reason"]),
            (&"ops".into(), &"refused".into(), &"internal".into())
        );
    }
}
