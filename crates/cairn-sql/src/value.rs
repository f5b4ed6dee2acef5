//! Values and statements as they travel through the Raft log.
//!
//! `serde_json::Value` cannot be encoded by binary formats such as postcard (it needs
//! `deserialize_any`), so log entries carry these small enums instead.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::Error;

/// One SQLite value: the five storage classes of <https://sqlite.org/datatype3.html>.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE 754 double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// Converts a JSON parameter the way rqlite binds it: numbers to INTEGER when they fit
    /// an `i64`, else REAL; booleans to 1/0; strings of the form `x'0A1B'` to a BLOB
    /// (rqlite's documented hex-literal parameter), other strings to TEXT.
    ///
    /// # Errors
    /// [`Error::BadParameter`] for arrays and objects, which SQLite cannot bind.
    pub fn from_json(v: &serde_json::Value) -> Result<Value, Error> {
        Ok(match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Integer(i),
                None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => match hex_literal(s) {
                Some(bytes) => Value::Blob(bytes),
                None => Value::Text(s.clone()),
            },
            other => {
                return Err(Error::BadParameter(format!(
                    "parameter {other} is not a scalar (null, number, string or boolean)"
                )))
            }
        })
    }

    /// Converts a JSON value as plain data, for the REST API: like [`Value::from_json`]
    /// except that strings are always TEXT (a REST client writing the string `x'cafe'`
    /// means those seven characters).
    ///
    /// # Errors
    /// [`Error::BadParameter`] for arrays and objects.
    pub fn from_json_text(v: &serde_json::Value) -> Result<Value, Error> {
        match v {
            serde_json::Value::String(s) => Ok(Value::Text(s.clone())),
            other => Value::from_json(other),
        }
    }

    /// The SQLite type name of this value's storage class, lower-cased as rqlite prints
    /// inferred types.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

/// Parses `x'0a1B'` / `X'..'` into bytes; `None` when `s` is not such a literal.
fn hex_literal(s: &str) -> Option<Vec<u8>> {
    let inner = s
        .strip_prefix("x'")
        .or_else(|| s.strip_prefix("X'"))?
        .strip_suffix('\'')?;
    if inner.len() % 2 != 0 {
        return None;
    }
    (0..inner.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(inner.get(i..i + 2)?, 16).ok())
        .collect()
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl From<rusqlite::types::ValueRef<'_>> for Value {
    fn from(v: rusqlite::types::ValueRef<'_>) -> Self {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

/// Bound parameters of one statement: rqlite accepts either positional (`?`) or named
/// (`:name`, `@name`, `$name`) parameters, never both in one statement.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum Params {
    /// No parameters.
    #[default]
    None,
    /// Values for `?` / `?NNN` placeholders, in order.
    Positional(Vec<Value>),
    /// Values by name, without the `:`/`@`/`$` prefix.
    Named(BTreeMap<String, Value>),
}

/// One SQL statement with its parameters, as a client sent it (after the deterministic
/// rewrite, when it is a write).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// The SQL text: exactly one statement.
    pub sql: String,
    /// The values bound to its placeholders.
    pub params: Params,
}

impl Statement {
    /// A statement without parameters.
    pub fn new(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            params: Params::None,
        }
    }

    /// Parses one element of an rqlite request body: `"SQL"`, `["SQL ?", p1, p2]` or
    /// `["SQL :n", {"n": v}]` (rqlite "Parameterized statements").
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the element has another shape.
    pub fn from_json(v: &serde_json::Value) -> Result<Statement, Error> {
        match v {
            serde_json::Value::String(s) => Ok(Statement::new(s.clone())),
            serde_json::Value::Array(items) => {
                let Some(serde_json::Value::String(sql)) = items.first() else {
                    return Err(Error::BadRequest(
                        "a parameterized statement must start with its SQL string".into(),
                    ));
                };
                let rest = &items[1..];
                let params = match rest {
                    [] => Params::None,
                    [serde_json::Value::Object(map)] => Params::Named(
                        map.iter()
                            .map(|(k, v)| Ok((k.clone(), Value::from_json(v)?)))
                            .collect::<Result<_, Error>>()?,
                    ),
                    _ => Params::Positional(
                        rest.iter()
                            .map(Value::from_json)
                            .collect::<Result<_, _>>()?,
                    ),
                };
                Ok(Statement {
                    sql: sql.clone(),
                    params,
                })
            }
            other => Err(Error::BadRequest(format!(
                "each statement must be a string or an array, got {other}"
            ))),
        }
    }

    /// Parses a whole rqlite request body: a JSON array of statements.
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the body is not an array, is empty, or holds a
    /// malformed element.
    pub fn parse_batch(body: &serde_json::Value) -> Result<Vec<Statement>, Error> {
        let serde_json::Value::Array(items) = body else {
            return Err(Error::BadRequest(
                "request body must be a JSON array of statements".into(),
            ));
        };
        if items.is_empty() {
            return Err(Error::BadRequest("empty statement list".into()));
        }
        items.iter().map(Statement::from_json).collect()
    }
}

/// Base64 with padding, as rqlite encodes BLOBs.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_rqlite_statement_shapes() {
        let batch = Statement::parse_batch(&json!([
            "CREATE TABLE t (a)",
            ["INSERT INTO t VALUES(?, ?)", 1, "x'0aff'"],
            ["INSERT INTO t VALUES(:a)", {"a": 2.5}],
        ]))
        .expect("valid batch");
        assert_eq!(batch[0].params, Params::None);
        assert_eq!(
            batch[1].params,
            Params::Positional(vec![Value::Integer(1), Value::Blob(vec![0x0a, 0xff])])
        );
        assert_eq!(
            batch[2].params,
            Params::Named([("a".to_string(), Value::Real(2.5))].into())
        );
    }

    #[test]
    fn rejects_bad_bodies() {
        assert!(Statement::parse_batch(&json!([])).is_err());
        assert!(Statement::parse_batch(&json!({"q": 1})).is_err());
        assert!(Statement::parse_batch(&json!([1])).is_err());
        assert!(Statement::parse_batch(&json!([["x", [1]]])).is_err());
        assert!(Statement::parse_batch(&json!([[1, 2]])).is_err());
    }

    #[test]
    fn hex_literal_needs_even_hex_digits() {
        assert_eq!(hex_literal("x'zz'"), None);
        assert_eq!(hex_literal("x'abc'"), None);
        assert_eq!(hex_literal("hello"), None);
        assert_eq!(hex_literal("X''"), Some(vec![]));
    }
}
