#!/usr/bin/env bash
# The README's test command: installs and starts what the tests need, then runs every test.
#
#   scripts/test.sh                      cargo test --workspace --locked
#   scripts/test.sh -p stakpak-policy    extra arguments go to cargo test (with -p, not
#                                        --workspace, which would test everything)
#   scripts/test.sh --setup              install and start what the tests need, run nothing
#
# Run it from anywhere, as root, on Debian or Ubuntu with a Rust toolchain. It installs the
# missing system packages (apt-get; `apt-get update` only when something is missing) and
# cargo tools, starts dockerd, builds the Docker test image and makes the nspawn root
# filesystem, each only when it is not there yet: a second run goes straight to the tests.
# It uses CARGO_TARGET_DIR when it is set (CI sets /var/cache/stakpak-target).
#
# Not root: it installs, starts and builds nothing. It lists what is missing, each with the
# command that sets it up, and then
#   - with no arguments, stops (status 1) without running anything: the whole suite needs
#     root (the sandbox escape tests, the tests that attach to running daemons or switch to
#     a second uid, the installed-suite test), so it could not pass;
#   - with arguments (a part of the suite), runs that part: tests that need something
#     missing, or root, fail saying so.
set -euo pipefail

# A relative CARGO_TARGET_DIR means the caller's folder, not the clone's.
if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
    export CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."

say() { echo "test.sh: $*" >&2; }

if ! command -v cargo >/dev/null; then
    say "cargo is not on PATH. Install a Rust toolchain (https://rustup.rs); under sudo, keep"
    say "yours: sudo env \"PATH=\$PATH\" \"RUSTUP_HOME=\$HOME/.rustup\" \"CARGO_HOME=\$HOME/.cargo\" scripts/test.sh"
    exit 1
fi

root=0
[[ $(id -u) == 0 ]] && root=1

# System packages, each with the check that tells it is there (a command or a file).
# dbus-daemon: the private bus of the embedded suite and of every integration test.
# gdb: an escape test tries to attach to a process outside the sandbox with it.
# systemd: busctl, used to check the bus from the outside (and from inside a sandbox).
# strace, gcc, libc6-dev: the sandbox escape tests trace a process outside and build a probe
# in C; the Landlock end-to-end test builds its ptrace helper (tests/support/open_inside.c).
# tmux: the TUI's end-to-end test types into the console and reads its screen.
# curl, ca-certificates: the egress test's sandboxed commands call HTTPS origins through the
# warden's proxy, trusting the system roots plus the warden's CA.
# docker.io (dockerd and its CLI), tini (its docker-init), busybox-static (the test image,
# built locally: nothing is pulled) and procps (the engine's `top` runs the host's ps): the
# sandbox's Docker backend tests run against a real engine.
# debootstrap, systemd-container (systemd-nspawn): the installed-suite test
# (tests/tests/installed.rs) boots Debian with systemd as PID 1 and installs the .deb.
# rpm (rpm -qp): the packaging test (tests/tests/packages.rs) reads the .rpm it compares with
# the .deb.
has() { command -v "$1" >/dev/null; }
docker_engine() { has dockerd && has docker; }
static_busybox() { has busybox && ! ldd "$(command -v busybox)" >/dev/null 2>&1; }
missing=()
need() { # need PACKAGE CHECK...
    local pkg=$1
    shift
    "$@" || missing+=("$pkg")
}
need dbus-daemon has dbus-daemon
need gdb has gdb
need systemd has busctl
need strace has strace
need gcc has gcc
need libc6-dev test -f /usr/include/stdio.h
need tmux has tmux
need curl has curl
need ca-certificates test -f /etc/ssl/certs/ca-certificates.crt
need docker.io docker_engine
need tini has docker-init
need busybox-static static_busybox
need procps has ps
need debootstrap has debootstrap
need systemd-container has systemd-nspawn
need rpm has rpm

# What a non-root run does not set up, each with the command that does it.
todo=()
if ((${#missing[@]})); then
    if ((root)) && has apt-get; then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    elif ((root)); then
        say "missing packages and no apt-get here: install ${missing[*]} (Debian names), then run again"
        exit 1
    else
        todo+=("${missing[*]}: sudo apt-get install --no-install-recommends ${missing[*]}")
    fi
fi

# cargo-deb and cargo-generate-rpm make the packages (packaging/build.sh) for the packaging
# and installed-suite tests; they land in ~/.cargo/bin, built only when missing.
tools=()
for tool in cargo-deb cargo-generate-rpm; do
    has "$tool" || tools+=("$tool")
done
if ((${#tools[@]})); then
    if ((root)); then
        say "installing ${tools[*]} (cargo install --locked)"
        cargo install --locked --quiet "${tools[@]}"
    else
        todo+=("${tools[*]}: cargo install --locked ${tools[*]}")
    fi
fi

# The Docker backend tests need a running engine on /var/run/docker.sock and the local test
# image; the installed-suite test needs the root filesystem it boots, made once and cached
# outside the clone (/var/cache/stakpak-nspawn).
if ((root)); then
    bash scripts/start-dockerd.sh
    bash scripts/docker-test-image.sh
    rootfs=$(bash scripts/nspawn-rootfs.sh)
    say "nspawn root: $rootfs"
else
    if ! has docker || ! docker -H unix:///var/run/docker.sock version >/dev/null 2>&1; then
        todo+=("a Docker engine on /var/run/docker.sock: sudo $here/start-dockerd.sh")
    elif ! docker image inspect "${STAKPAK_TEST_IMAGE:-stakpak-sandbox-test:latest}" >/dev/null 2>&1; then
        todo+=("the Docker test image: $here/docker-test-image.sh")
    fi
    # It only prints the path when the root filesystem is there (making it needs root).
    if ! bash scripts/nspawn-rootfs.sh >/dev/null 2>&1; then
        todo+=("the nspawn root filesystem: sudo $here/nspawn-rootfs.sh")
    fi
    if ((${#todo[@]})); then
        say "not root: nothing is installed or started; missing:"
        for t in "${todo[@]}"; do
            say "  - $t"
        done
    fi
    if (($# == 0)); then
        # The command that keeps this user's toolchain (and target folder) under sudo.
        sudo_cmd=(sudo env "PATH=$PATH")
        for var in RUSTUP_HOME CARGO_HOME; do
            dir=${!var:-}
            [[ -z $dir && $var == RUSTUP_HOME ]] && dir=$HOME/.rustup
            [[ -z $dir && $var == CARGO_HOME ]] && dir=$HOME/.cargo
            [[ -d $dir ]] && sudo_cmd+=("$var=$dir")
        done
        [[ -n ${CARGO_TARGET_DIR:-} ]] && sudo_cmd+=("CARGO_TARGET_DIR=$CARGO_TARGET_DIR")
        sudo_cmd+=("$here/test.sh")
        say "not root: the whole suite needs root (the sandbox escape tests, the tests that attach"
        say "to running daemons or switch to a second uid, the installed-suite test). Either run"
        printf -v line '%q ' "${sudo_cmd[@]}"
        say "  $line"
        say "which sets up everything and runs every test (root's build files then land in the"
        say "target folder: set CARGO_TARGET_DIR to keep them apart), or run a part as this user:"
        say "  $here/test.sh -p stakpak-policy"
        exit 1
    fi
    say "not root: running only what was asked; tests that need root or something missing"
    say "fail saying so"
fi

# `--setup`: everything above, no tests (CI lints between the two).
if [[ ${1:-} == --setup ]]; then
    say "set up; no test run"
    exit 0
fi

# --workspace would make cargo ignore -p: give it only when no package is chosen.
scope=(--workspace)
for arg in "$@"; do
    case $arg in
        --) break ;;
        -p | -p* | --package | --package=*) scope=() ;;
    esac
done
exec cargo test ${scope[@]+"${scope[@]}"} --locked "$@"
