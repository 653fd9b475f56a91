#![no_main]
//! See `seawall_fuzz::request_head` for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| seawall_fuzz::request_head::check(data));
