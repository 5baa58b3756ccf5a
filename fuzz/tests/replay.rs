//! Every saved fuzz input, the seeds and the regressions (inputs that once failed), through the
//! fuzz targets' checks: what a fuzzer once found stays fixed in a plain `cargo test`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for folder in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("folder entry").path();
            let input = std::fs::read(&path).expect("saved input");
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no saved inputs for {target}");
}

#[test]
fn token_inputs_pass() {
    replay("token", pseudonym_fuzz::check_token);
}

#[test]
fn request_inputs_pass() {
    replay("request", pseudonym_fuzz::check_request);
}

#[test]
fn siv_inputs_pass() {
    replay("siv", pseudonym_fuzz::check_siv);
}

#[test]
fn arrow_inputs_pass() {
    replay("arrow", pseudonym_fuzz::check_arrow);
}

#[test]
fn preserving_inputs_pass() {
    replay("preserving", pseudonym_fuzz::check_format_preserving);
}
