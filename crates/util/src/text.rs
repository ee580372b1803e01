//! Error messages made to fit one line: a log line, a D-Bus error, a report row.

/// `message` on one line, without the diagram some parsers draw under it.
///
/// toml (and the regex parser) render an error as the position, a quoted source line with a
/// caret line under it, and the words. The quoted line could hold a secret and the layout
/// breaks a log line, so only the position and the words are kept, joined by `": "`.
pub fn one_line(message: &str) -> String {
    let is_diagram = |l: &str| {
        let rest = l
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        rest.starts_with('|') || l.chars().all(|c| c == '^' || c.is_whitespace())
    };
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_diagram(l))
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_diagram_becomes_its_position_and_words() {
        let message = "TOML parse error at line 2, column 7\n  |\n2 | key = \"sk-live-123\n  |       ^\ninvalid basic string, expected `\"`\n";
        assert_eq!(
            one_line(message),
            "TOML parse error at line 2, column 7: invalid basic string, expected `\"`"
        );
    }

    #[test]
    fn what_toml_itself_reports_keeps_no_source_line() {
        let e = toml::from_str::<toml::Table>("a = 1\nkey = \"sk-live-123\n").unwrap_err();
        let line = one_line(&e.to_string());
        assert!(!line.contains('\n') && !line.contains("sk-live"), "{line}");
        assert!(line.contains("line 2"), "{line}");
    }

    #[test]
    fn a_plain_message_is_kept() {
        assert_eq!(one_line("missing field `id`"), "missing field `id`");
        assert_eq!(one_line(""), "");
    }
}
