//! `stakpak sandbox`: run a command the way the agent does, through sandboxd.

use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use stakpak_proto::{ExecRequest, SandboxProxy, exec_status};

use crate::{
    locate,
    policy::{EXIT_ASK, EXIT_DENY},
    suite::Layout,
};

/// Exit code when the command ran out of time, as `timeout(1)` uses.
pub const EXIT_TIMEOUT: u8 = 124;

/// What `stakpak sandbox exec` sends.
#[derive(Debug)]
pub struct ExecArgs<'a> {
    pub session: &'a str,
    pub workdir: &'a str,
    pub network: &'a str,
    pub timeout: Option<Duration>,
    pub command: String,
}

/// `stakpak sandbox exec`: prints the redacted output and exits with the command's status,
/// 4 when refused, 124 on timeout, 128+N when killed by signal N.
pub fn exec(
    args: &ExecArgs<'_>,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    if args.command.trim().is_empty() {
        bail!("nothing to run: give the command after `--`");
    }
    let target = locate::locate(bus_address, layout)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let request = ExecRequest {
        session: args.session.to_string(),
        command: args.command.clone(),
        workdir: args.workdir.to_string(),
        timeout_ms: args
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        network: args.network.to_string(),
    };
    let reply = runtime
        .block_on(async {
            let conn = target.connect().await?;
            let sandbox = SandboxProxy::new(&conn).await?;
            sandbox.exec(request).await.map_err(anyhow::Error::from)
        })
        .with_context(|| format!("sandboxd of the {} did not run it", target.describe()))?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(reply.stdout.as_bytes())?;
    stdout.flush()?;
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(reply.stderr.as_bytes())?;
    if reply.truncated {
        writeln!(stderr, "stakpak: output truncated")?;
    }
    let code = match reply.status.as_str() {
        exec_status::EXITED => u8::try_from(reply.code).unwrap_or(1),
        exec_status::SIGNALED => u8::try_from(128 + reply.code).unwrap_or(255),
        exec_status::TIMED_OUT => {
            writeln!(stderr, "stakpak: timed out")?;
            EXIT_TIMEOUT
        }
        exec_status::DENIED => {
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
            if reply.decision == "ask" {
                EXIT_ASK
            } else {
                EXIT_DENY
            }
        }
        other => bail!("sandboxd answered an unknown status {other:?}"),
    };
    // Output secretd could not redact is withheld; the reason says so.
    if reply.reason.starts_with("output withheld") {
        writeln!(stderr, "stakpak: {}", reply.reason)?;
    }
    Ok(ExitCode::from(code))
}
