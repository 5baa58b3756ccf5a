//! The API's Arrow form: `POST /v1/pseudonymize`, `/v1/reidentify` and `/v1/rewrap` also take
//! and answer an Arrow IPC stream (`application/vnd.apache.arrow.stream`), so Arrow-native
//! callers send a column as it is and get one back, without a JSON string per value.
//!
//! - The request is a stream whose batches' first column holds the values (or tokens): any
//!   string type (`Utf8`, `LargeUtf8`, `Utf8View`), nulls allowed. The domain and mode come in
//!   the query: `?domain=vin&mode=deterministic` (mode optional, as in JSON).
//! - The answer is a stream of one batch: `pseudonyms` (or `values`) as `Utf8`, index for index,
//!   and for re-identification and rewrapping an `error` column, the per-item code where an item
//!   failed. The key version of new pseudonyms is the schema's `key_version` metadata.
//! - A request refused as a whole is answered in JSON, as every refusal is.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pseudonym_client::Mode;
use pseudonym_client::wire::{ItemError, Text};
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

/// The first column of every batch of the stream in `body`.
pub(super) fn columns(body: &[u8]) -> Result<Vec<ArrayRef>, ApiError> {
    let not_a_stream =
        || ApiError::InvalidArgument("the body is not an Arrow IPC stream (uncompressed)");
    let reader = StreamReader::try_new(Cursor::new(body), None).map_err(|_| not_a_stream())?;
    let mut columns = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|_| not_a_stream())?;
        let column = batch
            .columns()
            .first()
            .ok_or(ApiError::InvalidArgument("the Arrow stream has no column"))?;
        if !matches!(
            column.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return Err(ApiError::InvalidArgument(
                "the Arrow stream's first column must be strings (Utf8, LargeUtf8 or Utf8View)",
            ));
        }
        columns.push(column.clone());
    }
    Ok(columns)
}

/// The items of `columns`, at most `max` in all.
pub(super) fn items(columns: &[ArrayRef], max: usize) -> Result<Vec<Option<Text<'_>>>, ApiError> {
    let count: usize = columns.iter().map(|column| column.len()).sum();
    if count > max {
        return Err(ApiError::TooManyValues { max });
    }
    let mut items = Vec::with_capacity(count);
    fn text(value: Option<&str>) -> Option<Text<'_>> {
        value.map(Text::from)
    }
    for column in columns {
        match column.data_type() {
            DataType::Utf8 => items.extend(column.as_string::<i32>().iter().map(text)),
            DataType::LargeUtf8 => items.extend(column.as_string::<i64>().iter().map(text)),
            _ => items.extend(column.as_string_view().iter().map(text)),
        }
    }
    Ok(items)
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

/// The answer to an Arrow request for pseudonyms: `pseudonyms`, made with `key_version`.
pub(super) fn pseudonyms(tokens: Texts, key_version: Option<u32>) -> Result<Response, ApiError> {
    let metadata = key_version
        .map(|version| HashMap::from([("key_version".to_owned(), version.to_string())]))
        .unwrap_or_default();
    let column = Arc::new(string_array(tokens)?) as ArrayRef;
    stream(metadata, vec![("pseudonyms", column)])
}

/// The answer to an Arrow request with per-item failures: `name` (the answers, null where an
/// item failed) and `error` (its code there).
pub(super) fn per_item(
    name: &str,
    answers: Texts,
    errors: &[ItemError],
) -> Result<Response, ApiError> {
    let mut codes: Vec<Option<&str>> = vec![None; answers.len()];
    for error in errors {
        if let Some(code) = codes.get_mut(error.index) {
            *code = Some(error.code.as_str());
        }
    }
    let answers = Arc::new(string_array(answers)?) as ArrayRef;
    let codes = Arc::new(StringArray::from(codes)) as ArrayRef;
    stream(HashMap::new(), vec![(name, answers), ("error", codes)])
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
