//! The client's operations on Arrow arrays (feature `arrow`).
//!
//! Accepted: `Utf8`, `LargeUtf8`, `Utf8View`, and dictionaries of any integer key over those.
//! Rows are read in place (no copy of the input's strings) and the answer is built straight
//! into an Arrow array. Nulls stay null; the output has the input's length and order.
//!
//! Pseudonymizing also takes integers, decimals and dates (ids are often numbers), by their
//! canonical text, the same whichever engine hands the array over: integers in decimal digits
//! (`-42`), decimals with exactly their type's scale (`12.50` for `Decimal128(10, 2)`), `Date32`
//! as `YYYY-MM-DD`. The answer is then `Utf8`. Re-identifying gives that text back.
//!
//! The values go to the service in the Arrow form of its API ([`ipc`]).
//!
//! A dictionary is transformed through its dictionary only: the keys are kept as they are and
//! each dictionary entry is sent once. The exception is `randomized` mode, where equal values
//! must get different pseudonyms: there every row is transformed and the output is a plain
//! array of the dictionary's value type (see [`output_type`]).

mod ipc;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{AnyDictionaryArray, Array, ArrayRef, StringArray, UInt32Array};
use arrow_schema::DataType;

use crate::batch::Plan;
use crate::cache::PseudonymCache;
use crate::error::Error;
use crate::exchange::Exchange;
use crate::wire::{ItemError, Mode};
use ipc::{PerItem, offset_overflow};

/// The name of [`ArrayWithErrors`] before `rewrap_array` shared it.
#[deprecated(note = "renamed ArrayWithErrors")]
pub type ReidentifiedArray = ArrayWithErrors;

/// Re-identified (or rewrapped) rows of an array, and the rows that failed.
#[derive(Debug, Clone)]
pub struct ArrayWithErrors {
    /// One answer per input row, of the type [`output_type`] gives for deterministic mode;
    /// failed rows are null.
    pub values: ArrayRef,
    /// The rows that failed, with their row index and code, in row order.
    pub errors: Vec<ItemError>,
}

/// The type of the array that pseudonymizing an array of `input` type in `mode` gives, or an
/// error naming the unsupported type.
pub fn output_type(input: &DataType, mode: Mode) -> Result<DataType, Error> {
    if has_canonical_text(input) {
        return Ok(DataType::Utf8);
    }
    string_output_type(input, mode).map_err(|_| {
        Error::Unsupported(format!(
            "{input} (expected strings: Utf8, LargeUtf8, Utf8View or a dictionary of them; \
             or integers, decimals, Date32)"
        ))
    })
}

/// The type of the array that re-identifying or rewrapping an array of pseudonyms of `input`
/// type gives, or an error naming the unsupported type: pseudonyms are strings.
pub fn token_output_type(input: &DataType) -> Result<DataType, Error> {
    string_output_type(input, Mode::Deterministic).map_err(|_| {
        Error::Unsupported(format!(
            "{input} (pseudonyms are strings: Utf8, LargeUtf8, Utf8View or a dictionary of them)"
        ))
    })
}

fn string_output_type(input: &DataType, mode: Mode) -> Result<DataType, ()> {
    match input {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(input.clone()),
        DataType::Dictionary(key, value) if is_string(value) && key.is_dictionary_key_type() => {
            Ok(match mode.is_deterministic() {
                false => value.as_ref().clone(),
                true => input.clone(),
            })
        }
        _ => Err(()),
    }
}

/// Whether values of `data_type` are pseudonymized by their canonical text (see the
/// [module](self)).
fn has_canonical_text(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(
            data_type,
            DataType::Decimal128(_, _) | DataType::Decimal256(_, _) | DataType::Date32
        )
}

/// The canonical text of an array of integers, decimals or dates.
fn canonical_text(array: &dyn Array) -> Result<ArrayRef, Error> {
    arrow_cast::cast(array, &DataType::Utf8)
        .map_err(|_| Error::Unsupported(format!("{} has no text form", array.data_type())))
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// [`Client::pseudonymize_array`](crate::Client::pseudonymize_array).
pub(crate) async fn pseudonymize_array(
    exchange: Exchange<'_>,
    cache: Option<&PseudonymCache>,
    domain: &str,
    mode: Mode,
    array: &dyn Array,
) -> Result<ArrayRef, Error> {
    if mode == Mode::FormatPreserving {
        let answer = Box::pin(pseudonymize_array_with_errors(
            exchange, cache, domain, mode, array,
        ))
        .await?;
        return match answer.errors.is_empty() {
            true => Ok(answer.values),
            false => Err(Error::Unpseudonymized {
                errors: answer.errors,
            }),
        };
    }
    output_type(array.data_type(), mode)?;
    if has_canonical_text(array.data_type()) {
        let text = canonical_text(array)?;
        return Box::pin(pseudonymize_array(
            exchange,
            cache,
            domain,
            mode,
            text.as_ref(),
        ))
        .await;
    }
    if let (Some(dictionary), false) = (array.as_any_dictionary_opt(), mode == Mode::Randomized) {
        let values = Box::pin(pseudonymize_array(
            exchange,
            cache,
            domain,
            mode,
            dictionary.values(),
        ));
        return Ok(dictionary.with_values(values.await?));
    }
    let rows = string_rows(array)?;
    let plan = Plan::for_mode(mode, rows.iter().copied());
    let answers = ipc::pseudonyms(exchange, cache, domain, mode, &plan.unique).await?;
    rows_of(&plan, answers, &output_type(array.data_type(), mode)?)
}

/// [`Client::pseudonymize_array_with_errors`](crate::Client::pseudonymize_array_with_errors).
pub(crate) async fn pseudonymize_array_with_errors(
    exchange: Exchange<'_>,
    cache: Option<&PseudonymCache>,
    domain: &str,
    mode: Mode,
    array: &dyn Array,
) -> Result<ArrayWithErrors, Error> {
    if mode != Mode::FormatPreserving {
        let values = Box::pin(pseudonymize_array(exchange, cache, domain, mode, array)).await?;
        return Ok(ArrayWithErrors {
            values,
            errors: Vec::new(),
        });
    }
    output_type(array.data_type(), mode)?;
    if has_canonical_text(array.data_type()) {
        let text = canonical_text(array)?;
        return per_item_array(exchange, PerItem::Pseudonymize, domain, text.as_ref()).await;
    }
    per_item_array(exchange, PerItem::Pseudonymize, domain, array).await
}

/// [`Client::reidentify_array`](crate::Client::reidentify_array).
pub(crate) async fn reidentify_array(
    exchange: Exchange<'_>,
    domain: &str,
    array: &dyn Array,
) -> Result<ArrayWithErrors, Error> {
    per_item_array(exchange, PerItem::Reidentify, domain, array).await
}

/// [`Client::rewrap_array`](crate::Client::rewrap_array).
pub(crate) async fn rewrap_array(
    exchange: Exchange<'_>,
    domain: &str,
    array: &dyn Array,
) -> Result<ArrayWithErrors, Error> {
    per_item_array(exchange, PerItem::Rewrap, domain, array).await
}

async fn per_item_array(
    exchange: Exchange<'_>,
    operation: PerItem,
    domain: &str,
    array: &dyn Array,
) -> Result<ArrayWithErrors, Error> {
    token_output_type(array.data_type())?;
    if let Some(dictionary) = array.as_any_dictionary_opt() {
        let entries = Box::pin(per_item_array(
            exchange,
            operation,
            domain,
            dictionary.values(),
        ))
        .await?;
        let errors = entries_to_rows(dictionary, array, &entries.errors);
        return Ok(ArrayWithErrors {
            values: dictionary.with_values(entries.values),
            errors,
        });
    }
    let rows = string_rows(array)?;
    let plan = Plan::deduplicated_if_it_pays(rows.iter().copied());
    let answers = exchange
        .per_item_answers(operation, domain, &plan.unique)
        .await?;
    Ok(ArrayWithErrors {
        errors: plan.row_errors(&answers.codes),
        values: rows_of(&plan, answers.values, array.data_type())?,
    })
}

/// Every row's answer, taken from the answers to the plan's unique values, as an array of
/// `data_type` (`Utf8`, `LargeUtf8` or `Utf8View`).
fn rows_of(plan: &Plan<'_>, answers: StringArray, data_type: &DataType) -> Result<ArrayRef, Error> {
    debug_assert_eq!(answers.len(), plan.unique.len());
    let rows: ArrayRef = if plan.rows.len() == plan.unique.len() {
        // One value sent per row, so no null row and no repeat: row `i` sent value `i`, and
        // the answers are the rows.
        Arc::new(answers)
    } else {
        let indices = UInt32Array::from_iter(plan.rows.iter().copied());
        arrow_select::take::take(&answers, &indices, None).map_err(offset_overflow)?
    };
    if rows.data_type() == data_type {
        return Ok(rows);
    }
    arrow_cast::cast(&rows, data_type).map_err(offset_overflow)
}

/// The rows of a dictionary whose entry failed, with the entry's code.
fn entries_to_rows(
    dictionary: &dyn AnyDictionaryArray,
    array: &dyn Array,
    entries: &[ItemError],
) -> Vec<ItemError> {
    if entries.is_empty() {
        return Vec::new();
    }
    // A failed entry means the dictionary has entries, as `normalized_keys` requires.
    let keys = dictionary.normalized_keys();
    let mut code_of_entry = std::collections::HashMap::with_capacity(entries.len());
    for error in entries {
        code_of_entry.insert(error.index, error.code);
    }
    keys.iter()
        .enumerate()
        .filter(|(row, _)| array.is_valid(*row))
        .filter_map(|(index, key)| {
            code_of_entry
                .get(key)
                .map(|&code| ItemError { index, code })
        })
        .collect()
}

/// The rows of a plain or dictionary string array, read in place.
fn string_rows(array: &dyn Array) -> Result<Vec<Option<&str>>, Error> {
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        DataType::Dictionary(_, _) => dictionary_rows(array)?,
        other => return Err(Error::Unsupported(other.to_string())),
    })
}

fn dictionary_rows(array: &dyn Array) -> Result<Vec<Option<&str>>, Error> {
    let dictionary = array
        .as_any_dictionary_opt()
        .ok_or_else(|| Error::Unsupported(array.data_type().to_string()))?;
    let entries = string_rows(dictionary.values().as_ref())?;
    if entries.is_empty() {
        // No entries: every row is null (`normalized_keys` requires one at least).
        return Ok(vec![None; array.len()]);
    }
    Ok(dictionary
        .normalized_keys()
        .into_iter()
        .enumerate()
        .map(|(row, key)| {
            if array.is_valid(row) {
                entries[key]
            } else {
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int32Type;
    use arrow_array::{DictionaryArray, StringViewArray};

    #[test]
    fn output_types_follow_input_and_mode() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        assert_eq!(
            output_type(&dict, Mode::Deterministic).ok(),
            Some(dict.clone())
        );
        assert_eq!(
            output_type(&dict, Mode::Randomized).ok(),
            Some(DataType::Utf8)
        );
        assert_eq!(
            output_type(&DataType::Utf8View, Mode::Hash).ok(),
            Some(DataType::Utf8View)
        );
        assert_eq!(
            output_type(&DataType::Int64, Mode::Hash).ok(),
            Some(DataType::Utf8)
        );
        assert!(matches!(
            token_output_type(&DataType::Int64),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            output_type(&DataType::Float64, Mode::Hash),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn numbers_and_dates_have_one_canonical_text() {
        use arrow_array::{Date32Array, Decimal128Array, Int64Array, UInt8Array};
        let text = |array: &dyn Array| -> Vec<Option<String>> {
            let text = canonical_text(array).expect("has a text form");
            text.as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_owned))
                .collect()
        };
        let some = |s: &str| Some(s.to_owned());
        let ints = Int64Array::from(vec![Some(-42), None, Some(0), Some(i64::MAX)]);
        assert_eq!(
            text(&ints),
            [some("-42"), None, some("0"), some("9223372036854775807")]
        );
        assert_eq!(text(&UInt8Array::from(vec![7])), [some("7")]);
        let decimals = Decimal128Array::from(vec![Some(1250), Some(-5), None])
            .with_precision_and_scale(10, 2)
            .expect("valid precision");
        assert_eq!(text(&decimals), [some("12.50"), some("-0.05"), None]);
        // 2024-01-31 is day 19,753 of the Unix epoch.
        assert_eq!(
            text(&Date32Array::from(vec![19_753, 0])),
            [some("2024-01-31"), some("1970-01-01")]
        );
    }

    #[test]
    fn rows_of_every_string_type_are_read_in_place() {
        let plain = StringArray::from(vec![Some("a"), None, Some("b")]);
        assert_eq!(
            string_rows(&plain).ok(),
            Some(vec![Some("a"), None, Some("b")])
        );
        let view = StringViewArray::from(vec![Some("a"), None]);
        assert_eq!(string_rows(&view).ok(), Some(vec![Some("a"), None]));
        let dict: DictionaryArray<Int32Type> = vec![Some("x"), None, Some("y"), Some("x")]
            .into_iter()
            .collect();
        assert_eq!(
            string_rows(&dict).ok(),
            Some(vec![Some("x"), None, Some("y"), Some("x")])
        );
    }
}
