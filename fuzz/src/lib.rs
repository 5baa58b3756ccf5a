//! What the fuzz targets check, shared with `tests/replay.rs`, which runs every saved input
//! (seeds and regressions) through the same checks in a plain `cargo test`.
//!
//! Run the fuzzers with `scripts/fuzz.sh` (see README).

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use pseudonym_client::Mode;
use pseudonym_service::auth::{self, ApiKeys, Operation};
use pseudonym_service::config::{Config, Limits};
use pseudonym_service::keys::Keys;
use pseudonym_service::seed::{self, SeedKey, SeedMode};
use pseudonym_service::server::Service;
use pseudonym_service::{Domain, Engine, Keyring, token};
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
const SEED_VECTORS: &str = include_str!("../../service/tests/data/golden-seed.json");

/// The domain the replaced service's tokens belong to, here.
const COMPAT_DOMAIN: &str = "vin";

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
    runtime: tokio::runtime::Runtime,
    router: Router,
    api_key: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut keyring = Keyring::from_toml(KEYRING, "fuzz keyring").expect("valid keyring");
        let seeds: serde_json::Value = serde_json::from_str(SEED_VECTORS).expect("seed vectors");
        let secret = SeedKey::from_secret_json(&seeds["secrets"][0].to_string()).expect("secret");
        keyring.import_seed_key(secret).expect("first seed key");
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
        let config = Config {
            limits,
            compat_domain: COMPAT_DOMAIN.to_owned(),
            audit_log: Some("/dev/null".into()),
            ..Config::default()
        };
        let engine = Engine::new(&keyring)
            .with_compat_domain(Domain::new(COMPAT_DOMAIN).expect("valid domain"));
        let api_keys = ApiKeys::new(vec![entry]).expect("API key");
        let service = Service::new(&config, &Keys::in_memory(keyring, api_keys)).expect("service");
        Fixture {
            engine,
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
/// token of it that opens with a deterministic nonce is exactly what its value gives.
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
    if let (true, Some(value)) = (seed::is_seed_token(text), &answer.values[0]) {
        let again = fixture
            .engine
            .pseudonymize_seed(SeedMode::Deterministic, &[Some(value.as_str())])
            .expect("the fuzz keyring holds a seed key");
        let deterministic = again[0].as_deref() == Some(text);
        let new = rewrapped.pseudonyms[0].as_deref().expect("it opened");
        assert_eq!(
            new.starts_with("d2."),
            deterministic,
            "a seed token rewraps in its own mode"
        );
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
