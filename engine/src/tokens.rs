//! [`Tokens`]: the tokens of one batch in one string, index for index with its values, `None`
//! where a value was `None`. Making a batch costs one growing string instead of one allocation
//! per token, and an answer is written from it as it is (JSON here; Arrow's string arrays have
//! the same layout).

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// The tokens of a batch: every token's text one after the other, and where each ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    text: String,
    /// `ends[i]` is where token `i` ends in `text` (and token `i + 1` starts).
    ends: Vec<usize>,
    /// Whether item `i` is a token (`false`: the value was `None`).
    present: Vec<bool>,
}

impl Tokens {
    /// Room for `items` tokens of about `token_len` bytes each.
    pub fn with_capacity(items: usize, token_len: usize) -> Self {
        Tokens {
            text: String::with_capacity(items * token_len),
            ends: Vec::with_capacity(items),
            present: Vec::with_capacity(items),
        }
    }

    /// Appends the next token: `write` adds its text to the string it is given.
    pub fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        write(&mut self.text);
        self.ends.push(self.text.len());
        self.present.push(true);
    }

    /// Appends a `None`.
    pub fn push_none(&mut self) {
        self.ends.push(self.text.len());
        self.present.push(false);
    }

    /// How many items, tokens and `None`s.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Item `index`: its token, or `None`.
    pub fn get(&self, index: usize) -> Option<&str> {
        if !*self.present.get(index)? {
            return None;
        }
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        Some(&self.text[start..self.ends[index]])
    }

    /// Every item in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<&str>> {
        (0..self.len()).map(|index| self.get(index))
    }

    /// Appends every item of `other`, in order.
    pub fn append(&mut self, other: Tokens) {
        let shift = self.text.len();
        self.text.push_str(&other.text);
        self.ends.extend(other.ends.iter().map(|end| end + shift));
        self.present.extend(other.present);
    }

    /// The parts, in Arrow's layout for a string array: every token's text one after the other,
    /// where each item ends, and whether it is a token.
    pub fn into_parts(self) -> (String, Vec<usize>, Vec<bool>) {
        (self.text, self.ends, self.present)
    }

    /// One `String` per token.
    pub fn into_strings(self) -> Vec<Option<String>> {
        self.iter().map(|token| token.map(str::to_owned)).collect()
    }
}

impl FromIterator<Option<String>> for Tokens {
    fn from_iter<I: IntoIterator<Item = Option<String>>>(items: I) -> Self {
        let mut tokens = Tokens::default();
        for item in items {
            match item {
                Some(token) => tokens.push_with(|text| text.push_str(&token)),
                None => tokens.push_none(),
            }
        }
        tokens
    }
}

/// A JSON array of strings and nulls, as a `Vec<Option<String>>` would be.
impl Serialize for Tokens {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for token in self.iter() {
            seq.serialize_element(&token)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_keep_their_order_and_nones_across_appends() {
        let mut first: Tokens = [Some("d1.a".to_owned()), None].into_iter().collect();
        let second: Tokens = [None, Some("d1.bc".to_owned()), Some(String::new())]
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
}
