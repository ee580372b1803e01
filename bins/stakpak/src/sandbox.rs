//! `stakpak sandbox`: run a command the way the agent does, through sandboxd.

use std::{io::Write, os::fd::AsFd, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use stakpak_proto::{
    Backend, Decision, ExecRequest, ExecStatus, NetworkMode, Opt, SandboxProxy, TaskInfo, zbus,
};

use crate::{
    locate,
    policy::{EXIT_ASK, EXIT_DENY},
    suite::Layout,
    table::{Column, Table},
};

/// Exit code when the command ran out of time, as `timeout(1)` uses.
pub const EXIT_TIMEOUT: u8 = 124;

/// What `stakpak sandbox exec` sends.
#[derive(Debug)]
pub struct ExecArgs<'a> {
    pub session: &'a str,
    pub workdir: &'a str,
    /// None: sandboxd's default for the backend.
    pub network: Option<NetworkMode>,
    /// None: sandboxd's configured backend.
    pub backend: Option<Backend>,
    pub timeout: Option<Duration>,
    pub command: String,
}

/// `stakpak sandbox exec`: streams the redacted output (sandboxd writes it straight to our
/// stdout and stderr, passed over the bus) and exits with the command's status, 4 when
/// refused, 124 on timeout, 128+N when killed by signal N.
pub fn exec(
    args: &ExecArgs<'_>,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    if args.command.trim().is_empty() {
        bail!("nothing to run: give the command after `--`");
    }
    let target = locate::locate(bus_address, layout)?;
    let runtime = crate::runtime::new()?;
    let request = ExecRequest {
        session: args.session.to_string(),
        command: args.command.clone(),
        workdir: args.workdir.to_string(),
        timeout_ms: args
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        network: Opt::from(args.network),
        backend: Opt::from(args.backend),
        env: Default::default(),
    };
    std::io::stdout().flush()?;
    let out = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate stdout")?;
    let err = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate stderr")?;
    let reply = runtime
        .block_on(async {
            let conn = target.connect().await?;
            let sandbox = SandboxProxy::new(&conn).await?;
            sandbox
                .exec_stream(request, zbus::OwnedFd::from(out), zbus::OwnedFd::from(err))
                .await
                .map_err(anyhow::Error::from)
        })
        .with_context(|| format!("sandboxd of the {} did not run it", target.describe()))?;
    let mut stderr = std::io::stderr().lock();
    let code = match reply.status {
        ExecStatus::Exited => u8::try_from(reply.code).unwrap_or(1),
        ExecStatus::Signaled => u8::try_from(128 + reply.code).unwrap_or(255),
        ExecStatus::TimedOut => {
            writeln!(stderr, "stakpak: timed out")?;
            EXIT_TIMEOUT
        }
        ExecStatus::Denied => {
            writeln!(
                stderr,
                "stakpak: refused ({}{}): {}",
                reply.decision,
                if reply.rule.is_empty() {
                    String::new()
                } else {
                    format!(", rule {}", reply.rule)
                },
                reply.reason
            )?;
            if reply.decision.get() == Some(Decision::Ask) {
                EXIT_ASK
            } else {
                EXIT_DENY
            }
        }
        other @ (ExecStatus::Cancelled | ExecStatus::Running | ExecStatus::Failed) => {
            bail!("sandboxd answered an unknown status {:?}", other.as_str())
        }
    };
    // Output secretd could not redact is withheld; the reason says so.
    if reply.reason.starts_with("output withheld") {
        writeln!(stderr, "stakpak: {}", reply.reason)?;
    }
    Ok(ExitCode::from(code))
}

/// `stakpak sandbox tasks`: background tasks of one session or all.
pub fn tasks(
    session: &str,
    json: bool,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    let target = locate::locate(bus_address, layout)?;
    let runtime = crate::runtime::new()?;
    let tasks = runtime
        .block_on(async {
            let conn = target.connect().await?;
            let sandbox = SandboxProxy::new(&conn).await?;
            sandbox
                .list_tasks(session.to_string())
                .await
                .map_err(anyhow::Error::from)
        })
        .with_context(|| format!("sandboxd of the {} did not answer", target.describe()))?;
    if json {
        let list: Vec<serde_json::Value> = tasks.iter().map(task_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", render_tasks(&tasks, stakpak_util::now_ms()));
    }
    Ok(ExitCode::SUCCESS)
}

fn task_json(t: &TaskInfo) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "session": t.session,
        "command": t.command,
        "state": t.state,
        "code": t.code,
        "started_ms": t.started_ms,
        "ended_ms": t.ended_ms,
        "decision": t.decision,
        "rule": t.rule,
        "reason": t.reason,
        "output_bytes": t.output_bytes,
    })
}

/// `1h2m`, `3m4s`, `5s`.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// The table of `stakpak sandbox tasks`.
pub fn render_tasks(tasks: &[TaskInfo], now_ms: i64) -> String {
    if tasks.is_empty() {
        return "no background tasks\n".into();
    }
    let mut table = Table::new(
        1,
        [
            Column::fixed("ID", 16),
            Column::fixed("SESSION", 12),
            Column::fixed("STATE", 10),
            Column::fixed("CODE", 5).right(),
            Column::fixed("AGE", 7).right(),
            Column::fixed("OUTPUT", 9).right(),
            Column::fit("COMMAND").gap(2),
        ],
    );
    for t in tasks {
        let code = if t.state == ExecStatus::Running {
            "-".to_string()
        } else {
            t.code.to_string()
        };
        table.row([
            t.id.clone(),
            t.session.clone(),
            t.state.to_string(),
            code,
            age(now_ms - t.started_ms),
            t.output_bytes.to_string(),
            t.command.chars().take(60).collect(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_table() {
        assert_eq!(render_tasks(&[], 0), "no background tasks\n");
        let tasks = [
            TaskInfo {
                id: "t-0a1b2c3d4e5f".into(),
                session: "cli".into(),
                command: "sleep 100".into(),
                state: ExecStatus::Running,
                started_ms: 1_000,
                output_bytes: 12,
                ..TaskInfo::default()
            },
            TaskInfo {
                id: "t-ffffffffffff-and-more".into(),
                session: "a-session-id-that-is-long".into(),
                command: "x".repeat(70),
                state: ExecStatus::TimedOut,
                code: 9,
                started_ms: 1_000 - 3_700_000,
                output_bytes: 12_345_678_901,
                ..TaskInfo::default()
            },
        ];
        assert_eq!(
            render_tasks(&tasks, 62_000),
            "ID               SESSION      STATE       CODE     AGE    OUTPUT  COMMAND\n\
             t-0a1b2c3d4e5f   cli          running        -    1m1s        12  sleep 100\n\
             t-ffffffffffff-and-more a-session-id-that-is-long timed-out      9    1h2m 12345678901  xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
        );
    }
}
