//! Arrow IPC streams built from a description, valid or made hostile on purpose: the structure
//! the `arrow` fuzz target mutates (lengths, offsets, types, dictionaries, views, compression),
//! and the hostile bodies of the regression tests. Written message by message with arrow-ipc's
//! flatbuffer builders, so any field can hold any value, which arrow's own writer never allows.

use arbitrary::Arbitrary;
use arrow_ipc::{
    BodyCompression, BodyCompressionArgs, BodyCompressionMethod, CompressionType, DictionaryBatch,
    DictionaryBatchArgs, DictionaryEncoding, DictionaryEncodingArgs, Endianness, Field, FieldArgs,
    FieldNode, Int, IntArgs, Message, MessageArgs, MessageHeader, MetadataVersion, RecordBatch,
    RecordBatchArgs, Schema, SchemaArgs, Type,
};
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};

/// The type of the stream's first field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Column {
    /// Strings with 32-bit offsets.
    Utf8,
    /// Strings with 64-bit offsets.
    LargeUtf8,
    /// Strings as 16-byte views into variadic buffers.
    Utf8View,
    /// Not strings: 64-bit integers.
    Int64,
}

/// A whole stream.
#[derive(Debug, Clone, Arbitrary)]
pub struct StreamSpec {
    /// The first field's type.
    pub column: Column,
    /// Fields after the first (integers).
    pub extra_fields: u32,
    /// The first field dictionary-encoded.
    pub dictionary_field: bool,
    /// The schema says big-endian.
    pub big_endian: bool,
    /// Headers without the continuation marker (before Arrow 0.15).
    pub legacy_framing: bool,
    /// Dictionary batch messages before the record batches.
    pub dictionary_batches: u32,
    /// The record batches.
    pub batches: Vec<BatchSpec>,
    /// The end-of-stream marker at the end.
    pub end_marker: bool,
    /// Bytes after everything.
    pub trailing: Vec<u8>,
}

/// One record batch: honest values, then what is changed in it.
#[derive(Debug, Clone, Arbitrary)]
pub struct BatchSpec {
    /// The rows; `None` is null.
    pub values: Vec<Option<String>>,
    /// Views of long values point at one shared copy of the first long value (`Utf8View`).
    pub shared_views: bool,
    /// Changes to the batch's header and buffers, in order.
    pub mutations: Vec<Mutation>,
}

/// A change to one record batch.
#[derive(Debug, Clone, Arbitrary)]
pub enum Mutation {
    /// The batch's row count.
    Rows(i64),
    /// The field node's length.
    NodeLength(i64),
    /// The field node's null count.
    NullCount(i64),
    /// The message's declared body length.
    BodyLength(i64),
    /// A buffer's offset in the body.
    BufferOffset(u8, i64),
    /// A buffer's length.
    BufferLength(u8, i64),
    /// One 32-bit word of the offsets or views buffer.
    IndexWord(u16, i32),
    /// One 64-bit word of the offsets buffer (`LargeUtf8`).
    IndexLong(u16, i64),
    /// One byte of a data buffer.
    DataByte(u16, u8),
    /// The variadic buffer counts.
    VariadicCounts(Vec<i64>),
    /// One buffer fewer in the header.
    DropBuffer,
    /// One more (empty) buffer in the header.
    ExtraBuffer,
    /// Compressed with this codec (0: LZ4 frame, 1: ZSTD), buffers left as they are.
    Compressed(i8),
    /// The message header's length word.
    HeaderLength(u32),
}

impl StreamSpec {
    /// A valid stream of `batches` of `column`.
    pub fn valid(column: Column, batches: Vec<Vec<Option<String>>>) -> StreamSpec {
        StreamSpec {
            column,
            extra_fields: 0,
            dictionary_field: false,
            big_endian: false,
            legacy_framing: false,
            dictionary_batches: 0,
            batches: batches
                .into_iter()
                .map(|values| BatchSpec {
                    values,
                    shared_views: false,
                    mutations: Vec::new(),
                })
                .collect(),
            end_marker: true,
            trailing: Vec::new(),
        }
    }

    /// The stream's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let schema = self.schema_message();
        self.frame(&mut out, &schema, &[], None);
        for _ in 0..self.dictionary_batches {
            let (header, body) = dictionary_message();
            self.frame(&mut out, &header, &body, None);
        }
        for batch in &self.batches {
            let (header, body, header_length) = batch.message(self.column);
            self.frame(&mut out, &header, &body, header_length);
        }
        if self.end_marker {
            out.extend_from_slice(&u32::MAX.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        out.extend_from_slice(&self.trailing);
        out
    }

    fn frame(&self, out: &mut Vec<u8>, header: &[u8], body: &[u8], length: Option<u32>) {
        let padded = header.len().next_multiple_of(8);
        if !self.legacy_framing {
            out.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        let length = length.unwrap_or(u32::try_from(padded).unwrap_or(u32::MAX));
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(header);
        out.resize(out.len() + padded - header.len(), 0);
        out.extend_from_slice(body);
    }

    fn schema_message(&self) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let mut fields = Vec::new();
        let first = match self.column {
            Column::Utf8 => (Type::Utf8, empty_table(&mut fbb)),
            Column::LargeUtf8 => (Type::LargeUtf8, empty_table(&mut fbb)),
            Column::Utf8View => (Type::Utf8View, empty_table(&mut fbb)),
            Column::Int64 => (Type::Int, int64(&mut fbb)),
        };
        let dictionary = self.dictionary_field.then(|| {
            let index_type = Int::create(
                &mut fbb,
                &IntArgs {
                    bitWidth: 32,
                    is_signed: true,
                },
            );
            DictionaryEncoding::create(
                &mut fbb,
                &DictionaryEncodingArgs {
                    id: 0,
                    indexType: Some(index_type),
                    ..Default::default()
                },
            )
        });
        let name = fbb.create_string("values");
        fields.push(Field::create(
            &mut fbb,
            &FieldArgs {
                name: Some(name),
                nullable: true,
                type_type: first.0,
                type_: Some(first.1),
                dictionary,
                ..Default::default()
            },
        ));
        for _ in 0..self.extra_fields {
            let type_ = int64(&mut fbb);
            fields.push(Field::create(
                &mut fbb,
                &FieldArgs {
                    nullable: true,
                    type_type: Type::Int,
                    type_: Some(type_),
                    ..Default::default()
                },
            ));
        }
        let fields = fbb.create_vector(&fields);
        let schema = Schema::create(
            &mut fbb,
            &SchemaArgs {
                endianness: match self.big_endian {
                    true => Endianness::Big,
                    false => Endianness::Little,
                },
                fields: Some(fields),
                ..Default::default()
            },
        );
        finish(fbb, MessageHeader::Schema, schema.as_union_value(), 0)
    }
}

impl BatchSpec {
    /// The header, the body and the header length word (if mutated) of this batch.
    fn message(&self, column: Column) -> (Vec<u8>, Vec<u8>, Option<u32>) {
        let rows = self.values.len();
        let mut validity = vec![0u8; rows.div_ceil(8)];
        for (row, value) in self.values.iter().enumerate() {
            if value.is_some() {
                validity[row / 8] |= 1 << (row % 8);
            }
        }
        let nulls = self.values.iter().filter(|v| v.is_none()).count();
        let (index, data) = match column {
            Column::Utf8 | Column::Int64 => offsets(&self.values, 4),
            Column::LargeUtf8 => offsets(&self.values, 8),
            Column::Utf8View => views(&self.values, self.shared_views),
        };
        let mut buffers = vec![validity, index, data];
        let mut header = BatchHeader {
            rows: rows as i64,
            node_length: rows as i64,
            null_count: nulls as i64,
            body_length: None,
            variadic: (column == Column::Utf8View).then(|| vec![1]),
            compression: None,
            header_length: None,
            buffer_changes: Vec::new(),
            buffer_count_change: 0,
        };
        for mutation in &self.mutations {
            header.apply(mutation, &mut buffers);
        }
        // Each buffer padded to 8 bytes in the body, as writers do.
        let mut body = Vec::new();
        let mut layout = Vec::new();
        for buffer in &buffers {
            layout.push((body.len() as i64, buffer.len() as i64));
            body.extend_from_slice(buffer);
            body.resize(body.len().next_multiple_of(8), 0);
        }
        for &(buffer, ref change) in &header.buffer_changes {
            if let Some(entry) = layout.get_mut(usize::from(buffer)) {
                match change {
                    BufferChange::Offset(offset) => entry.0 = *offset,
                    BufferChange::Length(length) => entry.1 = *length,
                }
            }
        }
        match header.buffer_count_change {
            n if n < 0 => {
                layout.pop();
            }
            n if n > 0 => layout.push((body.len() as i64, 0)),
            _ => {}
        }
        let mut fbb = FlatBufferBuilder::new();
        let nodes = fbb.create_vector(&[FieldNode::new(header.node_length, header.null_count)]);
        let buffers: Vec<arrow_ipc::Buffer> = layout
            .iter()
            .map(|&(offset, length)| arrow_ipc::Buffer::new(offset, length))
            .collect();
        let buffers = fbb.create_vector(&buffers);
        let variadic = header.variadic.as_ref().map(|v| fbb.create_vector(v));
        let compression = header.compression.map(|codec| {
            BodyCompression::create(
                &mut fbb,
                &BodyCompressionArgs {
                    codec: CompressionType(codec),
                    method: BodyCompressionMethod::BUFFER,
                },
            )
        });
        let batch = RecordBatch::create(
            &mut fbb,
            &RecordBatchArgs {
                length: header.rows,
                nodes: Some(nodes),
                buffers: Some(buffers),
                compression,
                variadicBufferCounts: variadic,
            },
        );
        let body_length = header.body_length.unwrap_or(body.len() as i64);
        let bytes = finish(
            fbb,
            MessageHeader::RecordBatch,
            batch.as_union_value(),
            body_length,
        );
        (bytes, body, header.header_length)
    }
}

/// The header fields of a batch, as mutations leave them.
struct BatchHeader {
    rows: i64,
    node_length: i64,
    null_count: i64,
    body_length: Option<i64>,
    variadic: Option<Vec<i64>>,
    compression: Option<i8>,
    header_length: Option<u32>,
    buffer_changes: Vec<(u8, BufferChange)>,
    buffer_count_change: i32,
}

enum BufferChange {
    Offset(i64),
    Length(i64),
}

impl BatchHeader {
    fn apply(&mut self, mutation: &Mutation, buffers: &mut [Vec<u8>]) {
        match mutation {
            Mutation::Rows(rows) => self.rows = *rows,
            Mutation::NodeLength(length) => self.node_length = *length,
            Mutation::NullCount(count) => self.null_count = *count,
            Mutation::BodyLength(length) => self.body_length = Some(*length),
            Mutation::BufferOffset(i, offset) => self
                .buffer_changes
                .push((*i, BufferChange::Offset(*offset))),
            Mutation::BufferLength(i, length) => self
                .buffer_changes
                .push((*i, BufferChange::Length(*length))),
            Mutation::IndexWord(at, word) => patch(&mut buffers[1], usize::from(*at) * 4, word),
            Mutation::IndexLong(at, word) => patch(&mut buffers[1], usize::from(*at) * 8, word),
            Mutation::DataByte(at, byte) => {
                let data = &mut buffers[2];
                if !data.is_empty() {
                    let at = usize::from(*at) % data.len();
                    data[at] = *byte;
                }
            }
            Mutation::VariadicCounts(counts) => self.variadic = Some(counts.clone()),
            Mutation::DropBuffer => self.buffer_count_change -= 1,
            Mutation::ExtraBuffer => self.buffer_count_change += 1,
            Mutation::Compressed(codec) => self.compression = Some(*codec),
            Mutation::HeaderLength(length) => self.header_length = Some(*length),
        }
    }
}

/// Writes `word`'s little-endian bytes at `at` in `buffer`, if they fit.
fn patch<const N: usize, W: LittleEndian<N>>(buffer: &mut [u8], at: usize, word: &W) {
    if let Some(place) = buffer.get_mut(at..at + N) {
        place.copy_from_slice(&word.le());
    }
}

trait LittleEndian<const N: usize> {
    fn le(&self) -> [u8; N];
}

impl LittleEndian<4> for i32 {
    fn le(&self) -> [u8; 4] {
        self.to_le_bytes()
    }
}

impl LittleEndian<8> for i64 {
    fn le(&self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

/// Offsets (`width` bytes each) and data of `values`.
fn offsets(values: &[Option<String>], width: usize) -> (Vec<u8>, Vec<u8>) {
    let mut index = Vec::new();
    let mut data = Vec::new();
    let mut push = |offset: usize| match width {
        4 => index.extend_from_slice(&(offset as i32).to_le_bytes()),
        _ => index.extend_from_slice(&(offset as i64).to_le_bytes()),
    };
    push(0);
    for value in values {
        data.extend_from_slice(value.as_deref().unwrap_or_default().as_bytes());
        push(data.len());
    }
    (index, data)
}

/// Views and one data buffer of `values`; with `shared`, every long value's view points at the
/// first long value's bytes (its own length kept, so a view may run past them).
fn views(values: &[Option<String>], shared: bool) -> (Vec<u8>, Vec<u8>) {
    let mut index = Vec::new();
    let mut data = Vec::new();
    let mut first_long: Option<usize> = None;
    for value in values {
        let bytes = value.as_deref().unwrap_or_default().as_bytes();
        let mut view = [0u8; 16];
        view[..4].copy_from_slice(&(bytes.len() as i32).to_le_bytes());
        if bytes.len() <= 12 {
            view[4..4 + bytes.len()].copy_from_slice(bytes);
        } else {
            let start = match (shared, first_long) {
                (true, Some(start)) => start,
                _ => {
                    let start = data.len();
                    data.extend_from_slice(bytes);
                    first_long.get_or_insert(start);
                    start
                }
            };
            view[4..8].copy_from_slice(&bytes[..4]);
            view[12..16].copy_from_slice(&(start as i32).to_le_bytes());
        }
        index.extend_from_slice(&view);
    }
    (index, data)
}

/// A dictionary batch of one empty `Utf8` array, for dictionary id 0.
fn dictionary_message() -> (Vec<u8>, Vec<u8>) {
    let mut fbb = FlatBufferBuilder::new();
    let nodes = fbb.create_vector(&[FieldNode::new(0, 0)]);
    let buffers = fbb.create_vector(&[
        arrow_ipc::Buffer::new(0, 0),
        arrow_ipc::Buffer::new(0, 4),
        arrow_ipc::Buffer::new(8, 0),
    ]);
    let data = RecordBatch::create(
        &mut fbb,
        &RecordBatchArgs {
            length: 0,
            nodes: Some(nodes),
            buffers: Some(buffers),
            ..Default::default()
        },
    );
    let dictionary = DictionaryBatch::create(
        &mut fbb,
        &DictionaryBatchArgs {
            id: 0,
            data: Some(data),
            isDelta: false,
        },
    );
    let header = finish(
        fbb,
        MessageHeader::DictionaryBatch,
        dictionary.as_union_value(),
        8,
    );
    (header, vec![0; 8])
}

fn empty_table(fbb: &mut FlatBufferBuilder<'_>) -> WIPOffset<UnionWIPOffset> {
    let start = fbb.start_table();
    fbb.end_table(start).as_union_value()
}

fn int64(fbb: &mut FlatBufferBuilder<'_>) -> WIPOffset<UnionWIPOffset> {
    Int::create(
        fbb,
        &IntArgs {
            bitWidth: 64,
            is_signed: true,
        },
    )
    .as_union_value()
}

fn finish(
    mut fbb: FlatBufferBuilder<'_>,
    header_type: MessageHeader,
    header: WIPOffset<UnionWIPOffset>,
    body_length: i64,
) -> Vec<u8> {
    let message = Message::create(
        &mut fbb,
        &MessageArgs {
            version: MetadataVersion::V5,
            header_type,
            header: Some(header),
            bodyLength: body_length,
            custom_metadata: None,
        },
    );
    fbb.finish(message, None);
    fbb.finished_data().to_vec()
}
