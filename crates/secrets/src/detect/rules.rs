//! The rule file (`rules.toml`): parsing, compiling, checking the examples, and the scan
//! that runs compiled rules around keyword occurrences.

use std::{ops::Range, sync::LazyLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex_automata::{
    Input,
    meta::{self, Regex},
    util::{captures::Captures, syntax},
};
use serde::Deserialize;

use super::{DetectError, Raw, allow::GlobalAllow, check::Check};

const RULES: &str = include_str!("rules.toml");

/// Bytes searched before and after a keyword by default; on ordinary lines the window is
/// the whole line, these only cut very long ones (minified JSON, base64 blobs).
const DEFAULT_BEFORE: usize = 512;
const DEFAULT_AFTER: usize = 16 * 1024;

/// Where the expected secret of an example starts and ends.
const MARK_OPEN: char = '«';
const MARK_CLOSE: char = '»';

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    allowlist: AllowlistFile,
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AllowlistFile {
    pub values: Vec<String>,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub not_examples: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    description: String,
    source: String,
    regex: String,
    keywords: Vec<String>,
    #[serde(default)]
    secret_group: Option<usize>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    allow_match: Vec<String>,
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    multiline: bool,
    #[serde(default)]
    max_lines: Option<usize>,
    #[serde(default)]
    before: Option<usize>,
    #[serde(default)]
    after: Option<usize>,
    #[serde(default)]
    privacy: bool,
    #[serde(default = "yes")]
    global_allowlist: bool,
    examples: Vec<String>,
    not_examples: Vec<String>,
}

fn yes() -> bool {
    true
}

/// One compiled detection rule.
pub struct Rule {
    id: String,
    description: String,
    source: String,
    keywords: Vec<String>,
    entropy: Option<f64>,
    privacy: bool,
    global_allowlist: bool,
    multiline: bool,
    max_lines: usize,
    before: usize,
    after: usize,
    regex: Regex,
    secret_group: Option<usize>,
    allow: Vec<Regex>,
    allow_match: Vec<Regex>,
    check: Option<Check>,
    examples: Vec<String>,
    not_examples: Vec<String>,
}

// Examples look like credentials (they are random), so Debug shows what identifies a rule.
impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.id)
            .field("privacy", &self.privacy)
            .finish_non_exhaustive()
    }
}

impl Rule {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Where the rule comes from (`gitleaks:<rule>` for ported ones, else `stakpak`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Lower-case literals, one of which must occur near a match; empty means the rule
    /// searches the whole text.
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// Minimum Shannon entropy (bits per byte) of a value.
    pub fn entropy(&self) -> Option<f64> {
        self.entropy
    }

    /// Reported only in privacy mode.
    pub fn privacy(&self) -> bool {
        self.privacy
    }

    /// The most lines one of its matches can span (1 unless the rule is multi-line).
    pub fn max_lines(&self) -> usize {
        self.max_lines
    }

    /// The rule's examples with `«…»` marks around the expected secret; all are synthetic.
    pub fn examples(&self) -> &[String] {
        &self.examples
    }

    pub fn not_examples(&self) -> &[String] {
        &self.not_examples
    }

    /// The window of text to search for this rule around a keyword at `kw`.
    fn window(&self, hay: &[u8], kw: Range<usize>) -> Range<usize> {
        let lo = kw.start.saturating_sub(self.before);
        let hi = kw.end.saturating_add(self.after).min(hay.len());
        if self.multiline {
            return lo..hi;
        }
        let start = memchr::memrchr(b'\n', &hay[lo..kw.start]).map_or(lo, |i| lo + i + 1);
        let end = memchr::memchr(b'\n', &hay[kw.end..hi]).map_or(hi, |i| kw.end + i);
        start..end
    }

    /// Runs the regex over `span` of `text` and keeps the values that pass every filter.
    fn search(
        &self,
        index: usize,
        text: &str,
        span: Range<usize>,
        global: &GlobalAllow,
        caps: &mut Captures,
        out: &mut Vec<Raw>,
    ) {
        let hay = text.as_bytes();
        let mut input = Input::new(hay).span(span.clone());
        loop {
            self.regex.search_captures(&input, caps);
            let Some(m) = caps.get_match() else { return };
            if let Some(value) = self
                .secret_span(caps)
                .and_then(|v| tidy(text, v))
                .filter(|v| self.accepts(hay, v.clone(), m.range(), global))
            {
                out.push(Raw {
                    rule: index,
                    start: value.start,
                    end: value.end,
                });
            }
            // The next search starts after this match (after one byte if it was empty).
            let next = if m.is_empty() { m.end() + 1 } else { m.end() };
            if next >= span.end {
                return;
            }
            input.set_start(next);
        }
    }

    fn secret_span(&self, caps: &Captures) -> Option<Range<usize>> {
        match self.secret_group {
            Some(g) => caps.get_group(g).map(|s| s.range()),
            None if caps.group_len() > 1 => (1..caps.group_len())
                .find_map(|g| caps.get_group(g))
                .map(|s| s.range()),
            None => caps.get_match().map(|m| m.range()),
        }
    }

    fn accepts(
        &self,
        hay: &[u8],
        value: Range<usize>,
        whole: Range<usize>,
        global: &GlobalAllow,
    ) -> bool {
        let v = &hay[value.clone()];
        if self.entropy.is_some_and(|min| shannon(v) < min) {
            return false;
        }
        if self.allow.iter().any(|re| re.is_match(v)) {
            return false;
        }
        if self
            .allow_match
            .iter()
            .any(|re| re.is_match(&hay[whole.clone()]))
        {
            return false;
        }
        if self.global_allowlist && global.allows(v) {
            return false;
        }
        self.check.is_none_or(|c| c.accepts(hay, value))
    }
}

/// Trims what is never part of a value (blanks, `\n` escapes of a JSON string) and moves
/// the ends to character boundaries, since a byte-level class may stop inside one.
fn tidy(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let hay = text.as_bytes();
    let (mut start, mut end) = (span.start, span.end);
    loop {
        let v = &hay[start..end];
        if v.first().is_some_and(u8::is_ascii_whitespace) {
            start += 1;
        } else if v.last().is_some_and(u8::is_ascii_whitespace) {
            end -= 1;
        } else if v.len() >= 2 && v[0] == b'\\' && matches!(v[1], b'n' | b'r' | b't') {
            start += 2;
        } else if v.len() >= 2
            && v[v.len() - 2] == b'\\'
            && matches!(v[v.len() - 1], b'n' | b'r' | b't')
        {
            end -= 2;
        } else {
            break;
        }
    }
    while start > 0 && !text.is_char_boundary(start) {
        start -= 1;
    }
    while end < text.len() && !text.is_char_boundary(end) {
        end += 1;
    }
    (start < end).then_some(start..end)
}

/// Shannon entropy of `bytes` in bits per byte.
pub(super) fn shannon(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Every rule, the keyword automaton and the global allowlist.
#[derive(Debug)]
pub(super) struct RuleSet {
    pub rules: Vec<Rule>,
    keywords: AhoCorasick,
    /// Rules by keyword pattern id.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords: they search the whole text.
    everywhere: Vec<usize>,
    allow: GlobalAllow,
}

static BUILTIN: LazyLock<Result<RuleSet, DetectError>> = LazyLock::new(|| compile(RULES));

pub(super) fn builtin() -> Result<&'static RuleSet, DetectError> {
    BUILTIN.as_ref().map_err(Clone::clone)
}

/// Regexes are compiled over bytes with ASCII classes: tokens are ASCII, and Unicode `\b`
/// would force the slower engines on non-ASCII text. Byte-level classes may end a match
/// inside a UTF-8 character; `tidy` moves such ends to boundaries.
///
/// No full or one-pass DFAs: a regex runs only on the short window around a keyword, where
/// the lazy DFA is as fast (the bench showed no difference), and the eagerly built DFAs of
/// ~100 rules cost secretd about 2 MiB of resident memory for its whole life.
fn compile_regex(pattern: &str) -> Result<Regex, String> {
    let syntax = syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .multi_line(true)
        .crlf(true);
    Regex::builder()
        .syntax(syntax)
        .configure(
            meta::Config::new()
                .utf8_empty(false)
                .dfa(false)
                .onepass(false),
        )
        .build(pattern)
        .map_err(|e| one_line(&e.to_string()))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn compile(text: &str) -> Result<RuleSet, DetectError> {
    let (set, allowlist) = compile_unchecked(text)?;
    match set.example_failures(&allowlist).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(set),
    }
}

fn compile_unchecked(text: &str) -> Result<(RuleSet, AllowlistFile), DetectError> {
    let file: RulesFile = toml::from_str(text).map_err(|e| DetectError::Syntax {
        message: one_line(e.message()),
    })?;
    let allow = GlobalAllow::compile(&file.allowlist.values)
        .map_err(|message| DetectError::Allowlist { message })?;
    let mut rules = Vec::with_capacity(file.rule.len());
    for r in file.rule {
        if rules.iter().any(|x: &Rule| x.id == r.id) {
            return Err(DetectError::Duplicate { rule: r.id });
        }
        rules.push(compile_rule(r)?);
    }

    let mut patterns: Vec<String> = Vec::new();
    let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
    let mut everywhere = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.keywords.is_empty() {
            everywhere.push(i);
        }
        for k in &rule.keywords {
            match patterns.iter().position(|p| p == k) {
                Some(p) => keyword_rules[p].push(i),
                None => {
                    patterns.push(k.clone());
                    keyword_rules.push(vec![i]);
                }
            }
        }
    }
    // Standard semantics so that overlapping keywords ("sk-" inside "sk-ant-") are all
    // reported; a DFA because the automaton is built once and searched for every text.
    let keywords = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .build(&patterns)
        .map_err(|e| DetectError::Keywords {
            message: e.to_string(),
        })?;
    let set = RuleSet {
        rules,
        keywords,
        keyword_rules,
        everywhere,
        allow,
    };
    Ok((set, file.allowlist))
}

fn compile_rule(r: RuleFile) -> Result<Rule, DetectError> {
    let err = |message: String| DetectError::Rule {
        rule: r.id.clone(),
        message,
    };
    let regex_err = |message: String| DetectError::Regex {
        rule: r.id.clone(),
        message,
    };
    if r.id.is_empty()
        || !r
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err("an id is lower-case letters, digits and dashes".into()));
    }
    if r.description.trim().is_empty() || r.source.trim().is_empty() {
        return Err(err("a rule needs a description and a source".into()));
    }
    if r.keywords.is_empty() && !r.privacy {
        // A rule without keywords searches every text whole, which the throughput target
        // cannot afford outside the opt-in privacy mode.
        return Err(err("a rule outside privacy mode needs keywords".into()));
    }
    if let Some(k) = r
        .keywords
        .iter()
        .find(|k| k.is_empty() || **k != k.to_ascii_lowercase())
    {
        return Err(err(format!("keyword `{k}` must be non-empty lower-case")));
    }
    if r.examples.is_empty() || r.not_examples.is_empty() {
        return Err(err(
            "a rule needs at least one example and one not_example".into()
        ));
    }
    let regex = compile_regex(&r.regex).map_err(regex_err)?;
    if let Some(g) = r.secret_group
        && g >= regex
            .group_info()
            .group_len(regex_automata::PatternID::ZERO)
    {
        return Err(err(format!("secret_group {g} does not exist")));
    }
    let list = |v: &[String]| {
        v.iter()
            .map(|p| compile_regex(p))
            .collect::<Result<Vec<_>, _>>()
    };
    let check = r
        .check
        .as_deref()
        .map(|c| Check::parse(c).ok_or_else(|| err(format!("unknown check `{c}`"))))
        .transpose()?;
    let max_lines = match (r.multiline, r.max_lines) {
        (false, None) => 1,
        (false, Some(_)) => return Err(err("max_lines needs multiline = true".into())),
        (true, None) => return Err(err("a multi-line rule needs max_lines".into())),
        (true, Some(n)) => n,
    };
    Ok(Rule {
        allow: list(&r.allow).map_err(regex_err)?,
        allow_match: list(&r.allow_match).map_err(regex_err)?,
        id: r.id,
        description: r.description.trim().to_string(),
        source: r.source,
        keywords: r.keywords,
        entropy: r.entropy,
        privacy: r.privacy,
        global_allowlist: r.global_allowlist,
        multiline: r.multiline,
        max_lines,
        before: r.before.unwrap_or(DEFAULT_BEFORE),
        after: r.after.unwrap_or(DEFAULT_AFTER),
        regex,
        secret_group: r.secret_group,
        check,
        examples: r.examples,
        not_examples: r.not_examples,
    })
}

impl RuleSet {
    /// Where the first match of an enabled multi-line rule could start in `hay`: the start
    /// of the line holding the first keyword of such a rule (0 for one without keywords);
    /// `None` when no multi-line match can start anywhere in it.
    pub(super) fn multiline_from(
        &self,
        hay: &[u8],
        enabled: impl Fn(&Rule) -> bool,
    ) -> Option<usize> {
        if self
            .everywhere
            .iter()
            .any(|&i| enabled(&self.rules[i]) && self.rules[i].max_lines > 1)
        {
            return Some(0);
        }
        let first = self
            .keywords
            .find_overlapping_iter(hay)
            .filter(|m| {
                self.keyword_rules[m.pattern().as_usize()]
                    .iter()
                    .any(|&i| enabled(&self.rules[i]) && self.rules[i].max_lines > 1)
            })
            .map(|m| m.start())
            .min()?;
        Some(memchr::memrchr(b'\n', &hay[..first]).map_or(0, |n| n + 1))
    }

    /// Matches of the rules that `enabled` selects, unmerged.
    pub(super) fn scan(&self, text: &str, enabled: impl Fn(&Rule) -> bool) -> Vec<Raw> {
        let hay = text.as_bytes();
        // (rule, window) pairs; a keyword inside the rule's previous window adds nothing.
        let mut windows: Vec<(usize, Range<usize>)> = Vec::new();
        let mut last: Vec<Option<Range<usize>>> = vec![None; self.rules.len()];
        for m in self.keywords.find_overlapping_iter(hay) {
            for &i in &self.keyword_rules[m.pattern().as_usize()] {
                let rule = &self.rules[i];
                if last[i]
                    .as_ref()
                    .is_some_and(|w| w.start <= m.start() && m.end() <= w.end)
                {
                    continue;
                }
                if !enabled(rule) {
                    continue;
                }
                let w = rule.window(hay, m.start()..m.end());
                last[i] = Some(w.clone());
                windows.push((i, w));
            }
        }
        for &i in &self.everywhere {
            if enabled(&self.rules[i]) {
                windows.push((i, 0..hay.len()));
            }
        }
        if windows.is_empty() {
            return Vec::new();
        }
        windows.sort_unstable_by_key(|(i, w)| (*i, w.start, w.end));

        let mut out = Vec::new();
        let mut caps: Option<(usize, Captures)> = None;
        let mut pending: Option<(usize, Range<usize>)> = None;
        for (i, w) in windows {
            match &mut pending {
                Some((j, p)) if *j == i && w.start <= p.end => p.end = p.end.max(w.end),
                _ => {
                    if let Some((j, p)) = pending.replace((i, w)) {
                        self.run(j, text, p, &mut caps, &mut out);
                    }
                }
            }
        }
        if let Some((j, p)) = pending {
            self.run(j, text, p, &mut caps, &mut out);
        }
        out
    }

    fn run(
        &self,
        i: usize,
        text: &str,
        span: Range<usize>,
        caps: &mut Option<(usize, Captures)>,
        out: &mut Vec<Raw>,
    ) {
        let rule = &self.rules[i];
        if caps.as_ref().is_none_or(|(j, _)| *j != i) {
            *caps = Some((i, rule.regex.create_captures()));
        }
        if let Some((_, c)) = caps.as_mut() {
            rule.search(i, text, span, &self.allow, c, out);
        }
    }

    /// Every rule's examples and the allowlist's, run through the same scan as real text;
    /// all failures, so that a maintainer sees them at once.
    fn example_failures(&self, allowlist: &AllowlistFile) -> Vec<DetectError> {
        let mut failures = Vec::new();
        for (index, v) in allowlist.examples.iter().enumerate() {
            if !self.allow.allows(v.as_bytes()) {
                failures.push(DetectError::Allowlist {
                    message: format!("example {index} is not allowed"),
                });
            }
        }
        for (index, v) in allowlist.not_examples.iter().enumerate() {
            if self.allow.allows(v.as_bytes()) {
                failures.push(DetectError::Allowlist {
                    message: format!("not_example {index} is allowed"),
                });
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let err = |index: usize, problem: &str| DetectError::Example {
                rule: rule.id.clone(),
                index,
                problem: problem.to_string(),
            };
            for (index, example) in rule.examples.iter().enumerate() {
                let Some((text, want)) = unmark(example) else {
                    failures.push(err(index, "has unbalanced «» marks"));
                    continue;
                };
                let got = self.scan(&text, |r| std::ptr::eq(r, rule));
                let ok = match &want {
                    Some(w) => got.iter().any(|r| r.rule == i && (r.start..r.end) == *w),
                    None => !got.is_empty(),
                };
                if !ok {
                    failures.push(err(
                        index,
                        if got.is_empty() {
                            "is not detected"
                        } else {
                            "is detected at the wrong place"
                        },
                    ));
                }
            }
            for (index, example) in rule.not_examples.iter().enumerate() {
                if !self.scan(example, |r| std::ptr::eq(r, rule)).is_empty() {
                    failures.push(err(index, "(not_examples) is detected"));
                }
            }
        }
        failures
    }
}

/// Removes the `«…»` marks of an example and says where the secret between them is.
fn unmark(example: &str) -> Option<(String, Option<Range<usize>>)> {
    let open = example.find(MARK_OPEN);
    let close = example.find(MARK_CLOSE);
    match (open, close) {
        (None, None) => Some((example.to_string(), None)),
        (Some(o), Some(c)) if o < c => {
            let inner = &example[o + MARK_OPEN.len_utf8()..c];
            let after = &example[c + MARK_CLOSE.len_utf8()..];
            if inner.contains([MARK_OPEN, MARK_CLOSE]) || after.contains([MARK_OPEN, MARK_CLOSE]) {
                return None;
            }
            let text = format!("{}{}{}", &example[..o], inner, after);
            Some((text, Some(o..o + inner.len())))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All example failures of the shipped rules at once (the load stops at the first).
    #[test]
    fn shipped_examples_all_pass() {
        let (set, allowlist) = compile_unchecked(RULES).unwrap();
        let failures: Vec<String> = set
            .example_failures(&allowlist)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(failures, Vec::<String>::new());
    }

    #[test]
    fn tidy_trims_blanks_and_escapes() {
        let cases = [
            ("  abc  ", Some(2..5)),
            ("\\nabc\\n", Some(2..5)),
            ("\\n \n", None),
            ("abc", Some(0..3)),
        ];
        for (text, want) in cases {
            assert_eq!(tidy(text, 0..text.len()), want, "{text:?}");
        }
        // A span ending inside "é" grows to its end.
        assert_eq!(tidy("aé", 0..2), Some(0..3));
    }

    #[test]
    fn entropy_of_known_strings() {
        let cases = [
            ("", 0.0),
            ("aaaa", 0.0),
            ("abab", 1.0),
            ("abcd", 2.0),
            ("abcdefgh", 3.0),
        ];
        for (s, want) in cases {
            assert!((shannon(s.as_bytes()) - want).abs() < 1e-9, "{s}");
        }
    }

    #[test]
    fn unmark_finds_the_secret() {
        assert_eq!(unmark("a=«xyz»;"), Some(("a=xyz;".to_string(), Some(2..5))));
        assert_eq!(unmark("plain"), Some(("plain".to_string(), None)));
        assert_eq!(unmark("«a«b»"), None);
        assert_eq!(unmark("»a«"), None);
    }

    #[test]
    fn a_failing_example_stops_the_rules_without_quoting_it() {
        let text = r#"
[allowlist]
values = []
[[rule]]
id = "demo"
description = "demo"
source = "test"
regex = '''\b(tok_[a-z]{8})\b'''
keywords = ["tok_"]
examples = ["x = «tok_abcdefgh»", "x = «tok_short»"]
not_examples = ["tok_"]
"#;
        let err = compile(text).map(|_| ()).unwrap_err();
        assert_eq!(
            err,
            DetectError::Example {
                rule: "demo".into(),
                index: 1,
                problem: "is not detected".into()
            }
        );
        assert!(!err.to_string().contains("tok_short"));
    }

    #[test]
    fn malformed_rules_are_refused() {
        let rule = |extra: &str, regex: &str, keywords: &str| {
            format!(
                "[allowlist]\nvalues = []\n[[rule]]\nid = \"demo\"\ndescription = \"d\"\nsource = \"s\"\nregex = '''{regex}'''\nkeywords = {keywords}\nexamples = [\"tok_abcdefgh\"]\nnot_examples = [\"x\"]\n{extra}"
            )
        };
        let cases = [
            (rule("", "(tok_[a-z]{8}", r#"["tok_"]"#), "regex"),
            (rule("", "tok_[a-z]{8}", "[]"), "rule"),
            (rule("", "tok_[a-z]{8}", r#"["TOK_"]"#), "rule"),
            (
                rule("check = \"nope\"", "tok_[a-z]{8}", r#"["tok_"]"#),
                "rule",
            ),
            (
                rule("secret_group = 3", "(tok_[a-z]{8})", r#"["tok_"]"#),
                "rule",
            ),
            (
                rule("multiline = true", "tok_[a-z]{8}", r#"["tok_"]"#),
                "rule",
            ),
            (rule("colour = 1", "tok_[a-z]{8}", r#"["tok_"]"#), "syntax"),
        ];
        for (text, kind) in cases {
            let got = match compile(&text) {
                Err(DetectError::Regex { .. }) => "regex",
                Err(DetectError::Rule { .. }) => "rule",
                Err(DetectError::Syntax { .. }) => "syntax",
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => "ok",
            };
            assert_eq!(got, kind, "{text}");
        }
    }
}
