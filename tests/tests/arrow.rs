//! The client's Arrow operations against a real service: every string type, dictionaries.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::Int16Type;
use arrow_array::{
    Array, ArrayRef, DictionaryArray, LargeStringArray, StringArray, StringViewArray,
};
use arrow_schema::DataType;
use pseudonym_client::{Client, ClientBuilder, ItemErrorCode, Mode};
use pseudonym_e2e::{Fault, Fixture, Replica};

fn rows(array: &dyn Array) -> Vec<Option<String>> {
    arrow_cast(array)
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

/// Any string array as `Utf8`, for comparing.
fn arrow_cast(array: &dyn Array) -> StringArray {
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().clone(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        DataType::Dictionary(_, _) => {
            let dictionary = array.as_dictionary::<Int16Type>();
            let values = arrow_cast(dictionary.values().as_ref());
            dictionary
                .keys()
                .iter()
                .map(|key| {
                    key.and_then(|k| {
                        values
                            .is_valid(k as usize)
                            .then(|| values.value(k as usize))
                    })
                })
                .collect()
        }
        other => panic!("not a string type: {other}"),
    }
}

/// A builder for `replica` with the fixture's key; set more and build.
fn builder_of(fixture: &Fixture, replica: &Replica) -> ClientBuilder {
    Client::builder()
        .url(&replica.url)
        .api_key(&fixture.api_key)
}

fn client_of(fixture: &Fixture, replica: &Replica) -> Client {
    builder_of(fixture, replica).build().expect("client")
}

fn inputs() -> Vec<ArrayRef> {
    let values = vec![
        Some("WVWZZZ1JZXW000001"),
        None,
        Some("x"),
        Some("WVWZZZ1JZXW000001"),
    ];
    let dictionary: DictionaryArray<Int16Type> = values.iter().copied().collect();
    vec![
        Arc::new(StringArray::from(values.clone())),
        Arc::new(LargeStringArray::from(values.clone())),
        Arc::new(StringViewArray::from(values)),
        Arc::new(dictionary),
    ]
}

#[tokio::test]
async fn every_string_type_round_trips_with_its_type_and_nulls() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = client_of(&fixture, &replica);
    for input in inputs() {
        let expected = fixture.direct_pseudonyms("vin", Mode::Deterministic, &rows(input.as_ref()));
        let pseudonyms = client
            .pseudonymize_array("vin", Mode::Deterministic, input.as_ref())
            .await
            .expect("pseudonymized");
        assert_eq!(pseudonyms.data_type(), input.data_type());
        assert_eq!(rows(pseudonyms.as_ref()), expected, "{}", input.data_type());

        let back = client
            .reidentify_array("vin", pseudonyms.as_ref())
            .await
            .expect("reidentified");
        assert!(back.errors.is_empty());
        assert_eq!(back.values.data_type(), input.data_type());
        assert_eq!(rows(back.values.as_ref()), rows(input.as_ref()));
    }
}

#[tokio::test]
async fn dictionaries_go_through_their_dictionary_except_when_randomized() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = client_of(&fixture, &replica);
    let rows_in: Vec<Option<&str>> = (0..1000)
        .map(|i| (i % 5 != 0).then_some(["a", "b", "c"][i % 3]))
        .collect();
    let dictionary: DictionaryArray<Int16Type> = rows_in.iter().copied().collect();
    assert_eq!(dictionary.values().len(), 3);

    let pseudonyms = client
        .pseudonymize_array("vin", Mode::Hash, &dictionary)
        .await
        .expect("pseudonymized");
    let out = pseudonyms.as_dictionary::<Int16Type>();
    assert_eq!(out.keys(), dictionary.keys(), "keys are kept");
    assert_eq!(out.values().len(), 3);
    assert_eq!(
        replica.values_pseudonymized(),
        3,
        "only the dictionary is sent"
    );

    let randomized = client
        .pseudonymize_array("vin", Mode::Randomized, &dictionary)
        .await
        .expect("pseudonymized");
    assert_eq!(randomized.data_type(), &DataType::Utf8);
    let randomized = rows(randomized.as_ref());
    let distinct: std::collections::HashSet<_> = randomized.iter().flatten().collect();
    assert_eq!(
        distinct.len(),
        randomized.iter().flatten().count(),
        "every row differs"
    );
    assert_eq!(randomized.iter().filter(|v| v.is_none()).count(), 200);
}

#[tokio::test]
async fn failed_dictionary_entries_are_reported_on_every_row_that_uses_them() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = client_of(&fixture, &replica);
    let good = client
        .pseudonymize("vin", Mode::Deterministic, &[Some("a")])
        .await
        .expect("pseudonymized")[0]
        .clone()
        .expect("not null");
    let tokens: DictionaryArray<Int16Type> = vec![
        Some(good.as_str()),
        Some("bad"),
        None,
        Some("bad"),
        Some(good.as_str()),
    ]
    .into_iter()
    .collect();
    let back = client
        .reidentify_array("vin", &tokens)
        .await
        .expect("answered");
    assert_eq!(
        rows(back.values.as_ref()),
        [Some("a".to_owned()), None, None, None, Some("a".to_owned())]
    );
    let errors: Vec<_> = back.errors.iter().map(|e| (e.index, e.code)).collect();
    assert_eq!(
        errors,
        [
            (1, ItemErrorCode::InvalidToken),
            (3, ItemErrorCode::InvalidToken)
        ]
    );
}

#[tokio::test]
async fn integers_go_by_their_text_and_floats_are_refused_by_name() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = client_of(&fixture, &replica);
    let numbers = arrow_array::Int64Array::from(vec![Some(-42), None]);
    let tokens = client
        .pseudonymize_array("ids", Mode::Deterministic, &numbers)
        .await
        .expect("integers have a canonical text");
    let text = StringArray::from(vec![Some("-42"), None]);
    let expected = client
        .pseudonymize_array("ids", Mode::Deterministic, &text)
        .await
        .expect("strings");
    assert_eq!(tokens.as_string::<i32>(), expected.as_string::<i32>());

    let floats = arrow_array::Float64Array::from(vec![1.5]);
    let error = client
        .pseudonymize_array("ids", Mode::Deterministic, &floats)
        .await
        .expect_err("floats have no canonical text");
    assert!(error.to_string().contains("Float64"), "{error}");
}

fn vins(rows: usize, distinct: usize) -> Vec<Option<String>> {
    (0..rows)
        .map(|i| (i % 9 != 4).then(|| format!("WVWZZZ1JZXW{:06}", (i * 13) % distinct)))
        .collect()
}

#[tokio::test]
async fn arrays_go_as_arrow_streams_in_batches_and_come_back_in_row_order() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = builder_of(&fixture, &replica)
        .batch_size(7)
        .build()
        .expect("client");
    let values = vins(100, 30);
    let input = StringArray::from(values.clone());
    let pseudonyms = client
        .pseudonymize_array("vin", Mode::Deterministic, &input)
        .await
        .expect("pseudonymized");
    let expected = fixture.direct_pseudonyms("vin", Mode::Deterministic, &values);
    assert_eq!(rows(pseudonyms.as_ref()), expected);
    let requests = |counter: &std::sync::atomic::AtomicUsize| counter.load(Ordering::SeqCst);
    assert_eq!(
        requests(&replica.arrow_requests),
        5,
        "30 distinct values in batches of 7, each an Arrow stream"
    );

    let back = client
        .reidentify_array("vin", pseudonyms.as_ref())
        .await
        .expect("reidentified");
    assert_eq!(rows(back.values.as_ref()), values);
    let rewrapped = client
        .rewrap_array("vin", pseudonyms.as_ref())
        .await
        .expect("rewrapped");
    assert_eq!(rows(rewrapped.values.as_ref()), expected);
    assert_eq!(requests(&replica.arrow_requests), 15);
    assert_eq!(requests(&replica.requests), 15, "no JSON request");
}

#[tokio::test]
async fn cached_pseudonyms_and_the_service_answers_fall_into_row_order() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = builder_of(&fixture, &replica)
        .batch_size(3)
        .cache_capacity(1_000)
        .build()
        .expect("client");
    let first = StringArray::from(vec!["a", "b"]);
    client
        .pseudonymize_array("vin", Mode::Hash, &first)
        .await
        .expect("pseudonymized");
    let values = ["c", "b", "", "a", "d", "c"].map(|v| (!v.is_empty()).then(|| v.to_owned()));
    let second = StringArray::from(values.to_vec());
    let pseudonyms = client
        .pseudonymize_array("vin", Mode::Hash, &second)
        .await
        .expect("pseudonymized");
    let expected = fixture.direct_pseudonyms("vin", Mode::Hash, &values);
    assert_eq!(rows(pseudonyms.as_ref()), expected);
    assert_eq!(
        replica.values_pseudonymized(),
        4,
        "a and b came from the cache"
    );
}

#[tokio::test]
async fn a_service_older_than_the_arrow_form_gets_json_for_a_while() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::RefusesArrow);
    let client = builder_of(&fixture, &replica)
        .batch_size(2)
        .build()
        .expect("client");
    let values = vins(20, 5);
    let input = StringArray::from(values.clone());
    let pseudonyms = client
        .pseudonymize_array("vin", Mode::Deterministic, &input)
        .await
        .expect("pseudonymized in JSON");
    let expected = fixture.direct_pseudonyms("vin", Mode::Deterministic, &values);
    assert_eq!(rows(pseudonyms.as_ref()), expected);
    let refused = replica.arrow_requests.load(Ordering::SeqCst);
    assert!(refused >= 1, "Arrow was tried first");

    let back = client
        .reidentify_array("vin", pseudonyms.as_ref())
        .await
        .expect("reidentified in JSON");
    assert_eq!(rows(back.values.as_ref()), values);
    assert_eq!(
        replica.arrow_requests.load(Ordering::SeqCst),
        refused,
        "the client remembers"
    );
}

#[tokio::test]
async fn other_refusals_leave_the_arrow_form_in_use() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = client_of(&fixture, &replica);
    let input = StringArray::from(vec!["a"]);
    let error = client
        .pseudonymize_array("Not A Domain", Mode::Deterministic, &input)
        .await
        .expect_err("a bad domain is refused");
    assert!(
        matches!(error, pseudonym_client::Error::Rejected { status: 400, .. }),
        "{error}"
    );
    client
        .pseudonymize_array("vin", Mode::Deterministic, &input)
        .await
        .expect("pseudonymized");
    assert_eq!(replica.arrow_requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        replica.requests.load(Ordering::SeqCst),
        2,
        "no JSON request"
    );
}

#[tokio::test]
async fn per_item_errors_of_later_batches_keep_their_rows() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = builder_of(&fixture, &replica)
        .batch_size(2)
        .build()
        .expect("client");
    let values = vins(9, 9);
    let mut tokens = fixture.direct_pseudonyms("vin", Mode::Deterministic, &values);
    for row in [5, 8] {
        tokens[row] = Some(format!("d1.forged{row}"));
    }
    let back = client
        .reidentify_array("vin", &StringArray::from(tokens))
        .await
        .expect("answered");
    let expected: Vec<Option<String>> = (0..9)
        .map(|row| values[row].clone().filter(|_| row != 5 && row != 8))
        .collect();
    assert_eq!(rows(back.values.as_ref()), expected);
    let failed: Vec<usize> = back.errors.iter().map(|error| error.index).collect();
    assert_eq!(failed, [5, 8]);
}

#[tokio::test]
async fn dictionaries_without_entries_are_all_null_rows() {
    let fixture = Fixture::new();
    let replica = Replica::start(&fixture, Fault::None);
    let client = client_of(&fixture, &replica);
    let empty: DictionaryArray<Int16Type> = vec![None::<&str>, None].into_iter().collect();
    assert_eq!(empty.values().len(), 0);
    for mode in Mode::ALL {
        let answer = client
            .pseudonymize_array("vin", mode, &empty)
            .await
            .expect("pseudonymized");
        assert_eq!(answer.null_count(), 2, "{mode:?}");
    }
    let back = client
        .reidentify_array("vin", &empty)
        .await
        .expect("reidentified");
    assert_eq!((back.values.null_count(), back.errors.len()), (2, 0));
    let rewrapped = client.rewrap_array("vin", &empty).await.expect("rewrapped");
    assert_eq!(rewrapped.values.null_count(), 2);
}
