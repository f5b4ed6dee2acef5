//! `cairn bench`: drives a Cairn cluster, a single SQLite file or an etcd cluster with the
//! same workload from concurrent clients, and reports throughput and latency percentiles
//! (HDR histogram). Speed is measured here, never asserted in tests.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::procs::{stop_all, Proc};

/// Rows (or keys) loaded before read workloads; reads pick one at random.
const PRELOAD: u64 = 1000;
/// Rows per request in the `batch` workload.
const BATCH_ROWS: usize = 100;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// One single-row INSERT per request: the durable-write path.
    Insert,
    /// 100 rows per request, in one transaction.
    Batch,
    /// Point reads by primary key at level none, spread over all nodes.
    ReadNone,
    /// Point reads at level weak.
    ReadWeak,
    /// Point reads at level linearizable.
    ReadLinearizable,
    /// 90% weak reads, 10% inserts.
    Mixed,
    /// Writes while the leader is killed with SIGKILL: time to the first acknowledged write,
    /// and whether every acknowledged write survived (needs --spawn).
    Failover,
}

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// Cairn, through its HTTP API.
    Cairn,
    /// One SQLite file (WAL, synchronous=FULL), in this process: what one disk allows
    /// without replication.
    Sqlite,
    /// etcd v3 through its JSON gateway (puts; serializable or linearizable gets).
    Etcd,
}

/// Flags of `cairn bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// System to drive.
    #[arg(long, value_enum, default_value_t = System::Cairn)]
    pub system: System,
    /// Nodes' URLs, comma-separated (Cairn: HTTP API; etcd: client URLs).
    #[arg(long, value_delimiter = ',')]
    pub addr: Vec<String>,
    /// Start a local cluster of N nodes in a temporary directory and stop it afterwards
    /// (etcd needs the `etcd` binary from Debian's etcd-server).
    #[arg(long)]
    pub spawn: Option<u16>,
    /// Workload.
    #[arg(long, value_enum, default_value_t = Workload::Insert)]
    pub workload: Workload,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// How long to run each measurement, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Failover trials (the killed node is restarted between them).
    #[arg(long, default_value_t = 3)]
    pub trials: u32,
    /// SQLite file for --system sqlite (a temporary one by default).
    #[arg(long)]
    pub sqlite_path: Option<PathBuf>,
    /// Print one JSON object per run instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One client operation against the system under test.
#[derive(Clone)]
enum Driver {
    Cairn {
        http: reqwest::Client,
        urls: Arc<Vec<String>>,
    },
    Sqlite {
        path: PathBuf,
    },
    Etcd {
        http: reqwest::Client,
        urls: Arc<Vec<String>>,
    },
}

thread_local! {
    static SQLITE: std::cell::RefCell<Option<rusqlite::Connection>> = const { std::cell::RefCell::new(None) };
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Driver {
    fn url(&self, client: usize) -> String {
        match self {
            Driver::Cairn { urls, .. } | Driver::Etcd { urls, .. } => {
                urls[client % urls.len()].clone()
            }
            Driver::Sqlite { .. } => String::new(),
        }
    }

    async fn setup(&self, value: &str, preload: bool) -> anyhow::Result<()> {
        match self {
            Driver::Cairn { .. } => {
                self.cairn_exec(
                    0,
                    json!(["CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, v TEXT)"]),
                    "",
                )
                .await?;
                if preload {
                    for chunk in (1..=PRELOAD).collect::<Vec<_>>().chunks(BATCH_ROWS) {
                        let stmts: Vec<Value> = chunk
                            .iter()
                            .map(|id| {
                                json!([
                                    "INSERT OR REPLACE INTO bench(id, v) VALUES(?, ?)",
                                    id,
                                    value
                                ])
                            })
                            .collect();
                        self.cairn_exec(0, Value::Array(stmts), "transaction")
                            .await?;
                    }
                }
                Ok(())
            }
            Driver::Sqlite { path } => {
                let c = rusqlite::Connection::open(path)?;
                c.pragma_update(None, "journal_mode", "WAL")?;
                c.pragma_update(None, "synchronous", "FULL")?;
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, v TEXT)",
                )?;
                if preload {
                    let tx = c.unchecked_transaction()?;
                    for id in 1..=PRELOAD {
                        tx.execute(
                            "INSERT OR REPLACE INTO bench(id, v) VALUES(?1, ?2)",
                            rusqlite::params![id, value],
                        )?;
                    }
                    tx.commit()?;
                }
                Ok(())
            }
            Driver::Etcd { .. } => {
                if preload {
                    for id in 1..=PRELOAD {
                        self.etcd_put(0, &format!("bench/{id}"), value).await?;
                    }
                }
                Ok(())
            }
        }
    }

    async fn cairn_exec(&self, client: usize, body: Value, flags: &str) -> anyhow::Result<()> {
        let Driver::Cairn { http, .. } = self else {
            bail!("not cairn")
        };
        let resp = http
            .post(format!("{}/db/execute?{flags}", self.url(client)))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {v}");
        }
        if let Some(e) = v["results"]
            .as_array()
            .and_then(|r| r.iter().find_map(|x| x["error"].as_str()))
        {
            bail!("SQL error: {e}");
        }
        Ok(())
    }

    async fn cairn_read(&self, client: usize, id: u64, level: &str) -> anyhow::Result<()> {
        let Driver::Cairn { http, .. } = self else {
            bail!("not cairn")
        };
        let resp = http
            .post(format!("{}/db/query?level={level}", self.url(client)))
            .json(&json!([["SELECT v FROM bench WHERE id = ?", id]]))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("HTTP {}", resp.status());
        }
        let v: Value = resp.json().await?;
        if v["results"][0]["values"]
            .as_array()
            .is_none_or(|r| r.is_empty())
        {
            bail!("row {id} not found: {v}");
        }
        Ok(())
    }

    async fn etcd_put(&self, client: usize, key: &str, value: &str) -> anyhow::Result<()> {
        let Driver::Etcd { http, .. } = self else {
            bail!("not etcd")
        };
        let resp = http
            .post(format!("{}/v3/kv/put", self.url(client)))
            .json(&json!({"key": b64(key), "value": b64(value)}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "HTTP {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn etcd_get(&self, client: usize, key: &str, serializable: bool) -> anyhow::Result<()> {
        let Driver::Etcd { http, .. } = self else {
            bail!("not etcd")
        };
        let resp = http
            .post(format!("{}/v3/kv/range", self.url(client)))
            .json(&json!({"key": b64(key), "serializable": serializable}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("HTTP {}", resp.status());
        }
        let v: Value = resp.json().await?;
        if v["kvs"].as_array().is_none_or(|k| k.is_empty()) {
            bail!("key {key} not found");
        }
        Ok(())
    }

    fn sqlite_op(
        path: &PathBuf,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>,
    ) -> anyhow::Result<()> {
        SQLITE.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                let c = rusqlite::Connection::open(path)?;
                c.busy_timeout(Duration::from_secs(30))?;
                c.pragma_update(None, "synchronous", "FULL")?;
                *slot = Some(c);
            }
            match slot.as_ref() {
                Some(c) => Ok(f(c)?),
                None => bail!("no connection"),
            }
        })
    }

    /// One operation of `workload` by client `client`; `seq` is unique per write.
    async fn op(
        &self,
        workload: Workload,
        client: usize,
        seq: u64,
        value: &str,
    ) -> anyhow::Result<()> {
        let read_id = 1 + rand::random::<u64>() % PRELOAD;
        let workload = match workload {
            Workload::Mixed if !rand::random::<u8>().is_multiple_of(10) => Workload::ReadWeak,
            Workload::Mixed | Workload::Failover => Workload::Insert,
            w => w,
        };
        let id = PRELOAD + 1 + seq;
        match (self, workload) {
            (Driver::Cairn { .. }, Workload::Insert) => {
                self.cairn_exec(
                    client,
                    json!([["INSERT INTO bench(id, v) VALUES(?, ?)", id, value]]),
                    "",
                )
                .await
            }
            (Driver::Cairn { .. }, Workload::Batch) => {
                let stmts: Vec<Value> = (0..BATCH_ROWS as u64)
                    .map(|k| {
                        json!([
                            "INSERT INTO bench(id, v) VALUES(?, ?)",
                            id * BATCH_ROWS as u64 + k,
                            value
                        ])
                    })
                    .collect();
                self.cairn_exec(client, Value::Array(stmts), "transaction")
                    .await
            }
            (Driver::Cairn { .. }, Workload::ReadNone) => {
                self.cairn_read(client, read_id, "none").await
            }
            (Driver::Cairn { .. }, Workload::ReadWeak) => {
                self.cairn_read(client, read_id, "weak").await
            }
            (Driver::Cairn { .. }, _) => self.cairn_read(client, read_id, "linearizable").await,
            (Driver::Sqlite { path }, w) => {
                let path = path.clone();
                let value = value.to_string();
                tokio::task::spawn_blocking(move || {
                    Driver::sqlite_op(&path, |c| match w {
                        Workload::Insert => c
                            .execute(
                                "INSERT INTO bench(id, v) VALUES(?1, ?2)",
                                rusqlite::params![id, value],
                            )
                            .map(|_| ()),
                        Workload::Batch => {
                            let tx = c.unchecked_transaction()?;
                            for k in 0..BATCH_ROWS as u64 {
                                tx.execute(
                                    "INSERT INTO bench(id, v) VALUES(?1, ?2)",
                                    rusqlite::params![id * BATCH_ROWS as u64 + k, value],
                                )?;
                            }
                            tx.commit()
                        }
                        _ => {
                            c.query_row("SELECT v FROM bench WHERE id = ?1", [read_id], |_| Ok(()))
                        }
                    })
                })
                .await?
            }
            (Driver::Etcd { .. }, Workload::Insert) => {
                self.etcd_put(client, &format!("bench/{id}"), value).await
            }
            (Driver::Etcd { http, .. }, Workload::Batch) => {
                // 100 puts in one transaction, as the Cairn batch is 100 rows in one.
                let puts: Vec<Value> = (0..BATCH_ROWS as u64)
                    .map(|k| {
                        let key = format!("bench/{}", id * BATCH_ROWS as u64 + k);
                        json!({"requestPut": {"key": b64(&key), "value": b64(value)}})
                    })
                    .collect();
                let resp = http
                    .post(format!("{}/v3/kv/txn", self.url(client)))
                    .json(&json!({"success": puts}))
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!(
                        "HTTP {}: {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    );
                }
                Ok(())
            }
            (Driver::Etcd { .. }, Workload::ReadNone | Workload::ReadWeak) => {
                self.etcd_get(client, &format!("bench/{read_id}"), true)
                    .await
            }
            (Driver::Etcd { .. }, _) => {
                self.etcd_get(client, &format!("bench/{read_id}"), false)
                    .await
            }
        }
    }
}

/// A spawned local cluster, stopped when dropped.
struct Spawned {
    procs: Vec<Proc>,
    urls: Vec<String>,
    _dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_ok(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).timeout(Duration::from_secs(1)).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} not ready within {timeout:?}")
}

async fn spawn_cairn(n: u16, http: &reqwest::Client) -> anyhow::Result<Spawned> {
    let dir = tempfile::Builder::new().prefix("cairn-bench-").tempdir()?;
    let exe = std::env::current_exe()?;
    let mut procs = Vec::new();
    let mut urls: Vec<String> = Vec::new();
    for i in 1..=n {
        let d = dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&d)?;
        let mut args = vec![
            "start".to_string(),
            "--node-id".into(),
            i.to_string(),
            "--http-addr".into(),
            "127.0.0.1:0".into(),
            "--raft-addr".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            d.display().to_string(),
        ];
        if let Some(first) = urls.first() {
            args.push("--join".into());
            args.push(first.clone());
        }
        let env = vec![(
            "CAIRN_CLUSTER_SECRET".to_string(),
            "bench-secret".to_string(),
        )];
        procs.push(Proc::start(&exe, args, env, d.join("cairn.log"))?);
        let ident = d.join("node.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        let http_addr = loop {
            if let Ok(b) = std::fs::read(&ident) {
                let v: Value = serde_json::from_slice(&b)?;
                if let Some(a) = v["http_addr"].as_str() {
                    break a.to_string();
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {i} did not start; see {}",
                    d.join("cairn.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // A restart must keep the ports the cluster knows: `node.json` has them.
        if let Some(p) = procs.last_mut() {
            p.set_args(vec![
                "start".into(),
                "--data-dir".into(),
                d.display().to_string(),
            ]);
        }
        let url = format!("http://{http_addr}");
        wait_ok(
            http,
            &format!("{url}/readyz"),
            &format!("node {i}"),
            Duration::from_secs(60),
        )
        .await?;
        urls.push(url);
    }
    // Every node is a voter once /nodes on the first lists them all as voters.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = http
            .get(format!("{}/nodes?ver=2", urls[0]))
            .send()
            .await?
            .json()
            .await?;
        let voters = v["nodes"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|n| n["voter"] == true).count());
        if voters == usize::from(n) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the cluster did not reach {n} voters");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Spawned {
        procs,
        urls,
        _dir: dir,
    })
}

async fn spawn_etcd(n: u16, http: &reqwest::Client) -> anyhow::Result<Spawned> {
    let exe =
        which("etcd").context("the etcd binary is not installed (apt-get install etcd-server)")?;
    let dir = tempfile::Builder::new().prefix("etcd-bench-").tempdir()?;
    let ports: Vec<(u16, u16)> = (0..n)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
        .collect();
    let mut procs = Vec::new();
    let mut urls = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let d = dir.path().join(format!("e{}", i + 1));
        let args = vec![
            format!("--name=e{}", i + 1),
            format!("--data-dir={}", d.display()),
            format!("--listen-client-urls=http://127.0.0.1:{client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster={}", cluster.join(",")),
            "--initial-cluster-state=new".into(),
            "--initial-cluster-token=bench".into(),
        ];
        let env = vec![(
            "ETCD_UNSUPPORTED_ARCH".to_string(),
            std::env::consts::ARCH.to_string(),
        )];
        procs.push(Proc::start(
            &exe,
            args,
            env,
            dir.path().join(format!("e{}.log", i + 1)),
        )?);
        urls.push(format!("http://127.0.0.1:{client}"));
    }
    for u in &urls {
        wait_ok(
            http,
            &format!("{u}/health"),
            "etcd",
            Duration::from_secs(60),
        )
        .await?;
    }
    Ok(Spawned {
        procs,
        urls,
        _dir: dir,
    })
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(bin))
        .find(|p| p.is_file())
}

/// What one run measured.
struct Report {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

async fn measure(driver: &Driver, args: &BenchArgs, value: &str) -> anyhow::Result<Report> {
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let (driver, stop, seq, done, errors) = (
            driver.clone(),
            stop.clone(),
            seq.clone(),
            done.clone(),
            errors.clone(),
        );
        let (workload, value) = (args.workload, value.to_string());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
            while !stop.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match driver.op(workload, client, n, &value).await {
                    Ok(()) => {
                        hist.saturating_record(
                            u64::try_from(t.elapsed().as_micros())
                                .unwrap_or(u64::MAX)
                                .max(1),
                        );
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, anyhow::Error>(hist)
        }));
    }
    let bar = if args.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.duration.as_secs().max(1))
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let deadline = start + args.duration;
    while Instant::now() < deadline {
        tokio::time::sleep(
            Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        let el = start.elapsed().as_secs_f64().max(0.001);
        bar.set_position(start.elapsed().as_secs());
        bar.set_message(format!(
            "{:.0} ops/s, {} errors",
            done.load(Ordering::Relaxed) as f64 / el,
            errors.load(Ordering::Relaxed)
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    bar.finish_and_clear();
    Ok(Report {
        ops: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        hist,
    })
}

fn report_json(args: &BenchArgs, r: &Report) -> Value {
    let ms = |q: f64| r.hist.value_at_quantile(q) as f64 / 1000.0;
    let rows = if args.workload == Workload::Batch {
        BATCH_ROWS as u64
    } else {
        1
    };
    json!({
        "system": format!("{:?}", args.system).to_lowercase(),
        "workload": format!("{:?}", args.workload),
        "clients": args.clients,
        "value_size": args.value_size,
        "duration_s": r.elapsed.as_secs_f64(),
        "ops": r.ops,
        "errors": r.errors,
        "ops_per_s": r.ops as f64 / r.elapsed.as_secs_f64(),
        "rows_per_s": (r.ops * rows) as f64 / r.elapsed.as_secs_f64(),
        "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
        "max_ms": r.hist.max() as f64 / 1000.0,
    })
}

/// Runs `cairn bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.clients.max(16))
        .timeout(Duration::from_secs(10))
        .build()?;
    let value = "x".repeat(args.value_size);
    let mut spawned = match (args.system, args.spawn) {
        (System::Cairn, Some(n)) => Some(spawn_cairn(n, &http).await?),
        (System::Etcd, Some(n)) => Some(spawn_etcd(n, &http).await?),
        _ => None,
    };
    let urls: Vec<String> = match &spawned {
        Some(s) => s.urls.clone(),
        None => args
            .addr
            .iter()
            .map(|a| {
                if a.starts_with("http") {
                    a.clone()
                } else {
                    format!("http://{a}")
                }
            })
            .collect(),
    };
    let tmp = tempfile::tempdir()?;
    let driver = match args.system {
        System::Sqlite => Driver::Sqlite {
            path: args
                .sqlite_path
                .clone()
                .unwrap_or_else(|| tmp.path().join("bench.sqlite")),
        },
        System::Cairn | System::Etcd if urls.is_empty() => bail!("give --addr or --spawn"),
        System::Cairn => Driver::Cairn {
            http: http.clone(),
            urls: Arc::new(urls.clone()),
        },
        System::Etcd => Driver::Etcd {
            http: http.clone(),
            urls: Arc::new(urls.clone()),
        },
    };
    let reads = matches!(
        args.workload,
        Workload::ReadNone | Workload::ReadWeak | Workload::ReadLinearizable | Workload::Mixed
    );
    driver.setup(&value, reads).await?;
    if matches!(args.system, System::Cairn) && reads {
        // Reads at level none on followers need the preloaded rows applied there too.
        for u in &urls {
            wait_ok(
                &http,
                &format!("{u}/readyz?sync"),
                "a replica catching up",
                Duration::from_secs(30),
            )
            .await?;
        }
    }
    if args.workload == Workload::Failover {
        let Some(s) = spawned.as_mut() else {
            bail!("the failover workload needs --spawn N")
        };
        return failover(args.system, &args, &driver, s, &http, &value).await;
    }
    let r = measure(&driver, &args, &value).await?;
    let j = report_json(&args, &r);
    if args.json {
        println!("{j}");
    } else {
        println!(
            "{} {:?} clients={} value={}B: {:.0} ops/s ({:.0} rows/s), p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            j["system"].as_str().unwrap_or(""),
            args.workload,
            args.clients,
            args.value_size,
            j["ops_per_s"].as_f64().unwrap_or(0.0),
            j["rows_per_s"].as_f64().unwrap_or(0.0),
            j["p50_ms"].as_f64().unwrap_or(0.0),
            j["p90_ms"].as_f64().unwrap_or(0.0),
            j["p99_ms"].as_f64().unwrap_or(0.0),
            j["max_ms"].as_f64().unwrap_or(0.0),
            r.errors
        );
    }
    if let Some(s) = spawned.as_mut() {
        stop_all(&mut s.procs);
    }
    Ok(())
}

/// Index of the current leader among the spawned nodes.
async fn find_leader(
    system: System,
    http: &reqwest::Client,
    s: &Spawned,
    skip: Option<usize>,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for (i, u) in s.urls.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            let req = match system {
                System::Cairn => http.get(format!("{u}/status")),
                _ => http
                    .post(format!("{u}/v3/maintenance/status"))
                    .json(&json!({})),
            };
            let Ok(resp) = req.timeout(Duration::from_secs(1)).send().await else {
                continue;
            };
            let Ok(v) = resp.json::<Value>().await else {
                continue;
            };
            let is_leader = match system {
                System::Cairn => v["raft"]["state"] == "Leader",
                _ => v["leader"].is_string() && v["leader"] == v["header"]["member_id"],
            };
            if is_leader {
                return Ok(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("no leader found")
}

async fn failover(
    system: System,
    args: &BenchArgs,
    driver: &Driver,
    s: &mut Spawned,
    http: &reqwest::Client,
    value: &str,
) -> anyhow::Result<()> {
    if system == System::Sqlite {
        bail!("failover needs a cluster");
    }
    let acked = Arc::new(Mutex::new(HashSet::<u64>::new()));
    // (request start, completion) of every acknowledged write, for the time-to-first-ack.
    let acks = Arc::new(Mutex::new(Vec::<(Instant, Instant)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..args.clients.max(1) {
        let (driver, acked, acks, stop, seq, value) = (
            driver.clone(),
            acked.clone(),
            acks.clone(),
            stop.clone(),
            seq.clone(),
            value.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut target = client;
            while !stop.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match driver.op(Workload::Insert, target, n, &value).await {
                    Ok(()) => {
                        let now = Instant::now();
                        acked.lock().unwrap_or_else(|e| e.into_inner()).insert(n);
                        acks.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((t, now));
                    }
                    Err(_) => target += 1,
                }
            }
        }));
    }
    let mut times = Vec::new();
    for trial in 0..args.trials {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let leader = find_leader(system, http, s, None).await?;
        s.procs[leader].kill();
        let killed = Instant::now();
        let deadline = killed + Duration::from_secs(30);
        let first = loop {
            let found = acks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(start, _)| *start > killed)
                .map(|(_, end)| end.duration_since(killed))
                .min();
            if let Some(f) = found {
                break f;
            }
            if Instant::now() > deadline {
                bail!("no write was acknowledged within 30 s of killing the leader");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        times.push(first);
        if !args.json {
            println!(
                "trial {}: killed the leader (node {}); first acknowledged write after {:.0} ms",
                trial + 1,
                leader + 1,
                first.as_secs_f64() * 1000.0
            );
        }
        s.procs[leader].restart()?;
        find_leader(system, http, s, Some(leader)).await?;
        if system == System::Cairn {
            wait_ok(
                http,
                &format!("{}/readyz?sync", s.urls[leader]),
                "the restarted node",
                Duration::from_secs(60),
            )
            .await?;
        } else {
            wait_ok(
                http,
                &format!("{}/health", s.urls[leader]),
                "the restarted member",
                Duration::from_secs(60),
            )
            .await?;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let acked: Vec<u64> = acked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    let lost = count_lost(system, driver, http, &s.urls, &acked).await?;
    let ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let j = json!({
        "system": format!("{system:?}").to_lowercase(),
        "workload": "Failover",
        "clients": args.clients,
        "trials": args.trials,
        "first_ack_ms": ms,
        "max_first_ack_ms": ms.iter().cloned().fold(0.0, f64::max),
        "acknowledged_writes": acked.len(),
        "lost_writes": lost,
    });
    if args.json {
        println!("{j}");
    } else {
        println!("{} failover: first acknowledged write after {:?} ms; {} acknowledged writes, {lost} lost", j["system"].as_str().unwrap_or(""), ms.iter().map(|m| m.round()).collect::<Vec<_>>(), acked.len());
    }
    stop_all(&mut s.procs);
    if lost > 0 {
        bail!("{lost} acknowledged writes were lost");
    }
    Ok(())
}

/// How many acknowledged writes are missing, read at the strongest level.
async fn count_lost(
    system: System,
    driver: &Driver,
    http: &reqwest::Client,
    urls: &[String],
    acked: &[u64],
) -> anyhow::Result<usize> {
    let mut present = HashSet::new();
    match (system, driver) {
        (System::Cairn, _) => {
            for u in urls {
                let r = http
                    .post(format!("{u}/db/query?level=linearizable"))
                    .json(&json!(["SELECT id FROM bench"]))
                    .send()
                    .await;
                let Ok(r) = r else { continue };
                let v: Value = r.json().await?;
                for row in v["results"][0]["values"].as_array().into_iter().flatten() {
                    if let Some(id) = row[0].as_u64() {
                        present.insert(id);
                    }
                }
                break;
            }
        }
        _ => {
            for u in urls {
                let r = http
                    .post(format!("{u}/v3/kv/range"))
                    .json(&json!({"key": b64("bench/"), "range_end": b64("bench0"), "keys_only": true}))
                    .send()
                    .await;
                let Ok(r) = r else { continue };
                let v: Value = r.json().await?;
                for kv in v["kvs"].as_array().into_iter().flatten() {
                    let key = kv["key"]
                        .as_str()
                        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok());
                    if let Some(id) = key
                        .and_then(|k| String::from_utf8(k).ok())
                        .and_then(|k| k.strip_prefix("bench/").and_then(|n| n.parse::<u64>().ok()))
                    {
                        present.insert(id);
                    }
                }
                break;
            }
        }
    }
    Ok(acked
        .iter()
        .filter(|n| !present.contains(&(PRELOAD + 1 + **n)))
        .count())
}
