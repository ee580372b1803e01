//! `stakpak-sandboxd`: the only process that executes anything, inside a sandbox.
//!
//! Serves `dev.stakpak.Sandbox1` through the shared daemon runtime of `stakpak-daemon`.
//! `Exec` asks the warden, has secretd resolve placeholders, runs the command with the local
//! sandbox (`stakpak-sandbox`) in `<state>/workspaces/<session>`, or in a container of the
//! Docker backend (`docker.rs`, `[docker]`) with that workspace mounted, and passes its output
//! through secretd's redactor (`exec.rs`).
//!
//! sandboxd restricts itself with Landlock at start-up and its children inherit that domain:
//! they can write only below its state folder, where the workspaces and private tmps live.
//! Mounting is refused inside a Landlock domain, so the sandbox runs with `bind_tmp` off:
//! children find their private tmp through `TMPDIR`, and `/tmp` is read-only to them.

mod changes;
mod config;
mod dbus;
mod docker;
mod egress;
mod error;
mod exec;
mod files;
mod hidden;
mod output;
mod peers;
mod tasks;
mod view;

use stakpak_daemon::{Confinement, Paths, ServeContext, ServeError, Service};
use stakpak_proto::{Daemon, SandboxInterface};

pub use config::{
    Backend, DockerMode, DockerMountConfig, DockerNetworkMode, DockerSection, ExecConfig,
    FilesConfig, LimitsConfig, SandboxdConfig,
};
pub use peers::{RULE_ASK_UNSUPPORTED, RULE_SECRETD_UNAVAILABLE, RULE_WARDEN_UNAVAILABLE};

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct SandboxDaemon;

impl Service for SandboxDaemon {
    const DAEMON: Daemon = Daemon::Sandbox;
    type Config = SandboxdConfig;

    /// Besides the usual folders: write access to `/proc`, because each sandboxed child
    /// writes its own `/proc/self/{setgroups,uid_map,gid_map}` after `unshare(CLONE_NEWUSER)`
    /// and inherits this domain. (Landlock cannot name "every process's own /proc entry";
    /// file permissions still limit which /proc files the daemon's user can write.)
    ///
    /// And the cgroup below which each command gets its pids cgroup: settled here, once,
    /// because this is the last moment before the restriction (see `config.rs`).
    fn confinement(paths: &Paths, config: &SandboxdConfig) -> Confinement {
        let mut confinement =
            Confinement::for_daemon(&paths.config_dir, &paths.state_dir, &paths.runtime_dir);
        // A sandboxed child inherits this domain and, after unsharing its user namespace,
        // writes its own /proc/self/{setgroups,uid_map,gid_map}. Landlock cannot name "your
        // own /proc entry", so all of /proc is writable here and only file permissions narrow
        // it. To tighten: have the parent write the child's maps (then this rule goes).
        confinement.write.push("/proc".into());
        // What commands may read beyond the system folders (a child cannot read more than
        // this domain allows).
        confinement
            .read
            .extend(config.exec.read_paths.iter().cloned());
        // Making and removing one cgroup per command below `runs/`, and writing its limits.
        if let Some(runs) = config.limits.settle_cgroup() {
            confinement.write.push(runs.to_path_buf());
        }
        // `[docker]` adds nothing: up to ABI 7 Landlock has no right for connecting to the
        // engine's named unix socket, and the engine (outside this domain) does the bind
        // mounts of the workspaces (see `config.rs`, "The Docker backend").
        confinement
    }

    async fn serve(
        ctx: ServeContext<SandboxdConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        let audit =
            stakpak_audit::Recorder::start(&ctx.paths.state_dir.join("audit.db"), "sandboxd")?;
        let executor = exec::Executor::new(ctx.paths.state_dir.clone(), ctx.config.clone(), audit);
        let tasks = tasks::Tasks::new(executor.clone());
        let files = files::Files::new(ctx.paths.state_dir.clone(), ctx.config.clone());
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            SandboxInterface(dbus::Handler::new(ctx.control, executor, tasks, files)),
        ))
    }
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<SandboxDaemon>()
}
