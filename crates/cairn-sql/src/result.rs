//! Results of statements, in a form that travels through the Raft log, and their
//! rendering as rqlite JSON.

use serde::{Deserialize, Serialize};

pub use crate::error_code::ErrorCode;
use crate::value::{base64_encode, Value};

/// Rows returned by a query: rqlite's `{"columns","types","values"}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Lower-cased declared column types; for expressions, the storage class of the
    /// first row's value (rqlite's rule), or `""` when there is no row.
    pub types: Vec<String>,
    /// Row values, one inner vector per row, as long as `columns`.
    pub values: Vec<Vec<Value>>,
}

/// What one statement did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// A statement that changed rows (or schema).
    Write {
        /// `sqlite3_last_insert_rowid()` after the statement.
        last_insert_id: i64,
        /// `sqlite3_changes()` for the statement.
        rows_affected: i64,
    },
    /// A statement that returned rows.
    Rows(Rows),
    /// The statement failed and changed nothing.
    Error(StatementError),
}

/// Why one statement failed: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementError {
    /// What kind of failure; rendered as the result's `code`.
    pub code: ErrorCode,
    /// What went wrong; SQLite's own message for [`ErrorCode::SqlError`].
    pub message: String,
    /// SQLite's extended result code (`sqlite3_extended_errcode`, e.g. 2067 for
    /// `SQLITE_CONSTRAINT_UNIQUE`) when SQLite raised the error; not rendered in `results`.
    /// Absent in results remembered before it existed (they are JSON, and default to
    /// `None`). Statement results also cross the wire between nodes in postcard, which has
    /// no optional fields: a node of an earlier version cannot decode an error result from
    /// this one (nor the reverse): during a rolling upgrade, a request forwarded across
    /// versions whose answer holds a statement error gets an undecodable answer (a write
    /// answers `outcome_unknown`).
    #[serde(default)]
    pub sqlite_code: Option<i32>,
}

impl StatementError {
    /// The code a whole-request API answers for this error: [`ErrorCode::from_sqlite`]'s
    /// finer code (`table_not_found`, `constraint_violation`, ...) for an SQLite error, the
    /// statement's own code otherwise.
    pub fn api_code(&self) -> ErrorCode {
        match self.code {
            ErrorCode::SqlError => ErrorCode::from_sqlite(self.sqlite_code, &self.message),
            other => other,
        }
    }
}

impl std::fmt::Display for StatementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One statement's outcome and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementResult {
    /// What happened.
    pub outcome: Outcome,
    /// Execution time in seconds.
    pub time: f64,
}

impl StatementResult {
    /// A result carrying an error.
    pub fn error(code: ErrorCode, msg: impl Into<String>) -> Self {
        StatementResult {
            outcome: Outcome::Error(StatementError {
                code,
                message: msg.into(),
                sqlite_code: None,
            }),
            time: 0.0,
        }
    }

    /// The error, when the statement failed.
    pub fn err(&self) -> Option<&StatementError> {
        match &self.outcome {
            Outcome::Error(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the statement failed.
    pub fn is_error(&self) -> bool {
        matches!(self.outcome, Outcome::Error(_))
    }
}

/// How results are rendered: rqlite's `associative`, `blob_array` and `timings` flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoding {
    /// `{"types":{col:type},"rows":[{col:value}]}` instead of column arrays.
    pub associative: bool,
    /// BLOBs as arrays of byte values instead of base64 strings.
    pub blob_array: bool,
    /// Include each statement's `time`.
    pub timings: bool,
}

impl StatementResult {
    /// Renders this result as one element of rqlite's `results` array (see [`Rendered`]).
    pub fn to_json(&self, enc: Encoding) -> serde_json::Value {
        serde_json::to_value(Rendered(self, enc)).unwrap_or(serde_json::Value::Null)
    }
}

/// One result in rqlite's JSON shape, serialized straight to the output (no intermediate
/// `serde_json::Value` tree, so a large response costs about its own size). Write results
/// omit zero `last_insert_id`/`rows_affected`; query results always carry `columns` and
/// `types` and omit `values` when there is no row (rqlite's documented shapes); errors are
/// `{"error": message, "code": code}`.
pub struct Rendered<'a>(pub &'a StatementResult, pub Encoding);

/// A whole `results` array in rqlite's shape (each element a [`Rendered`]).
pub struct RenderedAll<'a>(pub &'a [StatementResult], pub Encoding);

impl Serialize for RenderedAll<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| Rendered(r, self.1)))
    }
}

impl Serialize for Rendered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (r, enc) = (self.0, self.1);
        let mut m = s.serialize_map(None)?;
        match &r.outcome {
            Outcome::Write {
                last_insert_id,
                rows_affected,
            } => {
                if *last_insert_id != 0 {
                    m.serialize_entry("last_insert_id", last_insert_id)?;
                }
                if *rows_affected != 0 {
                    m.serialize_entry("rows_affected", rows_affected)?;
                }
            }
            Outcome::Rows(rows) if enc.associative => {
                let types: serde_json::Map<_, _> = rows
                    .columns
                    .iter()
                    .zip(&rows.types)
                    .map(|(c, t)| (c.clone(), serde_json::Value::from(t.clone())))
                    .collect();
                m.serialize_entry("types", &types)?;
                if !rows.values.is_empty() {
                    let out: Vec<AssocRow<'_>> =
                        rows.values.iter().map(|v| AssocRow(rows, v, enc)).collect();
                    m.serialize_entry("rows", &out)?;
                }
            }
            Outcome::Rows(rows) => {
                m.serialize_entry("columns", &rows.columns)?;
                m.serialize_entry("types", &rows.types)?;
                if !rows.values.is_empty() {
                    let out: Vec<ArrayRow<'_>> =
                        rows.values.iter().map(|v| ArrayRow(rows, v, enc)).collect();
                    m.serialize_entry("values", &out)?;
                }
            }
            Outcome::Error(e) => {
                m.serialize_entry("error", &e.message)?;
                m.serialize_entry("code", e.code.as_str())?;
            }
        }
        if enc.timings {
            m.serialize_entry("time", &r.time)?;
        }
        m.end()
    }
}

fn cell(rows: &Rows, i: usize, v: &Value, enc: Encoding) -> serde_json::Value {
    render_value(v, rows.types.get(i).map(String::as_str).unwrap_or(""), enc)
}

struct ArrayRow<'a>(&'a Rows, &'a [Value], Encoding);

impl Serialize for ArrayRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.1
                .iter()
                .enumerate()
                .map(|(i, v)| cell(self.0, i, v, self.2)),
        )
    }
}

struct AssocRow<'a>(&'a Rows, &'a [Value], Encoding);

impl Serialize for AssocRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .columns
                .iter()
                .zip(self.1.iter().enumerate())
                .map(|(c, (i, v))| (c, cell(self.0, i, v, self.2))),
        )
    }
}

/// Renders one value by its column's declared type, as rqlite does: BLOBs as base64 (or
/// byte arrays), TEXT/INTEGER in `date`/`datetime`/`timestamp` columns as RFC 3339 UTC,
/// INTEGER in `boolean` columns as `true`/`false`, non-finite REALs as `null`.
pub fn render_value(v: &Value, decl_type: &str, enc: Encoding) -> serde_json::Value {
    let t = decl_type.to_ascii_lowercase();
    let is_time = matches!(t.as_str(), "date" | "datetime" | "timestamp");
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) if t == "boolean" => serde_json::Value::Bool(*i != 0),
        Value::Integer(i) if is_time => chrono::DateTime::from_timestamp(*i, 0)
            .map(|d| rfc3339(&d).into())
            .unwrap_or_else(|| (*i).into()),
        Value::Integer(i) => (*i).into(),
        Value::Real(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Text(s) if is_time => parse_sqlite_time(s)
            .map(|d| rfc3339(&d).into())
            .unwrap_or_else(|| s.clone().into()),
        Value::Text(s) => s.clone().into(),
        Value::Blob(b) if enc.blob_array => {
            serde_json::Value::Array(b.iter().map(|x| (*x).into()).collect())
        }
        Value::Blob(b) => base64_encode(b).into(),
    }
}

fn rfc3339(d: &chrono::DateTime<chrono::Utc>) -> String {
    d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Parses the time formats SQLite's date functions produce and accept
/// (<https://sqlite.org/lang_datefunc.html>, "Time Values"), assuming UTC.
fn parse_sqlite_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&d));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| Utc.from_utc_datetime(&d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn write_result_omits_zero_fields() {
        let r = StatementResult {
            outcome: Outcome::Write {
                last_insert_id: 0,
                rows_affected: 0,
            },
            time: 0.5,
        };
        assert_eq!(r.to_json(Encoding::default()), json!({}));
        let enc = Encoding {
            timings: true,
            ..Encoding::default()
        };
        assert_eq!(r.to_json(enc), json!({"time": 0.5}));
    }

    #[test]
    fn query_result_keeps_columns_and_types_without_rows() {
        let r = StatementResult {
            outcome: Outcome::Rows(Rows {
                columns: vec!["id".into()],
                types: vec!["integer".into()],
                values: vec![],
            }),
            time: 0.0,
        };
        assert_eq!(
            r.to_json(Encoding::default()),
            json!({"columns": ["id"], "types": ["integer"]})
        );
    }

    #[test]
    fn values_follow_declared_types() {
        let enc = Encoding::default();
        assert_eq!(
            render_value(&Value::Integer(1), "boolean", enc),
            json!(true)
        );
        assert_eq!(
            render_value(&Value::Integer(0), "datetime", enc),
            json!("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            render_value(&Value::Text("2024-03-01 10:20:30".into()), "timestamp", enc),
            json!("2024-03-01T10:20:30Z")
        );
        assert_eq!(
            render_value(&Value::Blob(b"hi".to_vec()), "", enc),
            json!("aGk=")
        );
        let arr = Encoding {
            blob_array: true,
            ..enc
        };
        assert_eq!(
            render_value(&Value::Blob(vec![1, 2]), "", arr),
            json!([1, 2])
        );
        assert_eq!(render_value(&Value::Real(f64::NAN), "", enc), json!(null));
    }

    #[test]
    fn associative_rows_are_objects() {
        let r = StatementResult {
            outcome: Outcome::Rows(Rows {
                columns: vec!["id".into(), "name".into()],
                types: vec!["integer".into(), "text".into()],
                values: vec![vec![Value::Integer(1), Value::Text("fiona".into())]],
            }),
            time: 0.0,
        };
        let enc = Encoding {
            associative: true,
            ..Encoding::default()
        };
        assert_eq!(
            r.to_json(enc),
            json!({"types": {"id": "integer", "name": "text"}, "rows": [{"id": 1, "name": "fiona"}]})
        );
    }
}
