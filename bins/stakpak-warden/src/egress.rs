//! The warden's egress proxy (`crates/egress`) wired to the daemon: the `[proxy]` section of
//! `warden.toml`, the judge (the request rules of the policy in force), the listeners, and
//! the consumer of the proxy's events, which logs them, redacts detailed bodies through
//! secretd and appends them to the audit trail. Also reads them back for `RequestLog`.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use serde_json::{Value, json};
use stakpak_audit::Recorder;
use stakpak_daemon::OwnConnection;
use stakpak_egress::{Event, Judge, Judgement, Outcome, RequestView};
use stakpak_policy::{Action, Decision, HttpRequest, request::operation};
use stakpak_proto::{Error, RequestLogEntry, RequestLogQuery, SecretsProxy};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::config::WardenConfig;
use crate::wire::wire_decision;

/// The unix socket in the runtime folder that sandboxd relays sandbox connections to.
pub const SOCKET: &str = "proxy.sock";
/// The CA's folder in the state folder.
pub const CA_DIR: &str = "egress";

/// Judges requests with the request rules of the policy in force.
#[derive(Debug)]
pub(crate) struct PolicyJudge {
    config: watch::Receiver<Arc<WardenConfig>>,
}

impl PolicyJudge {
    pub(crate) fn new(config: watch::Receiver<Arc<WardenConfig>>) -> Self {
        PolicyJudge { config }
    }
}

impl Judge for PolicyJudge {
    fn judge(&self, r: &RequestView<'_>) -> Judgement {
        let request = HttpRequest {
            method: r.method.to_string(),
            scheme: r.scheme.to_string(),
            host: r.host.to_string(),
            port: r.port,
            path: r.path.to_string(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: r.body.to_vec(),
        };
        let op = operation(&request).name;
        let Some(policy) = self.config.borrow().loaded.clone() else {
            // No policy: nothing passes.
            return Judgement {
                allow: false,
                decision: stakpak_proto::Decision::Deny,
                rule: "builtin.no-policy".into(),
                reason: "no policy is loaded".into(),
                operation: op,
            };
        };
        let v = policy.check(&Action::Request(request));
        let reason = match v.decision {
            // A request cannot wait for a human; ask is a refusal here.
            Decision::Ask => format!(
                "{} (needs approval, which a request cannot wait for)",
                v.reason
            ),
            _ => v.reason,
        };
        Judgement {
            allow: v.decision == Decision::Allow,
            decision: wire_decision(v.decision),
            rule: v.rule.unwrap_or_default(),
            reason,
            operation: op,
        }
    }
}

/// Logs, redacts and records the proxy's events until the proxy is gone.
pub(crate) async fn record_events(
    mut events: mpsc::UnboundedReceiver<Event>,
    audit: Option<Recorder>,
    own: OwnConnection,
) {
    let mut secrets: Option<SecretsProxy<'static>> = None;
    while let Some(e) = events.recv().await {
        let target = format!(
            "{} {}://{}:{}{}",
            e.method, e.scheme, e.host, e.port, e.path
        );
        match e.outcome {
            Outcome::Blocked => warn!(
                decision = %e.decision,
                rule = %e.rule,
                action = %target,
                operation = %e.operation,
                session = %e.session,
                status = e.status,
                "request blocked: {}",
                e.reason
            ),
            Outcome::Inspected => debug!(
                action = %target,
                operation = %e.operation,
                session = %e.session,
                status = e.status,
                "request inspected"
            ),
        }
        let Some(audit) = &audit else { continue };
        let mut fields: BTreeMap<String, Value> = [
            ("outcome", json!(e.outcome.as_str())),
            ("decision", json!(e.decision)),
            ("rule", json!(e.rule)),
            ("reason", json!(e.reason)),
            ("method", json!(e.method)),
            ("scheme", json!(e.scheme)),
            ("host", json!(e.host)),
            ("port", json!(e.port)),
            ("path", json!(e.path)),
            ("operation", json!(e.operation)),
            ("status", json!(e.status)),
            ("duration_ms", json!(e.duration.as_millis() as u64)),
            ("session", json!(e.session)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(d) = &e.detail {
            if secrets.is_none() {
                secrets = secrets_proxy(&own).await;
            }
            let request_body = redact(secrets.as_ref(), &e.session, &d.request_body).await;
            let response_body = redact(secrets.as_ref(), &e.session, &d.response_body).await;
            fields.insert(
                "detail".into(),
                json!({
                    "request_headers": d.request_headers,
                    "request_body": request_body,
                    "response_headers": d.response_headers,
                    "response_body": response_body,
                }),
            );
        }
        audit.record("request", fields);
    }
}

async fn secrets_proxy(own: &OwnConnection) -> Option<SecretsProxy<'static>> {
    let conn = own.get().await?;
    SecretsProxy::new(&conn).await.ok()
}

/// A body through secretd's redactor; withheld when it cannot be redacted.
async fn redact(secrets: Option<&SecretsProxy<'static>>, session: &str, body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let Some(secrets) = secrets else {
        return "[withheld: secretd is not reachable to redact it]".into();
    };
    let call = secrets.redact(session.to_string(), text);
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(reply)) => reply.redacted,
        Ok(Err(e)) => {
            warn!(error = %e, "cannot redact a request body; it is withheld");
            "[withheld: secretd could not redact it]".into()
        }
        Err(_) => "[withheld: secretd did not answer in time]".into(),
    }
}

/// The newest recorded requests of `audit.db`, oldest first.
pub(crate) fn read_log(db: &Path, query: &RequestLogQuery) -> Result<Vec<RequestLogEntry>, Error> {
    use rusqlite::{Connection, OpenFlags};
    if !db.exists() {
        return Ok(Vec::new());
    }
    let err = |e: rusqlite::Error| Error::Internal(format!("{}: {e}", db.display()));
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    let limit = if query.limit == 0 { 100 } else { query.limit };
    let filter = if query.blocked_only {
        " AND json_extract(fields, '$.outcome') = 'blocked'"
    } else {
        ""
    };
    let sql = format!(
        "SELECT seq, ts_ms, fields FROM audit WHERE source = 'warden' AND kind = 'request'{filter} \
         ORDER BY seq DESC LIMIT ?1"
    );
    let mut stmt = conn.prepare(&sql).map_err(err)?;
    let rows = stmt
        .query_map([i64::from(limit)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .map_err(err)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, ts_ms, fields) = row.map_err(err)?;
        let f: Value = serde_json::from_str(&fields)
            .map_err(|e| Error::Internal(format!("audit row {seq}: {e}")))?;
        let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let bad_row =
            |e: stakpak_proto::UnknownValue| Error::Internal(format!("audit row {seq}: {e}"));
        let n = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
        out.push(RequestLogEntry {
            seq: u64::try_from(seq).unwrap_or(0),
            ts_ms,
            outcome: s("outcome").parse().map_err(bad_row)?,
            decision: s("decision").parse().map_err(bad_row)?,
            rule: s("rule"),
            reason: s("reason"),
            method: s("method"),
            scheme: s("scheme"),
            host: s("host"),
            port: u16::try_from(n("port")).unwrap_or(0),
            path: s("path"),
            operation: s("operation"),
            status: u16::try_from(n("status")).unwrap_or(0),
            duration_ms: n("duration_ms"),
            session: s("session"),
            detail: match (query.detailed, f.get("detail")) {
                (true, Some(d)) => d.to_string(),
                _ => String::new(),
            },
        });
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_judge_refuses_ask_and_everything_without_a_policy() {
        let pack = stakpak_policy::parse_pack(
            "t.toml",
            "[pack]\nid = \"t\"\n[[request]]\nid = \"t.ask-delete\"\ndecision = \"ask\"\nreason = \"deletes need a human\"\nmatch = { methods = [\"DELETE\"] }\nexamples.match = [\"DELETE https://x.test/a\"]\n",
        )
        .unwrap();
        let policy =
            stakpak_policy::Policy::new(vec![pack], stakpak_policy::Settings::default()).unwrap();
        let headers = http::HeaderMap::new();
        let view = |method| RequestView {
            method,
            scheme: "https",
            host: "x.test",
            port: 443,
            path: "/a?b=1",
            headers: &headers,
            body: b"",
        };
        let with = |loaded: Option<Arc<stakpak_policy::Policy>>| {
            let (_tx, rx) = watch::channel(Arc::new(WardenConfig {
                loaded,
                ..WardenConfig::default()
            }));
            PolicyJudge::new(rx)
        };
        let judge = with(Some(Arc::new(policy)));
        assert_eq!(
            judge.judge(&view("DELETE")),
            Judgement {
                allow: false,
                decision: stakpak_proto::Decision::Ask,
                rule: "t.ask-delete".into(),
                reason: "deletes need a human (needs approval, which a request cannot wait for)"
                    .into(),
                operation: "DELETE /a".into(),
            }
        );
        assert!(judge.judge(&view("GET")).allow);
        let none = with(None);
        assert_eq!(
            none.judge(&view("GET")),
            Judgement {
                allow: false,
                decision: stakpak_proto::Decision::Deny,
                rule: "builtin.no-policy".into(),
                reason: "no policy is loaded".into(),
                operation: "GET /a".into(),
            }
        );
    }
}
