//! Lines of styled text and their wrapping to a width.
//!
//! The chat view wraps everything itself (instead of letting `Paragraph` do it) so that it
//! knows how many rows each entry takes, can cache them per entry, and can draw only the rows
//! that are on screen — which is what keeps a 10,000-line tool output cheap to scroll.

use ratatui::{
    style::Style,
    text::{Line, Span},
};
use unicode_width::UnicodeWidthChar;

/// A logical line before wrapping: its spans, the prefix repeated on every row it wraps to
/// (a quote bar, a card's border), and how a wrapped row continues.
#[derive(Debug, Clone, Default)]
pub struct Styled {
    pub prefix: Vec<Span<'static>>,
    pub spans: Vec<Span<'static>>,
    /// Columns of blank indent for rows after the first (list items).
    pub hang: u16,
    /// Cut at the width without looking for word boundaries (code, command output).
    pub hard: bool,
}

impl Styled {
    pub fn new(spans: Vec<Span<'static>>) -> Styled {
        Styled {
            spans,
            ..Styled::default()
        }
    }

    pub fn plain(text: impl Into<String>, style: Style) -> Styled {
        Styled::new(vec![Span::styled(text.into(), style)])
    }

    pub fn blank() -> Styled {
        Styled::default()
    }

    pub fn with_prefix(mut self, prefix: Vec<Span<'static>>) -> Styled {
        self.prefix = prefix;
        self
    }

    pub fn hard(mut self) -> Styled {
        self.hard = true;
        self
    }
}

/// Display width of `s` in terminal columns (control characters count as zero).
pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// Characters that would move the cursor or change the terminal's state; tool output may
/// hold any of them, and none may reach the screen as they are.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '·',
            c => c,
        })
        .collect()
}

/// The first `columns` columns of `s`, with `…` when cut.
pub fn truncate(s: &str, columns: usize) -> String {
    if width(s) <= columns {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > columns {
            break;
        }
        out.push(c);
        used += w;
    }
    if columns > 0 {
        out.push('…');
    }
    out
}

/// Wraps one logical line into rows of at most `columns` columns.
pub fn wrap(line: &Styled, columns: u16, out: &mut Vec<Line<'static>>) {
    let prefix_width: usize = line.prefix.iter().map(|s| width(&s.content)).sum();
    let room = (columns as usize).saturating_sub(prefix_width).max(1);
    let mut rows = Rows {
        prefix: &line.prefix,
        hard: line.hard,
        room,
        hang: (line.hang as usize).min(room.saturating_sub(1)),
        current: Vec::new(),
        used: 0,
        first: true,
        out,
    };
    // Most lines (command output above all) are ASCII and fit: no need to measure them
    // character by character.
    let ascii_len = line.spans.iter().try_fold(0usize, |n, s| {
        s.content.is_ascii().then(|| n + s.content.len())
    });
    if ascii_len.is_some_and(|n| n > 0 && n <= room) {
        let mut spans = line.prefix.clone();
        spans.extend(line.spans.iter().cloned());
        out.push(Line::from(spans));
        return;
    }
    // A long ASCII line of output: cut every `room` bytes.
    if let ([span], true, Some(_)) = (line.spans.as_slice(), line.hard, ascii_len) {
        for chunk in span.content.as_bytes().chunks(room) {
            let mut spans = line.prefix.clone();
            let text = String::from_utf8_lossy(chunk).into_owned();
            spans.push(Span::styled(text, span.style));
            out.push(Line::from(spans));
        }
        return;
    }
    if line.spans.iter().all(|s| s.content.is_empty()) {
        rows.flush();
        return;
    }
    for span in &line.spans {
        if line.hard {
            rows.push_hard(&span.content, span.style);
        } else {
            rows.push_words(&span.content, span.style);
        }
    }
    rows.flush();
}

/// Wraps every line.
pub fn wrap_all(lines: &[Styled], columns: u16) -> Vec<Line<'static>> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        wrap(line, columns, &mut out);
    }
    out
}

struct Rows<'a> {
    prefix: &'a [Span<'static>],
    hard: bool,
    room: usize,
    hang: usize,
    current: Vec<Span<'static>>,
    used: usize,
    first: bool,
    out: &'a mut Vec<Line<'static>>,
}

impl Rows<'_> {
    fn flush(&mut self) {
        if !self.hard
            && let Some(last) = self.current.last_mut()
            && last.content.ends_with(' ')
        {
            let trimmed = last.content.trim_end().to_string();
            last.content = trimmed.into();
        }
        let mut spans = self.prefix.to_vec();
        spans.append(&mut self.current);
        self.out.push(Line::from(spans));
        self.used = 0;
        self.first = false;
    }

    fn start_row(&mut self) {
        if self.used == 0 && !self.first && self.hang > 0 {
            self.current.push(Span::raw(" ".repeat(self.hang)));
            self.used = self.hang;
        }
    }

    fn append(&mut self, text: &str, style: ratatui::style::Style) {
        if text.is_empty() {
            return;
        }
        match self.current.last_mut() {
            Some(last) if last.style == style => last.content.to_mut().push_str(text),
            _ => self.current.push(Span::styled(text.to_string(), style)),
        }
        self.used += width(text);
    }

    fn push_hard(&mut self, text: &str, style: ratatui::style::Style) {
        let mut chunk = String::new();
        let mut chunk_width = 0;
        self.start_row();
        for c in text.chars() {
            let w = c.width().unwrap_or(0);
            if self.used + chunk_width + w > self.room && (self.used > 0 || chunk_width > 0) {
                self.append(&chunk, style);
                chunk.clear();
                chunk_width = 0;
                self.flush();
                self.start_row();
            }
            chunk.push(c);
            chunk_width += w;
        }
        self.append(&chunk, style);
    }

    fn push_words(&mut self, text: &str, style: ratatui::style::Style) {
        for word in split_keeping_spaces(text) {
            let w = width(word);
            let blank = word.trim().is_empty();
            self.start_row();
            if self.used + w <= self.room {
                self.append(word, style);
            } else if blank {
                // A space at the end of a row is dropped.
                self.flush();
            } else if w <= self.room.saturating_sub(self.hang) {
                self.flush();
                self.start_row();
                self.append(word, style);
            } else {
                self.push_hard(word, style);
            }
        }
    }
}

/// `"a  b c"` → `["a", "  ", "b", " ", "c"]`.
fn split_keeping_spaces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let space = first == ' ';
        let end = rest
            .char_indices()
            .find(|(_, c)| (*c == ' ') != space)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        rest = tail;
        Some(word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(line: &Styled, columns: u16) -> Vec<String> {
        wrap_all(std::slice::from_ref(line), columns)
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn wraps_words_hard_text_prefixes_and_hanging_indents() {
        let cases: Vec<(Styled, u16, Vec<&str>)> = vec![
            (
                Styled::plain("the quick brown fox jumps", Style::default()),
                10,
                vec!["the quick", "brown fox", "jumps"],
            ),
            (
                Styled::plain("abcdefghijkl", Style::default()).hard(),
                5,
                vec!["abcde", "fghij", "kl"],
            ),
            (
                Styled::plain("• one two three four", Style::default())
                    .with_prefix(vec![Span::raw("│ ")]),
                10,
                vec!["│ • one", "│ two", "│ three", "│ four"],
            ),
            (
                Styled {
                    hang: 2,
                    ..Styled::plain("• alpha beta gamma", Style::default())
                },
                10,
                vec!["• alpha", "  beta", "  gamma"],
            ),
            (
                Styled::plain("äbcdéfghij", Style::default()).hard(),
                4,
                vec!["äbcd", "éfgh", "ij"],
            ),
            (
                Styled::plain("日本語テキスト", Style::default()).hard(),
                5,
                vec!["日本", "語テ", "キス", "ト"],
            ),
            (Styled::blank(), 10, vec![""]),
            (
                Styled::plain("averyveryverylongword x", Style::default()),
                8,
                vec!["averyver", "yverylon", "gword x"],
            ),
        ];
        for (line, columns, expected) in cases {
            assert_eq!(rows(&line, columns), expected, "{line:?}");
        }
    }

    #[test]
    fn sanitizes_and_truncates() {
        assert_eq!(sanitize("a\tb\x1b[31mc\r"), "a b·[31mc·");
        assert_eq!(truncate("hello world", 8), "hello w…");
        assert_eq!(truncate("short", 8), "short");
        assert_eq!(truncate("日本語テキスト", 7), "日本語…");
    }
}
