//! What handlers take from a request: the admitted caller (see [`crate::rules::Admitted`]),
//! and the batch: its domain, mode and items, from a JSON body (parsed in place) or an Arrow
//! body and its query, read no further than the limits allow.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use pseudonym_client::Mode;
use pseudonym_client::wire::{BodyText, PseudonymizeRequest, ReidentifyRequest, RewrapRequest};
use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::arrow::{self, ArrowQuery};
use crate::arrow_body;
use crate::audit::Pending;
use crate::error::ApiError;
use crate::rules::{Admitted, AppState, ItemSource, ItemsRead, Unread};

/// The caller, by its API key (`Authorization: Bearer <key>` or `x-api-key: <key>`), let in by
/// the rules with the request's pending audit line, on privileged routes.
impl FromRequestParts<AppState> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let pending = parts.extensions.get::<Arc<Pending>>().cloned();
        state.admit(presented_key(&parts.headers)?, pending)
    }
}

/// The form a batch came in, and is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// The API's JSON bodies.
    Json,
    /// An Arrow IPC stream of one string column, the domain and mode in the query.
    Arrow,
}

/// A request's batch, JSON or Arrow, as it came: read by [`Batch::named`] into the domain, mode
/// and items it names.
pub(super) struct Batch {
    form: Form,
    query: Result<ArrowQuery, QueryRejection>,
    body: Body,
}

impl FromRequest<AppState> for Batch {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let form = match arrow::is_arrow(request.headers()) {
            true => Form::Arrow,
            false => Form::Json,
        };
        let (mut parts, body) = request.into_parts();
        let query = Query::<ArrowQuery>::from_request_parts(&mut parts, state)
            .await
            .map(|Query(query)| query);
        let body = Body::from_request(Request::from_parts(parts, body), state).await?;
        Ok(Batch { form, query, body })
    }
}

/// What a batch names: its domain, its mode (pseudonymizing only), its items, and its form.
pub(super) struct Named<'a> {
    pub(super) form: Form,
    pub(super) domain: Cow<'a, str>,
    pub(super) mode: Mode,
    pub(super) items: Items<'a>,
}

/// A JSON request body of a batch: its domain, its mode, and its list of items.
pub(super) trait JsonBatch<'a>: Deserialize<'a> {
    fn into_parts(self) -> (Cow<'a, str>, Mode, &'a RawValue);
}

impl<'a> JsonBatch<'a> for PseudonymizeRequest<'a, &'a RawValue> {
    fn into_parts(self) -> (Cow<'a, str>, Mode, &'a RawValue) {
        (self.domain.0, self.mode, self.values)
    }
}

impl<'a> JsonBatch<'a> for ReidentifyRequest<'a, &'a RawValue> {
    fn into_parts(self) -> (Cow<'a, str>, Mode, &'a RawValue) {
        (self.domain.0, Mode::default(), self.pseudonyms)
    }
}

impl<'a> JsonBatch<'a> for RewrapRequest<'a, &'a RawValue> {
    fn into_parts(self) -> (Cow<'a, str>, Mode, &'a RawValue) {
        (self.domain.0, Mode::default(), self.pseudonyms)
    }
}

impl Batch {
    /// The domain, mode and items the batch names: from the JSON body `R`, or from an Arrow
    /// request's query (its body, the items, is read later, only once the caller may proceed).
    pub(super) fn named<'a, R: JsonBatch<'a>>(&'a self) -> Result<Named<'a>, ApiError> {
        match self.form {
            Form::Arrow => {
                let query = self.query.as_ref().map_err(|_| {
                    ApiError::InvalidArgument(
                        "the query could not be read: give domain once, and mode as deterministic, randomized, hash or format-preserving",
                    )
                })?;
                Ok(Named {
                    form: Form::Arrow,
                    domain: Cow::Borrowed(query.domain()?),
                    mode: query.mode.unwrap_or_default(),
                    items: Items::Arrow(&self.body),
                })
            }
            Form::Json => {
                let (domain, mode, raw) = self.body.parse::<R>()?.into_parts();
                Ok(Named {
                    form: Form::Json,
                    domain,
                    mode,
                    items: self.body.items(raw),
                })
            }
        }
    }
}

/// The API key a request presents: `Authorization: Bearer <key>` (the scheme in any letter case,
/// RFC 9110) or `x-api-key: <key>`. Both, and repeats of either, are accepted only when they are
/// the same key: a request that carries two different keys is refused, never resolved by guessing which one
/// was meant. An `Authorization` of another scheme (a proxy's `Basic`) is not ours to read.
pub(super) fn presented_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    let bearers = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| Ok(key.trim()));
    // A header that is not text cannot carry a key we could match: it refuses the request.
    let api_keys = headers.get_all("x-api-key").iter().map(|value| {
        value
            .to_str()
            .map(str::trim)
            .map_err(|_| ApiError::Unauthorized)
    });
    let mut presented = None;
    for key in bearers.chain(api_keys) {
        let key = key?;
        match presented {
            Some(earlier) if earlier != key => return Err(ApiError::Unauthorized),
            _ => presented = Some(key),
        }
    }
    presented.ok_or(ApiError::Unauthorized)
}

/// A request body read whole, within `limits.max_body_bytes`, parsed in place so strings
/// borrow from it.
pub(super) struct Body(Bytes);

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
    pub(super) fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.0).map_err(|error| ApiError::bad_json(&error))
    }

    /// The request's list of values or tokens, kept unread (`raw`, a slice of this body).
    pub(super) fn items<'a>(&'a self, raw: &'a RawValue) -> Items<'a> {
        Items::Json { body: self, raw }
    }

    /// The body's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A request's list of values or tokens, not read yet (see [`ItemSource`]).
pub(super) enum Items<'a> {
    /// A JSON array in the body, checked as JSON.
    Json {
        /// The whole body, to place errors in it.
        body: &'a Body,
        /// The array.
        raw: &'a RawValue,
    },
    /// The body, an Arrow IPC stream of one string column.
    Arrow(&'a Body),
}

/// Bytes of Arrow values read between two yields to the runtime: a big body is read a few
/// batches at a time, so the small requests of others are not held up behind it.
const ARROW_BYTES_PER_YIELD: usize = 256 * 1024;

impl<'a> ItemSource<'a> for Items<'a> {
    /// Arrow values count their bytes as they are read; JSON ones are bounded by the body.
    fn read(&self, max_values: usize, max_value_bytes: usize) -> ItemsRead<'_, 'a> {
        Box::pin(async move {
            match self {
                Items::Json { body, raw } => read_json(body, raw, max_values),
                Items::Arrow(body) => read_arrow(body.bytes(), max_values, max_value_bytes).await,
            }
        })
    }
}

fn read_json<'a>(
    body: &Body,
    raw: &'a RawValue,
    max: usize,
) -> Result<Vec<Option<BodyText<'a>>>, Unread> {
    let seen = Cell::new(0);
    let exceeded = Cell::new(false);
    let bounded = Bounded {
        max,
        seen: &seen,
        exceeded: &exceeded,
    };
    let mut reader = serde_json::Deserializer::from_str(raw.get());
    bounded.deserialize(&mut reader).map_err(|error| Unread {
        error: if exceeded.get() {
            ApiError::TooManyValues { max }
        } else {
            bad_json(body, raw, &error)
        },
        seen: seen.get(),
    })
}

/// The rows of an Arrow stream: every header checked and the rows counted first, then the
/// values a batch at a time, yielding to the runtime between batches of a big body.
async fn read_arrow(
    body: &[u8],
    max_values: usize,
    max_value_bytes: usize,
) -> Result<Vec<Option<BodyText<'_>>>, Unread> {
    let bounds = arrow_body::Bounds {
        max_values,
        max_value_bytes,
    };
    let refused = |refusal, seen| Unread {
        error: match refusal {
            arrow_body::Refusal::TooManyValues => ApiError::TooManyValues { max: max_values },
            arrow_body::Refusal::TooManyBytes => ApiError::BodyTooLarge {
                max: max_value_bytes,
            },
            other => ApiError::InvalidArgument(other.message()),
        },
        seen,
    };
    let stream = arrow_body::Stream::frame(body, bounds).map_err(|r| refused(r, 0))?;
    let mut items = Vec::with_capacity(stream.rows());
    let (mut value_bytes, mut yielded_at) = (0, 0);
    for batch in 0..stream.batches() {
        stream
            .read_batch(batch, bounds, &mut value_bytes, &mut items)
            // The rows were framed, and so admitted: a stream that fails while its values are
            // read costs all of them.
            .map_err(|r| refused(r, stream.rows()))?;
        if value_bytes - yielded_at > ARROW_BYTES_PER_YIELD {
            yielded_at = value_bytes;
            tokio::task::yield_now().await;
        }
    }
    Ok(items)
}

/// A JSON error inside the list, placed in the whole body.
fn bad_json(body: &Body, raw: &RawValue, error: &serde_json::Error) -> ApiError {
    let body: &[u8] = &body.0;
    let offset = (raw.get().as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
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

/// Reads a JSON array of strings or nulls, refusing the item after `max`, counting those read.
struct Bounded<'c> {
    max: usize,
    seen: &'c Cell<usize>,
    exceeded: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Vec<Option<BodyText<'de>>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Vec<Option<BodyText<'de>>>;

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
            self.seen.set(read.len());
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::presented_key;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|&(name, value)| (name.parse().expect("name"), value.parse().expect("value")))
            .collect()
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_letter_case() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let value: &'static str = format!("{scheme} pk_one").leak();
            let headers = headers(&[("authorization", value)]);
            assert_eq!(presented_key(&headers).ok(), Some("pk_one"), "{scheme}");
        }
    }

    /// Found in review: a Bearer key silently won over a different `x-api-key`.
    #[test]
    fn two_different_keys_are_refused_and_the_same_one_twice_is_not() {
        let two = headers(&[("authorization", "Bearer pk_one"), ("x-api-key", "pk_two")]);
        assert!(presented_key(&two).is_err());
        let same = headers(&[("authorization", "Bearer pk_one"), ("x-api-key", "pk_one")]);
        assert_eq!(presented_key(&same).ok(), Some("pk_one"));
        let basic = headers(&[("authorization", "Basic dXNlcg=="), ("x-api-key", "pk_two")]);
        assert_eq!(
            presented_key(&basic).ok(),
            Some("pk_two"),
            "a proxy's scheme"
        );
        assert!(presented_key(&headers(&[])).is_err());
    }

    /// Found in review: only the first of repeated headers was read.
    #[test]
    fn a_repeated_header_must_repeat_the_same_key() {
        for name in ["x-api-key", "authorization"] {
            let [one, two] = match name {
                "x-api-key" => ["pk_one", "pk_two"],
                _ => ["Bearer pk_one", "Bearer pk_two"],
            };
            let differ = headers(&[(name, one), (name, two)]);
            assert_eq!(differ.get_all(name).iter().count(), 2);
            assert!(presented_key(&differ).is_err(), "{name}");
            let repeated = headers(&[(name, one), (name, one)]);
            assert_eq!(presented_key(&repeated).ok(), Some("pk_one"), "{name}");
        }
    }
}
