//! The prompt editor: several lines, a cursor, readline's usual keys, and a history of
//! what was sent (Up on the first line and Down on the last walk through it).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use unicode_width::UnicodeWidthChar;

/// What a key did to the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// The text or cursor changed (or nothing happened).
    Changed,
    /// Enter on a text: send it.
    Submit(String),
    /// Not a key of the editor's.
    Ignored,
}

/// A multi-line text with a cursor, in characters.
#[derive(Debug, Default, Clone)]
pub struct Input {
    lines: Vec<String>,
    row: usize,
    col: usize,
    history: Vec<String>,
    /// Position while walking the history; `None`: editing the draft.
    walking: Option<usize>,
    draft: String,
}

impl Input {
    pub fn new() -> Input {
        Input {
            lines: vec![String::new()],
            ..Input::default()
        }
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    pub fn is_empty(&self) -> bool {
        self.lines.iter().all(String::is_empty)
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The cursor as (line, character).
    pub fn cursor(&self) -> (usize, usize) {
        (self.row, self.col)
    }

    pub fn set_text(&mut self, text: &str) {
        self.lines = text.split('\n').map(str::to_string).collect();
        if self.lines.is_empty() {
            self.lines.push(String::new());
        }
        self.row = self.lines.len() - 1;
        self.col = self.lines[self.row].chars().count();
    }

    pub fn clear(&mut self) {
        self.set_text("");
        self.walking = None;
    }

    /// Inserts text as typed or pasted (newlines split lines).
    pub fn insert(&mut self, text: &str) {
        for (i, part) in text.split('\n').enumerate() {
            if i > 0 {
                self.newline();
            }
            for c in part.chars().filter(|c| *c != '\r') {
                self.insert_char(if c == '\t' { ' ' } else { c });
            }
        }
    }

    fn current(&mut self) -> &mut String {
        if self.lines.is_empty() {
            self.lines.push(String::new());
        }
        let last = self.lines.len() - 1;
        self.row = self.row.min(last);
        &mut self.lines[self.row]
    }

    fn byte_at(line: &str, col: usize) -> usize {
        line.char_indices()
            .nth(col)
            .map(|(i, _)| i)
            .unwrap_or(line.len())
    }

    fn line_len(&self) -> usize {
        self.lines
            .get(self.row)
            .map(|l| l.chars().count())
            .unwrap_or(0)
    }

    fn insert_char(&mut self, c: char) {
        let col = self.col;
        let line = self.current();
        let at = Input::byte_at(line, col);
        line.insert(at, c);
        self.col += 1;
    }

    fn newline(&mut self) {
        let col = self.col;
        let line = self.current();
        let at = Input::byte_at(line, col);
        let rest = line.split_off(at);
        self.lines.insert(self.row + 1, rest);
        self.row += 1;
        self.col = 0;
    }

    fn backspace(&mut self) {
        if self.col > 0 {
            let col = self.col;
            let line = self.current();
            let at = Input::byte_at(line, col - 1);
            line.remove(at);
            self.col -= 1;
        } else if self.row > 0 {
            let line = self.lines.remove(self.row);
            self.row -= 1;
            self.col = self.line_len();
            self.current().push_str(&line);
        }
    }

    fn delete(&mut self) {
        if self.col < self.line_len() {
            let col = self.col;
            let line = self.current();
            let at = Input::byte_at(line, col);
            line.remove(at);
        } else if self.row + 1 < self.lines.len() {
            let next = self.lines.remove(self.row + 1);
            self.current().push_str(&next);
        }
    }

    fn delete_word(&mut self) {
        while self.col > 0 && self.char_before().is_some_and(char::is_whitespace) {
            self.backspace();
        }
        while self.col > 0 && self.char_before().is_some_and(|c| !c.is_whitespace()) {
            self.backspace();
        }
    }

    fn char_before(&self) -> Option<char> {
        self.lines
            .get(self.row)?
            .chars()
            .nth(self.col.checked_sub(1)?)
    }

    /// Enter: the text to send, added to the history; the editor is emptied.
    pub fn submit(&mut self) -> Option<String> {
        let text = self.text();
        if text.trim().is_empty() {
            return None;
        }
        if self.history.last() != Some(&text) {
            self.history.push(text.clone());
        }
        self.clear();
        Some(text)
    }

    fn history_back(&mut self) {
        let at = match self.walking {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.walking = Some(at);
        let text = self.history[at].clone();
        self.set_text(&text);
    }

    fn history_forward(&mut self) {
        match self.walking {
            None => {}
            Some(i) if i + 1 < self.history.len() => {
                self.walking = Some(i + 1);
                let text = self.history[i + 1].clone();
                self.set_text(&text);
            }
            Some(_) => {
                self.walking = None;
                let draft = std::mem::take(&mut self.draft);
                self.set_text(&draft);
            }
        }
    }

    /// Handles one key.
    pub fn key(&mut self, key: KeyEvent) -> Edit {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        match key.code {
            // Alt+Enter, Shift+Enter (where the terminal tells it apart) and Ctrl+J: a new line.
            KeyCode::Enter if alt || shift => self.newline(),
            KeyCode::Char('j') if ctrl => self.newline(),
            KeyCode::Enter => {
                return match self.submit() {
                    Some(text) => Edit::Submit(text),
                    None => Edit::Changed,
                };
            }
            KeyCode::Char('a') if ctrl => self.col = 0,
            KeyCode::Char('e') if ctrl => self.col = self.line_len(),
            KeyCode::Char('u') if ctrl => {
                let col = self.col;
                let line = self.current();
                let at = Input::byte_at(line, col);
                line.replace_range(..at, "");
                self.col = 0;
            }
            KeyCode::Char('k') if ctrl => {
                let col = self.col;
                let line = self.current();
                let at = Input::byte_at(line, col);
                line.truncate(at);
            }
            KeyCode::Char('w') if ctrl => self.delete_word(),
            KeyCode::Backspace if alt => self.delete_word(),
            KeyCode::Char(_) if ctrl || alt => return Edit::Ignored,
            KeyCode::Char(c) => self.insert_char(c),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::Left if self.col > 0 => self.col -= 1,
            KeyCode::Left if self.row > 0 => {
                self.row -= 1;
                self.col = self.line_len();
            }
            KeyCode::Right if self.col < self.line_len() => self.col += 1,
            KeyCode::Right if self.row + 1 < self.lines.len() => {
                self.row += 1;
                self.col = 0;
            }
            KeyCode::Left | KeyCode::Right => {}
            KeyCode::Home => self.col = 0,
            KeyCode::End => self.col = self.line_len(),
            KeyCode::Up if self.row > 0 => {
                self.row -= 1;
                self.col = self.col.min(self.line_len());
            }
            KeyCode::Up => self.history_back(),
            KeyCode::Down if self.row + 1 < self.lines.len() => {
                self.row += 1;
                self.col = self.col.min(self.line_len());
            }
            KeyCode::Down => self.history_forward(),
            _ => return Edit::Ignored,
        }
        Edit::Changed
    }

    /// The text wrapped to `columns` (by character), and where the cursor lands in it.
    pub fn layout(&self, columns: u16) -> (Vec<String>, (u16, u16)) {
        let columns = usize::from(columns.max(2));
        let mut rows = Vec::new();
        let mut cursor = (0u16, 0u16);
        for (r, line) in self.lines.iter().enumerate() {
            let mut row = String::new();
            let mut used = 0;
            for (c, ch) in line.chars().enumerate() {
                let w = ch.width().unwrap_or(0);
                if used + w > columns - 1 {
                    rows.push(std::mem::take(&mut row));
                    used = 0;
                }
                if r == self.row && c == self.col {
                    cursor = (sat(used), sat(rows.len()));
                }
                row.push(ch);
                used += w;
            }
            if r == self.row && self.col >= line.chars().count() {
                cursor = (sat(used), sat(rows.len()));
            }
            rows.push(row);
        }
        (rows, cursor)
    }
}

fn sat(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(input: &mut Input, code: KeyCode, modifiers: KeyModifiers) -> Edit {
        input.key(KeyEvent::new(code, modifiers))
    }

    fn typed(input: &mut Input, text: &str) {
        for c in text.chars() {
            press(input, KeyCode::Char(c), KeyModifiers::NONE);
        }
    }

    #[test]
    fn edits_several_lines_and_submits_them_whole() {
        let mut input = Input::new();
        typed(&mut input, "restart web");
        press(&mut input, KeyCode::Enter, KeyModifiers::ALT);
        typed(&mut input, "then chekc");
        press(&mut input, KeyCode::Backspace, KeyModifiers::NONE);
        press(&mut input, KeyCode::Backspace, KeyModifiers::NONE);
        typed(&mut input, "ck logs");
        assert_eq!(input.lines(), ["restart web", "then check logs"]);
        press(&mut input, KeyCode::Up, KeyModifiers::NONE);
        press(&mut input, KeyCode::End, KeyModifiers::NONE);
        typed(&mut input, "!");
        press(&mut input, KeyCode::Char('j'), KeyModifiers::CONTROL);
        assert_eq!(input.lines(), ["restart web!", "", "then check logs"]);
        press(&mut input, KeyCode::Backspace, KeyModifiers::NONE);
        press(&mut input, KeyCode::Char('w'), KeyModifiers::CONTROL);
        assert_eq!(input.text(), "restart \nthen check logs");
        assert_eq!(
            press(&mut input, KeyCode::Enter, KeyModifiers::NONE),
            Edit::Submit("restart \nthen check logs".into())
        );
        assert!(input.is_empty());
        assert_eq!(
            press(&mut input, KeyCode::Enter, KeyModifiers::NONE),
            Edit::Changed
        );
    }

    #[test]
    fn history_walks_back_and_returns_to_the_draft() {
        let mut input = Input::new();
        for text in ["first", "second"] {
            typed(&mut input, text);
            input.submit();
        }
        typed(&mut input, "dra");
        press(&mut input, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(input.text(), "second");
        press(&mut input, KeyCode::Up, KeyModifiers::NONE);
        press(&mut input, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(input.text(), "first");
        press(&mut input, KeyCode::Down, KeyModifiers::NONE);
        assert_eq!(input.text(), "second");
        press(&mut input, KeyCode::Down, KeyModifiers::NONE);
        assert_eq!(input.text(), "dra");
    }

    #[test]
    fn layout_wraps_and_places_the_cursor() {
        let mut input = Input::new();
        input.insert("abcdefgh\nxy");
        let (rows, cursor) = input.layout(5);
        assert_eq!(rows, ["abcd", "efgh", "xy"]);
        assert_eq!(cursor, (2, 2));
        press(&mut input, KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(input.layout(5).1, (2, 0));
    }
}
