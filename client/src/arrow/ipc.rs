//! The Arrow form of an exchange with the service: a batch goes out as an Arrow IPC stream of
//! one `Utf8` column, with the domain and mode in the query, and its answers come back as one.
//! No value or pseudonym becomes a JSON string or a `String` on the way: answers stay in the
//! arrays they arrive in until the rows are taken from them.
//!
//! A service older than the Arrow form refuses it (`415`, or `400 bad_json` from one that reads
//! every body as JSON). The client then sends JSON for ten minutes before it tries again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::ArrowError;
use bytes::Bytes;

use crate::batch::{one_answer_or_code, one_key_version, protocol};
use crate::cache::PseudonymCache;
use crate::endpoints::Route;
use crate::error::Error;
use crate::exchange::Exchange;
use crate::transport::{BatchId, Form};
use crate::wire::{ItemErrorCode, Mode};

/// The operations that answer each item with a string or a per-item error.
#[derive(Debug, Clone, Copy)]
pub(super) enum PerItem {
    /// Format-preserving pseudonyms, which a value can fail to have.
    Pseudonymize,
    Reidentify,
    Rewrap,
}

impl PerItem {
    fn route(self) -> Route {
        match self {
            PerItem::Pseudonymize => Route::Pseudonymize,
            PerItem::Reidentify => Route::Reidentify,
            PerItem::Rewrap => Route::Rewrap,
        }
    }

    /// The answer's column of strings.
    fn column(self) -> &'static str {
        match self {
            PerItem::Reidentify => "values",
            PerItem::Pseudonymize | PerItem::Rewrap => "pseudonyms",
        }
    }

    /// The mode the query names.
    fn mode(self) -> Option<Mode> {
        match self {
            PerItem::Pseudonymize => Some(Mode::FormatPreserving),
            PerItem::Reidentify | PerItem::Rewrap => None,
        }
    }
}

/// The answers to pseudonyms sent to a [`PerItem`] operation, one per pseudonym.
pub(super) struct PerItemAnswers {
    /// The answers; null where a pseudonym failed.
    pub(super) values: StringArray,
    /// The code of each pseudonym that failed.
    pub(super) codes: Vec<Option<ItemErrorCode>>,
}

/// The pseudonym of each of `unique` (no nulls in, none out), from the cache where it has
/// them and from the service for the rest.
pub(super) async fn pseudonyms(
    exchange: Exchange<'_>,
    cache: Option<&PseudonymCache>,
    domain: &str,
    mode: Mode,
    unique: &[&str],
) -> Result<StringArray, Error> {
    let cache = match (cache, mode) {
        (Some(cache), Mode::Deterministic | Mode::Hash) => cache,
        _ => return exchange.pseudonyms_from_service(domain, mode, unique).await,
    };
    let mut known = StringBuilder::with_capacity(unique.len(), 0);
    let misses = cache.lookup_with(domain, mode, unique, |hit| known.append_option(hit));
    if misses.is_empty() {
        return Ok(known.finish());
    }
    let to_send: Vec<&str> = misses.iter().map(|&i| unique[i]).collect();
    let sent = exchange
        .pseudonyms_from_service(domain, mode, &to_send)
        .await?;
    cache.store(domain, mode, to_send.iter().copied().zip(sent.iter()));
    if misses.len() == unique.len() {
        return Ok(sent);
    }
    // Each pseudonym from the cache where it was known, else from the service's answers.
    let mut sources: Vec<(usize, usize)> = (0..unique.len()).map(|i| (0, i)).collect();
    for (answer, &i) in misses.iter().enumerate() {
        sources[i] = (1, answer);
    }
    let merged = arrow_select::interleave::interleave(&[&known.finish(), &sent], &sources)
        .map_err(offset_overflow)?;
    Ok(merged.as_string::<i32>().clone())
}

impl Exchange<'_> {
    pub(super) async fn pseudonyms_from_service(
        &self,
        domain: &str,
        mode: Mode,
        unique: &[&str],
    ) -> Result<StringArray, Error> {
        let form = Form::Arrow {
            domain,
            mode: Some(mode),
        };
        let in_arrow = async {
            let batches = self
                .run(Route::Pseudonymize, form, unique, encode, |id, n, body| {
                    let tokens = column(id, &decode(id, body)?, "pseudonyms", n)?;
                    if tokens.null_count() > 0 {
                        return Err(protocol(id, "not one pseudonym per value"));
                    }
                    Ok(tokens)
                })
                .await?;
            concat(batches)
        };
        let in_json = async {
            let answers = self.pseudonymize(domain, mode, unique).await?;
            Ok(StringArray::from(answers))
        };
        self.arrow_or_json(in_arrow, in_json).await
    }

    /// The answer to each of `unique` pseudonyms.
    pub(super) async fn per_item_answers(
        &self,
        operation: PerItem,
        domain: &str,
        unique: &[&str],
    ) -> Result<PerItemAnswers, Error> {
        let form = Form::Arrow {
            domain,
            mode: operation.mode(),
        };
        let in_arrow = async {
            let batches = self
                .run(operation.route(), form, unique, encode, |id, n, body| {
                    let batch = decode(id, body)?;
                    let values = column(id, &batch, operation.column(), n)?;
                    let codes: Vec<Option<ItemErrorCode>> = column(id, &batch, "error", n)?
                        .iter()
                        .map(|code| code.map(ItemErrorCode::from))
                        .collect();
                    one_answer_or_code(id, &codes, |i| values.is_valid(i))?;
                    let key_version = match operation {
                        PerItem::Pseudonymize => Some(key_version(id, &batch)?),
                        PerItem::Reidentify | PerItem::Rewrap => None,
                    };
                    Ok((values, codes, key_version))
                })
                .await?;
            let versions: Vec<u32> = batches
                .iter()
                .filter_map(|(_, _, version)| *version)
                .collect();
            one_key_version(&versions)?;
            let (values, codes): (Vec<_>, Vec<_>) = batches
                .into_iter()
                .map(|(values, codes, _)| (values, codes))
                .unzip();
            Ok(PerItemAnswers {
                values: concat(values)?,
                codes: codes.concat(),
            })
        };
        let in_json = async {
            let (values, codes) = match operation {
                PerItem::Pseudonymize => self.pseudonymize_per_item(domain, unique).await?,
                PerItem::Reidentify => self.reidentify(domain, unique).await?,
                PerItem::Rewrap => self.rewrap(domain, unique).await?,
            };
            Ok(PerItemAnswers {
                values: StringArray::from(values),
                codes,
            })
        };
        self.arrow_or_json(in_arrow, in_json).await
    }

    /// `in_arrow`'s answer; or, when the service refuses the Arrow form, or refused it less than
    /// [`JSON_AFTER_REFUSAL`] ago, `in_json`'s. (A call refused part way is sent again whole.)
    async fn arrow_or_json<T>(
        &self,
        in_arrow: impl Future<Output = Result<T, Error>>,
        in_json: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let refused_at = || self.transport.arrow_refused_at.lock();
        let recently_refused = refused_at()
            .map(|at| at.is_some_and(|at| at.elapsed() < JSON_AFTER_REFUSAL))
            .unwrap_or(false);
        if !recently_refused {
            match in_arrow.await {
                Err(error) if refuses_arrow(&error) => {
                    tracing::warn!(
                        "the service does not read the Arrow form of the API (it is older than \
                         this client): the array operations send JSON for the next {} s",
                        JSON_AFTER_REFUSAL.as_secs()
                    );
                    if let Ok(mut at) = refused_at() {
                        *at = Some(Instant::now());
                    }
                }
                answer => return answer,
            }
        }
        in_json.await
    }
}

/// How long the array operations send JSON after a service refused the Arrow form, before they
/// try it again (the fleet may have been upgraded meanwhile).
const JSON_AFTER_REFUSAL: Duration = Duration::from_secs(600);

/// Whether `error` is a service's refusal of the Arrow form itself: `415 Unsupported Media
/// Type`, or `400 bad_json` from a service that reads every body as JSON.
fn refuses_arrow(error: &Error) -> bool {
    match error {
        Error::Rejected { status: 415, .. } => true,
        Error::Rejected {
            status: 400, code, ..
        } => code == "bad_json",
        _ => false,
    }
}

/// A batch of strings as an Arrow IPC stream of one `Utf8` column.
fn encode(chunk: &[&str]) -> Result<Vec<u8>, ArrowError> {
    let column = Arc::new(StringArray::from_iter_values(chunk)) as ArrayRef;
    let batch = RecordBatch::try_from_iter([("values", column)])?;
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema())?;
    writer.write(&batch)?;
    writer.finish()?;
    writer.into_inner()
}

/// The one record batch of an answer's stream, read in place where its buffers are aligned.
fn decode(id: BatchId, body: Bytes) -> Result<RecordBatch, Error> {
    // arrow-ipc panics on some malformed schemas instead of failing: a bad answer must fail
    // the call, not the caller's process.
    let batch = std::panic::catch_unwind(AssertUnwindSafe(|| one_batch(body)));
    batch
        .ok()
        .flatten()
        .ok_or_else(|| protocol(id, "the answer is not one Arrow record batch"))
}

fn one_batch(body: Bytes) -> Option<RecordBatch> {
    let mut buffer = Buffer::from(body);
    let mut decoder = StreamDecoder::new();
    let mut batch = None;
    while !buffer.is_empty() {
        if let Some(decoded) = decoder.decode(&mut buffer).ok()?
            && batch.replace(decoded).is_some()
        {
            return None;
        }
    }
    decoder.finish().ok()?;
    batch
}

/// Column `name` of an answer to `n` items: strings, one per item.
fn column(id: BatchId, batch: &RecordBatch, name: &str, n: usize) -> Result<StringArray, Error> {
    batch
        .column_by_name(name)
        .and_then(|column| column.as_string_opt::<i32>())
        .filter(|column| column.len() == n)
        .cloned()
        .ok_or_else(|| {
            protocol(
                id,
                "a column of the answer is missing or not one string per item",
            )
        })
}

/// The key version of an answer's new pseudonyms: its schema's `key_version` metadata.
fn key_version(id: BatchId, batch: &RecordBatch) -> Result<u32, Error> {
    batch
        .schema_ref()
        .metadata()
        .get("key_version")
        .and_then(|version| version.parse().ok())
        .ok_or_else(|| protocol(id, "the answer names no key version"))
}

/// The batches' answers as one array, in batch order.
fn concat(batches: Vec<StringArray>) -> Result<StringArray, Error> {
    match <[StringArray; 1]>::try_from(batches) {
        Ok([only]) => Ok(only),
        Err(batches) if batches.is_empty() => Ok(StringArray::new_null(0)),
        Err(batches) => {
            let arrays: Vec<&dyn Array> = batches.iter().map(|a| a as &dyn Array).collect();
            let joined = arrow_select::concat::concat(&arrays).map_err(offset_overflow)?;
            Ok(joined.as_string::<i32>().clone())
        }
    }
}

/// What joining or taking strings fails with: more than `i32` offsets can address.
pub(super) fn offset_overflow(_: ArrowError) -> Error {
    Error::Unsupported("more than 2 GiB of answers in one array: send smaller arrays".to_owned())
}

#[cfg(test)]
mod tests {
    use arrow_array::LargeStringArray;

    use super::*;

    const ID: BatchId = BatchId { number: 1, of: 1 };

    fn rejected(status: u16, code: &str) -> Error {
        Error::Rejected {
            batch: 1,
            batches: 1,
            status,
            code: code.to_owned(),
            message: String::new(),
        }
    }

    fn stream(batches: &[RecordBatch]) -> Bytes {
        let mut writer = StreamWriter::try_new(Vec::new(), &batches[0].schema()).expect("writer");
        for batch in batches {
            writer.write(batch).expect("written");
        }
        writer.finish().expect("finished");
        Bytes::from(writer.into_inner().expect("stream"))
    }

    #[test]
    fn only_a_refusal_of_the_form_itself_means_an_older_service() {
        assert!(refuses_arrow(&rejected(415, "unsupported_media_type")));
        assert!(refuses_arrow(&rejected(400, "bad_json")));
        assert!(!refuses_arrow(&rejected(400, "invalid_argument")));
        assert!(!refuses_arrow(&rejected(403, "forbidden")));
        assert!(!refuses_arrow(&protocol(ID, "not one pseudonym per value")));
    }

    #[test]
    fn an_answer_is_one_batch_of_string_columns_one_row_per_item() {
        let body = Bytes::from(encode(&["a", "b"]).expect("encoded"));
        let batch = decode(ID, body.clone()).expect("one batch");
        let values = column(ID, &batch, "values", 2).expect("two strings");
        assert_eq!(values.iter().collect::<Vec<_>>(), [Some("a"), Some("b")]);
        assert!(column(ID, &batch, "values", 3).is_err(), "wrong length");
        assert!(
            column(ID, &batch, "pseudonyms", 2).is_err(),
            "missing column"
        );

        let twice = stream(&[batch.clone(), batch]);
        assert!(decode(ID, twice).is_err(), "two batches");
        assert!(
            decode(ID, body.slice(..body.len() - 12)).is_err(),
            "cut short"
        );
        assert!(
            decode(ID, Bytes::from_static(b"[\"d1.AAAA\"]")).is_err(),
            "JSON"
        );

        let large = Arc::new(LargeStringArray::from(vec!["a"])) as ArrayRef;
        let batch = RecordBatch::try_from_iter([("values", large)]).expect("batch");
        let batch = decode(ID, stream(&[batch])).expect("one batch");
        assert!(column(ID, &batch, "values", 1).is_err(), "not Utf8");
    }

    #[test]
    fn answers_of_several_batches_join_in_order() {
        let batches = vec![
            StringArray::from(vec!["a", "b"]),
            StringArray::from(vec!["c"]),
        ];
        let joined = concat(batches).expect("joined");
        assert_eq!(joined.iter().flatten().collect::<String>(), "abc");
        assert_eq!(concat(Vec::new()).expect("empty").len(), 0);
    }
}
