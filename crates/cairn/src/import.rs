//! `cairn import`: loads a CSV, JSON or JSON Lines file into a table through the HTTP API.
//!
//! The request path is the one any client takes, so any node will do (a follower forwards
//! writes to the leader):
//!
//! 1. `POST /db/query?db=D` with `SELECT name FROM sqlite_master ...`: does the table exist?
//! 2. If not, `POST /db/execute?db=D` with `CREATE TABLE [T] (...)` (built by `cairn-sql`'s
//!    builder, as the REST API builds its statements), the column types
//!    inferred from the file (see [`ColumnType`]).
//! 3. `POST /db/execute?db=D&transaction` with one parameterized `INSERT` per row, `--batch`
//!    rows per request. Values are always bound parameters, never spliced into SQL. Each
//!    request is one Raft log entry applied in one transaction, so a batch is written whole
//!    or not at all; the first failing batch stops the import (the batches before it stay).
//!
//! The whole file is read into memory: creating the table needs its column types, and
//! inferring them needs a pass over every row before the first write. That suits the files
//! this command is meant for (Debian's iso-codes JSON files are a few MB); a file of many
//! gigabytes should be split first.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cairn_sqlgen::ColumnSpec;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{StatusCode, Url};
use serde_json::{Map, Number, Value};

/// Flags of `cairn import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// HTTP(S) URL of any node of the cluster (a follower forwards the writes to the leader).
    #[arg(long, default_value = "http://127.0.0.1:4001")]
    pub addr: String,
    /// HTTP Basic credentials (`USER:PASSWORD`) for nodes started with --auth; the user
    /// needs `execute` (and `schema` when the table is created) on the database.
    #[arg(long, short = 'u', env = "CAIRN_USER", hide_env_values = true)]
    pub user: Option<String>,
    /// The CA to trust for an https:// node (PEM).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// The database to write to. It must exist already (`POST /v1/databases`).
    #[arg(long, default_value = "main")]
    pub db: String,
    /// The table to fill: letters, digits and underscores, not starting with a digit.
    /// Created with inferred column types when it does not exist.
    #[arg(long)]
    pub table: String,
    /// The file's format; by default from its extension (.csv, .json, .jsonl, .ndjson).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Rows per request; each request is one transaction and one Raft log entry.
    #[arg(long, default_value = "500")]
    pub batch: NonZeroUsize,
    /// How long one HTTP request may take, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Ignored: the HTTP API needs no cluster secret (only node-to-node traffic does).
    /// Accepted so that a command line shared with `cairn start` works.
    #[arg(long, hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// The file to import.
    pub file: PathBuf,
}

/// The format of an imported file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row naming the columns.
    Csv,
    /// A JSON array of objects, or an object with exactly one array-valued key whose
    /// array holds the objects (as in Debian's iso-codes: `{"3166-1": [{...}, ...]}`).
    Json,
    /// JSON Lines: one object per line; blank lines are skipped.
    Jsonl,
}

impl Format {
    /// The format named by `path`'s extension (case-insensitive).
    fn from_path(path: &Path) -> Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("json") => Ok(Format::Json),
            Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
            _ => bail!(
                "cannot tell the format of {} from its extension: give --format csv|json|jsonl",
                path.display()
            ),
        }
    }
}

/// A column's SQL type, inferred from every non-null value of the column.
///
/// The variants are ordered from the narrowest to the widest: a column takes the widest
/// type any of its values needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ColumnType {
    /// Every value is an integer that fits an `i64` (JSON booleans count as 0 and 1,
    /// which is how the server binds them).
    Integer,
    /// Every value is a number.
    Real,
    /// Anything else; also a column with no non-null value at all.
    Text,
}

impl ColumnType {
    /// The type's name in `CREATE TABLE`.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Integer => "INTEGER",
            ColumnType::Real => "REAL",
            ColumnType::Text => "TEXT",
        }
    }
}

/// Where the values came from, which decides how their types are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Every value is text; numbers are recognized by their spelling (see [`csv_number`]).
    Csv,
    /// Values carry their JSON types.
    Json,
}

/// A file's rows in memory, aligned on `columns`.
#[derive(Debug)]
struct Records {
    source: Source,
    /// Column names in the order they were first seen.
    columns: Vec<String>,
    /// One value per column for each row; a missing key or an empty CSV field is `Null`.
    rows: Vec<Vec<Value>>,
    /// Where each row is in the file, for error messages: "line 7", "element 3".
    origins: Vec<String>,
}

/// Whether `name` may name a table or a column: the server's own rule
/// ([`cairn_sql::validate_name`]), so a name the importer accepts is never refused later.
fn is_valid_identifier(name: &str) -> bool {
    cairn_sql::validate_name(name).is_ok()
}

/// Collects column names in first-seen order, refusing invalid names and names that differ
/// only in case (SQLite compares column names case-insensitively).
#[derive(Default)]
struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
    folded: HashMap<String, String>,
}

impl Columns {
    /// Adds `name` if new; `origin` says where it was seen, for the error.
    fn add(&mut self, name: &str, origin: &str) -> Result<()> {
        if self.index.contains_key(name) {
            return Ok(());
        }
        if !is_valid_identifier(name) {
            bail!(
                "{origin}: invalid column name {name:?}: use letters, digits and underscores, \
                 not starting with a digit"
            );
        }
        let folded = name.to_ascii_lowercase();
        if let Some(other) = self.folded.get(&folded) {
            bail!(
                "{origin}: columns {other:?} and {name:?} differ only in case, and SQLite \
                 column names are case-insensitive"
            );
        }
        self.folded.insert(folded, name.to_string());
        self.index.insert(name.to_string(), self.names.len());
        self.names.push(name.to_string());
        Ok(())
    }
}

/// Parses `bytes` as `format`.
fn parse(bytes: &[u8], format: Format) -> Result<Records> {
    match format {
        Format::Csv => parse_csv(bytes),
        Format::Json => parse_json(bytes),
        Format::Jsonl => parse_jsonl(bytes),
    }
}

/// A CSV file with a header row. An empty field is NULL.
fn parse_csv(bytes: &[u8]) -> Result<Records> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let header = reader.headers().context("reading the CSV header")?.clone();
    let mut columns = Columns::default();
    for name in &header {
        if columns.index.contains_key(name) {
            bail!("line 1: column {name:?} appears twice in the header");
        }
        columns.add(name, "line 1")?;
    }
    if columns.names.is_empty() {
        bail!("the CSV file has no header row");
    }
    let mut rows = Vec::new();
    let mut origins = Vec::new();
    for record in reader.records() {
        let record = record.context("reading a CSV record")?;
        let line = record.position().map_or(0, csv::Position::line);
        rows.push(
            record
                .iter()
                .map(|field| {
                    if field.is_empty() {
                        Value::Null
                    } else {
                        Value::String(field.to_string())
                    }
                })
                .collect(),
        );
        origins.push(format!("line {line}"));
    }
    Ok(Records {
        source: Source::Csv,
        columns: columns.names,
        rows,
        origins,
    })
}

/// A JSON array of objects, or an object with exactly one array-valued key.
fn parse_json(bytes: &[u8]) -> Result<Records> {
    let top: Value = serde_json::from_slice(bytes).context("not valid JSON")?;
    let items = match top {
        Value::Array(items) => items,
        Value::Object(map) => {
            let mut arrays: Vec<(String, Value)> =
                map.into_iter().filter(|(_, v)| v.is_array()).collect();
            match arrays.pop() {
                Some((_, Value::Array(items))) if arrays.is_empty() => items,
                Some(_) => bail!(
                    "the top-level object has several array-valued keys; expected exactly one"
                ),
                None => bail!(
                    "the top-level object has no array-valued key; expected an array of \
                     objects or an object with exactly one array-valued key"
                ),
            }
        }
        other => bail!(
            "expected an array of objects at the top level, found {}",
            kind(&other)
        ),
    };
    let objects = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let origin = format!("element {}", i + 1);
            match item {
                Value::Object(map) => Ok((origin, map)),
                other => bail!("{origin}: expected an object, found {}", kind(&other)),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    records_from_objects(objects)
}

/// JSON Lines: one object per non-blank line.
fn parse_jsonl(bytes: &[u8]) -> Result<Records> {
    let text = std::str::from_utf8(bytes).context("the file is not valid UTF-8")?;
    let mut objects = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let origin = format!("line {}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line).with_context(|| format!("{origin}: not valid JSON"))? {
            Value::Object(map) => objects.push((origin, map)),
            other => bail!("{origin}: expected an object, found {}", kind(&other)),
        }
    }
    records_from_objects(objects)
}

/// Rows from JSON objects: the columns are the union of their keys in first-seen order.
fn records_from_objects(objects: Vec<(String, Map<String, Value>)>) -> Result<Records> {
    let mut columns = Columns::default();
    for (origin, map) in &objects {
        for key in map.keys() {
            columns.add(key, origin)?;
        }
    }
    let mut rows = Vec::with_capacity(objects.len());
    let mut origins = Vec::with_capacity(objects.len());
    for (origin, mut map) in objects {
        rows.push(
            columns
                .names
                .iter()
                .map(|c| map.remove(c).unwrap_or(Value::Null))
                .collect(),
        );
        origins.push(origin);
    }
    Ok(Records {
        source: Source::Json,
        columns: columns.names,
        rows,
        origins,
    })
}

/// "a string", "a number", ... for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The number a CSV field spells, when it is spelled as a JSON number (`-12`, `3.5`,
/// `1e3`: no surrounding spaces, no leading `+`, no leading zeros, no `inf` or `NaN`).
///
/// An integer that does not fit an `i64` is not a number here: storing it as REAL would
/// lose digits, so its column stays TEXT. Leading zeros (`007`, zip codes) keep a column
/// TEXT for the same reason.
fn csv_number(s: &str) -> Option<Number> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    let n: Number = serde_json::from_str(s).ok()?;
    let fraction_or_exponent = s.contains(['.', 'e', 'E']);
    if n.is_i64() || fraction_or_exponent {
        Some(n)
    } else {
        None
    }
}

/// The narrowest type that holds `v`, or `None` for NULL (which fits any column).
fn value_type(v: &Value, source: Source) -> Option<ColumnType> {
    match v {
        Value::Null => None,
        Value::Bool(_) => Some(ColumnType::Integer),
        Value::Number(n) if n.is_i64() => Some(ColumnType::Integer),
        Value::Number(_) => Some(ColumnType::Real),
        Value::String(s) if source == Source::Csv => Some(match csv_number(s) {
            Some(n) if n.is_i64() => ColumnType::Integer,
            Some(_) => ColumnType::Real,
            None => ColumnType::Text,
        }),
        Value::String(_) | Value::Array(_) | Value::Object(_) => Some(ColumnType::Text),
    }
}

/// Each column's type: the widest type among its non-null values; TEXT when it has none.
fn infer_types(records: &Records) -> Vec<ColumnType> {
    let mut types: Vec<Option<ColumnType>> = vec![None; records.columns.len()];
    for row in &records.rows {
        for (t, v) in types.iter_mut().zip(row) {
            if let Some(vt) = value_type(v, records.source) {
                *t = Some(t.map_or(vt, |cur| cur.max(vt)));
            }
        }
    }
    types
        .into_iter()
        .map(|t| t.unwrap_or(ColumnType::Text))
        .collect()
}

/// The bound parameter for `v` in a column of type `ty`: CSV numbers become JSON numbers,
/// nested arrays and objects their JSON text, booleans in a TEXT column `true`/`false`.
fn param(v: &Value, ty: ColumnType, source: Source) -> Value {
    match v {
        Value::String(s) if source == Source::Csv && ty != ColumnType::Text => {
            csv_number(s).map_or_else(|| v.clone(), Value::Number)
        }
        Value::Bool(b) if ty == ColumnType::Text => Value::String(b.to_string()),
        Value::Array(_) | Value::Object(_) => Value::String(v.to_string()),
        _ => v.clone(),
    }
}

/// `CREATE TABLE [t] ([a] INTEGER, [b] TEXT)`, built (identifiers validated and quoted)
/// by `cairn-sql`'s builder, as the REST API builds its statements.
///
/// # Errors
/// An invalid or repeated name, or no columns.
fn create_table_sql(table: &str, columns: &[String], types: &[ColumnType]) -> Result<String> {
    let specs: Vec<ColumnSpec> = columns
        .iter()
        .zip(types)
        .map(|(c, t)| ColumnSpec {
            name: c.clone(),
            ty: t.sql().to_string(),
            ..ColumnSpec::default()
        })
        .collect();
    Ok(cairn_sqlgen::create_table(table, &specs)
        .map_err(|e| anyhow!("table {table}: {e}"))?
        .sql)
}

/// `INSERT INTO [t] ([a], [b]) VALUES (?, ?)`, built by `cairn-sql`'s builder; each row's
/// values are bound to it in column order.
///
/// # Errors
/// An invalid name.
fn insert_sql(table: &str, columns: &[String]) -> Result<String> {
    let row: Map<String, Value> = columns.iter().map(|c| (c.clone(), Value::Null)).collect();
    Ok(cairn_sqlgen::insert(table, &row)
        .map_err(|e| anyhow!("table {table}: {e}"))?
        .sql)
}

/// The statements of one batch: `[["INSERT ...", v1, v2, ...], ...]`.
fn batch_statements(sql: &str, rows: &[Vec<Value>], types: &[ColumnType], source: Source) -> Value {
    Value::Array(
        rows.iter()
            .map(|row| {
                let mut stmt = Vec::with_capacity(row.len() + 1);
                stmt.push(Value::String(sql.to_string()));
                stmt.extend(row.iter().zip(types).map(|(v, t)| param(v, *t, source)));
                Value::Array(stmt)
            })
            .collect(),
    )
}

/// The first result slot holding an `error`, as `(slot, message)`.
fn first_error(results: &[Value]) -> Option<(usize, String)> {
    results.iter().enumerate().find_map(|(i, r)| {
        r.get("error")
            .map(|e| (i, e.as_str().map_or_else(|| e.to_string(), str::to_string)))
    })
}

/// The server's error reply, `{"error": "...", "code": "..."}`.
#[derive(Debug)]
struct ServerError {
    status: StatusCode,
    code: Option<String>,
    message: String,
}

/// An HTTP client for one node's data API, bound to one database.
struct Api {
    http: reqwest::Client,
    base: Url,
    db: String,
}

impl Api {
    /// `addr` is a node's HTTP URL; `http://` is assumed when no scheme is given. `cacert`
    /// is the CA to trust over HTTPS, `user` `USER:PASSWORD` for HTTP Basic.
    fn new(
        addr: &str,
        db: &str,
        timeout: Duration,
        cacert: Option<&std::path::Path>,
        user: Option<&str>,
    ) -> Result<Api> {
        let with_scheme = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let base =
            Url::parse(&with_scheme).with_context(|| format!("--addr {addr:?} is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--addr {addr:?}: only http:// and https:// URLs are supported");
        }
        let credentials = match user.map(|u| u.split_once(':')) {
            Some(Some(pair)) => Some(pair),
            Some(None) => bail!("--user takes USER:PASSWORD"),
            None => None,
        };
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .no_proxy();
        let http = crate::secure::client(builder, cacert, credentials)
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base,
            db: db.to_string(),
        })
    }

    fn addr(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// POSTs `body` to `path?db=D` (plus `&transaction`), and returns the `results` array
    /// of a 200 reply. A transport failure and a server error are reported differently:
    /// the outer error is the transport's, the inner one the server's.
    async fn post(
        &self,
        path: &str,
        transaction: bool,
        body: &Value,
    ) -> Result<std::result::Result<Vec<Value>, ServerError>> {
        let mut url = self.base.join(path).context("building the request URL")?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("db", &self.db);
            if transaction {
                q.append_key_only("transaction");
            }
        }
        let resp = self
            .http
            .post(url.clone())
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}: no answer from {}", self.addr()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("POST {url}: reading the answer"))?;
        let reply: Option<Value> = serde_json::from_str(&text).ok();
        if status != StatusCode::OK {
            let field = |k: &str| {
                reply
                    .as_ref()
                    .and_then(|r| r.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            return Ok(Err(ServerError {
                status,
                code: field("code"),
                message: field("error").unwrap_or_else(|| text.trim().to_string()),
            }));
        }
        let results = reply
            .as_ref()
            .and_then(|r| r.get("results"))
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| anyhow!("POST {url}: the answer has no results array: {text}"))?;
        Ok(Ok(results))
    }

    /// Turns a server error into a message for people; a missing database gets its own.
    fn explain(&self, what: &str, e: ServerError) -> anyhow::Error {
        if e.code.as_deref() == Some("database_not_found") {
            return anyhow!(
                "database {:?} does not exist ({} answered {} database_not_found: {}); \
                 create it first with POST {}/v1/databases {{\"name\":\"{}\"}}",
                self.db,
                self.addr(),
                e.status.as_u16(),
                e.message,
                self.addr(),
                self.db
            );
        }
        anyhow!(
            "{what}: {} answered {} {}: {}",
            self.addr(),
            e.status.as_u16(),
            e.code.as_deref().unwrap_or("(no code)"),
            e.message
        )
    }

    /// Whether a table named `table` exists (compared as SQLite does: case-insensitively).
    async fn table_exists(&self, table: &str) -> Result<bool> {
        let body = serde_json::json!([[
            "SELECT name FROM sqlite_master WHERE type='table' AND name=? COLLATE NOCASE",
            table
        ]]);
        let what = "checking whether the table exists";
        let results = self
            .post("/db/query", false, &body)
            .await?
            .map_err(|e| self.explain(what, e))?;
        if let Some((_, msg)) = first_error(&results) {
            bail!("{what}: {msg}");
        }
        let values = results
            .first()
            .and_then(|r| r.get("values"))
            .and_then(Value::as_array);
        Ok(values.is_some_and(|v| !v.is_empty()))
    }

    /// Runs one statement batch; an error names the failing slot.
    async fn execute(
        &self,
        what: &str,
        statements: &Value,
        transaction: bool,
    ) -> Result<std::result::Result<(), (usize, String)>> {
        let expected = statements.as_array().map_or(0, Vec::len);
        let results = self
            .post("/db/execute", transaction, statements)
            .await?
            .map_err(|e| self.explain(what, e))?;
        if let Some(err) = first_error(&results) {
            return Ok(Err(err));
        }
        if results.len() != expected {
            bail!(
                "{what}: the server answered {} results for {expected} statements",
                results.len()
            );
        }
        Ok(Ok(()))
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar(rows: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(u64::try_from(rows).ok(), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} rows ({eta} left)",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Runs `cairn import`: reads the file, creates the table if needed, writes the rows in
/// batches, and prints `imported N rows into D.T in S s (R rows/s)` on stdout.
///
/// # Errors
/// An invalid table, database or column name, an unreadable or malformed file, a missing
/// database (the server's 404 `database_not_found`), an unreachable node, or the first
/// batch with a failing statement (its rows and the server's message are named).
pub async fn run(args: ImportArgs) -> Result<()> {
    let start = Instant::now();
    if !is_valid_identifier(&args.table) {
        bail!(
            "invalid table name {:?}: use letters, digits and underscores, not starting \
             with a digit",
            args.table
        );
    }
    cairn_sql::validate_name(&args.db).map_err(|e| anyhow!("--db: {e}"))?;
    let format = match args.format {
        Some(f) => f,
        None => Format::from_path(&args.file)?,
    };
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let records = parse(&bytes, format).with_context(|| format!("{}", args.file.display()))?;
    drop(bytes);
    let types = infer_types(&records);

    let api = Api::new(
        &args.addr,
        &args.db,
        Duration::from_secs(args.timeout_secs.max(1)),
        args.cacert.as_deref(),
        args.user.as_deref(),
    )?;
    let target = format!("{}.{}", args.db, args.table);
    if !api.table_exists(&args.table).await? {
        if records.columns.is_empty() {
            bail!(
                "{}: no columns to create table {target} with (the file has no rows)",
                args.file.display()
            );
        }
        let sql = create_table_sql(&args.table, &records.columns, &types)?;
        let what = format!("creating table {target}");
        if let Err((_, msg)) = api.execute(&what, &serde_json::json!([sql]), false).await? {
            bail!("{what}: {msg}");
        }
        eprintln!("created table {target}: {sql}");
    }

    let total = records.rows.len();
    let bar = progress_bar(total);
    let sql = insert_sql(&args.table, &records.columns)?;
    let mut done = 0usize;
    for chunk in records.rows.chunks(args.batch.get()) {
        let first = done + 1;
        let last = done + chunk.len();
        let what = format!("importing rows {first}-{last}");
        let stmts = batch_statements(&sql, chunk, &types, records.source);
        if let Err((slot, msg)) = api.execute(&what, &stmts, true).await? {
            bar.abandon();
            let row = done + slot + 1;
            let origin = records
                .origins
                .get(row - 1)
                .map_or_else(String::new, |o| format!(" ({o} of the file)"));
            bail!(
                "rows {first}-{last} were not imported (one transaction): row {row}{origin} \
                 failed: {msg}; the {done} rows before them were imported into {target}"
            );
        }
        done = last;
        bar.set_position(u64::try_from(done).unwrap_or(u64::MAX));
    }
    bar.finish_and_clear();

    let secs = start.elapsed().as_secs_f64();
    let rate = done as f64 / secs.max(1e-9);
    println!("imported {done} rows into {target} in {secs:.2} s ({rate:.0} rows/s)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn csv(text: &str) -> Records {
        match parse(text.as_bytes(), Format::Csv) {
            Ok(r) => r,
            Err(e) => panic!("{e:#}"),
        }
    }

    fn json_records(text: &str, format: Format) -> Records {
        match parse(text.as_bytes(), format) {
            Ok(r) => r,
            Err(e) => panic!("{e:#}"),
        }
    }

    fn error(text: &str, format: Format) -> String {
        match parse(text.as_bytes(), format) {
            Ok(r) => panic!("parsed, expected an error: {r:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    use ColumnType::{Integer, Real, Text};

    #[test]
    fn csv_header_rows_and_types() {
        let r = csv("id,score,name,code,empty\n1,1.5,alice,007,\n2,2,bob,010,\n-3,,\"c, d\",42,\n");
        assert_eq!(r.columns, ["id", "score", "name", "code", "empty"]);
        assert_eq!(r.rows.len(), 3);
        assert_eq!(r.rows[2][2], json!("c, d"));
        assert_eq!(r.rows[2][1], Value::Null, "an empty field is NULL");
        assert_eq!(r.origins, ["line 2", "line 3", "line 4"]);
        assert_eq!(infer_types(&r), [Integer, Real, Text, Text, Text]);
        // Numbers are bound as numbers, text as text, leading zeros kept.
        let stmts = batch_statements("INSERT", &r.rows, &infer_types(&r), r.source);
        assert_eq!(
            stmts,
            json!([
                ["INSERT", 1, 1.5, "alice", "007", null],
                ["INSERT", 2, 2, "bob", "010", null],
                ["INSERT", -3, null, "c, d", "42", null],
            ])
        );
    }

    #[test]
    fn csv_numbers_are_spelled_as_json_numbers() {
        for (s, want) in [
            ("0", Some(Integer)),
            ("-12", Some(Integer)),
            ("9223372036854775807", Some(Integer)),
            ("1.5", Some(Real)),
            ("1e3", Some(Real)),
            ("-0.25E-2", Some(Real)),
            ("007", Some(Text)),
            ("+5", Some(Text)),
            (" 5", Some(Text)),
            ("5 ", Some(Text)),
            ("1e400", Some(Text)),
            ("NaN", Some(Text)),
            ("inf", Some(Text)),
            ("1.", Some(Text)),
            ("99999999999999999999", Some(Text)),
            ("true", Some(Text)),
        ] {
            assert_eq!(
                value_type(&json!(s), Source::Csv),
                want,
                "{s:?} read from CSV"
            );
        }
        assert_eq!(value_type(&json!("5"), Source::Json), Some(Text));
    }

    #[test]
    fn csv_errors() {
        let e = error("id,bad-name\n1,2\n", Format::Csv);
        assert!(e.contains("bad-name") && e.contains("line 1"), "{e}");
        let e = error("1st,b\n1,2\n", Format::Csv);
        assert!(e.contains("1st"), "{e}");
        let e = error("a,,b\n1,2,3\n", Format::Csv);
        assert!(e.contains("invalid column name \"\""), "{e}");
        let e = error("a,a\n1,2\n", Format::Csv);
        assert!(e.contains("twice"), "{e}");
        let e = error("Name,name\n1,2\n", Format::Csv);
        assert!(e.contains("differ only in case"), "{e}");
        let e = error("a,b\n1,2\n3\n", Format::Csv);
        assert!(e.contains("CSV record"), "{e}");
        let e = error("", Format::Csv);
        assert!(e.contains("no header"), "{e}");
    }

    #[test]
    fn csv_header_only_has_columns_and_no_rows() {
        let r = csv("a,b\n");
        assert_eq!(r.columns, ["a", "b"]);
        assert!(r.rows.is_empty());
        assert_eq!(infer_types(&r), [Text, Text], "no value: TEXT");
    }

    #[test]
    fn csv_byte_order_mark_is_not_part_of_the_first_name() {
        let r = csv("\u{feff}id,name\n1,x\n");
        assert_eq!(r.columns, ["id", "name"]);
    }

    #[test]
    fn json_array_keys_union_in_first_seen_order() {
        let r = json_records(
            r#"[{"b": 1, "a": "x"}, {"a": "y", "c": 2.5, "b": 2}, {"d": [1, {"e": null}], "b": true}]"#,
            Format::Json,
        );
        assert_eq!(r.columns, ["b", "a", "c", "d"]);
        assert_eq!(r.origins, ["element 1", "element 2", "element 3"]);
        let types = infer_types(&r);
        assert_eq!(types, [Integer, Text, Real, Text]);
        let stmts = batch_statements("I", &r.rows, &types, r.source);
        assert_eq!(
            stmts,
            json!([
                ["I", 1, "x", null, null],
                ["I", 2, "y", 2.5, null],
                ["I", true, null, null, "[1,{\"e\":null}]"],
            ]),
            "missing keys are NULL, nested values their JSON text"
        );
    }

    #[test]
    fn json_numbers_widen_and_strings_stay_text() {
        let r = json_records(
            r#"[{"n": 1, "m": "1", "f": 1, "t": true}, {"n": 2, "m": 2, "f": 1.5, "t": "yes"}]"#,
            Format::Json,
        );
        assert_eq!(infer_types(&r), [Integer, Text, Real, Text]);
        let stmts = batch_statements("I", &r.rows, &infer_types(&r), r.source);
        assert_eq!(
            stmts,
            json!([["I", 1, "1", 1, "true"], ["I", 2, 2, 1.5, "yes"]]),
            "a boolean in a TEXT column is spelled out"
        );
    }

    #[test]
    fn json_object_wrapping_one_array_is_unwrapped() {
        let text = r#"{"3166-1": [{"alpha_2": "AW", "name": "Aruba", "numeric": "533"},
                                  {"alpha_2": "FR", "name": "France", "numeric": "250",
                                   "official_name": "French Republic"}]}"#;
        let r = json_records(text, Format::Json);
        assert_eq!(r.columns, ["alpha_2", "name", "numeric", "official_name"]);
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[0][3], Value::Null);
        assert_eq!(infer_types(&r), [Text, Text, Text, Text]);
        // Other keys beside the one array are allowed.
        let r = json_records(r#"{"count": 1, "items": [{"a": 1}]}"#, Format::Json);
        assert_eq!(r.columns, ["a"]);
    }

    #[test]
    fn json_errors() {
        let e = error(r#"{"a": [], "b": []}"#, Format::Json);
        assert!(e.contains("several"), "{e}");
        let e = error(r#"{"a": 1}"#, Format::Json);
        assert!(e.contains("no array-valued key"), "{e}");
        let e = error("5", Format::Json);
        assert!(e.contains("a number"), "{e}");
        let e = error(r#"[{"a": 1}, 2]"#, Format::Json);
        assert!(e.contains("element 2"), "{e}");
        let e = error(r#"[{"a": 1}, {"bad name": 2}]"#, Format::Json);
        assert!(e.contains("element 2") && e.contains("bad name"), "{e}");
        let e = error(r#"[{"Name": 1}, {"NAME": 2}]"#, Format::Json);
        assert!(e.contains("differ only in case"), "{e}");
        let e = error("[{", Format::Json);
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn jsonl_one_object_per_line() {
        let r = json_records(
            "{\"a\": 1, \"b\": \"x\"}\n\n{\"b\": \"y\", \"c\": {\"k\": 1}}\r\n",
            Format::Jsonl,
        );
        assert_eq!(r.columns, ["a", "b", "c"]);
        assert_eq!(r.origins, ["line 1", "line 3"]);
        assert_eq!(r.rows[1], [Value::Null, json!("y"), json!({"k": 1})]);
        let e = error("{\"a\": 1}\n[1]\n", Format::Jsonl);
        assert!(e.contains("line 2") && e.contains("an array"), "{e}");
        let e = error("{\"a\": 1}\n{\"a\": \n", Format::Jsonl);
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn identifiers() {
        for ok in ["a", "_", "countries", "alpha_2", "A1_b"] {
            assert!(is_valid_identifier(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a b", "a\"b", "é", "3166-1"] {
            assert!(!is_valid_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn sql_text() {
        let cols = ["id".to_string(), "name".to_string()];
        assert_eq!(
            create_table_sql("t", &cols, &[Integer, Text]).expect("valid names"),
            "CREATE TABLE [t] ([id] INTEGER, [name] TEXT)"
        );
        assert_eq!(
            insert_sql("t", &cols).expect("valid names"),
            "INSERT INTO [t] ([id], [name]) VALUES (?, ?)"
        );
        assert!(create_table_sql("a-b", &cols, &[Integer, Text]).is_err());
        assert!(insert_sql("t", &["x y".to_string()]).is_err());
    }

    #[test]
    fn format_from_extension() {
        let f = |p: &str| Format::from_path(Path::new(p)).ok();
        assert_eq!(f("a.csv"), Some(Format::Csv));
        assert_eq!(f("a.CSV"), Some(Format::Csv));
        assert_eq!(f("/x/iso_3166-1.json"), Some(Format::Json));
        assert_eq!(f("a.jsonl"), Some(Format::Jsonl));
        assert_eq!(f("a.ndjson"), Some(Format::Jsonl));
        assert_eq!(f("a.txt"), None);
        assert_eq!(f("a"), None);
    }

    #[test]
    fn first_error_finds_the_failing_slot() {
        let results = [
            json!({"last_insert_id": 1}),
            json!({"error": "UNIQUE constraint failed"}),
        ];
        assert_eq!(
            first_error(&results),
            Some((1, "UNIQUE constraint failed".to_string()))
        );
        assert_eq!(first_error(&results[..1]), None);
    }
}
