//! The assistant's Markdown as styled lines: headings, emphasis, inline code, links, lists
//! (nested, ordered, task items), block quotes, rules, tables and highlighted code blocks.
//!
//! Text that is still streaming is rendered the same way: an unclosed code fence is simply
//! a code block that has not ended yet.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use ratatui::{
    style::{Color, Modifier, Style},
    text::Span,
};

use super::{
    highlight::highlight,
    text::{Styled, sanitize, width},
};

/// Renders `source` into logical lines (not yet wrapped).
pub fn render(source: &str) -> Vec<Styled> {
    let mut r = Renderer::default();
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    for event in Parser::new_ext(source, options) {
        r.event(event);
    }
    r.finish()
}

#[derive(Debug, Clone)]
enum ListKind {
    Bullet,
    Ordered(u64),
}

#[derive(Default)]
struct Renderer {
    out: Vec<Styled>,
    /// The line being built.
    spans: Vec<Span<'static>>,
    /// Inline styles in force (emphasis, strong, links …), innermost last.
    styles: Vec<Style>,
    lists: Vec<ListKind>,
    /// Marker of the list item whose first line is being built.
    item_marker: Option<String>,
    quote_depth: usize,
    heading: Option<HeadingLevel>,
    code: Option<String>,
    link: Option<String>,
    table: Option<Table>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    cell: String,
    head_rows: usize,
}

fn heading_style(level: HeadingLevel) -> Style {
    let base = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    match level {
        HeadingLevel::H1 => base.add_modifier(Modifier::UNDERLINED),
        HeadingLevel::H2 => base,
        _ => Style::new().add_modifier(Modifier::BOLD),
    }
}

impl Renderer {
    fn style(&self) -> Style {
        let mut style = match self.heading {
            Some(level) => heading_style(level),
            None => Style::new(),
        };
        for s in &self.styles {
            style = style.patch(*s);
        }
        if self.quote_depth > 0 {
            style = style.add_modifier(Modifier::ITALIC);
        }
        style
    }

    fn prefix(&self) -> Vec<Span<'static>> {
        let mut prefix = Vec::new();
        for _ in 0..self.quote_depth {
            prefix.push(Span::styled("▎ ", Style::new().fg(Color::DarkGray)));
        }
        prefix
    }

    fn indent(&self) -> usize {
        self.lists.len().saturating_sub(1) * 2
    }

    /// Ends the line being built (if it has anything).
    fn flush(&mut self) {
        if self.spans.is_empty() && self.item_marker.is_none() {
            return;
        }
        let mut spans = Vec::new();
        let mut hang = self.indent();
        if !self.lists.is_empty() {
            let lead = " ".repeat(self.indent());
            match self.item_marker.take() {
                Some(marker) => {
                    hang += width(&marker);
                    spans.push(Span::raw(lead));
                    spans.push(Span::styled(marker, Style::new().fg(Color::Yellow)));
                }
                None => {
                    hang += 2;
                    spans.push(Span::raw(" ".repeat(hang)));
                }
            }
        }
        spans.append(&mut self.spans);
        self.out.push(Styled {
            prefix: self.prefix(),
            spans,
            hang: u16::try_from(hang).unwrap_or(0),
            hard: false,
        });
    }

    /// A blank line between blocks (never two, never at the start).
    fn gap(&mut self) {
        if self.lists.is_empty()
            && self
                .out
                .last()
                .is_some_and(|l| !l.spans.iter().all(|s| s.content.trim().is_empty()))
        {
            self.out.push(Styled::blank().with_prefix(self.prefix()));
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(table) = &mut self.table {
            table.cell.push_str(text);
            return;
        }
        if let Some(lang) = &self.code {
            let lang = lang.clone();
            for piece in text.split_inclusive('\n') {
                let line = sanitize(piece.strip_suffix('\n').unwrap_or(piece));
                // A code block's lines keep their own shape: cut, never reflowed.
                let mut spans = vec![Span::styled("│ ", Style::new().fg(Color::DarkGray))];
                spans.extend(highlight(&lang, &line));
                let mut styled = Styled::new(spans).hard();
                styled.prefix = self.prefix();
                if !self.lists.is_empty() {
                    styled.prefix.push(Span::raw(" ".repeat(self.indent() + 2)));
                }
                self.out.push(styled);
            }
            return;
        }
        let style = self.style();
        self.spans.push(Span::styled(sanitize(text), style));
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => self.text(&t),
            Event::Code(t) => {
                if let Some(table) = &mut self.table {
                    table.cell.push_str(&t);
                } else {
                    let style = self.style().fg(Color::Yellow);
                    self.spans.push(Span::styled(sanitize(&t), style));
                }
            }
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => self.flush(),
            Event::Rule => {
                self.flush();
                self.gap();
                self.out.push(
                    Styled::plain("─".repeat(40), Style::new().fg(Color::DarkGray))
                        .with_prefix(self.prefix()),
                );
            }
            Event::TaskListMarker(done) => {
                let mark = if done { "[x] " } else { "[ ] " };
                self.spans
                    .push(Span::styled(mark, Style::new().fg(Color::Yellow)));
            }
            Event::Html(t) | Event::InlineHtml(t) => self.text(&t),
            Event::InlineMath(t) | Event::DisplayMath(t) => self.text(&t),
            Event::FootnoteReference(t) => self.text(&format!("[{t}]")),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph if self.item_marker.is_none() && self.lists.is_empty() => self.gap(),
            Tag::Heading { level, .. } => {
                self.flush();
                self.gap();
                self.heading = Some(level);
            }
            Tag::BlockQuote(_) => {
                self.flush();
                self.gap();
                self.quote_depth += 1;
            }
            Tag::CodeBlock(kind) => {
                self.flush();
                self.gap();
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().unwrap_or("").to_string()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                if !lang.is_empty() {
                    self.out.push(
                        Styled::plain(format!("╭ {lang}"), Style::new().fg(Color::DarkGray))
                            .with_prefix(self.prefix()),
                    );
                }
                self.code = Some(lang);
            }
            Tag::List(start) => {
                self.flush();
                if self.lists.is_empty() {
                    self.gap();
                }
                self.lists.push(match start {
                    Some(n) => ListKind::Ordered(n),
                    None => ListKind::Bullet,
                });
            }
            Tag::Item => {
                self.flush();
                let marker = match self.lists.last_mut() {
                    Some(ListKind::Ordered(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "• ".to_string(),
                };
                self.item_marker = Some(marker);
            }
            Tag::Emphasis => self
                .styles
                .push(Style::new().add_modifier(Modifier::ITALIC)),
            Tag::Strong => self.styles.push(Style::new().add_modifier(Modifier::BOLD)),
            Tag::Strikethrough => self
                .styles
                .push(Style::new().add_modifier(Modifier::CROSSED_OUT)),
            Tag::Link { dest_url, .. } => {
                self.styles.push(
                    Style::new()
                        .fg(Color::Blue)
                        .add_modifier(Modifier::UNDERLINED),
                );
                self.link = Some(dest_url.to_string());
            }
            Tag::Table(_) => {
                self.flush();
                self.gap();
                self.table = Some(Table::default());
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(t) = &mut self.table {
                    t.rows.push(Vec::new());
                }
            }
            Tag::TableCell => {
                if let Some(t) = &mut self.table {
                    t.cell.clear();
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => self.flush(),
            TagEnd::Heading(_) => {
                self.flush();
                self.heading = None;
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.quote_depth = self.quote_depth.saturating_sub(1);
            }
            TagEnd::CodeBlock => self.code = None,
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
            }
            TagEnd::Item => self.flush(),
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough => {
                self.styles.pop();
            }
            TagEnd::Link => {
                self.styles.pop();
                if let Some(url) = self.link.take() {
                    let shown: String = self
                        .spans
                        .last()
                        .map(|s| s.content.to_string())
                        .unwrap_or_default();
                    if shown != url && !url.is_empty() {
                        self.spans.push(Span::styled(
                            format!(" ({url})"),
                            Style::new().fg(Color::DarkGray),
                        ));
                    }
                }
            }
            TagEnd::TableHead => {
                if let Some(t) = &mut self.table {
                    t.head_rows = t.rows.len();
                }
            }
            TagEnd::TableCell => {
                if let Some(t) = &mut self.table {
                    let cell = std::mem::take(&mut t.cell);
                    if let Some(row) = t.rows.last_mut() {
                        row.push(sanitize(cell.trim()));
                    }
                }
            }
            TagEnd::Table => {
                if let Some(t) = self.table.take() {
                    self.table_lines(&t);
                }
            }
            _ => {}
        }
    }

    fn table_lines(&mut self, t: &Table) {
        let columns = t.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                t.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| width(s))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let border = Style::new().fg(Color::DarkGray);
        for (i, row) in t.rows.iter().enumerate() {
            let mut spans = Vec::new();
            for (c, w) in widths.iter().enumerate() {
                if c > 0 {
                    spans.push(Span::styled(" │ ", border));
                }
                let cell = row.get(c).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(width(cell));
                let style = if i < t.head_rows {
                    Style::new().add_modifier(Modifier::BOLD)
                } else {
                    Style::new()
                };
                spans.push(Span::styled(format!("{cell}{}", " ".repeat(pad)), style));
            }
            self.out
                .push(Styled::new(spans).with_prefix(self.prefix()).hard());
            if i + 1 == t.head_rows {
                let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
                self.out.push(
                    Styled::plain(rule.join("─┼─"), border)
                        .with_prefix(self.prefix())
                        .hard(),
                );
            }
        }
    }

    fn finish(mut self) -> Vec<Styled> {
        self.flush();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::text::wrap_all;

    fn text_of(source: &str, columns: u16) -> Vec<String> {
        wrap_all(&render(source), columns)
            .iter()
            .map(|l| {
                let s: String = l.spans.iter().map(|s| s.content.as_ref()).collect();
                s.trim_end().to_string()
            })
            .collect()
    }

    #[test]
    fn renders_blocks_as_an_operator_reads_them() {
        let source = "# Disk report\n\nThe disk on `/` is **92%** full.\n\n\
                      - logs in `/var/log`\n- caches\n  1. apt\n  2. docker\n\n\
                      > keep the last week\n\n\
                      ```bash\ndu -sh /var/log # size\n```\n\n\
                      | dir | size |\n|---|---|\n| /var/log | 4G |\n\n\
                      See [the runbook](https://example.com/r).";
        assert_eq!(
            text_of(source, 60),
            vec![
                "Disk report",
                "",
                "The disk on / is 92% full.",
                "",
                "• logs in /var/log",
                "• caches",
                "  1. apt",
                "  2. docker",
                "",
                "▎ keep the last week",
                "",
                "╭ bash",
                "│ du -sh /var/log # size",
                "",
                "dir      │ size",
                "─────────┼─────",
                "/var/log │ 4G",
                "",
                "See the runbook (https://example.com/r).",
            ]
        );
    }

    #[test]
    fn an_unclosed_fence_while_streaming_is_code_so_far() {
        assert_eq!(
            text_of("Run this:\n\n```sh\nsystemctl restart web\nsyst", 40),
            vec!["Run this:", "", "╭ sh", "│ systemctl restart web", "│ syst"]
        );
    }
}
