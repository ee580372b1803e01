//! Globs over rulebook URIs: `*` any run of characters but `/`, `?` one character but
//! `/`, `**` any run including `/`; everything else stands for itself.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    One,
    Segment,
    Any,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' if chars.peek() == Some(&'*') => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                Token::Any
            }
            '*' => Token::Segment,
            '?' => Token::One,
            c => Token::Literal(c),
        });
    }
    out
}

/// Whether `text` matches `pattern` as a whole. Dynamic programming over (token, char), so
/// time is bounded by their product whatever the pattern.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let pattern = tokens(pattern);
    let text: Vec<char> = text.chars().collect();
    // row[j]: the tokens so far match text[..j].
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for token in &pattern {
        let mut next = vec![false; text.len() + 1];
        match token {
            Token::Any | Token::Segment => {
                let crosses = *token == Token::Any;
                next[0] = row[0];
                for j in 1..=text.len() {
                    next[j] = row[j] || (next[j - 1] && (crosses || text[j - 1] != '/'));
                }
            }
            Token::One => {
                for j in 1..=text.len() {
                    next[j] = row[j - 1] && text[j - 1] != '/';
                }
            }
            Token::Literal(c) => {
                for j in 1..=text.len() {
                    next[j] = row[j - 1] && text[j - 1] == *c;
                }
            }
        }
        row = next;
    }
    row[text.len()]
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn table() {
        for (pattern, text, expected) in [
            (
                "stakpak://rulebooks/disk-full",
                "stakpak://rulebooks/disk-full",
                true,
            ),
            (
                "stakpak://rulebooks/*",
                "stakpak://rulebooks/disk-full",
                true,
            ),
            (
                "stakpak://rulebooks/*",
                "stakpak://rulebooks/k8s/crashloop",
                false,
            ),
            (
                "stakpak://rulebooks/**",
                "stakpak://rulebooks/k8s/crashloop",
                true,
            ),
            (
                "stakpak://**/crashloop",
                "stakpak://rulebooks/k8s/crashloop",
                true,
            ),
            ("**", "anything/at/all", true),
            ("*", "a/b", false),
            (
                "stakpak://rulebooks/disk-?ull",
                "stakpak://rulebooks/disk-full",
                true,
            ),
            (
                "stakpak://rulebooks/disk?full",
                "stakpak://rulebooks/disk/full",
                false,
            ),
            ("*disk*", "disk", true),
            ("*disk*", "stakpak://rulebooks/disk-full", false),
            ("**disk*", "stakpak://rulebooks/disk-full", true),
            ("", "", true),
            ("", "a", false),
            ("a", "", false),
        ] {
            assert_eq!(matches(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(200);
        let text = "a".repeat(199);
        assert!(!matches(&pattern, &text));
    }
}
