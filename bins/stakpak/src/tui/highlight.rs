//! Syntax highlighting for code blocks: a small per-line tokenizer (comments, strings,
//! numbers, keywords) for the languages an operator meets most, and plain text for the rest.
//!
//! Per line on purpose: a code block streams in line by line, and a colouring that a later
//! line could change (an unclosed block comment) would make the text jump while it arrives.

use ratatui::{
    style::{Color, Modifier, Style},
    text::Span,
};

/// The token kinds, each with its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Keyword,
    String,
    Number,
    Comment,
}

impl Kind {
    fn style(self) -> Style {
        match self {
            Kind::Plain => Style::new().fg(Color::Gray),
            Kind::Keyword => Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
            Kind::String => Style::new().fg(Color::Green),
            Kind::Number => Style::new().fg(Color::Yellow),
            Kind::Comment => Style::new()
                .fg(Color::DarkGray)
                .add_modifier(Modifier::ITALIC),
        }
    }
}

/// What a language looks like to the tokenizer.
#[derive(Debug)]
struct Language {
    line_comments: &'static [&'static str],
    keywords: &'static [&'static str],
}

const SHELL: Language = Language {
    line_comments: &["#"],
    keywords: &[
        "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
        "in", "function", "return", "export", "local", "readonly", "set", "unset", "sudo", "echo",
        "exit",
    ],
};

const RUST: Language = Language {
    line_comments: &["//"],
    keywords: &[
        "as", "async", "await", "break", "const", "continue", "crate", "else", "enum", "false",
        "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
        "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
        "unsafe", "use", "where", "while",
    ],
};

const PYTHON: Language = Language {
    line_comments: &["#"],
    keywords: &[
        "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
        "elif", "else", "except", "False", "finally", "for", "from", "global", "if", "import",
        "in", "is", "lambda", "None", "not", "or", "pass", "raise", "return", "True", "try",
        "while", "with", "yield",
    ],
};

const CONFIG: Language = Language {
    line_comments: &["#"],
    keywords: &["true", "false", "null", "yes", "no", "on", "off"],
};

const C_LIKE: Language = Language {
    line_comments: &["//"],
    keywords: &[
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "default",
        "else",
        "export",
        "false",
        "for",
        "func",
        "function",
        "go",
        "if",
        "import",
        "interface",
        "let",
        "new",
        "null",
        "package",
        "return",
        "struct",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "type",
        "var",
        "void",
        "while",
    ],
};

const SQL: Language = Language {
    line_comments: &["--"],
    keywords: &[
        "select", "from", "where", "insert", "into", "values", "update", "set", "delete", "create",
        "table", "drop", "alter", "join", "left", "right", "inner", "on", "and", "or", "not",
        "null", "group", "by", "order", "limit", "as", "SELECT", "FROM", "WHERE", "INSERT", "INTO",
        "VALUES", "UPDATE", "SET", "DELETE", "CREATE", "TABLE", "DROP", "ALTER", "JOIN", "ON",
        "AND", "OR", "NOT", "NULL", "GROUP", "BY", "ORDER", "LIMIT", "AS",
    ],
};

fn language(name: &str) -> Option<&'static Language> {
    Some(match name.to_ascii_lowercase().as_str() {
        "sh" | "bash" | "shell" | "zsh" | "console" | "shellsession" => &SHELL,
        "rust" | "rs" => &RUST,
        "python" | "py" => &PYTHON,
        "yaml" | "yml" | "toml" | "ini" | "conf" | "dockerfile" | "nginx" => &CONFIG,
        "json" | "js" | "javascript" | "ts" | "typescript" | "go" | "c" | "cpp" | "java"
        | "hcl" | "terraform" | "tf" => &C_LIKE,
        "sql" => &SQL,
        _ => return None,
    })
}

/// One line of code in `lang` as coloured spans; unknown languages come back plain.
pub fn highlight(lang: &str, line: &str) -> Vec<Span<'static>> {
    let Some(language) = language(lang) else {
        return vec![Span::styled(line.to_string(), Kind::Plain.style())];
    };
    let mut spans: Vec<(Kind, String)> = Vec::new();
    let push = |spans: &mut Vec<(Kind, String)>, kind: Kind, text: &str| match spans.last_mut() {
        Some((k, t)) if *k == kind => t.push_str(text),
        _ => spans.push((kind, text.to_string())),
    };
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if language.line_comments.iter().any(|m| rest.starts_with(m))
            && comment_may_start(line, rest)
        {
            push(&mut spans, Kind::Comment, rest);
            break;
        }
        let len = if c == '"' || c == '\'' || c == '`' {
            let end = rest[1..].find(c).map(|i| i + 2).unwrap_or(rest.len());
            push(&mut spans, Kind::String, &rest[..end]);
            end
        } else if c.is_ascii_digit() {
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.' || ch == '_'))
                .unwrap_or(rest.len());
            push(&mut spans, Kind::Number, &rest[..end]);
            end
        } else if c.is_alphabetic() || c == '_' {
            let end = rest
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            let kind = if language.keywords.contains(&word) {
                Kind::Keyword
            } else {
                Kind::Plain
            };
            push(&mut spans, kind, word);
            end
        } else {
            let end = c.len_utf8();
            push(&mut spans, Kind::Plain, &rest[..end]);
            end
        };
        rest = &rest[len..];
    }
    spans
        .into_iter()
        .map(|(kind, text)| Span::styled(text, kind.style()))
        .collect()
}

/// A `#` starts a comment at the start of a line or after a space, not inside a word
/// (`$#`, `a#b`, a URL's fragment).
fn comment_may_start(line: &str, rest: &str) -> bool {
    let before = &line[..line.len() - rest.len()];
    before.is_empty() || before.ends_with(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(lang: &str, line: &str) -> Vec<(String, Style)> {
        highlight(lang, line)
            .into_iter()
            .map(|s| (s.content.to_string(), s.style))
            .collect()
    }

    #[test]
    fn tokenizes_keywords_strings_numbers_and_comments() {
        let k = Kind::style;
        assert_eq!(
            kinds("bash", "if [ -f \"$X\" ]; then echo 42 # done"),
            vec![
                ("if".into(), k(Kind::Keyword)),
                (" [ -f ".into(), k(Kind::Plain)),
                ("\"$X\"".into(), k(Kind::String)),
                (" ]; ".into(), k(Kind::Plain)),
                ("then".into(), k(Kind::Keyword)),
                (" ".into(), k(Kind::Plain)),
                ("echo".into(), k(Kind::Keyword)),
                (" ".into(), k(Kind::Plain)),
                ("42".into(), k(Kind::Number)),
                (" ".into(), k(Kind::Plain)),
                ("# done".into(), k(Kind::Comment)),
            ]
        );
        assert_eq!(
            kinds("text", "fn main() {}"),
            vec![("fn main() {}".into(), k(Kind::Plain))]
        );
        assert_eq!(
            kinds("rust", "let s = \"unterminated"),
            vec![
                ("let".into(), k(Kind::Keyword)),
                (" s = ".into(), k(Kind::Plain)),
                ("\"unterminated".into(), k(Kind::String)),
            ]
        );
    }
}
