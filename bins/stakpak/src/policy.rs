//! `stakpak policy check|test|list`: the warden's judgement from the command line.
//!
//! `check` asks the running warden over D-Bus when a suite is running, and evaluates the same
//! packs in-process otherwise, so it works on a machine where nothing is started.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use stakpak_policy::{Action, Decision as LocalDecision, Policy, load::PolicyConfig};
use stakpak_proto::{CheckKind, CheckReply, CheckRequest, Decision, WardenProxy};

use crate::{
    locate,
    table::{Column, Table},
};

/// Exit codes of `policy check`.
pub const EXIT_ASK: u8 = 3;
pub const EXIT_DENY: u8 = 4;

/// What `check` prints with `--json`.
#[derive(Debug, Serialize)]
struct Output {
    decision: Decision,
    rule: Option<String>,
    reason: String,
    action: String,
    /// `warden` (asked over D-Bus) or `local` (evaluated in this process).
    judged_by: &'static str,
    matches: Vec<MatchOut>,
}

#[derive(Debug, Serialize)]
struct MatchOut {
    rule: String,
    pack: String,
    decision: Decision,
    reason: String,
    action: String,
}

/// Reads the `[policy]` section of `<config_dir>/warden.toml` (defaults when absent).
pub fn policy_config(config_dir: &Path) -> anyhow::Result<PolicyConfig> {
    #[derive(Deserialize)]
    struct Partial {
        #[serde(default)]
        policy: PolicyConfig,
    }
    let path = config_dir.join("warden.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PolicyConfig::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    let only_policy = toml::Table::from_iter(
        table
            .get("policy")
            .map(|p| ("policy".to_string(), p.clone())),
    );
    let partial: Partial = only_policy
        .try_into()
        .with_context(|| format!("invalid [policy] in {}", path.display()))?;
    partial
        .policy
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid [policy] in {}: {e}", path.display()))?;
    Ok(partial.policy)
}

/// The policy as the warden would load it from `config_dir`, plus `extra` folders. `fast`
/// skips re-running the built-in packs' examples (see `PolicyConfig::load_fast`).
fn local_policy(
    config_dir: &Path,
    extra: &[PathBuf],
    builtin: bool,
    fast: bool,
) -> anyhow::Result<Policy> {
    let mut cfg = policy_config(config_dir)?;
    cfg.builtin &= builtin;
    cfg.dirs.extend(extra.iter().cloned());
    let loaded = if fast {
        cfg.load_fast(config_dir)
    } else {
        cfg.load(config_dir)
    };
    loaded.map_err(|e| anyhow::anyhow!("the policy does not load: {e}"))
}

fn action_of(kind: CheckKind, subject: &str) -> anyhow::Result<Action> {
    Ok(match kind {
        CheckKind::Write => Action::Write(subject.to_string()),
        CheckKind::Delete => Action::Delete(subject.to_string()),
        CheckKind::Request => Action::Request(
            stakpak_policy::HttpRequest::parse_example(subject)
                .map_err(|e| anyhow::anyhow!("the request does not parse: {e}"))?,
        ),
        CheckKind::Command => Action::Command(subject.to_string()),
    })
}

/// The policy crate's verdict as the warden sends it.
fn wire_decision(d: LocalDecision) -> Decision {
    match d {
        LocalDecision::Allow => Decision::Allow,
        LocalDecision::Ask => Decision::Ask,
        LocalDecision::Deny => Decision::Deny,
    }
}

/// The request `stakpak policy check --request` judges, in the packs' example form:
/// `METHOD URL`, header lines, a blank line and the body.
pub fn request_subject(line: &str, headers: &[String], body: Option<&str>) -> String {
    let mut text = line.trim().to_string();
    for h in headers {
        text.push('\n');
        text.push_str(h.trim());
    }
    if let Some(body) = body {
        text.push_str("\n\n");
        text.push_str(body);
    }
    text
}

/// `stakpak policy check`.
pub fn check(
    kind: CheckKind,
    subject: &str,
    json: bool,
    local: bool,
    bus_address: Option<&str>,
    layout: &crate::suite::Layout,
) -> anyhow::Result<ExitCode> {
    let target = if local {
        None
    } else {
        locate::locate(bus_address, layout).ok()
    };
    let out = match target {
        Some(target) => {
            let runtime = crate::runtime::new()?;
            let reply = runtime
                .block_on(async {
                    let conn = target.connect().await?;
                    let warden = WardenProxy::new(&conn).await?;
                    let request = CheckRequest {
                        kind,
                        subject: subject.to_string(),
                        session: String::new(),
                    };
                    warden.check(request).await.map_err(anyhow::Error::from)
                })
                .with_context(|| {
                    format!("the warden of the {} did not answer", target.describe())
                })?;
            from_reply(reply)
        }
        None => {
            let policy = local_policy(&layout.config_dir, &[], true, true)?;
            let v = policy.check(&action_of(kind, subject)?);
            Output {
                decision: wire_decision(v.decision),
                rule: v.rule,
                reason: v.reason,
                action: v.action,
                judged_by: "local",
                matches: v
                    .matches
                    .into_iter()
                    .map(|m| MatchOut {
                        rule: m.rule,
                        pack: m.pack,
                        decision: wire_decision(m.decision),
                        reason: m.reason,
                        action: m.action,
                    })
                    .collect(),
            }
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}  {}",
            out.decision,
            out.rule.as_deref().unwrap_or("(no rule matched)")
        );
        println!("  reason: {}", out.reason);
        println!("  action: {}", out.action);
    }
    Ok(match out.decision {
        Decision::Allow => ExitCode::SUCCESS,
        Decision::Ask => ExitCode::from(EXIT_ASK),
        Decision::Deny => ExitCode::from(EXIT_DENY),
    })
}

fn from_reply(r: CheckReply) -> Output {
    Output {
        decision: r.decision,
        rule: (!r.rule.is_empty()).then_some(r.rule),
        reason: r.reason,
        action: r.action,
        judged_by: "warden",
        matches: r
            .matches
            .into_iter()
            .map(|m| MatchOut {
                rule: m.rule,
                pack: m.pack,
                decision: m.decision,
                reason: m.reason,
                action: m.action,
            })
            .collect(),
    }
}

/// `stakpak policy list`.
pub fn list(config_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let policy = local_policy(config_dir, &[], true, true)?;
    let rows: Vec<Row<'_>> = policy
        .packs()
        .iter()
        .flat_map(|p| {
            let commands = p.rules.iter().map(move |r| Row {
                rule: &r.id,
                kind: CheckKind::Command,
                decision: r.decision.as_str(),
                pack: &p.id,
                source: &p.source,
                reason: &r.reason,
            });
            let requests = p.requests.iter().map(move |r| Row {
                rule: &r.id,
                kind: CheckKind::Request,
                decision: r.decision.as_str(),
                pack: &p.id,
                source: &p.source,
                reason: &r.reason,
            });
            commands.chain(requests)
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_rules(&rows));
    Ok(ExitCode::SUCCESS)
}

/// One rule as `stakpak policy list` shows it.
#[derive(Serialize)]
struct Row<'a> {
    rule: &'a str,
    /// `command` (commands and file writes) or `request` (HTTP through the proxy).
    kind: CheckKind,
    decision: &'a str,
    pack: &'a str,
    source: &'a str,
    reason: &'a str,
}

/// The table of `stakpak policy list`.
fn render_rules(rows: &[Row<'_>]) -> String {
    let mut table = Table::new(
        2,
        [
            Column::fit("RULE"),
            Column::fixed("KIND", 7),
            Column::fixed("DECISION", 8),
            Column::fit("REASON"),
        ],
    );
    for r in rows {
        table.row([r.rule, r.kind.as_str(), r.decision, r.reason]);
    }
    table.render()
}

/// `stakpak policy test [DIR…] [--corpus FILE…]`: loading runs every rule's examples; corpus
/// files (`[[case]]` with `command`, `expected` and optionally `rule`) are then run too.
pub fn test(
    config_dir: &Path,
    dirs: &[PathBuf],
    corpora: &[PathBuf],
    builtin: bool,
) -> anyhow::Result<ExitCode> {
    let policy = local_policy(config_dir, dirs, builtin, false)?;
    let rules: usize = policy.packs().iter().map(|p| p.rules.len()).sum();
    let examples: usize = policy
        .packs()
        .iter()
        .flat_map(|p| &p.rules)
        .map(|r| r.examples.matching.len() + r.examples.not_match.len())
        .sum();
    println!(
        "{} packs, {rules} rules: all {examples} examples pass",
        policy.packs().len()
    );
    let mut failed = 0usize;
    for path in corpora {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let all = stakpak_policy::corpus::parse(&text)
            .with_context(|| format!("invalid corpus {}", path.display()))?;
        let mut here = 0usize;
        let cases: Vec<_> = all.iter().filter(|c| c.command.is_some()).collect();
        for case in &cases {
            let command = case.command.as_deref().unwrap_or_default();
            let expected: LocalDecision = case
                .expected
                .parse()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let v = policy.check(&Action::Command(command.to_string()));
            let rule_ok = case.rule.is_none() || case.rule == v.rule;
            if v.decision != expected || !rule_ok {
                here += 1;
                println!(
                    "FAIL {}: {command:?}: expected {expected}{}, got {} by {}",
                    path.display(),
                    case.rule
                        .as_deref()
                        .map(|r| format!(" by {r}"))
                        .unwrap_or_default(),
                    v.decision,
                    v.rule.as_deref().unwrap_or("no rule")
                );
            }
        }
        println!("{}: {} cases, {here} failed", path.display(), cases.len());
        failed += here;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_table() {
        let row = |rule, kind, decision, reason| Row {
            rule,
            kind,
            decision,
            pack: "p",
            source: "builtin",
            reason,
        };
        let rows = [
            row(
                "git.push-force",
                CheckKind::Command,
                "ask",
                "rewrites history",
            ),
            row("k8s-api.delete-namespace", CheckKind::Request, "deny", "no"),
        ];
        assert_eq!(
            render_rules(&rows),
            "RULE                      KIND     DECISION  REASON\n\
             git.push-force            command  ask       rewrites history\n\
             k8s-api.delete-namespace  request  deny      no\n"
        );
        assert_eq!(render_rules(&[]), "RULE  KIND     DECISION  REASON\n");
    }
}
