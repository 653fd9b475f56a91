#![no_main]
//! See `seawall_fuzz::response_head` for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| seawall_fuzz::response_head::check(data));
