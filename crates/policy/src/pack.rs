//! Policy packs: rules as data (TOML), compiled once at load.
//!
//! ```toml
//! [pack]
//! id = "git"
//! description = "history-rewriting and work-destroying git commands"
//!
//! [programs.git]                  # how to read this program's options
//! values = ["C", "c", "git-dir"]  # options that take a value
//! [programs."git push"]           # options after the subcommand `push`
//! aliases = { f = "force", force-with-lease = "force" }
//!
//! [[rule]]
//! id = "git.push-force"
//! decision = "ask"                # allow | ask | deny
//! reason = "a force push rewrites the remote branch"
//! match = { programs = ["git"], positional = [["push"]], flags_any = ["force"] }
//! examples.match = ["git push -f origin main"]
//! examples.not_match = ["git push origin main"]
//! ```
//!
//! `[[request]]` rules have the same shape and judge HTTP requests through the warden's
//! egress proxy (`crate::request`): every field of `match` that is set must hold, a list by
//! any of its items; examples are requests (`METHOD URL`, header lines, a blank line, body).
//!
//! ```toml
//! [[request]]
//! id = "k8s-api.delete-namespace"
//! decision = "deny"
//! reason = "deleting a namespace deletes every object in it"
//! match = { operations = ["k8s:delete:namespaces"] }  # also: methods, hosts, paths,
//! examples.match = ["DELETE https://kube.example/api/v1/namespaces/prod"]  # query, headers,
//! examples.not_match = ["GET https://kube.example/api/v1/namespaces/prod"]  # body, namespaces
//! ```
//!
//! A pattern is an exact string, or a regular expression when it starts with `~`; a request
//! rule's `hosts` also take `*` for any run of characters (`*.amazonaws.com`).

use std::collections::{BTreeMap, HashMap, HashSet};

use regex::Regex;
use serde::Deserialize;

use crate::Decision;

/// A pack as written in its file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    pack: PackHeader,
    #[serde(default)]
    programs: BTreeMap<String, ProgramFile>,
    #[serde(default)]
    rule: Vec<RuleFile<MatchFile>>,
    /// `[[request]]` rules: judged by the egress proxy against each HTTP request.
    #[serde(default)]
    request: Vec<RuleFile<RequestMatchFile>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestMatchFile {
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    operations: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackHeader {
    id: String,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProgramFile {
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    single_dash_long: bool,
}

/// A `[[rule]]` (`M` = [`MatchFile`]) or a `[[request]]` rule (`M` = [`RequestMatchFile`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile<M> {
    id: String,
    decision: Decision,
    reason: String,
    #[serde(rename = "match")]
    matches: M,
    #[serde(default)]
    unless: Option<M>,
    #[serde(default)]
    examples: Examples,
}

/// `examples.match` and `examples.not_match` of a rule.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    #[serde(default, rename = "match")]
    pub matching: Vec<String>,
    #[serde(default)]
    pub not_match: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MatchFile {
    #[serde(default)]
    programs: Vec<String>,
    #[serde(default)]
    positional: Vec<Vec<String>>,
    #[serde(default)]
    flags_all: Vec<String>,
    #[serde(default)]
    flags_any: Vec<String>,
    #[serde(default)]
    flags_none: Vec<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    args_any: Vec<String>,
    #[serde(default)]
    args_all: Vec<String>,
    #[serde(default)]
    args_dynamic: Option<bool>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    code_from: Vec<String>,
    #[serde(default)]
    dynamic_program: Option<bool>,
    #[serde(default)]
    obfuscated: Option<bool>,
    #[serde(default)]
    write_path: Vec<String>,
    #[serde(default)]
    delete_path: Vec<String>,
}

/// An exact string or a regular expression.
///
/// A regular expression's syntax is checked when its pack is parsed, but the matcher is only
/// built the first time the pattern is used: a one-shot `stakpak policy check` touches a
/// handful of rules, and building all of them would cost more than the verdict.
#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    Regex(LazyRegex),
}

/// A regular expression built on first use.
#[derive(Debug, Clone)]
pub struct LazyRegex {
    source: String,
    built: std::sync::Arc<std::sync::OnceLock<Option<Regex>>>,
}

impl LazyRegex {
    fn get(&self) -> Option<&Regex> {
        self.built
            .get_or_init(|| Regex::new(&self.source).ok())
            .as_ref()
    }
}

impl Pattern {
    fn compile(text: &str, check_syntax: bool) -> Result<Pattern, String> {
        match text.strip_prefix('~') {
            Some(re) => {
                if check_syntax {
                    regex_syntax::Parser::new().parse(re).map_err(|e| {
                        format!(
                            "bad regular expression `{re}`: {}",
                            stakpak_util::one_line(&e.to_string())
                        )
                    })?;
                }
                Ok(Pattern::Regex(LazyRegex {
                    source: re.to_string(),
                    built: Default::default(),
                }))
            }
            None => Ok(Pattern::Exact(text.to_string())),
        }
    }

    /// Builds the matcher now; an error names the expression (size limits, say).
    pub fn build(&self) -> Result<(), String> {
        match self {
            Pattern::Exact(_) => Ok(()),
            Pattern::Regex(r) => match r.get() {
                Some(_) => Ok(()),
                None => Err(match Regex::new(&r.source) {
                    Err(e) => format!(
                        "bad regular expression `{}`: {}",
                        r.source,
                        stakpak_util::one_line(&e.to_string())
                    ),
                    Ok(_) => format!("bad regular expression `{}`", r.source),
                }),
            },
        }
    }

    /// A regular expression that cannot be built never matches; [`Pattern::build`] at load
    /// time (every pack from disk, and the shipped packs in the test suite) keeps that from
    /// happening in practice.
    pub fn is_match(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == s,
            Pattern::Regex(r) => r.get().is_some_and(|r| r.is_match(s)),
        }
    }
}

/// How to read one program's options.
#[derive(Debug, Clone, Default)]
pub struct ProgramSpec {
    pub values: HashSet<String>,
    pub aliases: HashMap<String, String>,
    pub single_dash_long: bool,
}

impl ProgramSpec {
    pub fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }
}

/// A compiled match specification; every field that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub programs: Vec<String>,
    pub positional: Vec<Vec<Pattern>>,
    pub flags_all: Vec<String>,
    pub flags_any: Vec<String>,
    pub flags_none: Vec<String>,
    pub options: Vec<(String, Pattern)>,
    pub args_any: Vec<Pattern>,
    pub args_all: Vec<Pattern>,
    pub args_dynamic: Option<bool>,
    pub text: Option<Pattern>,
    pub stdin: Option<Pattern>,
    pub code: Option<Pattern>,
    pub code_from: Vec<Pattern>,
    pub dynamic_program: Option<bool>,
    pub obfuscated: Option<bool>,
    pub write_path: Vec<Pattern>,
    pub delete_path: Vec<Pattern>,
}

impl Match {
    /// Every pattern of the specification.
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.positional
            .iter()
            .flatten()
            .chain(self.options.iter().map(|(_, p)| p))
            .chain(&self.args_any)
            .chain(&self.args_all)
            .chain(&self.text)
            .chain(&self.stdin)
            .chain(&self.code)
            .chain(&self.code_from)
            .chain(&self.write_path)
            .chain(&self.delete_path)
    }

    /// True when the rule is about files rather than programs.
    pub fn is_file_rule(&self) -> bool {
        !self.write_path.is_empty() || !self.delete_path.is_empty()
    }
}

/// One rule, ready to evaluate: a `[[rule]]` over commands, or with `M` = [`RequestMatch`]
/// a [`RequestRule`].
#[derive(Debug, Clone)]
pub struct Rule<M = Match> {
    pub id: String,
    pub pack: String,
    pub decision: Decision,
    pub reason: String,
    pub matches: M,
    pub unless: Option<M>,
    pub examples: Examples,
}

/// A loaded pack.
#[derive(Debug, Clone)]
pub struct Pack {
    pub id: String,
    pub description: String,
    /// The file (or other name) it was read from, for error messages.
    pub source: String,
    pub programs: BTreeMap<String, ProgramSpec>,
    pub rules: Vec<Rule>,
    /// `[[request]]` rules, for HTTP requests through the egress proxy.
    pub requests: Vec<RequestRule>,
}

/// A compiled request match; every field that is set must hold, a list by any of its items.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    /// Upper-case methods.
    pub methods: Vec<String>,
    pub hosts: Vec<Pattern>,
    /// Matched against the path without the query.
    pub paths: Vec<Pattern>,
    /// Every named parameter (query, or form body) must be there and match.
    pub query: Vec<(String, Pattern)>,
    /// Every named header (lower-case) must be there and match.
    pub headers: Vec<(String, Pattern)>,
    pub body: Option<Pattern>,
    pub operations: Vec<Pattern>,
    pub namespaces: Vec<Pattern>,
}

impl RequestMatch {
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.hosts
            .iter()
            .chain(&self.paths)
            .chain(self.query.iter().map(|(_, p)| p))
            .chain(self.headers.iter().map(|(_, p)| p))
            .chain(&self.body)
            .chain(&self.operations)
            .chain(&self.namespaces)
    }

    /// Whether `req`, whose operation is `op`, matches.
    pub fn matches(&self, req: &crate::HttpRequest, op: &crate::request::Operation) -> bool {
        let any = |ps: &[Pattern], s: &str| ps.is_empty() || ps.iter().any(|p| p.is_match(s));
        if !self.methods.is_empty() && !self.methods.contains(&req.method) {
            return false;
        }
        if !any(&self.hosts, &req.host)
            || !any(&self.paths, req.path_only())
            || !any(&self.operations, &op.name)
        {
            return false;
        }
        if !self.namespaces.is_empty() {
            match &op.namespace {
                Some(ns) if self.namespaces.iter().any(|p| p.is_match(ns)) => {}
                _ => return false,
            }
        }
        if !self.query.is_empty() {
            let params = req.params();
            let ok = self
                .query
                .iter()
                .all(|(name, p)| params.iter().any(|(k, v)| k == name && p.is_match(v)));
            if !ok {
                return false;
            }
        }
        let headers_ok = self
            .headers
            .iter()
            .all(|(name, p)| req.headers.iter().any(|(k, v)| k == name && p.is_match(v)));
        headers_ok
            && self
                .body
                .as_ref()
                .is_none_or(|p| p.is_match(&req.body_text()))
    }
}

/// One `[[request]]` rule, ready to evaluate; its examples are requests in the example form
/// of [`crate::HttpRequest::parse_example`].
pub type RequestRule = Rule<RequestMatch>;

/// A pack that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: rule {rule}: {message}")]
    Rule {
        source_name: String,
        rule: String,
        message: String,
    },
    #[error("{source_name}: rule {rule}: example `{example}` {problem}")]
    Example {
        source_name: String,
        rule: String,
        example: String,
        problem: String,
    },
    #[error("{source_name}: rule id {rule} is already defined in {other}")]
    Duplicate {
        source_name: String,
        rule: String,
        other: String,
    },
}

/// Parses and compiles a pack; `source_name` names it in errors (usually its path).
pub fn parse_pack(source_name: &str, text: &str) -> Result<Pack, PackError> {
    parse_pack_with(source_name, text, true)
}

/// Like [`parse_pack`], without checking regular-expression syntax up front: for the packs
/// built into the binary, whose every pattern the test suite builds.
pub fn parse_pack_trusted(source_name: &str, text: &str) -> Result<Pack, PackError> {
    parse_pack_with(source_name, text, false)
}

fn parse_pack_with(source_name: &str, text: &str, check_syntax: bool) -> Result<Pack, PackError> {
    let file: PackFile = toml::from_str(text).map_err(|e| PackError::Syntax {
        source_name: source_name.to_string(),
        message: stakpak_util::one_line(&e.to_string()),
    })?;
    let programs = file
        .programs
        .into_iter()
        .map(|(name, p)| {
            let strip = |s: &str| s.trim_start_matches('-').to_string();
            (
                name,
                ProgramSpec {
                    values: p.values.iter().map(|v| strip(v)).collect(),
                    aliases: p
                        .aliases
                        .iter()
                        .map(|(k, v)| (strip(k), strip(v)))
                        .collect(),
                    single_dash_long: p.single_dash_long,
                },
            )
        })
        .collect();
    let mut seen = HashSet::new();
    let pack = &file.pack.id;
    let rules = compile_rules(source_name, pack, file.rule, &mut seen, check_syntax)?;
    let requests = compile_rules(source_name, pack, file.request, &mut seen, check_syntax)?;
    Ok(Pack {
        id: file.pack.id,
        description: file.pack.description,
        source: source_name.to_string(),
        programs,
        rules,
        requests,
    })
}

/// A `match` or `unless` table as written in a pack, of one kind of rule.
trait MatchTable {
    type Compiled;

    fn compile(&self, check: bool) -> Result<Self::Compiled, String>;

    /// Why a compiled `match` (not an `unless`) could never apply, if it could not.
    fn selects_nothing(m: &Self::Compiled) -> Option<&'static str>;
}

/// Checks and compiles the rules of one kind, in order.
fn compile_rules<M: MatchTable>(
    source_name: &str,
    pack: &str,
    raw: Vec<RuleFile<M>>,
    seen: &mut HashSet<String>,
    check_syntax: bool,
) -> Result<Vec<Rule<M::Compiled>>, PackError> {
    raw.into_iter()
        .map(|r| {
            let err = |message: String| PackError::Rule {
                source_name: source_name.to_string(),
                rule: r.id.clone(),
                message,
            };
            check_head(source_name, &r.id, &r.reason, &r.examples, seen)?;
            let matches = r.matches.compile(check_syntax).map_err(err)?;
            if let Some(message) = M::selects_nothing(&matches) {
                return Err(err(message.into()));
            }
            let unless = r
                .unless
                .as_ref()
                .map(|u| u.compile(check_syntax))
                .transpose()
                .map_err(err)?;
            Ok(Rule {
                id: r.id.clone(),
                pack: pack.to_string(),
                decision: r.decision,
                reason: r.reason.trim().to_string(),
                matches,
                unless,
                examples: r.examples,
            })
        })
        .collect()
}

/// Every pattern of a list, compiled.
fn patterns(v: &[String], check: bool) -> Result<Vec<Pattern>, String> {
    v.iter().map(|p| Pattern::compile(p, check)).collect()
}

/// The pattern, if there is one, compiled.
fn pattern(v: &Option<String>, check: bool) -> Result<Option<Pattern>, String> {
    v.as_deref().map(|p| Pattern::compile(p, check)).transpose()
}

impl MatchTable for MatchFile {
    type Compiled = Match;

    fn compile(&self, check: bool) -> Result<Match, String> {
        let strip = |v: &[String]| {
            v.iter()
                .map(|s| s.trim_start_matches('-').to_string())
                .collect::<Vec<_>>()
        };
        Ok(Match {
            programs: self.programs.clone(),
            positional: self
                .positional
                .iter()
                .map(|alts| patterns(alts, check))
                .collect::<Result<_, _>>()?,
            flags_all: strip(&self.flags_all),
            flags_any: strip(&self.flags_any),
            flags_none: strip(&self.flags_none),
            options: self
                .options
                .iter()
                .map(|(k, v)| {
                    Pattern::compile(v, check).map(|p| (k.trim_start_matches('-').to_string(), p))
                })
                .collect::<Result<_, _>>()?,
            args_any: patterns(&self.args_any, check)?,
            args_all: patterns(&self.args_all, check)?,
            args_dynamic: self.args_dynamic,
            text: pattern(&self.text, check)?,
            stdin: pattern(&self.stdin, check)?,
            code: pattern(&self.code, check)?,
            code_from: patterns(&self.code_from, check)?,
            dynamic_program: self.dynamic_program,
            obfuscated: self.obfuscated,
            write_path: patterns(&self.write_path, check)?,
            delete_path: patterns(&self.delete_path, check)?,
        })
    }

    fn selects_nothing(m: &Match) -> Option<&'static str> {
        (m.programs.is_empty()
            && !m.is_file_rule()
            && m.dynamic_program.is_none()
            && m.obfuscated.is_none()
            && m.code_from.is_empty())
        .then_some("match needs `programs`, a path (`write_path`/`delete_path`), `code_from`, `dynamic_program` or `obfuscated`")
    }
}

/// A host pattern: `~regex`, or a name where `*` stands for any run of characters
/// (`*.amazonaws.com`); case-insensitive.
fn host_pattern(text: &str, check: bool) -> Result<Pattern, String> {
    if text.starts_with('~') {
        return Pattern::compile(text, check);
    }
    let lower = text.to_ascii_lowercase();
    if !lower.contains('*') {
        return Ok(Pattern::Exact(lower));
    }
    let re: Vec<String> = lower.split('*').map(regex_syntax::escape).collect();
    Pattern::compile(&format!("~^{}$", re.join(".*")), check)
}

impl MatchTable for RequestMatchFile {
    type Compiled = RequestMatch;

    fn compile(&self, check: bool) -> Result<RequestMatch, String> {
        let map = |m: &BTreeMap<String, String>, lower: bool| {
            m.iter()
                .map(|(k, v)| {
                    let k = if lower {
                        k.to_ascii_lowercase()
                    } else {
                        k.clone()
                    };
                    Pattern::compile(v, check).map(|p| (k, p))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(RequestMatch {
            methods: self
                .methods
                .iter()
                .map(|s| s.to_ascii_uppercase())
                .collect(),
            hosts: self
                .hosts
                .iter()
                .map(|h| host_pattern(h, check))
                .collect::<Result<_, _>>()?,
            paths: patterns(&self.paths, check)?,
            query: map(&self.query, false)?,
            headers: map(&self.headers, true)?,
            body: pattern(&self.body, check)?,
            operations: patterns(&self.operations, check)?,
            namespaces: patterns(&self.namespaces, check)?,
        })
    }

    fn selects_nothing(m: &RequestMatch) -> Option<&'static str> {
        (m.methods.is_empty()
            && m.hosts.is_empty()
            && m.paths.is_empty()
            && m.operations.is_empty())
        .then_some("a request match needs `methods`, `hosts`, `paths` or `operations`")
    }
}

/// What every rule needs: an id not used before in the pack, a reason, a matching example.
fn check_head(
    source_name: &str,
    id: &str,
    reason: &str,
    examples: &Examples,
    seen: &mut HashSet<String>,
) -> Result<(), PackError> {
    let err = |message: &str| PackError::Rule {
        source_name: source_name.to_string(),
        rule: id.to_string(),
        message: message.to_string(),
    };
    if id.trim().is_empty() {
        return Err(err("a rule needs an id"));
    }
    if !seen.insert(id.to_string()) {
        return Err(PackError::Duplicate {
            source_name: source_name.to_string(),
            rule: id.to_string(),
            other: source_name.to_string(),
        });
    }
    if reason.trim().is_empty() {
        return Err(err("a rule needs a reason"));
    }
    if examples.matching.is_empty() {
        return Err(err("a rule needs at least one `examples.match`"));
    }
    Ok(())
}
