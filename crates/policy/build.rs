// Build scripts report failure by panicking; cargo shows the message.
#![allow(clippy::panic)]

//! Embeds the shipped policy packs (`policies/*.toml` at the workspace root) into the crate,
//! so the warden and the CLI judge with them even when no pack is installed on disk.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = manifest.join("../../policies");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut packs: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    packs.sort();
    let mut out = String::from(
        "/// The packs shipped with stakpak: (file name, TOML text).\npub const BUILTIN_PACKS: &[(&str, &str)] = &[\n",
    );
    for p in &packs {
        println!("cargo:rerun-if-changed={}", p.display());
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            p.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("builtin_packs.rs");
    if let Err(e) = fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
}
