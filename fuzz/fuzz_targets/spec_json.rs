#![no_main]
//! See `seawall_fuzz::spec_json` for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| seawall_fuzz::spec_json::check(data));
