//! `stakpak warden logs`: the requests the warden's egress proxy blocked or inspected, read
//! from its audit trail through `Warden1.RequestLog`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use stakpak_proto::{RequestLogEntry, RequestLogQuery, WardenProxy};

use crate::{locate, suite::Layout, table};

#[derive(Debug, Subcommand)]
pub enum WardenCommand {
    /// Requests through the egress proxy: blocked ones, and inspected ones unless
    /// --blocked-only; oldest first.
    Logs {
        /// Only requests and connections that were refused.
        #[arg(long)]
        blocked_only: bool,
        /// Also the reason, the operation, headers (credentials masked) and bodies
        /// (redacted) when `[proxy] detail` recorded them.
        #[arg(long)]
        detailed: bool,
        /// How many of the newest to show.
        #[arg(short = 'n', long = "lines", default_value_t = 50, value_name = "N")]
        lines: u32,
        /// Print JSON: an array of entries.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(
    cmd: WardenCommand,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    match cmd {
        WardenCommand::Logs {
            blocked_only,
            detailed,
            lines,
            json,
        } => logs(
            &RequestLogQuery {
                blocked_only,
                detailed,
                limit: lines.max(1),
            },
            json,
            bus_address,
            layout,
        ),
    }
}

fn logs(
    query: &RequestLogQuery,
    json: bool,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    let entries = locate::on_bus(bus_address, layout, async |_, conn| {
        let warden = WardenProxy::new(conn)
            .await
            .context("cannot reach stakpak-warden")?;
        warden.request_log(query.clone()).await.map_err(|e| {
            crate::locate::daemon_error(e, |e| {
                anyhow::anyhow!("stakpak-warden did not answer: {e}")
            })
        })
    })?;
    if json {
        let values: Vec<serde_json::Value> = entries.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&values)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in &entries {
        print!("{}", render(e, query.detailed));
    }
    Ok(ExitCode::SUCCESS)
}

fn target(e: &RequestLogEntry) -> String {
    let default = matches!((e.scheme.as_str(), e.port), ("https", 443) | ("http", 80));
    let host = if e.host.contains(':') {
        format!("[{}]", e.host)
    } else {
        e.host.clone()
    };
    match (default, e.method.as_str()) {
        (_, "CONNECT") => format!("CONNECT {host}:{}", e.port),
        (true, _) => format!("{} {}://{host}{}", e.method, e.scheme, e.path),
        (false, _) => format!("{} {}://{host}:{}{}", e.method, e.scheme, e.port, e.path),
    }
}

/// One entry: a line, and with `detailed` the reason, operation and recorded detail below.
fn render(e: &RequestLogEntry, detailed: bool) -> String {
    let rule = if e.rule.is_empty() {
        "-"
    } else {
        e.rule.as_str()
    };
    let mut out = format!(
        "{}  {}  {}  {}  {}\n",
        table::utc_ms(e.ts_ms),
        table::pad(e.outcome.as_str(), 9),
        e.status,
        target(e),
        rule
    );
    if detailed {
        out.push_str(&format!(
            "    decision: {}  reason: {}\n",
            e.decision, e.reason
        ));
        out.push_str(&format!(
            "    operation: {}  session: {}  duration: {} ms\n",
            e.operation,
            if e.session.is_empty() {
                "-"
            } else {
                &e.session
            },
            e.duration_ms
        ));
        if let Ok(serde_json::Value::Object(d)) = serde_json::from_str(&e.detail) {
            for (key, label) in [
                ("request_headers", "request header"),
                ("response_headers", "response header"),
            ] {
                for pair in d.get(key).and_then(|v| v.as_array()).into_iter().flatten() {
                    if let Some([k, v]) = pair.as_array().map(Vec::as_slice) {
                        out.push_str(&format!(
                            "    {label}: {}: {}\n",
                            k.as_str().unwrap_or(""),
                            v.as_str().unwrap_or("")
                        ));
                    }
                }
            }
            for (key, label) in [
                ("request_body", "request body"),
                ("response_body", "response body"),
            ] {
                if let Some(body) = d
                    .get(key)
                    .and_then(|v| v.as_str())
                    .filter(|b| !b.is_empty())
                {
                    out.push_str(&format!("    {label}: {body}\n"));
                }
            }
        }
    }
    out
}

fn to_json(e: &RequestLogEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq,
        "ts_ms": e.ts_ms,
        "outcome": e.outcome,
        "decision": e.decision,
        "rule": e.rule,
        "reason": e.reason,
        "method": e.method,
        "scheme": e.scheme,
        "host": e.host,
        "port": e.port,
        "path": e.path,
        "operation": e.operation,
        "status": e.status,
        "duration_ms": e.duration_ms,
        "session": e.session,
        "detail": serde_json::from_str::<serde_json::Value>(&e.detail).unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use stakpak_proto::{Decision, RequestOutcome};

    use super::*;

    #[test]
    fn entries_render_as_lines_and_details() {
        let e = RequestLogEntry {
            seq: 3,
            ts_ms: 1_764_225_000_000,
            outcome: RequestOutcome::Blocked,
            decision: Decision::Deny.into(),
            rule: "k8s-api.delete-namespace".into(),
            reason: "no".into(),
            method: "DELETE".into(),
            scheme: "https".into(),
            host: "kube.test".into(),
            port: 6443,
            path: "/api/v1/namespaces/prod".into(),
            operation: "k8s:delete:namespaces".into(),
            status: 403,
            duration_ms: 1,
            session: "s1".into(),
            detail: r#"{"request_headers":[["authorization","[masked]"]],"request_body":"{{secret:X}}","response_headers":[],"response_body":""}"#.into(),
        };
        assert_eq!(
            render(&e, false),
            "2025-11-27 06:30:00  blocked    403  DELETE https://kube.test:6443/api/v1/namespaces/prod  k8s-api.delete-namespace\n"
        );
        assert_eq!(
            render(&e, true),
            "2025-11-27 06:30:00  blocked    403  DELETE https://kube.test:6443/api/v1/namespaces/prod  k8s-api.delete-namespace\n\
             \x20   decision: deny  reason: no\n\
             \x20   operation: k8s:delete:namespaces  session: s1  duration: 1 ms\n\
             \x20   request header: authorization: [masked]\n\
             \x20   request body: {{secret:X}}\n"
        );
        let connect = RequestLogEntry {
            method: "CONNECT".into(),
            port: 443,
            path: String::new(),
            ..e
        };
        assert_eq!(target(&connect), "CONNECT kube.test:443");
    }
}
