//! The original requirement documents' routes (`../shared/seeds/`), so that their curl
//! examples run verbatim. Each is a thin adapter onto the REST layer in `rest.rs`: same
//! validation, same bound parameters, same forwarding of writes to the leader.
//!
//! - seed 001: `POST /create_table`, `POST /insert` (`table_name`, `row_id`, `data`),
//!   `GET /search?table=&column=&value=`, on the default database;
//! - seeds 002/003: `GET /ping`, `/createdb?name=`, `/dropdb?name=`, `POST /createtable`
//!   with a column definition string, `/insert`, `/select`, `/update`, `/delete` with `db`;
//! - seed 004: `/create-db`, `/drop-db`, `/create-table`, `/delete-table`, `/insert`,
//!   `/select`, `/update`, `/delete` with `db_name` and a SQL `condition` (parsed and
//!   whitelisted), `/metadata`, `/health`, `/map-reduce-count`, `/security-check`.
//!
//! Where two seeds share a path (`/insert`, `/select`, `/update`, `/delete`) the body's
//! fields tell them apart: `table_name` (001), `db_name` (004), `db` (002/003).
//! `shard_key` is accepted and reported; every node holds every row today.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use cairn_auth::Perm;
use cairn_node::NodeEntry;
use cairn_sql::{ErrorCode, Statement, Value};
use cairn_sqlgen::{Filter, Fragment, Op};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use utoipa::ToSchema;

use crate::cluster::PeerInfo;
use crate::databases::{database_infos, DatabaseInfo};
use crate::error::{ApiError, ErrorBody};
use crate::flags::Flags;
use crate::rest::{self, objects};
use crate::AppState;

type Row = Map<String, Json>;

// Request bodies, as documented. The handlers read them field by field, because each field
// may also come from the query string and the seeds' error messages name the field.

/// Body of `POST /create_table` (seed 001).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTable001 {
    /// The table, in the default database.
    pub table_name: String,
    /// Its columns: names, an object of name -> type, or column objects.
    pub columns: rest::ColumnsInput,
}

/// Body of `POST /insert`, in one of the seeds' three forms.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SeedInsert {
    /// Seed 001: `{"table_name", "row_id", "data"}` in the default database.
    Seed001 {
        /// The table.
        table_name: String,
        /// Echoed back.
        row_id: Option<Json>,
        /// Column -> value.
        #[schema(value_type = Object)]
        data: Row,
    },
    /// Seed 004: `{"db_name", "table", "data", "shard_key"?}`.
    Seed004 {
        /// The database.
        db_name: String,
        /// The table.
        table: String,
        /// Column -> value.
        #[schema(value_type = Object)]
        data: Row,
        /// Echoed back; every node holds every row today.
        shard_key: Option<Json>,
    },
    /// Seeds 002/003: `{"db", "table", "data"}`.
    Seed002 {
        /// The database.
        db: String,
        /// The table.
        table: String,
        /// Column -> value.
        #[schema(value_type = Object)]
        data: Row,
    },
}

/// Body of seed 004's `/create-db` and `/drop-db`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DbName {
    /// The database.
    pub db_name: String,
}

/// Body of `POST /createtable` (seeds 002/003); the fields may be query parameters instead.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTable002 {
    /// The database.
    pub db: String,
    /// The table.
    pub table: String,
    /// Column definitions as SQL: `"id INT, name VARCHAR(255)"`.
    pub columns: String,
}

/// Body of seed 004's `/create-table`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTable004 {
    /// The database.
    pub db_name: String,
    /// The table.
    pub table: String,
    /// Its columns: an object of name -> type, or a list.
    pub columns: rest::ColumnsInput,
}

/// Body of seed 004's `/delete-table` and `/map-reduce-count`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TableTarget004 {
    /// The database.
    pub db_name: String,
    /// The table.
    pub table: String,
    /// `/map-reduce-count`: a SQL condition counted rows must meet.
    pub condition: Option<String>,
}

/// Body of `/select` and `/delete` (and, with `set`, `/update`): seed 004's form with a
/// `condition`, or seeds 002/003's with a `where` object of equalities.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SeedTarget {
    /// Seed 004.
    Condition {
        /// The database.
        db_name: String,
        /// The table.
        table: String,
        /// A SQL condition: columns, literals, comparisons, AND/OR/NOT, IN, LIKE, BETWEEN,
        /// IS NULL. Required for `/update` and `/delete` unless `all=true`.
        condition: Option<String>,
        /// Echoed back.
        shard_key: Option<String>,
        /// `/update`: column -> new value.
        #[schema(value_type = Option<Object>)]
        set: Option<Row>,
    },
    /// Seeds 002/003.
    Where {
        /// The database.
        db: String,
        /// The table.
        table: String,
        /// Column -> value equalities.
        #[serde(rename = "where")]
        #[schema(value_type = Option<Object>)]
        where_: Option<Row>,
        /// `/update`: column -> new value.
        #[schema(value_type = Option<Object>)]
        set: Option<Row>,
    },
}

// Answers.

/// `{"status", "table"}`: seed 001's table created.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableCreated001 {
    /// `"created"`.
    pub status: &'static str,
    /// The table.
    pub table: String,
}

/// Answer of `POST /insert`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeedInserted {
    /// `"inserted"`.
    pub status: &'static str,
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// Rows inserted (1).
    pub inserted: usize,
    /// The row's rowid.
    pub id: Option<i64>,
    /// Seed 001: the `row_id` given (null when none); absent in the other forms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_id: Option<Json>,
    /// Seed 004: the `shard_key` given (null when none); absent in the other forms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_key: Option<Json>,
}

/// Answer of `GET /search` (seed 001).
#[derive(Debug, Serialize, ToSchema)]
pub struct SeedRows {
    /// How many rows matched.
    pub count: usize,
    /// The rows, as objects.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Row>,
}

/// Answer of `GET /ping`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ping {
    /// `"ok"`.
    pub status: &'static str,
    /// This node's id.
    pub node_id: u64,
    /// `"leader"` or `"follower"`.
    pub role: &'static str,
}

/// A database created or dropped by a seed route.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeedDatabase {
    /// `"created"` or `"dropped"`.
    pub status: &'static str,
    /// The database.
    pub database: String,
}

/// A table created or dropped by a seed route.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeedTable {
    /// `"created"` or `"dropped"`.
    pub status: &'static str,
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
}

/// Answer of `/select`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeedSelected {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// How many rows matched (at most 10,000 are returned).
    pub count: usize,
    /// The rows, as objects.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Row>,
    /// The `shard_key` given, echoed; null when none.
    pub shard_key: Option<String>,
    /// Shards the rows came from: 1 (every node holds every row).
    pub shards: u32,
}

/// Answer of `/update`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeedUpdated {
    /// `"updated"`.
    pub status: &'static str,
    /// Rows changed.
    pub updated: i64,
}

/// Answer of `/delete`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeedDeleted {
    /// `"deleted"`.
    pub status: &'static str,
    /// Rows deleted.
    pub deleted: i64,
}

/// How rows are placed, in `/metadata`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Routing {
    /// In words.
    pub replication: &'static str,
    /// Shards: 1.
    pub shards: u32,
}

/// Answer of `GET /metadata`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Metadata {
    /// This node's id.
    pub node_id: u64,
    /// `"leader"` or `"follower"`.
    pub role: &'static str,
    /// The leader this node knows of; null when none.
    pub leader: Option<PeerInfo>,
    /// Every member, as `/nodes` lists them.
    pub nodes: Vec<NodeEntry>,
    /// This replica's databases.
    pub databases: Vec<DatabaseInfo>,
    /// How rows are placed.
    pub routing: Routing,
}

/// Answer of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `"healthy"`, `"degraded"` (a member does not answer) or `"unavailable"` (no
    /// leader, with 503).
    pub status: &'static str,
    /// This node's id.
    pub node_id: u64,
    /// The leader; null when none.
    pub leader: Option<PeerInfo>,
    /// Every member with its reachability.
    pub nodes: Vec<NodeEntry>,
}

/// One shard's count in `/map-reduce-count`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShardCount {
    /// Shard number.
    pub shard: u32,
    /// Its count.
    pub count: i64,
}

/// Answer of `POST /map-reduce-count`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MapReduceCount {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// The sum of the shards' counts.
    pub count: i64,
    /// Each shard's count.
    pub shards: Vec<ShardCount>,
}

/// One member's answers in `/security-check`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretCheck {
    /// Node id.
    pub node: String,
    /// Its internal RPC address.
    pub raft_addr: String,
    /// HTTP status without the secret; null when unreachable.
    pub without_secret: Option<u16>,
    /// HTTP status with a wrong secret; null when unreachable.
    pub wrong_secret: Option<u16>,
    /// With node mutual TLS: the member accepted the TCP connection and failed the TLS
    /// handshake of a client without a node certificate, so neither request got in.
    pub refused_at_handshake: bool,
    /// Whether both were refused: with 401, or at the TLS handshake.
    pub refused: bool,
}

/// Answer of `POST /security-check`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityCheck {
    /// Whether every member refused both requests.
    pub secure: bool,
    /// Each member's answers.
    pub checks: Vec<SecretCheck>,
}

fn body_json(body: &[u8]) -> Result<Map<String, Json>, ApiError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad_request(format!(
            "the body must be a JSON object, got {other}"
        ))),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON body: {e}"))),
    }
}

/// A string field from the body, or else from the query string.
fn field(body: &Map<String, Json>, pairs: &[(String, String)], key: &str) -> Option<String> {
    match body.get(key) {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Number(n)) => Some(n.to_string()),
        _ => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
    }
}

fn required(
    body: &Map<String, Json>,
    pairs: &[(String, String)],
    key: &str,
) -> Result<String, ApiError> {
    field(body, pairs, key)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::of(ErrorCode::MissingField, format!("missing field {key:?}")))
}

fn object(body: &Map<String, Json>, key: &str) -> Result<Map<String, Json>, ApiError> {
    match body.get(key) {
        Some(Json::Object(m)) => Ok(m.clone()),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key:?} must be an object, got {other}"
        ))),
        None => Err(ApiError::of(
            ErrorCode::MissingField,
            format!("missing field {key:?}"),
        )),
    }
}

fn eq_filter(map: &Map<String, Json>) -> Result<Fragment, ApiError> {
    let filters =
        map.iter()
            .map(|(k, v)| {
                Ok(Filter {
                    column: k.clone(),
                    op: if v.is_null() { Op::Is } else { Op::Eq },
                    values: vec![Value::from_json_text(v)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?],
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
    cairn_sqlgen::where_clause(&filters).map_err(ApiError::from)
}

fn condition(cond: &str) -> Result<Fragment, ApiError> {
    cairn_sqlgen::parse_condition(cond)
        .map_err(|e| ApiError::of(ErrorCode::BadCondition, e.to_string()))
}

async fn select_rows(
    state: &AppState,
    db: &str,
    table: &str,
    filter: Fragment,
    flags: &Flags,
) -> Result<Vec<Row>, ApiError> {
    let stmt = cairn_sqlgen::select(&cairn_sqlgen::Select {
        table: table.to_string(),
        filter,
        limit: Some(rest::MAX_LIMIT),
        ..cairn_sqlgen::Select::default()
    })
    .map_err(rest::sql_err)?;
    let rows = rest::read(state, db, vec![stmt], flags)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    Ok(objects(&rows))
}

async fn changed(
    state: &AppState,
    db: &str,
    stmt: Statement,
    timeout: Duration,
) -> Result<i64, ApiError> {
    Ok(rest::rows_affected(
        &rest::write(state, db, vec![stmt], timeout).await?,
    ))
}

/// `POST /create_table` (seed 001): `{"table_name": "students", "columns": ["id", "name"]}`
/// in the default database; columns may also be `{"name": "TYPE"}` or column objects.
#[utoipa::path(post, path = "/create_table", tag = "seeds",
    request_body = CreateTable001,
    responses((status = 201, description = "Created", body = TableCreated001),
              (status = 400, description = "Bad input", body = ErrorBody),
              (status = 409, description = "The table exists", body = ErrorBody)))]
pub async fn create_table_001(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = body_json(&body)?;
    let table = required(&b, &flags.pairs, "table_name")?;
    let cols: rest::ColumnsInput =
        serde_json::from_value(b.get("columns").cloned().unwrap_or(Json::Null)).map_err(|_| {
            ApiError::bad_request("\"columns\" must be a list of names or an object of name: type")
        })?;
    let cols = cols.specs()?;
    rest::create_table_in(&state, &flags.db, &table, &cols, false, flags.timeout).await?;
    Ok(flags.json(
        StatusCode::CREATED,
        &TableCreated001 {
            status: "created",
            table,
        },
    ))
}

/// `POST /insert`: seed 001 (`table_name`, `row_id`, `data`), seed 004 (`db_name`,
/// `table`, `data`, `shard_key`) or seeds 002/003 (`db`, `table`, `data`).
#[utoipa::path(post, path = "/insert", tag = "seeds",
    request_body = SeedInsert,
    responses((status = 201, description = "Inserted", body = SeedInserted),
              (status = 400, description = "Bad input", body = ErrorBody),
              (status = 404, description = "Unknown database, table or column", body = ErrorBody)))]
pub async fn insert(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = body_json(&body)?;
    let data = object(&b, "data")?;
    let echo = |key: &str| Some(b.get(key).cloned().unwrap_or(Json::Null));
    let (db, table, row_id, shard_key) = if b.contains_key("table_name") {
        let table = required(&b, &flags.pairs, "table_name")?;
        (flags.db.clone(), table, echo("row_id"), None)
    } else if b.contains_key("db_name") {
        (
            required(&b, &flags.pairs, "db_name")?,
            required(&b, &flags.pairs, "table")?,
            None,
            echo("shard_key"),
        )
    } else if b.contains_key("db") {
        (
            required(&b, &flags.pairs, "db")?,
            required(&b, &flags.pairs, "table")?,
            None,
            None,
        )
    } else {
        return Err(ApiError::of(
            ErrorCode::MissingField,
            "give table_name (seed 001), db_name and table (seed 004), or db and table (seeds 002/003)",
        ));
    };
    flags.authorize(Perm::Execute, &db)?;
    let (ids, n) = rest::insert_rows(&state, &db, &table, &[data], flags.timeout).await?;
    let out = SeedInserted {
        status: "inserted",
        database: db,
        table,
        inserted: n,
        id: ids.first().copied(),
        row_id,
        shard_key,
    };
    Ok(flags.json(StatusCode::CREATED, &out))
}

/// `GET /search?table=&column=&value=` (seed 001): rows of the default database whose
/// column equals the value.
#[utoipa::path(get, path = "/search", tag = "seeds",
    params(("table" = String, Query, description = "Table"), ("column" = String, Query, description = "Column"),
           ("value" = String, Query, description = "Value to match"), ("level" = Option<String>, Query, description = "Read consistency")),
    responses((status = 200, description = "Matching rows", body = SeedRows),
              (status = 400, description = "Bad input", body = ErrorBody),
              (status = 404, description = "Unknown table or column", body = ErrorBody)))]
pub async fn search_001(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let none = Map::new();
    let table = required(&none, &flags.pairs, "table")?;
    let column = required(&none, &flags.pairs, "column")?;
    let value = field(&none, &flags.pairs, "value").unwrap_or_default();
    let filter = cairn_sqlgen::where_clause(&[Filter {
        column,
        op: Op::Eq,
        values: vec![Value::Text(value)],
    }])
    .map_err(rest::sql_err)?;
    let rows = select_rows(&state, &flags.db, &table, filter, &flags).await?;
    Ok(flags.json(
        StatusCode::OK,
        &SeedRows {
            count: rows.len(),
            rows,
        },
    ))
}

/// `GET /ping` (seeds 002/003): this node's liveness and role.
#[utoipa::path(get, path = "/ping", tag = "seeds",
    responses((status = 200, description = "Alive", body = Ping)))]
pub async fn ping(State(state): State<AppState>) -> Response {
    let role = if state.service.is_leader() {
        "leader"
    } else {
        "follower"
    };
    crate::json_response(
        StatusCode::OK,
        &Ping {
            status: "ok",
            node_id: state.service.id(),
            role,
        },
        false,
    )
}

async fn create_db(state: &AppState, name: &str, flags: &Flags) -> Result<Response, ApiError> {
    flags.authorize(Perm::Schema, name)?;
    state.service.create_database(name, flags.timeout).await?;
    Ok(flags.json(
        StatusCode::CREATED,
        &SeedDatabase {
            status: "created",
            database: name.to_string(),
        },
    ))
}

async fn drop_db(state: &AppState, name: &str, flags: &Flags) -> Result<Response, ApiError> {
    flags.authorize(Perm::Schema, name)?;
    state.service.drop_database(name, flags.timeout).await?;
    Ok(flags.json(
        StatusCode::OK,
        &SeedDatabase {
            status: "dropped",
            database: name.to_string(),
        },
    ))
}

/// `GET|POST /createdb?name=mydb` (seeds 002/003): create a database.
#[utoipa::path(method(get, post), path = "/createdb", tag = "seeds",
    params(("name" = String, Query, description = "Database name")),
    responses((status = 201, description = "Created", body = SeedDatabase),
              (status = 409, description = "Exists", body = ErrorBody)))]
pub async fn createdb(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = required(&body_json(&body)?, &flags.pairs, "name")?;
    create_db(&state, &name, &flags).await
}

/// `GET|POST /dropdb?name=mydb` (seeds 002/003): drop a database; the leader only.
#[utoipa::path(method(get, post), path = "/dropdb", tag = "seeds",
    params(("name" = String, Query, description = "Database name")),
    responses((status = 200, description = "Dropped", body = SeedDatabase),
              (status = 403, description = "Not the leader", body = ErrorBody)))]
pub async fn dropdb(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = required(&body_json(&body)?, &flags.pairs, "name")?;
    drop_db(&state, &name, &flags).await
}

/// `POST /createtable` (seeds 002/003): `{"db","table","columns":"id INT, name VARCHAR(255)"}`
/// (or the same as query parameters).
#[utoipa::path(post, path = "/createtable", tag = "seeds",
    request_body = CreateTable002,
    responses((status = 201, description = "Created", body = SeedTable),
              (status = 400, description = "Bad definition", body = ErrorBody)))]
pub async fn createtable(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = body_json(&body)?;
    let db = required(&b, &flags.pairs, "db")?;
    flags.authorize(Perm::Schema, &db)?;
    let table = required(&b, &flags.pairs, "table")?;
    let cols = cairn_sqlgen::parse_column_list(&required(&b, &flags.pairs, "columns")?)
        .map_err(rest::sql_err)?;
    rest::create_table_in(&state, &db, &table, &cols, false, flags.timeout).await?;
    Ok(flags.json(
        StatusCode::CREATED,
        &SeedTable {
            status: "created",
            database: db,
            table,
        },
    ))
}

/// The database, table and WHERE clause of a select/update/delete in either seed's form:
/// 004 (`db_name`, `condition` string) or 002/003 (`db`, `where` object of equalities).
fn target(
    b: &Map<String, Json>,
    pairs: &[(String, String)],
) -> Result<(String, String, Fragment, bool), ApiError> {
    if b.contains_key("db_name") || field(b, pairs, "db_name").is_some() {
        let cond = field(b, pairs, "condition").unwrap_or_default();
        let has = !cond.trim().is_empty();
        Ok((
            required(b, pairs, "db_name")?,
            required(b, pairs, "table")?,
            condition(&cond)?,
            has,
        ))
    } else {
        let db = required(b, pairs, "db")?;
        let table = required(b, pairs, "table")?;
        let mut where_ = match b.get("where") {
            Some(Json::Object(m)) => m.clone(),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "\"where\" must be an object, got {other}"
                )))
            }
            None => Map::new(),
        };
        if let (Some(c), Some(v)) = (field(b, pairs, "column"), field(b, pairs, "value")) {
            where_.insert(c, Json::String(v));
        }
        let has = !where_.is_empty();
        Ok((db, table, eq_filter(&where_)?, has))
    }
}

/// `POST /select` (seed 004: `{"db_name","table","condition"?,"shard_key"?}`) or
/// `GET /select?db=&table=[&column=&value=]` (seeds 002/003).
#[utoipa::path(method(get, post), path = "/select", tag = "seeds",
    request_body = SeedTarget,
    responses((status = 200, description = "Matching rows", body = SeedSelected),
              (status = 400, description = "Bad input or a disallowed condition", body = ErrorBody),
              (status = 404, description = "Unknown database, table or column", body = ErrorBody)))]
pub async fn select(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = body_json(&body)?;
    let (db, table, filter, _) = target(&b, &flags.pairs)?;
    flags.authorize(Perm::Query, &db)?;
    let rows = select_rows(&state, &db, &table, filter, &flags).await?;
    // Every node holds every row today (one shard), so the shard key routes nothing yet; it
    // is echoed so that clients of seed 004 see it was received.
    let body = SeedSelected {
        database: db,
        table,
        count: rows.len(),
        rows,
        shard_key: field(&b, &flags.pairs, "shard_key"),
        shards: 1,
    };
    Ok(flags.json(StatusCode::OK, &body))
}

/// `POST /update`: seed 004 `{"db_name","table","set","condition","shard_key"?}` or seeds
/// 002/003 `{"db","table","set","where"}`. A missing condition is refused (an "unsafe
/// update", seed 004) unless `all=true`.
#[utoipa::path(post, path = "/update", tag = "seeds",
    request_body = SeedTarget,
    responses((status = 200, description = "Rows changed", body = SeedUpdated),
              (status = 400, description = "No condition, a disallowed one, or bad input", body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = body_json(&body)?;
    let (db, table, filter, has) = target(&b, &flags.pairs)?;
    flags.authorize(Perm::Execute, &db)?;
    refuse_unsafe(has, &flags.pairs, "update")?;
    let set = object(&b, "set")?;
    let n = changed(
        &state,
        &db,
        cairn_sqlgen::update(&table, &set, &filter).map_err(rest::sql_err)?,
        flags.timeout,
    )
    .await?;
    Ok(flags.json(
        StatusCode::OK,
        &SeedUpdated {
            status: "updated",
            updated: n,
        },
    ))
}

/// `POST /delete`: seed 004 `{"db_name","table","condition"}` or seeds 002/003
/// `{"db","table","where"}`; refused without a condition unless `all=true`.
#[utoipa::path(post, path = "/delete", tag = "seeds",
    request_body = SeedTarget,
    responses((status = 200, description = "Rows deleted", body = SeedDeleted),
              (status = 400, description = "No condition, a disallowed one, or bad input", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = body_json(&body)?;
    let (db, table, filter, has) = target(&b, &flags.pairs)?;
    flags.authorize(Perm::Execute, &db)?;
    refuse_unsafe(has, &flags.pairs, "delete")?;
    let n = changed(
        &state,
        &db,
        cairn_sqlgen::delete(&table, &filter).map_err(rest::sql_err)?,
        flags.timeout,
    )
    .await?;
    Ok(flags.json(
        StatusCode::OK,
        &SeedDeleted {
            status: "deleted",
            deleted: n,
        },
    ))
}

fn refuse_unsafe(
    has_condition: bool,
    pairs: &[(String, String)],
    what: &str,
) -> Result<(), ApiError> {
    let all = pairs
        .iter()
        .any(|(k, v)| k == "all" && (v.is_empty() || v == "true"));
    if has_condition || all {
        Ok(())
    } else {
        Err(ApiError::of(
            ErrorCode::FilterRequired,
            format!("refusing to {what} every row: give a condition, or all=true"),
        ))
    }
}

/// `POST /create-db` (seed 004): `{"db_name": "SchoolDB"}`.
#[utoipa::path(post, path = "/create-db", tag = "seeds",
    request_body = DbName,
    responses((status = 201, description = "Created", body = SeedDatabase),
              (status = 409, description = "Exists", body = ErrorBody)))]
pub async fn create_db_004(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = required(&body_json(&body)?, &flags.pairs, "db_name")?;
    create_db(&state, &name, &flags).await
}

/// `POST /drop-db` (seed 004): `{"db_name"}`; the leader only (403 with its address elsewhere).
#[utoipa::path(post, path = "/drop-db", tag = "seeds",
    request_body = DbName,
    responses((status = 200, description = "Dropped", body = SeedDatabase),
              (status = 403, description = "Not the leader", body = ErrorBody),
              (status = 404, description = "Unknown database", body = ErrorBody)))]
pub async fn drop_db_004(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = required(&body_json(&body)?, &flags.pairs, "db_name")?;
    drop_db(&state, &name, &flags).await
}

/// `POST /create-table` (seed 004): `{"db_name","table","columns":{"name":"TYPE"}}`.
#[utoipa::path(post, path = "/create-table", tag = "seeds",
    request_body = CreateTable004,
    responses((status = 201, description = "Created", body = SeedTable),
              (status = 400, description = "Bad input", body = ErrorBody),
              (status = 409, description = "Exists", body = ErrorBody)))]
pub async fn create_table_004(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = body_json(&body)?;
    let db = required(&b, &flags.pairs, "db_name")?;
    flags.authorize(Perm::Schema, &db)?;
    let table = required(&b, &flags.pairs, "table")?;
    let cols: rest::ColumnsInput =
        serde_json::from_value(b.get("columns").cloned().unwrap_or(Json::Null)).map_err(|_| {
            ApiError::bad_request("\"columns\" must be an object of name: type or a list")
        })?;
    rest::create_table_in(&state, &db, &table, &cols.specs()?, false, flags.timeout).await?;
    Ok(flags.json(
        StatusCode::CREATED,
        &SeedTable {
            status: "created",
            database: db,
            table,
        },
    ))
}

/// `POST /delete-table` (seed 004): `{"db_name","table"}`.
#[utoipa::path(post, path = "/delete-table", tag = "seeds",
    request_body = TableTarget004,
    responses((status = 200, description = "Dropped", body = SeedTable),
              (status = 404, description = "Unknown database or table", body = ErrorBody)))]
pub async fn delete_table_004(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = body_json(&body)?;
    let db = required(&b, &flags.pairs, "db_name")?;
    flags.authorize(Perm::Schema, &db)?;
    let table = required(&b, &flags.pairs, "table")?;
    let stmt = Statement::new(format!(
        "DROP TABLE {}",
        cairn_sqlgen::quote_ident(&table).map_err(rest::sql_err)?
    ));
    rest::write(&state, &db, vec![stmt], flags.timeout).await?;
    Ok(flags.json(
        StatusCode::OK,
        &SeedTable {
            status: "dropped",
            database: db,
            table,
        },
    ))
}

/// `GET /metadata` (seed 004): this node's role, the members, the databases and how rows
/// are placed.
#[utoipa::path(get, path = "/metadata", tag = "seeds",
    responses((status = 200, description = "Roles, nodes, databases, routing", body = Metadata)))]
pub async fn metadata(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let role = if state.service.is_leader() {
        "leader"
    } else {
        "follower"
    };
    let nodes = state.service.nodes().await;
    let body = Metadata {
        node_id: state.service.id(),
        role,
        leader: state.service.leader().map(PeerInfo::from),
        nodes,
        databases: database_infos(&state),
        routing: Routing {
            replication: "every node holds a full replica; writes are ordered by the Raft leader",
            shards: 1,
        },
    };
    Ok(flags.json(StatusCode::OK, &body))
}

/// `GET /health` (seed 004): every member's reachability; 503 when there is no leader.
#[utoipa::path(get, path = "/health", tag = "seeds",
    responses((status = 200, description = "Healthy or degraded", body = Health),
              (status = 503, description = "No leader", body = Health)))]
pub async fn health(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let nodes = state.service.nodes().await;
    let leader = state.service.leader();
    let all_up = nodes.iter().all(|n| n.reachable);
    let status = match (&leader, all_up) {
        (None, _) => "unavailable",
        (Some(_), true) => "healthy",
        (Some(_), false) => "degraded",
    };
    let code = if leader.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status,
        node_id: state.service.id(),
        leader: leader.map(PeerInfo::from),
        nodes,
    };
    Ok(flags.json(code, &body))
}

/// `POST /map-reduce-count` (seed 004): `{"db_name","table"}`; each shard counts its rows
/// (map) and the counts are summed (reduce). One shard today.
#[utoipa::path(post, path = "/map-reduce-count", tag = "seeds",
    request_body = TableTarget004,
    responses((status = 200, description = "The count, per shard and summed", body = MapReduceCount),
              (status = 404, description = "Unknown database or table", body = ErrorBody)))]
pub async fn map_reduce_count(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = body_json(&body)?;
    let db = required(&b, &flags.pairs, "db_name")?;
    flags.authorize(Perm::Query, &db)?;
    let table = required(&b, &flags.pairs, "table")?;
    let filter = condition(&field(&b, &flags.pairs, "condition").unwrap_or_default())?;
    let stmt = cairn_sqlgen::aggregate(&cairn_sqlgen::Aggregate {
        table: table.clone(),
        count: Some("*".into()),
        filter,
        ..cairn_sqlgen::Aggregate::default()
    })
    .map_err(rest::sql_err)?;
    let rows = rest::read(&state, &db, vec![stmt], &flags)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let count = match rows.values.first().and_then(|r| r.first()) {
        Some(Value::Integer(n)) => *n,
        _ => 0,
    };
    let body = MapReduceCount {
        database: db,
        table,
        count,
        shards: vec![ShardCount { shard: 0, count }],
    };
    Ok(flags.json(StatusCode::OK, &body))
}

/// `POST /security-check` (seed 004): asks every member's internal RPC port to accept a
/// request without the cluster secret, and with a wrong one; `secure` is true when every
/// node refused both with 401. With node mutual TLS the probe has no node certificate, so
/// a member that accepts the TCP connection but fails the TLS handshake has refused both
/// before any HTTP (`refused_at_handshake`).
#[utoipa::path(post, path = "/security-check", tag = "seeds",
    responses((status = 200, description = "Whether every member refused", body = SecurityCheck)))]
pub async fn security_check(
    State(state): State<AppState>,
    flags: Flags,
) -> Result<Response, ApiError> {
    let https = state.service.raft_scheme() == cairn_raft::Scheme::Https;
    // No certificate of ours; the member's own is not what is checked here.
    let http = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(ApiError::internal)?;
    let mut checks = Vec::new();
    let mut secure = true;
    for n in state.service.nodes().await {
        let url = format!("{}/raft/0/append", state.service.raft_scheme().url(&n.addr));
        let without = http
            .post(&url)
            .body("x")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok();
        let wrong = http
            .post(&url)
            .header(cairn_node::SECRET_HEADER, "not-the-secret")
            .body("x")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok();
        let at_handshake = https
            && without.is_none()
            && wrong.is_none()
            && tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(&n.addr),
            )
            .await
            .is_ok_and(|c| c.is_ok());
        let refused = at_handshake || (without == Some(401) && wrong == Some(401));
        secure &= refused;
        checks.push(SecretCheck {
            node: n.id,
            raft_addr: n.addr,
            without_secret: without,
            wrong_secret: wrong,
            refused_at_handshake: at_handshake,
            refused,
        });
    }
    Ok(flags.json(StatusCode::OK, &SecurityCheck { secure, checks }))
}
