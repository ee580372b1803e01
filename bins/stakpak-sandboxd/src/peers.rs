//! Calls to the other daemons, each bounded by a timeout and failing closed.

use std::time::Duration;

use stakpak_proto::{
    CheckKind, CheckReply, CheckRequest, Decision, Error, SecretsProxy, WardenProxy, zbus,
};

/// Rule id of a refusal because the warden gave no verdict.
pub const RULE_WARDEN_UNAVAILABLE: &str = "sandboxd.warden-unavailable";
/// Rule id of a refusal because secretd could not resolve the placeholders.
pub const RULE_SECRETD_UNAVAILABLE: &str = "sandboxd.secretd-unavailable";
/// Rule id of a refusal of an `ask` verdict (no approval flow in sandboxd).
pub const RULE_ASK_UNSUPPORTED: &str = "sandboxd.ask-unsupported";

/// A refusal: the decision, the rule and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub decision: Decision,
    pub rule: String,
    pub reason: String,
}

/// Asks the warden about one action. `Ok` only for a clear `allow`; everything else (deny,
/// ask, no answer, an answer that does not decode) is a [`Refusal`].
pub(crate) async fn warden_allows(
    connection: &zbus::Connection,
    kind: CheckKind,
    subject: &str,
    session: &str,
    timeout: Duration,
) -> Result<CheckReply, Refusal> {
    let verdict = tokio::time::timeout(timeout, async {
        let warden = WardenProxy::new(connection).await.map_err(Error::from)?;
        warden
            .check(CheckRequest {
                kind,
                subject: subject.into(),
                session: session.into(),
            })
            .await
    })
    .await;
    let verdict = match verdict {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return Err(Refusal {
                decision: Decision::Deny,
                rule: RULE_WARDEN_UNAVAILABLE.into(),
                reason: format!("the warden gave no verdict ({e}); nothing runs without one"),
            });
        }
        Err(_) => {
            return Err(Refusal {
                decision: Decision::Deny,
                rule: RULE_WARDEN_UNAVAILABLE.into(),
                reason: format!(
                    "the warden did not answer within {} ms; nothing runs without a verdict",
                    timeout.as_millis()
                ),
            });
        }
    };
    match verdict.decision {
        Decision::Allow => Ok(verdict),
        Decision::Ask => Err(Refusal {
            decision: Decision::Ask,
            rule: if verdict.rule.is_empty() {
                RULE_ASK_UNSUPPORTED.into()
            } else {
                verdict.rule
            },
            reason: format!(
                "the warden asks for approval ({}); approvals are given to the agent, so \
                 sandboxd refuses it",
                verdict.reason
            ),
        }),
        Decision::Deny => Err(Refusal {
            decision: Decision::Deny,
            rule: verdict.rule,
            reason: verdict.reason,
        }),
    }
}

/// Redacts a text through secretd; an error means the text must not leave sandboxd.
pub(crate) async fn redact(
    connection: &zbus::Connection,
    session: &str,
    text: String,
    timeout: Duration,
) -> Result<String, Error> {
    match tokio::time::timeout(timeout, async {
        let secrets = SecretsProxy::new(connection).await.map_err(Error::from)?;
        secrets.redact(session.to_string(), text).await
    })
    .await
    {
        Ok(Ok(reply)) => Ok(reply.redacted),
        Ok(Err(e)) => Err(Error::Unavailable(format!(
            "secretd could not redact the output: {e}"
        ))),
        Err(_) => Err(Error::Unavailable(format!(
            "secretd did not redact the output within {} ms",
            timeout.as_millis()
        ))),
    }
}
