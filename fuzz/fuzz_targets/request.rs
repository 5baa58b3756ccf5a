//! Request decoding: any body on any route is answered with 2xx or 4xx and a JSON body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pseudonym_fuzz::check_request(data));
