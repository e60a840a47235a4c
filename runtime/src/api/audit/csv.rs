//! The audit export's CSV (RFC 4180: comma-separated, CRLF line ends, a field quoted when it
//! holds a comma, a quote or a line break, its quotes doubled), written by hand since the whole
//! format is these few rules.
//!
//! An export is opened in spreadsheets, which run a cell that starts with `=`, `+`, `-` or `@`
//! (or a tab or carriage return before one) as a formula: an actor's display name such as
//! `=HYPERLINK(…)` would become a live link in the auditor's sheet. Every such cell gets a
//! leading apostrophe, which spreadsheets read as "text" and do not show; a program reading
//! the file sees the apostrophe.

use chrono::SecondsFormat;

use crate::store::audit::EventRow;

/// The header: the columns of `shared::audit::AuditEvent`, in its order and with its names.
pub const COLUMNS: [&str; 13] = [
    "seq",
    "created_at",
    "action",
    "actor_kind",
    "actor_id",
    "actor_name",
    "actor_email",
    "impersonator_id",
    "target_kind",
    "target_id",
    "details",
    "request_id",
    "hash",
];

/// The first characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Appends one cell: defused if it could be read as a formula, quoted if it must be.
fn cell(out: &mut String, value: &str) {
    let defuse = value.starts_with(FORMULA_STARTS);
    let quote = value.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if defuse {
        out.push('\'');
    }
    if quote {
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Appends one line of cells, CRLF-terminated.
pub fn line<S: AsRef<str>>(out: &mut String, cells: &[S]) {
    for (i, value) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        cell(out, value.as_ref());
    }
    out.push_str("\r\n");
}

/// Appends the header line.
pub fn header(out: &mut String) {
    line(out, &COLUMNS);
}

/// Appends one event as a line, its cells as the JSON list shows them (the time in UTC with
/// microseconds, the details as compact JSON, the hash in hex).
pub fn event(out: &mut String, row: &EventRow) {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let id = |v: &Option<uuid::Uuid>| v.map(|id| id.to_string()).unwrap_or_default();
    let cells = [
        row.seq.to_string(),
        row.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        row.action.clone(),
        row.actor_kind.as_str().to_string(),
        id(&row.actor_id),
        text(&row.actor_name),
        text(&row.actor_email),
        id(&row.impersonator_id),
        text(&row.target_kind),
        text(&row.target_id),
        row.details.to_string(),
        text(&row.request_id),
        hex::encode(&row.hash),
    ];
    line(out, &cells);
}

/// Appends a last line saying the export stopped at `max_rows` and where to go on from: its
/// message in the first cell, the other cells empty so the file keeps one column count.
pub fn truncated(out: &mut String, max_rows: i64, last_seq: i64) {
    let mut cells = vec![String::new(); COLUMNS.len()];
    cells[0] = format!(
        "# Truncated: this export holds only the newest {max_rows} matching events. Export \
         again with before={last_seq} (or a narrower time range) for the older ones."
    );
    line(out, &cells);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> String {
        let mut out = String::new();
        cell(&mut out, value);
        out
    }

    #[test]
    fn plain_cells_are_written_as_they_are() {
        assert_eq!(one("agent.updated"), "agent.updated");
        assert_eq!(one(""), "");
        assert_eq!(one("Zoë O'Brien"), "Zoë O'Brien");
    }

    #[test]
    fn commas_quotes_and_line_breaks_are_quoted_with_quotes_doubled() {
        assert_eq!(one("a,b"), "\"a,b\"");
        assert_eq!(one("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(one("two\nlines"), "\"two\nlines\"");
        assert_eq!(one("{\"n\":1}"), "\"{\"\"n\"\":1}\"");
    }

    #[test]
    fn cells_a_spreadsheet_would_run_as_formulas_get_an_apostrophe() {
        for start in ["=", "+", "-", "@", "\t", "\r"] {
            let value = format!("{start}1+1");
            let written = one(&value);
            assert!(
                written.starts_with('\'') || written.starts_with("\"'"),
                "{value:?} → {written:?}"
            );
        }
        assert_eq!(one("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(one("@SUM(A1)"), "'@SUM(A1)");
        // Only the first character counts.
        assert_eq!(one("a=b"), "a=b");
    }

    #[test]
    fn a_line_ends_with_crlf_and_the_truncation_line_keeps_the_column_count() {
        let mut out = String::new();
        header(&mut out);
        assert!(out.starts_with("seq,created_at,action,"));
        assert!(out.ends_with("hash\r\n"));
        let mut last = String::new();
        truncated(&mut last, 100_000, 42);
        assert!(last.starts_with("# Truncated"));
        assert!(last.contains("before=42"));
        assert_eq!(last.matches(',').count(), COLUMNS.len() - 1);
    }
}
