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

/// One SQL statement with its parameters, exactly as a client sent it.
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
    /// `["SQL :n", {"n": v}]` (rqlite "Parameterized statements"). Parameters bind as
    /// [`Value::from_json`] says; an array of integers 0-255 binds as a BLOB (rqlite 8.31).
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the element has another shape.
    pub fn from_json(v: &serde_json::Value) -> Result<Statement, Error> {
        StatementForm::deserialize(v)
            .map(|f| f.0)
            .map_err(|e| Error::BadRequest(e.to_string()))
    }

    /// Parses a whole rqlite request body held as a JSON value: see
    /// [`Statement::parse_batch_json`], which parses the bytes directly and should be
    /// preferred.
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the body is not an array, is empty, or holds a
    /// malformed element.
    pub fn parse_batch(body: &serde_json::Value) -> Result<Vec<Statement>, Error> {
        Batch::deserialize(body)
            .map(|b| b.0)
            .map_err(|e| Error::BadRequest(e.to_string()))
    }

    /// Parses an rqlite request body, a JSON array of statements (each as
    /// [`Statement::from_json`] describes), straight from its bytes into statements, without
    /// an intermediate `serde_json::Value` (which costs several times the body's size).
    /// At most [`MAX_PARAMS`] parameters per statement.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for invalid JSON, a body that is not a non-empty array, or a
    /// malformed element; the message says where.
    pub fn parse_batch_json(body: &[u8]) -> Result<Vec<Statement>, Error> {
        serde_json::from_slice::<Batch>(body)
            .map(|b| b.0)
            .map_err(|e| Error::BadRequest(format!("invalid request body: {e}")))
    }
}

/// Most parameters one statement may bind: SQLite's default `SQLITE_MAX_VARIABLE_NUMBER`
/// (<https://sqlite.org/limits.html>); more could never bind anyway.
pub const MAX_PARAMS: usize = 32_766;

/// A request body: a non-empty JSON array of statements.
struct Batch(Vec<Statement>);

/// One statement in one of rqlite's three JSON forms.
struct StatementForm(Statement);

/// One element after the SQL of a parameterized statement: a value, or the object of
/// named parameters.
enum Arg {
    Value(Value),
    Named(BTreeMap<String, Value>),
}

/// One bound value (never an object).
struct ParamValue(Value);

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Batch;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON array of statements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Batch, A::Error> {
                // The size hint comes from the client: do not trust it for allocation.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(StatementForm(s)) = seq.next_element()? {
                    out.push(s);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("empty statement list"));
                }
                Ok(Batch(out))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'de> Deserialize<'de> for StatementForm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatementForm;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a statement: a SQL string, or an array of the SQL string and its parameters",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StatementForm, E> {
                Ok(StatementForm(Statement::new(s)))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<StatementForm, E> {
                Ok(StatementForm(Statement::new(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatementForm, A::Error> {
                let sql: String = seq.next_element::<String>()?.ok_or_else(|| {
                    de::Error::custom("a parameterized statement must start with its SQL string")
                })?;
                let mut positional = Vec::new();
                let mut named = None;
                while let Some(arg) = seq.next_element::<Arg>()? {
                    match arg {
                        Arg::Named(map) if named.is_none() && positional.is_empty() => {
                            named = Some(map)
                        }
                        Arg::Named(_) => {
                            return Err(de::Error::custom(
                                "named parameters must be the only element after the SQL",
                            ))
                        }
                        Arg::Value(_) if named.is_some() => {
                            return Err(de::Error::custom(
                                "named parameters must be the only element after the SQL",
                            ))
                        }
                        Arg::Value(v) => {
                            if positional.len() == MAX_PARAMS {
                                return Err(de::Error::custom(format_args!(
                                    "more than {MAX_PARAMS} parameters in one statement"
                                )));
                            }
                            positional.push(v)
                        }
                    }
                }
                let params = match (named, positional.is_empty()) {
                    (Some(map), _) => Params::Named(map),
                    (None, true) => Params::None,
                    (None, false) => Params::Positional(positional),
                };
                Ok(StatementForm(Statement { sql, params }))
            }
        }
        d.deserialize_any(V)
    }
}

/// Visits one JSON value as a bound value; `named` says whether an object is acceptable.
struct ValueVisitor {
    named: bool,
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Arg;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a parameter: null, a number, a string, a boolean or an array of bytes")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Arg, E> {
        Ok(Arg::Value(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Arg, E> {
        Ok(Arg::Value(Value::Null))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Arg, E> {
        Ok(Arg::Value(Value::Integer(i64::from(b))))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Arg, E> {
        Ok(Arg::Value(Value::Integer(i)))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Arg, E> {
        // As `Value::from_json`: INTEGER when it fits an i64, else REAL.
        Ok(Arg::Value(match i64::try_from(u) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Real(u as f64),
        }))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Arg, E> {
        Ok(Arg::Value(Value::Real(f)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Arg, E> {
        Ok(Arg::Value(
            hex_literal(s).map_or_else(|| Value::Text(s.to_string()), Value::Blob),
        ))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Arg, E> {
        Ok(Arg::Value(
            hex_literal(&s).map_or(Value::Text(s), Value::Blob),
        ))
    }
    /// rqlite 8.31: a BLOB given as an array of byte values.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Arg, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        Ok(Arg::Value(Value::Blob(bytes)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Arg, A::Error> {
        if !self.named {
            return Err(de::Error::custom(
                "a parameter must be null, a number, a string, a boolean or an array of bytes, not an object",
            ));
        }
        let mut out = BTreeMap::new();
        while let Some((k, ParamValue(v))) = map.next_entry::<String, ParamValue>()? {
            if out.len() == MAX_PARAMS && !out.contains_key(&k) {
                return Err(de::Error::custom(format_args!(
                    "more than {MAX_PARAMS} parameters in one statement"
                )));
            }
            out.insert(k, v);
        }
        Ok(Arg::Named(out))
    }
}

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor { named: true })
    }
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(ValueVisitor { named: false })? {
            Arg::Value(v) => Ok(ParamValue(v)),
            // `named: false` never yields a map.
            Arg::Named(_) => Err(de::Error::custom("a named parameter cannot be an object")),
        }
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
        assert!(Statement::parse_batch(&json!([["x", [256]]])).is_err());
        assert!(Statement::parse_batch(&json!([["x", [-1]]])).is_err());
        assert!(Statement::parse_batch(&json!([["x", ["a"]]])).is_err());
        assert!(Statement::parse_batch(&json!([["x", {"a": 1}, 2]])).is_err());
        assert!(Statement::parse_batch(&json!([["x", 2, {"a": 1}]])).is_err());
        assert!(Statement::parse_batch(&json!([["x", {"a": {"b": 1}}]])).is_err());
        assert!(Statement::parse_batch(&json!([[1, 2]])).is_err());
    }

    /// Regression (issue 7, item 8): bodies are parsed from bytes, with the same results as
    /// through a JSON value; BLOBs may be arrays of bytes; parameter counts are bounded.
    #[test]
    fn parses_bodies_from_bytes() {
        let body = br#"["CREATE TABLE t (a)", ["INSERT INTO t VALUES(?, ?, ?, ?, ?)", 1, "x'0aff'", [1, 2, 255], null, true],
            ["INSERT INTO t VALUES(:a)", {"a": 2.5}], ["SELECT 1"], ["SELECT ?", 18446744073709551615]]"#;
        let batch = Statement::parse_batch_json(body).expect("valid batch");
        let via_value = Statement::parse_batch(&serde_json::from_slice(body).expect("json"));
        assert_eq!(Some(&batch), via_value.as_ref().ok());
        assert_eq!(
            batch[1].params,
            Params::Positional(vec![
                Value::Integer(1),
                Value::Blob(vec![0x0a, 0xff]),
                Value::Blob(vec![1, 2, 255]),
                Value::Null,
                Value::Integer(1),
            ])
        );
        assert_eq!(batch[3].params, Params::None);
        assert_eq!(
            batch[4].params,
            Params::Positional(vec![Value::Real(u64::MAX as f64)])
        );
        for bad in [
            &b"[\"CREATE"[..],
            b"[]",
            b"{}",
            b"\"SELECT 1\"",
            b"[1]",
            b"[[1]]",
            b"[[]]",
            b"",
            b"[\"a\",]",
        ] {
            let e = Statement::parse_batch_json(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(matches!(e, Error::BadRequest(_)), "{e}");
        }
        let many = format!("[[\"SELECT 1\"{}]]", ",1".repeat(MAX_PARAMS + 1));
        let e = Statement::parse_batch_json(many.as_bytes()).expect_err("too many parameters");
        assert!(e.to_string().contains("parameters"), "{e}");
        let ok = format!("[[\"SELECT 1\"{}]]", ",1".repeat(MAX_PARAMS));
        assert!(Statement::parse_batch_json(ok.as_bytes()).is_ok());
    }

    #[test]
    fn hex_literal_needs_even_hex_digits() {
        assert_eq!(hex_literal("x'zz'"), None);
        assert_eq!(hex_literal("x'abc'"), None);
        assert_eq!(hex_literal("hello"), None);
        assert_eq!(hex_literal("X''"), Some(vec![]));
    }
}
