//! Aligned text tables of the command line (`status`, `secret list`, `policy list`,
//! `sandbox tasks`, …): one place that pads cells by the width they take on a terminal, so a
//! title or path with wide or combining characters does not push its row out of line.
//!
//! The tables print what `format!("{:<8}")` printed before, for ASCII text: a column is
//! either as wide as its widest cell ([`Column::fit`]) or a fixed width a longer cell
//! overflows on its own line only ([`Column::fixed`]); the last column of a line is not
//! padded, so no line ends in spaces it did not hold. The UTC times the tables show are
//! written here too ([`utc`]).

use unicode_width::UnicodeWidthStr;

/// The columns `text` takes on a terminal.
pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `text` followed by spaces up to `columns`; longer text is left whole.
pub fn pad(text: &str, columns: usize) -> String {
    let mut out = String::with_capacity(text.len() + columns);
    out.push_str(text);
    push_spaces(&mut out, columns.saturating_sub(width(text)));
    out
}

fn push_spaces(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// `2025-11-27 02:14:05` (UTC) from seconds since the epoch.
pub fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix milliseconds as [`utc`] shows them.
pub fn utc_ms(ms: i64) -> String {
    utc(ms.div_euclid(1000))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    /// As wide as the widest cell (and title).
    Fit,
    /// This many columns; a longer cell shifts the rest of its line only.
    Fixed(usize),
}

/// One column of a [`Table`]: its title, how wide it is, how its cells are aligned.
#[derive(Debug, Clone)]
pub struct Column {
    title: String,
    size: Size,
    right: bool,
    gap: Option<usize>,
}

impl Column {
    /// As wide as its widest cell or its title.
    pub fn fit(title: &str) -> Column {
        Column {
            title: title.to_string(),
            size: Size::Fit,
            right: false,
            gap: None,
        }
    }

    /// `columns` wide whatever the cells; a longer cell is printed whole and pushes the
    /// rest of its own line to the right.
    pub fn fixed(title: &str, columns: usize) -> Column {
        Column {
            size: Size::Fixed(columns),
            ..Column::fit(title)
        }
    }

    /// Cells aligned to the right (numbers).
    pub fn right(self) -> Column {
        Column {
            right: true,
            ..self
        }
    }

    /// `spaces` before this column instead of the table's gap.
    pub fn gap(self, spaces: usize) -> Column {
        Column {
            gap: Some(spaces),
            ..self
        }
    }
}

#[derive(Debug, Clone)]
enum Line {
    Row(Vec<String>),
    /// Free text starting where a column starts (a note under a row); it does not widen
    /// any column.
    Under(usize, String),
}

/// Rows of cells under a line of titles, printed with [`Table::render`].
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    /// Spaces between two columns, unless a column says otherwise.
    gap: usize,
    header: bool,
    lines: Vec<Line>,
}

impl Table {
    /// A table whose columns are `gap` spaces apart, with their titles as the first line.
    pub fn new(gap: usize, columns: impl IntoIterator<Item = Column>) -> Table {
        Table {
            columns: columns.into_iter().collect(),
            gap,
            header: true,
            lines: Vec::new(),
        }
    }

    /// Leaves out the line of titles.
    pub fn without_header(self) -> Table {
        Table {
            header: false,
            ..self
        }
    }

    /// Adds a row; missing cells are empty, cells beyond the last column are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        debug_assert!(cells.len() <= self.columns.len(), "more cells than columns");
        cells.resize(self.columns.len(), String::new());
        self.lines.push(Line::Row(cells));
    }

    /// Adds a line of free text that starts where `column` starts (its row's continuation,
    /// such as a fix under a message).
    pub fn under(&mut self, column: usize, text: impl Into<String>) {
        self.lines.push(Line::Under(column, text.into()));
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        !self.lines.iter().any(|l| matches!(l, Line::Row(_)))
    }

    /// The table, one `\n`-terminated line per row (titles first).
    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        if self.header {
            let titles: Vec<&str> = self.columns.iter().map(|c| c.title.as_str()).collect();
            self.push_row(&mut out, &widths, &titles);
        }
        for line in &self.lines {
            match line {
                Line::Row(cells) => {
                    let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
                    self.push_row(&mut out, &widths, &cells);
                }
                Line::Under(column, text) => {
                    push_spaces(&mut out, self.start_of(*column, &widths));
                    out.push_str(text);
                    out.push('\n');
                }
            }
        }
        out
    }

    fn widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| match c.size {
                Size::Fixed(n) => n,
                Size::Fit => {
                    let cells = self.lines.iter().filter_map(|l| match l {
                        Line::Row(cells) => cells.get(i).map(|c| width(c)),
                        Line::Under(..) => None,
                    });
                    let title = if self.header { width(&c.title) } else { 0 };
                    cells.fold(title, usize::max)
                }
            })
            .collect()
    }

    fn gap_before(&self, column: usize) -> usize {
        match column {
            0 => 0,
            i => self.columns[i].gap.unwrap_or(self.gap),
        }
    }

    /// Where `column` starts on a line whose cells all fit their columns.
    fn start_of(&self, column: usize, widths: &[usize]) -> usize {
        (0..column.min(self.columns.len()))
            .map(|i| self.gap_before(i) + widths[i])
            .sum::<usize>()
            + self.gap_before(column.min(self.columns.len().saturating_sub(1)))
    }

    fn push_row(&self, out: &mut String, widths: &[usize], cells: &[&str]) {
        let last = self.columns.len().saturating_sub(1);
        for (i, (column, cell)) in self.columns.iter().zip(cells).enumerate() {
            push_spaces(out, self.gap_before(i));
            let fill = widths[i].saturating_sub(width(cell));
            if column.right {
                push_spaces(out, fill);
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i < last {
                    push_spaces(out, fill);
                }
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        let cases = [
            (0, "1970-01-01 00:00:00"),
            (951_782_400, "2000-02-29 00:00:00"),
            (1_764_209_645, "2025-11-27 02:14:05"),
        ];
        for (unix, text) in cases {
            assert_eq!(utc(unix), text, "{unix}");
        }
        assert_eq!(utc_ms(1_764_209_645_999), "2025-11-27 02:14:05");
        assert_eq!(utc_ms(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn fit_columns_take_the_widest_cell_and_the_last_is_not_padded() {
        let mut t = Table::new(2, [Column::fit("NAME"), Column::fit("STATE")]);
        t.row(["stakpak-warden", "running"]);
        t.row(["x", "down"]);
        assert_eq!(
            t.render(),
            "NAME            STATE\n\
             stakpak-warden  running\n\
             x               down\n"
        );
    }

    #[test]
    fn fixed_columns_let_a_long_cell_overflow_its_own_line_only() {
        let mut t = Table::new(
            1,
            [
                Column::fixed("ID", 4),
                Column::fixed("N", 3).right(),
                Column::fit("TEXT").gap(2),
            ],
        );
        t.row(["a", "7", "one"]);
        t.row(["abcdef", "12", "two"]);
        t.row(["b", "1234", ""]);
        assert_eq!(
            t.render(),
            "ID     N  TEXT\n\
             a      7  one\n\
             abcdef  12  two\n\
             b    1234  \n"
        );
    }

    #[test]
    fn widths_are_display_widths() {
        let mut t = Table::new(1, [Column::fit("T"), Column::fit("X")]);
        t.row(["日本", "1"]);
        t.row(["e\u{301}", "2"]);
        t.row(["ab", "3"]);
        assert_eq!(t.render(), "T    X\n日本 1\ne\u{301}    2\nab   3\n");
        assert_eq!(pad("日本", 6), "日本  ");
        assert_eq!(pad("toolong", 3), "toolong");
        assert_eq!(width("✓"), 1);
    }

    #[test]
    fn lines_under_a_column_start_where_it_starts_and_widen_nothing() {
        let mut t =
            Table::new(2, [Column::fit(""), Column::fit(""), Column::fit("")]).without_header();
        t.row(["ok  ", "landlock", "enforced"]);
        t.row(["FAIL", "docker", "does not answer"]);
        t.under(2, "fix: systemctl start docker");
        let fix = format!("{}fix: systemctl start docker", " ".repeat(4 + 2 + 8 + 2));
        assert_eq!(
            t.render(),
            format!("ok    landlock  enforced\nFAIL  docker    does not answer\n{fix}\n")
        );
        assert!(!t.is_empty());
        assert!(Table::new(2, [Column::fit("A")]).is_empty());
    }

    #[test]
    fn missing_cells_are_empty_and_an_empty_table_is_its_titles() {
        let mut t = Table::new(2, [Column::fixed("A", 3), Column::fit("B")]);
        assert_eq!(t.render(), "A    B\n");
        t.row(["x"]);
        assert_eq!(t.render(), "A    B\nx    \n");
    }
}
