//! `stakpak secret set|list|rm|scan`: the vault from the command line, and the detector.
//!
//! `set`, `list` and `rm` talk to the running secretd. A value is read from stdin (or a
//! file), never from the command line, where `ps` and shell history would keep it. `scan`
//! runs the same detection rules in this process, so it works without a suite.

use std::{
    collections::BTreeMap,
    io::{BufRead, Read, Write},
    path::Path,
    process::ExitCode,
};

use anyhow::{Context, bail};
use serde::Serialize;
use stakpak_proto::{Error as WireError, SecretsProxy};
use stakpak_secrets::{
    detect::{DetectOptions, Detector},
    placeholder::{SecretString, SessionMap},
    redact::Redactor,
};

use crate::{
    locate,
    status::is_absent,
    suite::Layout,
    table::{Column, Table, utc},
};

/// Exit status of `scan` when it found something.
pub const EXIT_FOUND: u8 = 3;
/// `scan` reads and writes in pieces of this size, so a large file is never held whole.
const SCAN_CHUNK: usize = 64 * 1024;

/// Where `set` takes the value from.
#[derive(Debug, Clone)]
pub enum ValueSource<'a> {
    Stdin,
    File(&'a Path),
}

/// `stakpak secret set NAME [--consumer X]… [--from-file PATH]`.
pub fn set(
    name: &str,
    consumers: Vec<String>,
    source: ValueSource<'_>,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    let value = match source {
        ValueSource::Stdin => read_stdin(name)?,
        ValueSource::File(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            into_secret(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))?
        }
    };
    if value.is_empty() {
        bail!("the value of {name} is empty; nothing was stored");
    }
    call(bus_address, layout, |secrets| async move {
        secrets
            .set(name.to_owned(), value.expose().to_owned(), consumers)
            .await
    })?;
    println!("secret {name} stored");
    Ok(ExitCode::SUCCESS)
}

/// `stakpak secret rm NAME`.
pub fn remove(name: &str, bus_address: Option<&str>, layout: &Layout) -> anyhow::Result<ExitCode> {
    call(bus_address, layout, |secrets| async move {
        secrets.delete(name.to_owned()).await
    })?;
    println!("secret {name} deleted");
    Ok(ExitCode::SUCCESS)
}

/// One row of `stakpak secret list --json`.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    created_unix: u64,
    updated_unix: u64,
    consumers: Vec<String>,
}

/// `stakpak secret list [--json]`.
pub fn list(json: bool, bus_address: Option<&str>, layout: &Layout) -> anyhow::Result<ExitCode> {
    let secrets = call(bus_address, layout, |secrets| async move {
        secrets.list().await
    })?;
    let rows: Vec<Row> = secrets
        .into_iter()
        .map(|s| Row {
            name: s.name,
            created_unix: s.created_unix,
            updated_unix: s.updated_unix,
            consumers: s.consumers,
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_list(&rows));
    Ok(ExitCode::SUCCESS)
}

/// The table of `stakpak secret list`.
fn render_list(rows: &[Row]) -> String {
    let mut table = Table::new(
        2,
        [
            Column::fit("NAME"),
            Column::fixed("CREATED", 20),
            Column::fixed("UPDATED", 20),
            Column::fit("CONSUMERS"),
        ],
    );
    for r in rows {
        let consumers = if r.consumers.is_empty() {
            "(any)".to_owned()
        } else {
            r.consumers.join(",")
        };
        table.row([
            r.name.clone(),
            utc(i64::try_from(r.created_unix).unwrap_or(i64::MAX)),
            utc(i64::try_from(r.updated_unix).unwrap_or(i64::MAX)),
            consumers,
        ]);
    }
    table.render()
}

/// Finds the suite, connects, and runs one call on secretd with errors a person can read.
fn call<T, F, Fut>(bus_address: Option<&str>, layout: &Layout, f: F) -> anyhow::Result<T>
where
    F: FnOnce(SecretsProxy<'static>) -> Fut,
    Fut: std::future::Future<Output = Result<T, WireError>>,
{
    locate::on_bus(bus_address, layout, async |target, conn| {
        let secrets = SecretsProxy::new(conn)
            .await
            .context("cannot reach stakpak-secretd")?;
        f(secrets).await.map_err(|e| {
            crate::locate::daemon_error(e, |e| {
                if is_absent(&e) {
                    anyhow::anyhow!(
                        "stakpak-secretd is not running in the {}",
                        target.describe()
                    )
                } else {
                    anyhow::anyhow!("stakpak-secretd did not answer: {e}")
                }
            })
        })
    })
}

/// Reads the value from stdin: without echo from a terminal (one line), else all of it.
/// One trailing newline is dropped; `echo "$TOKEN" |` adds one.
pub(crate) fn read_stdin(name: &str) -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    let mut bytes = Vec::new();
    if rustix::termios::isatty(&stdin) {
        eprint!("value of {name} (not shown, end with Enter): ");
        let _ = std::io::stderr().flush();
        let saved = rustix::termios::tcgetattr(&stdin).context("cannot read terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
            .context("cannot turn off the terminal's echo")?;
        let read = stdin.lock().read_until(b'\n', &mut bytes);
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
        eprintln!();
        read.context("cannot read the value from the terminal")?;
    } else {
        stdin
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read the value from stdin")?;
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    into_secret(bytes).context("the value on stdin is not UTF-8 text")
}

pub(crate) fn into_secret(bytes: Vec<u8>) -> anyhow::Result<SecretString> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SecretString::new(text)),
        Err(e) => {
            // Zero what was read before giving up on it.
            let mut bytes = e.into_bytes();
            bytes.fill(0);
            bail!("invalid UTF-8")
        }
    }
}

/// What `scan --json` prints.
#[derive(Debug, Serialize)]
struct ScanReport {
    redacted: String,
    detections: Vec<ScanDetection>,
    /// Rule id → how many values it found.
    summary: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
struct ScanDetection {
    rule_id: String,
    placeholder: String,
}

/// `stakpak secret scan [FILE|-] [--privacy] [--json]`: prints the input redacted, then a
/// summary of what was found by rule (on stderr, so stdout is the redacted text alone).
/// Exit status 0 when nothing was found, [`EXIT_FOUND`] when something was.
pub fn scan(input: Option<&Path>, privacy: bool, json: bool) -> anyhow::Result<ExitCode> {
    let detector = Detector::new(DetectOptions { privacy })
        .map_err(|e| anyhow::anyhow!("the detection rules do not load: {e}"))?;
    let mut reader: Box<dyn Read> = match input {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p == Path::new("-") => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
    };
    let name = input.map_or("stdin".into(), |p| p.display().to_string());
    let mut map = SessionMap::new().context("cannot seed placeholders")?;
    let mut stream = Redactor::empty().detecting_stream(detector);
    let mut found = Vec::new();
    let mut redacted = Vec::new();
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; SCAN_CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {name}")),
        };
        let mut out = Vec::new();
        found.extend(stream.push(&buf[..n], &mut map, &mut out));
        emit(json, &mut stdout, &mut redacted, &out)?;
    }
    let mut out = Vec::new();
    found.extend(stream.finish(&mut map, &mut out));
    emit(json, &mut stdout, &mut redacted, &out)?;

    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    for d in &found {
        *summary.entry(d.rule_id.clone()).or_default() += 1;
    }
    if json {
        let report = ScanReport {
            redacted: String::from_utf8_lossy(&redacted).into_owned(),
            detections: found
                .iter()
                .map(|d| ScanDetection {
                    rule_id: d.rule_id.clone(),
                    placeholder: d.placeholder.clone(),
                })
                .collect(),
            summary,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        stdout.flush()?;
        if found.is_empty() {
            eprintln!("{name}: no secrets found");
        } else {
            let noun = if found.len() == 1 {
                "secret"
            } else {
                "secrets"
            };
            eprintln!("{name}: {} {noun} found", found.len());
            for (rule, count) in &summary {
                eprintln!("  {count:>5}  {rule}");
            }
        }
    }
    Ok(if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FOUND)
    })
}

/// Writes redacted output as it comes, or keeps it for the JSON report.
fn emit(json: bool, stdout: &mut impl Write, kept: &mut Vec<u8>, out: &[u8]) -> anyhow::Result<()> {
    if json {
        kept.extend_from_slice(out);
    } else {
        stdout.write_all(out).context("cannot write to stdout")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_table() {
        let rows = [
            Row {
                name: "db".into(),
                created_unix: 1_764_209_645,
                updated_unix: 1_764_209_645,
                consumers: vec![],
            },
            Row {
                name: "slack.bot_token".into(),
                created_unix: 0,
                updated_unix: 951_782_400,
                consumers: vec!["schedd".into(), "agent".into()],
            },
        ];
        assert_eq!(
            render_list(&rows),
            "NAME             CREATED               UPDATED               CONSUMERS\n\
             db               2025-11-27 02:14:05   2025-11-27 02:14:05   (any)\n\
             slack.bot_token  1970-01-01 00:00:00   2000-02-29 00:00:00   schedd,agent\n"
        );
        assert_eq!(
            render_list(&[]),
            "NAME  CREATED               UPDATED               CONSUMERS\n"
        );
    }
}
