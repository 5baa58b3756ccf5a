//! JSON answers that carry a batch's strings: each list written from its [`Texts`] as it is
//! (see [`Texts::write_json`]), the other fields by `serde_json`. The same bytes as serializing
//! the wire types; a batch of tokens is copied instead of escaped string by string.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::texts::Texts;

/// A JSON object being written, one field after another.
pub(super) struct JsonObject(Vec<u8>);

impl JsonObject {
    /// An object about to hold `texts` (for the size of its buffer).
    pub(super) fn sized_for(texts: &Texts) -> Self {
        let (bytes, items) = (texts.text_len(), texts.len());
        let mut body = Vec::with_capacity(bytes + 3 * items + 128);
        body.push(b'{');
        JsonObject(body)
    }

    /// Adds the field `name`: the strings of a batch.
    pub(super) fn texts(mut self, name: &str, texts: &Texts) -> Self {
        self.key(name);
        texts.write_json(&mut self.0);
        self
    }

    /// Adds the field `name`, written by `serde_json`.
    pub(super) fn field(mut self, name: &str, value: &impl Serialize) -> Self {
        self.key(name);
        serde_json::to_writer(&mut self.0, value).expect("writing to a Vec does not fail");
        self
    }

    fn key(&mut self, name: &str) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        serde_json::to_writer(&mut self.0, name).expect("writing to a Vec does not fail");
        self.0.push(b':');
    }

    /// The object's bytes, closed.
    fn finish(mut self) -> Vec<u8> {
        self.0.push(b'}');
        self.0
    }
}

impl IntoResponse for JsonObject {
    fn into_response(self) -> Response {
        let json = HeaderValue::from_static("application/json");
        ([(header::CONTENT_TYPE, json)], self.finish()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use pseudonym_client::wire::{
        CompatReidentifyResponse, ItemError, ItemErrorCode, PseudonymizeResponse,
        ReidentifyResponse,
    };

    use super::*;

    /// Each answer written here is, byte for byte, its wire type serialized by `serde_json`.
    #[test]
    fn answers_are_the_bytes_of_their_wire_types() {
        let items = vec![
            Some("d1.abc".to_owned()),
            None,
            Some("say \"hi\"\n".to_owned()),
        ];
        let texts: Texts = items.clone().into_iter().collect();
        let errors = vec![ItemError {
            index: 1,
            code: ItemErrorCode::InvalidToken,
        }];
        let same = |ours: JsonObject, wire: Vec<u8>| {
            assert_eq!(String::from_utf8(ours.finish()), String::from_utf8(wire));
        };
        let pseudonymized = PseudonymizeResponse {
            pseudonyms: items.clone(),
            key_version: 3,
            errors: Vec::new(),
        };
        same(
            JsonObject::sized_for(&texts)
                .texts("pseudonyms", &texts)
                .field("key_version", &3),
            serde_json::to_vec(&pseudonymized).expect("serializes"),
        );
        let with_errors = PseudonymizeResponse {
            errors: errors.clone(),
            ..pseudonymized.clone()
        };
        same(
            JsonObject::sized_for(&texts)
                .texts("pseudonyms", &texts)
                .field("key_version", &3)
                .field("errors", &errors),
            serde_json::to_vec(&with_errors).expect("serializes"),
        );
        let reidentified = ReidentifyResponse {
            values: items.clone(),
            errors: errors.clone(),
        };
        same(
            JsonObject::sized_for(&texts)
                .texts("values", &texts)
                .field("errors", &errors),
            serde_json::to_vec(&reidentified).expect("serializes"),
        );
        let compat = CompatReidentifyResponse { identifiers: items };
        same(
            JsonObject::sized_for(&texts).texts("identifiers", &texts),
            serde_json::to_vec(&compat).expect("serializes"),
        );
    }
}
