//! The Arrow IPC stream of a request body, read without trusting a byte of it.
//!
//! A general IPC reader (arrow-ipc's `StreamReader`) allocates what a message declares before
//! it has the bytes, reads dictionaries, nested schemas and compressed buffers, and panics on
//! some inconsistent lengths: from a caller's body, that is a way to abort the process. This
//! module reads the one stream the API serves, and nothing else:
//!
//! - a schema of exactly one field, `Utf8`, `LargeUtf8` or `Utf8View`, little-endian, with no
//!   dictionary and no children;
//! - then record batches, uncompressed, of that one column; no dictionary batches, no second
//!   schema; then the end-of-stream marker (or the end of the body), and nothing after it.
//!
//! Every declared length (message header, body, buffer, offset, view) is checked against the
//! bytes actually received before it is used, and nothing is allocated by a declared size: the
//! only allocation is the list of items, at most `max_values` long. All of the stream's headers
//! are checked, and the rows counted, before any value is read ([`Stream::frame`]); values are
//! then read a batch at a time ([`Stream::read_batch`]), each one a slice of the body (no copy),
//! in time linear in the body's size. No input makes this module panic; `fuzz/` checks it.

use arrow_ipc::{Endianness, MessageHeader, Type};

/// The largest message header (flatbuffer) read: a schema of one field with its metadata
/// (pyarrow writes a `pandas` entry of a few hundred bytes) is far below it.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The end-of-stream marker's continuation word, and the one before every header since
/// Arrow 0.15 (older writers put the header's length first, without it).
const CONTINUATION: u32 = 0xFFFF_FFFF;

/// What one request's stream may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Rows in all batches, nulls included; also the most batches a stream may have.
    pub max_values: usize,
    /// Bytes of all non-null values together. A `Utf8View` value counts its whole length
    /// however many rows share its bytes, so this bounds what a request makes the service
    /// hold, not only what it sent.
    pub max_value_bytes: usize,
}

/// Why a body is not a stream this API reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an Arrow IPC stream, or one whose lengths and offsets do not fit its bytes.
    Malformed,
    /// A schema other than one string column.
    Schema,
    /// Dictionary batches, tensors, a second schema.
    Message,
    /// Compressed buffers.
    Compressed,
    /// More rows (or batches) than `max_values`.
    TooManyValues,
    /// More value bytes than `max_value_bytes`.
    TooManyBytes,
    /// A value that is not UTF-8.
    NotUtf8,
}

impl Refusal {
    /// What the caller is told: fixed text, never a byte of the body.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Malformed => {
                "the body is not an Arrow IPC stream, or its lengths or offsets do not fit its bytes"
            }
            Refusal::Schema => {
                "the Arrow stream's schema must be one field of Utf8, LargeUtf8 or Utf8View (no dictionary, little-endian)"
            }
            Refusal::Message => {
                "the Arrow stream may hold only record batches after its schema (no dictionaries)"
            }
            Refusal::Compressed => "the Arrow stream must not be compressed",
            Refusal::TooManyValues => "the Arrow stream holds more values than allowed",
            Refusal::TooManyBytes => "the Arrow stream's values hold more bytes than allowed",
            Refusal::NotUtf8 => "an Arrow string value is not UTF-8",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Refusal {}

/// A stream whose framing and headers were checked against its bytes.
#[derive(Debug)]
pub struct Stream<'a> {
    column: Column,
    batches: Vec<Batch<'a>>,
    rows: usize,
}

/// The string type of the stream's one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Utf8,
    LargeUtf8,
    Utf8View,
}

impl Column {
    /// The width of an offsets column's offsets; `None` for a view column.
    fn offset_width(self) -> Option<usize> {
        match self {
            Column::Utf8 => Some(4),
            Column::LargeUtf8 => Some(8),
            Column::Utf8View => None,
        }
    }
}

/// One record batch: its rows and its buffers, each a slice of the body.
#[derive(Debug)]
struct Batch<'a> {
    rows: usize,
    /// Empty when no row is null.
    validity: &'a [u8],
    /// Offsets (`Utf8`, `LargeUtf8`) or views (`Utf8View`).
    index: &'a [u8],
    /// The value bytes: one buffer, or a view's variadic buffers.
    data: Vec<&'a [u8]>,
}

impl<'a> Stream<'a> {
    /// Checks the framing of every message of `body` and the headers of its schema and record
    /// batches, and counts their rows; no value is read yet.
    pub fn frame(body: &'a [u8], bounds: Bounds) -> Result<Self, Refusal> {
        let mut messages = Messages { rest: body };
        let (schema, _) = messages.next()?.ok_or(Refusal::Malformed)?;
        let column = column_of(&schema)?;
        let mut stream = Stream {
            column,
            batches: Vec::new(),
            rows: 0,
        };
        while let Some((message, body)) = messages.next()? {
            if message.header_type() != MessageHeader::RecordBatch {
                return Err(Refusal::Message);
            }
            if stream.batches.len() == bounds.max_values.max(1) {
                return Err(Refusal::TooManyValues);
            }
            let batch = message.header_as_record_batch().ok_or(Refusal::Malformed)?;
            let batch = Batch::frame(column, &batch, body, bounds.max_values - stream.rows)?;
            stream.rows += batch.rows;
            stream.batches.push(batch);
        }
        Ok(stream)
    }

    /// Rows in all batches.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Record batches.
    pub fn batches(&self) -> usize {
        self.batches.len()
    }

    /// Appends the rows of batch `index` to `items` (`None` for a null), checking each value's
    /// bounds and UTF-8; `value_bytes` counts the bytes of values read so far, at most
    /// `bounds.max_value_bytes`.
    pub fn read_batch<T: From<&'a str>>(
        &self,
        index: usize,
        bounds: Bounds,
        value_bytes: &mut usize,
        items: &mut Vec<Option<T>>,
    ) -> Result<(), Refusal> {
        let Some(batch) = self.batches.get(index) else {
            return Ok(());
        };
        for row in 0..batch.rows {
            if !batch.is_valid(row) {
                items.push(None);
                continue;
            }
            let bytes = match self.column {
                Column::Utf8 => batch.offset_value::<4>(row)?,
                Column::LargeUtf8 => batch.offset_value::<8>(row)?,
                Column::Utf8View => batch.view_value(row)?,
            };
            *value_bytes = value_bytes
                .checked_add(bytes.len())
                .filter(|&total| total <= bounds.max_value_bytes)
                .ok_or(Refusal::TooManyBytes)?;
            let text = std::str::from_utf8(bytes).map_err(|_| Refusal::NotUtf8)?;
            items.push(Some(T::from(text)));
        }
        Ok(())
    }

    /// Every row of every batch, read at once: [`Stream::frame`], then [`Stream::read_batch`]
    /// for each batch.
    pub fn read(body: &'a [u8], bounds: Bounds) -> Result<Vec<Option<&'a str>>, Refusal> {
        let stream = Stream::frame(body, bounds)?;
        let mut items = Vec::with_capacity(stream.rows);
        let mut value_bytes = 0;
        for index in 0..stream.batches() {
            stream.read_batch(index, bounds, &mut value_bytes, &mut items)?;
        }
        Ok(items)
    }
}

/// The messages of a stream, each with the slice of its body.
struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    /// The next message; `None` at the end-of-stream marker or the end of the body, after which
    /// no byte may follow.
    fn next(&mut self) -> Result<Option<(arrow_ipc::Message<'a>, &'a [u8])>, Refusal> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let mut header_len = take_u32(&mut self.rest)?;
        if header_len == CONTINUATION {
            header_len = take_u32(&mut self.rest)?;
        }
        if header_len == 0 {
            return match self.rest.is_empty() {
                true => Ok(None),
                false => Err(Refusal::Malformed),
            };
        }
        let header_len = usize::try_from(header_len)
            .ok()
            .filter(|&len| len <= MAX_HEADER_BYTES)
            .ok_or(Refusal::Malformed)?;
        let header = take(&mut self.rest, header_len)?;
        let message = arrow_ipc::root_as_message_with_opts(&verifier_options(header), header)
            .map_err(|_| Refusal::Malformed)?;
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| Refusal::Malformed)?;
        let body = take(&mut self.rest, body_len)?;
        Ok(Some((message, body)))
    }
}

/// The flatbuffer verifier's bounds for one header: its work stays within a small multiple of
/// the header's bytes, however its tables refer to each other (each read of a field counts its
/// bytes, so a header without shared parts stays within about twice its length).
fn verifier_options(header: &[u8]) -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        max_depth: 16,
        max_tables: 1024,
        max_apparent_size: 8 * header.len() + 1024,
        ignore_missing_null_terminator: false,
    }
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], Refusal> {
    let (taken, after) = rest.split_at_checked(len).ok_or(Refusal::Malformed)?;
    *rest = after;
    Ok(taken)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, Refusal> {
    let (word, after) = rest.split_first_chunk::<4>().ok_or(Refusal::Malformed)?;
    *rest = after;
    Ok(u32::from_le_bytes(*word))
}

/// The one string column of a schema message, or why it is not one.
fn column_of(message: &arrow_ipc::Message<'_>) -> Result<Column, Refusal> {
    if message.header_type() != MessageHeader::Schema {
        return Err(Refusal::Malformed);
    }
    let schema = message.header_as_schema().ok_or(Refusal::Malformed)?;
    if schema.endianness() != Endianness::Little {
        return Err(Refusal::Schema);
    }
    let fields = schema.fields().ok_or(Refusal::Schema)?;
    if fields.len() != 1 {
        return Err(Refusal::Schema);
    }
    let field = fields.get(0);
    if field.dictionary().is_some() || field.children().is_some_and(|c| !c.is_empty()) {
        return Err(Refusal::Schema);
    }
    match field.type_type() {
        Type::Utf8 => Ok(Column::Utf8),
        Type::LargeUtf8 => Ok(Column::LargeUtf8),
        Type::Utf8View => Ok(Column::Utf8View),
        _ => Err(Refusal::Schema),
    }
}

impl<'a> Batch<'a> {
    /// The rows (at most `max_rows`) and buffers of a record batch of `column`, every buffer
    /// checked to lie in `body`, the bytes the message carried.
    fn frame(
        column: Column,
        batch: &arrow_ipc::RecordBatch<'_>,
        body: &'a [u8],
        max_rows: usize,
    ) -> Result<Self, Refusal> {
        if batch.compression().is_some() {
            return Err(Refusal::Compressed);
        }
        let rows = usize::try_from(batch.length()).map_err(|_| Refusal::Malformed)?;
        if rows > max_rows {
            return Err(Refusal::TooManyValues);
        }
        let nodes = batch.nodes().ok_or(Refusal::Malformed)?;
        if nodes.len() != 1 || usize::try_from(nodes.get(0).length()) != Ok(rows) {
            return Err(Refusal::Malformed);
        }
        let null_count = nodes.get(0).null_count();
        let variadic = batch.variadicBufferCounts();
        let data_buffers = match (column, variadic) {
            (Column::Utf8View, None) => 0,
            (Column::Utf8View, Some(counts)) if counts.len() == 1 => {
                usize::try_from(counts.get(0)).map_err(|_| Refusal::Malformed)?
            }
            (Column::Utf8 | Column::LargeUtf8, None) => 1,
            (Column::Utf8 | Column::LargeUtf8, Some(counts)) if counts.is_empty() => 1,
            _ => return Err(Refusal::Malformed),
        };
        let buffers = batch.buffers().ok_or(Refusal::Malformed)?;
        if buffers.len().checked_sub(2) != Some(data_buffers) {
            return Err(Refusal::Malformed);
        }
        let slice = |i: usize| -> Result<&'a [u8], Refusal> {
            let buffer = buffers.get(i);
            let start = usize::try_from(buffer.offset()).map_err(|_| Refusal::Malformed)?;
            let len = usize::try_from(buffer.length()).map_err(|_| Refusal::Malformed)?;
            let end = start.checked_add(len).ok_or(Refusal::Malformed)?;
            body.get(start..end).ok_or(Refusal::Malformed)
        };
        let validity = slice(0)?;
        let index = slice(1)?;
        let data = (2..buffers.len()).map(slice).collect::<Result<_, _>>()?;
        let needed_validity = match validity.is_empty() && null_count == 0 {
            true => 0,
            false => rows.div_ceil(8),
        };
        let index_width = match column {
            Column::Utf8 => 4,
            Column::LargeUtf8 => 8,
            Column::Utf8View => 16,
        };
        let index_entries = match (column, rows) {
            // An empty array may come without its one offset.
            (Column::Utf8 | Column::LargeUtf8, 0) => Some(0),
            (Column::Utf8 | Column::LargeUtf8, _) => rows.checked_add(1),
            (Column::Utf8View, _) => Some(rows),
        };
        let needed_index = index_entries
            .and_then(|entries| entries.checked_mul(index_width))
            .ok_or(Refusal::Malformed)?;
        // Offsets and views come whole: a buffer that ends inside one is not a writer's.
        if validity.len() < needed_validity
            || index.len() < needed_index
            || index.len() % index_width != 0
        {
            return Err(Refusal::Malformed);
        }
        let batch = Batch {
            rows,
            validity,
            index,
            data,
        };
        // Offsets must never go back: values that overlap would let a small body name the same
        // bytes again and again, and make reading cost more than the body's size.
        if let Some(width) = column.offset_width() {
            let data_len = batch.data.first().map_or(0, |data| data.len());
            let mut previous = 0;
            for at in 0..index_entries.unwrap_or(0) {
                let current = offset(batch.index, at, width)?;
                if (at > 0 && current < previous) || current > data_len {
                    return Err(Refusal::Malformed);
                }
                previous = current;
            }
        }
        // The bitmap says which rows are null; a count that disagrees with it leaves readers to
        // pick one (arrow-rs trusts a count of 0 over the bitmap): not a writer's stream.
        let nulls = (0..rows).filter(|&row| !batch.is_valid(row)).count();
        if i64::try_from(nulls) != Ok(null_count) {
            return Err(Refusal::Malformed);
        }
        Ok(batch)
    }

    fn is_valid(&self, row: usize) -> bool {
        self.validity
            .get(row / 8)
            .is_none_or(|byte| byte & (1 << (row % 8)) != 0)
    }

    /// The bytes of `row` in an offsets column of `WIDTH`-byte offsets.
    fn offset_value<const WIDTH: usize>(&self, row: usize) -> Result<&'a [u8], Refusal> {
        let range = offset(self.index, row, WIDTH)?..offset(self.index, row + 1, WIDTH)?;
        let data = self.data.first().ok_or(Refusal::Malformed)?;
        data.get(range).ok_or(Refusal::Malformed)
    }

    /// The bytes of `row` in a view column: inline in its view up to 12 bytes, else in a data
    /// buffer, whose first four bytes the view repeats.
    fn view_value(&self, row: usize) -> Result<&'a [u8], Refusal> {
        let view = self
            .index
            .get(row * 16..row * 16 + 16)
            .ok_or(Refusal::Malformed)?;
        let word =
            |at: usize| i32::from_le_bytes([view[at], view[at + 1], view[at + 2], view[at + 3]]);
        let len = usize::try_from(word(0)).map_err(|_| Refusal::Malformed)?;
        if len <= 12 {
            return Ok(&view[4..4 + len]);
        }
        let buffer = usize::try_from(word(8)).map_err(|_| Refusal::Malformed)?;
        let start = usize::try_from(word(12)).map_err(|_| Refusal::Malformed)?;
        let value = self
            .data
            .get(buffer)
            .and_then(|data| data.get(start..start.checked_add(len)?))
            .ok_or(Refusal::Malformed)?;
        match value[..4] == view[4..8] {
            true => Ok(value),
            false => Err(Refusal::Malformed),
        }
    }
}

/// Offset `at` of an offsets buffer of `width`-byte little-endian integers, as an index.
fn offset(index: &[u8], at: usize, width: usize) -> Result<usize, Refusal> {
    let bytes = index
        .get(at * width..at * width + width)
        .ok_or(Refusal::Malformed)?;
    let value = match width {
        4 => i64::from(i32::from_le_bytes(
            bytes.try_into().map_err(|_| Refusal::Malformed)?,
        )),
        _ => i64::from_le_bytes(bytes.try_into().map_err(|_| Refusal::Malformed)?),
    };
    usize::try_from(value).map_err(|_| Refusal::Malformed)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow_array::builder::StringViewBuilder;
    use arrow_array::cast::AsArray;
    use arrow_array::{ArrayRef, Int64Array, LargeStringArray, RecordBatch, StringArray};
    use arrow_ipc::writer::StreamWriter;
    use arrow_schema::{Field, Schema};

    use super::*;

    const BOUNDS: Bounds = Bounds {
        max_values: 100,
        max_value_bytes: 10_000,
    };

    /// A stream as arrow-rs writes it, of one column per batch (with schema metadata, as
    /// pyarrow's `pandas` entry).
    fn written(batches: &[ArrayRef]) -> Vec<u8> {
        let field = Field::new("values", batches[0].data_type().clone(), true);
        let metadata = HashMap::from([("pandas".to_owned(), "{}".to_owned())]);
        let schema = Arc::new(Schema::new_with_metadata(vec![field], metadata));
        let mut body = Vec::new();
        let mut writer = StreamWriter::try_new(&mut body, &schema).expect("writer");
        for column in batches {
            let batch = RecordBatch::try_new(schema.clone(), vec![column.clone()]).expect("batch");
            writer.write(&batch).expect("written");
        }
        writer.finish().expect("finished");
        drop(writer);
        body
    }

    fn values() -> Vec<Option<&'static str>> {
        vec![
            Some("WVWZZZ1JZXW000001"),
            None,
            Some(""),
            Some("ünï ✓"),
            Some("twelve bytes"),
            Some("thirteen byte"),
        ]
    }

    #[test]
    fn reads_what_arrow_rs_writes_in_every_string_type() {
        let mut views = StringViewBuilder::new().with_fixed_block_size(16);
        for value in values() {
            views.append_option(value);
        }
        let columns: [ArrayRef; 3] = [
            Arc::new(StringArray::from(values())),
            Arc::new(LargeStringArray::from(values())),
            Arc::new(views.finish()),
        ];
        assert!(
            columns[2].as_string_view().data_buffers().len() > 1,
            "views in several buffers"
        );
        for column in columns {
            let empty = column.slice(0, 0);
            let tail = column.slice(2, 4);
            let body = written(&[column, empty, tail]);
            let mut expected = values();
            expected.extend(&values()[2..]);
            assert_eq!(Stream::read(&body, BOUNDS), Ok(expected));
            assert_eq!(Stream::frame(&body, BOUNDS).expect("framed").batches(), 3);
        }
    }

    #[test]
    fn the_end_marker_may_be_missing_but_nothing_may_follow_it() {
        let body = written(&[Arc::new(StringArray::from(values()))]);
        let unmarked = &body[..body.len() - 8];
        assert_eq!(Stream::read(unmarked, BOUNDS), Ok(values()));
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(Stream::read(&trailing, BOUNDS), Err(Refusal::Malformed));
        for cut in [1, 4, 7, 9, 100, body.len() - 9] {
            assert!(Stream::read(&body[..cut], BOUNDS).is_err(), "cut at {cut}");
        }
        assert_eq!(Stream::read(&[], BOUNDS), Err(Refusal::Malformed));
    }

    #[test]
    fn offsets_that_go_back_are_refused() {
        let column: ArrayRef = Arc::new(StringArray::from(vec![Some("abcd"), None, Some("abcd")]));
        let body = written(&[column]);
        let words = |offsets: [i32; 4]| offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        let honest: Vec<u8> = words([0, 4, 4, 8]);
        let at = body
            .windows(honest.len())
            .position(|window| window == honest)
            .expect("the offsets are in the body");
        let mut overlapping = body.clone();
        overlapping[at..at + 16].copy_from_slice(&words([0, 4, 0, 4]));
        assert_eq!(Stream::read(&overlapping, BOUNDS), Err(Refusal::Malformed));
        let mut past_the_data = body.clone();
        past_the_data[at..at + 16].copy_from_slice(&words([0, 4, 4, 9]));
        assert_eq!(
            Stream::read(&past_the_data, BOUNDS),
            Err(Refusal::Malformed)
        );
        let mut shifted = body;
        shifted[at..at + 16].copy_from_slice(&words([4, 4, 4, 8]));
        assert_eq!(
            Stream::read(&shifted, BOUNDS),
            Ok(vec![Some(""), None, Some("abcd")])
        );
    }

    #[test]
    fn only_one_string_column_is_read() {
        let numbers = written(&[Arc::new(Int64Array::from(vec![1, 2]))]);
        assert_eq!(Stream::read(&numbers, BOUNDS), Err(Refusal::Schema));
        let field = |name| Field::new(name, arrow_schema::DataType::Utf8, true);
        let schema = Arc::new(Schema::new(vec![field("a"), field("b")]));
        let column: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![column.clone(), column]).expect("batch");
        let mut body = Vec::new();
        let mut writer = StreamWriter::try_new(&mut body, &schema).expect("writer");
        writer.write(&batch).expect("written");
        writer.finish().expect("finished");
        drop(writer);
        assert_eq!(Stream::read(&body, BOUNDS), Err(Refusal::Schema));
    }

    #[test]
    fn values_and_their_bytes_are_bounded() {
        let column: ArrayRef = Arc::new(StringArray::from(vec!["abcd"; 10]));
        let body = written(&[column.clone(), column]);
        let exactly = Bounds {
            max_values: 20,
            max_value_bytes: 80,
        };
        assert_eq!(Stream::read(&body, exactly).map(|v| v.len()), Ok(20));
        let fewer_values = Bounds {
            max_values: 19,
            ..exactly
        };
        assert_eq!(
            Stream::read(&body, fewer_values),
            Err(Refusal::TooManyValues)
        );
        let fewer_bytes = Bounds {
            max_value_bytes: 79,
            ..exactly
        };
        assert_eq!(Stream::read(&body, fewer_bytes), Err(Refusal::TooManyBytes));
        let one_batch_at_most = Bounds {
            max_values: 1,
            ..exactly
        };
        let empty: ArrayRef = Arc::new(StringArray::from(Vec::<&str>::new()));
        let two_empty_batches = written(&[empty.clone(), empty]);
        assert_eq!(
            Stream::read(&two_empty_batches, one_batch_at_most),
            Err(Refusal::TooManyValues),
            "no more batches than values"
        );
    }

    #[test]
    fn a_value_that_is_not_utf8_is_refused() {
        let column: ArrayRef = Arc::new(StringArray::from(vec!["ab", "é"]));
        let mut body = written(&[column]);
        // The data buffer ends with "abé": cut the two bytes of é into an invalid sequence.
        let at = body
            .windows(4)
            .position(|w| w == "abé".as_bytes())
            .expect("the values in the body");
        body[at + 3] = 0xff;
        assert_eq!(Stream::read(&body, BOUNDS), Err(Refusal::NotUtf8));
    }
}
