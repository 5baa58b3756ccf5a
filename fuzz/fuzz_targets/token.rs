//! Token parsing: any string either is refused or is the one canonical spelling of what it
//! decodes to, and re-identifying it never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pseudonym_fuzz::check_token(data));
