//! The one way a batch is answered: in the form it came in (JSON or Arrow), with the fields of
//! its operation, from the rules' [`Answer`].

use axum::response::{IntoResponse, Response};

use super::arrow;
use super::extract::Form;
use super::json::JsonObject;
use crate::error::ApiError;
use crate::rules::Answer;

/// What a batch's answer holds, by operation.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reply {
    /// `pseudonyms` and `key_version`; the failed items (`errors` in JSON when there are any,
    /// the `error` column in Arrow when `per_item`: format-preserving requests).
    Pseudonyms { per_item: bool },
    /// `values` and the failed items.
    Values,
    /// `pseudonyms` (rewrapped) and the failed items.
    Rewrapped,
}

/// `answer` in `form`, as `reply` says.
pub(super) fn reply(form: Form, reply: Reply, answer: Answer) -> Result<Response, ApiError> {
    let Answer {
        texts,
        errors,
        key_version,
    } = answer;
    match (form, reply) {
        (Form::Json, Reply::Pseudonyms { .. }) => {
            let object = JsonObject::sized_for(&texts)
                .texts("pseudonyms", &texts)
                .field("key_version", &key_version);
            match errors.is_empty() {
                true => Ok(object.into_response()),
                false => Ok(object.field("errors", &errors).into_response()),
            }
        }
        (Form::Json, Reply::Values) => Ok(JsonObject::sized_for(&texts)
            .texts("values", &texts)
            .field("errors", &errors)
            .into_response()),
        (Form::Json, Reply::Rewrapped) => Ok(JsonObject::sized_for(&texts)
            .texts("pseudonyms", &texts)
            .field("errors", &errors)
            .into_response()),
        (Form::Arrow, Reply::Pseudonyms { per_item }) => {
            arrow::pseudonyms(texts, &errors, key_version, per_item)
        }
        (Form::Arrow, Reply::Values) => arrow::per_item("values", texts, &errors),
        (Form::Arrow, Reply::Rewrapped) => arrow::per_item("pseudonyms", texts, &errors),
    }
}
