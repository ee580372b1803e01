//! The Landlock ruleset for one run, built with raw syscalls in the parent so that the
//! child only has to call `landlock_restrict_self` on an already open descriptor.
//!
//! The `landlock` crate is not used here because its `restrict_self` consumes the ruleset
//! and returns an allocated status, which does not fit in a `pre_exec` hook where nothing
//! may allocate.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::SandboxError;

// Access rights from <linux/landlock.h>.
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
/// Every filesystem right of ABI 1 (execute … make_sym).
const ABI1_ALL: u64 = (1 << 13) - 1;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;

/// The ABI from which every filesystem right this crate knows about is handled
/// (ABI 5 adds `IOCTL_DEV`, the last one).
pub const FULL_FS_ABI: i32 = 5;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI the running kernel offers, or 0 when Landlock is unavailable.
pub fn abi_version() -> i32 {
    // SAFETY: with a null attribute and size 0 the kernel only returns the ABI version.
    #[allow(unsafe_code)]
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        0
    } else {
        i32::try_from(v).unwrap_or(0)
    }
}

fn handled_fs(abi: i32) -> u64 {
    let mut fs = ABI1_ALL;
    if abi >= 2 {
        fs |= REFER;
    }
    if abi >= 3 {
        fs |= TRUNCATE;
    }
    if abi >= 5 {
        fs |= IOCTL_DEV;
    }
    fs
}

/// Builds a ruleset: listing directories everywhere, reading and executing below each of
/// `readable` (directories or files), every handled right below each of `writable`, read
/// and write on `/dev/null`; on ABI 6 and later, signals and abstract unix sockets are
/// scoped to the sandbox's own domain.
pub fn build(
    abi: i32,
    writable: &[&Path],
    readable: &[std::path::PathBuf],
) -> Result<OwnedFd, SandboxError> {
    let fs = handled_fs(abi);
    let attr = RulesetAttr {
        handled_access_fs: fs,
        handled_access_net: 0,
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        },
    };
    // Without the scope fields the kernel rejects a larger struct, so pass the ABI 1..5 size.
    let size = if abi >= 6 {
        size_of::<RulesetAttr>()
    } else {
        16
    };
    // SAFETY: `attr` is a valid ruleset attribute of at least `size` bytes.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr, size, 0u32) };
    if fd < 0 {
        return Err(SandboxError::Landlock(io::Error::last_os_error()));
    }
    let fd = i32::try_from(fd)
        .map_err(|_| SandboxError::Landlock(io::Error::from_raw_os_error(libc::EBADF)))?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    #[allow(unsafe_code)]
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd) };

    let file_rights = EXECUTE | WRITE_FILE | READ_FILE | (fs & (TRUNCATE | IOCTL_DEV));
    add_rule(&ruleset, Path::new("/"), READ_DIR)?;
    for path in readable {
        let rights = if path.is_dir() {
            EXECUTE | READ_FILE | READ_DIR
        } else {
            EXECUTE | READ_FILE
        };
        match add_rule(&ruleset, path, rights) {
            Ok(()) => {}
            // Gone between listing and opening, or a socket or fifo Landlock does not take:
            // not granting it is the safe side.
            Err(SandboxError::LandlockPath { .. }) if !path.is_dir() || !path.exists() => {}
            Err(e) => return Err(e),
        }
    }
    add_rule(
        &ruleset,
        Path::new("/dev/null"),
        (WRITE_FILE | READ_FILE | TRUNCATE) & file_rights,
    )?;
    for dir in writable {
        add_rule(&ruleset, dir, fs)?;
    }
    Ok(ruleset)
}

fn add_rule(ruleset: &OwnedFd, path: &Path, access: u64) -> Result<(), SandboxError> {
    let dir = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| SandboxError::LandlockPath {
            path: path.to_path_buf(),
            source,
        })?;
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: dir.as_raw_fd(),
    };
    // SAFETY: `attr` is a valid path-beneath attribute whose descriptor stays open for the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &attr,
            0u32,
        )
    };
    if rc < 0 {
        return Err(SandboxError::LandlockPath {
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}
