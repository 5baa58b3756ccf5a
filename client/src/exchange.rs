//! One call's exchanges with the service, in JSON: the unique values of a partition sent in
//! batches over the [`Transport`], each answer checked (one answer or one error per item) and
//! put back in order. The Arrow form's are in `arrow::ipc`.

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::batch::{Batching, one_answer_or_code, one_key_version, protocol};
use crate::endpoints::Route;
use crate::error::Error;
use crate::transport::{BatchId, Form, Transport};
use crate::wire::{
    BodyText, ItemError, ItemErrorCode, Mode, PseudonymizeRequest, PseudonymizeResponse,
    ReidentifyRequest, ReidentifyResponse, RewrapRequest, RewrapResponse,
};

/// The transport and the batching of one client: what a call's values are sent with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange<'c> {
    pub(crate) transport: &'c Transport,
    pub(crate) batching: Batching,
}

/// An answer of one string per pseudonym sent, with the items that failed listed apart.
trait PerItemAnswer: DeserializeOwned {
    fn into_parts(self) -> (Vec<Option<String>>, Vec<ItemError>);

    /// The key version that made the answers, where the answer names one.
    fn key_version(&self) -> Option<u32> {
        None
    }
}

impl PerItemAnswer for PseudonymizeResponse {
    fn into_parts(self) -> (Vec<Option<String>>, Vec<ItemError>) {
        (self.pseudonyms, self.errors)
    }

    fn key_version(&self) -> Option<u32> {
        Some(self.key_version)
    }
}

impl PerItemAnswer for ReidentifyResponse {
    fn into_parts(self) -> (Vec<Option<String>>, Vec<ItemError>) {
        (self.values, self.errors)
    }
}

impl PerItemAnswer for RewrapResponse {
    fn into_parts(self) -> (Vec<Option<String>>, Vec<ItemError>) {
        (self.pseudonyms, self.errors)
    }
}

impl Exchange<'_> {
    /// [`Batching::run`] over this exchange's transport.
    pub(crate) async fn run<Out, E>(
        &self,
        route: Route,
        form: Form<'_>,
        unique: &[&str],
        encode: impl Fn(&[&str]) -> Result<Vec<u8>, E>,
        accept: impl Fn(BatchId, usize, Bytes) -> Result<Out, Error>,
    ) -> Result<Vec<Out>, Error> {
        self.batching
            .run(self.transport, route, form, unique, encode, accept)
            .await
    }

    /// The pseudonym of each of `unique` (no nulls in, none out).
    pub(crate) async fn pseudonymize(
        &self,
        domain: &str,
        mode: Mode,
        unique: &[&str],
    ) -> Result<Vec<Option<String>>, Error> {
        let encode = |chunk: &[&str]| {
            serde_json::to_vec(&PseudonymizeRequest {
                domain: BodyText::from(domain),
                mode,
                values: texts(chunk),
            })
        };
        let answers = self
            .run(
                Route::Pseudonymize,
                Form::Json,
                unique,
                encode,
                |id, n, body| {
                    let r: PseudonymizeResponse = json(id, &body)?;
                    if r.pseudonyms.len() != n || r.pseudonyms.iter().any(Option::is_none) {
                        return Err(protocol(id, "not one pseudonym per value"));
                    }
                    Ok(r.pseudonyms)
                },
            )
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// The format-preserving pseudonym of each of `unique` and, where one failed, its code.
    /// Never cached: a domain's pinned key version can change, and its pseudonyms with it.
    pub(crate) async fn pseudonymize_per_item(
        &self,
        domain: &str,
        unique: &[&str],
    ) -> Result<(Vec<Option<String>>, Vec<Option<ItemErrorCode>>), Error> {
        let encode = |chunk: &[&str]| {
            serde_json::to_vec(&PseudonymizeRequest {
                domain: BodyText::from(domain),
                mode: Mode::FormatPreserving,
                values: texts(chunk),
            })
        };
        self.per_item::<PseudonymizeResponse>(Route::Pseudonymize, unique, encode)
            .await
    }

    /// The value of each of `unique` and, where one failed, its code.
    pub(crate) async fn reidentify(
        &self,
        domain: &str,
        unique: &[&str],
    ) -> Result<(Vec<Option<String>>, Vec<Option<ItemErrorCode>>), Error> {
        let encode = |chunk: &[&str]| {
            serde_json::to_vec(&ReidentifyRequest {
                domain: BodyText::from(domain),
                pseudonyms: texts(chunk),
            })
        };
        self.per_item::<ReidentifyResponse>(Route::Reidentify, unique, encode)
            .await
    }

    /// The rewrapped pseudonym of each of `unique` and, where one failed, its code.
    pub(crate) async fn rewrap(
        &self,
        domain: &str,
        unique: &[&str],
    ) -> Result<(Vec<Option<String>>, Vec<Option<ItemErrorCode>>), Error> {
        let encode = |chunk: &[&str]| {
            serde_json::to_vec(&RewrapRequest {
                domain: BodyText::from(domain),
                pseudonyms: texts(chunk),
            })
        };
        self.per_item::<RewrapResponse>(Route::Rewrap, unique, encode)
            .await
    }

    /// Sends `unique` pseudonyms to a route that answers per item, checking that every answer
    /// is either a string or a listed error, never both or neither.
    async fn per_item<R: PerItemAnswer>(
        &self,
        route: Route,
        unique: &[&str],
        encode: impl Fn(&[&str]) -> serde_json::Result<Vec<u8>>,
    ) -> Result<(Vec<Option<String>>, Vec<Option<ItemErrorCode>>), Error> {
        let answers = self
            .run(route, Form::Json, unique, encode, |id, n, body| {
                let answer = json::<R>(id, &body)?;
                let key_version = answer.key_version();
                let (answers, errors) = answer.into_parts();
                if answers.len() != n || errors.iter().any(|e| e.index >= n) {
                    return Err(protocol(id, "not one answer per pseudonym"));
                }
                let mut codes = vec![None; n];
                for error in errors {
                    codes[error.index] = Some(error.code);
                }
                one_answer_or_code(id, &codes, |i| answers[i].is_some())?;
                Ok((answers, codes, key_version))
            })
            .await?;
        let versions: Vec<u32> = answers
            .iter()
            .filter_map(|(_, _, version)| *version)
            .collect();
        one_key_version(&versions)?;
        let mut values = Vec::with_capacity(unique.len());
        let mut codes = Vec::with_capacity(unique.len());
        for (batch_values, batch_codes, _) in answers {
            values.extend(batch_values);
            codes.extend(batch_codes);
        }
        Ok((values, codes))
    }
}

/// A JSON answer's body read as `R`.
fn json<R: DeserializeOwned>(id: BatchId, body: &[u8]) -> Result<R, Error> {
    serde_json::from_slice(body).map_err(|_| protocol(id, "the answer is not the expected JSON"))
}

fn texts<'a>(chunk: &[&'a str]) -> Vec<Option<BodyText<'a>>> {
    chunk.iter().map(|v| Some(BodyText::from(*v))).collect()
}
