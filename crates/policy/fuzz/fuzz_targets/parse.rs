//! The shell parser and the extractor on arbitrary input: no panic, no hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = stakpak_policy::extract::effects(text);
    }
});
