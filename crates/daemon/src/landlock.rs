//! The Landlock self-restriction every daemon applies before its async runtime starts.
//!
//! A daemon may read the system folders it needs to run (libraries, `/etc`, `/proc`, …) and
//! its configuration, and may write only below its own state and runtime folders (plus
//! `/dev/null`). Signals to processes outside its Landlock domain are refused too (ABI 6).
//!
//! Below ABI 8, `landlock_restrict_self` restricts only the calling thread and the threads and
//! processes it creates afterwards, so [`restrict_self`] must run while the process has a
//! single thread: before tokio, before anything that spawns a helper thread.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, LandlockStatus as KernelStatus, PathBeneath,
    PathFd, RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use stakpak_proto::LandlockStatus;

/// The ABI whose access rights we ask for; older kernels get what they support.
const TARGET_ABI: ABI = ABI::V7;

/// System folders every daemon may read and execute from.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/run/systemd",
    "/run/dbus",
    "/nix/store",
];

/// Paths a daemon may use beyond the system folders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Read (and execute) only.
    pub read: Vec<PathBuf>,
    /// Full access below these folders.
    pub write: Vec<PathBuf>,
}

impl Confinement {
    /// The usual set for a daemon: its configuration readable, state and runtime writable.
    pub fn for_daemon(config_dir: &Path, state_dir: &Path, runtime_dir: &Path) -> Confinement {
        Confinement {
            read: vec![config_dir.to_path_buf()],
            write: vec![state_dir.to_path_buf(), runtime_dir.to_path_buf()],
        }
    }
}

/// What the restriction achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandlockOutcome {
    pub status: LandlockStatus,
    /// Landlock ABI of the running kernel as this build understands it (0: none).
    pub abi: u32,
}

/// The restriction could not be built or applied.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("cannot build the landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("cannot open {path} for a landlock rule: {source}")]
    Path {
        path: PathBuf,
        source: landlock::PathFdError,
    },
}

/// Restricts the calling thread (and everything it later creates) to `confinement`.
///
/// Folders that do not exist are skipped: a missing `/lib32` is no reason to fail. Create the
/// state and runtime folders before calling this.
pub fn restrict_self(confinement: &Confinement) -> Result<LandlockOutcome, LandlockError> {
    let read = AccessFs::from_read(TARGET_ABI);
    let all = AccessFs::from_all(TARGET_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .scope(Scope::Signal)?
        .create()?;
    let read_paths = SYSTEM_READ
        .iter()
        .map(PathBuf::from)
        .chain(confinement.read.iter().cloned());
    for path in read_paths {
        ruleset = add_rule(ruleset, &path, read)?;
    }
    // Writing to /dev/null is how many libraries discard output.
    ruleset = add_rule(
        ruleset,
        Path::new("/dev/null"),
        AccessFs::ReadFile | AccessFs::WriteFile,
    )?;
    for path in &confinement.write {
        ruleset = add_rule(ruleset, path, all)?;
    }
    Ok(outcome(&ruleset.restrict_self()?))
}

fn add_rule(
    ruleset: landlock::RulesetCreated,
    path: &Path,
    access: landlock::BitFlags<AccessFs>,
) -> Result<landlock::RulesetCreated, LandlockError> {
    let fd = match PathFd::new(path) {
        Ok(fd) => fd,
        Err(_) if !path.exists() => return Ok(ruleset),
        Err(source) => {
            return Err(LandlockError::Path {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // A rule on a file (not a folder) may only carry file rights.
    let access = if path.is_dir() {
        access
    } else {
        access & AccessFs::from_file(TARGET_ABI)
    };
    Ok(ruleset.add_rule(PathBeneath::new(fd, access))?)
}

fn outcome(status: &RestrictionStatus) -> LandlockOutcome {
    let abi = match status.landlock {
        KernelStatus::Available { effective_abi, .. } => effective_abi as u32,
        _ => 0,
    };
    let status = match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockStatus::Enforced,
        RulesetStatus::PartiallyEnforced => LandlockStatus::Partial,
        _ => LandlockStatus::NotEnforced,
    };
    LandlockOutcome { status, abi }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, io, os::unix::fs::OpenOptionsExt};

    fn write(path: &Path) -> io::Result<()> {
        fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map(|_| ())
    }

    /// Restricts a fresh thread (below ABI 8 the restriction stays on that thread) and checks
    /// from inside it what it may and may not touch.
    #[test]
    fn writes_outside_state_and_runtime_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let config = root.path().join("config");
        let state = root.path().join("state");
        let runtime = root.path().join("run");
        let elsewhere = root.path().join("elsewhere");
        for d in [&config, &state, &runtime, &elsewhere] {
            fs::create_dir(d).unwrap();
        }
        fs::write(config.join("warden.toml"), "[log]\n").unwrap();
        let confinement = Confinement::for_daemon(&config, &state, &runtime);
        let base = root.path().to_path_buf();

        let (outcome, results) = std::thread::spawn(move || {
            let outcome = restrict_self(&confinement).unwrap();
            let results = vec![
                ("state", write(&state.join("db"))),
                (
                    "runtime nested",
                    fs::create_dir(runtime.join("sock.d"))
                        .and_then(|_| write(&runtime.join("sock.d/x"))),
                ),
                (
                    "config read",
                    fs::read_to_string(config.join("warden.toml")).map(|_| ()),
                ),
                ("config write", write(&config.join("warden.toml"))),
                ("sibling folder", write(&elsewhere.join("x"))),
                ("parent folder", write(&base.join("x"))),
                ("tmp", write(Path::new("/tmp/stakpak-landlock-test"))),
                ("etc", write(Path::new("/etc/stakpak-landlock-test"))),
                (
                    "dev null",
                    fs::OpenOptions::new()
                        .write(true)
                        .open("/dev/null")
                        .map(|_| ()),
                ),
            ];
            (outcome, results)
        })
        .join()
        .unwrap();

        assert_eq!(outcome.status, LandlockStatus::Enforced, "{outcome:?}");
        assert!(outcome.abi >= 6, "{outcome:?}");
        let verdicts: Vec<(&str, Result<(), Option<i32>>)> = results
            .into_iter()
            .map(|(what, r)| (what, r.map_err(|e| e.raw_os_error())))
            .collect();
        let eacces = Err(Some(13));
        assert_eq!(
            verdicts,
            vec![
                ("state", Ok(())),
                ("runtime nested", Ok(())),
                ("config read", Ok(())),
                ("config write", eacces),
                ("sibling folder", eacces),
                ("parent folder", eacces),
                ("tmp", eacces),
                ("etc", eacces),
                ("dev null", Ok(())),
            ]
        );
        // The test's own thread was never restricted.
        write(&root.path().join("after")).unwrap();
    }
}
