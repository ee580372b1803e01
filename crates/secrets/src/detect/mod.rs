//! Rule-based detection of credentials in text, and of personal data in privacy mode.
//!
//! The rules are data: `rules.toml` beside this file, embedded in the binary and compiled
//! once per process (regexes, the keyword automaton, and every rule's examples, which must
//! pass before any rule takes effect). [`Detector::detect`] returns byte ranges of secret
//! *values* (the captured group, not the key name around it), sorted and non-overlapping,
//! with the id of the rule that found each. A [`Detection`] holds offsets, never the value,
//! so nothing here can leak a secret through `Debug`, an error or a panic message.
//!
//! How a search stays fast: one Aho-Corasick automaton over every rule's keywords finds,
//! case-insensitively, where a rule could match at all. A rule's regex then runs only on a
//! window around each keyword occurrence — the line holding it, cut to a few KiB on very
//! long lines, or a bounded stretch after it for multi-line rules (PEM blocks). Text without
//! keywords costs one automaton pass. The regexes run on bytes with ASCII semantics
//! (`\w`, `\b`, `(?i)`), searched over the window while seeing the text around it, so `\b`
//! and `^` at a window edge mean what they would on the whole text.
//!
//! A candidate is then filtered: minimum Shannon entropy of the value, the rule's own
//! allowlist (on the value and on the whole match), the global allowlist of placeholders
//! (`${VAR}`, `{{…}}`, `<…>`, `changeme`, `xxxx`, our own `[REDACTED_SECRET:…]`, …), and for
//! a few rules a check written in code (`check.rs`: a JWT that carries Kubernetes claims,
//! base64 that decodes to a private key, a public IP address).

mod allow;
mod check;
mod rules;

use std::{fmt, ops::Range};

pub use rules::Rule;

/// What to detect besides credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectOptions {
    /// Also report public IPv4/IPv6 addresses and AWS account ids. Off by default.
    pub privacy: bool,
}

/// One secret found in a text: the byte range of its value and the rule that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Detection {
    pub start: usize,
    pub end: usize,
    /// Id of the rule that found it (see [`Detector::rules`]).
    pub rule_id: &'static str,
}

impl Detection {
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// The built-in rules are unusable. Only a broken build can cause this; messages name the
/// rule and the example's position, never an example's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("detection rules: {message}")]
    Syntax { message: String },
    #[error("detection rule {rule}: bad regular expression: {message}")]
    Regex { rule: String, message: String },
    #[error("detection rule {rule}: {message}")]
    Rule { rule: String, message: String },
    #[error("detection rule id {rule} is defined twice")]
    Duplicate { rule: String },
    #[error("detection rule {rule}: example {index} {problem}")]
    Example {
        rule: String,
        index: usize,
        problem: String,
    },
    #[error("detection allowlist: {message}")]
    Allowlist { message: String },
    #[error("detection keywords: {message}")]
    Keywords { message: String },
}

/// Finds secrets in text with the built-in rules. Cheap to create: the rules are compiled
/// once per process and shared.
#[derive(Clone, Copy)]
pub struct Detector {
    set: &'static rules::RuleSet,
    options: DetectOptions,
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("rules", &self.set.rules.len())
            .field("options", &self.options)
            .finish()
    }
}

impl Detector {
    pub fn new(options: DetectOptions) -> Result<Detector, DetectError> {
        Ok(Detector {
            set: rules::builtin()?,
            options,
        })
    }

    pub fn options(&self) -> DetectOptions {
        self.options
    }

    /// The most lines one detection can span with the rules these options enable (a PEM
    /// block): a caller that feeds text in pieces holds back that many lines.
    pub fn max_lines(&self) -> usize {
        self.set
            .rules
            .iter()
            .filter(|r| self.options.privacy || !r.privacy())
            .map(Rule::max_lines)
            .max()
            .unwrap_or(1)
    }

    /// Where in `text` a match spanning several lines could start: the start of the line
    /// holding the first keyword of an enabled multi-line rule (a PEM block's `-----BEGIN`);
    /// `None` when no such match can start in it. A caller feeding text in pieces need
    /// hold back lines only from there.
    pub fn multiline_from(&self, text: &[u8]) -> Option<usize> {
        self.set
            .multiline_from(text, |r| self.options.privacy || !r.privacy())
    }

    /// Every rule, privacy rules included (see [`Rule::privacy`]), in priority order.
    pub fn rules(&self) -> &'static [Rule] {
        &self.set.rules
    }

    /// The secrets in `text`: sorted, non-overlapping byte ranges on character boundaries.
    /// Where detections overlap they are merged into one covering all of them, named after
    /// the longest (on a tie, the rule listed first: specific rules come before generic).
    pub fn detect(&self, text: &str) -> Vec<Detection> {
        let privacy = self.options.privacy;
        let raw = self.set.scan(text, |rule| privacy || !rule.privacy());
        merge(&self.set.rules, raw)
    }

    /// What one rule finds on its own, before merging; privacy rules run whatever the
    /// options say. For tests and for explaining a detection.
    pub fn detect_with_rule(&self, rule_id: &str, text: &str) -> Vec<Detection> {
        let raw = self.set.scan(text, |rule| rule.id() == rule_id);
        raw.into_iter()
            .map(|r| Detection {
                start: r.start,
                end: r.end,
                rule_id: self.set.rules[r.rule].id(),
            })
            .collect()
    }
}

/// A match of one rule, before overlapping matches are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raw {
    pub rule: usize,
    pub start: usize,
    pub end: usize,
}

fn merge(rules: &'static [Rule], mut raw: Vec<Raw>) -> Vec<Detection> {
    raw.sort_unstable_by_key(|r| (r.start, std::cmp::Reverse(r.end), r.rule));
    let mut out: Vec<(Raw, Range<usize>)> = Vec::with_capacity(raw.len());
    for r in raw {
        if let Some((best, span)) = out.last_mut()
            && r.start < span.end
        {
            span.end = span.end.max(r.end);
            let (len, best_len) = (r.end - r.start, best.end - best.start);
            if len > best_len || (len == best_len && r.rule < best.rule) {
                *best = r;
            }
            continue;
        }
        out.push((r, r.start..r.end));
    }
    out.into_iter()
        .map(|(best, span)| Detection {
            start: span.start,
            end: span.end,
            rule_id: rules[best.rule].id(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_matches_merge_under_the_longest() {
        let rules = &rules::builtin().unwrap().rules;
        let raw = vec![
            Raw {
                rule: 3,
                start: 10,
                end: 20,
            },
            Raw {
                rule: 1,
                start: 12,
                end: 30,
            },
            Raw {
                rule: 0,
                start: 40,
                end: 50,
            },
            Raw {
                rule: 2,
                start: 40,
                end: 50,
            },
            Raw {
                rule: 4,
                start: 50,
                end: 55,
            },
        ];
        let got = merge(rules, raw);
        let want = vec![
            Detection {
                start: 10,
                end: 30,
                rule_id: rules[1].id(),
            },
            Detection {
                start: 40,
                end: 50,
                rule_id: rules[0].id(),
            },
            Detection {
                start: 50,
                end: 55,
                rule_id: rules[4].id(),
            },
        ];
        assert_eq!(got, want);
    }
}
