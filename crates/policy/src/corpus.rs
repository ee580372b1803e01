//! Corpus files: `[[case]]` tables with the command, the expected decision and, optionally,
//! the deciding rule. Our own corpus, destructive_command_guard's and an operator's
//! `stakpak policy test --corpus FILE` all use this shape.

use serde::Deserialize;

/// One case.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Case {
    /// Absent for cases of another input kind (destructive_command_guard's hook JSON), which
    /// callers skip.
    #[serde(default)]
    pub command: Option<String>,
    /// `allow`, `ask` or `deny` (`expected_decision` in destructive_command_guard's files).
    #[serde(alias = "expected_decision")]
    pub expected: String,
    /// The rule that must decide; absent when no rule may match.
    #[serde(default)]
    pub rule: Option<String>,
    /// destructive_command_guard's own rule id, for reports only.
    #[serde(default)]
    pub rule_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CaseFile {
    #[serde(default)]
    case: Vec<Case>,
}

/// The cases of one corpus file, in order.
pub fn parse(text: &str) -> Result<Vec<Case>, toml::de::Error> {
    toml::from_str::<CaseFile>(text).map(|f| f.case)
}
