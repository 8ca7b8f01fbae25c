//! Human output (aligned tables, colour only on a terminal) and `--json` documents.

use std::io::Write;

use console::Style;
use serde_json::Value;

/// How a command prints: `json` documents on stdout, or text for people.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    /// Colour on stdout.
    pub color: bool,
    /// stderr is a terminal: progress bars instead of plain lines.
    pub stderr_tty: bool,
    /// stdin and stdout are terminals: prompts are possible.
    pub interactive: bool,
}

impl Out {
    pub fn plain() -> Out {
        Out { json: false, color: false, stderr_tty: false, interactive: false }
    }

    /// Prints a JSON document (pretty, one per command run).
    pub fn json(&self, value: &Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(value).unwrap_or_default());
    }

    pub fn line(&self, text: impl AsRef<str>) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", text.as_ref());
    }

    /// A note for people (stderr, so that stdout stays the result).
    pub fn note(&self, text: impl AsRef<str>) {
        eprintln!("{}", text.as_ref());
    }

    pub fn warn(&self, text: impl AsRef<str>) {
        let label = if self.stderr_tty {
            Style::new().yellow().bold().apply_to("warning").to_string()
        } else {
            "warning".into()
        };
        eprintln!("{label}: {}", text.as_ref());
    }

    /// `word` coloured by what it means (ok, failed, …) when colour is on.
    pub fn status(&self, word: &str) -> String {
        paint(self.color, word, status_style(word))
    }

    pub fn bold(&self, text: &str) -> String {
        paint(self.color, text, Some(Style::new().bold()))
    }

    pub fn table(&self, table: &Table) {
        self.line(table.render(self.color).trim_end_matches('\n'));
    }
}

fn paint(color: bool, text: &str, style: Option<Style>) -> String {
    match (color, style) {
        (true, Some(style)) => style.force_styling(true).apply_to(text).to_string(),
        _ => text.to_string(),
    }
}

/// The colour of a status word.
pub fn status_style(word: &str) -> Option<Style> {
    match word {
        "ok" | "migrated" | "up_to_date" | "created" | "seeded" | "added" | "marked" | "converted" | "cleaned"
        | "healthy" | "yes" => Some(Style::new().green()),
        "degraded" | "pending" | "dry_run" | "skipped" | "changed" | "missing" | "extra" | "replaced" => {
            Some(Style::new().yellow())
        }
        "failed" | "unhealthy" | "cancelled" | "error" | "abandoned" | "no" => Some(Style::new().red().bold()),
        _ => None,
    }
}

/// A table of text cells; numeric columns are right-aligned, status columns coloured.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    status_column: Option<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            right: vec![false; headers.len()],
            status_column: None,
            rows: Vec::new(),
        }
    }

    /// Right-aligns the columns named.
    pub fn numeric(mut self, columns: &[&str]) -> Table {
        for (i, h) in self.headers.iter().enumerate() {
            if columns.contains(&h.as_str()) {
                self.right[i] = true;
            }
        }
        self
    }

    /// Colours the cells of this column as statuses.
    pub fn status(mut self, column: &str) -> Table {
        self.status_column = self.headers.iter().position(|h| h == column);
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, color: bool) -> String {
        let width = |s: &str| console::measure_text_width(s);
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(widths.len()) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let mut out = String::new();
        let last = self.headers.len().saturating_sub(1);
        let mut line = |cells: &[String], header: bool| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate().take(widths.len()) {
                let pad = widths[i] - width(cell);
                let shown = if header {
                    paint(color, cell, Some(Style::new().bold()))
                } else if Some(i) == self.status_column {
                    paint(color, cell, status_style(cell))
                } else {
                    cell.clone()
                };
                if i > 0 {
                    text.push_str("  ");
                }
                if self.right[i] {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(&shown);
                } else {
                    text.push_str(&shown);
                    if i < last {
                        text.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.headers, true);
        for row in &self.rows {
            line(row, false);
        }
        out
    }
}

/// A cell for an optional value.
pub fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// Shortens a one-line rendering of `text` to `max` characters.
pub fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_right_align_numbers() {
        let mut t = Table::new(&["TENANT", "STATUS", "APPLIED"]).numeric(&["APPLIED"]).status("STATUS");
        t.row(vec!["acme".into(), "migrated".into(), "3".into()]);
        t.row(vec!["globex-eu".into(), "failed".into(), "12".into()]);
        assert_eq!(
            t.render(false),
            "TENANT     STATUS    APPLIED\n\
             acme       migrated        3\n\
             globex-eu  failed         12\n"
        );
        // Colour codes do not change the alignment of what is visible.
        let coloured = t.render(true);
        assert!(coloured.contains("\u{1b}["), "{coloured:?}");
        assert_eq!(console::strip_ansi_codes(&coloured), t.render(false));
    }

    #[test]
    fn last_column_is_not_padded() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["x".into(), "long value".into()]);
        t.row(vec!["y".into(), "".into()]);
        assert_eq!(t.render(false), "A  B\nx  long value\ny\n");
    }

    #[test]
    fn shortening() {
        assert_eq!(shorten("relation \"x\"\n  does not exist", 100), "relation \"x\" does not exist");
        assert_eq!(shorten("abcdefghij", 5), "abcd…");
    }
}
