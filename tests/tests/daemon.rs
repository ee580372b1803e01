//! One daemon on its own, on a real private bus: bad configuration, reload, and proof that its
//! Landlock restriction is in force inside the running process.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::Path,
    process::{Child, Command},
};

use stakpak_proto::{Daemon, WardenProxy};
use stakpak_testkit::{DaemonDirs, PrivateBus, daemon_command, start_daemon};

fn new_dirs() -> DaemonDirs {
    DaemonDirs::new("stakpak-daemon-")
}

use stakpak_testkit::runtime;

fn stop(mut child: Child) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a SIGTERM stop is a clean exit");
}

#[test]
fn bad_config_file_exits_non_zero_naming_file_and_problem() {
    let bus = PrivateBus::start();
    let cases = [
        ("bogus = 1\n", "unknown field `bogus`"),
        (
            "[log]\nlevel = 3\n",
            "invalid type: integer `3`, expected a string",
        ),
        (
            "[log]\nlevel = \"x=[\"\n",
            "log.level: invalid filter `x=[`",
        ),
        ("[log\n", "unclosed table, expected `]`"),
    ];
    for daemon in Daemon::ALL {
        for (text, problem) in cases {
            let dirs = new_dirs();
            let file = dirs
                .path("config")
                .join(format!("{}.toml", daemon.short_name()));
            std::fs::write(&file, text).unwrap();
            let out = daemon_command(daemon, &bus.address, &dirs)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{daemon} {text:?}: {stderr}");
            let prefix = format!(
                "{}: error: invalid configuration in {}: ",
                daemon.binary(),
                file.display()
            );
            assert!(stderr.starts_with(&prefix), "{daemon} {text:?}: {stderr}");
            assert!(stderr.contains(problem), "{daemon} {text:?}: {stderr}");
        }
    }
}

#[test]
fn second_daemon_of_a_kind_refuses_to_queue_for_the_name() {
    let bus = PrivateBus::start();
    let rt = runtime();
    let dirs = new_dirs();
    let (first, _conn) = start_daemon(Daemon::Secrets, &bus.address, &dirs, &rt);
    let other = new_dirs();
    let out = daemon_command(Daemon::Secrets, &bus.address, &other)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("bus name dev.stakpak.Secrets1 is already owned by another process"),
        "{stderr}"
    );
    stop(first);
}

#[test]
fn reload_applies_a_good_file_and_rejects_a_bad_one_with_a_typed_error() {
    let bus = PrivateBus::start();
    let rt = runtime();
    let dirs = new_dirs();
    let file = dirs.path("config").join("warden.toml");
    std::fs::write(&file, "[log]\nlevel = \"info\"\n").unwrap();
    let (child, conn) = start_daemon(Daemon::Warden, &bus.address, &dirs, &rt);
    let warden = rt.block_on(WardenProxy::new(&conn)).unwrap();

    std::fs::write(&file, "[log]\nlevel = \"debug\"\n").unwrap();
    rt.block_on(warden.reload()).unwrap();

    std::fs::write(&file, "[log]\nlevel = \"debug\"\nsurprise = true\n").unwrap();
    let err = rt.block_on(warden.reload()).unwrap_err();
    match err {
        stakpak_proto::Error::InvalidConfig(msg) => {
            assert!(
                msg.starts_with(&format!("invalid configuration in {}: ", file.display())),
                "{msg}"
            );
            assert!(msg.contains("unknown field `surprise`"), "{msg}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    // Still serving, with the last good configuration.
    let status = rt.block_on(warden.status()).unwrap();
    assert_eq!(status.state.as_str(), "running");
    drop(warden);
    stop(child);
}

/// `tests/support/open_inside.c`, built once with gcc into the target's temporary folder.
fn open_inside_helper() -> &'static Path {
    static HELPER: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    HELPER.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/open_inside.c");
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("open_inside");
        let out = Command::new("gcc")
            .args(["-O1", "-Wall", "-Werror", "-o"])
            .arg(&binary)
            .arg(&source)
            .output()
            .expect("this test needs gcc to build its helper (apt-get install gcc libc6-dev)");
        assert!(
            out.status.success(),
            "gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    })
}

/// Makes the running daemon call `openat(AT_FDCWD, path, O_WRONLY|O_CREAT, 0600)` (through
/// ptrace, `open_inside.c`) and returns (result, errno). This asks the real process, after
/// its own start-up, what it may write; nothing in the daemon was built for the test.
fn open_inside(pid: u32, path: &Path) -> (i64, i64) {
    let out = Command::new(open_inside_helper())
        .arg(pid.to_string())
        .arg(path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let values: Vec<i64> = stdout
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(
        out.status.success() && values.len() == 2,
        "open_inside: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (values[0], values[1])
}

#[test]
fn landlock_keeps_every_running_daemon_inside_its_own_folders() {
    let bus = PrivateBus::start();
    let rt = runtime();
    for daemon in Daemon::ALL {
        let dirs = new_dirs();
        let (child, _conn) = start_daemon(daemon, &bus.address, &dirs, &rt);
        let pid = child.id();
        let outside = [
            dirs.path("elsewhere/planted"),
            dirs.path("config/planted"),
            dirs.root.join("planted"),
            std::env::temp_dir().join(format!("stakpak-planted-{pid}")),
        ];
        for path in &outside {
            let (fd, errno) = open_inside(pid, path);
            assert_eq!(
                (fd, errno),
                (-1, 13),
                "{daemon} could open {}",
                path.display()
            );
            assert!(!path.exists(), "{daemon} created {}", path.display());
        }
        for path in [dirs.path("state/allowed"), dirs.path("run/allowed")] {
            let (fd, _) = open_inside(pid, &path);
            assert!(fd >= 0, "{daemon} could not open {}", path.display());
            assert!(path.exists());
        }
        stop(child);
    }
}
