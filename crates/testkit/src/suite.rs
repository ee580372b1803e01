//! An embedded suite in a temporary folder, started with the real `stakpak up`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{Output, ProcessInfo, bin, processes_named, wait_until};

/// Configuration for [`EmbeddedSuite`].
#[derive(Debug, Default)]
pub struct SuiteBuilder {
    files: Vec<(String, String)>,
    timeout_secs: Option<f64>,
    watchdog_secs: Option<f64>,
}

impl SuiteBuilder {
    /// Writes `text` to `<config-dir>/<name>` before the suite starts.
    pub fn config_file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.to_string(), text.to_string()));
        self
    }

    /// Readiness timeout passed to `stakpak up --timeout`.
    pub fn ready_timeout(mut self, secs: f64) -> Self {
        self.timeout_secs = Some(secs);
        self
    }

    /// Watchdog period passed to `stakpak up --watchdog`.
    pub fn watchdog(mut self, secs: f64) -> Self {
        self.watchdog_secs = Some(secs);
        self
    }

    /// Runs `stakpak up`; returns the suite (running or not) and what `up` printed.
    pub fn try_start(self) -> (EmbeddedSuite, Output) {
        let dir = tempfile::Builder::new()
            .prefix("stakpak-suite-")
            .tempdir()
            .unwrap();
        let suite = EmbeddedSuite {
            state_dir: dir.path().join("s"),
            config_dir: dir.path().join("config"),
            dir,
        };
        std::fs::create_dir_all(&suite.config_dir).unwrap();
        for (name, text) in &self.files {
            std::fs::write(suite.config_dir.join(name), text).unwrap();
        }
        let mut args = vec!["up".to_string()];
        if let Some(t) = self.timeout_secs {
            args.push("--timeout".into());
            args.push(t.to_string());
        }
        if let Some(w) = self.watchdog_secs {
            args.push("--watchdog".into());
            args.push(w.to_string());
        }
        let out = suite.stakpak(&args.iter().map(String::as_str).collect::<Vec<_>>());
        (suite, out)
    }

    /// Runs `stakpak up` and panics unless the suite came up.
    pub fn start(self) -> EmbeddedSuite {
        let (suite, out) = self.try_start();
        assert_eq!(out.code, Some(0), "stakpak up failed: {out:?}");
        suite
    }
}

/// A suite started by `stakpak up --state-dir <tmp>`; stopped (and, failing that, killed)
/// on drop so that a failed test leaves no process behind.
#[derive(Debug)]
pub struct EmbeddedSuite {
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub config_dir: PathBuf,
}

impl EmbeddedSuite {
    pub fn builder() -> SuiteBuilder {
        SuiteBuilder::default()
    }

    /// Runs the real `stakpak` CLI against this suite.
    pub fn stakpak(&self, args: &[&str]) -> Output {
        self.stakpak_command(args).output().unwrap().into()
    }

    /// The `stakpak` command with this suite's folders, for callers that need more control.
    pub fn stakpak_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("stakpak"));
        cmd.arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--config-dir")
            .arg(&self.config_dir)
            .args(args)
            .env_remove("STAKPAK_BUS_ADDRESS")
            .env_remove("STAKPAK_STATE_DIR")
            .env_remove("STAKPAK_CONFIG_DIR");
        cmd
    }

    /// Runs `stakpak ARGS` with `stdin` written to its standard input (values and tokens
    /// go there, as users give them).
    pub fn stakpak_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .stakpak_command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().into()
    }

    /// Stores a secret through `stakpak secret set NAME` (value on stdin, as users do).
    pub fn set_secret(&self, name: &str, value: &str) {
        let out = self.stakpak_with_stdin(&["secret", "set", name], value);
        assert!(out.code == Some(0), "stakpak secret set {name}: {out:?}");
    }

    /// Sends SIGKILL to the running `binary` of the suite (the supervisor restarts it);
    /// returns the pid it had.
    pub fn kill_9(&self, binary: &str) -> u32 {
        let pid = self
            .pid_of(binary)
            .unwrap_or_else(|| panic!("{binary} is not running"));
        let pid_t = i32::try_from(pid).unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid_t).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        pid
    }

    /// `stakpak status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.stakpak(&["status", "--json"]);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out:?}"))
    }

    pub fn bus_socket(&self) -> PathBuf {
        self.state_dir.join("bus.sock")
    }

    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.bus_socket().display())
    }

    pub fn log_file(&self, name: &str) -> PathBuf {
        self.state_dir.join("logs").join(format!("{name}.log"))
    }

    /// Every live process that belongs to this suite (supervisor, bus, daemons).
    pub fn processes(&self) -> Vec<ProcessInfo> {
        processes_named(self.state_dir.to_str().unwrap())
    }

    /// `stakpak autopilot schedule add NAME --cron CRON --prompt PROMPT EXTRA…`.
    pub fn add_schedule(&self, name: &str, cron: &str, prompt: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "autopilot",
            "schedule",
            "add",
            name,
            "--cron",
            cron,
            "--prompt",
            prompt,
        ];
        args.extend_from_slice(extra);
        self.stakpak(&args)
    }

    /// A daemon's row of `stakpak status --json`.
    pub fn daemon_status(&self, binary: &str) -> Option<serde_json::Value> {
        let status = self.status();
        status["daemons"]
            .as_array()?
            .iter()
            .find(|d| d["daemon"] == binary)
            .cloned()
    }

    /// Pid of a daemon as `stakpak status` reports it.
    pub fn pid_of(&self, binary: &str) -> Option<u32> {
        self.daemon_status(binary)?["pid"]
            .as_u64()
            .map(|p| p as u32)
    }

    /// The workspace sandboxd keeps for `session`.
    pub fn workspace(&self, session: &str) -> PathBuf {
        self.state_dir
            .join("state/sandboxd/workspaces")
            .join(session)
    }

    pub fn down(&self) -> Output {
        self.stakpak(&["down"])
    }

    pub fn root(&self) -> &Path {
        &self.state_dir
    }
}

impl Drop for EmbeddedSuite {
    fn drop(&mut self) {
        if self.state_dir.join("supervisor.lock").exists() {
            let _ = self.down();
        }
        let leftover = wait_until(Duration::from_secs(2), || {
            let p = self.processes();
            p.is_empty().then_some(())
        });
        if leftover.is_none() {
            for p in self.processes() {
                if let Some(pid) = rustix::process::Pid::from_raw(p.pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }
}
