//! Where the sandbox tests make their folders, wherever the clone and the target folder lie.
//!
//! Never below `/tmp`: a sandbox with `bind_tmp` mounts its private tmp over `/tmp`, so it
//! refuses a workspace there (`WorkspaceUnderTmp`) and its commands would not see a helper
//! program kept there. And every folder above must be searchable by all users, because some
//! runs are as `nobody`. Cargo's tmp folder of the target (`CARGO_TARGET_TMPDIR`) is used when
//! it qualifies; otherwise (a target under `/tmp`, or under a private home such as `/root`)
//! `/var/tmp/stakpak-tests-<uid>`, made by the tests and checked to be theirs. Each test's
//! folder is removed when it is dropped; the parent folder stays for the next run.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// The folder below which the tests make theirs (see the module's documentation).
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Ok(dir) = fs::canonicalize(env!("CARGO_TARGET_TMPDIR"))
            && usable(&dir)
        {
            return dir;
        }
        let var_tmp = fs::canonicalize("/var/tmp").expect("these tests need /var/tmp");
        assert!(
            usable(&var_tmp),
            "{} is below /tmp or not searchable by all users: the sandbox tests need a folder that is neither",
            var_tmp.display()
        );
        let uid = rustix::process::geteuid().as_raw();
        let dir = var_tmp.join(format!("stakpak-tests-{uid}"));
        if let Err(e) = fs::create_dir(&dir)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            panic!("cannot make {}: {e}", dir.display());
        }
        // /var/tmp is writable by all: use the folder only if it is a real folder of ours.
        let meta = fs::symlink_metadata(&dir).unwrap();
        assert!(
            meta.is_dir() && meta.uid() == uid,
            "{} is not a folder owned by uid {uid}; remove it",
            dir.display()
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
}

/// Not below /tmp, and it and every folder above it searchable by all users.
fn usable(dir: &Path) -> bool {
    !dir.starts_with("/tmp")
        && dir
            .ancestors()
            .all(|a| fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// A new, empty folder for one test (mode 0755), removed when dropped.
pub fn test_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("stakpak-sandbox-")
        .tempdir_in(root())
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A test folder holding the empty `workspace` and `tmp` a sandbox is configured with.
pub fn sandbox_dir() -> tempfile::TempDir {
    let base = test_dir();
    for d in ["workspace", "tmp"] {
        fs::create_dir(base.path().join(d)).unwrap();
    }
    base
}

/// Restricts the calling thread like sandboxd: read everywhere, write below `dir`, `/proc`
/// (for the child's uid_map) and `/dev/null`.
pub fn restrict_like_sandboxd(dir: &Path) {
    use landlock::{
        ABI, Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    };
    let abi = ABI::V5;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .unwrap()
        .create()
        .unwrap();
    for (path, access) in [
        (Path::new("/"), AccessFs::from_read(abi)),
        (dir, AccessFs::from_all(abi)),
        (Path::new("/proc"), AccessFs::from_all(abi)),
        (Path::new("/dev/null"), AccessFs::from_file(abi)),
    ] {
        ruleset = ruleset
            .add_rule(PathBeneath::new(PathFd::new(path).unwrap(), access))
            .unwrap();
    }
    ruleset.restrict_self().unwrap();
}
