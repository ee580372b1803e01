#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The sandbox run from a caller that is itself Landlock-restricted, as sandboxd is: the
//! kernel refuses mount(2) inside a Landlock domain, so the private-/tmp bind mount fails,
//! and with `bind_tmp` off the child runs with `TMPDIR` and a read-only `/tmp`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use stakpak_sandbox::{Command, ExitKind, Limits, Network, Sandbox, SandboxConfig, SandboxError};

mod support;
use support::restrict_like_sandboxd;

fn config(base: &Path, bind_tmp: bool) -> SandboxConfig {
    SandboxConfig {
        workspace: base.join("workspace"),
        tmp: base.join("tmp"),
        bind_tmp,
        network: Network::None,
        limits: Limits::default(),
        run_as: None,
        require_landlock: true,
        pids_cgroup: None,
        output_cap: 4096,
        read_roots: Vec::new(),
        hidden: Vec::new(),
        proxy: None,
    }
}

#[test]
fn private_tmp_mount_is_refused_under_landlock_and_tmpdir_works() {
    // Not below /tmp: the bound run would refuse the workspace before trying the mount.
    let base = support::sandbox_dir();
    let path = base.path().to_path_buf();
    // Landlock below ABI 8 restricts only the calling thread: do it on a thread of its own.
    std::thread::spawn(move || {
        restrict_like_sandboxd(&path);
        let cmd = Command {
            shell: r#"touch "$TMPDIR/x" && echo tmpdir-ok; (echo x > /tmp/stakpak-sandbox-probe-$$) 2>/dev/null || echo tmp-ro"#
                .into(),
            env: BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]),
            cwd: None,
            timeout: Duration::from_secs(10),
        };

        let bound = Sandbox::new(config(&path, true)).unwrap();
        match bound.run(&cmd) {
            Err(SandboxError::Spawn(e)) => {
                assert_eq!(e.raw_os_error(), Some(EPERM), "{e}");
            }
            other => panic!("mount under landlock should fail with EPERM, got {other:?}"),
        }

        let unbound = Sandbox::new(config(&path, false)).unwrap();
        let out = unbound.run(&cmd).unwrap();
        assert_eq!(out.status, ExitKind::Exited(0), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "tmpdir-ok\ntmp-ro\n",
            "{out:?}"
        );
        assert!(path.join("tmp/x").exists());
    })
    .join()
    .unwrap();
}

/// `EPERM`, what mount(2) returns inside a Landlock domain.
const EPERM: i32 = 1;
