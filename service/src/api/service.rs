//! The service layer: what a request may do and what it costs. Authorization by domain and
//! operation, the request's limits, its crypto in slices, its audit line and its metrics; no
//! HTTP types but the wire bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use pseudonym_client::Mode;
use pseudonym_client::wire::{ItemError, ReidentifyResponse, RewrapResponse, Text};

use super::extract::{Authenticated, Items};
use crate::audit::{AuditLog, AuditRecord, Outcome};
use crate::auth::{ApiKeys, Caller, Operation};
use crate::config::{Config, Limits, TokenFormat};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::formats::Formats;
use crate::key_limits::KeyLimits;
use crate::metrics::Metrics;
use crate::seed::SeedMode;
use crate::texts::Texts;
use pseudonym_client::wire::{Domain, InvalidDomain};
use pseudonym_engine::preserving::Preserved;

/// What every handler shares: cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(super) Arc<Shared>);

pub(super) struct Shared {
    pub(super) keyed: ArcSwap<Keyed>,
    pub(super) limits: Limits,
    pub(super) compat_domain: String,
    pub(super) compat_tokens: TokenFormat,
    pub(super) formats: Formats,
    pub(super) metrics_require_api_key: bool,
    pub(super) key_limits: Arc<KeyLimits>,
    pub(super) metrics: Metrics,
    pub(super) audit: AuditLog,
    pub(super) ready: AtomicBool,
}

/// What a reload replaces, together: requests see the old keys or the new, never a mix.
pub(super) struct Keyed {
    pub(super) engine: Engine,
    pub(super) api_keys: ApiKeys,
}

impl AppState {
    /// State for a service with these keys, serving as `config` says.
    pub fn new(
        engine: Engine,
        api_keys: ApiKeys,
        config: &Config,
        formats: Formats,
        audit: AuditLog,
    ) -> Self {
        AppState(Arc::new(Shared {
            keyed: ArcSwap::from_pointee(Keyed { engine, api_keys }),
            limits: config.limits.clone(),
            compat_domain: config.compat_domain.clone(),
            compat_tokens: config.compat_tokens,
            formats,
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
    pub async fn reopen_audit(&self) -> Result<(), crate::Error> {
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
    /// caller's budget of values per second, those read before a failure included.
    async fn read_batch<'a>(
        &self,
        request: &Authenticated,
        items: &Items<'a>,
        max_len: usize,
    ) -> Result<Vec<Option<Text<'a>>>, ApiError> {
        let limits = &self.0.limits;
        let read = items.read(limits.max_values, limits.max_body_bytes).await;
        if let Some(budget) = &request.budget {
            budget.settle(match &read {
                Ok(items) => items.len(),
                Err(unread) => unread.seen,
            });
        }
        let items = read.map_err(|unread| unread.error)?;
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

    /// Pseudonyms of `values`: tokens of `format` (the replaced service's, `TokenFormat::Seed`,
    /// only in its modes and only when its key is in the keyring, which start-up and reload
    /// check), or in a format-preserving domain, FF1 under the domain's pinned version.
    pub(super) async fn pseudonymize(
        &self,
        request: &Authenticated,
        domain: &str,
        mode: Mode,
        values: &Items<'_>,
        format: TokenFormat,
    ) -> Result<Pseudonyms, ApiError> {
        let caller = &request.caller;
        let domain = parse_domain(domain)?;
        caller.authorize(Operation::Pseudonymize, domain)?;
        let pinned = self.0.formats.get(domain);
        match (mode, pinned) {
            (Mode::FormatPreserving, None) => {
                return Err(ApiError::InvalidArgument(
                    "this domain has no format: format-preserving pseudonyms need a \
                     [format_preserving.<domain>] table in the service's configuration",
                ));
            }
            (Mode::Deterministic | Mode::Randomized | Mode::Hash, Some(_)) => {
                return Err(ApiError::InvalidArgument(
                    "this domain is format-preserving: its only mode is format-preserving",
                ));
            }
            _ => {}
        }
        let values = &self
            .read_batch(request, values, self.0.limits.max_value_bytes)
            .await?;
        let engine = &request.keyed.engine;
        let pseudonyms = match (pinned, format) {
            (Some(pinned), _) => {
                let preserved = in_slices(values, |slice| {
                    engine.pseudonymize_preserving(
                        domain,
                        &pinned.format,
                        pinned.key_version,
                        slice,
                    )
                })
                .await;
                self.count_item_errors(&preserved.errors);
                Pseudonyms {
                    texts: preserved.texts,
                    errors: preserved.errors,
                    key_version: pinned.key_version,
                }
            }
            (None, TokenFormat::Native) => Pseudonyms {
                texts: in_slices(values, |slice| {
                    engine.pseudonymize_tokens(domain, mode, slice)
                })
                .await,
                errors: Vec::new(),
                key_version: engine.primary_version(),
            },
            (None, TokenFormat::Seed) => {
                let mode = SeedMode::try_from(mode).map_err(|_| {
                    ApiError::InvalidArgument("the replaced service's tokens have no hash mode")
                })?;
                if !engine.has_seed_key() {
                    tracing::error!("compat_tokens = \"seed\" but the keyring holds no seed key");
                    return Err(ApiError::Internal);
                }
                let texts = in_slices(values, |slice| {
                    let tokens = engine.pseudonymize_seed(mode, slice).unwrap_or_default();
                    tokens.into_iter().collect::<Texts>()
                })
                .await;
                Pseudonyms {
                    texts,
                    errors: Vec::new(),
                    key_version: engine.primary_version(),
                }
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

    /// The value of each pseudonym; in a format-preserving domain, opened with its pinned
    /// version.
    pub(super) async fn reidentify(
        &self,
        request: &Authenticated,
        domain: &str,
        tokens: &Items<'_>,
    ) -> Result<ReidentifyResponse<Texts>, ApiError> {
        let formats = &self.0.formats;
        self.audited(
            Operation::Reidentify,
            request,
            domain,
            tokens,
            |engine, d, tokens| match formats.get(d) {
                Some(p) => {
                    let opened = engine.reidentify_preserving(d, &p.format, p.key_version, tokens);
                    ReidentifyResponse {
                        values: opened.texts,
                        errors: opened.errors,
                    }
                }
                None => engine.reidentify_texts(d, tokens),
            },
        )
        .await
    }

    /// Each pseudonym made again under the primary version; in a format-preserving domain,
    /// from its pinned version (see `formats`).
    pub(super) async fn rewrap(
        &self,
        request: &Authenticated,
        domain: &str,
        tokens: &Items<'_>,
    ) -> Result<RewrapResponse<Texts>, ApiError> {
        let formats = &self.0.formats;
        self.audited(
            Operation::Rewrap,
            request,
            domain,
            tokens,
            |engine, d, tokens| match formats.get(d) {
                Some(p) => {
                    let to = engine.primary_version();
                    let moved = engine.rewrap_preserving(d, &p.format, p.key_version, to, tokens);
                    RewrapResponse {
                        pseudonyms: moved.texts,
                        errors: moved.errors,
                    }
                }
                None => engine.rewrap_texts(d, tokens),
            },
        )
        .await
    }

    /// Checks and runs a privileged operation on `tokens`, leaving one audit line whatever
    /// happens. The line of an answer is written before the answer leaves; with
    /// `audit_fail_closed`, an answer whose line cannot be written is not given. The line of a
    /// refusal is queued without waiting (see `audit`).
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
        let authorized = parse_domain(domain).and_then(|d| {
            caller.authorize(operation, d)?;
            Ok(d)
        });
        let checked = match authorized {
            Ok(d) => self
                .read_batch(request, tokens, self.0.limits.max_token_bytes())
                .await
                .map(|tokens| (d, tokens)),
            Err(error) => Err(error),
        };
        let (domain_ok, tokens) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                // Nothing was released: the line is queued, not waited for.
                record.reason = Some(error.code());
                self.0.audit.record_refusal(&record);
                if let Some(context) = &request.audit {
                    context.recorded.store(true, Ordering::SeqCst);
                }
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
        self.count_item_errors(answer.errors());
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

/// The answer to a request for pseudonyms.
pub(super) struct Pseudonyms {
    /// One per value; `None` for a null or a value that failed.
    pub(super) texts: Texts,
    /// The values that failed (format-preserving only).
    pub(super) errors: Vec<ItemError>,
    /// The key version that made them.
    pub(super) key_version: u32,
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

impl InSlices for Texts {
    fn append(&mut self, next: Self, _offset: usize) {
        Texts::append(self, next);
    }
}

impl InSlices for ReidentifyResponse<Texts> {
    fn append(&mut self, next: Self, offset: usize) {
        self.values.append(next.values);
        self.errors.extend(shifted(next.errors, offset));
    }
}

impl InSlices for RewrapResponse<Texts> {
    fn append(&mut self, next: Self, offset: usize) {
        self.pseudonyms.append(next.pseudonyms);
        self.errors.extend(shifted(next.errors, offset));
    }
}

impl InSlices for Preserved {
    fn append(&mut self, next: Self, offset: usize) {
        self.texts.append(next.texts);
        self.errors.extend(shifted(next.errors, offset));
    }
}

impl PerItem for ReidentifyResponse<Texts> {
    fn errors(&self) -> &[ItemError] {
        &self.errors
    }
}

impl PerItem for RewrapResponse<Texts> {
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
    Domain::new(domain).map_err(|_| ApiError::InvalidArgument(InvalidDomain::MESSAGE))
}
