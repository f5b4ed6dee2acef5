//! `cairn sql`: an interactive SQL shell over the HTTP API, in the manner of rqlite's and
//! SQLite's shells.
//!
//! Input is cut into statements by [`split`] (a `;` ends one, outside strings, comments and
//! trigger bodies) and each statement is sent alone to `POST /db/request?db=D&level=L`,
//! which runs a read as a query at the chosen consistency level and anything else as a
//! write through the Raft log, with the same result shapes as `/db/query` and
//! `/db/execute`. A line that starts with `.` when no statement is pending is a
//! dot-command (`.help` lists them). Rows are printed by [`render`].
//!
//! The shell talks to one node at a time through [`Remote`], which follows the leader: a
//! request that certainly did not run (connection refused, `no_leader`, a redirect) is sent
//! once more to the leader, found among the nodes `/nodes` listed; a write whose answer was
//! lost is reported, not resent.
//!
//! When stdin is not a terminal the same loop reads it as a script, without prompts, and
//! the command exits non-zero when a statement failed.

pub mod complete;
pub mod render;
pub mod split;

use std::future::Future;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use reqwest::Url;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::Editor;
use serde_json::{json, Value};

use crate::client::ClientArgs;
use crate::ops::{self, one_line, ApiFailure, BackupFormat, Remote, Retry};
use complete::{Names, ShellHelper, MAX_NAMES};
use render::Mode;
use split::Splitter;

/// A dot-command used wrongly: `ERROR: bad_command: ...`.
fn usage(message: impl std::fmt::Display) -> anyhow::Error {
    ApiFailure {
        status: 0,
        code: "bad_command".to_string(),
        message: message.to_string(),
    }
    .into()
}

/// Returns a [`usage`] error, formatted like `format!`.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(usage(format!($($arg)*)))
    };
}

/// The consistency levels `/db/query` takes (`level=`).
pub const LEVELS: &[&str] = &["none", "weak", "linearizable", "strong", "auto"];

/// How deep `.read` may nest (a file that reads itself stops here).
const MAX_READ_DEPTH: usize = 8;

/// Flags of `cairn sql`.
#[derive(Args, Debug)]
pub struct SqlArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The database statements run in (`.db NAME` changes it).
    #[arg(long, default_value = "main")]
    pub db: String,
    /// The read consistency level: none, weak, linearizable, strong or auto (`.consistency`
    /// changes it).
    #[arg(long, default_value = "weak", value_parser = clap::builder::PossibleValuesParser::new(LEVELS))]
    pub consistency: String,
    /// The history file (default `~/.cairn_history`).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Keep no history file.
    #[arg(long)]
    pub no_history: bool,
    /// How rows are printed: table, csv, json or line (`.mode` changes it).
    #[arg(long, default_value = "table", value_parser = clap::builder::PossibleValuesParser::new(["table", "csv", "json", "line"]))]
    pub mode: String,
    /// In a script, stop at the first failing statement.
    #[arg(long)]
    pub bail: bool,
}

/// What the loop does after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// The shell's state: where it sends statements and how it prints them.
struct Session {
    remote: Remote,
    client_args: ClientArgs,
    db: String,
    level: String,
    mode: Mode,
    timer: bool,
    bail: bool,
    helper: ShellHelper,
    /// Whether any statement or command failed (the exit status of a script).
    failures: usize,
    /// `.read` nesting.
    depth: usize,
    /// Whether stdin is a terminal: then Ctrl-C stops waiting for a statement.
    interactive: bool,
    /// The node the user was last told the shell talks to.
    announced: Url,
}

/// Runs the shell until `.quit`, Ctrl-D or the end of stdin.
///
/// # Errors
/// Bad flags, a terminal that cannot be driven, or (reading a script) a failed statement:
/// the error says how many failed.
pub async fn run(args: SqlArgs) -> Result<()> {
    cairn_sql::validate_name(&args.db).map_err(|e| anyhow::anyhow!("--db: {e}"))?;
    let interactive = std::io::stdin().is_terminal();
    let mut session = Session {
        remote: Remote::new(&args.client)?,
        client_args: args.client.clone(),
        db: args.db.clone(),
        level: args.consistency.clone(),
        mode: Mode::parse(&args.mode).unwrap_or(Mode::Table),
        timer: false,
        bail: args.bail,
        helper: ShellHelper::new(),
        failures: 0,
        depth: 0,
        interactive,
        announced: crate::client::base_url(&args.client.addr)?,
    };
    // Learn the other nodes now, so that the shell can find the leader when this one dies.
    let reached = session.remote.refresh_nodes().await;
    if interactive {
        session.banner(reached.as_ref().err()).await;
    }
    session.refresh_names().await;
    if interactive {
        session.interactive(&args).await?;
        return Ok(());
    }
    session.script_stdin().await?;
    match session.failures {
        0 => Ok(()),
        1 => bail!("1 statement or command failed"),
        n => bail!("{n} statements or commands failed"),
    }
}

impl Session {
    async fn banner(&mut self, unreachable: Option<&anyhow::Error>) {
        if let Some(e) = unreachable {
            eprintln!(
                "warning: {} did not answer ({}); statements will be tried anyway",
                self.remote.current(),
                one_line(&format!("{e:#}"))
            );
        }
        let status = self.get_json("status", &[]).await.ok();
        let version = status
            .as_ref()
            .and_then(|s| s["build"]["version"].as_str())
            .unwrap_or("?");
        let role = status
            .as_ref()
            .and_then(|s| s["raft"]["state"].as_str())
            .unwrap_or("unknown role");
        println!(
            "Connected to {} (cairn {version}, {role}), database {}, consistency {}.",
            self.remote.current(),
            self.db,
            self.level
        );
        println!("Enter .help for the dot-commands; end statements with \";\".");
    }

    fn prompt(&self, continuing: bool) -> String {
        let node = self.remote.current();
        let host = format!(
            "{}:{}",
            node.host_str().unwrap_or("?"),
            node.port_or_known_default().unwrap_or(0)
        );
        if continuing {
            format!("{}...> ", " ".repeat(host.len() + self.db.len() + 1))
        } else {
            format!("{host}/{}> ", self.db)
        }
    }

    async fn interactive(&mut self, args: &SqlArgs) -> Result<()> {
        let history = history_path(args);
        let config = rustyline::Config::builder()
            .auto_add_history(false)
            .max_history_size(10_000)
            .map(|b| b.build())
            .unwrap_or_default();
        let mut editor: Editor<ShellHelper, DefaultHistory> =
            Editor::with_config(config).context("starting the line editor")?;
        editor.set_helper(Some(self.helper.clone()));
        if let Some(path) = &history {
            // A missing file is the first run.
            let _ = editor.load_history(path);
        }
        let mut splitter = Splitter::new();
        // Bounded by the user's input; each turn reads one line.
        loop {
            let prompt = self.prompt(!splitter.is_blank());
            let line = tokio::task::block_in_place(|| editor.readline(&prompt));
            match line {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    if self.feed_line(&mut splitter, &line).await == Flow::Quit {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    if splitter.is_blank() {
                        println!("(.quit or Ctrl-D leaves)");
                    }
                    splitter.clear();
                }
                Err(ReadlineError::Eof) => {
                    self.finish(&mut splitter).await;
                    break;
                }
                Err(e) => return Err(e).context("reading a line"),
            }
        }
        if let Some(path) = &history {
            save_history(&mut editor, path);
        }
        Ok(())
    }

    /// Reads stdin line by line as a script.
    async fn script_stdin(&mut self) -> Result<()> {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let mut splitter = Splitter::new();
        // Bounded by the input.
        loop {
            let next = tokio::task::block_in_place(|| lines.next());
            let Some(line) = next else {
                break;
            };
            let line = line.context("reading stdin")?;
            if self.feed_line(&mut splitter, &line).await == Flow::Quit {
                return Ok(());
            }
        }
        self.finish(&mut splitter).await;
        Ok(())
    }

    /// Runs what `text` holds (a `.read` file): the lines as if typed.
    fn run_text<'a>(&'a mut self, text: &'a str) -> Pin<Box<dyn Future<Output = Flow> + 'a>> {
        Box::pin(async move {
            let mut splitter = Splitter::new();
            for line in text.lines() {
                if self.feed_line(&mut splitter, line).await == Flow::Quit {
                    return Flow::Quit;
                }
            }
            self.finish(&mut splitter).await;
            Flow::Continue
        })
    }

    /// One line of input: a dot-command when no statement is pending, else more of a
    /// statement; runs every statement it completes.
    async fn feed_line(&mut self, splitter: &mut Splitter, line: &str) -> Flow {
        if splitter.is_blank() && line.trim_start().starts_with('.') {
            splitter.clear();
            let flow = match self.dot_command(line.trim()).await {
                Ok(flow) => flow,
                Err(e) => {
                    self.report(&e);
                    Flow::Continue
                }
            };
            // `.backup` and `.restore` may have moved to the leader.
            self.announce_node();
            return self.after_failure(flow);
        }
        for statement in splitter.push(&format!("{line}\n")) {
            self.statement(&statement).await;
            if self.after_failure(Flow::Continue) == Flow::Quit {
                return Flow::Quit;
            }
        }
        Flow::Continue
    }

    fn after_failure(&self, flow: Flow) -> Flow {
        if self.bail && self.failures > 0 {
            Flow::Quit
        } else {
            flow
        }
    }

    /// The end of the input: runs a last statement that lacks only its `;`.
    async fn finish(&mut self, splitter: &mut Splitter) {
        match splitter.finish() {
            Ok(Some(statement)) => self.statement(&statement).await,
            Ok(None) => {}
            Err(e) => {
                self.failures += 1;
                eprintln!("ERROR: incomplete_input: {e}");
            }
        }
    }

    /// Prints an error on one line: `ERROR: <code>: <message>`.
    fn report(&mut self, e: &anyhow::Error) {
        self.failures += 1;
        match e.downcast_ref::<ApiFailure>() {
            Some(f) => eprintln!("ERROR: {f}"),
            None => match e.chain().find_map(|c| c.downcast_ref::<ApiFailure>()) {
                Some(f) => eprintln!("ERROR: {}: {}", f.code, one_line(&format!("{e:#}"))),
                None => {
                    // A node that could not be reached, or something on this side (a file).
                    let network = e
                        .chain()
                        .any(|c| c.downcast_ref::<reqwest::Error>().is_some());
                    let code = if network { "unreachable" } else { "client" };
                    eprintln!("ERROR: {code}: {}", one_line(&format!("{e:#}")));
                }
            },
        }
    }

    /// Sends `build`'s request through the remote, noting a change of node.
    async fn send(
        &mut self,
        retry: Retry,
        build: impl Fn(&reqwest::Client, &Url) -> Result<reqwest::RequestBuilder>,
    ) -> Result<ops::remote::Answer> {
        let answer = self.remote.send(retry, build).await;
        self.announce_node();
        answer
    }

    /// Says so when the shell now talks to another node (it followed the leader).
    fn announce_node(&mut self) {
        if *self.remote.current() != self.announced {
            self.announced = self.remote.current().clone();
            eprintln!("(now talking to {})", self.announced);
        }
    }

    async fn get_json(&mut self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        self.send(Retry::Idempotent, |c, n| {
            Ok(c.get(n.join(path)?).query(query))
        })
        .await?
        .json()
        .await
    }

    /// Sends one statement (with parameters, as a JSON array `[sql, params...]`, or a bare
    /// string) to `/db/request` and returns its one result.
    async fn request(&mut self, statement: Value, read: bool) -> Result<(Value, Value)> {
        let body = json!([statement]);
        let query = [
            ("db", self.db.clone()),
            ("level", self.level.clone()),
            ("blob_array", String::new()),
            ("timings", String::new()),
        ];
        let retry = if read {
            Retry::Idempotent
        } else {
            Retry::WhenNotApplied
        };
        let answer = self
            .send(retry, |c, n| {
                Ok(c.post(n.join("db/request")?).query(&query).json(&body))
            })
            .await?;
        let reply = answer.json().await?;
        let result = reply["results"]
            .as_array()
            .and_then(|r| r.first())
            .cloned()
            .context("the node answered without a result")?;
        if let Some(error) = result.get("error") {
            bail!(ApiFailure {
                status: 200,
                code: result["code"].as_str().unwrap_or("sql_error").to_string(),
                message: error.as_str().map_or_else(|| error.to_string(), one_line),
            });
        }
        Ok((result, reply))
    }

    /// Runs one SQL statement and prints its rows, or what it changed, or its error.
    async fn statement(&mut self, sql: &str) {
        let started = Instant::now();
        let read = split::is_read(sql);
        let outcome = if self.interactive {
            // Ctrl-C outside rustyline's raw mode is SIGINT: stop waiting, keep the shell.
            tokio::select! {
                r = self.request(json!(sql), read) => Some(r),
                _ = tokio::signal::ctrl_c() => None,
            }
        } else {
            Some(self.request(json!(sql), read).await)
        };
        let Some(outcome) = outcome else {
            self.failures += 1;
            let may = if read {
                ""
            } else {
                "; a write may still be applied"
            };
            eprintln!("ERROR: interrupted: stopped waiting for the answer{may}");
            return;
        };
        match outcome {
            Ok((result, _)) => {
                if result.get("columns").is_some() {
                    print!(
                        "{}",
                        render::for_stdout(&render::render(self.mode, &result))
                    );
                } else if !read {
                    println!("{}", render::write_summary(&result));
                }
                if self.timer {
                    let node = result["time"]
                        .as_f64()
                        .map_or_else(String::new, |t| format!(" (on the node {:.3} ms)", t * 1e3));
                    println!(
                        "Run Time: {:.3} ms{node}",
                        started.elapsed().as_secs_f64() * 1e3
                    );
                }
                if split::changes_schema(sql) {
                    self.refresh_names().await;
                }
            }
            Err(e) => self.report(&e),
        }
    }

    /// Runs a query the shell makes itself (for a dot-command) and returns its result.
    async fn query(&mut self, sql: &str, params: &[&str]) -> Result<Value> {
        let mut statement = vec![json!(sql)];
        statement.extend(params.iter().map(|p| json!(p)));
        Ok(self.request(Value::Array(statement), true).await?.0)
    }

    /// Reads the table and column names the completer offers (at level `none`: this
    /// node's copy is good enough to complete with). Failures leave the old names.
    async fn refresh_names(&mut self) {
        let level = std::mem::replace(&mut self.level, "none".to_string());
        let found = self
            .query(
                "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p \
                 WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 LIMIT 10000",
                &[],
            )
            .await;
        self.level = level;
        let Ok(result) = found else {
            return;
        };
        let mut names = Names::default();
        for row in result["values"].as_array().into_iter().flatten() {
            if let (Some(t), Some(c)) = (row[0].as_str(), row[1].as_str()) {
                if names.tables.last().map(String::as_str) != Some(t) {
                    names.tables.push(t.to_string());
                }
                names.columns.push(c.to_string());
            }
        }
        names.tables.sort();
        names.tables.dedup();
        names.columns.sort();
        names.columns.dedup();
        names.tables.truncate(MAX_NAMES);
        names.columns.truncate(MAX_NAMES);
        self.helper.set_names(names);
    }

    /// A dot-command line (starting with `.`).
    async fn dot_command(&mut self, line: &str) -> Result<Flow> {
        let words = shell_words(line);
        let Some((command, args)) = words.split_first() else {
            return Ok(Flow::Continue);
        };
        let arg = |i: usize| args.get(i).map(String::as_str);
        match command.as_str() {
            ".quit" | ".exit" | ".q" => return Ok(Flow::Quit),
            ".help" => print!("{HELP}"),
            ".tables" => {
                let mut sql = "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
                               AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                    .to_string();
                let params: Vec<&str> = arg(0).into_iter().collect();
                if !params.is_empty() {
                    sql.push_str(" AND name LIKE ?");
                }
                sql.push_str(" ORDER BY name");
                let result = self.query(&sql, &params).await?;
                print!(
                    "{}",
                    render::for_stdout(&render::render(self.mode, &result))
                );
            }
            ".schema" => {
                let mut sql = "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL \
                               AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                    .to_string();
                let params: Vec<&str> = arg(0).into_iter().collect();
                if !params.is_empty() {
                    sql.push_str(" AND tbl_name LIKE ?");
                }
                sql.push_str(" ORDER BY tbl_name, type DESC, name");
                let result = self.query(&sql, &params).await?;
                for row in result["values"].as_array().into_iter().flatten() {
                    if let Some(sql) = row[0].as_str() {
                        println!("{};", render::escape_except(sql, &['\n', '\t']));
                    }
                }
            }
            ".indexes" | ".indices" => {
                let mut sql = "SELECT name, tbl_name AS \"table\" FROM sqlite_master \
                               WHERE type = 'index' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                    .to_string();
                let params: Vec<&str> = arg(0).into_iter().collect();
                if !params.is_empty() {
                    sql.push_str(" AND tbl_name LIKE ?");
                }
                sql.push_str(" ORDER BY tbl_name, name");
                let result = self.query(&sql, &params).await?;
                print!(
                    "{}",
                    render::for_stdout(&render::render(self.mode, &result))
                );
            }
            ".nodes" => self.nodes().await?,
            ".leader" => self.leader(arg(0)).await?,
            ".status" => self.status().await?,
            ".databases" => {
                let list = self.get_json("v1/databases", &[]).await?;
                let rows: Vec<Value> = list["databases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| json!([d["name"], d["size_bytes"]]))
                    .collect();
                print!(
                    "{}",
                    render::table(&["name".into(), "size_bytes".into()], &rows)
                );
            }
            ".consistency" => match arg(0) {
                None => println!("{}", self.level),
                Some(level) if LEVELS.contains(&level.to_ascii_lowercase().as_str()) => {
                    self.level = level.to_ascii_lowercase();
                }
                Some(other) => usage!(
                    "unknown consistency level {other:?}: use {}",
                    LEVELS.join(", ")
                ),
            },
            ".db" => match arg(0) {
                None => println!("{}", self.db),
                Some(name) => {
                    cairn_sql::validate_name(name)
                        .map_err(|e| anyhow::anyhow!("database name: {e}"))?;
                    self.get_json(&format!("v1/databases/{name}"), &[]).await?;
                    self.db = name.to_string();
                    self.refresh_names().await;
                }
            },
            ".mode" => match arg(0) {
                None => println!("{}", self.mode.name()),
                Some(name) => match Mode::parse(name) {
                    Some(mode) => self.mode = mode,
                    None => usage!("unknown mode {name:?}: use table, csv, json or line"),
                },
            },
            ".timer" => match arg(0) {
                Some("on") => self.timer = true,
                Some("off") => self.timer = false,
                None => println!("{}", if self.timer { "on" } else { "off" }),
                Some(other) => usage!(".timer takes on or off, not {other:?}"),
            },
            ".dump" => match arg(0) {
                Some(file) => {
                    let bytes = ops::download(
                        &mut self.remote,
                        &self.db,
                        BackupFormat::Sql,
                        Path::new(file),
                    )
                    .await?;
                    println!("wrote a dump of {} ({} bytes) to {file}", self.db, bytes);
                }
                None => {
                    let db = self.db.clone();
                    let answer = self
                        .send(Retry::Idempotent, |c, n| {
                            Ok(c.get(n.join("db/backup")?)
                                .query(&[("db", db.as_str()), ("fmt", "sql")])
                                .timeout(crate::ops::TRANSFER_TIMEOUT))
                        })
                        .await?;
                    let status = answer.status;
                    let body = answer.bytes().await?;
                    if !status.is_success() {
                        bail!(ApiFailure::from_body(status, &body));
                    }
                    print!("{}", render::for_stdout(&String::from_utf8_lossy(&body)));
                }
            },
            ".backup" => {
                let file = arg(0).ok_or_else(|| usage(".backup takes a FILE"))?;
                let bytes = ops::download(
                    &mut self.remote,
                    &self.db,
                    BackupFormat::Sqlite,
                    Path::new(file),
                )
                .await?;
                println!("backed up {} ({} bytes) to {file}", self.db, bytes);
            }
            ".restore" => {
                let file = arg(0).ok_or_else(|| usage(".restore takes a FILE"))?;
                let results = ops::upload(&mut self.remote, &self.db, Path::new(file)).await?;
                let kind = if results.is_empty() {
                    "a database file"
                } else {
                    "a SQL script"
                };
                println!("restored {file} ({kind}) into {}", self.db);
                self.refresh_names().await;
            }
            ".import" => {
                let (Some(file), Some(table)) = (arg(0), arg(1)) else {
                    usage!(".import takes FILE TABLE (a CSV file with a header row)");
                };
                let import = crate::import::ImportArgs {
                    addr: self.remote.current().to_string(),
                    user: self.client_args.user.clone(),
                    cacert: self.client_args.cacert.clone(),
                    db: self.db.clone(),
                    table: table.to_string(),
                    format: Some(crate::import::Format::Csv),
                    batch: std::num::NonZeroUsize::MIN.saturating_add(499),
                    timeout_secs: self.client_args.timeout_secs,
                    cluster_secret: None,
                    file: PathBuf::from(file),
                };
                crate::import::run(import).await?;
                self.refresh_names().await;
            }
            ".read" => {
                let file = arg(0).ok_or_else(|| usage(".read takes a FILE"))?;
                if self.depth >= MAX_READ_DEPTH {
                    usage!(".read nests more than {MAX_READ_DEPTH} deep");
                }
                let text =
                    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
                self.depth += 1;
                let flow = self.run_text(&text).await;
                self.depth -= 1;
                return Ok(flow);
            }
            other => usage!("unknown command {other:?}: .help lists them"),
        }
        Ok(Flow::Continue)
    }

    async fn nodes(&mut self) -> Result<()> {
        let nodes = self.get_json("nodes", &[]).await?;
        let mut list: Vec<&Value> = nodes
            .as_object()
            .map(|o| o.values().collect())
            .unwrap_or_default();
        list.sort_by_key(|n| n["id"].as_str().and_then(|i| i.parse::<u64>().ok()));
        let rows: Vec<Value> = list
            .iter()
            .map(|n| {
                json!([
                    n["id"],
                    n["api_addr"],
                    n["addr"],
                    n["voter"],
                    n["reachable"],
                    n["leader"],
                    n["error"].as_str().unwrap_or("")
                ])
            })
            .collect();
        let columns: Vec<String> = [
            "id",
            "api_addr",
            "addr",
            "voter",
            "reachable",
            "leader",
            "error",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect();
        print!("{}", render::for_stdout(&render::table(&columns, &rows)));
        Ok(())
    }

    async fn leader(&mut self, action: Option<&str>) -> Result<()> {
        let body = match action {
            None => self.get_json("leader", &[]).await?,
            Some("stepdown" | "step-down") => {
                let answer = self
                    .send(Retry::WhenNotApplied, |c, n| Ok(c.post(n.join("leader")?)))
                    .await?;
                answer.json().await?
            }
            Some(other) => usage!(".leader takes nothing or stepdown, not {other:?}"),
        };
        let leader = &body["leader"];
        let line = format!(
            "leader: node {} at {} (raft {})",
            leader["id"].as_str().unwrap_or("?"),
            leader["api_addr"].as_str().unwrap_or("?"),
            leader["addr"].as_str().unwrap_or("?")
        );
        println!("{}", render::escape_controls(&line));
        Ok(())
    }

    async fn status(&mut self) -> Result<()> {
        let s = self.get_json("status", &[]).await?;
        let raft = &s["raft"];
        let databases: Vec<String> = s["store"]["databases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{} ({})",
                    d["name"].as_str().unwrap_or("?"),
                    d["size_bytes"]
                        .as_u64()
                        .map_or("?".to_string(), ops::human_bytes)
                )
            })
            .collect();
        let show = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_string(),
            other => other.to_string(),
        };
        let rows = [
            ("node", show(&s["node"]["id"])),
            ("api address", show(&s["node"]["api_addr"])),
            ("raft address", show(&s["node"]["raft_addr"])),
            ("version", show(&s["build"]["version"])),
            ("state", show(&raft["state"])),
            ("term", show(&raft["term"])),
            ("leader", show(&raft["leader_api_addr"])),
            ("voters", show(&raft["voters"])),
            ("last log index", show(&raft["last_log_index"])),
            ("commit index", show(&raft["commit_index"])),
            ("applied index", show(&raft["applied_index"])),
            ("snapshot index", show(&raft["snapshot_index"])),
            ("last contact ms", show(&raft["last_contact_ms"])),
            ("databases", databases.join(", ")),
            ("uptime", show(&s["node"]["uptime"])),
        ];
        let values: Vec<Value> = rows.iter().map(|(k, v)| json!([k, v])).collect();
        print!(
            "{}",
            render::table(&["field".into(), "value".into()], &values)
        );
        Ok(())
    }
}

const HELP: &str = "\
Statements end with \";\" and may span lines. Dot-commands:
  .tables [PATTERN]       tables and views (LIKE pattern)
  .schema [TABLE]         CREATE statements
  .indexes [TABLE]        indexes
  .nodes                  the cluster's nodes (GET /nodes)
  .leader [stepdown]      the leader; stepdown hands leadership to another voter
  .status                 this node's status
  .databases              databases and their sizes
  .db [NAME]              show or change the database
  .consistency [LEVEL]    show or set the read level: none weak linearizable strong auto
  .mode [MODE]            show or set the output: table csv json line
  .timer on|off           show how long each statement took
  .dump [FILE]            the database as SQL, to stdout or FILE
  .backup FILE            the database as a SQLite file
  .restore FILE           load a SQLite file or a SQL script into the database
  .import FILE TABLE      load a CSV file with a header row into TABLE
  .read FILE              run the statements and commands in FILE
  .help                   this text
  .quit, .exit            leave (so does Ctrl-D)
";

/// The words of a dot-command line; `"..."` or `'...'` quote a word with spaces.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            None => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// The history file: `--history`, else `~/.cairn_history`; none with `--no-history` or
/// without a home directory.
fn history_path(args: &SqlArgs) -> Option<PathBuf> {
    if args.no_history {
        return None;
    }
    if let Some(path) = &args.history {
        return Some(path.clone());
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".cairn_history"))
}

/// Saves the history, readable by its owner only (statements may hold secrets).
fn save_history(editor: &mut Editor<ShellHelper, DefaultHistory>, path: &Path) {
    if let Err(e) = editor.save_history(path) {
        eprintln!(
            "warning: could not save the history to {}: {e}",
            path.display()
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_command_words_may_be_quoted() {
        assert_eq!(
            shell_words(".import 'my file.csv' t"),
            [".import", "my file.csv", "t"]
        );
        assert_eq!(shell_words("  .tables  "), [".tables"]);
        assert_eq!(shell_words(".db \"\""), [".db", ""]);
    }
}
