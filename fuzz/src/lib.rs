//! What the fuzz targets check, shared with `tests/replay.rs`, which runs every saved input
//! (seeds and regressions) through the same checks in a plain `cargo test`.
//!
//! Run the fuzzers with `scripts/fuzz.sh` (see README).

pub mod arrow;

use std::sync::OnceLock;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use pseudonym_client::Mode;
use pseudonym_client::wire::ARROW_STREAM;
use pseudonym_service::auth::{self, ApiKeys, Operation};
use pseudonym_service::config::{Config, Limits, TinkConfig};
use pseudonym_service::format::Outside;
use pseudonym_service::formats::FormatConfig;
use pseudonym_service::keys::Keys;
use pseudonym_service::lambda::{self, LambdaKey, LambdaMode};
use pseudonym_service::server::Service;
use pseudonym_service::{Domain, Engine, Keyring, arrow_body, token};
use secrecy::ExposeSecret;
use tower::ServiceExt;

/// The golden vectors' test keyring (versions 1 and 2), so seeds can hold real tokens.
const KEYRING: &str = r#"
primary = 2
[[keys]]
version = 1
secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
[[keys]]
version = 2
secret = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"
"#;

/// The replaced AWS service's golden test secrets; the first is in the fuzz keyring, so seeds
/// can hold its real tokens.
const SEED_VECTORS: &str = include_str!("../../engine/tests/data/golden-seed.json");

/// The domain the replaced service's tokens belong to, here.
const COMPAT_DOMAIN: &str = "vin";

/// A domain whose deterministic pseudonyms are Tink tokens.
const TINK_DOMAIN: &str = "tink.vin";

/// The routes a request input is sent to, chosen by its first byte: every POST route of the
/// API document, a stage segment filled in.
fn routes() -> &'static [String] {
    static ROUTES: OnceLock<Vec<String>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let document = pseudonym_service::api::document();
        document
            .paths
            .paths
            .iter()
            .filter(|(_, item)| item.post.is_some())
            .map(|(path, _)| path.replace("{stage}", "Dev"))
            .collect()
    })
}

struct Fixture {
    engine: Engine,
    limits: Limits,
    runtime: tokio::runtime::Runtime,
    router: Router,
    api_key: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut keyring = Keyring::from_toml(KEYRING, "fuzz keyring").expect("valid keyring");
        let seeds: serde_json::Value = serde_json::from_str(SEED_VECTORS).expect("seed vectors");
        let secret = LambdaKey::from_secret_json(&seeds["secrets"][0].to_string()).expect("secret");
        keyring.import_lambda_key(secret).expect("first seed key");
        let operations = [
            Operation::Pseudonymize,
            Operation::Reidentify,
            Operation::Rewrap,
        ];
        let (key, entry) = auth::generate_key("fuzz", operations.into(), ["*".to_owned()].into());
        let limits = Limits {
            max_values: 64,
            max_body_bytes: 64 * 1024,
            max_value_bytes: 256,
            ..Limits::default()
        };
        let table = |alphabet: &str, outside| FormatConfig {
            alphabet: Some(alphabet.to_owned()),
            characters: None,
            outside,
            key_version: 1,
        };
        let config = Config {
            limits: limits.clone(),
            compat_domain: COMPAT_DOMAIN.to_owned(),
            audit_log: Some("/dev/null".into()),
            format_preserving: [
                ("fp.digits".to_owned(), table("digits", Outside::Keep)),
                ("fp.vin".to_owned(), table("vin", Outside::Refuse)),
            ]
            .into(),
            tink: [(TINK_DOMAIN.to_owned(), TinkConfig::default())].into(),
            ..Config::default()
        };
        let engine = Engine::new(&keyring)
            .with_compat_domain(Domain::new(COMPAT_DOMAIN).expect("valid domain"))
            .with_tink_domains([Domain::new(TINK_DOMAIN).expect("valid domain")]);
        let api_keys = ApiKeys::new(vec![entry]).expect("API key");
        let service = Service::new(&config, &Keys::in_memory(keyring, api_keys)).expect("service");
        Fixture {
            engine,
            limits,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            router: service.router(),
            api_key: key.expose_secret().to_owned(),
        }
    })
}

/// Tokens' base64url (`base64-simd`, alone and in [`token::decode_each`]) accepts exactly what
/// the `base64` crate, the reference, accepts, and reads it the same: any bytes, not only UTF-8.
pub fn check_base64(data: &[u8]) {
    use base64::Engine as _;
    let reference = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(data)
        .ok();
    let mut ours = Vec::new();
    let ours = base64_simd::URL_SAFE_NO_PAD
        .decode_append(data, &mut ours)
        .ok()
        .map(|()| ours);
    assert_eq!(ours, reference, "base64-simd and base64 read a text alike");
    // The engine decodes the texts of a batch together: this one alone, and after another.
    let mut payloads = Vec::new();
    let together = token::decode_each(&[data, b"AAAB", data], &mut payloads);
    let each: Vec<Option<Vec<u8>>> = together
        .into_iter()
        .map(|range| range.ok().map(|range| payloads[range].to_vec()))
        .collect();
    assert_eq!(
        each,
        [reference.clone(), Some(vec![0, 0, 1]), reference],
        "texts decoded together read as each alone"
    );
}

/// [`check_base64`]; then: any input is either refused by [`token::parse`] or is the canonical
/// spelling of the mode, version and payload it decodes to; re-identifying and rewrapping it
/// answer per item, without panicking. The same holds for the replaced service's format: a
/// token of it that opens with a deterministic nonce is exactly what its value gives; and for
/// Tink's, in a Tink domain: a token of the primary version that opens is exactly what its
/// value gives (one spelling only), and any that opens rewraps to that.
pub fn check_token(data: &[u8]) {
    check_base64(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut payload = Vec::new();
    if let Ok((mode, version)) = token::parse(text, &mut payload) {
        let mut spelled = token::header(mode, version).into_bytes();
        token::append_payload(&mut spelled, &payload);
        assert_eq!(
            spelled,
            text.as_bytes(),
            "a token parses only in its canonical spelling"
        );
    }
    let fixture = fixture();
    let domain = Domain::new("vin").expect("valid domain");
    let answer = fixture.engine.reidentify(domain, &[Some(text)]);
    assert_eq!(answer.values.len(), 1, "one answer per token");
    assert_eq!(
        answer.values[0].is_none(),
        answer.errors.len() == 1,
        "a token either opens or is listed as failed"
    );
    let rewrapped = fixture.engine.rewrap(domain, &[Some(text)]);
    assert_eq!(
        rewrapped.pseudonyms[0].is_none(),
        rewrapped.errors.len() == 1,
        "a token is either rewrapped or listed as failed"
    );
    // Without a `.`: the replaced service's token or a Tink token (which opens in any domain,
    // here `vin`'s, not a Tink domain). A Tink token rewraps to the native deterministic token
    // of its value; the replaced service's rewraps in its own mode (deterministic ones: what
    // its value gives there; their nonce is hex, so none starts like a Tink token, while one
    // randomized token in 256 does, and rewraps to a randomized one).
    if let (true, Some(value)) = (lambda::is_lambda_token(text), &answer.values[0]) {
        let new = rewrapped.pseudonyms[0].as_deref().expect("it opened");
        let native =
            fixture
                .engine
                .pseudonymize(domain, Mode::Deterministic, &[Some(value.as_str())]);
        let again = fixture
            .engine
            .pseudonymize_lambda(LambdaMode::Deterministic, &[Some(value.as_str())])
            .expect("the fuzz keyring holds a seed key");
        let deterministic_seed = again[0].as_deref() == Some(text);
        let tink = tink_key_id(text).is_some() && !deterministic_seed && new.starts_with("d2.");
        match tink {
            true => assert_eq!(
                Some(new),
                native[0].as_deref(),
                "a Tink token rewraps to ours"
            ),
            false => assert_eq!(
                new.starts_with("d2."),
                deterministic_seed,
                "a seed token rewraps in its own mode"
            ),
        }
    }
    if let (true, Some(value)) = (text.starts_with("d2."), &answer.values[0]) {
        let again =
            fixture
                .engine
                .pseudonymize(domain, Mode::Deterministic, &[Some(value.as_str())]);
        assert_eq!(
            again[0].as_deref(),
            Some(text),
            "a deterministic token of the primary version is what its value pseudonymizes to"
        );
    }
    check_tink_token(text);
}

fn check_tink_token(text: &str) {
    let engine = &fixture().engine;
    let domain = Domain::new(TINK_DOMAIN).expect("valid domain");
    let answer = engine.reidentify(domain, &[Some(text)]);
    let rewrapped = engine.rewrap(domain, &[Some(text)]);
    assert_eq!(
        answer.values[0].is_none(),
        answer.errors.len() == 1,
        "a token either opens or is listed as failed"
    );
    assert_eq!(
        rewrapped.pseudonyms[0].is_none(),
        rewrapped.errors.len() == 1,
        "a token is either rewrapped or listed as failed"
    );
    let Some(value) = &answer.values[0] else {
        return;
    };
    let again = engine.pseudonymize(domain, Mode::Deterministic, &[Some(value.as_str())]);
    assert_eq!(
        rewrapped.pseudonyms[0], again[0],
        "what opens in a Tink domain rewraps to what its value gives there"
    );
    assert_eq!(
        again[0].as_deref() == Some(text),
        tink_key_id(text) == Some(2),
        "a Tink token that opens is what its value gives exactly when its key id is the primary"
    );
}

/// The key id of `text` if it is standard base64 with a Tink head (`0x01 ‖ key id`).
fn tink_key_id(text: &str) -> Option<u32> {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    match payload.get(..5)? {
        [1, id @ ..] => Some(u32::from_be_bytes(id.try_into().ok()?)),
        _ => None,
    }
}

/// The Arrow routes, with the query an Arrow body needs.
const ARROW_ROUTES: [&str; 6] = [
    "/v1/pseudonymize?domain=vin&mode=deterministic",
    "/v1/reidentify?domain=vin",
    "/v1/rewrap?domain=vin",
    "/v1/pseudonymize?domain=fp.digits&mode=format-preserving",
    "/v1/reidentify?domain=fp.vin",
    "/v1/pseudonymize?domain=tink.vin&mode=deterministic",
];

/// An Arrow body, from the rest of the input after its first byte: raw bytes when that byte is
/// even, else a stream built from the [`arrow::StreamSpec`] the bytes describe (valid streams
/// made hostile in their lengths, offsets, types, dictionaries, views, compression). Then:
///
/// - the service's decoder ([`arrow_body`]) never panics, and what it accepts, arrow-rs's own
///   reader (once the decoder vouched for the stream's lengths) reads to the same strings;
/// - sent to an Arrow route (picked by the first byte), the answer is 2xx with an Arrow stream
///   of one row per item read, or 4xx with a JSON body; never a 5xx or a reset.
pub fn check_arrow(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let body = match selector % 2 {
        0 => rest.to_vec(),
        _ => {
            let Ok(mut spec) = arbitrary::Unstructured::new(rest).arbitrary::<arrow::StreamSpec>()
            else {
                return;
            };
            spec.extra_fields %= 4;
            spec.dictionary_batches %= 3;
            spec.encode()
        }
    };
    let limits = &fixture().limits;
    let bounds = arrow_body::Bounds {
        max_values: limits.max_values,
        max_value_bytes: limits.max_body_bytes,
    };
    let read = arrow_body::Stream::read(&body, bounds);
    if let Ok(items) = &read {
        let ours: Vec<Option<String>> = items.iter().map(|v| v.map(str::to_owned)).collect();
        if let Some(theirs) = arrow_rs_strings(&body) {
            assert_eq!(
                theirs, ours,
                "arrow-rs reads what the decoder accepts alike"
            );
        }
    }
    let route = ARROW_ROUTES[usize::from(selector / 2) % ARROW_ROUTES.len()];
    let (status, content_type, answer) = post(route, ARROW_STREAM, body.clone());
    assert!(
        status.is_success() || status.is_client_error(),
        "{route} answered {status}"
    );
    if status.is_client_error() {
        serde_json::from_slice::<serde_json::Value>(&answer).expect("a refusal is JSON");
        return;
    }
    assert_eq!(content_type, ARROW_STREAM, "an answer to Arrow is Arrow");
    let items = read.expect("the service answered what the decoder accepts");
    let rows = arrow_rs_rows(&answer).expect("the answer is an Arrow stream");
    assert_eq!(rows, items.len(), "one answer per item");
}

/// The strings of the first column of every batch, as arrow-rs reads them; `None` where it does
/// not read the stream (it checks more than the service needs: the bytes under a null).
fn arrow_rs_strings(body: &[u8]) -> Option<Vec<Option<String>>> {
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;
    let owned = |value: Option<&str>| value.map(str::to_owned);
    let reader = arrow_ipc::reader::StreamReader::try_new(body, None).ok()?;
    let mut strings = Vec::new();
    for batch in reader {
        let column = batch.ok()?.column(0).clone();
        match column.data_type() {
            DataType::Utf8 => strings.extend(column.as_string::<i32>().iter().map(owned)),
            DataType::LargeUtf8 => strings.extend(column.as_string::<i64>().iter().map(owned)),
            _ => strings.extend(column.as_string_view().iter().map(owned)),
        }
    }
    Some(strings)
}

/// The row count of the one batch of an answer.
fn arrow_rs_rows(answer: &[u8]) -> Option<usize> {
    let reader = arrow_ipc::reader::StreamReader::try_new(answer, None).ok()?;
    reader.map(|batch| batch.ok().map(|b| b.num_rows())).sum()
}

/// POSTs `body` to `route` with the fixture's key: status, content type and answer.
fn post(route: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, String, Bytes) {
    let fixture = fixture();
    let request = Request::post(route)
        .header("content-type", content_type)
        .header("x-api-key", &fixture.api_key)
        .body(Body::from(body))
        .expect("a valid request");
    fixture.runtime.block_on(async {
        let response = fixture
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let answer = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the answer is read");
        (status, content_type, answer)
    })
}

/// The first byte picks a route from the API document's POST routes, the rest is the JSON body, sent with a key
/// allowed everything: the service answers 2xx or 4xx, always with a JSON body.
pub fn check_request(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let routes = routes();
    let route = &routes[usize::from(selector) % routes.len()];
    let fixture = fixture();
    let request = Request::post(route)
        .header("content-type", "application/json")
        .header("x-api-key", &fixture.api_key)
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    let (status, answer) = fixture.runtime.block_on(async {
        let response = fixture
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let answer = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the answer is read");
        (status, answer)
    });
    assert!(
        status.is_success() || status.is_client_error(),
        "{route} answered {status}"
    );
    serde_json::from_slice::<serde_json::Value>(&answer).expect("every answer is JSON");
}

/// The batch AES-SIV against the `aes-siv` crate: the input is a 64-byte key, a domain and the
/// values of a batch (each prefixed by its length byte); sealed in one batch after the domain,
/// and after the domain and a nonce, every output is the reference's, and every item opens
/// again to its value.
pub fn check_siv(data: &[u8]) {
    use aes_siv::aead::KeyInit;
    use pseudonym_engine::siv::{Block, Siv};

    let Some((key, rest)) = data.split_first_chunk::<64>() else {
        return;
    };
    let Some((&domain_len, rest)) = rest.split_first() else {
        return;
    };
    let (domain, mut rest) = rest.split_at(usize::from(domain_len).min(rest.len()));
    let mut values = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let (value, tail) = tail.split_at(usize::from(len).min(tail.len()));
        values.push(value.to_vec());
        rest = tail;
    }
    let siv = Siv::<aes::Aes256>::new(key).expect("a 512-bit key");
    let mut reference = aes_siv::siv::Aes256Siv::new(key.into());
    let nonce = [0x5a; 16];
    for headers in [vec![domain], vec![domain, &nonce[..]]] {
        let state = siv.absorb(&headers);
        let mut sealed = values.clone();
        let mut slices: Vec<&mut [u8]> = sealed.iter_mut().map(Vec::as_mut_slice).collect();
        let tags = siv.seal(|_| state, &mut slices);
        for ((value, tag), ciphertext) in values.iter().zip(&tags).zip(&sealed) {
            let theirs = reference.encrypt(&headers, value).expect("encrypts");
            assert_eq!(
                theirs,
                [tag.as_slice(), ciphertext].concat(),
                "as the reference seals"
            );
        }
        let mut slices: Vec<&mut [u8]> = sealed.iter_mut().map(Vec::as_mut_slice).collect();
        let tags: Vec<Block> = tags.clone();
        let authentic = siv.open(|_| state, &tags, &mut slices);
        assert!(authentic.iter().all(|&ok| ok), "every item opens");
        assert_eq!(sealed, values, "to its value");
    }
}

/// What a format-preserving input describes: a format (a named alphabet, or custom characters
/// made distinct), whether it refuses other characters, a domain and the values of a batch.
#[derive(Debug, arbitrary::Arbitrary)]
pub struct PreservingSpec {
    alphabet: u8,
    characters: String,
    refuse: bool,
    domain: u8,
    values: Vec<Option<String>>,
}

/// Format-preserving pseudonyms of any batch, with the fuzz keyring's versions 1 and 2:
/// never a panic; an item fails exactly when the rules say (a refused character, too few or too
/// many of the alphabet's) and with that code; any other keeps its length, its kept characters
/// in place and its alphabet, re-identifies to its value, and rewraps to what the other version
/// makes.
pub fn check_format_preserving(data: &[u8]) {
    use pseudonym_client::ItemErrorCode;
    use pseudonym_service::format::{Format, NAMED, Outside};

    let Ok(spec) = arbitrary::Unstructured::new(data).arbitrary::<PreservingSpec>() else {
        return;
    };
    let outside = if spec.refuse {
        Outside::Refuse
    } else {
        Outside::Keep
    };
    let mut distinct: Vec<char> = Vec::new();
    for c in spec.characters.chars() {
        if !distinct.contains(&c) {
            distinct.push(c);
        }
    }
    let custom: String = distinct.iter().collect();
    let named = NAMED[usize::from(spec.alphabet) % NAMED.len()];
    let (format, alphabet) = match (
        spec.alphabet >= 128,
        Format::new(None, Some(&custom), outside),
    ) {
        (true, Ok(format)) => (format, custom),
        _ => (
            Format::new(Some(named.0), None, outside).expect("a named alphabet"),
            named.1.to_owned(),
        ),
    };
    let domain = ["vin", "phone", "a.b-c_d"][usize::from(spec.domain) % 3];
    let domain = Domain::new(domain).expect("valid domain");
    let engine = &fixture().engine;
    let values = &spec.values;
    let made = engine.pseudonymize_preserving(domain, &format, 1, values);
    let radix = format.alphabet.radix();
    let codes: std::collections::HashMap<usize, ItemErrorCode> =
        made.errors.iter().map(|e| (e.index, e.code)).collect();
    for (index, value) in values.iter().enumerate() {
        let Some(value) = value else {
            assert!(made.texts.get(index).is_none() && !codes.contains_key(&index));
            continue;
        };
        let inside = value.chars().filter(|&c| alphabet.contains(c)).count();
        let expected = if spec.refuse && inside < value.chars().count() {
            Some(ItemErrorCode::OutsideAlphabet)
        } else if inside < radix.min_len() {
            Some(ItemErrorCode::FormatTooShort)
        } else if inside > radix.max_len() {
            Some(ItemErrorCode::FormatTooLong)
        } else {
            None
        };
        assert_eq!(codes.get(&index).copied(), expected, "item {index}");
        let Some(pseudonym) = made.texts.get(index) else {
            assert!(expected.is_some(), "a value without a pseudonym has a code");
            continue;
        };
        assert_eq!(pseudonym.chars().count(), value.chars().count());
        for (ours, theirs) in pseudonym.chars().zip(value.chars()) {
            assert_eq!(alphabet.contains(ours), alphabet.contains(theirs));
            if !alphabet.contains(theirs) {
                assert_eq!(ours, theirs, "kept in place");
            }
        }
    }
    let back =
        engine.reidentify_preserving(domain, &format, 1, &made.texts.iter().collect::<Vec<_>>());
    for (index, value) in values.iter().enumerate() {
        if made.texts.get(index).is_some() {
            assert_eq!(
                back.texts.get(index),
                value.as_deref(),
                "item {index} opens"
            );
        }
    }
    let moved = engine.rewrap_preserving(
        domain,
        &format,
        1,
        2,
        &made.texts.iter().collect::<Vec<_>>(),
    );
    let again = engine.pseudonymize_preserving(domain, &format, 2, values);
    for index in 0..values.len() {
        if made.texts.get(index).is_some() {
            assert_eq!(
                moved.texts.get(index),
                again.texts.get(index),
                "item {index} rewraps"
            );
        }
    }
}
