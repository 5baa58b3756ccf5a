//! Property tests of the engine: round trips, domain separation, tamper detection.

use std::sync::LazyLock;

use proptest::prelude::*;
use pseudonym_client::{ItemErrorCode, Mode};
use pseudonym_engine::{Domain, Engine, Keyring};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let mut keyring = Keyring::generate();
    keyring.add_version(true).expect("a version number is free");
    Engine::new(&keyring)
});

fn reversible_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Deterministic), Just(Mode::Randomized)]
}

fn domain_label() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,64}"
}

proptest! {
    #[test]
    fn reidentify_inverts_pseudonymize(
        values in prop::collection::vec(prop::option::of(any::<String>()), 0..50),
        long in prop::option::of("\\PC{1000,3000}"),
        mode in reversible_mode(),
        domain in domain_label(),
    ) {
        let domain = Domain::new(&domain).expect("strategy makes valid labels");
        let mut values = values;
        values.push(Some(String::new()));
        values.push(long);
        let tokens = ENGINE.pseudonymize(domain, mode, &values);
        prop_assert_eq!(tokens.len(), values.len());
        let back = ENGINE.reidentify(domain, &tokens);
        prop_assert!(back.errors.is_empty());
        prop_assert_eq!(back.values, values);
    }

    #[test]
    fn a_pseudonym_reidentifies_only_in_its_own_domain(
        value in any::<String>(),
        mode in reversible_mode(),
        a in domain_label(),
        b in domain_label(),
    ) {
        prop_assume!(a != b);
        let (a, b) = (Domain::new(&a).expect("valid"), Domain::new(&b).expect("valid"));
        let tokens = ENGINE.pseudonymize(a, mode, &[Some(&value)]);
        let back = ENGINE.reidentify(b, &tokens);
        prop_assert_eq!(back.values, vec![None]);
        prop_assert_eq!(back.errors[0].code, ItemErrorCode::InvalidToken);
        let hashes_a = ENGINE.pseudonymize(a, Mode::Hash, &[Some(&value)]);
        let hashes_b = ENGINE.pseudonymize(b, Mode::Hash, &[Some(&value)]);
        prop_assert_ne!(hashes_a, hashes_b);
    }

    #[test]
    fn a_token_with_any_byte_changed_is_rejected(
        value in any::<String>(),
        mode in reversible_mode(),
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let vin = Domain::new("vin").expect("valid");
        let tokens = ENGINE.pseudonymize(vin, mode, &[Some(&value)]);
        let mut bytes = tokens[0].clone().expect("not null").into_bytes();
        let at = position.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        let tampered = String::from_utf8_lossy(&bytes).into_owned();
        let back = ENGINE.reidentify(vin, &[Some(tampered)]);
        prop_assert_eq!(back.values, vec![None]);
        prop_assert_eq!(back.errors.len(), 1);
        prop_assert_eq!(back.errors[0].index, 0);
    }
}

#[test]
fn values_pseudonymize_under_the_primary_and_older_versions_still_open() {
    let vin = Domain::new("vin").expect("valid");
    let mut keyring = Keyring::generate();
    let old = Engine::new(&keyring);
    let v1_token = old.pseudonymize(vin, Mode::Deterministic, &[Some("WVWZZZ1JZXW000001")]);
    keyring.add_version(true).expect("a version number is free");
    let new = Engine::new(&keyring);
    let v2_token = new.pseudonymize(vin, Mode::Deterministic, &[Some("WVWZZZ1JZXW000001")]);
    assert!(v2_token[0].as_deref().is_some_and(|t| t.starts_with("d2.")));
    let both = [v1_token[0].clone(), v2_token[0].clone()];
    let back = new.reidentify(vin, &both);
    assert!(back.errors.is_empty());
    assert_eq!(back.values[0], back.values[1]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random inputs, beside the coverage-guided fuzz targets in `fuzz/` (`token`, `request`):
    /// any input is answered, never a panic, never a value for garbage.
    #[test]
    fn arbitrary_tokens_and_bodies_never_panic(token in "\\PC{0,80}", body in prop::collection::vec(any::<u8>(), 0..300)) {
        let vin = Domain::new("vin").expect("valid");
        let back = ENGINE.reidentify(vin, &[Some(&token)]);
        prop_assert_eq!(back.values, vec![None]);
        let _ = serde_json::from_slice::<pseudonym_client::wire::PseudonymizeRequest>(&body);
        let _ = serde_json::from_slice::<pseudonym_client::wire::ReidentifyRequest>(&body);
    }
}
