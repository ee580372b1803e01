//! Finding the suite's binaries, built fresh for the test run.
//!
//! `cargo test` builds a package's own binaries for its integration tests, but not those of
//! other packages. The first test that needs a binary runs `cargo build --workspace --bins`
//! into the same target folder as the test itself (cargo has released its lock by then), so a
//! plain `cargo test --workspace` always tests the current code.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The folder holding the suite's binaries (`target/debug`), built on first use.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("STAKPAK_TEST_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // <target>/<profile>/deps/<test-binary>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in <target>/<profile>/deps")
            .to_path_buf();
        build_binaries(&profile_dir);
        profile_dir
    })
}

fn build_binaries(profile_dir: &Path) {
    let Some(cargo) = std::env::var_os("CARGO") else {
        // Not run by cargo: use whatever is there.
        return;
    };
    let target_dir = profile_dir.parent().expect("target folder");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--quiet")
        .arg("--workspace")
        .arg("--bins")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.arg("--profile").arg(other);
        }
        None => return,
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build --workspace --bins failed");
}

/// Path of one of the suite's binaries; panics with a clear message when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}
