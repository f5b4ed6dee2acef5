//! The timed run of a workload, and the failover trials (kill the leader, time the first
//! acknowledged write, count lost writes).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use base64::Engine as _;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::drivers::{b64, Driver};
use super::report::{self, Report};
use super::spawn::{find_leader, wait_ok, Spawned};
use super::{BenchArgs, System, Workload, PRELOAD};

pub(super) async fn measure(
    driver: &Driver,
    args: &BenchArgs,
    value: &str,
) -> anyhow::Result<Report> {
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

pub(super) async fn failover(
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
        s.kill(leader)?;
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
        s.restart(leader)?;
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
    report::print_failover(system, args, &times, acked.len(), lost);
    s.stop_all().await;
    if lost > 0 {
        bail!("{lost} acknowledged writes were lost");
    }
    Ok(())
}

/// How many acknowledged writes are missing, read at the strongest level.
pub(super) async fn count_lost(
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
        #[cfg(feature = "etcd-grpc")]
        (_, Driver::EtcdGrpc(etcd)) => {
            for key in etcd.keys("bench/").await? {
                if let Some(id) = key.strip_prefix("bench/").and_then(|n| n.parse().ok()) {
                    present.insert(id);
                }
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
