#![no_main]
//! See `seawall_fuzz::trace_context` for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| seawall_fuzz::trace_context::check(data));
