//! Everything about secrets that needs no daemon: detection rules, placeholders, the
//! streaming redactor and the vault's on-disk format.
//!
//! Pure: no sockets, no D-Bus; the vault module reads and writes the one file it is given.
//! `stakpak-secretd` is the only process that holds vault keys and values at run time.

pub mod detect;
mod detect_adapter;
pub mod placeholder;
pub mod redact;
pub mod vault;
