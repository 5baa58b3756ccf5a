//! Format-preserving pseudonyms through the client, against a real replica: lists and Arrow
//! arrays, per-item errors by row, round trips, and joins that still match.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, DictionaryArray, Int64Array, StringArray};
use pseudonym_client::{Client, Error, ItemErrorCode, Mode};
use pseudonym_e2e::{Fault, Fixture, Replica};
use pseudonym_service::format::Outside;
use pseudonym_service::formats::FormatConfig;

const VIN: &str = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ";

/// A replica with `vin` (VIN characters, others refused) and `phone` (digits, others kept),
/// both pinned to key version 1.
fn replica() -> (Fixture, Replica, Client) {
    let mut fixture = Fixture::new();
    let table = |alphabet: &str, outside| FormatConfig {
        alphabet: Some(alphabet.to_owned()),
        characters: None,
        outside,
        key_version: 1,
    };
    fixture.config.format_preserving = BTreeMap::from([
        ("vin".to_owned(), table("vin", Outside::Refuse)),
        ("phone".to_owned(), table("digits", Outside::Keep)),
    ]);
    let replica = Replica::start(&fixture, Fault::None);
    let client = Client::builder()
        .url(&replica.url)
        .api_key(&fixture.api_key)
        .batch_size(300)
        .build()
        .expect("client");
    (fixture, replica, client)
}

fn vins(rows: usize, distinct: usize) -> Vec<Option<String>> {
    (0..rows)
        .map(|i| (i % 10 != 7).then(|| format!("WVWZZZ1JZ{:08}", (i * 7919) % distinct)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_round_trips_keeping_length_alphabet_nulls_and_order() {
    let (_fixture, _replica, client) = replica();
    let values = vins(5_000, 700);
    let fp = Mode::FormatPreserving;
    let pseudonyms = client
        .pseudonymize("vin", fp, &values)
        .await
        .expect("pseudonymized");
    let mut seen = HashMap::new();
    for (value, pseudonym) in values.iter().zip(&pseudonyms) {
        let (Some(value), Some(pseudonym)) = (value, pseudonym) else {
            assert!(value.is_none() && pseudonym.is_none(), "nulls stay nulls");
            continue;
        };
        assert_eq!(pseudonym.len(), value.len());
        assert!(pseudonym.chars().all(|c| VIN.contains(c)), "{pseudonym}");
        assert_ne!(pseudonym, value);
        assert_eq!(
            seen.entry(value).or_insert(pseudonym),
            &pseudonym,
            "deterministic"
        );
    }
    let distinct: std::collections::HashSet<_> = seen.values().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "a bijection: no two values share a pseudonym"
    );
    let back = client
        .reidentify("vin", &pseudonyms)
        .await
        .expect("reidentified");
    assert_eq!(back.errors, []);
    assert_eq!(back.values, values);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_without_a_pseudonym_are_reported_by_row() {
    let (_fixture, _replica, client) = replica();
    let secret = "WVWZZZ1JZXW12345I";
    let values = [
        Some("WVWZZZ1JZXW123456"),
        Some(secret),
        None,
        Some("123"),
        Some(secret),
    ];
    let fp = Mode::FormatPreserving;
    let answer = client
        .pseudonymize_with_errors("vin", fp, &values)
        .await
        .expect("answered");
    let rows: Vec<_> = answer.errors.iter().map(|e| (e.index, e.code)).collect();
    assert_eq!(
        rows,
        [
            (1, ItemErrorCode::OutsideAlphabet),
            (3, ItemErrorCode::FormatTooShort),
            (4, ItemErrorCode::OutsideAlphabet)
        ]
    );
    assert!(answer.pseudonyms[0].is_some());
    assert!(answer.pseudonyms[1..].iter().all(Option::is_none));
    let error = client
        .pseudonymize("vin", fp, &values)
        .await
        .expect_err("fails whole");
    assert!(matches!(&error, Error::Unpseudonymized { errors } if errors.len() == 3));
    let message = error.to_string();
    assert!(
        message.contains("first row 1") && !message.contains(secret),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_arrays_of_strings_dictionaries_and_integers_round_trip() {
    let (_fixture, _replica, client) = replica();
    let fp = Mode::FormatPreserving;
    let phones = StringArray::from(vec![Some("+49 30 1234567"), None, Some("555-123-4567")]);
    let made = client
        .pseudonymize_array("phone", fp, &phones)
        .await
        .expect("pseudonymized");
    let made_strings = made.as_string::<i32>();
    let kept = |text: &str| text.replace(|c: char| c.is_ascii_digit(), "_");
    assert_eq!(
        kept(made_strings.value(0)),
        "+__ __ _______",
        "kept in place"
    );
    assert!(made_strings.is_null(1));
    let back = client
        .reidentify_array("phone", made.as_ref())
        .await
        .expect("back");
    assert_eq!(back.values.as_string::<i32>(), &phones);

    let keys = [0, 1, 0, 1];
    let dictionary: DictionaryArray<Int32Type> = keys
        .iter()
        .map(|&k| ["5551234567", "5559876543"][k])
        .collect();
    let made = client
        .pseudonymize_array("phone", fp, &dictionary)
        .await
        .expect("pseudonymized");
    let entries = made.as_dictionary::<Int32Type>();
    assert_eq!(
        entries.keys(),
        dictionary.keys(),
        "a dictionary keeps its keys"
    );
    let entries = entries.values().as_string::<i32>();
    for (made, value) in entries.iter().zip(["5551234567", "5559876543"]) {
        let made = made.expect("a pseudonym per entry");
        assert!(made.len() == 10 && made.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(made, value);
    }
    let back = client
        .reidentify_array("phone", made.as_ref())
        .await
        .expect("back");
    let back = back.values.as_any_dictionary();
    let back: Vec<_> = (0..keys.len())
        .map(|row| {
            let key = back.normalized_keys()[row];
            back.values().as_string::<i32>().value(key).to_owned()
        })
        .collect();
    assert_eq!(
        back,
        ["5551234567", "5559876543", "5551234567", "5559876543"]
    );

    let numbers: ArrayRef = Arc::new(Int64Array::from(vec![Some(4930123456), Some(7), None]));
    let answer = client
        .pseudonymize_array_with_errors("phone", fp, numbers.as_ref())
        .await
        .expect("answered");
    let texts = answer.values.as_string::<i32>();
    assert_eq!(texts.value(0).len(), 10, "integers by their canonical text");
    let rows: Vec<_> = answer.errors.iter().map(|e| (e.index, e.code)).collect();
    assert_eq!(rows, [(1, ItemErrorCode::FormatTooShort)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_on_pseudonyms_matches_the_join_on_values() {
    let (_fixture, _replica, client) = replica();
    let fp = Mode::FormatPreserving;
    let left = vins(2_000, 900);
    let right: Vec<Option<String>> = vins(3_000, 1_500).into_iter().rev().collect();
    let joined = |l: &[Option<String>], r: &[Option<String>]| {
        let right: std::collections::HashSet<_> = r.iter().flatten().collect();
        l.iter().flatten().filter(|v| right.contains(v)).count()
    };
    let left_pseudonyms = client.pseudonymize("vin", fp, &left).await.expect("left");
    let right_pseudonyms = client.pseudonymize("vin", fp, &right).await.expect("right");
    let on_values = joined(&left, &right);
    assert!(on_values > 100);
    assert_eq!(joined(&left_pseudonyms, &right_pseudonyms), on_values);
}

/// Found in review: while a rotation rolls out, replicas pin different versions of a domain's
/// key, and one call's batches could come back under both: pseudonyms that carry no version,
/// mixed in one column for good. The call fails instead, in JSON and in Arrow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_answered_under_two_pinned_key_versions_fails_whole() {
    let mut keyring = pseudonym_service::Keyring::generate();
    keyring.add_version(true).expect("version 2");
    let mut fixture = Fixture::with_keyring(&keyring);
    let mut pin = |version| {
        let table = FormatConfig {
            alphabet: Some("vin".to_owned()),
            characters: None,
            outside: Outside::Refuse,
            key_version: version,
        };
        fixture.config.format_preserving = BTreeMap::from([("vin".to_owned(), table)]);
        Replica::start(&fixture, Fault::None)
    };
    let (old, new) = (pin(1), pin(2));
    let client = |urls: &[&str]| {
        let builder = urls.iter().fold(Client::builder(), |b, &url| b.url(url));
        builder
            .api_key(&fixture.api_key)
            .batch_size(100)
            .build()
            .expect("client")
    };
    let values = vins(1_000, 1_000);
    let array = StringArray::from(values.clone());
    let fp = Mode::FormatPreserving;

    // Batches go to both replicas in turn.
    let both = client(&[&old.url, &new.url]);
    let json = both.pseudonymize("vin", fp, &values).await;
    assert!(
        matches!(json, Err(Error::KeyVersionsDiffer { first, version, .. }) if first != version),
        "{json:?}"
    );
    let arrow = both.pseudonymize_array("vin", fp, &array).await;
    assert!(
        matches!(arrow, Err(Error::KeyVersionsDiffer { .. })),
        "{arrow:?}"
    );

    // One replica, one version: the same calls succeed.
    let one = client(&[&new.url]);
    let pseudonyms = one.pseudonymize("vin", fp, &values).await.expect("json");
    assert_eq!(pseudonyms.len(), values.len());
    let arrow = one
        .pseudonymize_array("vin", fp, &array)
        .await
        .expect("arrow");
    assert_eq!(arrow.len(), values.len());
}
