//! How the shell prints rows: an aligned table (as rqlite's shell does: a border, the
//! header, a separator, the rows), CSV, JSON or one `column = value` line per column.
//!
//! Values come from the API as JSON, read with `blob_array` so that a BLOB (an array of
//! bytes) is told from TEXT; it is shown as SQLite spells a BLOB literal, `X'00FF'`. Text is
//! printed with its control characters escaped (`\n`, `\u{1b}`), so a value cannot break
//! the table's alignment or send escape sequences to the terminal.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// An output mode of `.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An aligned table with a border.
    Table,
    /// RFC 4180 CSV with a header row; NULL is an empty field.
    Csv,
    /// One JSON array of row objects per result.
    Json,
    /// One `column = value` line per column, a blank line after each row.
    Line,
}

impl Mode {
    /// The mode named `name` (`table`, `csv`, `json`, `line`), if any.
    pub fn parse(name: &str) -> Option<Mode> {
        match name.to_ascii_lowercase().as_str() {
            "table" => Some(Mode::Table),
            "csv" => Some(Mode::Csv),
            "json" => Some(Mode::Json),
            "line" => Some(Mode::Line),
            _ => None,
        }
    }

    /// The mode's name, as `.mode` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Table => "table",
            Mode::Csv => "csv",
            Mode::Json => "json",
            Mode::Line => "line",
        }
    }
}

/// A value as text: `NULL` for null (`null_as` in CSV), `X'..'` for a BLOB, text with its
/// control characters escaped.
fn cell(value: &Value, null_as: &str) -> String {
    match value {
        Value::Null => null_as.to_string(),
        Value::String(s) => escape_controls(s),
        Value::Array(bytes) if bytes.iter().all(|b| b.as_u64().is_some_and(|b| b < 256)) => {
            let mut hex = String::with_capacity(3 + 2 * bytes.len());
            hex.push_str("X'");
            for b in bytes.iter().filter_map(Value::as_u64) {
                let _ = write!(hex, "{b:02X}");
            }
            hex.push('\'');
            hex
        }
        other => escape_controls(&other.to_string()),
    }
}

/// `text` as it may go to stdout: on a terminal, with control characters other than
/// newlines and tabs spelled out (a value holding `ESC ]52;...` must not drive the
/// terminal); to a pipe or a file, as it is (a CSV or a dump stays byte for byte).
pub fn for_stdout(text: &str) -> std::borrow::Cow<'_, str> {
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() {
        std::borrow::Cow::Owned(escape_except(text, &['\n', '\t']))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `text` with control characters spelled out (`\n`, `\t`, `\u{1b}`).
pub fn escape_controls(text: &str) -> String {
    escape_except(text, &[])
}

/// `text` with control characters other than `keep` spelled out: `.schema` keeps the
/// newlines and tabs of a `CREATE` statement.
pub fn escape_except(text: &str, keep: &[char]) -> String {
    let escaped = |c: char| c.is_control() && !keep.contains(&c);
    if !text.chars().any(escaped) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// The columns and rows of one statement's result (`columns`, `values`; `values` is
/// absent when no row matched).
fn columns_and_rows(result: &Value) -> (Vec<String>, &[Value]) {
    let columns = result
        .get("columns")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .map(|n| n.as_str().map_or_else(|| n.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let rows = result
        .get("values")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    (columns, rows)
}

fn row_cells(row: &Value) -> &[Value] {
    row.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// One statement's rows in `mode`, ending with a newline (nothing for a table of no
/// columns).
pub fn render(mode: Mode, result: &Value) -> String {
    let (columns, rows) = columns_and_rows(result);
    match mode {
        Mode::Table => table(&columns, rows),
        Mode::Csv => csv(&columns, rows),
        Mode::Json => json(&columns, rows),
        Mode::Line => line(&columns, rows),
    }
}

/// An aligned table: numbers to the right, everything else to the left.
pub fn table(columns: &[String], rows: &[Value]) -> String {
    if columns.is_empty() {
        return String::new();
    }
    let header: Vec<String> = columns.iter().map(|c| escape_controls(c)).collect();
    let body: Vec<Vec<(String, bool)>> = rows
        .iter()
        .map(|row| {
            let cells = row_cells(row);
            (0..columns.len())
                .map(|i| {
                    let v = cells.get(i).unwrap_or(&Value::Null);
                    (cell(v, "NULL"), v.is_number())
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &body {
        for (w, (text, _)) in widths.iter_mut().zip(row) {
            *w = (*w).max(text.chars().count());
        }
    }
    let border = {
        let mut b = String::from("+");
        for w in &widths {
            b.push_str(&"-".repeat(w + 2));
            b.push('+');
        }
        b.push('\n');
        b
    };
    let line = |cells: &mut dyn Iterator<Item = (&str, bool)>| {
        let mut l = String::from("|");
        for ((text, right), w) in cells.zip(&widths) {
            let pad = w.saturating_sub(text.chars().count());
            l.push(' ');
            if right {
                l.push_str(&" ".repeat(pad));
                l.push_str(text);
            } else {
                l.push_str(text);
                l.push_str(&" ".repeat(pad));
            }
            l.push_str(" |");
        }
        l.push('\n');
        l
    };
    let mut out = border.clone();
    out.push_str(&line(&mut header.iter().map(|h| (h.as_str(), false))));
    out.push_str(&border);
    for row in &body {
        out.push_str(&line(&mut row.iter().map(|(t, r)| (t.as_str(), *r))));
    }
    if !body.is_empty() {
        out.push_str(&border);
    }
    out
}

fn csv(columns: &[String], rows: &[Value]) -> String {
    let mut writer = ::csv::WriterBuilder::new()
        .flexible(true)
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let mut records: Vec<Vec<String>> = vec![columns.to_vec()];
    records.extend(
        rows.iter()
            .map(|r| row_cells(r).iter().map(csv_field).collect()),
    );
    for record in records {
        if writer.write_record(&record).is_err() {
            break;
        }
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A CSV field: text as it is (CSV quotes what needs it), NULL empty, a BLOB as `X'..'`.
fn csv_field(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => cell(other, ""),
    }
}

fn json(columns: &[String], rows: &[Value]) -> String {
    let objects: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut object = Map::new();
            for (name, v) in columns.iter().zip(row_cells(row)) {
                object.insert(name.clone(), v.clone());
            }
            Value::Object(object)
        })
        .collect();
    let mut out = serde_json::to_string(&objects).unwrap_or_default();
    out.push('\n');
    out
}

fn line(columns: &[String], rows: &[Value]) -> String {
    let names: Vec<String> = columns.iter().map(|c| escape_controls(c)).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for row in rows {
        let cells = row_cells(row);
        for (i, name) in names.iter().enumerate() {
            let v = cells.get(i).unwrap_or(&Value::Null);
            let _ = writeln!(out, "{name:>width$} = {}", cell(v, "NULL"));
        }
        out.push('\n');
    }
    out
}

/// What a write reports: `N row(s) affected`, and the last insert ID when there is one.
pub fn write_summary(result: &Value) -> String {
    let affected = result
        .get("rows_affected")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let rows = if affected == 1 { "row" } else { "rows" };
    match result.get("last_insert_id").and_then(Value::as_i64) {
        Some(id) if affected > 0 => format!("{affected} {rows} affected, last insert id {id}"),
        _ => format!("{affected} {rows} affected"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn result() -> Value {
        json!({
            "columns": ["id", "name", "data"],
            "types": ["integer", "text", "blob"],
            "values": [[1, "fiona", [0, 255]], [22, null, null], [3, "two\nlines", "x"]]
        })
    }

    #[test]
    fn a_table_is_aligned_with_a_header_and_borders() {
        assert_eq!(
            render(Mode::Table, &result()),
            "\
+----+------------+---------+
| id | name       | data    |
+----+------------+---------+
|  1 | fiona      | X'00FF' |
| 22 | NULL       | NULL    |
|  3 | two\\nlines | x       |
+----+------------+---------+
"
        );
        // No rows: the header alone.
        let empty = json!({"columns": ["a"], "types": [""]});
        assert_eq!(render(Mode::Table, &empty), "+---+\n| a |\n+---+\n");
        // Rows shorter than the header are filled with NULL, never a panic.
        let ragged = json!({"columns": ["a", "b"], "values": [[1], "junk"]});
        assert_eq!(
            render(Mode::Table, &ragged),
            "\
+------+------+
| a    | b    |
+------+------+
|    1 | NULL |
| NULL | NULL |
+------+------+
"
        );
    }

    #[test]
    fn other_modes() {
        assert_eq!(
            render(Mode::Csv, &result()),
            "id,name,data\n1,fiona,X'00FF'\n22,,\n3,\"two\nlines\",x\n"
        );
        assert_eq!(
            render(Mode::Json, &result()),
            "[{\"id\":1,\"name\":\"fiona\",\"data\":[0,255]},{\"id\":22,\"name\":null,\"data\":null},\
             {\"id\":3,\"name\":\"two\\nlines\",\"data\":\"x\"}]\n"
        );
        assert!(
            render(Mode::Line, &result()).starts_with("  id = 1\nname = fiona\ndata = X'00FF'\n\n")
        );
        assert_eq!(Mode::parse("CSV"), Some(Mode::Csv));
        assert_eq!(Mode::parse("html"), None);
    }

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        assert_eq!(escape_controls("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(escape_except("a\n\tb\u{7}", &['\n', '\t']), "a\n\tb\\u{7}");
    }

    #[test]
    fn writes_say_how_many_rows_changed() {
        assert_eq!(
            write_summary(&json!({"last_insert_id": 7, "rows_affected": 1})),
            "1 row affected, last insert id 7"
        );
        assert_eq!(write_summary(&json!({})), "0 rows affected");
        assert_eq!(
            write_summary(&json!({"rows_affected": 3})),
            "3 rows affected"
        );
    }
}
