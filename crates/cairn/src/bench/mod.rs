//! `cairn bench`: drives a Cairn cluster, a single SQLite file or an etcd cluster with the
//! same workload from concurrent clients, and reports throughput and latency percentiles
//! (HDR histogram). Speed is measured here, never asserted in tests.
//!
//! - `drivers.rs`: one client operation per system (Cairn's rqlite API, SQLite alone, etcd's
//!   JSON gateway), and the bulk load of `--rows` rows.
//! - `etcd_grpc.rs`: etcd through its gRPC API (the `etcd-grpc` feature).
//! - `spawn.rs`: local clusters for `--spawn` (Cairn's through `cairn_launch`, etcd's).
//! - `measure.rs`: the timed run and the failover trials.
//! - `lifecycle.rs`: what a spawned cluster's snapshots, restarts and catch-up cost.
//! - `report.rs`: the one-line table and the JSON objects printed.

mod drivers;
#[cfg(feature = "etcd-grpc")]
mod etcd_grpc;
mod lifecycle;
mod measure;
mod report;
mod spawn;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};

use drivers::Driver;
use spawn::{spawn_cairn, spawn_etcd, wait_ok};

/// Rows (or keys) loaded before read workloads; reads pick one at random.
const PRELOAD: u64 = 1000;
/// Rows per request in the `batch` workload.
const BATCH_ROWS: usize = 100;
/// `--rows` of the workloads that preload a table (snapshot-stall, restart, catch-up).
const DEFAULT_ROWS: u64 = 1_000_000;
/// `--spawn-snapshot-threshold` of the snapshot-stall and catch-up workloads.
const DEFAULT_STALL_SNAPSHOT_THRESHOLD: u64 = 1000;

/// Why `--system etcd-grpc` fails in a build without the `etcd-grpc` feature.
const NO_ETCD_GRPC: &str = "--system etcd-grpc is not in this build of cairn: build it with \
     `cargo build --release -p cairn --features etcd-grpc`";

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
    /// Preloads --rows rows, then one writer inserts single rows for --duration while the
    /// nodes take snapshots (a small --spawn-snapshot-threshold): the longest gap between
    /// two acknowledged writes, and the snapshots taken. Cairn with --spawn, or SQLite.
    SnapshotStall,
    /// Preloads --rows rows, stops every node (SIGTERM) and starts them again: time to the
    /// first linearizable read; then SIGKILLs a follower and starts it: time to its first
    /// read of the last row written (Cairn with --spawn).
    Restart,
    /// Preloads --rows rows, stops a follower, writes until the leader's log is compacted
    /// past it, starts it: time until it has applied what the leader has, and the snapshot's
    /// MB/s (Cairn with --spawn).
    CatchUp,
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
    /// etcd v3 through its native gRPC API (needs a cairn built with `--features
    /// etcd-grpc`).
    EtcdGrpc,
}

impl System {
    /// The name on the command line and in the JSON output: `cairn`, `etcd-grpc`.
    pub fn name(self) -> &'static str {
        match self {
            System::Cairn => "cairn",
            System::Sqlite => "sqlite",
            System::Etcd => "etcd",
            System::EtcdGrpc => "etcd-grpc",
        }
    }
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
    /// Rows preloaded (100-byte values by default) by the snapshot-stall, restart and
    /// catch-up workloads, in transactions of 1,000 rows from 4 concurrent loaders
    /// [default: 1000000].
    #[arg(long)]
    pub rows: Option<u64>,
    /// With --spawn (Cairn): each node takes a snapshot every N log entries
    /// (`cairn start --snapshot-threshold N`) [default: 1000 for snapshot-stall and
    /// catch-up, the server's own otherwise].
    #[arg(long)]
    pub spawn_snapshot_threshold: Option<u64>,
    /// SQLite file for --system sqlite (a temporary one by default).
    #[arg(long)]
    pub sqlite_path: Option<PathBuf>,
    /// Print one JSON object per run instead of a table.
    #[arg(long)]
    pub json: bool,
    /// HTTP Basic credentials for every request (`USER:PASSWORD`), for nodes with --auth.
    #[arg(long)]
    pub user: Option<String>,
    /// The CA to trust for https:// nodes (PEM).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// With --spawn (Cairn): HTTPS on every node and mutual TLS between them, from a
    /// throw-away CA, as `cairn demo --tls`.
    #[arg(long)]
    pub spawn_tls: bool,
    /// With --spawn (Cairn): nodes with --auth, and every request authenticated as an
    /// administrator whose password is an argon2id hash, as `cairn demo --auth`.
    #[arg(long)]
    pub spawn_auth: bool,
}

impl BenchArgs {
    /// `--rows`, or its default.
    fn rows(&self) -> u64 {
        self.rows.unwrap_or(DEFAULT_ROWS)
    }

    /// `--spawn-snapshot-threshold`, or the workload's default (`None`: the server's).
    fn snapshot_threshold(&self) -> Option<u64> {
        self.spawn_snapshot_threshold.or(match self.workload {
            Workload::SnapshotStall | Workload::CatchUp => Some(DEFAULT_STALL_SNAPSHOT_THRESHOLD),
            _ => None,
        })
    }
}

/// Runs `cairn bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if args.system == System::EtcdGrpc && !cfg!(feature = "etcd-grpc") {
        bail!(NO_ETCD_GRPC);
    }
    let lifecycle = matches!(
        args.workload,
        Workload::SnapshotStall | Workload::Restart | Workload::CatchUp
    );
    if lifecycle {
        let sqlite = args.workload == Workload::SnapshotStall && args.system == System::Sqlite;
        let cluster = args.system == System::Cairn && args.spawn.is_some();
        if !(sqlite || cluster) {
            bail!(
                "the {:?} workload needs --system cairn --spawn N{}",
                args.workload,
                if args.workload == Workload::SnapshotStall {
                    " (or --system sqlite)"
                } else {
                    ""
                }
            );
        }
        if args.rows() == 0 {
            bail!("--rows must be at least 1");
        }
    }
    if args.spawn_snapshot_threshold == Some(0) {
        bail!("--spawn-snapshot-threshold must be at least 1");
    }
    if (args.spawn_tls || args.spawn_auth)
        && !(args.system == System::Cairn && args.spawn.is_some())
    {
        bail!("--spawn-tls and --spawn-auth go with --system cairn --spawn N");
    }
    let builder = || {
        reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(args.clients.max(16))
            .timeout(Duration::from_secs(10))
    };
    let given = match args.user.as_deref().map(|u| u.split_once(':')) {
        Some(Some(pair)) => Some(pair),
        Some(None) => bail!("--user takes USER:PASSWORD"),
        None => None,
    };
    let mut http = crate::secure::client(builder(), args.cacert.as_deref(), given)?;
    let value = "x".repeat(args.value_size);
    let mut spawned = match (args.system, args.spawn) {
        (System::Cairn, Some(n)) => {
            let extra = match args.snapshot_threshold() {
                Some(t) => vec!["--snapshot-threshold".to_string(), t.to_string()],
                None => Vec::new(),
            };
            let (spawned, secured) = spawn_cairn(n, args.spawn_tls, args.spawn_auth, extra).await?;
            http = secured.client(builder())?;
            Some(spawned)
        }
        (System::Etcd | System::EtcdGrpc, Some(n)) => Some(spawn_etcd(n, &http).await?),
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
        System::Cairn | System::Etcd | System::EtcdGrpc if urls.is_empty() => {
            bail!("give --addr or --spawn")
        }
        System::Cairn => Driver::Cairn {
            http: http.clone(),
            urls: Arc::new(urls.clone()),
        },
        System::Etcd => Driver::Etcd {
            http: http.clone(),
            urls: Arc::new(urls.clone()),
        },
        #[cfg(feature = "etcd-grpc")]
        System::EtcdGrpc => {
            Driver::EtcdGrpc(etcd_grpc::EtcdGrpc::connect(&urls, args.clients).await?)
        }
        #[cfg(not(feature = "etcd-grpc"))]
        System::EtcdGrpc => bail!(NO_ETCD_GRPC),
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
        return measure::failover(args.system, &args, &driver, s, &http, &value).await;
    }
    if lifecycle {
        let r = match (args.workload, spawned.as_mut()) {
            (Workload::SnapshotStall, s) => {
                lifecycle::snapshot_stall(&args, &driver, s, &http, &value).await
            }
            (Workload::Restart, Some(s)) => {
                lifecycle::restart(&args, &driver, s, &http, &value).await
            }
            (_, Some(s)) => lifecycle::catch_up(&args, &driver, s, &http, &value).await,
            (_, None) => bail!("the {:?} workload needs --spawn N", args.workload),
        };
        if let Some(s) = spawned.as_mut() {
            s.stop_all().await;
        }
        return r;
    }
    let r = measure::measure(&driver, &args, &value).await?;
    report::print_run(&args, &r);
    if let Some(s) = spawned.as_mut() {
        s.stop_all().await;
    }
    Ok(())
}
