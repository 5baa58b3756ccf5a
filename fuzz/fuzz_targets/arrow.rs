//! Arrow bodies: raw bytes, and streams described by structure (valid ones with mutated
//! lengths, offsets, types, dictionaries, views, compression), read by the service's decoder
//! against arrow-rs's and sent to every Arrow route: never a panic, never a 5xx.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pseudonym_fuzz::check_arrow(data));
