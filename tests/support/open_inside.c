/* open_inside PID PATH: makes the running process PID call
 *     openat(AT_FDCWD, PATH, O_WRONLY|O_CREAT, 0600)
 * and prints "<result> <errno>" (result -1 and the errno when the call failed).
 *
 * Why not gdb: an inferior call in gdb 13 saves and restores the whole XSAVE area, and on
 * processors with AMX the kernel refuses gdb's layout ("Couldn't write extended state
 * status"), which leaves the inferior corrupted. This touches only the general registers.
 *
 * How: attach and stop the thread (it sits in a system call, so the two bytes before its
 * instruction pointer are `syscall`), point it back at that instruction with openat's
 * number and arguments (orig_rax -1, so the kernel does not restart the interrupted call),
 * put PATH below the stack's red zone, single-step, read rax, then put every register and
 * the overwritten stack bytes back and detach: the interrupted call restarts as if
 * nothing happened. x86-64 only. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "open_inside: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void wait_stop(pid_t pid) {
    int status;
    if (waitpid(pid, &status, __WALL) < 0) die("waitpid");
    if (!WIFSTOPPED(status)) {
        fprintf(stderr, "open_inside: the process did not stop (status %#x)\n", status);
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc != 3 || strlen(argv[2]) > 1000) {
        fprintf(stderr, "usage: open_inside PID PATH (a path under 1000 bytes)\n");
        return 2;
    }
    pid_t pid = (pid_t)atoi(argv[1]);
    const char *path = argv[2];
    size_t words = (strlen(path) + 1 + 7) / 8;

    if (ptrace(PTRACE_SEIZE, pid, 0, 0) < 0) die("seize");
    if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0) die("interrupt");
    wait_stop(pid);

    struct user_regs_struct saved, regs;
    if (ptrace(PTRACE_GETREGS, pid, 0, &saved) < 0) die("getregs");
    errno = 0;
    long at = ptrace(PTRACE_PEEKTEXT, pid, saved.rip - 2, 0);
    if (errno != 0) die("peek at rip");
    if ((at & 0xffff) != 0x050f) {
        fprintf(stderr, "open_inside: the thread is not stopped in a system call\n");
        return 2;
    }

    /* Below the 128-byte red zone, on pages the thread has already used. */
    uint64_t buf = ((saved.rsp - 256 - words * 8) & ~(uint64_t)15);
    long old[128];
    for (size_t i = 0; i < words; i++) {
        errno = 0;
        old[i] = ptrace(PTRACE_PEEKDATA, pid, buf + i * 8, 0);
        if (errno != 0) die("peek stack");
        long word = 0;
        size_t n = strlen(path) + 1 - i * 8;
        memcpy(&word, path + i * 8, n < 8 ? n : 8);
        if (ptrace(PTRACE_POKEDATA, pid, buf + i * 8, word) < 0) die("poke stack");
    }

    regs = saved;
    regs.rip = saved.rip - 2;
    regs.orig_rax = (uint64_t)-1;
    regs.rax = SYS_openat;
    regs.rdi = (uint64_t)(int64_t)-100; /* AT_FDCWD */
    regs.rsi = buf;
    regs.rdx = 01 | 0100;               /* O_WRONLY | O_CREAT */
    regs.r10 = 0600;
    if (ptrace(PTRACE_SETREGS, pid, 0, &regs) < 0) die("setregs");
    if (ptrace(PTRACE_SINGLESTEP, pid, 0, 0) < 0) die("singlestep");
    wait_stop(pid);
    if (ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0) die("getregs after the call");
    long result = (long)regs.rax;

    for (size_t i = 0; i < words; i++) {
        if (ptrace(PTRACE_POKEDATA, pid, buf + i * 8, old[i]) < 0) die("restore stack");
    }
    if (ptrace(PTRACE_SETREGS, pid, 0, &saved) < 0) die("restore registers");
    if (ptrace(PTRACE_DETACH, pid, 0, 0) < 0) die("detach");

    if (result < 0 && result > -4096) {
        printf("-1 %ld\n", -result);
    } else {
        printf("%ld 0\n", result);
    }
    return 0;
}
