//! The D-Bus side of the warden: validates `Check` requests, judges them with the policy in
//! force, logs and records what is not allowed.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use serde_json::{Value, json};
use stakpak_daemon::ControlHandle;
use stakpak_policy::{Action, Decision, Verdict};
use stakpak_proto::{
    CheckKind, CheckMatch, CheckReply, CheckRequest, Error, ProxyInfo, RequestLogEntry,
    RequestLogQuery, WardenHandler,
};
use tokio::sync::watch;
use tracing::{info, warn};

use stakpak_audit::Recorder;

use crate::config::WardenConfig;
use crate::wire::wire_decision;

/// The longest subject a caller may send; the policy itself judges commands longer than its
/// parser reads as `ask`, this only keeps absurd messages out.
const MAX_SUBJECT: usize = 1024 * 1024;
const MAX_SESSION: usize = 256;

/// Behind `dev.stakpak.Warden1`.
#[derive(Debug)]
pub(crate) struct Handler {
    control: ControlHandle,
    config: watch::Receiver<Arc<WardenConfig>>,
    audit: Option<Recorder>,
    /// The egress proxy, when it runs.
    proxy: Option<ProxyInfo>,
    /// The audit trail `RequestLog` reads.
    log_db: PathBuf,
}

impl Handler {
    pub(crate) fn new(
        control: ControlHandle,
        config: watch::Receiver<Arc<WardenConfig>>,
        audit: Option<Recorder>,
        proxy: Option<ProxyInfo>,
        log_db: PathBuf,
    ) -> Self {
        Handler {
            control,
            config,
            audit,
            proxy,
            log_db,
        }
    }

    fn judge(&self, request: &CheckRequest) -> Result<Verdict, Error> {
        if request.subject.len() > MAX_SUBJECT {
            return Err(Error::InvalidArgument(format!(
                "subject is {} bytes; the limit is {MAX_SUBJECT}",
                request.subject.len()
            )));
        }
        if request.session.len() > MAX_SESSION || request.session.contains(char::is_control) {
            return Err(Error::InvalidArgument(
                "session must be at most 256 printable characters".into(),
            ));
        }
        let action = match request.kind {
            CheckKind::Command => Action::Command(request.subject.clone()),
            CheckKind::Write => Action::Write(request.subject.clone()),
            CheckKind::Delete => Action::Delete(request.subject.clone()),
            // The packs' example form: `METHOD URL`, header lines, a blank line, the body.
            CheckKind::Request => Action::Request(
                stakpak_policy::HttpRequest::parse_example(&request.subject).map_err(|e| {
                    Error::InvalidArgument(format!("the request does not parse: {e}"))
                })?,
            ),
        };
        // No policy means nothing may pass: fail closed.
        let policy = self
            .config
            .borrow()
            .loaded
            .clone()
            .ok_or_else(|| Error::Unavailable("no policy is loaded".into()))?;
        Ok(policy.check(&action))
    }

    fn record(&self, request: &CheckRequest, caller: &str, v: &Verdict) {
        let rule = v.rule.as_deref().unwrap_or("");
        // One field list for both levels: tracing takes its level as a macro, not a value.
        macro_rules! log_verdict {
            ($level:ident) => {
                $level!(
                    decision = v.decision.as_str(),
                    rule,
                    action = %v.action,
                    kind = %request.kind,
                    session = %request.session,
                    caller,
                    "{}",
                    v.reason
                )
            };
        }
        match v.decision {
            Decision::Allow => {}
            Decision::Ask => log_verdict!(info),
            Decision::Deny => log_verdict!(warn),
        }
        if let (Some(audit), true) = (&self.audit, v.decision != Decision::Allow) {
            let fields: BTreeMap<String, Value> = [
                ("decision", json!(v.decision.as_str())),
                ("rule", json!(rule)),
                ("reason", json!(v.reason)),
                ("action", json!(v.action)),
                ("kind", json!(request.kind)),
                ("session", json!(request.session)),
                ("caller", json!(caller)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            audit.record("verdict", fields);
        }
    }
}

fn reply(v: Verdict) -> CheckReply {
    CheckReply {
        decision: wire_decision(v.decision),
        rule: v.rule.unwrap_or_default(),
        reason: v.reason,
        action: v.action,
        matches: v
            .matches
            .into_iter()
            .map(|m| CheckMatch {
                rule: m.rule,
                pack: m.pack,
                decision: wire_decision(m.decision),
                reason: m.reason,
                action: m.action,
            })
            .collect(),
    }
}

stakpak_daemon::control_through!(Handler, control);

impl WardenHandler for Handler {
    async fn check(&self, request: CheckRequest, caller: String) -> Result<CheckReply, Error> {
        let verdict = self.judge(&request)?;
        self.record(&request, &caller, &verdict);
        Ok(reply(verdict))
    }

    async fn proxy_info(&self) -> Result<ProxyInfo, Error> {
        Ok(self.proxy.clone().unwrap_or_default())
    }

    async fn request_log(&self, query: RequestLogQuery) -> Result<Vec<RequestLogEntry>, Error> {
        if query.limit > 100_000 {
            return Err(Error::InvalidArgument(
                "limit must be at most 100000".into(),
            ));
        }
        let db = self.log_db.clone();
        tokio::task::spawn_blocking(move || crate::egress::read_log(&db, &query))
            .await
            .map_err(|e| Error::Internal(format!("the log reader failed: {e}")))?
    }
}
