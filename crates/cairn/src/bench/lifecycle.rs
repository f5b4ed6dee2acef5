//! What a spawned cluster's own work costs its clients: a lone writer's longest stall while
//! the nodes take snapshots (`snapshot-stall`), the time to serve again after a restart
//! (`restart`), and a follower's catch-up by snapshot (`catch-up`). Each first loads
//! `--rows` rows (and reports the load's rows/s), so that snapshots, restarts and catch-up
//! have a database of that size to deal with.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::drivers::{Driver, LOADERS, LOAD_TXN_ROWS};
use super::report::print_object;
use super::spawn::{find_leader, status, wait_ok, Spawned};
use super::{BenchArgs, System, DEFAULT_STALL_SNAPSHOT_THRESHOLD};

/// How often the snapshot watcher reads each node's `/status`: well under the time a
/// snapshot threshold's worth of single-row writes takes, so that no snapshot is missed.
const STATUS_POLL: Duration = Duration::from_millis(100);
/// How often a waiting loop asks again (a read, a `/status`).
const RETRY: Duration = Duration::from_millis(10);
/// How long the nodes may take to serve again after a start before the workload fails.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// How long replicas may take to apply the preloaded rows.
const SYNC_DEADLINE: Duration = Duration::from_secs(300);
/// How long a follower may take to catch up before the workload fails.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(600);
/// Rounds of one snapshot threshold's worth of writes before the catch-up's follower is
/// started again, at least (so that the leader has snapshotted several times) ...
const MIN_COMPACTION_ROUNDS: u64 = 3;
/// ... and at most, while the leader's log is not yet compacted past the follower.
const MAX_COMPACTION_ROUNDS: u64 = 20;
/// Concurrent writers of the catch-up's writes while the follower is down.
const CATCH_UP_WRITERS: usize = 16;
/// Bytes in a megabyte, as `dd` counts them (SI).
const MB: f64 = 1e6;

/// The preload of `--rows` rows and what it took.
struct Load {
    rows: u64,
    took: Duration,
}

impl Load {
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.took.as_secs_f64().max(1e-9)
    }

    /// The load's fields of a JSON report.
    fn json(&self) -> Value {
        json!({
            "rows": self.rows,
            "load_s": self.took.as_secs_f64(),
            "load_rows_per_s": self.rows_per_s(),
            "load_txn_rows": LOAD_TXN_ROWS,
            "loaders": LOADERS,
        })
    }
}

/// Loads `--rows` rows through `url` (the leader; ignored for SQLite), then, on a
/// cluster, waits until every node has applied them (`/readyz?sync`).
async fn preload(
    args: &BenchArgs,
    driver: &Driver,
    http: &reqwest::Client,
    url: &str,
    urls: &[String],
    value: &str,
) -> anyhow::Result<Load> {
    let rows = args.rows();
    if !args.json {
        eprintln!("loading {rows} rows");
    }
    let took = driver.load(url, rows, value).await.context("the preload")?;
    for u in urls {
        wait_ok(
            http,
            &format!("{u}/readyz?sync"),
            "a replica applying the preload",
            SYNC_DEADLINE,
        )
        .await?;
    }
    Ok(Load { rows, took })
}

/// `JSON object a` with the fields of `b` added.
fn merged(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Every node's `raft.snapshot_index` (`None`: no snapshot yet, or no answer).
async fn snapshot_indexes(http: &reqwest::Client, urls: &[String]) -> Vec<Option<u64>> {
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        out.push(
            status(http, u)
                .await
                .and_then(|s| s["raft"]["snapshot_index"].as_u64()),
        );
    }
    out
}

/// Reads `/status` of every node every [`STATUS_POLL`] until `stop`, and counts for each
/// node how often its snapshot index changed: the snapshots it took (or installed).
fn watch_snapshots(
    http: reqwest::Client,
    urls: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut last = snapshot_indexes(&http, &urls).await;
        let mut changes = vec![0u64; urls.len()];
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(STATUS_POLL).await;
            for (i, now) in snapshot_indexes(&http, &urls).await.into_iter().enumerate() {
                // A node that did not answer keeps its last index.
                if now.is_some() && now != last[i] {
                    changes[i] += 1;
                    last[i] = now;
                }
            }
        }
        changes
    })
}

/// `snapshot-stall`: preloads `--rows` rows, then one writer inserts single rows through
/// the leader for `--duration` while the nodes snapshot every `--spawn-snapshot-threshold`
/// entries. Reports the longest gap between two acknowledged writes, the latency, and the
/// snapshots each node took. With `spawned` `None` (SQLite), the same load and writer on
/// one file, where WAL checkpoints are the pauses.
pub(super) async fn snapshot_stall(
    args: &BenchArgs,
    driver: &Driver,
    spawned: Option<&mut Spawned>,
    http: &reqwest::Client,
    value: &str,
) -> anyhow::Result<()> {
    let (url, urls) = match spawned {
        Some(s) => {
            let leader = find_leader(System::Cairn, http, s, None).await?;
            (s.urls[leader].clone(), s.urls.clone())
        }
        None => (String::new(), Vec::new()),
    };
    let load = preload(args, driver, http, &url, &urls, value).await?;
    let before = snapshot_indexes(http, &urls).await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_snapshots(http.clone(), urls.clone(), stop.clone());

    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut ops, mut errors) = (0u64, 0u64);
    let mut max_gap = Duration::ZERO;
    let mut last_ack: Option<Instant> = None;
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut id = load.rows;
    while Instant::now() < deadline {
        id += 1;
        let t = Instant::now();
        match driver.insert_at(&url, id, value).await {
            Ok(()) => {
                let now = Instant::now();
                hist.saturating_record(
                    u64::try_from((now - t).as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
                if let Some(prev) = last_ack {
                    max_gap = max_gap.max(now - prev);
                }
                last_ack = Some(now);
                ops += 1;
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let snapshots = watcher.await.unwrap_or_default();
    let after = snapshot_indexes(http, &urls).await;

    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let cluster = !urls.is_empty();
    let j = merged(
        json!({
            "system": args.system.name(),
            "workload": "SnapshotStall",
            "clients": 1,
            "value_size": args.value_size,
            "snapshot_threshold": if cluster { json!(args.snapshot_threshold()) } else { Value::Null },
            "duration_s": elapsed.as_secs_f64(),
            "ops": ops,
            "errors": errors,
            "ops_per_s": ops as f64 / elapsed.as_secs_f64(),
            "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
            "max_ms": hist.max() as f64 / 1000.0,
            "max_gap_ms": max_gap.as_secs_f64() * 1000.0,
            "snapshots": if cluster { json!(snapshots) } else { Value::Null },
            "snapshot_index_before": if cluster { json!(before) } else { Value::Null },
            "snapshot_index_after": if cluster { json!(after) } else { Value::Null },
        }),
        load.json(),
    );
    let snaps = if cluster {
        format!(", snapshots per node {snapshots:?}")
    } else {
        String::new()
    };
    let line = format!(
        "{} SnapshotStall rows={}: load {:.0} rows/s ({:.1} s); one writer {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, longest gap between acknowledged writes {:.1} ms{snaps}, {errors} errors",
        args.system.name(),
        load.rows,
        load.rows_per_s(),
        load.took.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64(),
        ms(0.5),
        ms(0.99),
        hist.max() as f64 / 1000.0,
        max_gap.as_secs_f64() * 1000.0,
    );
    print_object(args, &j, &line);
    Ok(())
}

/// Waits until one of `urls` answers a read of row `id` at `level` (`none`,
/// `linearizable`) with the row; returns the time since `since`.
async fn wait_read(
    http: &reqwest::Client,
    urls: &[String],
    id: u64,
    level: &str,
    since: Instant,
    what: &str,
) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + START_DEADLINE;
    let body = json!([["SELECT v FROM bench WHERE id = ?", id]]);
    while Instant::now() < deadline {
        for u in urls {
            let r = http
                .post(format!("{u}/db/query?level={level}"))
                .json(&body)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            let Ok(r) = r else { continue };
            if !r.status().is_success() {
                continue;
            }
            let Ok(v) = r.json::<Value>().await else {
                continue;
            };
            if v["results"][0]["values"]
                .as_array()
                .is_some_and(|rows| !rows.is_empty())
            {
                return Ok(since.elapsed());
            }
        }
        tokio::time::sleep(RETRY).await;
    }
    bail!("{what}: no read of row {id} at level {level} within {START_DEADLINE:?}")
}

/// Waits until every node answers `/readyz?sync` (ready, and has applied what the
/// leader committed when it was asked).
async fn wait_all_synced(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<()> {
    for u in urls {
        wait_ok(
            http,
            &format!("{u}/readyz?sync"),
            "a node after its start",
            START_DEADLINE,
        )
        .await?;
    }
    Ok(())
}

/// `restart`: preloads `--rows` rows; (a) stops every node with SIGTERM, starts them all
/// again and times from the start of the processes to the first linearizable read of a
/// preloaded row; (b) writes one row, SIGKILLs a follower, starts it, and times until it
/// reads that row at level none.
pub(super) async fn restart(
    args: &BenchArgs,
    driver: &Driver,
    s: &mut Spawned,
    http: &reqwest::Client,
    value: &str,
) -> anyhow::Result<()> {
    let leader = find_leader(System::Cairn, http, s, None).await?;
    let urls = s.urls.clone();
    let load = preload(args, driver, http, &urls[leader], &urls, value).await?;

    // (a) The whole cluster, stopped in order and started again.
    s.stop_all().await;
    let started = Instant::now();
    for i in 0..s.len() {
        s.restart(i)?;
    }
    let all = wait_read(
        http,
        &urls,
        load.rows,
        "linearizable",
        started,
        "the restarted cluster",
    )
    .await?;
    wait_all_synced(http, &urls).await?;

    // (b) One follower, killed and started again.
    let leader = find_leader(System::Cairn, http, s, None).await?;
    let follower = (leader + 1) % s.len();
    let marker = load.rows + 1;
    driver
        .insert_at(&urls[leader], marker, value)
        .await
        .context("the write before the kill")?;
    s.kill(follower)?;
    let started = Instant::now();
    s.restart(follower)?;
    let one = wait_read(
        http,
        &urls[follower..=follower],
        marker,
        "none",
        started,
        "the restarted follower",
    )
    .await?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let j = merged(
        json!({
            "system": args.system.name(),
            "workload": "Restart",
            "clients": 1,
            "value_size": args.value_size,
            "nodes": s.len(),
            "restart_all_first_linearizable_read_ms": ms(all),
            "follower_kill_restart_read_ms": ms(one),
        }),
        load.json(),
    );
    let line = format!(
        "{} Restart rows={}: load {:.0} rows/s; all {} nodes stopped and started: first linearizable read after {:.0} ms; a follower SIGKILLed and started: reads the last row written after {:.0} ms",
        args.system.name(),
        load.rows,
        load.rows_per_s(),
        s.len(),
        ms(all),
        ms(one),
    );
    print_object(args, &j, &line);
    Ok(())
}

/// `count` single-row inserts of ids from `first` on, through `url`, from
/// [`CATCH_UP_WRITERS`] concurrent writers; returns how many failed.
async fn write_rows(driver: &Driver, url: &str, first: u64, count: u64, value: &str) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CATCH_UP_WRITERS {
        let (driver, url, value, next, failed) = (
            driver.clone(),
            url.to_string(),
            value.to_string(),
            next.clone(),
            failed.clone(),
        );
        tasks.spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= count {
                    return;
                }
                if driver.insert_at(&url, first + k, &value).await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    failed.load(Ordering::Relaxed)
}

/// A `/status` field under `raft` as a number (`None` before the first entry, or no
/// answer).
async fn raft_index(http: &reqwest::Client, url: &str, field: &str) -> Option<u64> {
    status(http, url)
        .await
        .and_then(|s| s["raft"][field].as_u64())
}

/// `catch-up`: preloads `--rows` rows, stops a follower (SIGTERM), writes single rows in
/// rounds of one snapshot threshold until the leader has purged its log past the
/// follower's last entry (at least [`MIN_COMPACTION_ROUNDS`]), starts the follower and
/// times until its applied index reaches the leader's. Reports the leader's databases'
/// size (what the snapshot carries) over that time in MB/s.
pub(super) async fn catch_up(
    args: &BenchArgs,
    driver: &Driver,
    s: &mut Spawned,
    http: &reqwest::Client,
    value: &str,
) -> anyhow::Result<()> {
    let leader = find_leader(System::Cairn, http, s, None).await?;
    let urls = s.urls.clone();
    let load = preload(args, driver, http, &urls[leader], &urls, value).await?;
    let threshold = args
        .snapshot_threshold()
        .unwrap_or(DEFAULT_STALL_SNAPSHOT_THRESHOLD);

    let leader = find_leader(System::Cairn, http, s, None).await?;
    let follower = (leader + 1) % s.len();
    let (lurl, furl) = (urls[leader].clone(), urls[follower].clone());
    let follower_status = status(http, &furl)
        .await
        .context("the follower's /status before it is stopped")?;
    let follower_last_log = follower_status["raft"]["last_log_index"]
        .as_u64()
        .unwrap_or(0);
    let snapshot_before = follower_status["raft"]["snapshot_index"].as_u64();
    s.stop(follower).await?;

    let (mut written, mut failed) = (0u64, 0u64);
    let mut compacted = false;
    for round in 1..=MAX_COMPACTION_ROUNDS {
        failed += write_rows(driver, &lurl, load.rows + 1 + written, threshold, value).await;
        written += threshold;
        let purged = raft_index(http, &lurl, "purged_index").await;
        compacted = purged.is_some_and(|p| p > follower_last_log);
        if compacted && round >= MIN_COMPACTION_ROUNDS {
            break;
        }
    }
    let leader_status = status(http, &lurl)
        .await
        .context("the leader's /status after the writes")?;
    let target = leader_status["raft"]["applied_index"].as_u64().unwrap_or(0);
    let bytes: u64 = leader_status["store"]["databases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["size_bytes"].as_u64())
        .sum();

    let started = Instant::now();
    s.restart(follower)?;
    let deadline = started + CATCH_UP_DEADLINE;
    let took = loop {
        if raft_index(http, &furl, "applied_index")
            .await
            .is_some_and(|a| a >= target)
        {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!("the follower did not reach applied index {target} within {CATCH_UP_DEADLINE:?}");
        }
        tokio::time::sleep(RETRY).await;
    };
    let snapshot_after = raft_index(http, &furl, "snapshot_index").await;
    let installed = snapshot_after.is_some() && snapshot_after != snapshot_before;
    let mb_per_s = bytes as f64 / MB / took.as_secs_f64().max(1e-9);

    let j = merged(
        json!({
            "system": args.system.name(),
            "workload": "CatchUp",
            "clients": 1,
            "value_size": args.value_size,
            "snapshot_threshold": threshold,
            "written_while_down": written,
            "failed_writes": failed,
            "log_compacted_past_follower": compacted,
            "leader_applied_index": target,
            "catch_up_ms": took.as_secs_f64() * 1000.0,
            "snapshot_bytes": bytes,
            "mb_per_s": mb_per_s,
            "follower_snapshot_index_before": snapshot_before,
            "follower_snapshot_index_after": snapshot_after,
            "follower_installed_snapshot": installed,
        }),
        load.json(),
    );
    let line = format!(
        "{} CatchUp rows={}: load {:.0} rows/s; {written} rows written while a follower was down (log compacted past it: {compacted}); it reached applied index {target} {:.0} ms after its start (snapshot installed: {installed}): {bytes} bytes, {mb_per_s:.1} MB/s",
        args.system.name(),
        load.rows,
        load.rows_per_s(),
        took.as_secs_f64() * 1000.0,
    );
    print_object(args, &j, &line);
    Ok(())
}
