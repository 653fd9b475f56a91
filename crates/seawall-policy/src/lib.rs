//! seawall-policy (see the workspace Cargo.toml for what each crate is for).
#![forbid(unsafe_code)]
