//! The rqlite-compatible data API: `/db/execute`, `/db/query`, `/db/request`,
//! `/db/backup`, `/db/load` (<https://rqlite.io/docs/api/api/>).

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_node::{Level, LoadPayload};
use cairn_sql::{ErrorCode, Statement, StatementResult};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::flags::Flags;
use crate::AppState;

/// Parses a statement batch: a JSON array, or with `Content-Type: text/plain` one SQL
/// statement.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Statement>, ApiError> {
    let is_text = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if is_text {
        let sql = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("body is not valid UTF-8"))?
            .trim();
        if sql.is_empty() {
            return Err(ApiError::bad_request("empty statement"));
        }
        return Ok(vec![Statement::new(sql)]);
    }
    // Straight into statements: a `serde_json::Value` of the body would cost several times
    // its size (issue 7, item 8).
    Statement::parse_batch_json(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// One statement of a batch, as rqlite takes it: `"SQL"`, `["SQL ?", v...]` (positional
/// parameters) or `["SQL :n", {"n": v}]` (named parameters). Documents the body that
/// [`Statement::parse_batch_json`] reads.
#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StatementInput {
    /// SQL without parameters.
    Sql(String),
    /// The SQL first, then its parameters (or one object of named parameters).
    Parameterized(Vec<serde_json::Value>),
}

/// One statement's result in rqlite's shape: a write's `last_insert_id` and
/// `rows_affected` (each absent when 0), a read's `columns`, `types` and `values` (with
/// `associative`: `types` as an object and `rows` as objects), or a failed statement's
/// `error` and `code`; `time` in seconds with `timings`. Documents what
/// [`cairn_sql::Rendered`] writes.
#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct StatementOutcome {
    /// `sqlite3_last_insert_rowid()` after a write; absent when 0.
    pub last_insert_id: Option<i64>,
    /// Rows a write changed; absent when 0.
    pub rows_affected: Option<i64>,
    /// A read's column names.
    pub columns: Option<Vec<String>>,
    /// A read's column types (an object of column -> type with `associative`).
    pub types: Option<serde_json::Value>,
    /// A read's rows as arrays; absent when there is none.
    pub values: Option<Vec<Vec<serde_json::Value>>>,
    /// With `associative`: a read's rows as objects; absent when there is none.
    #[schema(value_type = Option<Vec<Object>>)]
    pub rows: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    /// Why the statement failed (it changed nothing).
    pub error: Option<String>,
    /// The statement error's stable code (`sql_error`, `not_authorized`, ...).
    pub code: Option<ErrorCode>,
    /// Seconds the statement took, with `timings`.
    pub time: Option<f64>,
}

/// rqlite's `{"results": [...], "time": seconds}` (`time` with `timings` only).
#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct Results {
    /// One result per statement, in order.
    pub results: Vec<StatementOutcome>,
    /// Seconds the request took, with `timings`.
    pub time: Option<f64>,
}

/// [`Results`], serialized straight from the statement results.
#[derive(serde::Serialize)]
struct ResultsBody<'a> {
    results: cairn_sql::RenderedAll<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<f64>,
}

/// Answer of a queued write (`?queue`): nothing ran yet.
#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct Queued {
    /// Always empty.
    pub results: Vec<StatementOutcome>,
    /// The queued batch's number; `?wait` waited until it was written.
    pub sequence_number: u64,
}

fn results_response(flags: &Flags, results: &[StatementResult], start: Instant) -> Response {
    let body = ResultsBody {
        results: cairn_sql::RenderedAll(results, flags.encoding()),
        time: flags.timings.then(|| start.elapsed().as_secs_f64()),
    };
    flags.json(StatusCode::OK, &body)
}

/// Header carrying a client's request id: a write retried with the same id applies once
/// (the state machine remembers ids for `cairn_sql::REQUEST_ID_WINDOW` log entries, per
/// database) and the retry gets the first attempt's results. The convention of Stripe's and
/// the IETF httpapi draft's `Idempotency-Key`.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest request id accepted, in bytes.
const MAX_REQUEST_ID: usize = 128;

/// Runs `stmts` as a write through the leader, with the request's `Idempotency-Key`.
async fn write(
    state: &AppState,
    flags: &Flags,
    headers: &HeaderMap,
    stmts: Vec<Statement>,
) -> Result<Vec<StatementResult>, ApiError> {
    let id = request_id(headers)?;
    Ok(state
        .service
        .execute_once(&flags.db, stmts, flags.transaction, id, flags.timeout)
        .await?)
}

/// The request's `Idempotency-Key`, if any.
///
/// # Errors
/// 400 `bad_request` for a key that is empty, longer than 128 bytes or not visible ASCII.
fn request_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_REQUEST_ID && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_REQUEST_ID} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_string()))
}

/// When `redirect` is set on a follower, the 301 answer pointing at the leader.
fn redirect_to_leader(
    state: &AppState,
    flags: &Flags,
    uri: &OriginalUri,
) -> Result<Option<Response>, ApiError> {
    if !flags.redirect || state.service.is_leader() {
        return Ok(None);
    }
    let leader = state
        .service
        .leader()
        .ok_or_else(|| ApiError::from(cairn_node::NodeError::NoLeader))?;
    let path = uri.0.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("{}{}", leader.http_url(), path);
    Ok(Some(
        (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
            "",
        )
            .into_response(),
    ))
}

/// `POST /db/execute`: writes, through the leader.
#[utoipa::path(post, path = "/db/execute", tag = "rqlite",
    params(("db" = Option<String>, Query, description = "Database (default main)"), ("pretty" = Option<String>, Query, description = "Indent the JSON"), ("timings" = Option<String>, Query, description = "Report times"), ("timeout" = Option<String>, Query, description = "How long to wait for the leader, e.g. 5s"), ("transaction" = Option<String>, Query, description = "All or nothing"), ("queue" = Option<String>, Query, description = "Queue and answer at once"), ("wait" = Option<String>, Query, description = "With queue: wait for the write"), ("redirect" = Option<String>, Query, description = "Answer 301 to the leader instead of forwarding")),
    request_body(content = Vec<StatementInput>, description = "JSON array of statements: \"SQL\", [\"SQL ?\", v...] or [\"SQL :n\", {\"n\": v}]; or with Content-Type text/plain one SQL statement"),
    responses((status = 200, description = "One result per statement; with queue, {\"results\": [], \"sequence_number\": n}", body = Results), (status = 400, description = "Malformed request", body = crate::error::ErrorBody), (status = 404, description = "Unknown database", body = crate::error::ErrorBody), (status = 503, description = "No leader", body = crate::error::ErrorBody)))]
pub async fn execute(
    State(state): State<AppState>,
    flags: Flags,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let stmts = parse_body(&headers, &body)?;
    if flags.queue {
        let seq = state
            .service
            .enqueue(&flags.db, stmts, flags.transaction, flags.timeout)
            .await?;
        if flags.wait {
            state.service.wait_queue(seq, flags.timeout).await?;
        }
        let body = Queued {
            results: Vec::new(),
            sequence_number: seq,
        };
        return Ok(flags.json(StatusCode::OK, &body));
    }
    if let Some(r) = redirect_to_leader(&state, &flags, &uri)? {
        return Ok(r);
    }
    let results = write(&state, &flags, &headers, stmts).await?;
    Ok(results_response(&flags, &results, start))
}

/// `GET /db/query?q=...` or `POST /db/query`: reads at the requested consistency level.
#[utoipa::path(method(get, post), path = "/db/query", tag = "rqlite",
    params(("db" = Option<String>, Query, description = "Database (default main)"), ("pretty" = Option<String>, Query, description = "Indent the JSON"), ("timings" = Option<String>, Query, description = "Report times"), ("timeout" = Option<String>, Query, description = "How long to wait for the leader, e.g. 5s"), ("q" = Option<String>, Query, description = "SQL (GET)"), ("level" = Option<String>, Query, description = "none, weak (default), linearizable, strong, auto"), ("freshness" = Option<String>, Query, description = "With level=none: refuse if the leader was not heard from within this, e.g. 1s"), ("associative" = Option<String>, Query, description = "Rows as objects"), ("blob_array" = Option<String>, Query, description = "BLOBs as byte arrays"), ("redirect" = Option<String>, Query, description = "301 to the leader")),
    request_body(content = Vec<StatementInput>, description = "POST: JSON array of statements"),
    responses((status = 200, description = "One result per statement", body = Results), (status = 400, description = "Malformed request", body = crate::error::ErrorBody), (status = 404, description = "Unknown database", body = crate::error::ErrorBody), (status = 503, description = "No leader or stale read", body = crate::error::ErrorBody)))]
pub async fn query(
    State(state): State<AppState>,
    flags: Flags,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let stmts = if flags.q.is_empty() {
        if body.is_empty() {
            return Err(ApiError::bad_request(
                "no query: give q= or a JSON array body",
            ));
        }
        parse_body(&headers, &body)?
    } else {
        flags.q.iter().map(Statement::new).collect()
    };
    if flags.level != Level::None {
        if let Some(r) = redirect_to_leader(&state, &flags, &uri)? {
            return Ok(r);
        }
    }
    let results = state
        .service
        .query(
            &flags.db,
            stmts,
            flags.level,
            flags.freshness,
            flags.timeout,
        )
        .await?;
    Ok(results_response(&flags, &results, start))
}

/// `POST /db/request`: a mix of reads and writes; an all-read batch is served as a query,
/// anything else goes through the log as one entry.
#[utoipa::path(post, path = "/db/request", tag = "rqlite",
    params(("db" = Option<String>, Query, description = "Database (default main)"), ("pretty" = Option<String>, Query, description = "Indent the JSON"), ("timings" = Option<String>, Query, description = "Report times"), ("timeout" = Option<String>, Query, description = "How long to wait for the leader, e.g. 5s"), ("transaction" = Option<String>, Query, description = "All or nothing"), ("level" = Option<String>, Query, description = "Read consistency for an all-read batch")),
    request_body(content = Vec<StatementInput>, description = "JSON array of statements, reads and writes mixed"),
    responses((status = 200, description = "One result per statement", body = Results), (status = 400, description = "Malformed request", body = crate::error::ErrorBody), (status = 404, description = "Unknown database", body = crate::error::ErrorBody)))]
pub async fn request(
    State(state): State<AppState>,
    flags: Flags,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let stmts = parse_body(&headers, &body)?;
    let read_only = state.service.all_read_only(&flags.db, &stmts)?;
    if !read_only || flags.level != Level::None {
        if let Some(r) = redirect_to_leader(&state, &flags, &uri)? {
            return Ok(r);
        }
    }
    let results = if read_only {
        state
            .service
            .query(
                &flags.db,
                stmts,
                flags.level,
                flags.freshness,
                flags.timeout,
            )
            .await?
    } else {
        write(&state, &flags, &headers, stmts).await?
    };
    Ok(results_response(&flags, &results, start))
}

/// `GET /db/backup`: this node's copy of the database as a SQLite file, or a SQL dump with
/// `fmt=sql`. Served locally, like rqlite's default (no leader round trip).
#[utoipa::path(get, path = "/db/backup", tag = "rqlite",
    params(("db" = Option<String>, Query, description = "Database (default main)"), ("fmt" = Option<String>, Query, description = "sql for a text dump")),
    responses((status = 200, description = "The SQLite file, or a SQL dump", content_type = "application/octet-stream"), (status = 404, description = "Unknown database", body = crate::error::ErrorBody)))]
pub async fn backup(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    if flags.fmt.as_deref() == Some("sql") {
        let dump = state.service.dump_sql(&flags.db).await?;
        return Ok(([(header::CONTENT_TYPE, "application/sql")], dump).into_response());
    }
    let bytes = state.service.backup(&flags.db).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.sqlite\"", flags.db),
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}

/// `POST /db/load`: replaces the database with a SQLite file (detected by its header) or
/// runs a SQL script, through the log.
#[utoipa::path(post, path = "/db/load", tag = "rqlite",
    params(("db" = Option<String>, Query, description = "Database (default main)")),
    request_body(content = String, description = "A SQLite database file, or a SQL script", content_type = "application/octet-stream"),
    responses((status = 200, description = "Loaded: a script's results, none for a file", body = Results), (status = 400, description = "Not a database or a failing script; nothing changed", body = crate::error::ErrorBody), (status = 404, description = "Unknown database", body = crate::error::ErrorBody)))]
pub async fn load(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "empty body: send a SQLite file or a SQL script",
        ));
    }
    let payload = if body.starts_with(b"SQLite format 3\0") {
        LoadPayload::Sqlite(body.to_vec())
    } else {
        let text = String::from_utf8(body.to_vec()).map_err(|_| {
            ApiError::bad_request("body is neither a SQLite file nor UTF-8 SQL text")
        })?;
        LoadPayload::Script(text)
    };
    let results = state
        .service
        .load(&flags.db, payload, flags.timeout)
        .await?;
    // No `time` here, even with `timings` (as before): only the statements' own.
    let body = ResultsBody {
        results: cairn_sql::RenderedAll(&results, flags.encoding()),
        time: None,
    };
    Ok(flags.json(StatusCode::OK, &body))
}
