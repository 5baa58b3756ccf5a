//! The Arrow form of an exchange with the service: a batch goes out as an Arrow IPC stream of
//! one `Utf8` column, with the domain and mode in the query, and its answers come back as one.
//! No value or pseudonym becomes a JSON string or a `String` on the way: answers stay in the
//! arrays they arrive in until the rows are taken from them.
//!
//! A service older than the Arrow form refuses it (`415`, or `400 bad_json` from one that reads
//! every body as JSON). The client then sends JSON for the rest of its life.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::ArrowError;
use bytes::Bytes;

use crate::batch::BatchId;
use crate::client::{Client, Form, protocol};
use crate::endpoints::Route;
use crate::error::Error;
use crate::wire::{ItemErrorCode, Mode};

/// The operations that answer each pseudonym with a string or a per-item error.
#[derive(Debug, Clone, Copy)]
pub(super) enum PerItem {
    Reidentify,
    Rewrap,
}

impl PerItem {
    fn route(self) -> Route {
        match self {
            PerItem::Reidentify => Route::Reidentify,
            PerItem::Rewrap => Route::Rewrap,
        }
    }

    /// The answer's column of strings.
    fn column(self) -> &'static str {
        match self {
            PerItem::Reidentify => "values",
            PerItem::Rewrap => "pseudonyms",
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

impl Client {
    /// The pseudonym of each of `unique` (no nulls in, none out), from the cache where it has
    /// them and from the service for the rest.
    pub(super) async fn pseudonyms(
        &self,
        domain: &str,
        mode: Mode,
        unique: &[&str],
    ) -> Result<StringArray, Error> {
        let cache = match (&self.inner.cache, mode) {
            (Some(cache), Mode::Deterministic | Mode::Hash) => cache,
            _ => return self.pseudonyms_from_service(domain, mode, unique).await,
        };
        let mut known = StringBuilder::with_capacity(unique.len(), 0);
        let misses = cache.lookup_with(domain, mode, unique, |hit| known.append_option(hit));
        let known = known.finish();
        if misses.is_empty() {
            return Ok(known);
        }
        let to_send: Vec<&str> = misses.iter().map(|&i| unique[i]).collect();
        let sent = self.pseudonyms_from_service(domain, mode, &to_send).await?;
        cache.store(domain, mode, to_send.iter().copied().zip(sent.iter()));
        // Each pseudonym from the cache where it was known, else from the service's answers.
        let mut sources: Vec<(usize, usize)> = (0..unique.len()).map(|i| (0, i)).collect();
        for (answer, &i) in misses.iter().enumerate() {
            sources[i] = (1, answer);
        }
        let merged = arrow_select::interleave::interleave(&[&known, &sent], &sources)
            .map_err(offset_overflow)?;
        Ok(merged.as_string::<i32>().clone())
    }

    async fn pseudonyms_from_service(
        &self,
        domain: &str,
        mode: Mode,
        unique: &[&str],
    ) -> Result<StringArray, Error> {
        if self.reads_arrow() {
            let form = Form::Arrow {
                domain,
                mode: Some(mode),
            };
            let answers = self
                .run_batches(Route::Pseudonymize, form, unique, encode, |id, n, body| {
                    let tokens = column(id, &decode(id, body)?, "pseudonyms", n)?;
                    if tokens.null_count() > 0 {
                        return Err(protocol(id, "not one pseudonym per value"));
                    }
                    Ok(tokens)
                })
                .await;
            match answers {
                Err(error) if refuses_arrow(&error) => self.send_json_from_now_on(),
                answers => return concat(answers?),
            }
        }
        let answers = self.pseudonymize_from_service(domain, mode, unique).await?;
        Ok(StringArray::from(answers))
    }

    /// The answer to each of `unique` pseudonyms.
    pub(super) async fn per_item_answers(
        &self,
        operation: PerItem,
        domain: &str,
        unique: &[&str],
    ) -> Result<PerItemAnswers, Error> {
        if self.reads_arrow() {
            let form = Form::Arrow { domain, mode: None };
            let batches = self
                .run_batches(operation.route(), form, unique, encode, |id, n, body| {
                    let batch = decode(id, body)?;
                    let values = column(id, &batch, operation.column(), n)?;
                    let codes: Vec<Option<ItemErrorCode>> = column(id, &batch, "error", n)?
                        .iter()
                        .map(|code| code.map(ItemErrorCode::from))
                        .collect();
                    let mismatch = (0..n).any(|i| values.is_null(i) == codes[i].is_none());
                    if mismatch {
                        return Err(protocol(id, "a null answer without an error, or both"));
                    }
                    Ok((values, codes))
                })
                .await;
            match batches {
                Err(error) if refuses_arrow(&error) => self.send_json_from_now_on(),
                batches => {
                    let (values, codes): (Vec<_>, Vec<_>) = batches?.into_iter().unzip();
                    return Ok(PerItemAnswers {
                        values: concat(values)?,
                        codes: codes.concat(),
                    });
                }
            }
        }
        let (values, codes) = match operation {
            PerItem::Reidentify => self.reidentify_unique(domain, unique).await?,
            PerItem::Rewrap => self.rewrap_unique(domain, unique).await?,
        };
        Ok(PerItemAnswers {
            values: StringArray::from(values),
            codes,
        })
    }

    fn reads_arrow(&self) -> bool {
        !self.inner.json_only.load(Ordering::Relaxed)
    }

    fn send_json_from_now_on(&self) {
        if !self.inner.json_only.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the service does not read the Arrow form of the API (it is older than this \
                 client): this client sends JSON from now on"
            );
        }
    }
}

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
    let not_arrow = || protocol(id, "the answer is not one Arrow record batch");
    let mut buffer = Buffer::from(body);
    let mut decoder = StreamDecoder::new();
    let mut batch = None;
    while !buffer.is_empty() {
        if let Some(decoded) = decoder.decode(&mut buffer).map_err(|_| not_arrow())?
            && batch.replace(decoded).is_some()
        {
            return Err(not_arrow());
        }
    }
    decoder.finish().map_err(|_| not_arrow())?;
    batch.ok_or_else(not_arrow)
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
