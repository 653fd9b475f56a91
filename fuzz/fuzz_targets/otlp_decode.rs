#![no_main]
//! See `seawall_fuzz::otlp_decode` for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| seawall_fuzz::otlp_decode::check(data));
