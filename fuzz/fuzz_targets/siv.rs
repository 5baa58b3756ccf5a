//! The batch AES-SIV: every output is what the `aes-siv` crate makes, and opens again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pseudonym_fuzz::check_siv(data));
