//! Any bytes as a runbook: the loader and the validator answer with a runbook or an
//! error with a location, never a panic, and within bounded time and memory (alias
//! bombs and deep nesting are refused by the parser's budget, over-long input by the
//! `input` module before parsing).
//!
//! `cargo +nightly fuzz run runbook fuzz/corpus/runbook` (the shipped runbooks and the
//! bad-file corpus of the tests are good seeds: `cp runbooks/*.yaml
//! tests/fixtures/bad/* fuzz/corpus/runbook/`).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(runbook) = harden::runbook::load::parse_runbook(Path::new("fuzz.yaml"), text) {
        let _ = harden::runbook::validate::validate(vec![runbook]);
    }
});
