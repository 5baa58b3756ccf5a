//! The API's Arrow form: `POST /v1/pseudonymize`, `/v1/reidentify` and `/v1/rewrap` also take
//! and answer an Arrow IPC stream (`application/vnd.apache.arrow.stream`), so Arrow-native
//! callers send a column as it is and get one back, without a JSON string per value.
//!
//! - The request is a stream of one column, the values (or tokens): any string type (`Utf8`,
//!   `LargeUtf8`, `Utf8View`), nulls allowed, uncompressed, no dictionary. The domain and mode
//!   come in the query: `?domain=vin&mode=deterministic` (mode optional, as in JSON). It is read
//!   (by [`crate::arrow_body`]) only once the caller is authorized for the domain.
//! - The answer is a stream of one batch: `pseudonyms` (or `values`) as `Utf8`, index for index,
//!   and for re-identification and rewrapping an `error` column, the per-item code where an item
//!   failed. The key version of new pseudonyms is the schema's `key_version` metadata.
//! - A request refused as a whole is answered in JSON, as every refusal is.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Field, Schema};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pseudonym_client::Mode;
use pseudonym_client::wire::ItemError;
use serde::Deserialize;

use crate::error::ApiError;
use crate::texts::Texts;

pub(super) use pseudonym_client::wire::ARROW_STREAM;

/// An Arrow IPC stream, as the API document names it.
pub(super) struct ArrowStream;

impl utoipa::PartialSchema for ArrowStream {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_media_type(ARROW_STREAM)
            .description(Some(
                "An Arrow IPC stream (see the operation's description)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ArrowStream {}

/// Whether the request's body is an Arrow IPC stream.
pub(super) fn is_arrow(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(ARROW_STREAM))
}

/// What an Arrow request says in its query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ArrowQuery {
    /// With an Arrow body: the domain (as `domain` in JSON).
    pub(super) domain: Option<String>,
    /// With an Arrow body of values to pseudonymize: the mode [default: deterministic].
    pub(super) mode: Option<Mode>,
}

impl ArrowQuery {
    /// The domain, which an Arrow request must give in its query.
    pub(super) fn domain(&self) -> Result<&str, ApiError> {
        self.domain.as_deref().ok_or(ApiError::InvalidArgument(
            "an Arrow request gives its domain in the query: ?domain=...",
        ))
    }
}

/// The strings of a batch as a string array: its text becomes the array's data as it is.
fn string_array(texts: Texts) -> Result<StringArray, ApiError> {
    let (text, ends, present) = texts.into_parts();
    let offsets = std::iter::once(0)
        .chain(ends)
        .map(i32::try_from)
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| ApiError::Internal)?;
    StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(text.into_bytes()),
        Some(NullBuffer::from(present)),
    )
    .map_err(|_| ApiError::Internal)
}

/// The answer to an Arrow request for pseudonyms: `pseudonyms`, with the key version that made
/// them in the schema's metadata, and with `with_errors` (format-preserving requests) the
/// `error` column of [`per_item`].
pub(super) fn pseudonyms(
    texts: Texts,
    errors: &[ItemError],
    key_version: u32,
    with_errors: bool,
) -> Result<Response, ApiError> {
    let metadata = HashMap::from([("key_version".to_owned(), key_version.to_string())]);
    let mut columns = vec![("pseudonyms", Arc::new(string_array(texts)?) as ArrayRef)];
    if with_errors {
        columns.push(("error", error_codes(columns[0].1.len(), errors)));
    }
    stream(metadata, columns)
}

/// The answer to an Arrow request with per-item failures: `name` (the answers, null where an
/// item failed) and `error` (its code there).
pub(super) fn per_item(
    name: &str,
    answers: Texts,
    errors: &[ItemError],
) -> Result<Response, ApiError> {
    let codes = error_codes(answers.len(), errors);
    let answers = Arc::new(string_array(answers)?) as ArrayRef;
    stream(HashMap::new(), vec![(name, answers), ("error", codes)])
}

/// The `error` column of `len` items: each failed item's code, null for the others.
fn error_codes(len: usize, errors: &[ItemError]) -> ArrayRef {
    let mut codes: Vec<Option<&str>> = vec![None; len];
    for error in errors {
        if let Some(code) = codes.get_mut(error.index) {
            *code = Some(error.code.as_str());
        }
    }
    Arc::new(StringArray::from(codes))
}

/// One batch of `columns` as an Arrow IPC stream answer.
fn stream(
    metadata: HashMap<String, String>,
    columns: Vec<(&str, ArrayRef)>,
) -> Result<Response, ApiError> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, column)| Field::new(*name, column.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, c)| c).collect(),
    )
    .map_err(|_| ApiError::Internal)?;
    let mut body = Vec::new();
    let mut writer = StreamWriter::try_new(&mut body, &schema).map_err(|_| ApiError::Internal)?;
    writer.write(&batch).map_err(|_| ApiError::Internal)?;
    writer.finish().map_err(|_| ApiError::Internal)?;
    drop(writer);
    let content_type = HeaderValue::from_static(ARROW_STREAM);
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
