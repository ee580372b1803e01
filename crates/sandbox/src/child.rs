//! What the child does between `fork` and `exec`: everything here runs in a copy of a
//! possibly multi-threaded parent, so it only makes raw syscalls on data prepared by the
//! parent ([`ChildPlan`]) and never allocates or takes a lock.
//!
//! With a pid namespace the child forks once more (a raw `clone`, so no `atfork` handler
//! of the parent's libraries runs): the grandchild is pid 1 of the new namespace, finishes
//! the set-up and returns to std, which execs the command in it; the child in between
//! ("the waiter") only waits for it and ends the same way, so the parent sees the command's
//! own status. When pid 1 of a namespace ends, the kernel kills everything left in it, so
//! nothing the command started outlives it, whatever session or process group it made.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use crate::seccomp::Filter;

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
    /// Whether to bind `tmp` over `/tmp`: needs mounting, which Landlock refuses.
    pub bind_tmp: bool,
    /// `(resource, limit)` pairs for `setrlimit`.
    pub rlimits: Vec<(libc::__rlimit_resource_t, libc::rlim_t)>,
    /// `cgroup.procs` of this run's pids cgroup, opened for writing.
    pub cgroup_procs: Option<RawFd>,
    /// The Landlock ruleset descriptor, or `None` when Landlock is unavailable and allowed.
    pub ruleset: Option<RawFd>,
    /// Run the command as pid 1 of a new pid namespace (needs the user namespace).
    pub pid_namespace: bool,
    /// Installed last, after `PR_SET_NO_NEW_PRIVS` and Landlock.
    pub seccomp: Filter,
    /// Network `proxied`: once in the new network namespace, bring loopback up, listen on
    /// `127.0.0.1:<port>` and send the listener to the parent over this unix socket
    /// (`relay.rs`), as `(socket, port)`.
    pub proxy_listener: Option<(RawFd, u16)>,
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
    /// With [`ChildPlan::pid_namespace`] it returns only in the grandchild (see the module
    /// documentation); the waiter never returns.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: every call below is a plain syscall on memory owned by `self`, on the
        // stack or on static C strings; the child is single-threaded at this point.
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

            // Whether our mounts are private, so that a fresh /proc may go on top.
            let mut private_mounts = false;
            if self.unshare_flags != 0 {
                check(libc::unshare(self.unshare_flags).into())?;
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &self.uid_map)?;
                write_file(c"/proc/self/gid_map", &self.gid_map)?;
                if self.unshare_flags & libc::CLONE_NEWNS != 0 {
                    // Keep our mounts from propagating anywhere. Refused inside a Landlock
                    // domain: then only binding the private tmp needs it to work.
                    let private = check(
                        libc::mount(
                            std::ptr::null(),
                            c"/".as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        )
                        .into(),
                    );
                    private_mounts = private.is_ok();
                    if self.bind_tmp {
                        private?;
                        // Put the private tmp on /tmp.
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
                if let Some((channel, port)) = self.proxy_listener {
                    // Still the only process of the new network namespace, with the
                    // capabilities of the new user namespace: loopback can be brought up.
                    loopback_up()?;
                    let listener = listen_loopback(port)?;
                    let sent = send_fd(channel, listener);
                    libc::close(listener);
                    libc::close(channel);
                    sent?;
                }
                if self.pid_namespace {
                    // A new pid namespace takes effect for the children of the caller only.
                    check(libc::unshare(libc::CLONE_NEWPID).into())?;
                    fork_into_pid_namespace()?;
                    // Pid 1 of the namespace from here on. A /proc of the namespace shows
                    // the command only its own processes; optional, because the kernel
                    // refuses it when the host's /proc is partly hidden (and all mounts
                    // inside a Landlock domain, where `private_mounts` is false anyway).
                    if private_mounts {
                        let _ = libc::mount(
                            c"proc".as_ptr(),
                            c"/proc".as_ptr(),
                            c"proc".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            std::ptr::null(),
                        );
                    }
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
            // Last: from here on the denied syscalls fail, `mount` among them.
            self.seccomp.install()?;

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

/// Forks once more; returns in the child, which is pid 1 of the pid namespace the caller
/// just unshared. The caller becomes the waiter and never returns.
fn fork_into_pid_namespace() -> io::Result<()> {
    // SAFETY: a raw clone without CLONE_VM behaves like fork(2), and the child runs on its
    // own copy of this stack; glibc's fork is avoided because it would run the parent
    // libraries' atfork handlers, which may allocate or lock.
    #[allow(unsafe_code)]
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    check(pid)?;
    if pid == 0 {
        // If the waiter dies (the parent kills the process group), so does pid 1 and with
        // it the namespace. Were the waiter killed before this line, the grandchild is
        // still in the process group and the cgroup the parent kills at the end of the run.
        // SAFETY: a plain prctl.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        return check(rc.into());
    }
    wait_and_mirror(pid as libc::pid_t)
}

/// The waiter: waits for pid 1 of the namespace and ends like it.
fn wait_and_mirror(pid: libc::pid_t) -> ! {
    // SAFETY: plain syscalls on stack memory; `_exit` and the re-raised signal end the process.
    #[allow(unsafe_code)]
    unsafe {
        // Hold nothing: not the output pipes (so they end with the command), and above all
        // not std's exec-error pipe, which the parent reads until every writer closed it.
        // The grandchild still holds that one until its `exec`, so an error before or in
        // the exec still reaches the parent as the spawn's error.
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        // The waiter keeps the capabilities of the new user namespace and no Landlock
        // ruleset of its own: no process of the run-as user may ptrace it.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);

        let mut status: libc::c_int = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                // Cannot happen (the grandchild is our only child); end as a failure.
                libc::_exit(127);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            // Die of the same signal, without leaving a core file of the waiter.
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(127)
    }
}

/// Sets `IFF_UP` on `lo` of the current network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain syscalls on a zeroed `ifreq` on the stack; the socket is closed on
    // every path.
    #[allow(unsafe_code)]
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(s.into())?;
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut rc = libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            rc = libc::ioctl(s, libc::SIOCSIFFLAGS as _, &ifr);
        }
        let err = io::Error::last_os_error();
        libc::close(s);
        if rc < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// A TCP listener on `127.0.0.1:port`; returns its descriptor.
fn listen_loopback(port: u16) -> io::Result<RawFd> {
    // SAFETY: plain syscalls on stack memory; the descriptor is closed on failure.
    #[allow(unsafe_code)]
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        check(s.into())?;
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::bind(
            s,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let rc = if rc == 0 { libc::listen(s, 128) } else { rc };
        if rc < 0 {
            let err = io::Error::last_os_error();
            libc::close(s);
            return Err(err);
        }
        Ok(s)
    }
}

/// Sends `fd` over the unix socket `channel` (`SCM_RIGHTS`, one data byte).
fn send_fd(channel: RawFd, fd: RawFd) -> io::Result<()> {
    // Room for one `cmsghdr` and one descriptor, aligned like `cmsghdr`.
    let mut control = [0u64; 4];
    let mut byte = [0u8; 1];
    // SAFETY: the iovec and control buffer live on this stack frame for the call; the
    // CMSG macros stay inside `control`, which is larger than CMSG_SPACE(sizeof(int)).
    #[allow(unsafe_code)]
    unsafe {
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
        check(libc::sendmsg(channel, &msg, libc::MSG_NOSIGNAL) as libc::c_long)?;
    }
    Ok(())
}
