#![no_main]
//! See `seawall_fuzz::connect_head` for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| seawall_fuzz::connect_head::check(data));
