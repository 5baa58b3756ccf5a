//! Format-preserving pseudonyms of any batch in any alphabet: never a panic, per-item errors
//! exactly by the rules, and every other item keeps its format and opens again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pseudonym_fuzz::check_format_preserving(data));
