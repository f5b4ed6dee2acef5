//! `cairn status`, `cairn backup` and `cairn restore`: operator commands over the public
//! HTTP API, through [`Remote`], which follows the leader.
//!
//! - `status`: `GET /nodes` of the node given, then `GET /status` of every node it lists,
//!   printed as one table (or JSON), like `etcdctl endpoint status -w table`.
//! - `backup`: `GET /db/backup?db=D` (`&fmt=sql` for a dump) from the leader, whose copy is
//!   the newest (a follower serves its own, which may lag). Written to a temporary file
//!   beside the target, synced, then renamed over it: a failed backup leaves no partial
//!   file.
//! - `restore`: `POST /db/load?db=D` with the file, a SQLite database or a SQL script (the
//!   node tells them apart by the SQLite header). It goes through the Raft log; any node
//!   forwards it to the leader.

pub mod remote;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Url;
use serde_json::{json, Value};

use crate::client::ClientArgs;
pub use remote::{one_line, ApiFailure, Remote, Retry};

/// The largest body a node accepts (`cairn_api::MAX_BODY_BYTES`, 32 MiB): a bigger file is
/// refused before anything is sent.
pub const MAX_LOAD_BYTES: u64 = 32 * 1024 * 1024;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

/// How long a backup download or a restore upload may take in all: a large database at
/// disk or network speed takes far longer than `--timeout-secs`, which bounds the other
/// requests.
pub const TRANSFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Flags of `cairn status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output format: an aligned table, or a JSON array with one object per node.
    #[arg(long = "write-out", short = 'w', value_enum, default_value = "table")]
    pub write_out: StatusFormat,
}

/// The output of `cairn status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// One aligned row per node.
    Table,
    /// A JSON array of node objects.
    Json,
}

/// Flags of `cairn backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The database to back up.
    #[arg(long, default_value = "main")]
    pub db: String,
    /// Write a SQL dump (text) instead of a SQLite file.
    #[arg(long)]
    pub sql: bool,
    /// The file to write; replaced only once the whole backup is in.
    pub file: PathBuf,
}

/// Flags of `cairn restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The database to replace (a SQLite file) or to run the script in (a SQL dump).
    #[arg(long, default_value = "main")]
    pub db: String,
    /// Create the database first when it does not exist.
    #[arg(long)]
    pub create: bool,
    /// A SQLite database file or a SQL script (at most 32 MiB).
    pub file: PathBuf,
}

/// What to download from `/db/backup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupFormat {
    /// The SQLite database file.
    Sqlite,
    /// A SQL dump (`fmt=sql`).
    Sql,
}

/// A byte-counting progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar(total: Option<u64>, what: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(total, target);
    let template = match total {
        Some(_) => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        None => "{msg} {spinner} {bytes} {bytes_per_sec}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Makes the leader the current node when the current one names another leader (one
/// `/status` look), or when it does not answer (then every known node is asked). Keeps
/// the current node when the look fails otherwise.
async fn prefer_leader(remote: &mut Remote) {
    let here = remote.current().clone();
    let status = remote
        .send(Retry::Idempotent, |c, n| Ok(c.get(n.join("status")?)))
        .await;
    let Ok(answer) = status else {
        let _ = remote.find_leader().await;
        return;
    };
    let Ok(status) = answer.json().await else {
        return;
    };
    let raft = &status["raft"];
    if raft["state"].as_str() == Some("Leader") {
        return;
    }
    if let Some(leader) = raft["leader_api_addr"]
        .as_str()
        .and_then(|a| crate::client::base_url(a).ok())
    {
        if leader != here {
            remote.set_current(leader);
        }
    }
}

/// Downloads database `db` (a SQLite file, or a dump) from the leader (see
/// [`prefer_leader`]) into `file`, through a temporary file in the same directory that is
/// synced and renamed over `file` once complete. Returns the bytes written.
///
/// # Errors
/// The node's error ([`ApiFailure`], e.g. `database_not_found`), a transfer cut short, an
/// answer that is not a SQLite file, or a file that cannot be written; `file` is then left
/// as it was.
pub async fn download(
    remote: &mut Remote,
    db: &str,
    format: BackupFormat,
    file: &Path,
) -> Result<u64> {
    cairn_sql::validate_name(db).map_err(|e| anyhow::anyhow!("database name: {e}"))?;
    prefer_leader(remote).await;
    let mut query = vec![("db", db.to_string())];
    if format == BackupFormat::Sql {
        query.push(("fmt", "sql".to_string()));
    }
    let mut answer = remote
        .send(Retry::Idempotent, |c, n| {
            Ok(c.get(n.join("db/backup")?)
                .query(&query)
                .timeout(TRANSFER_TIMEOUT))
        })
        .await?;
    if !answer.status.is_success() {
        let status = answer.status;
        let body = answer.bytes().await?;
        return Err(ApiFailure::from_body(status, &body).into());
    }
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".to_string());
    let mut part = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // Read before the body: reqwest's length is what remains to be read.
    let expected = answer.content_length();
    let bar = progress_bar(expected, &format!("backup {db}"));
    let mut written = 0u64;
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    while let Some(piece) = answer.chunk().await.inspect_err(|_| bar.abandon())? {
        if head.len() < SQLITE_HEADER.len() {
            let need = SQLITE_HEADER.len() - head.len();
            head.extend_from_slice(&piece[..need.min(piece.len())]);
        }
        part.write_all(&piece)
            .with_context(|| format!("writing {}", part.path().display()))?;
        written += piece.len() as u64;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    if let Some(expected) = expected {
        if expected != written {
            bail!("the backup was cut short: {written} of {expected} bytes arrived");
        }
    }
    if format == BackupFormat::Sqlite && head != SQLITE_HEADER {
        bail!(
            "{} answered something that is not a SQLite file ({written} bytes)",
            answer.node
        );
    }
    part.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", part.path().display()))?;
    part.persist(file)
        .with_context(|| format!("renaming the backup to {}", file.display()))?;
    // The rename itself is durable once the directory is synced.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(written)
}

/// Sends `file` to `POST /db/load?db=D` (through any node; a write, so retried only when
/// it certainly did not run), with a progress bar over the bytes sent. Returns the node's
/// `results` (a script's, one per statement; none for a SQLite file).
///
/// # Errors
/// A file over [`MAX_LOAD_BYTES`] or unreadable, the node's error ([`ApiFailure`]), or the
/// first failing statement of a script (`code: message (statement N)`).
pub async fn upload(remote: &mut Remote, db: &str, file: &Path) -> Result<Vec<Value>> {
    cairn_sql::validate_name(db).map_err(|e| anyhow::anyhow!("database name: {e}"))?;
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if size > MAX_LOAD_BYTES {
        bail!(
            "{} is {size} bytes; a node accepts at most {MAX_LOAD_BYTES} bytes in one load",
            file.display()
        );
    }
    if size == 0 {
        bail!("{} is empty", file.display());
    }
    // A dump is sent as it is: the node leaves out its BEGIN/COMMIT/PRAGMA foreign_keys.
    // Read through the bound: the file may have grown since it was measured.
    let mut data = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
            MAX_LOAD_BYTES + 1,
        ),
        &mut data,
    )
    .with_context(|| format!("reading {}", file.display()))?;
    if data.len() as u64 > MAX_LOAD_BYTES {
        bail!(
            "{} grew past {MAX_LOAD_BYTES} bytes while it was read",
            file.display()
        );
    }
    let data = Arc::new(data);
    let bar = progress_bar(Some(data.len() as u64), &format!("restore {db}"));
    let answer = remote
        .send(Retry::WhenNotApplied, |c, n| {
            bar.set_position(0);
            let body = feed(Arc::clone(&data), bar.clone())?;
            Ok(c.post(n.join("db/load")?)
                .timeout(TRANSFER_TIMEOUT)
                .query(&[("db", db)])
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body))
        })
        .await
        .inspect_err(|_| bar.abandon())?;
    bar.finish_and_clear();
    let body = answer.json().await?;
    let results = body["results"].as_array().cloned().unwrap_or_default();
    for (i, r) in results.iter().enumerate() {
        if let Some(error) = r.get("error") {
            let code = r["code"].as_str().unwrap_or("sql_error");
            let message = error.as_str().map_or_else(|| error.to_string(), one_line);
            bail!(ApiFailure {
                status: 200,
                code: code.to_string(),
                message: format!("{message} (statement {})", i + 1),
            });
        }
    }
    Ok(results)
}

/// A request body that streams `data` while `bar` counts what was handed over: a thread
/// writes it into a pipe in 64 KiB pieces, and the pipe's read end is the body (reqwest
/// streams a file; a pipe is one). The thread ends when all is written or the request
/// drops the read end.
fn feed(data: Arc<Vec<u8>>, bar: ProgressBar) -> Result<reqwest::Body> {
    let (reader, mut writer) = std::io::pipe().context("creating a pipe for the upload")?;
    std::thread::Builder::new()
        .name("cairn-upload".to_string())
        .spawn(move || {
            for piece in data.chunks(64 * 1024) {
                if writer.write_all(piece).is_err() {
                    return;
                }
                bar.inc(piece.len() as u64);
            }
        })
        .context("starting the upload thread")?;
    let file = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
    Ok(reqwest::Body::from(tokio::fs::File::from_std(file)))
}

/// `cairn backup`: writes database `--db` to FILE (see [`download`]).
///
/// # Errors
/// As [`download`].
pub async fn backup(args: BackupArgs) -> Result<()> {
    let start = Instant::now();
    let mut remote = Remote::new(&args.client)?;
    let format = if args.sql {
        BackupFormat::Sql
    } else {
        BackupFormat::Sqlite
    };
    // Ctrl-C drops the download, and with it the temporary file: no `.part` is left.
    let bytes = tokio::select! {
        done = download(&mut remote, &args.db, format, &args.file) => done,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; {} is as it was", args.file.display())),
    }
    .with_context(|| format!("backing up database {}", args.db))?;
    println!(
        "backed up database {} ({}) from {} to {} in {:.2} s",
        args.db,
        human_bytes(bytes),
        remote.current(),
        args.file.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cairn restore`: loads FILE into database `--db` (see [`upload`]), creating the
/// database first with `--create`.
///
/// # Errors
/// As [`upload`]; also when `--create` cannot create the database.
pub async fn restore(args: RestoreArgs) -> Result<()> {
    let start = Instant::now();
    let mut remote = Remote::new(&args.client)?;
    if args.create {
        create_database(&mut remote, &args.db).await?;
    }
    let results = upload(&mut remote, &args.db, &args.file)
        .await
        .with_context(|| {
            format!(
                "restoring {} into database {}",
                args.file.display(),
                args.db
            )
        })?;
    let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    let kind = if results.is_empty() {
        "a database file"
    } else {
        "a SQL script"
    };
    println!(
        "restored {} ({}, {kind}) into database {} through {} in {:.2} s",
        args.file.display(),
        human_bytes(size),
        args.db,
        remote.current(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Creates database `db` unless it exists (`POST /v1/databases`; 409 `database_exists`
/// is fine).
async fn create_database(remote: &mut Remote, db: &str) -> Result<()> {
    let body = json!({ "name": db });
    let answer = remote
        .send(Retry::WhenNotApplied, |c, n| {
            Ok(c.post(n.join("v1/databases")?).json(&body))
        })
        .await?;
    match answer.json().await {
        Ok(_) => {
            eprintln!("created database {db}");
            Ok(())
        }
        Err(e)
            if e.downcast_ref::<ApiFailure>()
                .is_some_and(|f| f.code == "database_exists") =>
        {
            Ok(())
        }
        Err(e) => Err(e.context(format!("creating database {db}"))),
    }
}

/// `n` bytes for people: `512 B`, `20.0 KiB`, `1.5 MiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// One node's line of `cairn status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    /// The node ID.
    pub id: String,
    /// Its HTTP API address.
    pub endpoint: String,
    /// The Cairn version it runs.
    pub version: Option<String>,
    /// `Leader`, `Follower`, `Candidate` or `Learner`.
    pub role: Option<String>,
    /// Its current term.
    pub term: Option<u64>,
    /// Whether it is the leader.
    pub is_leader: bool,
    /// Its commit index.
    pub commit_index: Option<u64>,
    /// Its applied index.
    pub applied_index: Option<u64>,
    /// The index of its last log entry.
    pub last_log_index: Option<u64>,
    /// Entries it is behind the leader (`raft.replication` of the leader), when known.
    pub lag_entries: Option<u64>,
    /// The sum of its databases' sizes, in bytes.
    pub db_size_bytes: Option<u64>,
    /// The size of its data directory (Raft log, snapshots, databases), in bytes.
    pub dir_size_bytes: Option<u64>,
    /// Whether it answered `/status`.
    pub reachable: bool,
    /// What went wrong reaching it, if anything.
    pub error: Option<String>,
}

/// `cairn status`: every node of the cluster, from `/nodes` and each node's `/status`.
///
/// # Errors
/// When the node given does not answer `/nodes` or `/status`, or (after printing) when a
/// node of the cluster did not answer.
pub async fn status(args: StatusArgs) -> Result<()> {
    let mut remote = Remote::new(&args.client)?;
    let rows = cluster_status(&mut remote).await?;
    match args.write_out {
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        StatusFormat::Table => print!("{}", status_table(&rows)),
    }
    let down = rows.iter().filter(|r| !r.reachable).count();
    if down > 0 {
        bail!("{down} of {} nodes did not answer", rows.len());
    }
    Ok(())
}

/// Every node's [`NodeStatus`], sorted by ID: the nodes `/nodes` lists (the current node's,
/// or the leader's when it does not answer), each asked for `/status` at once.
///
/// # Errors
/// When no node answers `/nodes`.
pub async fn cluster_status(remote: &mut Remote) -> Result<Vec<NodeStatus>> {
    let nodes = match remote.refresh_nodes().await {
        Ok(n) => n,
        Err(first) => {
            remote
                .find_leader()
                .await
                .with_context(|| format!("{}: {first:#}", remote.current()))?;
            remote.refresh_nodes().await?
        }
    };
    let listed: Vec<Value> = match nodes.get("nodes").and_then(Value::as_array) {
        Some(a) => a.clone(),
        None => nodes
            .as_object()
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (k, node) in listed.into_iter().take(64).enumerate() {
        let client = remote.http().clone();
        tasks.spawn(async move {
            let fetched = fetch_status(&client, &node).await;
            (k, node, fetched)
        });
    }
    let mut rows = Vec::new();
    // The leader's `raft.replication` (absent on nodes that do not report it): each
    // follower's lag in entries.
    let mut lags: Vec<(String, u64)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((k, node, fetched)) = joined else {
            continue;
        };
        if let Ok(status) = &fetched {
            if status["raft"]["state"].as_str() == Some("Leader") {
                lags = replication_lags(&status["raft"]["replication"]);
            }
        }
        rows.push((k, node_status(&node, fetched)));
    }
    for (_, row) in &mut rows {
        row.lag_entries = if row.is_leader {
            Some(0)
        } else {
            lags.iter()
                .find(|(id, _)| *id == row.id)
                .map(|(_, lag)| *lag)
        };
    }
    rows.sort_by_key(|(k, r)| (r.id.parse::<u64>().unwrap_or(u64::MAX), *k));
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

/// `(node ID, lag in entries)` of every follower in a leader's `raft.replication`
/// (`[{"node_id": 2, "lag_entries": 0, ...}]`); empty when absent.
fn replication_lags(replication: &Value) -> Vec<(String, u64)> {
    replication
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| {
                    let id = match &r["node_id"] {
                        Value::Number(n) => n.to_string(),
                        Value::String(s) => s.clone(),
                        _ => return None,
                    };
                    Some((id, r["lag_entries"].as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn fetch_status(client: &reqwest::Client, node: &Value) -> Result<Value> {
    let addr = node["api_addr"].as_str().context("no api_addr")?;
    let url: Url = crate::client::base_url(addr)?.join("status")?;
    let response = client
        .get(url)
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await?;
    let status = response.status();
    // A `/status` is a few KiB: a node sending megabytes is not read further.
    const MAX_STATUS_BYTES: usize = 4 * 1024 * 1024;
    let body = crate::client::read_bounded(response, MAX_STATUS_BYTES)
        .await?
        .with_context(|| format!("{addr} answered a /status over {MAX_STATUS_BYTES} bytes"))?;
    if !status.is_success() {
        return Err(ApiFailure::from_body(status, &body).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

fn node_status(node: &Value, fetched: Result<Value>) -> NodeStatus {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let id = text(&node["id"]).unwrap_or_else(|| "?".to_string());
    let endpoint = node["api_addr"].as_str().unwrap_or("?").to_string();
    let listed_error = node["error"].as_str().filter(|e| !e.is_empty());
    match fetched {
        Ok(status) => {
            let raft = &status["raft"];
            let databases = status["store"]["databases"].as_array();
            let role = raft["state"].as_str().map(str::to_string);
            NodeStatus {
                id,
                endpoint,
                version: status["node"]["version"]
                    .as_str()
                    .or(status["build"]["version"].as_str())
                    .map(str::to_string),
                is_leader: role.as_deref() == Some("Leader"),
                role,
                term: raft["term"].as_u64(),
                commit_index: raft["commit_index"].as_u64(),
                applied_index: raft["applied_index"].as_u64(),
                last_log_index: raft["last_log_index"].as_u64(),
                lag_entries: None,
                db_size_bytes: databases.map(|d| {
                    d.iter()
                        .filter_map(|d| d["size_bytes"].as_u64())
                        .fold(0u64, u64::saturating_add)
                }),
                dir_size_bytes: status["store"]["dir_size"].as_u64(),
                reachable: true,
                error: listed_error.map(one_line),
            }
        }
        Err(e) => NodeStatus {
            id,
            endpoint,
            version: node["version"].as_str().map(str::to_string),
            role: None,
            term: None,
            is_leader: false,
            commit_index: None,
            applied_index: None,
            last_log_index: None,
            lag_entries: None,
            db_size_bytes: None,
            dir_size_bytes: None,
            reachable: false,
            error: Some(one_line(&format!("{e:#}"))),
        },
    }
}

/// The rows as an aligned table, one line per node.
pub fn status_table(rows: &[NodeStatus]) -> String {
    let columns: Vec<String> = [
        "ID",
        "ENDPOINT",
        "VERSION",
        "ROLE",
        "TERM",
        "IS LEADER",
        "COMMIT",
        "APPLIED",
        "LAST LOG",
        "LAG",
        "DB SIZE",
        "DIR SIZE",
        "REACHABLE",
        "ERRORS",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    let opt = |v: Option<u64>| v.map_or(Value::Null, Value::from);
    let size = |v: Option<u64>| v.map_or(Value::Null, |n| Value::from(human_bytes(n)));
    let values: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!([
                r.id,
                r.endpoint,
                r.version,
                r.role,
                opt(r.term),
                r.is_leader,
                opt(r.commit_index),
                opt(r.applied_index),
                opt(r.last_log_index),
                opt(r.lag_entries),
                size(r.db_size_bytes),
                size(r.dir_size_bytes),
                r.reachable,
                r.error.clone().unwrap_or_default(),
            ])
        })
        .collect();
    crate::shell::render::table(&columns, &values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(20_480), "20.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }

    #[test]
    fn a_status_row_comes_from_nodes_and_status() {
        let node = json!({"id": "2", "api_addr": "http://127.0.0.1:4003", "error": ""});
        let status = json!({
            "node": {"version": "0.1.0"},
            "raft": {"state": "Leader", "term": 4, "commit_index": 9, "applied_index": 9,
                     "last_log_index": 9},
            "store": {"databases": [{"name": "main", "size_bytes": 4096},
                                    {"name": "x", "size_bytes": 4096}], "dir_size": 100}
        });
        let row = node_status(&node, Ok(status));
        assert!(row.is_leader && row.reachable);
        assert_eq!(row.db_size_bytes, Some(8192));
        assert_eq!(row.error, None);
        assert_eq!(
            replication_lags(&json!([{"node_id": 3, "lag_entries": 5}, {"node_id": "x"}])),
            vec![("3".to_string(), 5)]
        );
        assert!(replication_lags(&Value::Null).is_empty());
        let down = node_status(&node, Err(anyhow::anyhow!("connection refused")));
        assert!(!down.reachable);
        let table = status_table(&[row, down]);
        assert!(
            table.contains("| 2  | http://127.0.0.1:4003 | 0.1.0   | Leader |"),
            "{table}"
        );
        assert!(table.contains("connection refused"), "{table}");
    }
}
