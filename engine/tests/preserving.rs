//! Format-preserving pseudonyms: the golden vectors (made by an independent implementation,
//! `tests/python/ff1_reference.py`), round trips, rewrapping and per-item errors.

mod common;

use std::collections::BTreeMap;

use common::GoldenKeyring;
use pseudonym_client::ItemErrorCode;
use pseudonym_engine::format::{Format, Outside};
use pseudonym_engine::{Domain, Engine};
use serde::Deserialize;

#[derive(Deserialize)]
struct GoldenFile {
    format: u32,
    keyring: GoldenKeyring,
    formats: BTreeMap<String, Spec>,
    vectors: Vec<Golden>,
    errors: Vec<GoldenError>,
}

#[derive(Deserialize)]
struct Spec {
    alphabet: Option<String>,
    characters: Option<String>,
    outside: Outside,
}

#[derive(Deserialize)]
struct Golden {
    domain: String,
    key_version: u32,
    value: String,
    pseudonym: String,
}

#[derive(Deserialize)]
struct GoldenError {
    domain: String,
    value: String,
    code: ItemErrorCode,
}

fn golden() -> GoldenFile {
    serde_json::from_str(include_str!("data/golden-format-preserving.json"))
        .expect("valid golden file")
}

fn engine(file: &GoldenFile) -> Engine {
    Engine::new(&file.keyring.keyring())
}

fn format(file: &GoldenFile, domain: &str) -> Format {
    let spec = &file.formats[domain];
    Format::new(
        spec.alphabet.as_deref(),
        spec.characters.as_deref(),
        spec.outside,
    )
    .expect("a valid format")
}

fn domain(label: &str) -> Domain<'_> {
    Domain::new(label).expect("valid domain")
}

#[test]
fn golden_vectors_are_reproduced_exactly_and_open_again() {
    let file = golden();
    assert_eq!(file.format, 1);
    let engine = engine(&file);
    assert_eq!(file.vectors.len(), 36);
    for vector in &file.vectors {
        let (d, f, v) = (
            domain(&vector.domain),
            format(&file, &vector.domain),
            vector.key_version,
        );
        let made = engine.pseudonymize_preserving(d, &f, v, &[Some(&vector.value)]);
        assert_eq!(made.errors, []);
        assert_eq!(made.texts.get(0), Some(vector.pseudonym.as_str()));
        let back = engine.reidentify_preserving(d, &f, v, &[Some(&vector.pseudonym)]);
        assert_eq!(back.texts.get(0), Some(vector.value.as_str()));
        assert_eq!(
            vector.pseudonym.chars().count(),
            vector.value.chars().count()
        );
    }
}

#[test]
fn rewrapping_moves_a_column_from_one_version_to_another() {
    let file = golden();
    let engine = engine(&file);
    for vector in file.vectors.iter().filter(|v| v.key_version == 1) {
        let again = file
            .vectors
            .iter()
            .find(|w| w.key_version == 2 && w.domain == vector.domain && w.value == vector.value)
            .expect("a vector of version 2");
        let f = format(&file, &vector.domain);
        let d = domain(&vector.domain);
        let moved = engine.rewrap_preserving(d, &f, 1, 2, &[Some(&vector.pseudonym), None]);
        assert_eq!(moved.errors, []);
        assert_eq!(
            moved.texts.iter().collect::<Vec<_>>(),
            [Some(again.pseudonym.as_str()), None]
        );
    }
}

#[test]
fn values_without_a_pseudonym_fail_per_item_and_the_rest_are_answered() {
    let file = golden();
    let engine = engine(&file);
    for error in &file.errors {
        let f = format(&file, &error.domain);
        let d = domain(&error.domain);
        let values = [Some("123456789"), Some(error.value.as_str()), None];
        let made = engine.pseudonymize_preserving(d, &f, 1, &values);
        assert_eq!(made.errors.len(), 1, "{}", error.domain);
        assert_eq!((made.errors[0].index, made.errors[0].code), (1, error.code));
        assert!(made.texts.get(0).is_some());
        assert_eq!(made.texts.get(1), None);
        assert_eq!(made.texts.get(2), None);
        if error.value.len() > 3 {
            assert!(!format!("{:?}", made.errors).contains(&error.value));
        }
    }
    let f = format(&file, "vin");
    let unknown =
        engine.pseudonymize_preserving(domain("vin"), &f, 9, &[Some("WVWZZZ1JZXW123456")]);
    assert_eq!(unknown.errors[0].code, ItemErrorCode::UnknownKeyVersion);
}

#[test]
fn the_domain_and_the_kept_characters_bind_the_pseudonym() {
    let file = golden();
    let engine = engine(&file);
    let digits = Format::new(Some("digits"), None, Outside::Keep).expect("valid");
    let one = |d: &str, value: &str| {
        let made = engine.pseudonymize_preserving(domain(d), &digits, 1, &[Some(value)]);
        made.texts.get(0).expect("a pseudonym").to_owned()
    };
    assert_ne!(one("phone", "5551234"), one("fax", "5551234"));
    let digits_of = |text: String| text.replace('-', "");
    assert_ne!(
        digits_of(one("phone", "555-1234")),
        digits_of(one("phone", "5551-234"))
    );
    assert_eq!(one("phone", "555-1234").find('-'), Some(3));
}

#[test]
fn formats_are_checked_when_built() {
    assert!(Format::new(Some("hex"), None, Outside::Keep).is_err());
    assert!(Format::new(None, Some("aa"), Outside::Keep).is_err());
    assert!(Format::new(None, Some("a"), Outside::Keep).is_err());
    assert!(Format::new(Some("digits"), Some("01"), Outside::Keep).is_err());
    assert!(Format::new(None, None, Outside::Keep).is_err());
    assert!(Format::new(None, Some("ßäö01"), Outside::Refuse).is_ok());
    assert!(Format::new(None, Some("ßäöß"), Outside::Refuse).is_err());
}

#[test]
fn the_largest_alphabet_numbers_every_character_even_an_ascii_last_one() {
    let file = golden();
    let engine = engine(&file);
    // 65,535 characters from U+0100 on (surrogates have no `char`), then `a` as numeral 65,535.
    let mut characters: String = ('\u{100}'..=char::MAX).take(65_535).collect();
    characters.push('a');
    let largest = Format::new(None, Some(&characters), Outside::Refuse).expect("2^16 characters");
    let d = domain("largest");
    let made = engine.pseudonymize_preserving(d, &largest, 1, &[Some("aaaa")]);
    assert_eq!(made.errors, []);
    let pseudonym = made.texts.get(0).expect("a pseudonym").to_owned();
    assert_eq!(pseudonym.chars().count(), 4);
    assert_ne!(pseudonym, "aaaa");
    let back = engine.reidentify_preserving(d, &largest, 1, &[Some(pseudonym.as_str())]);
    assert_eq!(back.texts.get(0), Some("aaaa"));

    characters.push('b');
    assert!(Format::new(None, Some(&characters), Outside::Refuse).is_err());
}
