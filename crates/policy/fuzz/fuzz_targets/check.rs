//! The whole evaluation with the shipped packs on arbitrary input: no panic, no hang, and
//! never `allow` for input the parser rejects.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stakpak_policy::{Action, Decision, Policy, Settings, load};

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| match load::load(true, &[], Settings::default()) {
        Ok(p) => p,
        Err(e) => panic!("the shipped policy does not load: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let verdict = policy().check(&Action::Command(text.to_string()));
    if stakpak_policy::shell::parse(text).is_err() {
        assert_ne!(verdict.decision, Decision::Allow, "unparsable input allowed: {text:?}");
    }
});
