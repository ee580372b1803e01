//! The global allowlist: values that are placeholders, templates or elisions, never secrets,
//! whichever rule found them.

use regex_automata::meta::Regex;

/// The `[allowlist] values` of `rules.toml`, plus the one test a regex cannot express.
#[derive(Debug)]
pub(super) struct GlobalAllow {
    /// All patterns in one regex: one search per candidate value.
    any: Option<Regex>,
}

impl GlobalAllow {
    pub(super) fn compile(patterns: &[String]) -> Result<GlobalAllow, String> {
        if patterns.is_empty() {
            return Ok(GlobalAllow { any: None });
        }
        let syntax = regex_automata::util::syntax::Config::new()
            .unicode(false)
            .utf8(false);
        let any = Regex::builder()
            .syntax(syntax)
            .build_many(patterns)
            .map_err(|e| {
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })?;
        Ok(GlobalAllow { any: Some(any) })
    }

    /// True when `value` is not a secret whatever its shape.
    pub(super) fn allows(&self, value: &[u8]) -> bool {
        few_distinct(value) || self.any.as_ref().is_some_and(|re| re.is_match(value))
    }
}

/// Fewer than three distinct bytes: `aaaaaaaa`, `0000-0000`, `........`. (A regex would
/// need back-references for "one repeated character", which the engine does not have.)
fn few_distinct(value: &[u8]) -> bool {
    let mut seen: [Option<u8>; 2] = [None; 2];
    for &b in value {
        match seen {
            [Some(a), _] if a == b => {}
            [_, Some(c)] if c == b => {}
            [None, _] => seen[0] = Some(b),
            [_, None] => seen[1] = Some(b),
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_bytes() {
        let cases = [
            ("", true),
            ("aaaaaaaa", true),
            ("0000-0000", true),
            ("abab", true),
            ("abc", false),
            ("aab-", false),
        ];
        for (v, want) in cases {
            assert_eq!(few_distinct(v.as_bytes()), want, "{v}");
        }
    }
}
