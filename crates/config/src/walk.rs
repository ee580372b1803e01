//! Strict reading of a parsed TOML table: every key known, every value of its type, and
//! every complaint named by the key's path (`profiles.prod.auto_approve[2]`).
//!
//! Messages never quote a value whose key could name a secret; values that are not
//! strings are described by their type only.

use toml::{Table, Value};

/// A complaint about one key; the caller adds the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub key: String,
    pub message: String,
}

impl Issue {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// What to say about a secret found in config.toml.
pub(crate) const SECRET_HERE: &str = "secrets never go in config.toml, which is often readable \
     by everyone: export the variable named by the provider's api_key_env, or put \
     `NAME = \"…\"` in credentials.toml (mode 0600) next to config.toml";

/// `path.key`, quoting a key that is not bare in TOML.
pub(crate) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// Whether a key's name says it holds a credential (`api_key`, `token`, `bot_token`, …).
/// `api_key_env` names a variable, not a value, and is not one.
pub(crate) fn is_secret_like(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    matches!(
        k.as_str(),
        "key"
            | "token"
            | "secret"
            | "password"
            | "passwd"
            | "apikey"
            | "credential"
            | "credentials"
    ) || ["_key", "_token", "_secret", "_password", "_passwd"]
        .iter()
        .any(|suffix| k.ends_with(suffix))
}

/// The first key anywhere below `table` (arrays of tables included) that looks like a
/// credential, as a path; checked before anything else so the answer is about the secret,
/// not about an unknown key around it.
pub(crate) fn find_secret(path: &str, table: &Table) -> Option<String> {
    for (key, value) in table {
        let here = join(path, key);
        // A table is a namespace (a profile called `deploy_key`), not a value.
        if is_secret_like(key) && !value.is_table() {
            return Some(here);
        }
        if let Some(found) = find_secret_in(&here, value) {
            return Some(found);
        }
    }
    None
}

fn find_secret_in(path: &str, value: &Value) -> Option<String> {
    match value {
        Value::Table(t) => find_secret(path, t),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_secret_in(&format!("{path}[{i}]"), v)),
        _ => None,
    }
}

/// `a string`, `an integer`, … for messages.
fn a_type(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// One table of the document and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    pub path: String,
    pub table: &'a Table,
}

impl<'a> Node<'a> {
    pub(crate) fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Refuses keys outside `allowed`.
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), Issue> {
        match self.table.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) if is_secret_like(k) => Err(Issue::new(self.key(k), SECRET_HERE)),
            Some(k) => Err(Issue::new(
                self.key(k),
                format!("unknown key (expected one of: {})", allowed.join(", ")),
            )),
        }
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>, Issue> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Issue::new(
                self.key(key),
                format!("expected a string, found {}", a_type(other)),
            )),
        }
    }

    pub(crate) fn integer(&self, key: &str) -> Result<Option<i64>, Issue> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(*i)),
            Some(other) => Err(Issue::new(
                self.key(key),
                format!("expected an integer, found {}", a_type(other)),
            )),
        }
    }

    /// A list of strings, each with its own path (`key[i]`) for later complaints.
    pub(crate) fn strings(&self, key: &str) -> Result<Option<Vec<(String, &'a str)>>, Issue> {
        let path = self.key(key);
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok((format!("{path}[{i}]"), s.as_str())),
                    other => Err(Issue::new(
                        format!("{path}[{i}]"),
                        format!("expected a string, found {}", a_type(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(Issue::new(
                path,
                format!("expected an array of strings, found {}", a_type(other)),
            )),
        }
    }

    /// A sub-table.
    pub(crate) fn table(&self, key: &str) -> Result<Option<Node<'a>>, Issue> {
        let path = self.key(key);
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(Node { path, table: t })),
            Some(other) => Err(Issue::new(
                path,
                format!("expected a table, found {}", a_type(other)),
            )),
        }
    }

    /// Every entry of this table, each of which must be a table (`[profiles.*]`).
    pub(crate) fn entries(&self) -> Result<Vec<(&'a str, Node<'a>)>, Issue> {
        self.table
            .iter()
            .map(|(k, v)| {
                let path = self.key(k);
                match v {
                    Value::Table(t) => Ok((k.as_str(), Node { path, table: t })),
                    other => Err(Issue::new(
                        path,
                        format!("expected a table, found {}", a_type(other)),
                    )),
                }
            })
            .collect()
    }
}

/// toml's error position as a 1-based line and column, from the byte span.
pub(crate) fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// toml's message on one line, without the quoted source line (which could hold a key).
pub(crate) fn syntax_message(e: &toml::de::Error) -> String {
    e.message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn secret_like_keys() {
        for (key, expected) in [
            ("api_key", true),
            ("key", true),
            ("token", true),
            ("bot_token", true),
            ("Access-Key", true),
            ("client_secret", true),
            ("password", true),
            ("api_key_env", false),
            ("api_endpoint", false),
            ("keyword", false),
            ("tokens_per_minute", false),
        ] {
            assert_eq!(is_secret_like(key), expected, "{key}");
        }
    }

    #[test]
    fn paths_quote_keys_that_are_not_bare() {
        assert_eq!(join("", "profiles"), "profiles");
        assert_eq!(join("profiles", "prod-eu"), "profiles.prod-eu");
        assert_eq!(join("profiles", "a.b"), "profiles.\"a.b\"");
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(position("ab\ncd", 0), (1, 1));
        assert_eq!(position("ab\ncd", 4), (2, 2));
    }
}
