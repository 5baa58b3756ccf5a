//! The HTTP API: routes, thin handlers, and the tower layers around them.
//!
//! Handlers parse, authorize, call the [`Engine`] and map the result. Limits, timeouts, load
//! shedding, metrics, request tracing and the audit of refused privileged requests are layers,
//! not handler code. Each request's `Authenticated` extractor holds one snapshot of the keys in
//! service and the API key's place among its requests in flight, for the whole request; the
//! request's values are read (bounded by `limits.max_values`) only once it is authorized.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Json, Router};
use bytes::Bytes;
use pseudonym_client::Mode;
use pseudonym_client::wire::{
    CompatPseudonymizeRequest, CompatPseudonymizeResponse, CompatReidentifyRequest,
    CompatReidentifyResponse, ItemError, PseudonymizeRequest, PseudonymizeResponse,
    ReidentifyRequest, ReidentifyResponse, RewrapRequest, RewrapResponse, Text,
};
use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use arc_swap::ArcSwap;

use crate::audit::{AuditLog, AuditRecord, Outcome};
use crate::auth::{ApiKeys, Caller, Operation};
use crate::config::{Config, Limits, TokenFormat};
use crate::domain::Domain;
use crate::engine::Engine;
use crate::error::{ApiError, ErrorCode};
use crate::key_limits::{KeyLimits, KeyPermit, Reservation};
use crate::metrics::Metrics;
use crate::seed::SeedMode;

/// The OpenAPI description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route, as used for metric labels; anything else counts as `other`.
pub const ROUTES: [&str; 11] = [
    "/v1/pseudonymize",
    "/v1/reidentify",
    "/v1/rewrap",
    "/pseudonymization",
    "/reidentification",
    "/{stage}/pseudonymization",
    "/{stage}/reidentification",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
];

/// What every handler shares: cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    keyed: ArcSwap<Keyed>,
    limits: Limits,
    compat_domain: String,
    compat_tokens: TokenFormat,
    metrics_require_api_key: bool,
    key_limits: Arc<KeyLimits>,
    metrics: Metrics,
    audit: AuditLog,
    ready: AtomicBool,
}

/// What a reload replaces, together: requests see the old keys or the new, never a mix.
struct Keyed {
    engine: Engine,
    api_keys: ApiKeys,
}

impl AppState {
    /// State for a service with these keys, serving as `config` says.
    pub fn new(engine: Engine, api_keys: ApiKeys, config: &Config, audit: AuditLog) -> Self {
        AppState(Arc::new(Shared {
            keyed: ArcSwap::from_pointee(Keyed { engine, api_keys }),
            limits: config.limits.clone(),
            compat_domain: config.compat_domain.clone(),
            compat_tokens: config.compat_tokens,
            metrics_require_api_key: config.metrics_require_api_key,
            key_limits: KeyLimits::new(
                config.limits.max_concurrent_requests_per_key,
                Some(config.limits.max_values_per_second_per_key).filter(|&rate| rate > 0),
            ),
            metrics: Metrics::default(),
            audit,
            ready: AtomicBool::new(true),
        }))
    }

    /// Serves new keys from the next request on; requests under way finish with the old ones.
    pub fn replace_keys(&self, engine: Engine, api_keys: ApiKeys) {
        self.0.keyed.store(Arc::new(Keyed { engine, api_keys }));
    }

    /// Makes `/readyz` answer 503, so load balancers stop sending while in-flight requests end.
    pub fn set_not_ready(&self) {
        self.0.ready.store(false, Ordering::Relaxed);
    }

    /// The key version new pseudonyms are made with.
    pub fn primary_version(&self) -> u32 {
        self.0.keyed.load().engine.primary_version()
    }

    /// Opens the audit file again at its path (after log rotation).
    pub async fn reopen_audit(&self) -> Result<(), crate::audit::AuditError> {
        self.0.audit.reopen().await
    }

    /// The request limits.
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The items of a request, read now that the caller may proceed: at most
    /// `limits.max_values` of them, none longer than `max_len` bytes; counted against the
    /// caller's budget of values per second.
    fn read_batch<'a>(
        &self,
        request: &Authenticated,
        items: &Items<'a>,
        max_len: usize,
    ) -> Result<Vec<Option<Text<'a>>>, ApiError> {
        let items = items.read(self.0.limits.max_values)?;
        if let Some(budget) = &request.budget {
            budget.settle(items.len());
        }
        match items
            .iter()
            .position(|item| item.as_ref().is_some_and(|s| s.as_ref().len() > max_len))
        {
            Some(index) => Err(ApiError::ValueTooLong {
                index,
                max: max_len,
            }),
            None => Ok(items),
        }
    }

    /// Tokens of `format` for `values`; the replaced service's (`TokenFormat::Seed`) only in
    /// its modes, and only when its key is in the keyring (start-up and reload check that).
    async fn pseudonymize(
        &self,
        request: &Authenticated,
        domain: &str,
        mode: Mode,
        values: &Items<'_>,
        format: TokenFormat,
    ) -> Result<Vec<Option<String>>, ApiError> {
        let caller = &request.caller;
        let domain = parse_domain(domain)?;
        caller.authorize(Operation::Pseudonymize, domain)?;
        let values = &self.read_batch(request, values, self.0.limits.max_value_bytes)?;
        let engine = &request.keyed.engine;
        let pseudonyms = match format {
            TokenFormat::Native => {
                in_slices(values, |slice| engine.pseudonymize(domain, mode, slice)).await
            }
            TokenFormat::Seed => {
                let mode = SeedMode::try_from(mode).map_err(|_| {
                    ApiError::InvalidArgument("the replaced service's tokens have no hash mode")
                })?;
                if !engine.has_seed_key() {
                    tracing::error!("compat_tokens = \"seed\" but the keyring holds no seed key");
                    return Err(ApiError::Internal);
                }
                in_slices(values, |slice| {
                    engine.pseudonymize_seed(mode, slice).unwrap_or_default()
                })
                .await
            }
        };
        self.count_pseudonymized(caller, domain, mode, values);
        Ok(pseudonyms)
    }

    fn count_pseudonymized(
        &self,
        caller: &Caller,
        domain: Domain<'_>,
        mode: Mode,
        values: &[Option<Text<'_>>],
    ) {
        let count = values.iter().flatten().count();
        self.0
            .metrics
            .add_values("pseudonymize", mode.as_str(), count);
        tracing::debug!(
            caller = caller.name(),
            domain = domain.as_str(),
            mode = mode.as_str(),
            count,
            "pseudonymized"
        );
    }

    async fn reidentify(
        &self,
        request: &Authenticated,
        domain: &str,
        tokens: &Items<'_>,
    ) -> Result<ReidentifyResponse, ApiError> {
        let response = self
            .audited(
                Operation::Reidentify,
                request,
                domain,
                tokens,
                |engine, d, tokens| engine.reidentify(d, tokens),
            )
            .await?;
        self.count_item_errors(&response.errors);
        Ok(response)
    }

    async fn rewrap(
        &self,
        request: &Authenticated,
        domain: &str,
        tokens: &Items<'_>,
    ) -> Result<RewrapResponse, ApiError> {
        let response = self
            .audited(
                Operation::Rewrap,
                request,
                domain,
                tokens,
                |engine, d, tokens| engine.rewrap(d, tokens),
            )
            .await?;
        self.count_item_errors(&response.errors);
        Ok(response)
    }

    /// Checks and runs a privileged operation on `tokens`, leaving one audit line whatever
    /// happens. The line is written before the answer leaves; with `audit_fail_closed`, an
    /// answer whose line cannot be written is not given.
    async fn audited<T>(
        &self,
        operation: Operation,
        request: &Authenticated,
        domain: &str,
        tokens: &Items<'_>,
        run: impl Fn(&Engine, Domain<'_>, &[Option<Text<'_>>]) -> T,
    ) -> Result<T, ApiError>
    where
        T: InSlices + PerItem,
    {
        let caller = &request.caller;
        let mut record = AuditRecord::now(operation.as_str(), Outcome::Refused);
        record.api_key = Some(caller.name());
        record.domain = Domain::new(domain).ok().map(Domain::as_str);
        let checked = parse_domain(domain).and_then(|d| {
            caller.authorize(operation, d)?;
            let tokens = self.read_batch(request, tokens, self.0.limits.max_token_bytes())?;
            Ok((d, tokens))
        });
        let (domain_ok, tokens) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                record.reason = Some(error.code());
                self.write_audit(request, &record).await?;
                return Err(error);
            }
        };
        record.count = tokens.iter().flatten().count();
        let engine = &request.keyed.engine;
        let answer = in_slices(&tokens, |slice| run(engine, domain_ok, slice)).await;
        let failed = answer.errors().len();
        record.failed = failed;
        record.outcome = if failed == 0 {
            Outcome::Ok
        } else {
            Outcome::Partial
        };
        self.write_audit(request, &record).await?;
        self.0
            .metrics
            .add_values(operation.as_str(), "any", record.count);
        Ok(answer)
    }

    /// Writes the request's audit line; a failure fails the request only with
    /// `audit_fail_closed`. Until this returns, the refusal layer still writes a line for the
    /// request should it end (a timeout while its crypto runs), so none goes without one.
    async fn write_audit(
        &self,
        request: &Authenticated,
        record: &AuditRecord<'_>,
    ) -> Result<(), ApiError> {
        let written = self.0.audit.record(record).await;
        if let Some(context) = &request.audit {
            context.recorded.store(true, Ordering::SeqCst);
        }
        match written {
            Ok(()) => Ok(()),
            Err(error) if self.0.audit.fail_closed() => {
                tracing::error!(%error, "audit line not written: the request is refused");
                Err(ApiError::AuditUnavailable)
            }
            Err(error) => {
                tracing::error!(%error, "audit line not written");
                Ok(())
            }
        }
    }

    fn count_item_errors(&self, errors: &[ItemError]) {
        for error in errors {
            self.0.metrics.add_errors(error.code.as_str(), 1);
        }
    }
}

/// Values in one slice of a request's crypto. Between slices the request yields to the runtime,
/// so a big batch of one caller does not hold a thread while the small ones of others wait
/// (about half a millisecond of AES-SIV a slice).
const CRYPTO_SLICE: usize = 1024;

/// `work` over `items` a [`CRYPTO_SLICE`] at a time, the answers put together in order.
async fn in_slices<I, T: InSlices>(items: &[I], work: impl Fn(&[I]) -> T) -> T {
    let mut slices = items.chunks(CRYPTO_SLICE);
    let mut answer = work(slices.next().unwrap_or_default());
    let mut offset = CRYPTO_SLICE;
    for slice in slices {
        tokio::task::yield_now().await;
        answer.append(work(slice), offset);
        offset += slice.len();
    }
    answer
}

/// An answer of one item per input, made a slice at a time.
trait InSlices {
    /// Adds the answer of the next slice, whose first item is input `offset`.
    fn append(&mut self, next: Self, offset: usize);
}

/// An answer that lists the items that failed.
trait PerItem {
    fn errors(&self) -> &[ItemError];
}

impl InSlices for Vec<Option<String>> {
    fn append(&mut self, next: Self, _offset: usize) {
        self.extend(next);
    }
}

impl InSlices for ReidentifyResponse {
    fn append(&mut self, next: Self, offset: usize) {
        self.values.extend(next.values);
        self.errors.extend(shifted(next.errors, offset));
    }
}

impl InSlices for RewrapResponse {
    fn append(&mut self, next: Self, offset: usize) {
        self.pseudonyms.extend(next.pseudonyms);
        self.errors.extend(shifted(next.errors, offset));
    }
}

impl PerItem for ReidentifyResponse {
    fn errors(&self) -> &[ItemError] {
        &self.errors
    }
}

impl PerItem for RewrapResponse {
    fn errors(&self) -> &[ItemError] {
        &self.errors
    }
}

fn shifted(errors: Vec<ItemError>, offset: usize) -> impl Iterator<Item = ItemError> {
    errors.into_iter().map(move |error| ItemError {
        index: error.index + offset,
        ..error
    })
}

fn parse_domain(domain: &str) -> Result<Domain<'_>, ApiError> {
    Domain::new(domain).map_err(|_| {
        ApiError::InvalidArgument("domain must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'")
    })
}

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

/// What a privileged request's handler tells the audit layer around it.
#[derive(Debug, Default)]
struct AuditContext {
    /// The API key's name, once it was recognised.
    caller: std::sync::OnceLock<String>,
    /// Whether the handler wrote the request's audit line.
    recorded: AtomicBool,
}

/// Writes a refused audit line for a privileged request that ends without one: one refused
/// before its handler could write it (no or unknown key, unreadable or oversized body,
/// overload, timeout).
async fn audit_refusals(
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

async fn layer_error(error: BoxError) -> ApiError {
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
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>();
    let route = matched
        .and_then(|path| ROUTES.into_iter().find(|r| *r == path.as_str()))
        .unwrap_or("other");
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

/// The caller, authenticated by `Authorization: Bearer <key>` or `x-api-key: <key>`, and the
/// keys in service when the request came in: one snapshot serves the whole request, so a reload
/// never lands inside one.
struct Authenticated {
    caller: Arc<Caller>,
    keyed: Arc<Keyed>,
    /// On privileged routes: where the handler says it wrote the audit line.
    audit: Option<Arc<AuditContext>>,
    /// The key's place among its requests in flight, held until the answer is made.
    _permit: Option<KeyPermit>,
    /// What the request reserved of its key's values per second, if the key has a budget.
    budget: Option<Reservation>,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut authenticated = Authenticated::from_headers(&parts.headers, state)?;
        let caller = &authenticated.caller;
        if let Some(context) = parts.extensions.get::<Arc<AuditContext>>() {
            let _ = context.caller.set(caller.name().to_owned());
            authenticated.audit = Some(context.clone());
        }
        let limits = &state.0.key_limits;
        let (permit, budget) = limits
            .acquire(caller.name(), caller.max_concurrent_requests())
            .map_err(|limit| ApiError::KeyBusy { limit })
            .and_then(|permit| {
                // Refused before the body is read: a caller over its budget costs no parsing.
                let budget = limits
                    .admit(caller.name(), caller.max_values_per_second())
                    .map_err(|wait| ApiError::KeyOverBudget {
                        retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
                    })?;
                Ok((permit, budget))
            })
            .inspect_err(|_| state.metrics().add_key_limited(caller.name()))?;
        authenticated._permit = Some(permit);
        authenticated.budget = budget;
        Ok(authenticated)
    }
}

impl Authenticated {
    fn from_headers(headers: &HeaderMap, state: &AppState) -> Result<Self, ApiError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let presented = bearer
            .or_else(|| {
                headers
                    .get("x-api-key")
                    .and_then(|value| value.to_str().ok())
            })
            .ok_or(ApiError::Unauthorized)?;
        let keyed = state.0.keyed.load_full();
        let caller = keyed
            .api_keys
            .authenticate(presented.trim())
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        Ok(Authenticated {
            caller,
            keyed,
            audit: None,
            _permit: None,
            budget: None,
        })
    }
}

/// A request body read whole, within `limits.max_body_bytes`, parsed in place so strings
/// borrow from it.
struct Body(Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::BodyTooLarge {
                    max: state.0.limits.max_body_bytes,
                })
            }
            Err(_) => Err(ApiError::InvalidArgument(
                "the request body could not be read",
            )),
        }
    }
}

impl Body {
    fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.0).map_err(|error| ApiError::bad_json(&error))
    }

    /// The request's list of values or tokens, kept unread (`raw`, a slice of this body).
    fn items<'a>(&'a self, raw: &'a RawValue) -> Items<'a> {
        Items { body: self, raw }
    }
}

/// A request's list of values or tokens, checked as JSON but not read yet: it is read once the
/// caller may proceed, and never beyond the limit, so a request of millions of values costs no
/// more memory than its body.
struct Items<'a> {
    body: &'a Body,
    raw: &'a RawValue,
}

impl<'a> Items<'a> {
    /// The items, at most `max`; one more is `too_many_values`, found before the rest is read.
    fn read(&self, max: usize) -> Result<Vec<Option<Text<'a>>>, ApiError> {
        let exceeded = Cell::new(false);
        let bounded = Bounded {
            max,
            exceeded: &exceeded,
        };
        let mut reader = serde_json::Deserializer::from_str(self.raw.get());
        bounded.deserialize(&mut reader).map_err(|error| {
            if exceeded.get() {
                ApiError::TooManyValues { max }
            } else {
                self.bad_json(&error)
            }
        })
    }

    /// A JSON error inside the list, placed in the whole body.
    fn bad_json(&self, error: &serde_json::Error) -> ApiError {
        let body: &[u8] = &self.body.0;
        let offset = (self.raw.get().as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
        let before = &body[..offset.min(body.len())];
        let lines_before = before.iter().filter(|&&b| b == b'\n').count();
        let column_before = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
        match ApiError::bad_json(error) {
            ApiError::BadJson {
                category,
                line,
                column,
            } => ApiError::BadJson {
                category,
                line: lines_before + line,
                column: if line == 1 {
                    column_before + column
                } else {
                    column
                },
            },
            other => other,
        }
    }
}

/// Reads a JSON array of strings or nulls, refusing the item after `max`.
struct Bounded<'c> {
    max: usize,
    exceeded: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Vec<Option<Text<'de>>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Vec<Option<Text<'de>>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of strings or nulls")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
        let mut read = Vec::with_capacity(items.size_hint().unwrap_or(0).min(self.max));
        while read.len() < self.max {
            match items.next_element()? {
                Some(item) => read.push(item),
                None => return Ok(read),
            }
        }
        // At the limit: one more item of any kind is one too many, and is not kept.
        match items.next_element::<IgnoredAny>()? {
            None => Ok(read),
            Some(IgnoredAny) => {
                self.exceeded.set(true);
                Err(serde::de::Error::custom("too many items"))
            }
        }
    }
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
