//! The request rules: what a request may do and what it costs, between the HTTP API (`api`,
//! which only extracts and answers) and the engine. An [`Admitted`] caller (its API key, the
//! keys in service when it came in, its place among its key's requests in flight and its
//! budget) asks for an operation on a domain with an [`ItemSource`] (a JSON list, an Arrow
//! stream); the rules decide authorization, the request's limits, its crypto in slices, its
//! audit line and its metrics, and answer an [`Answer`] with its key version. No HTTP types.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use pseudonym_client::Mode;
use pseudonym_client::wire::{BodyText, ItemError};

use crate::api_key_limits::{ApiKeyLimits, KeyPermit, Reservation};
use crate::audit::{AuditLog, AuditRecord, Outcome, Pending};
use crate::auth::{ApiKeys, Caller, Operation};
use crate::config::{Config, Limits, TokenFormat};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::formats::Formats;
use crate::lambda::LambdaMode;
use crate::metrics::Metrics;
use crate::texts::Texts;
use pseudonym_client::wire::{Domain, InvalidDomain};
use pseudonym_engine::preserving::Preserved;

/// What every request shares: the keys in service, the rules' settings, the audit log and the
/// metrics. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) keyed: ArcSwap<InService>,
    pub(crate) limits: Limits,
    pub(crate) compat_domain: String,
    pub(crate) compat_tokens: TokenFormat,
    pub(crate) formats: Formats,
    pub(crate) metrics_require_api_key: bool,
    pub(crate) api_key_limits: Arc<ApiKeyLimits>,
    pub(crate) metrics: Metrics,
    pub(crate) audit: AuditLog,
    pub(crate) ready: AtomicBool,
}

/// What a reload replaces, together: requests see the old keys or the new, never a mix.
pub(crate) struct InService {
    pub(crate) engine: Engine,
    pub(crate) api_keys: ApiKeys,
}

/// A caller let in: its API key's entry, the keys in service when the request came in (one
/// snapshot for the whole request, so a reload never lands inside one), its place among its
/// key's requests in flight, and what it reserved of its key's values per second. Held until
/// the answer is made.
pub struct Admitted {
    pub(crate) caller: Arc<Caller>,
    pub(crate) keyed: Arc<InService>,
    /// On privileged routes: the request's audit line, until it is written.
    pub(crate) audit: Option<Arc<Pending>>,
    _permit: KeyPermit,
    budget: Option<Reservation>,
}

/// Where a request's items are, not read yet: they are read once the caller may proceed, and
/// never beyond the limits, so a request of millions of values costs no more than its body.
pub trait ItemSource<'a> {
    /// The items, at most `max_values`; one more is `too_many_values`, found before the rest
    /// is read. Their bytes count too, at most `max_value_bytes` in all, where the source can
    /// tell before reading them.
    fn read(&self, max_values: usize, max_value_bytes: usize) -> ItemsRead<'_, 'a>;
}

/// What [`ItemSource::read`] gives, once awaited. (Boxed: an `impl Future` here leaves axum's
/// handler bounds unable to see that a request's future is `Send`.)
pub type ItemsRead<'s, 'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Vec<Option<BodyText<'a>>>, Unread>> + Send + 's>>;

/// Why a request's items could not be read, and how many were read before that.
pub struct Unread {
    /// What the caller is told.
    pub error: ApiError,
    /// Items read before the failure (what the request is charged).
    pub seen: usize,
}

/// The answer to a request: one text per item (a pseudonym or a value; `None` for a null or an
/// item that failed), the items that failed, and the key version the request's new pseudonyms
/// were made with (the primary, or a format-preserving domain's pinned version; for
/// re-identification, the primary of the keys that served it).
pub struct Answer {
    /// One per item.
    pub texts: Texts,
    /// The items that failed, by index.
    pub errors: Vec<ItemError>,
    /// See above.
    pub key_version: u32,
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
            keyed: ArcSwap::from_pointee(InService { engine, api_keys }),
            limits: config.limits.clone(),
            compat_domain: config.compat_domain.clone(),
            compat_tokens: config.compat_tokens,
            formats,
            metrics_require_api_key: config.metrics_require_api_key,
            api_key_limits: ApiKeyLimits::new(
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
        self.0.keyed.store(Arc::new(InService { engine, api_keys }));
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

    /// The caller whose API key is `presented`, if it is one of the keys in service.
    pub(crate) fn authenticate(
        &self,
        presented: &str,
    ) -> Result<(Arc<Caller>, Arc<InService>), ApiError> {
        let keyed = self.0.keyed.load_full();
        let caller = keyed
            .api_keys
            .authenticate(presented)
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        Ok((caller, keyed))
    }

    /// Lets in the caller whose API key is `presented`, if its key has room among its requests
    /// in flight and in its values per second (checked before the body is read: a caller over
    /// its budget costs no parsing). `audit` is the request's pending audit line, on
    /// privileged routes.
    pub fn admit(
        &self,
        presented: &str,
        audit: Option<Arc<Pending>>,
    ) -> Result<Admitted, ApiError> {
        let (caller, keyed) = self.authenticate(presented)?;
        if let Some(pending) = &audit {
            pending.note_caller(caller.name());
        }
        let limits = &self.0.api_key_limits;
        let (permit, budget) = limits
            .acquire(caller.name(), caller.max_concurrent_requests())
            .map_err(|limit| ApiError::KeyBusy { limit })
            .and_then(|permit| {
                let budget = limits
                    .admit(caller.name(), caller.max_values_per_second())
                    .map_err(|wait| ApiError::KeyOverBudget {
                        retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
                    })?;
                Ok((permit, budget))
            })
            .inspect_err(|_| self.metrics().add_key_limited(caller.name()))?;
        Ok(Admitted {
            caller,
            keyed,
            audit,
            _permit: permit,
            budget,
        })
    }

    /// The items of a request, read now that the caller may proceed: at most
    /// `limits.max_values` of them, none longer than `max_len` bytes; counted against the
    /// caller's budget of values per second, those read before a failure included.
    async fn read_batch<'a>(
        &self,
        request: &Admitted,
        items: &impl ItemSource<'a>,
        max_len: usize,
    ) -> Result<Vec<Option<BodyText<'a>>>, ApiError> {
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

    /// Pseudonyms of `values`: tokens of `format` (the replaced service's, `TokenFormat::Lambda`,
    /// only in its modes and only when its key is in the keyring, which start-up and reload
    /// check), or in a format-preserving domain, FF1 under the domain's pinned version.
    pub async fn pseudonymize<'a>(
        &self,
        request: &Admitted,
        domain: &str,
        mode: Mode,
        values: &impl ItemSource<'a>,
        format: TokenFormat,
    ) -> Result<Answer, ApiError> {
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
                Answer {
                    texts: preserved.texts,
                    errors: preserved.errors,
                    key_version: pinned.key_version,
                }
            }
            (None, TokenFormat::Native) => Answer {
                texts: in_slices(values, |slice| {
                    engine.pseudonymize_tokens(domain, mode, slice)
                })
                .await,
                errors: Vec::new(),
                key_version: engine.primary_version(),
            },
            (None, TokenFormat::Lambda) => {
                let mode = LambdaMode::try_from(mode).map_err(|_| {
                    ApiError::InvalidArgument("the replaced service's tokens have no hash mode")
                })?;
                if !engine.has_lambda_key() {
                    tracing::error!(
                        "compat_tokens = \"lambda\" but the keyring holds no key of the Lambda service"
                    );
                    return Err(ApiError::Internal);
                }
                let texts = in_slices(values, |slice| {
                    let tokens = engine.pseudonymize_lambda(mode, slice).unwrap_or_default();
                    tokens.into_iter().collect::<Texts>()
                })
                .await;
                Answer {
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
        values: &[Option<BodyText<'_>>],
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
    pub async fn reidentify<'a>(
        &self,
        request: &Admitted,
        domain: &str,
        tokens: &impl ItemSource<'a>,
    ) -> Result<Answer, ApiError> {
        let formats = &self.0.formats;
        self.audited(
            Operation::Reidentify,
            request,
            domain,
            tokens,
            |engine, d, tokens| match formats.get(d) {
                Some(p) => engine.reidentify_preserving(d, &p.format, p.key_version, tokens),
                None => {
                    let opened = engine.reidentify_texts(d, tokens);
                    Preserved {
                        texts: opened.values,
                        errors: opened.errors,
                    }
                }
            },
        )
        .await
    }

    /// Each pseudonym made again under the primary version; in a format-preserving domain,
    /// from its pinned version (see `formats`).
    pub async fn rewrap<'a>(
        &self,
        request: &Admitted,
        domain: &str,
        tokens: &impl ItemSource<'a>,
    ) -> Result<Answer, ApiError> {
        let formats = &self.0.formats;
        self.audited(
            Operation::Rewrap,
            request,
            domain,
            tokens,
            |engine, d, tokens| match formats.get(d) {
                Some(p) => {
                    let to = engine.primary_version();
                    engine.rewrap_preserving(d, &p.format, p.key_version, to, tokens)
                }
                None => {
                    let moved = engine.rewrap_texts(d, tokens);
                    Preserved {
                        texts: moved.pseudonyms,
                        errors: moved.errors,
                    }
                }
            },
        )
        .await
    }

    /// Checks and runs a privileged operation on `tokens`, leaving one audit line whatever
    /// happens. The line of an answer is written before the answer leaves; with
    /// `audit_fail_closed`, an answer whose line cannot be written is not given. The line of a
    /// refusal is queued without waiting (see `audit`).
    async fn audited<'a>(
        &self,
        operation: Operation,
        request: &Admitted,
        domain: &str,
        tokens: &impl ItemSource<'a>,
        run: impl Fn(&Engine, Domain<'_>, &[Option<BodyText<'_>>]) -> Preserved,
    ) -> Result<Answer, ApiError> {
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
                self.0
                    .audit
                    .record_refused(&record, request.audit.as_deref());
                return Err(error);
            }
        };
        record.count = tokens.iter().flatten().count();
        let engine = &request.keyed.engine;
        let Preserved { texts, errors } =
            in_slices(&tokens, |slice| run(engine, domain_ok, slice)).await;
        // Rewrapping makes pseudonyms under the primary version, in format-preserving domains
        // too (from their pinned one).
        let answer = Answer {
            texts,
            errors,
            key_version: engine.primary_version(),
        };
        let failed = answer.errors.len();
        record.failed = failed;
        record.outcome = if failed == 0 {
            Outcome::Ok
        } else {
            Outcome::Partial
        };
        // Until this returns, the line is still pending: a request that ends meanwhile (a
        // timeout while its crypto runs) gets its refused line from the layer around it.
        self.0
            .audit
            .record_answer(&record, request.audit.as_deref())
            .await?;
        self.0
            .metrics
            .add_values(operation.as_str(), "any", record.count);
        self.count_item_errors(&answer.errors);
        Ok(answer)
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

impl InSlices for Texts {
    fn append(&mut self, next: Self, _offset: usize) {
        Texts::append(self, next);
    }
}

impl InSlices for Preserved {
    fn append(&mut self, next: Self, offset: usize) {
        self.texts.append(next.texts);
        self.errors.extend(shifted(next.errors, offset));
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::Keyring;
    use crate::auth::generate_key;

    /// Items given as they are, as a test's request would send them.
    struct Listed(Vec<Option<String>>);

    impl<'a> ItemSource<'a> for &'a Listed {
        fn read(&self, _max_values: usize, _max_value_bytes: usize) -> ItemsRead<'_, 'a> {
            let items = self
                .0
                .iter()
                .map(|v| v.as_deref().map(BodyText::from))
                .collect();
            Box::pin(async move { Ok(items) })
        }
    }

    /// A state whose one API key may do every operation in `vin` only, auditing to `audit_log`.
    fn state(audit_log: &Path, fail_closed: bool) -> (AppState, String) {
        let operations = [
            Operation::Pseudonymize,
            Operation::Reidentify,
            Operation::Rewrap,
        ];
        let (key, entry) = generate_key("rules", operations.into(), ["vin".to_owned()].into());
        let api_keys = ApiKeys::new(vec![entry]).expect("valid API keys");
        let config = Config::default();
        let audit = AuditLog::open(Some(audit_log), fail_closed).expect("audit log");
        let engine = Engine::new(&Keyring::generate());
        let state = AppState::new(engine, api_keys, &config, Formats::default(), audit);
        (state, key.expose_secret().to_owned())
    }

    async fn run(
        state: &AppState,
        key: &str,
        operation: Operation,
        domain: &str,
    ) -> Result<Answer, ApiError> {
        let caller = state.admit(key, Some(Arc::new(Pending::default())))?;
        let vin = Domain::new("vin").expect("valid");
        let engine = &caller.keyed.engine;
        let tokens = engine.pseudonymize(vin, Mode::Deterministic, &[Some("WVWZZZ1JZXW000001")]);
        let (values, tokens) = (
            Listed(vec![Some("WVWZZZ1JZXW000001".to_owned()), None]),
            Listed(vec![tokens[0].clone(), None]),
        );
        match operation {
            Operation::Pseudonymize => {
                let mode = Mode::Deterministic;
                let native = TokenFormat::Native;
                state
                    .pseudonymize(&caller, domain, mode, &&values, native)
                    .await
            }
            Operation::Reidentify => state.reidentify(&caller, domain, &&tokens).await,
            Operation::Rewrap => state.rewrap(&caller, domain, &&tokens).await,
        }
    }

    /// Every operation in a permitted and a forbidden domain, with an audit sink that fails
    /// every write (`/dev/full`), failing open and failing closed.
    #[tokio::test]
    async fn authorization_and_the_audit_sink_decide_every_operation() {
        let operations = [
            Operation::Pseudonymize,
            Operation::Reidentify,
            Operation::Rewrap,
        ];
        for operation in operations {
            for (domain, permitted) in [("vin", true), ("crm.email", false)] {
                for fail_closed in [false, true] {
                    let (state, key) = state(Path::new("/dev/full"), fail_closed);
                    let answer = run(&state, &key, operation, domain).await;
                    let case = format!("{operation:?} in {domain}, fail_closed {fail_closed}");
                    let privileged = operation != Operation::Pseudonymize;
                    match (permitted, privileged && fail_closed) {
                        (false, _) => {
                            assert!(matches!(answer, Err(ApiError::Forbidden(_))), "{case}")
                        }
                        (true, true) => assert!(
                            matches!(answer, Err(ApiError::AuditUnavailable)),
                            "{case}: no answer without its audit line"
                        ),
                        (true, false) => {
                            let answer = answer.unwrap_or_else(|e| panic!("{case}: {e}"));
                            assert_eq!(answer.texts.len(), 2, "{case}");
                            assert!(answer.texts.get(0).is_some() && answer.texts.get(1).is_none());
                            assert_eq!(answer.errors, [], "{case}");
                        }
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn privileged_requests_leave_one_line_each_and_pseudonymizing_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("audit.jsonl");
        let (state, key) = state(&log, true);
        run(&state, &key, Operation::Pseudonymize, "vin")
            .await
            .expect("answered");
        run(&state, &key, Operation::Reidentify, "crm.email")
            .await
            .err()
            .expect("forbidden");
        run(&state, &key, Operation::Rewrap, "vin")
            .await
            .expect("answered");
        run(&state, &key, Operation::Reidentify, "vin")
            .await
            .expect("answered");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .expect("audit log")
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        let seen: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    l["operation"].clone(),
                    l["domain"].clone(),
                    l["outcome"].clone(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("reidentify".into(), "crm.email".into(), "refused".into()),
                ("rewrap".into(), "vin".into(), "ok".into()),
                ("reidentify".into(), "vin".into(), "ok".into()),
            ]
        );
        assert_eq!(lines[0]["reason"], "forbidden");
        assert_eq!(lines[2]["count"], 1);
        assert!(
            !std::fs::read_to_string(&log)
                .expect("log")
                .contains("WVWZZZ")
        );
    }
}
