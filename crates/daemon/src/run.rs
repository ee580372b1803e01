//! The life of a daemon, from arguments to exit code.

use std::{
    future::Future,
    io,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;
use stakpak_proto::{DaemonState, DaemonStatus, Error as WireError, LandlockStatus};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{error, info, warn};

use crate::{
    BusTarget, ConfigError, Confinement, DaemonArgs, DaemonConfig, LandlockError, LandlockOutcome,
    LogConfig, LogHandle, LoggingError, Notifier, Paths, PathsError,
    bus::{self, NameError},
    control::{ControlEvent, ControlHandle, OwnConnection, ServeContext},
    load_config, logging, watchdog_interval,
};

/// Error type a daemon's own set-up may fail with.
pub type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// A set-up failure only the operator can fix (a missing key, a vault that does not open),
/// for [`Service::serve`] to return: the daemon exits with status 78 like a bad
/// configuration file, so systemd stops restarting it (`RestartPreventExitStatus=78`).
/// The message is printed as it is; it should name the file at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

/// One daemon of the suite.
pub trait Service: 'static {
    /// Which daemon this is: its names, paths and interface.
    const DAEMON: stakpak_proto::Daemon;

    /// Its configuration file's shape.
    type Config: DaemonConfig;

    /// Paths the daemon may touch beyond the system folders; by default its configuration
    /// (read) and its state and runtime folders (write).
    fn confinement(paths: &Paths, _config: &Self::Config) -> Confinement {
        Confinement::for_daemon(&paths.config_dir, &paths.state_dir, &paths.runtime_dir)
    }

    /// Adds the daemon's objects to the connection builder. Runs inside the async runtime,
    /// after the Landlock restriction and before the bus name is requested.
    fn serve(
        ctx: ServeContext<Self::Config>,
        builder: zbus::connection::Builder<'static>,
    ) -> impl Future<Output = Result<zbus::connection::Builder<'static>, ServeError>>;
}

/// A configuration with a `[log]` section and nothing else, for daemons with no settings of
/// their own yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseConfig {
    #[serde(default)]
    pub log: LogConfig,
}

impl DaemonConfig for BaseConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

/// Exit codes, following sysexits(3) where one fits, so that systemd units can stop restarting
/// on a configuration error (`RestartPreventExitStatus=78`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    Ok = 0,
    Failure = 1,
    Unavailable = 69,
    Software = 70,
    CantCreate = 73,
    Config = 78,
}

/// Why a daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Logging(#[from] LoggingError),
    #[error("cannot create {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Landlock(#[from] LandlockError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: BusTarget,
        source: zbus::Error,
    },
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("cannot set up the daemon's objects: {0}")]
    Serve(ServeError),
    #[error(transparent)]
    State(StateError),
    #[error("lost the connection to {0}")]
    LostBus(BusTarget),
}

impl RunError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::Paths(_) | RunError::Config(_) | RunError::State(_) => ExitStatus::Config,
            RunError::CreateDir { .. } => ExitStatus::CantCreate,
            RunError::Connect { .. } | RunError::Name(_) => ExitStatus::Unavailable,
            RunError::Serve(_) => ExitStatus::Software,
            RunError::Logging(_)
            | RunError::Landlock(_)
            | RunError::Runtime(_)
            | RunError::LostBus(_) => ExitStatus::Failure,
        }
    }
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: DaemonArgs,
}

/// Entry point of a daemon binary: parses arguments, runs, maps the outcome to an exit code.
pub fn main<S: Service>() -> ExitCode {
    let daemon = S::DAEMON;
    let command = Cli::command()
        .name(daemon.binary())
        .version(env!("CARGO_PKG_VERSION"))
        .about(format!(
            "stakpak {} daemon, serving {}",
            daemon.short_name(),
            daemon.interface()
        ));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run::<S>(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr reaches the journal (installed) or the supervisor's log (embedded).
            eprintln!("{}: error: {e}", daemon.binary());
            ExitCode::from(e.exit_status() as u8)
        }
    }
}

/// Runs a daemon until SIGTERM/SIGINT or the loss of its bus.
pub fn run<S: Service>(args: DaemonArgs) -> Result<(), RunError> {
    let started = Instant::now();
    let paths = Paths::resolve(S::DAEMON, &args)?;
    let config: S::Config = load_config(&paths.config_file, &paths)?;
    let log = logging::init(S::DAEMON, &config.log().level)?;
    for dir in [&paths.state_dir, &paths.runtime_dir] {
        create_private_dir(dir)?;
    }
    // Two TLS providers compiled in make rustls panic at the first handshake; choosing one
    // here makes the choice explicit. An error means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // Single-threaded still: the restriction covers every thread and child created later.
    let landlock = crate::restrict_self(&S::confinement(&paths, &config))?;
    match landlock.status {
        LandlockStatus::Enforced => info!(abi = landlock.abi, "landlock restriction enforced"),
        other => {
            warn!(abi = landlock.abi, status = %other, "landlock restriction not fully enforced")
        }
    }

    let target = match &args.bus_address {
        Some(a) => BusTarget::Address(a.clone()),
        None => BusTarget::System,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let daemon = Running::<S> {
        started,
        state: DaemonState::Starting,
        landlock,
        paths,
        target,
        log,
        config: watch::channel(Arc::new(config)).0,
        notifier: Notifier::from_env().unwrap_or_else(|e| {
            warn!(error = %e, "NOTIFY_SOCKET is unusable; readiness will not be reported");
            Notifier::from_env_disabled()
        }),
    };
    runtime.block_on(daemon.serve())
}

fn create_private_dir(dir: &Path) -> Result<(), RunError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| RunError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

struct Running<S: Service> {
    started: Instant,
    state: DaemonState,
    landlock: LandlockOutcome,
    paths: Paths,
    target: BusTarget,
    log: LogHandle,
    config: watch::Sender<Arc<S::Config>>,
    notifier: Notifier,
}

impl<S: Service> Running<S> {
    async fn serve(mut self) -> Result<(), RunError> {
        // Handlers first: a SIGTERM that arrives while connecting must stop us cleanly.
        let signals = (|| {
            Ok::<_, io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ))
        })();
        let (mut term, mut int, mut hup) = signals.map_err(RunError::Runtime)?;

        let (tx, mut rx) = mpsc::channel(64);
        let (own_tx, own_connection) = OwnConnection::new();
        let ctx = ServeContext {
            control: ControlHandle::new(tx),
            config: self.config.subscribe(),
            paths: self.paths.clone(),
            own_connection,
        };
        let builder = S::serve(ctx, self.target.builder()).await.map_err(|e| {
            match e.downcast::<StateError>() {
                Ok(state) => RunError::State(*state),
                Err(e) => RunError::Serve(e),
            }
        })?;
        let conn = builder.build().await.map_err(|source| RunError::Connect {
            target: self.target.clone(),
            source,
        })?;
        bus::request_name(&conn, S::DAEMON.bus_name()).await?;
        let _ = own_tx.send(Some(conn.clone()));

        self.state = DaemonState::Running;
        let ready = format!("serving {} on {}", S::DAEMON.bus_name(), self.target);
        info!(
            bus_name = S::DAEMON.bus_name(),
            startup_ms = self.started.elapsed().as_millis() as u64,
            "{ready}"
        );
        self.notify(self.notifier.ready(&ready));

        let mut watchdog = watchdog_interval().map(tokio::time::interval);
        let outcome = {
            let closed = conn.closed();
            tokio::pin!(closed);
            loop {
                tokio::select! {
                    _ = term.recv() => break Ok("SIGTERM"),
                    _ = int.recv() => break Ok("SIGINT"),
                    _ = hup.recv() => {
                        // A failed reload is logged by `reload` itself.
                        let _ = self.reload();
                    }
                    Some(event) = rx.recv() => self.handle(event),
                    _ = &mut closed => break Err(RunError::LostBus(self.target.clone())),
                    _ = tick(&mut watchdog) => self.notify(self.notifier.watchdog()),
                }
            }
        };

        self.state = DaemonState::Stopping;
        self.notify(self.notifier.stopping());
        match &outcome {
            Ok(signal) => info!(signal, "stopping"),
            Err(e) => error!(error = %e, "stopping"),
        }
        if outcome.is_ok() {
            let _ = conn.release_name(S::DAEMON.bus_name()).await;
            // Bounded: a stuck peer must not keep a stopping daemon alive.
            let _ = tokio::time::timeout(Duration::from_millis(500), conn.close()).await;
        }
        outcome.map(|_| ())
    }

    fn handle(&mut self, event: ControlEvent) {
        match event {
            ControlEvent::Status(reply) => {
                let _ = reply.send(self.status());
            }
            ControlEvent::Reload(reply) => {
                let _ = reply.send(
                    self.reload()
                        .map_err(|e| WireError::InvalidConfig(e.to_string())),
                );
            }
        }
    }

    fn status(&self) -> DaemonStatus {
        DaemonStatus {
            daemon: S::DAEMON.binary().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            state: self.state,
            landlock: self.landlock.status,
            landlock_abi: self.landlock.abi,
            config_file: self.paths.config_file.display().to_string(),
        }
    }

    /// Re-reads the configuration file; on any error the running configuration stays.
    fn reload(&mut self) -> Result<(), ConfigError> {
        self.state = DaemonState::Reloading;
        self.notify(self.notifier.reloading());
        let result = load_config::<S::Config>(&self.paths.config_file, &self.paths).map(|config| {
            if let Err(e) = self.log.set_filter(&config.log().level) {
                warn!(error = %e, "log filter unchanged");
            }
            self.config.send_replace(Arc::new(config));
        });
        self.state = DaemonState::Running;
        match &result {
            Ok(()) => {
                info!(config = %self.paths.config_file.display(), "configuration reloaded");
                self.notify(self.notifier.ready("configuration reloaded"));
            }
            Err(e) => {
                warn!(error = %e, "reload failed; keeping the running configuration");
                self.notify(self.notifier.ready(&format!("reload failed: {e}")));
            }
        }
        result
    }

    fn notify(&self, result: io::Result<()>) {
        if let Err(e) = result {
            warn!(error = %e, "cannot notify the service manager");
        }
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
