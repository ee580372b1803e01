//! What the child does between `fork` and `exec`: everything here runs in a copy of a
//! possibly multi-threaded parent, so it only makes raw syscalls on data prepared by the
//! parent ([`ChildPlan`]) and never allocates or takes a lock.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// Everything the child needs, prepared in the parent.
#[derive(Debug)]
pub struct ChildPlan {
    /// `(uid, gid)` to drop to before anything else, when the parent runs as root.
    pub run_as: Option<(u32, u32)>,
    /// `unshare(2)` flags; 0 skips namespaces altogether.
    pub unshare_flags: libc::c_int,
    /// Contents for `/proc/self/uid_map` and `/proc/self/gid_map` (map the uid to itself).
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    /// The private tmp directory, bound over `/tmp` in the new mount namespace.
    pub tmp: CString,
    /// Whether to make mounts private and bind `tmp` over `/tmp` (refused under Landlock).
    pub bind_tmp: bool,
    /// `(resource, limit)` pairs for `setrlimit`.
    pub rlimits: Vec<(libc::__rlimit_resource_t, libc::rlim_t)>,
    /// `cgroup.procs` of this run's pids cgroup, opened for writing.
    pub cgroup_procs: Option<RawFd>,
    /// The Landlock ruleset descriptor, or `None` when Landlock is unavailable and allowed.
    pub ruleset: Option<RawFd>,
}

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        // `last_os_error` only reads errno; an `Os` error does not allocate.
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the descriptor is closed before returning.
    #[allow(unsafe_code)]
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd.into())?;
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n < 0 || n.unsigned_abs() != data.len() {
            return Err(if n < 0 {
                err
            } else {
                io::Error::from_raw_os_error(libc::EIO)
            });
        }
    }
    Ok(())
}

impl ChildPlan {
    /// Runs in the child after `fork`; the order matters and is explained step by step.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: every call below is a plain syscall on memory owned by `self` or on
        // static C strings; the child is single-threaded at this point.
        #[allow(unsafe_code)]
        unsafe {
            // A new session (and process group) so the parent can kill the whole group.
            check(libc::setsid().into())?;

            // Join the pids cgroup while still root, before anything can fork ("0" means the writer).
            if let Some(fd) = self.cgroup_procs {
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                check(n as libc::c_long)?;
            }

            // Drop to the run-as user next: RLIMIT_NPROC counts per real uid, and the
            // user namespace below must be owned by that user, not root.
            if let Some((uid, gid)) = self.run_as {
                check(libc::syscall(
                    libc::SYS_setgroups,
                    0usize,
                    std::ptr::null::<libc::gid_t>(),
                ))?;
                check(libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
                check(libc::syscall(libc::SYS_setresuid, uid, uid, uid))?;
                // Changing uid made the process non-dumpable, which makes /proc/self
                // root-owned; the uid_map writes below need it to be ours again.
                check(libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0).into())?;
            }

            if self.unshare_flags != 0 {
                check(libc::unshare(self.unshare_flags).into())?;
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &self.uid_map)?;
                write_file(c"/proc/self/gid_map", &self.gid_map)?;
                if self.bind_tmp && self.unshare_flags & libc::CLONE_NEWNS != 0 {
                    // Keep our mounts from propagating anywhere, then put the private tmp on /tmp.
                    check(
                        libc::mount(
                            std::ptr::null(),
                            c"/".as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        )
                        .into(),
                    )?;
                    check(
                        libc::mount(
                            self.tmp.as_ptr(),
                            c"/tmp".as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        )
                        .into(),
                    )?;
                }
            }

            for &(resource, limit) in &self.rlimits {
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                check(libc::setrlimit(resource, &lim).into())?;
            }

            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())?;
            if let Some(fd) = self.ruleset {
                check(libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32))?;
            }

            // Every descriptor above stderr closes at exec, whatever its flags; the parent's
            // exec-error pipe is already close-on-exec, so it keeps working until then.
            check(libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ))?;
        }
        Ok(())
    }
}
