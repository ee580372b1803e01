//! The seccomp filter of every sandboxed command: a classic BPF program built in the parent
//! ([`Filter::build`]) and installed by the child after `PR_SET_NO_NEW_PRIVS`, as the last
//! restriction before `exec` ([`Filter::install`] allocates nothing).
//!
//! It is a deny list on top of Landlock, the namespaces and the run-as user, not an allow
//! list: everything a build or a shell script needs keeps working, and what is refused is
//! kernel surface no command of ours needs and exploits like to use.
//!
//! - **Architecture.** A syscall made through any ABI but the build's own (x86_64 or aarch64)
//!   kills the process: on x86_64 that is the i386 entry (`int 0x80`), whose numbers name
//!   other syscalls than the ones listed below, and every x32 syscall (bit 30 of the number
//!   set). Killing rather than failing makes such an attempt visible (`SIGSYS`).
//! - **`EPERM`** for:
//!   - other processes' memory: `ptrace`, `process_vm_readv`, `process_vm_writev`,
//!     `pidfd_getfd` (refused even on the sandbox's own children);
//!   - io_uring: `io_uring_setup`, `io_uring_enter`, `io_uring_register` (its operations
//!     are syscalls this filter would never see);
//!   - kernel code: `init_module`, `finit_module`, `delete_module`, `kexec_load`,
//!     `kexec_file_load`, `bpf`, `perf_event_open`;
//!   - kernel keyrings: `add_key`, `request_key`, `keyctl` (not namespaced);
//!   - `userfaultfd` (stalls the kernel at a chosen access: a common exploit aid) and
//!     `open_by_handle_at` (opens files by handle, around path-based checks);
//!   - the machine: `reboot`, `swapon`, `swapoff`, `acct`, `settimeofday`, `clock_settime`;
//!   - mounts (already refused by Landlock; belt and braces): `mount`, `umount2`,
//!     `pivot_root`, `move_mount`, `open_tree`, `fsopen`, `fsmount`, `fsconfig`, `fspick`,
//!     `mount_setattr`.
//! - With `deny_unix_sockets` (the sandbox does this for network `none`), `EPERM` for
//!   `socket(AF_UNIX, …)`: a named unix socket is a file, so neither the network namespace
//!   nor Landlock (before the kernel's unix-socket right) keeps a command from connecting
//!   to the suite's bus or another local service. `socketpair` keeps working, so programs
//!   that talk to their own children over unix sockets still do.
//! - Everything else is allowed.

use std::io;
use std::mem::offset_of;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the sandbox's seccomp filter knows the syscall numbers of x86_64 and aarch64 only");

/// `AUDIT_ARCH_*` from <linux/audit.h>: the ELF machine, 64-bit, little-endian.
const AUDIT_ARCH_64BIT: u32 = 0x8000_0000;
const AUDIT_ARCH_LE: u32 = 0x4000_0000;
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = libc::EM_X86_64 as u32 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = libc::EM_AARCH64 as u32 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE;
/// `__X32_SYSCALL_BIT`: x32 syscalls arrive with `AUDIT_ARCH_X86_64` and this bit set.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The syscalls answered with `EPERM`; see the module documentation.
pub const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_keyctl,
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
];

/// The first comparison jumps `DENIED.len()` plus the socket check's 3 instructions ahead,
/// at most 255.
const LIST_FITS: () = assert!(DENIED.len() + 3 <= 255);

/// A compiled filter, ready to install.
pub struct Filter {
    program: Vec<libc::sock_filter>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .finish()
    }
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        // Every BPF opcode fits in 16 bits.
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LOAD_WORD: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const RET: u32 = libc::BPF_RET | libc::BPF_K;

impl Filter {
    /// The program for [`DENIED`] on this architecture, and for `socket(AF_UNIX, …)` when
    /// `deny_unix_sockets` is set.
    pub fn build(deny_unix_sockets: bool) -> Filter {
        // Offsets into `struct seccomp_data`, the input of the program.
        let arch = offset_of!(libc::seccomp_data, arch) as u32;
        let nr = offset_of!(libc::seccomp_data, nr) as u32;
        let kill = stmt(RET, libc::SECCOMP_RET_KILL_PROCESS);

        let mut p = vec![
            stmt(LOAD_WORD, arch),
            // Native: skip the kill.
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                NATIVE_ARCH,
                1,
                0,
            ),
            kill,
            stmt(LOAD_WORD, nr),
        ];
        #[cfg(target_arch = "x86_64")]
        p.extend([
            // x32: fall through to the kill; otherwise skip it.
            jump(
                libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
                X32_SYSCALL_BIT,
                0,
                1,
            ),
            kill,
        ]);
        // The `socket` check after the list: not `socket` → ALLOW; its first argument (the
        // low word of args[0]; the domain is an int) AF_UNIX → EPERM, else ALLOW.
        let unix_check = if deny_unix_sockets {
            vec![
                jump(
                    libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                    libc::SYS_socket as u32,
                    0,
                    2,
                ),
                stmt(LOAD_WORD, offset_of!(libc::seccomp_data, args) as u32),
                jump(
                    libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                    libc::AF_UNIX as u32,
                    1,
                    0,
                ),
            ]
        } else {
            Vec::new()
        };
        // One comparison per denied syscall, each jumping to the EPERM return after the
        // final ALLOW (jump offsets are 8 bits: see `LIST_FITS`).
        let n = DENIED.len();
        for (i, &sys) in DENIED.iter().enumerate() {
            p.push(jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                sys as u32,
                (n - i + unix_check.len()) as u8,
                0,
            ));
        }
        p.extend(unix_check);
        p.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
        p.push(stmt(
            RET,
            libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA),
        ));
        Filter { program: p }
    }

    /// Installs the filter on the calling thread (and everything it later creates). Needs
    /// `PR_SET_NO_NEW_PRIVS` (or `CAP_SYS_ADMIN`) first. Allocates nothing, so it may run
    /// between `fork` and `exec`.
    pub fn install(&self) -> io::Result<()> {
        let () = LIST_FITS;
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at a valid program that outlives the call; the kernel copies it.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::c_ulong::from(libc::SECCOMP_MODE_FILTER),
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program_and_it_ends_in_returns() {
        for deny_unix in [false, true] {
            check_jumps(&Filter::build(deny_unix));
        }
    }

    fn check_jumps(f: &Filter) {
        let len = f.program.len();
        for (i, ins) in f.program.iter().enumerate() {
            if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                assert!(i + 1 + usize::from(ins.jt) < len, "jt of {i}");
                assert!(i + 1 + usize::from(ins.jf) < len, "jf of {i}");
            }
        }
        let tail: Vec<(u32, u32)> = f.program[len - 2..]
            .iter()
            .map(|ins| (u32::from(ins.code), ins.k))
            .collect();
        assert_eq!(
            tail,
            vec![
                (RET, libc::SECCOMP_RET_ALLOW),
                (RET, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32)
            ]
        );
    }

    /// One raw syscall with five arguments; its errno, or 0 on success.
    fn errno_of(nr: libc::c_long, args: [usize; 5]) -> i32 {
        // SAFETY: the callers pass only null pointers and invalid values, which the kernel
        // rejects without touching memory.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]) };
        if rc < 0 {
            io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        }
    }

    fn calls() -> Vec<(&'static str, i32)> {
        let bad = usize::MAX;
        vec![
            ("ptrace", errno_of(libc::SYS_ptrace, [bad, 0, 0, 0, 0])),
            ("io_uring_setup", errno_of(libc::SYS_io_uring_setup, [0; 5])),
            ("keyctl", errno_of(libc::SYS_keyctl, [bad, 0, 0, 0, 0])),
            ("bpf", errno_of(libc::SYS_bpf, [bad, 0, 0, 0, 0])),
            (
                "userfaultfd",
                errno_of(libc::SYS_userfaultfd, [bad, 0, 0, 0, 0]),
            ),
            ("mount", errno_of(libc::SYS_mount, [0; 5])),
            ("reboot", errno_of(libc::SYS_reboot, [0; 5])),
            ("swapoff", errno_of(libc::SYS_swapoff, [0; 5])),
            ("getppid", errno_of(libc::SYS_getppid, [0; 5])),
        ]
    }

    /// The filter on a thread of its own (seccomp and no_new_privs are per thread): denied
    /// syscalls, called with arguments that make them fail differently (or do nothing)
    /// without the filter, answer EPERM; others still work.
    #[test]
    fn denied_syscalls_answer_eperm_on_a_filtered_thread() {
        let (before, after) = std::thread::spawn(|| {
            let before = calls();
            // SAFETY: sets no_new_privs on this thread only.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            assert_eq!(rc, 0);
            Filter::build(false).install().unwrap();
            (before, calls())
        })
        .join()
        .unwrap();
        let mut expected: Vec<(&str, i32)> = before
            .iter()
            .map(|&(name, _)| (name, libc::EPERM))
            .collect();
        expected.last_mut().unwrap().1 = 0;
        assert_eq!(after, expected);
        // Without the filter, root got other answers (io_uring can be off by sysctl).
        if rustix::process::geteuid().is_root() {
            let refused: Vec<&str> = before
                .iter()
                .filter(|&&(name, e)| e == libc::EPERM && name != "io_uring_setup")
                .map(|&(name, _)| name)
                .collect();
            assert_eq!(refused, Vec::<&str>::new());
        }
    }

    /// With `deny_unix_sockets`: `socket(AF_UNIX, …)` answers EPERM; other families and
    /// `socketpair(AF_UNIX, …)` still work.
    #[test]
    fn unix_sockets_can_be_refused_while_socketpairs_work() {
        let results = std::thread::spawn(|| {
            // SAFETY: sets no_new_privs on this thread only.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            assert_eq!(rc, 0);
            Filter::build(true).install().unwrap();
            let unix = rustix::net::socket(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::STREAM,
                None,
            )
            .map(drop);
            let inet = rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::DGRAM,
                None,
            )
            .map(drop);
            let pair = rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::STREAM,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .map(drop);
            (unix, inet, pair)
        })
        .join()
        .unwrap();
        assert_eq!(results.0, Err(rustix::io::Errno::PERM));
        assert_eq!(results.1, Ok(()));
        assert_eq!(results.2, Ok(()));
    }
}
