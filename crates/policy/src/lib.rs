//! The policy engine of `stakpak-warden`: parses a shell command line, lists what it would
//! do, and judges each of those actions against rules held as data.
//!
//! Pure: no I/O except the small [`load`] module that reads pack files for the daemon and the
//! CLI. The pipeline is [`shell::parse`] → [`extract::effects`] → [`normalize`] (options read
//! per program) → rule matching in [`Policy::check`]; across all actions of a command the
//! strictest decision wins (deny > ask > allow).

pub mod corpus;
pub mod extract;
pub mod load;
mod normalize;
pub mod pack;
pub mod request;
pub mod shell;

use std::{collections::HashMap, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

pub use extract::{Arg, Effect, Invocation};
pub use normalize::Normalized;
pub use pack::{Pack, PackError, parse_pack};
pub use request::HttpRequest;

/// What the warden says about an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Ask,
    Deny,
}

impl Decision {
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Ask => "ask",
            Decision::Deny => "deny",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Decision::Allow),
            "ask" => Ok(Decision::Ask),
            "deny" => Ok(Decision::Deny),
            other => Err(format!("unknown decision `{other}` (allow, ask or deny)")),
        }
    }
}

/// What the warden is asked to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A shell command line, as `run_command` would run it.
    Command(String),
    /// A file about to be written (created, replaced, edited).
    Write(String),
    /// A file about to be deleted.
    Delete(String),
    /// An HTTP request through the egress proxy.
    Request(HttpRequest),
}

impl Action {
    /// Parses `write:PATH`, `delete:PATH` or a command line (as used in pack examples).
    pub fn from_example(text: &str) -> Action {
        if let Some(p) = text.strip_prefix("write:") {
            Action::Write(p.to_string())
        } else if let Some(p) = text.strip_prefix("delete:") {
            Action::Delete(p.to_string())
        } else {
            Action::Command(text.to_string())
        }
    }
}

/// One rule that matched one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub pack: String,
    pub decision: Decision,
    pub reason: String,
    /// The normalised action it matched (`rm -r -f /etc`, `write /etc/sudoers`).
    pub action: String,
}

/// The warden's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub decision: Decision,
    /// The deciding rule; `None` when no rule matched and the default applied.
    pub rule: Option<String>,
    pub reason: String,
    /// The normalised action the decision is about.
    pub action: String,
    /// Every rule that matched, strictest first.
    pub matches: Vec<RuleMatch>,
}

/// Rule ids of decisions the engine makes itself.
pub mod builtin {
    /// The command does not parse.
    pub const PARSE_ERROR: &str = "builtin.parse-error";
    /// The command is longer than the parser accepts.
    pub const TOO_LONG: &str = "builtin.too-long";
    /// `sh -c`, `eval` or substitutions nest too deep to follow.
    pub const TOO_DEEP: &str = "builtin.too-deep";
    /// A nested script (`sh -c '…'`, `eval '…'`) does not parse.
    pub const UNPARSED: &str = "builtin.unparsed-nested";
}

/// Settings that are not rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Decision for actions no rule matches.
    pub default_decision: Decision,
    /// Decision for commands that do not parse, are too long or nest too deep (never allow).
    pub unparsable_decision: Decision,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_decision: Decision::Allow,
            unparsable_decision: Decision::Ask,
        }
    }
}

/// A set of packs ready to judge actions.
#[derive(Debug, Clone)]
pub struct Policy {
    packs: Vec<Pack>,
    settings: Settings,
    programs: HashMap<String, pack::ProgramSpec>,
    /// Rule indexes by program name, so a command is matched only against its rules.
    by_program: HashMap<String, Vec<(usize, usize)>>,
    /// Rules that match without naming a program (structure, files).
    general: Vec<(usize, usize)>,
}

/// A policy that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("no policy packs found in {0}")]
    Empty(String),
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
}

impl Policy {
    /// Builds a policy and checks every rule's examples against it.
    pub fn new(packs: Vec<Pack>, settings: Settings) -> Result<Policy, PolicyError> {
        Self::new_trusting(packs, settings, |_| false)
    }

    /// Like [`Policy::new`], but skips the examples of packs `trusted` accepts: the built-in
    /// packs, whose examples the test suite runs on every build, when a short-lived process
    /// (`stakpak policy check`) needs one verdict fast. Packs from disk are always checked.
    pub fn new_trusting(
        packs: Vec<Pack>,
        settings: Settings,
        trusted: impl Fn(&Pack) -> bool,
    ) -> Result<Policy, PolicyError> {
        let settings = Settings {
            unparsable_decision: settings.unparsable_decision.max(Decision::Ask),
            ..settings
        };
        let mut programs: HashMap<String, pack::ProgramSpec> = HashMap::new();
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut by_program: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let mut general = Vec::new();
        for (pi, p) in packs.iter().enumerate() {
            for (name, spec) in &p.programs {
                let merged = programs.entry(name.clone()).or_default();
                merged.values.extend(spec.values.iter().cloned());
                merged
                    .aliases
                    .extend(spec.aliases.iter().map(|(k, v)| (k.clone(), v.clone())));
                merged.single_dash_long |= spec.single_dash_long;
            }
            // Command and request rules share one namespace of ids.
            let rule_ids = p.rules.iter().map(|r| &r.id);
            for id in rule_ids.chain(p.requests.iter().map(|r| &r.id)) {
                if let Some(other) = ids.insert(id.clone(), p.source.clone()) {
                    return Err(PackError::Duplicate {
                        source_name: p.source.clone(),
                        rule: id.clone(),
                        other,
                    }
                    .into());
                }
            }
            for (ri, r) in p.rules.iter().enumerate() {
                if r.matches.programs.is_empty() {
                    general.push((pi, ri));
                } else {
                    for prog in &r.matches.programs {
                        by_program.entry(prog.clone()).or_default().push((pi, ri));
                    }
                }
            }
        }
        let policy = Policy {
            packs,
            settings,
            programs,
            by_program,
            general,
        };
        policy.check_examples(&trusted)?;
        Ok(policy)
    }

    pub fn packs(&self) -> &[Pack] {
        &self.packs
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Runs every rule's examples; the first failure names the file, rule and example.
    fn check_examples(&self, trusted: &impl Fn(&Pack) -> bool) -> Result<(), PackError> {
        for p in self.packs.iter().filter(|p| !trusted(p)) {
            for r in &p.rules {
                let patterns = r
                    .matches
                    .patterns()
                    .chain(r.unless.iter().flat_map(|u| u.patterns()));
                self.check_rule(p, &r.id, patterns, &r.examples, |ex| {
                    Ok(Action::from_example(ex))
                })?;
            }
            for r in &p.requests {
                let patterns = r
                    .matches
                    .patterns()
                    .chain(r.unless.iter().flat_map(|u| u.patterns()));
                self.check_rule(p, &r.id, patterns, &r.examples, |ex| {
                    HttpRequest::parse_example(ex)
                        .map(Action::Request)
                        .map_err(|e| format!("is not a request: {e}"))
                })?;
            }
        }
        Ok(())
    }

    /// Builds one rule's patterns and runs its examples, read by `action`.
    fn check_rule<'a>(
        &self,
        p: &Pack,
        id: &str,
        patterns: impl Iterator<Item = &'a pack::Pattern>,
        examples: &pack::Examples,
        action: impl Fn(&str) -> Result<Action, String>,
    ) -> Result<(), PackError> {
        for pattern in patterns {
            pattern.build().map_err(|message| PackError::Rule {
                source_name: p.source.clone(),
                rule: id.to_string(),
                message,
            })?;
        }
        let fail = |example: &str, problem: String| PackError::Example {
            source_name: p.source.clone(),
            rule: id.to_string(),
            example: example.to_string(),
            problem,
        };
        let all = examples
            .matching
            .iter()
            .map(|e| (e, true))
            .chain(examples.not_match.iter().map(|e| (e, false)));
        for (ex, should) in all {
            let v = self.check(&action(ex).map_err(|problem| fail(ex, problem))?);
            let matched = v.matches.iter().any(|m| m.rule == id);
            match (should, matched) {
                (true, false) => {
                    let got = match &v.rule {
                        Some(rule) => format!("{} by {rule}", v.decision),
                        None => format!("{} (no rule)", v.decision),
                    };
                    return Err(fail(ex, format!("does not match it (verdict: {got})")));
                }
                (false, true) => {
                    return Err(fail(ex, "matches it but is listed under not_match".into()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Judges one action.
    pub fn check(&self, action: &Action) -> Verdict {
        let mut matches = Vec::new();
        match action {
            Action::Command(cmd) => {
                if cmd.len() > shell::MAX_INPUT {
                    return self.builtin(
                        builtin::TOO_LONG,
                        "the command is longer than the warden reads",
                        "command",
                    );
                }
                match extract::effects(cmd) {
                    Ok(effects) => {
                        for e in &effects {
                            self.judge_effect(e, &mut matches);
                        }
                    }
                    Err(e) => {
                        return self.builtin(
                            builtin::PARSE_ERROR,
                            &format!("the command does not parse ({e}); it cannot be judged"),
                            cmd,
                        );
                    }
                }
            }
            Action::Write(path) => {
                self.judge_file(&extract::normalize_path(path), true, &mut matches)
            }
            Action::Delete(path) => {
                self.judge_file(&extract::normalize_path(path), false, &mut matches)
            }
            Action::Request(req) => self.judge_request(req, &mut matches),
        }
        self.decide(matches, action)
    }

    fn builtin(&self, rule: &str, reason: &str, action: &str) -> Verdict {
        let m = RuleMatch {
            rule: rule.to_string(),
            pack: "builtin".into(),
            decision: self.settings.unparsable_decision,
            reason: reason.to_string(),
            action: truncate(action),
        };
        Verdict {
            decision: m.decision,
            rule: Some(m.rule.clone()),
            reason: m.reason.clone(),
            action: m.action.clone(),
            matches: vec![m],
        }
    }

    fn decide(&self, mut matches: Vec<RuleMatch>, action: &Action) -> Verdict {
        // Strictest first; among equals, pack order.
        matches.sort_by_key(|m| std::cmp::Reverse(m.decision));
        match matches.first() {
            Some(top) => Verdict {
                decision: top.decision,
                rule: Some(top.rule.clone()),
                reason: top.reason.clone(),
                action: top.action.clone(),
                matches,
            },
            None => Verdict {
                decision: self.settings.default_decision,
                rule: None,
                reason: "no rule matched".into(),
                action: truncate(&match action {
                    Action::Command(c) => c.clone(),
                    Action::Write(p) => format!("write {p}"),
                    Action::Delete(p) => format!("delete {p}"),
                    Action::Request(r) => {
                        format!("{} [{}]", r.display(), request::operation(r).name)
                    }
                }),
                matches,
            },
        }
    }

    fn judge_effect(&self, effect: &Effect, out: &mut Vec<RuleMatch>) {
        match effect {
            Effect::Run(inv) => self.judge_invocation(inv, out),
            Effect::Write { path, .. } => self.judge_file(path, true, out),
            Effect::Unparsed { context, error } => out.push(RuleMatch {
                rule: builtin::UNPARSED.into(),
                pack: "builtin".into(),
                decision: self.settings.unparsable_decision,
                reason: format!("code run through {context} does not parse ({error})"),
                action: context.clone(),
            }),
            Effect::TooDeep { context } => out.push(RuleMatch {
                rule: builtin::TOO_DEEP.into(),
                pack: "builtin".into(),
                decision: self.settings.unparsable_decision,
                reason: format!(
                    "shells and substitutions nest deeper than {} levels",
                    extract::MAX_NESTING
                ),
                action: context.clone(),
            }),
        }
    }

    fn judge_invocation(&self, inv: &Invocation, out: &mut Vec<RuleMatch>) {
        let spec = self.programs.get(&inv.program);
        let norm = normalize::normalize(inv, spec, &self.programs);
        let candidates = self
            .by_program
            .get(&inv.program)
            .into_iter()
            .flatten()
            .chain(self.general.iter());
        for &(pi, ri) in candidates {
            let rule = &self.packs[pi].rules[ri];
            if rule.matches.is_file_rule() {
                continue;
            }
            if normalize::matches(&rule.matches, inv, &norm)
                && !rule
                    .unless
                    .as_ref()
                    .is_some_and(|u| normalize::matches(u, inv, &norm))
            {
                out.push(RuleMatch {
                    rule: rule.id.clone(),
                    pack: rule.pack.clone(),
                    decision: rule.decision,
                    reason: rule.reason.clone(),
                    action: truncate(&norm.display()),
                });
            }
        }
    }

    fn judge_request(&self, req: &HttpRequest, out: &mut Vec<RuleMatch>) {
        let op = request::operation(req);
        for p in &self.packs {
            for rule in &p.requests {
                if rule.matches.matches(req, &op)
                    && !rule.unless.as_ref().is_some_and(|u| u.matches(req, &op))
                {
                    out.push(RuleMatch {
                        rule: rule.id.clone(),
                        pack: rule.pack.clone(),
                        decision: rule.decision,
                        reason: rule.reason.clone(),
                        action: truncate(&format!("{} [{}]", req.display(), op.name)),
                    });
                }
            }
        }
    }

    fn judge_file(&self, path: &str, write: bool, out: &mut Vec<RuleMatch>) {
        for &(pi, ri) in &self.general {
            let rule = &self.packs[pi].rules[ri];
            let patterns = if write {
                &rule.matches.write_path
            } else {
                &rule.matches.delete_path
            };
            if patterns.iter().any(|p| p.is_match(path)) {
                let excluded = rule.unless.as_ref().is_some_and(|u| {
                    let ps = if write { &u.write_path } else { &u.delete_path };
                    ps.iter().any(|p| p.is_match(path))
                });
                if !excluded {
                    out.push(RuleMatch {
                        rule: rule.id.clone(),
                        pack: rule.pack.clone(),
                        decision: rule.decision,
                        reason: rule.reason.clone(),
                        action: format!("{} {path}", if write { "write" } else { "delete" }),
                    });
                }
            }
        }
    }
}

/// Verdicts carry the action; a megabyte-long one would flood logs and D-Bus replies.
fn truncate(s: &str) -> String {
    const MAX: usize = 512;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
