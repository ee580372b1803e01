//! How long `true` takes through the whole path, next to what else could run it.
//!
//! ```text
//! cargo bench -p stakpak-e2e --bench sandbox_path      # or scripts/bench-sandbox.sh
//! BENCH_RUNS=500 DOCKER_RUNS=30 cargo bench -p stakpak-e2e --bench sandbox_path
//! ```
//!
//! Rows, each `true` run `BENCH_RUNS` times after a warm-up, timed one by one:
//! - `whole path`: `Sandbox1.Exec` over the embedded suite's bus: sandboxd asks warden,
//!   secretd resolves, the local sandbox runs it, the result comes back (release binaries);
//! - `local sandbox`: the same sandbox (`stakpak_sandbox::Sandbox::run`) in this process;
//! - `sh -c true`: a bare spawn;
//! - `bwrap`: bubblewrap with its own namespaces (Debian package bubblewrap);
//! - `docker run --rm`: the local test image (scripts/docker-test-image.sh), `DOCKER_RUNS`.
//!
//! Targets (issue 5): whole path under 10 ms median; local sandbox within 3x of a bare spawn.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use stakpak_proto::{ExecRequest, SandboxProxy};
use stakpak_testkit::EmbeddedSuite;

const DOCKER_IMAGE: &str = "stakpak-sandbox-test:latest";

fn runs(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Row {
    name: &'static str,
    times: Vec<Duration>,
}

impl Row {
    fn quantile(&self, q: f64) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        let i = ((t.len() as f64 - 1.0) * q).round() as usize;
        t[i]
    }
}

fn time(n: usize, warmup: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..warmup {
        f();
    }
    (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect()
}

fn status_ok(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let n = runs("BENCH_RUNS", 300);
    let docker_n = runs("DOCKER_RUNS", 20);
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    // The whole path over the bus.
    let suite = EmbeddedSuite::builder().start();
    let rt = stakpak_testkit::runtime();
    let conn = stakpak_testkit::connect(&rt, &suite.bus_address());
    let proxy = rt.block_on(SandboxProxy::new(&conn)).unwrap();
    let request = ExecRequest {
        session: "bench".into(),
        command: "true".into(),
        network: "none".parse().unwrap(),
        ..ExecRequest::default()
    };
    let times = time(n, 20, || {
        let reply = rt.block_on(proxy.exec(request.clone())).unwrap();
        assert_eq!(
            (reply.status.as_str(), reply.code),
            ("exited", 0),
            "{reply:?}"
        );
    });
    rows.push(Row {
        name: "whole path (D-Bus → sandboxd → warden → secretd → sandbox)",
        times,
    });

    // The local sandbox alone, as sandboxd configures it.
    let dir = tempfile::Builder::new()
        .prefix("stakpak-bench-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let (workspace, tmp) = (dir.path().join("w"), dir.path().join("t"));
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let sandbox = stakpak_sandbox::Sandbox::new(stakpak_sandbox::SandboxConfig {
        workspace,
        tmp,
        bind_tmp: false,
        network: stakpak_sandbox::Network::None,
        limits: stakpak_sandbox::Limits {
            memory_bytes: Some(1 << 30),
            pids: Some(256),
            cpu_secs: Some(600),
            nofile: Some(1024),
        },
        run_as: None,
        require_landlock: true,
        pids_cgroup: None,
        output_cap: 1 << 20,
        read_roots: Vec::new(),
        hidden: Vec::new(),
        proxy: None,
    })
    .unwrap();
    let command = stakpak_sandbox::Command {
        shell: "true".into(),
        env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
        cwd: None,
        timeout: Duration::from_secs(10),
    };
    let times = time(n, 20, || {
        let out = sandbox.run(&command).unwrap();
        assert_eq!(out.status, stakpak_sandbox::ExitKind::Exited(0));
    });
    rows.push(Row {
        name: "local sandbox alone (Landlock, namespaces, seccomp, rlimits)",
        times,
    });

    let times = time(n, 20, || {
        assert!(status_ok(Command::new("sh").args(["-c", "true"])));
    });
    rows.push(Row {
        name: "bare spawn: sh -c true",
        times,
    });

    if status_ok(Command::new("bwrap").args(["--ro-bind", "/", "/", "true"])) {
        let times = time(n, 20, || {
            assert!(status_ok(Command::new("bwrap").args([
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--tmpfs",
                "/tmp",
                "--unshare-all",
                "--die-with-parent",
                "sh",
                "-c",
                "true",
            ])));
        });
        rows.push(Row {
            name: "bwrap --unshare-all sh -c true",
            times,
        });
    } else {
        notes.push("bwrap: not runnable here (apt-get install bubblewrap)".to_string());
    }

    if status_ok(Command::new("docker").args(["image", "inspect", DOCKER_IMAGE])) {
        let times = time(docker_n, 2, || {
            assert!(status_ok(Command::new("docker").args([
                "run",
                "--rm",
                "--network",
                "none",
                DOCKER_IMAGE,
                "sh",
                "-c",
                "true",
            ])));
        });
        rows.push(Row {
            name: "docker run --rm (local image) sh -c true",
            times,
        });
    } else {
        notes.push(format!(
            "docker: engine or image {DOCKER_IMAGE} missing (scripts/start-dockerd.sh, scripts/docker-test-image.sh)"
        ));
    }

    let bare = rows
        .iter()
        .find(|r| r.name.starts_with("bare"))
        .map(|r| r.quantile(0.5))
        .unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<64} {:>5} {:>10} {:>10} {:>8}",
        "`true` through", "runs", "median ms", "p99 ms", "× bare"
    );
    for row in &rows {
        let median = row.quantile(0.5);
        println!(
            "{:<64} {:>5} {:>10.3} {:>10.3} {:>8.2}",
            row.name,
            row.times.len(),
            ms(median),
            ms(row.quantile(0.99)),
            median.as_secs_f64() / bare.as_secs_f64()
        );
    }
    for note in notes {
        println!("{note}");
    }
    println!("targets: whole path median < 10 ms; local sandbox median < 3 × bare spawn");
}
