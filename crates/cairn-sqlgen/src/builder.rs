//! Parameterized SQL built from structured requests (the REST API and the seeds' routes):
//! identifiers are validated and double-quoted, values are always bound parameters.

use serde::{Deserialize, Serialize};

use cairn_sql::validate_name;
use cairn_sql::Error;
use cairn_sql::{Params, Statement, Value};

/// Validates `name` as a table or column name and returns it quoted as `[name]`.
///
/// Square brackets, not double quotes: SQLite reads a double-quoted name that matches no
/// column as a string literal (its "DQS" misfeature), which would turn a filter on an
/// unknown column into a silent no-match instead of an error.
///
/// # Errors
/// [`Error::BadIdentifier`] unless it is 1-64 letters, digits or underscores, not starting
/// with a digit. Reserved words are fine: we always quote.
pub fn quote_ident(name: &str) -> Result<String, Error> {
    validate_name(name)?;
    Ok(format!("[{name}]"))
}

/// One column of a new table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Declared type, e.g. `INTEGER`, `TEXT`, `VARCHAR(255)`; empty for none.
    #[serde(rename = "type", default)]
    pub ty: String,
    /// Part of the primary key.
    #[serde(default)]
    pub primary_key: bool,
    /// `NOT NULL`.
    #[serde(default)]
    pub not_null: bool,
    /// `UNIQUE`.
    #[serde(default)]
    pub unique: bool,
    /// Default value: a JSON scalar.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
}

/// Checks a declared type: words of letters/digits/underscores, optionally followed by
/// `(n)` or `(n, m)`, as SQLite's grammar allows (`VARCHAR(255)`, `DOUBLE PRECISION`).
fn validate_type(ty: &str) -> Result<(), Error> {
    let bad = || Error::BadRequest(format!("invalid column type {ty:?}"));
    let (words, args) = match ty.split_once('(') {
        Some((w, rest)) => (w, Some(rest.strip_suffix(')').ok_or_else(bad)?)),
        None => (ty, None),
    };
    let words_ok = !words.trim().is_empty()
        && words.len() <= 64
        && words.split_whitespace().all(|w| {
            w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !w.as_bytes()[0].is_ascii_digit()
        });
    let args_ok = args.is_none_or(|a| {
        let parts: Vec<&str> = a.split(',').map(str::trim).collect();
        parts.len() <= 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if words_ok && args_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A SQL literal for a DDL default (DDL cannot take bound parameters).
fn literal(v: &serde_json::Value) -> Result<String, Error> {
    Ok(match v {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::Bool(b) => i32::from(*b).to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => {
            return Err(Error::BadRequest(format!(
                "default {other} is not a scalar"
            )))
        }
    })
}

/// The definition of one column inside `CREATE TABLE` or `ALTER TABLE ... ADD COLUMN`.
///
/// # Errors
/// [`Error::BadIdentifier`], [`Error::BadRequest`] for a bad type or default.
pub fn column_def(c: &ColumnSpec, inline_pk: bool) -> Result<String, Error> {
    let mut s = quote_ident(&c.name)?;
    if !c.ty.trim().is_empty() {
        validate_type(c.ty.trim())?;
        s.push(' ');
        s.push_str(c.ty.trim());
    }
    if inline_pk {
        s.push_str(" PRIMARY KEY");
    }
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    if c.unique {
        s.push_str(" UNIQUE");
    }
    if let Some(d) = &c.default {
        s.push_str(" DEFAULT ");
        s.push_str(&literal(d)?);
    }
    Ok(s)
}

/// `CREATE TABLE "t" (...)`.
///
/// # Errors
/// [`Error::BadRequest`] for no columns or a repeated column; errors of [`column_def`].
pub fn create_table(table: &str, cols: &[ColumnSpec]) -> Result<Statement, Error> {
    if cols.is_empty() {
        return Err(Error::BadRequest(
            "a table needs at least one column".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in cols {
        if !seen.insert(c.name.to_ascii_lowercase()) {
            return Err(Error::BadRequest(format!(
                "column {} is given twice",
                c.name
            )));
        }
    }
    let pks: Vec<&ColumnSpec> = cols.iter().filter(|c| c.primary_key).collect();
    let mut defs = cols
        .iter()
        .map(|c| column_def(c, pks.len() == 1 && c.primary_key))
        .collect::<Result<Vec<_>, _>>()?;
    if pks.len() > 1 {
        let names = pks
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Result<Vec<_>, _>>()?;
        defs.push(format!("PRIMARY KEY ({})", names.join(", ")));
    }
    Ok(Statement::new(format!(
        "CREATE TABLE {} ({})",
        quote_ident(table)?,
        defs.join(", ")
    )))
}

/// Parses a column definition string such as `id INT, name VARCHAR(255)` (seeds 002/003)
/// into columns. Only names, types and the words `PRIMARY KEY`, `NOT NULL`, `UNIQUE` are
/// understood.
///
/// # Errors
/// [`Error::BadRequest`] for anything else.
pub fn parse_column_list(defs: &str) -> Result<Vec<ColumnSpec>, Error> {
    let mut cols = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, ch) in defs.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&defs[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&defs[start..]);
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            return Err(Error::BadRequest(format!(
                "empty column definition in {defs:?}"
            )));
        }
        let (name, rest) = part.split_once(char::is_whitespace).unwrap_or((part, ""));
        let mut rest = rest.trim().to_string();
        let mut c = ColumnSpec {
            name: name.trim_matches(|c| c == '"' || c == '`').to_string(),
            ..ColumnSpec::default()
        };
        for (words, flag) in [
            ("PRIMARY KEY", 0),
            ("NOT NULL", 1),
            ("UNIQUE", 2),
            ("AUTO_INCREMENT", 3),
        ] {
            let upper = rest.to_ascii_uppercase();
            if let Some(pos) = upper.find(words) {
                rest.replace_range(pos..pos + words.len(), "");
                match flag {
                    0 => c.primary_key = true,
                    1 => c.not_null = true,
                    2 => c.unique = true,
                    _ => {}
                }
            }
        }
        c.ty = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        cols.push(c);
    }
    Ok(cols)
}

/// A comparison operator of a row filter (`?col[op]=value` in the REST API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `IN (...)`
    In,
    /// `NOT IN (...)`
    NotIn,
    /// `LIKE`
    Like,
    /// `IS NULL` (`[is]=null`) / `IS NOT NULL` (`[is]=notnull`)
    Is,
}

impl std::str::FromStr for Op {
    type Err = Error;

    fn from_str(s: &str) -> Result<Op, Error> {
        Ok(match s {
            "eq" => Op::Eq,
            "ne" | "neq" => Op::Ne,
            "lt" => Op::Lt,
            "lte" | "le" => Op::Lte,
            "gt" => Op::Gt,
            "gte" | "ge" => Op::Gte,
            "in" => Op::In,
            "nin" | "not_in" => Op::NotIn,
            "like" => Op::Like,
            "is" => Op::Is,
            other => {
                return Err(Error::BadRequest(format!(
                    "unknown operator {other:?}: use eq, ne, lt, lte, gt, gte, in, nin, like or is"
                )))
            }
        })
    }
}

/// One condition on a column. Conditions are combined with AND.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// The column.
    pub column: String,
    /// The operator.
    pub op: Op,
    /// The operand(s): one value, several for `In`/`NotIn`, `Null`/`Text("notnull")` for `Is`.
    pub values: Vec<Value>,
}

/// A SQL fragment with its bound values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fragment {
    /// SQL text with `?` placeholders.
    pub sql: String,
    /// Values for the placeholders, in order.
    pub params: Vec<Value>,
}

/// ` WHERE ...` for `filters` (empty when there are none).
///
/// # Errors
/// [`Error::BadIdentifier`], [`Error::BadRequest`] for an operator without operands.
pub fn where_clause(filters: &[Filter]) -> Result<Fragment, Error> {
    let mut parts = Vec::new();
    let mut params = Vec::new();
    for f in filters {
        let col = quote_ident(&f.column)?;
        let one = || {
            f.values.first().cloned().ok_or_else(|| {
                Error::BadRequest(format!("no value for the filter on {}", f.column))
            })
        };
        match f.op {
            Op::In | Op::NotIn => {
                if f.values.is_empty() {
                    return Err(Error::BadRequest(format!(
                        "empty list for the filter on {}",
                        f.column
                    )));
                }
                let marks = vec!["?"; f.values.len()].join(", ");
                let not = if f.op == Op::NotIn { "NOT " } else { "" };
                parts.push(format!("{col} {not}IN ({marks})"));
                params.extend(f.values.iter().cloned());
            }
            Op::Is => {
                let v = one()?;
                let not_null = matches!(&v, Value::Text(t) if t.eq_ignore_ascii_case("notnull") || t.eq_ignore_ascii_case("not_null") || t.eq_ignore_ascii_case("not null"));
                let null = matches!(&v, Value::Null)
                    || matches!(&v, Value::Text(t) if t.eq_ignore_ascii_case("null"));
                if not_null {
                    parts.push(format!("{col} IS NOT NULL"));
                } else if null {
                    parts.push(format!("{col} IS NULL"));
                } else {
                    return Err(Error::BadRequest(format!(
                        "[is] takes null or notnull, got {v:?}"
                    )));
                }
            }
            op => {
                let sym = match op {
                    Op::Eq => "=",
                    Op::Ne => "<>",
                    Op::Lt => "<",
                    Op::Lte => "<=",
                    Op::Gt => ">",
                    Op::Gte => ">=",
                    _ => "LIKE",
                };
                parts.push(format!("{col} {sym} ?"));
                params.push(one()?);
            }
        }
    }
    if parts.is_empty() {
        return Ok(Fragment::default());
    }
    Ok(Fragment {
        sql: format!(" WHERE {}", parts.join(" AND ")),
        params,
    })
}

/// A `SELECT` of rows.
#[derive(Debug, Clone, Default)]
pub struct Select {
    /// The table.
    pub table: String,
    /// Columns to return; all when empty.
    pub columns: Vec<String>,
    /// A WHERE clause (from [`where_clause`] or a parsed condition).
    pub filter: Fragment,
    /// `(column, descending)` in order.
    pub order_by: Vec<(String, bool)>,
    /// At most this many rows.
    pub limit: Option<u64>,
    /// Skip this many rows.
    pub offset: Option<u64>,
}

/// The statement for `s`.
///
/// # Errors
/// [`Error::BadIdentifier`].
pub fn select(s: &Select) -> Result<Statement, Error> {
    let cols = if s.columns.is_empty() {
        "*".to_string()
    } else {
        s.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Result<Vec<_>, _>>()?
            .join(", ")
    };
    let mut sql = format!(
        "SELECT {cols} FROM {}{}",
        quote_ident(&s.table)?,
        s.filter.sql
    );
    if !s.order_by.is_empty() {
        let parts = s
            .order_by
            .iter()
            .map(|(c, desc)| {
                Ok(format!(
                    "{}{}",
                    quote_ident(c)?,
                    if *desc { " DESC" } else { "" }
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        sql.push_str(&format!(" ORDER BY {}", parts.join(", ")));
    }
    match (s.limit, s.offset) {
        (Some(l), Some(o)) => sql.push_str(&format!(" LIMIT {l} OFFSET {o}")),
        (Some(l), None) => sql.push_str(&format!(" LIMIT {l}")),
        (None, Some(o)) => sql.push_str(&format!(" LIMIT -1 OFFSET {o}")),
        (None, None) => {}
    }
    Ok(with_params(sql, s.filter.params.clone()))
}

fn with_params(sql: String, params: Vec<Value>) -> Statement {
    Statement {
        sql,
        params: if params.is_empty() {
            Params::None
        } else {
            Params::Positional(params)
        },
    }
}

/// `INSERT INTO "t" ("a", ...) VALUES (?, ...)` for one row given as column -> value.
///
/// # Errors
/// [`Error::BadIdentifier`], [`Error::BadRequest`] for an empty row or a non-scalar value.
pub fn insert(
    table: &str,
    row: &serde_json::Map<String, serde_json::Value>,
) -> Result<Statement, Error> {
    if row.is_empty() {
        return Ok(Statement::new(format!(
            "INSERT INTO {} DEFAULT VALUES",
            quote_ident(table)?
        )));
    }
    let cols = row
        .keys()
        .map(|c| quote_ident(c))
        .collect::<Result<Vec<_>, _>>()?;
    let vals = row
        .values()
        .map(Value::from_json_text)
        .collect::<Result<Vec<_>, _>>()?;
    let marks = vec!["?"; cols.len()].join(", ");
    Ok(with_params(
        format!(
            "INSERT INTO {} ({}) VALUES ({marks})",
            quote_ident(table)?,
            cols.join(", ")
        ),
        vals,
    ))
}

/// `UPDATE "t" SET "a" = ?, ... <filter>`.
///
/// # Errors
/// [`Error::BadIdentifier`], [`Error::BadRequest`] for an empty `set`.
pub fn update(
    table: &str,
    set: &serde_json::Map<String, serde_json::Value>,
    filter: &Fragment,
) -> Result<Statement, Error> {
    if set.is_empty() {
        return Err(Error::BadRequest("nothing to set".into()));
    }
    let mut params = Vec::new();
    let mut parts = Vec::new();
    for (c, v) in set {
        parts.push(format!("{} = ?", quote_ident(c)?));
        params.push(Value::from_json_text(v)?);
    }
    params.extend(filter.params.iter().cloned());
    Ok(with_params(
        format!(
            "UPDATE {} SET {}{}",
            quote_ident(table)?,
            parts.join(", "),
            filter.sql
        ),
        params,
    ))
}

/// `DELETE FROM "t" <filter>`.
///
/// # Errors
/// [`Error::BadIdentifier`].
pub fn delete(table: &str, filter: &Fragment) -> Result<Statement, Error> {
    Ok(with_params(
        format!("DELETE FROM {}{}", quote_ident(table)?, filter.sql),
        filter.params.clone(),
    ))
}

/// Aggregates over a table: `count` (`*` or a column), `sum`/`avg`/`min`/`max` of columns,
/// grouped by columns.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    /// The table.
    pub table: String,
    /// `COUNT(*)` for `Some("*")`, `COUNT("col")` for a column.
    pub count: Option<String>,
    /// Columns to sum.
    pub sum: Vec<String>,
    /// Columns to average.
    pub avg: Vec<String>,
    /// Columns to take the minimum of.
    pub min: Vec<String>,
    /// Columns to take the maximum of.
    pub max: Vec<String>,
    /// Grouping columns.
    pub group_by: Vec<String>,
    /// A WHERE clause.
    pub filter: Fragment,
}

/// The statement for `a`; result columns are named `count`, `sum_<col>`, `avg_<col>`,
/// `min_<col>`, `max_<col>`, after the grouping columns.
///
/// # Errors
/// [`Error::BadIdentifier`], [`Error::BadRequest`] when no aggregate is asked for.
pub fn aggregate(a: &Aggregate) -> Result<Statement, Error> {
    let mut exprs = Vec::new();
    for g in &a.group_by {
        exprs.push(quote_ident(g)?);
    }
    let n_groups = exprs.len();
    if let Some(c) = &a.count {
        let arg = if c == "*" {
            "*".to_string()
        } else {
            quote_ident(c)?
        };
        exprs.push(format!("COUNT({arg}) AS \"count\""));
    }
    for (func, cols) in [
        ("SUM", &a.sum),
        ("AVG", &a.avg),
        ("MIN", &a.min),
        ("MAX", &a.max),
    ] {
        for c in cols {
            exprs.push(format!(
                "{func}({}) AS \"{}_{c}\"",
                quote_ident(c)?,
                func.to_ascii_lowercase()
            ));
        }
    }
    if exprs.len() == n_groups {
        return Err(Error::BadRequest(
            "ask for at least one of count, sum, avg, min, max".into(),
        ));
    }
    let mut sql = format!(
        "SELECT {} FROM {}{}",
        exprs.join(", "),
        quote_ident(&a.table)?,
        a.filter.sql
    );
    if n_groups > 0 {
        let groups = a
            .group_by
            .iter()
            .map(|g| quote_ident(g))
            .collect::<Result<Vec<_>, _>>()?;
        sql.push_str(&format!(" GROUP BY {0} ORDER BY {0}", groups.join(", ")));
    }
    Ok(with_params(sql, a.filter.params.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_table_quotes_and_validates() {
        let cols = vec![
            ColumnSpec {
                name: "id".into(),
                ty: "INTEGER".into(),
                primary_key: true,
                ..ColumnSpec::default()
            },
            ColumnSpec {
                name: "order".into(),
                ty: "VARCHAR(255)".into(),
                not_null: true,
                default: Some("x'y".into()),
                ..ColumnSpec::default()
            },
        ];
        let s = create_table("t", &cols).expect("valid");
        assert_eq!(s.sql, "CREATE TABLE [t] ([id] INTEGER PRIMARY KEY, [order] VARCHAR(255) NOT NULL DEFAULT 'x''y')");
        let bad = vec![ColumnSpec {
            name: "a".into(),
            ty: "INT); DROP TABLE t; --".into(),
            ..ColumnSpec::default()
        }];
        assert!(create_table("t", &bad).is_err());
        assert!(create_table("t;x", &cols).is_err());
        assert!(create_table("t", &[]).is_err());
    }

    #[test]
    fn column_list_strings() {
        let cols = parse_column_list(
            "id INT PRIMARY KEY, name VARCHAR(255) NOT NULL, price DECIMAL(10, 2)",
        )
        .expect("valid");
        assert_eq!(cols.len(), 3);
        assert!(cols[0].primary_key);
        assert_eq!(cols[1].ty, "VARCHAR(255)");
        assert!(cols[1].not_null);
        assert_eq!(cols[2].ty, "DECIMAL(10, 2)");
    }

    #[test]
    fn filters_bind_values() {
        let f = where_clause(&[
            Filter {
                column: "age".into(),
                op: Op::Gte,
                values: vec![Value::Text("18".into())],
            },
            Filter {
                column: "grade".into(),
                op: Op::In,
                values: vec![Value::Text("A".into()), Value::Text("B".into())],
            },
            Filter {
                column: "deleted_at".into(),
                op: Op::Is,
                values: vec![Value::Text("null".into())],
            },
        ])
        .expect("valid");
        assert_eq!(
            f.sql,
            " WHERE [age] >= ? AND [grade] IN (?, ?) AND [deleted_at] IS NULL"
        );
        assert_eq!(f.params.len(), 3);
        assert!(where_clause(&[Filter {
            column: "a b".into(),
            op: Op::Eq,
            values: vec![Value::Null]
        }])
        .is_err());
    }

    #[test]
    fn aggregate_names_its_columns() {
        let s = aggregate(&Aggregate {
            table: "s".into(),
            count: Some("*".into()),
            avg: vec!["score".into()],
            group_by: vec!["grade".into()],
            ..Aggregate::default()
        })
        .expect("valid");
        assert_eq!(
            s.sql,
            "SELECT [grade], COUNT(*) AS \"count\", AVG([score]) AS \"avg_score\" FROM [s] GROUP BY [grade] ORDER BY [grade]"
        );
    }
}
