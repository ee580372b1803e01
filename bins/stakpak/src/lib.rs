//! The `stakpak` command line: the human's door to the suite.
//!
//! `up`, `down` and `status` manage the embedded suite (or report on the installed one);
//! every other command finds a running suite through [`locate`].

pub mod autopilot;
pub mod changes;
pub mod config;
pub mod doctor;
pub mod locate;
pub mod logs;
pub mod policy;
pub mod run;
pub mod runtime;
pub mod sandbox;
pub mod secret;
pub mod status;
pub mod suite;
pub mod systemd;
pub mod table;
pub mod tui;
pub mod warden;
pub mod wire_arg;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use stakpak_proto::{Backend, CheckKind, NetworkMode};

use crate::suite::{Layout, Options, Placement};

/// stakpak: a DevOps agent that keeps the applications on this server running.
#[derive(Debug, Parser)]
#[command(
    name = "stakpak",
    version,
    about,
    propagate_version = true,
    subcommand_precedence_over_arg = true
)]
pub struct Cli {
    /// Folder of the embedded suite (default: $XDG_RUNTIME_DIR/stakpak).
    #[arg(long, global = true, env = "STAKPAK_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Folder with the configuration files (default: $XDG_CONFIG_HOME/stakpak).
    #[arg(long, global = true, env = "STAKPAK_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Talk to the suite on this D-Bus address instead of finding it.
    #[arg(
        long,
        global = true,
        env = "STAKPAK_BUS_ADDRESS",
        value_name = "ADDRESS"
    )]
    pub bus_address: Option<String>,

    /// A prompt for the agent: run until done (as `stakpak run PROMPT`).
    #[arg(value_name = "PROMPT")]
    pub prompt: Option<String>,

    #[command(flatten)]
    pub run: run::RunArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the suite: a private bus and the five daemons, without installing anything.
    Up {
        /// Stay in the foreground and log to stderr; Ctrl-C stops the suite.
        #[arg(long)]
        foreground: bool,
        /// Seconds every daemon has to become ready.
        #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
        timeout: f64,
        /// Watchdog period given to the daemons (WATCHDOG_USEC): one silent for longer gets
        /// SIGABRT, then SIGKILL one period later, and is restarted.
        #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
        watchdog: f64,
        /// Report readiness as one JSON line on stdout (used by the detached start).
        #[arg(long, hide = true)]
        report_json: bool,
    },
    /// Stop the embedded suite: every daemon, the private bus, and their sockets.
    Down {
        /// Seconds to wait for the suite to stop before killing it.
        #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
        timeout: f64,
    },
    /// Show each daemon's state, pid, version, uptime and sandboxing.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the warden about a command or a file action; list and test the policy packs.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Store, list and delete vault secrets; scan text for credentials.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// The warden's egress proxy: the requests it blocked and inspected.
    #[command(subcommand)]
    Warden(warden::WardenCommand),
    /// Run commands through sandboxd, exactly as the agent does.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Show how a profile of the agent's config.toml resolves; print a sample config.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Give the agent a prompt and follow the session until it stops.
    Run {
        /// What to do.
        prompt: Option<String>,
        #[command(flatten)]
        args: run::RunArgs,
    },
    /// The agent's sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Check that the suite can run here and runs well, with a fix for each problem (exit 1
    /// when a check fails).
    Doctor {
        /// Print JSON: an array of checks with name, status, message and fix.
        #[arg(long)]
        json: bool,
    },
    /// Autopilot: schedules that wake the agent, their runs, the scheduler's status.
    #[command(subcommand)]
    Autopilot(autopilot::AutopilotCommand),
    /// Show the suite's log lines: the journal when installed, the embedded suite's files
    /// otherwise.
    Logs {
        /// Keep printing new lines until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many of the last lines to show.
        #[arg(short = 'n', long = "lines", default_value_t = 50, value_name = "N")]
        lines: usize,
        /// Only this component: agent, warden, secretd, sandboxd, schedd, supervisor or bus.
        #[arg(short = 'c', long, value_name = "COMPONENT")]
        component: Option<String>,
        /// Print JSON (installed: journalctl -o json; embedded: one object a line).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Every session, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a running session (its running tools are cancelled).
    Cancel {
        /// The session id.
        id: String,
    },
    /// A session's messages and tool calls.
    Show {
        /// The session id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// List the file changes of sandboxd's file tools, newest first: id, session, kind,
    /// path, when, reverted.
    Changes {
        /// Only this session's changes.
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Undo one file change: restores the previous bytes and mode, brings back what was
    /// removed, or moves away what was created. Exits 4 when the warden refuses.
    Revert {
        /// The change id, as `stakpak sandbox changes` shows it.
        #[arg(value_name = "CHANGE_ID")]
        change_id: String,
    },
    /// Run a shell command: warden, secretd, the local sandbox, redaction. Exits with the
    /// command's status, 4 when refused, 124 on timeout.
    Exec {
        /// Working directory, relative to the session workspace.
        #[arg(short = 'w', long = "workdir", value_name = "DIR", default_value = "")]
        workdir: String,
        /// `proxied` (own network namespace; only the warden's egress proxy is reachable,
        /// through `HTTPS_PROXY`), `none` (own empty network namespace) or `host`; with the
        /// Docker backend, the container's network (`none`, `host` or `bridge`). Default:
        /// sandboxd's (`proxied` locally), the configured one in Docker.
        #[arg(long, value_parser = wire_arg::parser::<NetworkMode>())]
        network: Option<NetworkMode>,
        /// `local` (Landlock and namespaces) or `docker`; default: sandboxd's configured one.
        #[arg(long, value_parser = wire_arg::parser::<Backend>())]
        backend: Option<Backend>,
        /// Seconds before the command and everything it started are killed.
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        /// Session whose workspace the command runs in.
        #[arg(long, default_value = "cli", value_name = "ID")]
        session: String,
        /// The command (after `--`; several words are joined with spaces, as ssh does).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// List background tasks: id, session, state, exit code, age, output size, command.
    Tasks {
        /// Only this session's tasks.
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret; the value is read from stdin (never from the command line).
    Set {
        /// The secret's name, used as `{{secret:NAME}}`.
        name: String,
        /// Limit the secret to this consumer (repeatable), e.g. `schedd`; default: any.
        #[arg(long = "consumer", value_name = "NAME")]
        consumers: Vec<String>,
        /// Read the value from this file, as it is, instead of stdin.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
    /// List the secrets: names, times and consumers, never values.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret.
    Rm {
        /// The secret's name.
        name: String,
    },
    /// Print a text with every credential the rules find redacted, then a summary (exit 3
    /// when something was found). Runs in this process; no suite needed.
    Scan {
        /// The file to scan; `-` or nothing: stdin.
        file: Option<PathBuf>,
        /// Also redact public IP addresses and AWS account ids.
        #[arg(long)]
        privacy: bool,
        /// Print JSON: the redacted text, each detection and counts by rule.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Judge a command line, a file write or delete, or an HTTP request (exit 0 allow,
    /// 3 ask, 4 deny).
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Evaluate in this process even when a suite is running.
        #[arg(long)]
        local: bool,
        /// Judge writing this file instead of a command.
        #[arg(long, value_name = "PATH", conflicts_with_all = ["delete", "command", "request"])]
        write: Option<String>,
        /// Judge deleting this file instead of a command.
        #[arg(long, value_name = "PATH", conflicts_with_all = ["command", "request"])]
        delete: Option<String>,
        /// Judge an HTTP request through the egress proxy: `METHOD URL`
        /// (e.g. `DELETE https://k8s.example:6443/api/v1/namespaces/prod`).
        #[arg(long, value_name = "METHOD URL", conflicts_with = "command")]
        request: Option<String>,
        /// A header of the request (`Name: value`; repeatable).
        #[arg(long = "header", value_name = "NAME: VALUE", requires = "request")]
        headers: Vec<String>,
        /// The body of the request.
        #[arg(long, value_name = "TEXT", requires = "request")]
        body: Option<String>,
        /// The command line (after `--`; several words are joined with spaces).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Load every pack (which runs their examples), then run corpus files.
    Test {
        /// Extra folders of packs.
        dirs: Vec<PathBuf>,
        /// Corpus files: `[[case]]` tables with `command`, `expected` and optionally `rule`.
        #[arg(long = "corpus", value_name = "FILE")]
        corpora: Vec<PathBuf>,
        /// Leave out the built-in packs.
        #[arg(long)]
        no_builtin: bool,
    },
    /// List every rule with its decision and reason.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Exit code of `status` when a daemon is not running, as `systemctl status` uses.
const EXIT_NOT_RUNNING: u8 = 3;

/// Runs the command line; `main` only maps the result to an exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let placement = Placement {
        state_dir: absolute(cli.state_dir)?,
        config_dir: absolute(cli.config_dir)?,
    };
    let layout = Layout::resolve(&placement)?;
    let bus = cli.bus_address.as_deref();
    let Some(command) = cli.command else {
        // Nothing to run and a person at a terminal: the console.
        if cli.prompt.is_none()
            && cli.run.session.is_none()
            && cli.run.checkpoint.is_none()
            && tui::on_terminal()
        {
            let options = tui::Options {
                bus_address: cli.bus_address.clone(),
                profile: cli.run.profile.clone(),
                model: cli.run.model.clone(),
                // The agent's config.toml: the running suite's (installed: /etc/stakpak).
                agent_config_dir: doctor::agent_config_dir(
                    bus,
                    &layout,
                    placement.config_dir.is_some(),
                ),
            };
            return tui::run(options, &layout);
        }
        run::check(cli.prompt.as_deref(), &cli.run)?;
        return run::run(cli.prompt, &cli.run, bus, &layout);
    };
    match command {
        Command::Run { prompt, args } => {
            run::check(prompt.as_deref(), &args)?;
            run::run(prompt, &args, bus, &layout)
        }
        Command::Sessions(SessionsCommand::List { json }) => run::list(json, bus, &layout),
        Command::Sessions(SessionsCommand::Cancel { id }) => run::cancel(&id, bus, &layout),
        Command::Sessions(SessionsCommand::Show { id, json }) => run::show(&id, json, bus, &layout),
        Command::Up {
            foreground,
            timeout,
            watchdog,
            report_json,
        } => {
            let ready_timeout = seconds(timeout, "--timeout")?;
            if !foreground && systemd::drives(placement.state_dir.is_some()) {
                systemd::up(ready_timeout)?;
                return Ok(ExitCode::SUCCESS);
            }
            if suite::is_running(&layout) {
                println!("stakpak suite already running in {}", layout.root.display());
                return Ok(ExitCode::SUCCESS);
            }
            if foreground {
                init_logging();
                let opts = Options {
                    layout,
                    ready_timeout,
                    watchdog: seconds(watchdog, "--watchdog")?,
                };
                suite::up_foreground(opts, report_json)?;
            } else {
                suite::up_detached(
                    &placement,
                    &layout,
                    ready_timeout,
                    seconds(watchdog, "--watchdog")?,
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Down { timeout } => {
            if systemd::drives(placement.state_dir.is_some()) {
                systemd::down()?;
                return Ok(ExitCode::SUCCESS);
            }
            if suite::down(&layout, seconds(timeout, "--timeout")?)? {
                println!("stakpak suite stopped");
            } else {
                println!("no stakpak suite running in {}", layout.root.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(cmd) => match cmd {
            PolicyCommand::Check {
                json,
                local,
                write,
                delete,
                request,
                headers,
                body,
                command,
            } => {
                let (kind, subject) = match (write, delete, request) {
                    (Some(p), _, _) => (CheckKind::Write, p),
                    (_, Some(p), _) => (CheckKind::Delete, p),
                    (_, _, Some(line)) => (
                        CheckKind::Request,
                        policy::request_subject(&line, &headers, body.as_deref()),
                    ),
                    _ if command.is_empty() => {
                        anyhow::bail!(
                            "nothing to check: give a command after `--`, --write/--delete PATH or --request 'METHOD URL'"
                        )
                    }
                    _ => (CheckKind::Command, command.join(" ")),
                };
                policy::check(
                    kind,
                    &subject,
                    json,
                    local,
                    cli.bus_address.as_deref(),
                    &layout,
                )
            }
            PolicyCommand::Test {
                dirs,
                corpora,
                no_builtin,
            } => policy::test(&layout.config_dir, &dirs, &corpora, !no_builtin),
            PolicyCommand::List { json } => policy::list(&layout.config_dir, json),
        },
        Command::Secret(cmd) => {
            let bus = cli.bus_address.as_deref();
            match cmd {
                SecretCommand::Set {
                    name,
                    consumers,
                    from_file,
                } => {
                    let source = match &from_file {
                        Some(path) => secret::ValueSource::File(path),
                        None => secret::ValueSource::Stdin,
                    };
                    secret::set(&name, consumers, source, bus, &layout)
                }
                SecretCommand::List { json } => secret::list(json, bus, &layout),
                SecretCommand::Rm { name } => secret::remove(&name, bus, &layout),
                SecretCommand::Scan {
                    file,
                    privacy,
                    json,
                } => secret::scan(file.as_deref(), privacy, json),
            }
        }
        Command::Sandbox(SandboxCommand::Tasks { session, json }) => sandbox::tasks(
            session.as_deref().unwrap_or(""),
            json,
            cli.bus_address.as_deref(),
            &layout,
        ),
        Command::Sandbox(SandboxCommand::Changes { session, json }) => changes::list(
            session.as_deref().unwrap_or(""),
            json,
            cli.bus_address.as_deref(),
            &layout,
        ),
        Command::Sandbox(SandboxCommand::Revert { change_id }) => {
            changes::revert(&change_id, cli.bus_address.as_deref(), &layout)
        }
        Command::Sandbox(SandboxCommand::Exec {
            workdir,
            network,
            backend,
            timeout,
            session,
            command,
        }) => {
            let timeout = timeout.map(|t| seconds(t, "--timeout")).transpose()?;
            let args = sandbox::ExecArgs {
                session: &session,
                workdir: &workdir,
                network,
                backend,
                timeout,
                command: command.join(" "),
            };
            sandbox::exec(&args, cli.bus_address.as_deref(), &layout)
        }
        Command::Warden(cmd) => warden::run(cmd, cli.bus_address.as_deref(), &layout),
        Command::Config(cmd) => config::run(cmd, &layout.config_dir),
        Command::Autopilot(cmd) => autopilot::run(cmd, bus, &layout),
        Command::Doctor { json } => {
            let explicit_config = placement.config_dir.is_some();
            doctor::run(json, bus, &layout, explicit_config)
        }
        Command::Logs {
            follow,
            lines,
            component,
            json,
        } => logs::run(
            &logs::LogsArgs {
                follow,
                lines,
                component,
                json,
            },
            &layout,
        ),
        Command::Status { json } => {
            let target = locate::locate(cli.bus_address.as_deref(), &layout)?;
            let runtime = crate::runtime::new()?;
            let mut report = runtime.block_on(status::report(&target))?;
            // Installed: each unit's state as systemd sees it, and its restart count.
            let units = match target {
                locate::Target::System => Some(systemd::unit_states()?),
                _ => None,
            };
            if let Some(units) = &units {
                systemd::merge_restarts(&mut report, units);
            }
            if json {
                let mut value = serde_json::to_value(&report)?;
                if let (Some(units), Some(object)) = (&units, value.as_object_mut()) {
                    object.insert("units".into(), serde_json::to_value(units)?);
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("{}", target.describe());
                print!("{}", status::render_table(&report));
                if let Some(units) = &units {
                    println!();
                    print!("{}", systemd::render_units(units));
                }
            }
            let units_active = units.as_deref().is_none_or(systemd::all_active);
            Ok(if report.all_running() && units_active {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NOT_RUNNING)
            })
        }
    }
}

fn absolute(path: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    path.map(|p| std::path::absolute(&p).with_context(|| format!("bad path {}", p.display())))
        .transpose()
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, got {value}"))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STAKPAK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(rustix::termios::isatty(std::io::stderr()))
        .try_init();
}
