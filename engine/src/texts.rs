//! [`Texts`]: the strings of one batch in one buffer, index for index with its input, `None`
//! where there is no string: the tokens made from a batch of values, or the values opened from
//! a batch of tokens. Making a batch costs one growing buffer instead of one allocation per
//! string, and an answer is written from it as it is (JSON here; Arrow's string arrays have the
//! same layout).
//!
//! A batch is written as bytes ([`TextsBuilder`]) and checked as UTF-8 once, when it is
//! finished, instead of once per string.

use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::short_copy;

/// The strings of a batch: every string's text one after the other, and where each ends.
/// Its `Debug` shows sizes only: re-identified values are plaintext.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Texts {
    text: String,
    /// `ends[i]` is where string `i` ends in `text` (and string `i + 1` starts).
    ends: Vec<usize>,
    /// Whether item `i` is a string (`false`: `None`).
    present: Vec<bool>,
}

impl Texts {
    /// How many items, strings and `None`s.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// How many bytes of text, all strings together.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Item `index`: its string, or `None`.
    pub fn get(&self, index: usize) -> Option<&str> {
        if !*self.present.get(index)? {
            return None;
        }
        Some(&self.text[self.start(index)..self.ends[index]])
    }

    fn start(&self, index: usize) -> usize {
        index.checked_sub(1).map_or(0, |before| self.ends[before])
    }

    /// Every item in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<&str>> {
        (0..self.len()).map(|index| self.get(index))
    }

    /// Appends one item.
    pub fn push(&mut self, text: Option<&str>) {
        self.present.push(text.is_some());
        self.text.push_str(text.unwrap_or_default());
        self.ends.push(self.text.len());
    }

    /// Appends every item of `other`, in order.
    pub fn append(&mut self, other: Texts) {
        let shift = self.text.len();
        self.text.push_str(&other.text);
        self.ends.extend(other.ends.iter().map(|end| end + shift));
        self.present.extend(other.present);
    }

    /// The parts, in Arrow's layout for a string array: every string's text one after the
    /// other, where each item ends, and whether it is a string.
    pub fn into_parts(self) -> (String, Vec<usize>, Vec<bool>) {
        (self.text, self.ends, self.present)
    }

    /// One `String` per item.
    pub fn into_strings(self) -> Vec<Option<String>> {
        self.iter().map(|text| text.map(str::to_owned)).collect()
    }

    /// Appends the items to `out` as a JSON array of strings and nulls, byte for byte what
    /// `serde_json` writes. When no byte of the batch needs escaping (none of a batch of tokens
    /// does), the strings are copied as they are: one scan of the batch instead of one per
    /// string, which cost the service a seventh of its time.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        if needs_escaping(self.text.as_bytes()) {
            serde_json::to_writer(out, self).expect("writing to a Vec does not fail");
            return;
        }
        out.reserve(self.text.len() + 5 * self.len() + 2);
        out.push(b'[');
        for (index, text) in self.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            match text {
                Some(text) => {
                    out.push(b'"');
                    out.extend_from_slice(text.as_bytes());
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b']');
    }
}

/// Whether any of `bytes` is escaped in a JSON string: a control character, `"` or `\`
/// (what `serde_json` escapes). In blocks without early exit, so that it vectorizes.
fn needs_escaping(bytes: &[u8]) -> bool {
    bytes.chunks(64).any(|block| {
        block.iter().fold(false, |any, &b| {
            any | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    })
}

impl FromIterator<Option<String>> for Texts {
    fn from_iter<I: IntoIterator<Item = Option<String>>>(items: I) -> Self {
        let mut texts = Texts::default();
        for item in items {
            texts.push(item.as_deref());
        }
        texts
    }
}

impl std::fmt::Debug for Texts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Texts")
            .field("items", &self.len())
            .field("bytes", &self.text.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TextsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextsBuilder")
            .field("items", &self.ends.len())
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// A JSON array of strings and nulls, as a `Vec<Option<String>>` would be.
impl Serialize for Texts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for text in self.iter() {
            seq.serialize_element(&text)?;
        }
        seq.end()
    }
}

/// [`Texts`] being written, as bytes. Its `Debug` shows sizes only.
#[derive(Default)]
pub struct TextsBuilder {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    present: Vec<bool>,
}

impl TextsBuilder {
    /// Room for `items` strings of about `len` bytes each, and for the window the last one is
    /// copied in (see `short_copy`): without it, a batch of strings of exactly `len` bytes would
    /// grow the buffer, copying it whole, at its last string.
    pub fn with_capacity(items: usize, len: usize) -> Self {
        TextsBuilder {
            bytes: Vec::with_capacity(items * len + short_copy::TEXT_WINDOW),
            ends: Vec::with_capacity(items),
            present: Vec::with_capacity(items),
        }
    }

    /// Appends the next string: `write` adds its bytes to the buffer it is given.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        self.ends.push(self.bytes.len());
        self.present.push(true);
    }

    /// Appends a `None`.
    pub fn push_none(&mut self) {
        self.ends.push(self.bytes.len());
        self.present.push(false);
    }

    /// The tokens of a batch, checked as UTF-8 once ([`TextsBuilder::finish`]): they are ASCII.
    pub(crate) fn finish_tokens(self) -> Texts {
        let (tokens, not_utf8) = self.finish();
        assert!(not_utf8.is_empty(), "a token is ASCII");
        tokens
    }

    /// The texts, and the indices of the items that were not UTF-8, which are `None` in them.
    ///
    /// One check of the whole buffer: when it is UTF-8 and every item ends on a character
    /// boundary, every item is UTF-8. Only otherwise is each item checked on its own.
    pub fn finish(self) -> (Texts, Vec<usize>) {
        let TextsBuilder {
            bytes,
            ends,
            present,
        } = self;
        match String::from_utf8(bytes) {
            Ok(text) if ends.iter().all(|&end| text.is_char_boundary(end)) => {
                let texts = Texts {
                    text,
                    ends,
                    present,
                };
                (texts, Vec::new())
            }
            whole => {
                let bytes = whole.map_or_else(|error| error.into_bytes(), String::into_bytes);
                Self::finish_each(&bytes, &ends, &present)
            }
        }
    }

    /// [`TextsBuilder::finish`], one item at a time.
    fn finish_each(bytes: &[u8], ends: &[usize], present: &[bool]) -> (Texts, Vec<usize>) {
        let mut texts = Texts::default();
        let mut not_utf8 = Vec::new();
        let mut start = 0;
        for (index, (&end, &is_text)) in ends.iter().zip(present).enumerate() {
            let text = std::str::from_utf8(&bytes[start..end]);
            start = end;
            if is_text && text.is_err() {
                not_utf8.push(index);
            }
            texts.push(text.ok().filter(|_| is_text));
        }
        (texts, not_utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_keep_their_order_and_nones_across_appends() {
        let mut first: Texts = [Some("d1.a".to_owned()), None].into_iter().collect();
        let second: Texts = [None, Some("d1.bc".to_owned()), Some(String::new())]
            .into_iter()
            .collect();
        first.append(second);
        let items: Vec<Option<&str>> = first.iter().collect();
        assert_eq!(items, [Some("d1.a"), None, None, Some("d1.bc"), Some("")]);
        assert_eq!(first.get(5), None);
        assert_eq!(
            serde_json::to_string(&first).expect("serializes"),
            r#"["d1.a",null,null,"d1.bc",""]"#
        );
        assert_eq!(first.clone().into_strings()[3].as_deref(), Some("d1.bc"));
    }

    /// Re-identified values are plaintext: `Debug` shows how many, never what.
    #[test]
    fn debug_shows_sizes_not_strings() {
        let texts: Texts = [Some("WVWZZZ1JZXW000001".to_owned()), None]
            .into_iter()
            .collect();
        let mut builder = TextsBuilder::default();
        builder.push_with(|out| out.extend_from_slice(b"WVWZZZ1JZXW000001"));
        for debug in [format!("{texts:?}"), format!("{builder:?}")] {
            assert!(!debug.contains("WVWZZZ"), "{debug}");
            assert!(debug.contains("bytes: 17"), "{debug}");
        }
    }

    proptest::proptest! {
        /// The same JSON as `serde_json` writes, with and without characters to escape.
        #[test]
        fn json_is_what_serde_json_writes(
            items in proptest::collection::vec(proptest::option::of("[a-z\"\\\\\\n\u{1}\u{7f}é.-]{0,6}"), 0..8)
        ) {
            let texts: Texts = items.into_iter().collect();
            let mut ours = Vec::new();
            texts.write_json(&mut ours);
            let reference = serde_json::to_vec(&texts).expect("serializes");
            proptest::prop_assert_eq!(String::from_utf8(ours), String::from_utf8(reference));
        }
    }

    fn built(items: &[Option<&[u8]>]) -> (Vec<Option<String>>, Vec<usize>) {
        let mut builder = TextsBuilder::with_capacity(items.len(), 4);
        for item in items {
            match item {
                Some(bytes) => builder.push_with(|buffer| buffer.extend_from_slice(bytes)),
                None => builder.push_none(),
            }
        }
        let (texts, not_utf8) = builder.finish();
        (texts.into_strings(), not_utf8)
    }

    #[test]
    fn a_batch_of_utf8_is_taken_whole() {
        let (items, not_utf8) = built(&[Some("é".as_bytes()), None, Some(b""), Some(b"abc")]);
        let expected = [Some("é"), None, Some(""), Some("abc")].map(|t| t.map(str::to_owned));
        assert_eq!(items, expected);
        assert!(not_utf8.is_empty());
    }

    #[test]
    fn items_that_are_not_utf8_are_none_and_listed_even_when_the_whole_is() {
        // "é" is C3 A9: cut in two, each half is not UTF-8 though the buffer as a whole is.
        let (items, not_utf8) = built(&[Some(b"a\xc3"), Some(b"\xa9b"), Some(b"ok")]);
        assert_eq!(items, [None, None, Some("ok".to_owned())]);
        assert_eq!(not_utf8, [0, 1]);

        let (items, not_utf8) = built(&[Some(b"ok"), None, Some(b"\xff"), Some("ü".as_bytes())]);
        let expected = [Some("ok"), None, None, Some("ü")].map(|t| t.map(str::to_owned));
        assert_eq!(items, expected);
        assert_eq!(not_utf8, [2]);
    }
}
