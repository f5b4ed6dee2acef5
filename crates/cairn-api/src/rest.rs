//! The REST API under `/v1/databases/{db}`: tables with typed columns, rows (insert,
//! search with filters, update, delete) and aggregates, for people who do not write SQL.
//! Identifiers are validated and quoted, values are always bound parameters, and UPDATE or
//! DELETE without a filter is refused unless the request says `all=true`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use cairn_sql::{ErrorCode, Outcome, Rows, Statement, StatementResult, Value};
use cairn_sqlgen::{ColumnSpec, Filter, Fragment, Op};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::flags::Flags;
use crate::AppState;

/// Rows returned when a request gives no `limit`.
pub const DEFAULT_LIMIT: u64 = 1000;
/// Largest `limit` accepted.
pub const MAX_LIMIT: u64 = 10_000;

/// Query-string keys that are options, not column filters (use `col[eq]=` to filter on a
/// column with one of these names).
const RESERVED: &[&str] = &[
    "order_by",
    "limit",
    "offset",
    "cursor",
    "columns",
    "level",
    "freshness",
    "timeout",
    "all",
    "pretty",
    "redirect",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "group_by",
];

/// Fails with the first statement error, if any, answered with the code SQLite's result
/// code gives (`table_not_found`, `constraint_violation`, ...; see
/// [`cairn_sql::StatementError::api_code`]) and that code's status.
pub(crate) fn check(results: Vec<StatementResult>) -> Result<Vec<StatementResult>, ApiError> {
    match results.iter().find_map(StatementResult::err) {
        Some(e) => Err(ApiError::from(e)),
        None => Ok(results),
    }
}

/// Runs writes as one atomic batch through the leader.
pub(crate) async fn write(
    state: &AppState,
    db: &str,
    stmts: Vec<Statement>,
    timeout: Duration,
) -> Result<Vec<StatementResult>, ApiError> {
    check(state.service.execute(db, stmts, true, timeout).await?)
}

/// Runs reads at the flags' level.
pub(crate) async fn read(
    state: &AppState,
    db: &str,
    stmts: Vec<Statement>,
    flags: &Flags,
) -> Result<Vec<Rows>, ApiError> {
    let results = check(
        state
            .service
            .query(db, stmts, flags.level, flags.freshness, flags.timeout)
            .await?,
    )?;
    Ok(results
        .into_iter()
        .map(|r| match r.outcome {
            Outcome::Rows(rows) => rows,
            _ => Rows::default(),
        })
        .collect())
}

/// Rows as JSON objects keyed by column name (values rendered as rqlite renders them).
pub(crate) fn objects(rows: &Rows) -> Vec<serde_json::Map<String, serde_json::Value>> {
    rows.values
        .iter()
        .map(|row| {
            rows.columns
                .iter()
                .zip(row.iter().enumerate())
                .map(|(c, (i, v))| {
                    let ty = rows.types.get(i).map(String::as_str).unwrap_or("");
                    (
                        c.clone(),
                        cairn_sql::render_value(v, ty, cairn_sql::Encoding::default()),
                    )
                })
                .collect()
        })
        .collect()
}

pub(crate) fn rows_affected(results: &[StatementResult]) -> i64 {
    results
        .iter()
        .map(|r| match r.outcome {
            Outcome::Write { rows_affected, .. } => rows_affected,
            _ => 0,
        })
        .sum()
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub(crate) fn sql_err(e: cairn_sql::Error) -> ApiError {
    ApiError::from(e)
}

/// The columns of a new table: a list of column objects, a list of names (untyped
/// columns, seed 001's shorthand), or an object of name -> type (seed 004's shorthand).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ColumnsInput {
    /// `[{"name":"id","type":"INTEGER","primary_key":true}, "name"]`
    List(Vec<ColumnItem>),
    /// `{"id": "INTEGER", "name": "TEXT"}`
    Map(serde_json::Map<String, serde_json::Value>),
}

/// One element of a column list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ColumnItem {
    /// A bare name: an untyped column.
    Name(String),
    /// A full column definition.
    Spec(ColumnSpec),
}

impl ColumnsInput {
    /// The column definitions.
    ///
    /// # Errors
    /// 400 when a type in the map form is not a string.
    pub fn specs(self) -> Result<Vec<ColumnSpec>, ApiError> {
        match self {
            ColumnsInput::List(items) => Ok(items
                .into_iter()
                .map(|i| match i {
                    ColumnItem::Name(name) => ColumnSpec {
                        name,
                        ..ColumnSpec::default()
                    },
                    ColumnItem::Spec(s) => s,
                })
                .collect()),
            ColumnsInput::Map(m) => m
                .into_iter()
                .map(|(name, ty)| match ty {
                    serde_json::Value::String(ty) => Ok(ColumnSpec {
                        name,
                        ty,
                        ..ColumnSpec::default()
                    }),
                    other => Err(ApiError::bad_request(format!(
                        "the type of column {name} must be a string, got {other}"
                    ))),
                })
                .collect(),
        }
    }
}

/// Body of `POST /v1/databases/{db}/tables`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTable {
    /// Table name.
    pub name: String,
    /// Its columns.
    pub columns: ColumnsInput,
    /// Succeed without change when the table exists.
    #[serde(default)]
    pub if_not_exists: bool,
}

/// Answer of `POST /v1/databases/{db}/tables`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableCreated {
    /// The database.
    pub database: String,
    /// The new table.
    pub table: String,
    /// Its columns, as given.
    pub columns: Vec<ColumnSpec>,
}

/// One column of an existing table (`pragma_table_info`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Declared type; `""` for none.
    #[serde(rename = "type")]
    pub ty: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// The default as the JSON value it was given as (an expression as its SQL text), or
    /// null.
    pub default: serde_json::Value,
    /// Part of the primary key.
    pub primary_key: bool,
    /// Has a single-column UNIQUE constraint.
    pub unique: bool,
}

/// A table: its columns and row count.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<ColumnInfo>,
    /// How many rows it holds.
    pub rows: i64,
}

/// Answer of `GET /v1/databases/{db}/tables`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableList {
    /// The database.
    pub database: String,
    /// Every user table, by name.
    pub tables: Vec<TableInfo>,
}

/// A table's name and row count.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableSummary {
    /// Table name.
    pub name: String,
    /// How many rows it holds.
    pub rows: i64,
}

/// Answer of `GET /v1/databases/{db}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseDetail {
    /// Database name.
    pub name: String,
    /// Size of its file on this replica, in bytes (0 when this replica does not have it
    /// yet).
    pub size_bytes: u64,
    /// Its user tables.
    pub tables: Vec<TableSummary>,
}

/// Body of `POST .../rows`: one row object, or an array of them (inserted atomically).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RowsInput {
    /// One row: column -> value.
    One(serde_json::Map<String, serde_json::Value>),
    /// Several rows.
    Many(Vec<serde_json::Map<String, serde_json::Value>>),
}

/// Answer of `POST .../rows`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Inserted {
    /// How many rows were inserted.
    pub inserted: usize,
    /// Their rowids, in order.
    pub ids: Vec<i64>,
}

/// Answer of `GET .../rows`: one page.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowsPage {
    /// The rows, as objects keyed by column name.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// How many rows this page holds.
    pub count: usize,
    /// The `cursor` of the next page; null on the last page.
    pub next: Option<String>,
}

/// Answer of `PATCH .../rows`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Updated {
    /// Rows changed.
    pub updated: i64,
}

/// Answer of `DELETE .../rows`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// Rows deleted.
    pub deleted: i64,
}

/// Answer of `GET .../aggregate`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AggregateRows {
    /// One object per group: the group columns, then `count`, `sum_<col>`, `avg_<col>`,
    /// `min_<col>`, `max_<col>`.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Creates a table from validated column specs.
pub(crate) async fn create_table_in(
    state: &AppState,
    db: &str,
    table: &str,
    cols: &[ColumnSpec],
    if_not_exists: bool,
    timeout: Duration,
) -> Result<(), ApiError> {
    let mut stmt = cairn_sqlgen::create_table(table, cols).map_err(sql_err)?;
    if if_not_exists {
        stmt.sql = stmt
            .sql
            .replacen("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1);
    }
    write(state, db, vec![stmt], timeout).await.map(|_| ())
}

/// `POST /v1/databases/{db}/tables`: create a table with typed columns.
#[utoipa::path(post, path = "/v1/databases/{db}/tables", tag = "tables",
    params(("db" = String, Path, description = "Database name")),
    request_body = CreateTable,
    responses((status = 201, description = "Created", body = TableCreated),
              (status = 400, description = "Bad name, type or body", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown database", body = crate::error::ErrorBody),
              (status = 409, description = "The table exists", body = crate::error::ErrorBody)))]
pub async fn create_table(
    State(state): State<AppState>,
    Path(db): Path<String>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateTable = parse_json(&body)?;
    let cols = req.columns.specs()?;
    create_table_in(
        &state,
        &db,
        &req.name,
        &cols,
        req.if_not_exists,
        flags.timeout,
    )
    .await?;
    let body = TableCreated {
        database: db,
        table: req.name,
        columns: cols,
    };
    Ok(flags.json(StatusCode::CREATED, &body))
}

/// The columns of `table` (`pragma_table_info`), or `None` when it does not exist.
pub(crate) async fn describe(
    state: &AppState,
    db: &str,
    table: &str,
    flags: &Flags,
) -> Result<Option<TableInfo>, ApiError> {
    cairn_sql::validate_name(table).map_err(sql_err)?;
    let stmt = Statement {
        sql:
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid"
                .into(),
        params: cairn_sql::Params::Positional(vec![Value::Text(table.to_string())]),
    };
    let count = Statement::new(format!(
        "SELECT COUNT(*) FROM {}",
        cairn_sqlgen::quote_ident(table).map_err(sql_err)?
    ));
    // Columns with a single-column UNIQUE constraint.
    let unique = Statement {
        sql: "SELECT ii.name FROM pragma_index_list(?1) AS il, pragma_index_info(il.name) AS ii \
              WHERE il.\"unique\" = 1 AND il.origin = 'u' \
              AND (SELECT COUNT(*) FROM pragma_index_info(il.name)) = 1"
            .into(),
        params: cairn_sql::Params::Positional(vec![Value::Text(table.to_string())]),
    };
    let rows = read(state, db, vec![stmt, unique], flags).await?;
    let Some(info) = rows.first().filter(|r| !r.values.is_empty()) else {
        return Ok(None);
    };
    let unique: Vec<String> = rows
        .get(1)
        .map(|r| {
            r.values
                .iter()
                .filter_map(|v| v.first().map(text))
                .collect()
        })
        .unwrap_or_default();
    let columns: Vec<ColumnInfo> = info
        .values
        .iter()
        .map(|r| {
            let get = |i: usize| r.get(i).cloned().unwrap_or(Value::Null);
            ColumnInfo {
                name: text(&get(0)),
                ty: text(&get(1)),
                not_null: matches!(get(2), Value::Integer(1)),
                default: default_value(&get(3)),
                primary_key: matches!(get(4), Value::Integer(n) if n > 0),
                unique: unique.contains(&text(&get(0))),
            }
        })
        .collect();
    let n = read(state, db, vec![count], flags)
        .await?
        .first()
        .and_then(|r| r.values.first())
        .and_then(|r| r.first())
        .and_then(|v| {
            if let Value::Integer(n) = v {
                Some(*n)
            } else {
                None
            }
        })
        .unwrap_or(0);
    Ok(Some(TableInfo {
        name: table.to_string(),
        columns,
        rows: n,
    }))
}

/// A column default as SQLite stores it (SQL text: `'it''s'`, `0`, `NULL`,
/// `CURRENT_TIMESTAMP`) turned back into the JSON value it was given as; an expression stays
/// as its SQL text.
fn default_value(v: &Value) -> serde_json::Value {
    let sql = match v {
        Value::Null => return serde_json::Value::Null,
        v => text(v),
    };
    if let Some(inner) = sql.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.replace("''", "'").into();
    }
    if sql.eq_ignore_ascii_case("null") {
        return serde_json::Value::Null;
    }
    if let Ok(i) = sql.parse::<i64>() {
        return i.into();
    }
    if let Some(n) = sql
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        return serde_json::Value::Number(n);
    }
    sql.into()
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Null => String::new(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Names of the user tables of `db`.
pub(crate) async fn table_names(
    state: &AppState,
    db: &str,
    flags: &Flags,
) -> Result<Vec<String>, ApiError> {
    let stmt = Statement::new(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    );
    let rows = read(state, db, vec![stmt], flags).await?;
    Ok(rows
        .first()
        .map(|r| {
            r.values
                .iter()
                .filter_map(|row| row.first().map(text))
                .collect()
        })
        .unwrap_or_default())
}

/// `GET /v1/databases/{db}/tables`: every table with its columns and row count.
#[utoipa::path(get, path = "/v1/databases/{db}/tables", tag = "tables",
    params(("db" = String, Path, description = "Database name"),
           ("level" = Option<String>, Query, description = "Read consistency: none, weak (default), linearizable, strong")),
    responses((status = 200, description = "Tables", body = TableList),
              (status = 404, description = "Unknown database", body = crate::error::ErrorBody)))]
pub async fn list_tables(
    State(state): State<AppState>,
    Path(db): Path<String>,
    flags: Flags,
) -> Result<Response, ApiError> {
    let mut tables = Vec::new();
    for t in table_names(&state, &db, &flags).await? {
        if let Some(d) = describe(&state, &db, &t, &flags).await? {
            tables.push(d);
        }
    }
    Ok(flags.json(
        StatusCode::OK,
        &TableList {
            database: db,
            tables,
        },
    ))
}

/// `GET /v1/databases/{db}`: the database's size and tables.
#[utoipa::path(get, path = "/v1/databases/{db}", tag = "databases",
    params(("db" = String, Path, description = "Database name")),
    responses((status = 200, description = "The database", body = DatabaseDetail),
              (status = 404, description = "Unknown database", body = crate::error::ErrorBody)))]
pub async fn get_database(
    State(state): State<AppState>,
    Path(db): Path<String>,
    flags: Flags,
) -> Result<Response, ApiError> {
    // Existence and tables are read at the request's level (on the leader by default), so
    // a database created through this node is visible here at once; the size is this
    // replica's file.
    let names = table_names(&state, &db, &flags).await?;
    let size = state
        .service
        .databases()
        .into_iter()
        .find(|(n, _)| *n == db)
        .map(|(_, s)| s)
        .unwrap_or(0);
    let mut tables = Vec::new();
    for t in names {
        if let Some(d) = describe(&state, &db, &t, &flags).await? {
            tables.push(TableSummary {
                name: t,
                rows: d.rows,
            });
        }
    }
    let body = DatabaseDetail {
        name: db,
        size_bytes: size,
        tables,
    };
    Ok(flags.json(StatusCode::OK, &body))
}

fn table_not_found(table: &str) -> ApiError {
    ApiError::of(ErrorCode::TableNotFound, format!("no such table: {table}"))
}

/// `GET /v1/databases/{db}/tables/{table}`: columns and row count.
#[utoipa::path(get, path = "/v1/databases/{db}/tables/{table}", tag = "tables",
    params(("db" = String, Path, description = "Database name"), ("table" = String, Path, description = "Table name")),
    responses((status = 200, description = "The table", body = TableInfo),
              (status = 404, description = "Unknown database or table", body = crate::error::ErrorBody)))]
pub async fn get_table(
    State(state): State<AppState>,
    Path((db, table)): Path<(String, String)>,
    flags: Flags,
) -> Result<Response, ApiError> {
    let d = describe(&state, &db, &table, &flags)
        .await?
        .ok_or_else(|| table_not_found(&table))?;
    Ok(flags.json(StatusCode::OK, &d))
}

/// `DELETE /v1/databases/{db}/tables/{table}`: drop the table.
#[utoipa::path(delete, path = "/v1/databases/{db}/tables/{table}", tag = "tables",
    params(("db" = String, Path, description = "Database name"), ("table" = String, Path, description = "Table name")),
    responses((status = 200, description = "Dropped", body = crate::databases::Dropped),
              (status = 404, description = "Unknown database or table", body = crate::error::ErrorBody)))]
pub async fn drop_table(
    State(state): State<AppState>,
    Path((db, table)): Path<(String, String)>,
    flags: Flags,
) -> Result<Response, ApiError> {
    let stmt = Statement::new(format!(
        "DROP TABLE {}",
        cairn_sqlgen::quote_ident(&table).map_err(sql_err)?
    ));
    write(&state, &db, vec![stmt], flags.timeout).await?;
    Ok(flags.json(
        StatusCode::OK,
        &crate::databases::Dropped { dropped: table },
    ))
}

/// Body of `PATCH /v1/databases/{db}/tables/{table}`: one change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlterTable {
    /// A column to add.
    pub add_column: Option<ColumnSpec>,
    /// A column to rename: `{"from": "old", "to": "new"}`.
    pub rename_column: Option<RenameColumn>,
}

/// A column rename.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameColumn {
    /// Current name.
    pub from: String,
    /// New name.
    pub to: String,
}

/// `PATCH /v1/databases/{db}/tables/{table}`: add or rename a column.
#[utoipa::path(patch, path = "/v1/databases/{db}/tables/{table}", tag = "tables",
    params(("db" = String, Path, description = "Database name"), ("table" = String, Path, description = "Table name")),
    request_body = AlterTable,
    responses((status = 200, description = "Changed", body = TableInfo),
              (status = 400, description = "Bad change", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown database, table or column", body = crate::error::ErrorBody)))]
pub async fn alter_table(
    State(state): State<AppState>,
    Path((db, table)): Path<(String, String)>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AlterTable = parse_json(&body)?;
    let t = cairn_sqlgen::quote_ident(&table).map_err(sql_err)?;
    let sql = match (&req.add_column, &req.rename_column) {
        (Some(c), None) => {
            if c.primary_key {
                return Err(ApiError::bad_request(
                    "SQLite cannot add a primary key column to an existing table",
                ));
            }
            format!(
                "ALTER TABLE {t} ADD COLUMN {}",
                cairn_sqlgen::column_def(c, false).map_err(sql_err)?
            )
        }
        (None, Some(r)) => format!(
            "ALTER TABLE {t} RENAME COLUMN {} TO {}",
            cairn_sqlgen::quote_ident(&r.from).map_err(sql_err)?,
            cairn_sqlgen::quote_ident(&r.to).map_err(sql_err)?
        ),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of add_column or rename_column",
            ))
        }
    };
    write(&state, &db, vec![Statement::new(sql)], flags.timeout).await?;
    let d = describe(&state, &db, &table, &flags)
        .await?
        .ok_or_else(|| table_not_found(&table))?;
    Ok(flags.json(StatusCode::OK, &d))
}

/// Inserts rows given as JSON objects in one atomic batch; returns `(ids, count)`.
pub(crate) async fn insert_rows(
    state: &AppState,
    db: &str,
    table: &str,
    rows: &[serde_json::Map<String, serde_json::Value>],
    timeout: Duration,
) -> Result<(Vec<i64>, usize), ApiError> {
    if rows.is_empty() {
        return Err(ApiError::bad_request("no rows to insert"));
    }
    let stmts = rows
        .iter()
        .map(|r| cairn_sqlgen::insert(table, r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    let results = write(state, db, stmts, timeout).await?;
    let ids = results
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Write { last_insert_id, .. } => Some(last_insert_id),
            _ => None,
        })
        .collect();
    Ok((ids, rows.len()))
}

/// Parses a body that is one JSON object or an array of objects.
pub(crate) fn row_objects(
    v: serde_json::Value,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, ApiError> {
    let items = match v {
        serde_json::Value::Array(items) => items,
        obj @ serde_json::Value::Object(_) => vec![obj],
        other => {
            return Err(ApiError::bad_request(format!(
                "rows must be an object or an array of objects, got {other}"
            )))
        }
    };
    items
        .into_iter()
        .map(|i| match i {
            serde_json::Value::Object(m) => Ok(m),
            other => Err(ApiError::bad_request(format!(
                "each row must be an object, got {other}"
            ))),
        })
        .collect()
}

/// `POST /v1/databases/{db}/tables/{table}/rows`: insert one object or an array of them,
/// atomically.
#[utoipa::path(post, path = "/v1/databases/{db}/tables/{table}/rows", tag = "rows",
    params(("db" = String, Path, description = "Database name"), ("table" = String, Path, description = "Table name")),
    request_body(content = RowsInput, description = "One row object or an array of row objects"),
    responses((status = 201, description = "Inserted", body = Inserted),
              (status = 400, description = "Bad body or value", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown database, table or column", body = crate::error::ErrorBody),
              (status = 409, description = "A constraint failed; nothing was inserted", body = crate::error::ErrorBody)))]
pub async fn insert(
    State(state): State<AppState>,
    Path((db, table)): Path<(String, String)>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rows = row_objects(parse_json(&body)?)?;
    let (ids, n) = insert_rows(&state, &db, &table, &rows, flags.timeout).await?;
    Ok(flags.json(StatusCode::CREATED, &Inserted { inserted: n, ids }))
}

/// Parses the column filters of a query string: `col=v`, `col[op]=v`, `col[in]=a,b`.
pub(crate) fn filters(pairs: &[(String, String)]) -> Result<Vec<Filter>, ApiError> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        let (col, op) = match k.split_once('[') {
            Some((c, rest)) => {
                let op = rest.strip_suffix(']').ok_or_else(|| {
                    ApiError::bad_request(format!("malformed filter key {k:?}: use col[op]"))
                })?;
                (c, op.parse::<Op>().map_err(sql_err)?)
            }
            None if RESERVED.contains(&k.as_str()) => continue,
            None => (k.as_str(), Op::Eq),
        };
        cairn_sql::validate_name(col).map_err(sql_err)?;
        let values = match op {
            Op::In | Op::NotIn => v.split(',').map(|s| Value::Text(s.to_string())).collect(),
            _ => vec![Value::Text(v.clone())],
        };
        out.push(Filter {
            column: col.to_string(),
            op,
            values,
        });
    }
    Ok(out)
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn list_param(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .collect()
}

fn number(pairs: &[(String, String)], key: &str) -> Result<Option<u64>, ApiError> {
    param(pairs, key)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("{key} must be a non-negative integer, got {v:?}"))
            })
        })
        .transpose()
}

fn encode_cursor(offset: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_cursor(c: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::bad_request("invalid cursor");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    String::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
        .ok_or_else(bad)
}

/// `GET /v1/databases/{db}/tables/{table}/rows`: search rows.
#[utoipa::path(get, path = "/v1/databases/{db}/tables/{table}/rows", tag = "rows",
    params(("db" = String, Path, description = "Database name"), ("table" = String, Path, description = "Table name"),
           ("filters" = Option<String>, Query, description = "Column filters: col=v, col[eq|ne|lt|lte|gt|gte|like]=v, col[in|nin]=a,b, col[is]=null|notnull"),
           ("order_by" = Option<String>, Query, description = "Columns, comma-separated; prefix - for descending"),
           ("limit" = Option<u64>, Query, description = "At most this many rows (default 1000, max 10000)"),
           ("offset" = Option<u64>, Query, description = "Skip this many rows"),
           ("cursor" = Option<String>, Query, description = "The `next` value of the previous page"),
           ("columns" = Option<String>, Query, description = "Columns to return, comma-separated"),
           ("level" = Option<String>, Query, description = "Read consistency: none, weak (default), linearizable, strong")),
    responses((status = 200, description = "One page of rows", body = RowsPage),
              (status = 400, description = "Bad filter", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown database, table or column", body = crate::error::ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Path((db, table)): Path<(String, String)>,
    flags: Flags,
) -> Result<Response, ApiError> {
    let limit = number(&flags.pairs, "limit")?.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let offset = match param(&flags.pairs, "cursor") {
        Some(c) => decode_cursor(c)?,
        None => number(&flags.pairs, "offset")?.unwrap_or(0),
    };
    let order_by = list_param(&flags.pairs, "order_by")
        .into_iter()
        .map(|c| match c.strip_prefix('-') {
            Some(c) => (c.to_string(), true),
            None => (c, false),
        })
        .collect();
    let sel = cairn_sqlgen::Select {
        table: table.clone(),
        columns: list_param(&flags.pairs, "columns"),
        filter: cairn_sqlgen::where_clause(&filters(&flags.pairs)?).map_err(sql_err)?,
        order_by,
        // One row more than asked tells whether there is a next page.
        limit: Some(limit + 1),
        offset: Some(offset),
    };
    let stmt = cairn_sqlgen::select(&sel).map_err(sql_err)?;
    let rows = read(&state, &db, vec![stmt], &flags)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut out = objects(&rows);
    let next = if out.len() as u64 > limit {
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Some(encode_cursor(offset + limit))
    } else {
        None
    };
    let body = RowsPage {
        count: out.len(),
        rows: out,
        next,
    };
    Ok(flags.json(StatusCode::OK, &body))
}

/// The WHERE clause of an update or delete: filters from the query string, or refusal
/// without any unless `all=true`.
fn guarded_filter(pairs: &[(String, String)]) -> Result<Fragment, ApiError> {
    let f = filters(pairs)?;
    let all = param(pairs, "all").is_some_and(|v| v.is_empty() || v == "true" || v == "1");
    if f.is_empty() && !all {
        return Err(ApiError::of(
            ErrorCode::FilterRequired,
            "refusing to change every row: give a filter, or all=true",
        ));
    }
    cairn_sqlgen::where_clause(&f).map_err(sql_err)
}

/// Body of `PATCH .../rows`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateRows {
    /// Column -> new value.
    #[schema(value_type = Object)]
    pub set: serde_json::Map<String, serde_json::Value>,
}

/// `PATCH /v1/databases/{db}/tables/{table}/rows?<filters>`: update matching rows.
#[utoipa::path(patch, path = "/v1/databases/{db}/tables/{table}/rows", tag = "rows",
    params(("db" = String, Path, description = "Database name"), ("table" = String, Path, description = "Table name"),
           ("filters" = Option<String>, Query, description = "Column filters as for GET; required unless all=true"),
           ("all" = Option<bool>, Query, description = "Update every row")),
    request_body = UpdateRows,
    responses((status = 200, description = "Rows changed", body = Updated),
              (status = 400, description = "No filter, or a bad one", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown database, table or column", body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path((db, table)): Path<(String, String)>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: UpdateRows = parse_json(&body)?;
    let filter = guarded_filter(&flags.pairs)?;
    let stmt = cairn_sqlgen::update(&table, &req.set, &filter).map_err(sql_err)?;
    let n = rows_affected(&write(&state, &db, vec![stmt], flags.timeout).await?);
    Ok(flags.json(StatusCode::OK, &Updated { updated: n }))
}

/// `DELETE /v1/databases/{db}/tables/{table}/rows?<filters>`: delete matching rows.
#[utoipa::path(delete, path = "/v1/databases/{db}/tables/{table}/rows", tag = "rows",
    params(("db" = String, Path, description = "Database name"), ("table" = String, Path, description = "Table name"),
           ("filters" = Option<String>, Query, description = "Column filters as for GET; required unless all=true"),
           ("all" = Option<bool>, Query, description = "Delete every row")),
    responses((status = 200, description = "Rows deleted", body = Deleted),
              (status = 400, description = "No filter, or a bad one", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown database, table or column", body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path((db, table)): Path<(String, String)>,
    flags: Flags,
) -> Result<Response, ApiError> {
    let filter = guarded_filter(&flags.pairs)?;
    let stmt = cairn_sqlgen::delete(&table, &filter).map_err(sql_err)?;
    let n = rows_affected(&write(&state, &db, vec![stmt], flags.timeout).await?);
    Ok(flags.json(StatusCode::OK, &Deleted { deleted: n }))
}

/// `GET /v1/databases/{db}/tables/{table}/aggregate`: count, sum, avg, min, max, grouped.
#[utoipa::path(get, path = "/v1/databases/{db}/tables/{table}/aggregate", tag = "rows",
    params(("db" = String, Path, description = "Database name"), ("table" = String, Path, description = "Table name"),
           ("count" = Option<String>, Query, description = "`*` or a column"),
           ("sum" = Option<String>, Query, description = "Columns to sum, comma-separated"),
           ("avg" = Option<String>, Query, description = "Columns to average"),
           ("min" = Option<String>, Query, description = "Columns to take the minimum of"),
           ("max" = Option<String>, Query, description = "Columns to take the maximum of"),
           ("group_by" = Option<String>, Query, description = "Grouping columns"),
           ("filters" = Option<String>, Query, description = "Column filters as for GET rows"),
           ("level" = Option<String>, Query, description = "Read consistency")),
    responses((status = 200, description = "One object per group", body = AggregateRows),
              (status = 400, description = "No aggregate asked for, or a bad filter", body = crate::error::ErrorBody),
              (status = 404, description = "Unknown database, table or column", body = crate::error::ErrorBody)))]
pub async fn aggregate(
    State(state): State<AppState>,
    Path((db, table)): Path<(String, String)>,
    flags: Flags,
) -> Result<Response, ApiError> {
    let a = cairn_sqlgen::Aggregate {
        table,
        count: param(&flags.pairs, "count").map(|c| {
            if c.is_empty() {
                "*".to_string()
            } else {
                c.to_string()
            }
        }),
        sum: list_param(&flags.pairs, "sum"),
        avg: list_param(&flags.pairs, "avg"),
        min: list_param(&flags.pairs, "min"),
        max: list_param(&flags.pairs, "max"),
        group_by: list_param(&flags.pairs, "group_by"),
        filter: cairn_sqlgen::where_clause(&filters(&flags.pairs)?).map_err(sql_err)?,
    };
    let stmt = cairn_sqlgen::aggregate(&a).map_err(sql_err)?;
    let rows = read(&state, &db, vec![stmt], &flags)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    Ok(flags.json(
        StatusCode::OK,
        &AggregateRows {
            rows: objects(&rows),
        },
    ))
}
