//! One fault-injection run, end to end: a cluster behind proxies, the register and bank
//! workloads, the nemesis, then the checks, a report, and on failure a saved history.
//!
//! ```text
//! start cluster -> create tables -> clients run ----------------------------------> stop
//!                                   nemesis: gap, fault, heal, gap, fault, heal ... heal all
//!                                   -> wait for successful operations after the heal
//! -> final reads -> replicas converge? -> registers linearizable? bank total constant?
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::Cluster;
use crate::history::{Completion, Invocation, OpRecord, Outcome};
use crate::http::Level;
use crate::linearizability::{check_registers, KeyVerdict, Limits, Verdict};
use crate::nemesis::{FaultKind, Nemesis, NemesisOptions};
use crate::process_cluster::{ClusterOptions, ProcessCluster};
use crate::proxy::ProxyStats;
use crate::wait::{try_wait_for, wait_for};
use crate::workload::{check_bank, create_tables, BankCheck, RunUntil, Workload, WorkloadOptions};
use crate::CATCH_UP_TIMEOUT;

/// How long the cluster gets, after the last fault is healed, to serve
/// [`RECOVERY_OPS`] successful operations of each workload.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Successful operations of each workload wanted after the last heal.
const RECOVERY_OPS: usize = 10;

/// How long the final reads may take.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct FaultRunOptions {
    /// Seeds the nemesis and the clients' choices. Printed with the report.
    pub seed: u64,
    /// Nodes in the cluster. Default 3.
    pub nodes: usize,
    /// How long faults are injected. Default 20 s.
    pub duration: Duration,
    /// `--snapshot-threshold`, to make restarted nodes catch up from snapshots. Default
    /// `None` (the server's).
    pub snapshot_threshold: Option<u64>,
    /// The fault kinds. Default [`FaultKind::ALL`].
    pub kinds: Vec<FaultKind>,
    /// The clients.
    pub workload: WorkloadOptions,
    /// Bounds on the linearizability search, per register.
    pub limits: Limits,
    /// Where a failing run's report (history, schedule, verdicts) and node logs are copied,
    /// e.g. `target/fault-reports`.
    pub report_dir: PathBuf,
}

impl FaultRunOptions {
    /// The defaults for `seed`, saving failing reports to `report_dir`.
    pub fn new(seed: u64, report_dir: impl Into<PathBuf>) -> Self {
        FaultRunOptions {
            seed,
            nodes: 3,
            duration: Duration::from_secs(20),
            snapshot_threshold: None,
            kinds: FaultKind::ALL.to_vec(),
            workload: WorkloadOptions::default(),
            limits: Limits::default(),
            report_dir: report_dir.into(),
        }
    }
}

/// Operations by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    /// [`Outcome::Ok`].
    pub ok: usize,
    /// [`Outcome::Fail`].
    pub fail: usize,
    /// [`Outcome::Unknown`].
    pub unknown: usize,
}

impl OutcomeCounts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }

    /// All operations.
    pub fn total(&self) -> usize {
        self.ok + self.fail + self.unknown
    }
}

impl fmt::Display for OutcomeCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} ok, {} fail, {} unknown)",
            self.total(),
            self.ok,
            self.fail,
            self.unknown
        )
    }
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    /// The seed.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Wall-clock time from the moment the cluster was up to the report, in seconds.
    pub seconds: f64,
    /// Register operations by outcome.
    pub register_ops: OutcomeCounts,
    /// Bank operations by outcome.
    pub bank_ops: OutcomeCounts,
    /// Operations that were not ok, by outcome and reason (e.g. `unknown: HTTP 503
    /// unavailable`, `fail: connection refused`).
    pub not_ok: BTreeMap<String, usize>,
    /// Faults started, by kind.
    pub faults: BTreeMap<FaultKind, usize>,
    /// What the proxies did.
    pub proxies: ProxyStats,
    /// The verdict on each register.
    pub registers: Vec<KeyVerdict>,
    /// The bank's invariants.
    pub bank: BankCheck,
    /// Safety violations: non-linearizable registers, bank anomalies, replicas that
    /// disagree after the run.
    pub anomalies: Vec<String>,
    /// Registers the checker could not decide within its limits.
    pub undecided: Vec<String>,
    /// Things that went wrong during the run without being a safety violation: a node not
    /// ready after its restart, no service after the heal, a final read that never
    /// succeeded.
    pub errors: Vec<String>,
    /// Where the full report was copied, when the run failed.
    pub saved: Option<PathBuf>,
}

impl FaultReport {
    /// Whether the run found nothing wrong: no anomaly, no undecided register, no error.
    pub fn passed(&self) -> bool {
        self.anomalies.is_empty() && self.undecided.is_empty() && self.errors.is_empty()
    }
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fault run: seed {}, {} nodes, {:.1} s",
            self.seed, self.nodes, self.seconds
        )?;
        writeln!(f, "  register operations: {}", self.register_ops)?;
        writeln!(
            f,
            "  bank operations:     {} ({} transfers moved money, {} refused for lack of funds, {} totals read)",
            self.bank_ops, self.bank.moved, self.bank.refused, self.bank.totals_read
        )?;
        let reasons: Vec<String> = self
            .not_ok
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        writeln!(f, "  not ok, by reason:   {}", reasons.join(", "))?;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "  faults injected:     {} ({})",
            self.faults.values().sum::<usize>(),
            faults.join(", ")
        )?;
        let p = &self.proxies;
        writeln!(
            f,
            "  raft connections:    {} forwarded, {} dropped by cuts, {} refused, {} blackholed",
            p.forwarded, p.dropped, p.refused, p.blackholed
        )?;
        for k in &self.registers {
            let v = match &k.result.verdict {
                Verdict::Linearizable => "linearizable".to_string(),
                Verdict::NotLinearizable(_) => "NOT LINEARIZABLE".to_string(),
                Verdict::Undecided { reason } => format!("undecided ({reason})"),
            };
            writeln!(
                f,
                "  register {}: {} operations ({} unknown) {v}, {} steps in {} ms",
                k.key, k.ops, k.unknown, k.result.steps, k.result.millis
            )?;
        }
        writeln!(f, "  anomalies: {}", self.anomalies.len())?;
        for a in &self.anomalies {
            writeln!(f, "    - {a}")?;
        }
        for u in &self.undecided {
            writeln!(f, "  undecided: {u}")?;
        }
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        if let Some(p) = &self.saved {
            writeln!(f, "  report saved to {}", p.display())?;
        }
        Ok(())
    }
}

/// Sets the flag when dropped, so that clients stop also when the nemesis panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs one fault test of the `cairn` binary at `bin` as `opts` says, and returns its
/// report; see the module docs. A run that fails its checks saves its report (history,
/// fault schedule, verdicts) and the nodes' logs under `opts.report_dir`.
///
/// # Errors
/// Only when the cluster cannot be set up; everything that goes wrong later is in the
/// report.
pub fn run_faults(bin: impl AsRef<Path>, opts: &FaultRunOptions) -> Result<FaultReport> {
    eprintln!(
        "fault run: seed {}, {} nodes, faults for {:?}",
        opts.seed, opts.nodes, opts.duration
    );
    let mut c = ProcessCluster::start_with(
        bin,
        ClusterOptions {
            nodes: opts.nodes,
            snapshot_threshold: opts.snapshot_threshold,
            raft_proxies: true,
            ..ClusterOptions::default()
        },
    )?;
    let started = Instant::now();
    if let Err(e) = c
        .leader()
        .and_then(|leader| create_tables(&c, leader, &opts.workload))
    {
        c.dump_logs();
        return Err(e);
    }
    let urls: Vec<String> = (0..c.node_count()).map(|i| c.url(i)).collect();
    let workload = Workload::new(opts.workload.clone(), urls);
    let mut nemesis = Nemesis::new(
        NemesisOptions {
            kinds: opts.kinds.clone(),
            ..NemesisOptions::new(opts.seed)
        },
        c.proxies(),
        workload.history().origin(),
    )?;
    let mut errors = Vec::new();

    let stop = AtomicBool::new(false);
    let faults_end = Instant::now() + opts.duration;
    let until = RunUntil {
        stop: &stop,
        deadline: faults_end + RECOVERY_TIMEOUT + Duration::from_secs(10),
    };
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let w = &workload;
        let o = &opts.workload;
        let mut process = 0;
        let mut spawn = |f: fn(&Workload, usize, u64, RunUntil<'_>) -> Result<()>| {
            let p = process;
            process += 1;
            let seed = opts.seed.wrapping_mul(1000).wrapping_add(p as u64);
            s.spawn(move || {
                if let Err(e) = f(w, p, seed, until) {
                    eprintln!("client {p}: {e:#}");
                }
            });
        };
        for _ in 0..o.register_clients {
            spawn(Workload::run_register_client);
        }
        for _ in 0..o.transfer_clients {
            spawn(Workload::run_transfer_client);
        }
        for _ in 0..o.total_readers {
            spawn(Workload::run_total_reader);
        }

        if let Err(e) = nemesis.run(&mut c, faults_end) {
            errors.push(format!("nemesis: {e:#}"));
        }
        if let Err(e) = nemesis.heal(&mut c) {
            errors.push(format!("healing: {e:#}"));
        }
        // The cluster must serve again: wait for successful operations of every workload
        // invoked after the heal.
        let healed = workload.history().now_ns();
        let h = workload.history();
        let recovered = wait_for(
            RECOVERY_TIMEOUT,
            "successful operations after the heal",
            || {
                let reg = h.count_since(healed, Outcome::Ok, Invocation::is_register);
                let transfers = h.count_since(healed, Outcome::Ok, |i| {
                    matches!(i, Invocation::Transfer { .. })
                });
                let totals = h.count_since(healed, Outcome::Ok, |i| *i == Invocation::ReadTotal);
                let want = |clients: usize| if clients == 0 { 0 } else { RECOVERY_OPS };
                if reg >= want(o.register_clients)
                    && transfers >= want(o.transfer_clients)
                    && totals >= want(o.total_readers)
                {
                    Ok(())
                } else {
                    Err(format!(
                    "{reg} register operations, {transfers} transfers, {totals} totals ok since the heal"
                ))
                }
            },
        );
        if let Err(e) = recovered {
            errors.push(format!("no service after the faults healed: {e:#}"));
        }
        stop.store(true, Ordering::Relaxed);
    });

    let final_process = opts.workload.register_clients
        + opts.workload.transfer_clients
        + opts.workload.total_readers;
    if let Err(e) = workload.final_reads(final_process, FINAL_READ_TIMEOUT) {
        errors.push(format!("final reads: {e:#}"));
    }
    let mut anomalies = Vec::new();
    match replicas_agree(&c) {
        Ok(None) => {}
        Ok(Some(diff)) => anomalies.push(diff),
        Err(e) => errors.push(format!("comparing replicas: {e:#}")),
    }

    let history = workload.history().ops();
    let mut register_ops = OutcomeCounts::default();
    let mut bank_ops = OutcomeCounts::default();
    let mut not_ok = BTreeMap::new();
    for op in &history {
        if op.outcome != Outcome::Ok {
            *not_ok.entry(reason(op)).or_insert(0) += 1;
        }
        if op.invocation.is_register() {
            register_ops.add(op.outcome);
        } else {
            bank_ops.add(op.outcome);
        }
    }
    let mut undecided = Vec::new();
    let registers = match check_registers(&history, opts.limits) {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("the history is malformed: {e}"));
            Vec::new()
        }
    };
    for k in &registers {
        match &k.result.verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(cx) => {
                let by_index = |i: usize| history.get(i).map_or(format!("#{i}"), describe_op);
                let state = match cx.state {
                    Some(v) if Some(v) == k.unobserved => "a value no one read".to_string(),
                    Some(v) => v.to_string(),
                    None => "no row".to_string(),
                };
                let last: Vec<String> = cx.prefix[cx.prefix.len().saturating_sub(3)..]
                    .iter()
                    .map(|&i| by_index(i))
                    .collect();
                anomalies.push(format!(
                    "register {} is not linearizable: {} cannot take effect before it returns. The longest linearizable prefix has {} operations, ending with [{}], after which the register holds {state}; operations concurrent with it: {:?}",
                    k.key,
                    by_index(cx.stuck),
                    cx.prefix.len(),
                    last.join("; "),
                    cx.concurrent
                ));
            }
            Verdict::Undecided { reason } => {
                undecided.push(format!("register {}: {reason}", k.key));
            }
        }
    }
    let bank = check_bank(&history, opts.workload.accounts, opts.workload.total());
    anomalies.extend(bank.anomalies.iter().cloned());

    let mut report = FaultReport {
        seed: opts.seed,
        nodes: opts.nodes,
        seconds: started.elapsed().as_secs_f64(),
        register_ops,
        bank_ops,
        not_ok,
        faults: nemesis.counts(),
        proxies: c.proxies().map(|p| p.stats()).unwrap_or_default(),
        registers,
        bank,
        anomalies,
        undecided,
        errors,
        saved: None,
    };
    let full = json!({
        "summary": &report,
        "options": {
            "seed": opts.seed,
            "nodes": opts.nodes,
            "duration_s": opts.duration.as_secs_f64(),
            "snapshot_threshold": opts.snapshot_threshold,
            "kinds": &opts.kinds,
        },
        "schedule": nemesis.events(),
        "history": &history,
    });
    let name = format!("fault-report-seed-{}", opts.seed);
    let local = c.dir().join(format!("{name}.json"));
    if let Err(e) = write_json(&local, &full) {
        report
            .errors
            .push(format!("writing {}: {e:#}", local.display()));
    }
    if !report.passed() {
        match save(&c, &local, &opts.report_dir, &name) {
            Ok(path) => report.saved = Some(path),
            Err(e) => report.errors.push(format!("saving the report: {e:#}")),
        }
    }
    drop(nemesis);
    Ok(report)
}

/// An operation in a line: `#89 (process 1 -> node 2) read 3 = 15 [0.274 s, 0.285 s]`.
fn describe_op(op: &OpRecord) -> String {
    let what = match (&op.invocation, &op.completion) {
        (Invocation::Read { key }, Some(Completion::Value { value })) => match value {
            Some(v) => format!("read {key} = {v}"),
            None => format!("read {key} = no row"),
        },
        (Invocation::Read { key }, _) => format!("read {key}"),
        (Invocation::Write { key, value }, _) => format!("write {key} := {value}"),
        (Invocation::Cas { key, expected, new }, c) => {
            let r = match c {
                Some(Completion::Swapped { swapped: true }) => " swapped",
                Some(Completion::Swapped { swapped: false }) => " not swapped",
                _ => "",
            };
            format!("cas {key} {expected} -> {new}{r}")
        }
        (inv, _) => format!("{inv:?}"),
    };
    let secs = |ns: u64| Duration::from_nanos(ns).as_secs_f64();
    let ret = if op.outcome == Outcome::Unknown {
        "?".to_string()
    } else {
        format!("{:.3} s", secs(op.return_ns))
    };
    format!(
        "#{} (process {} -> node {}) {what} {} [{:.3} s, {ret}]",
        op.index,
        op.process,
        op.node + 1,
        op.outcome.as_str(),
        secs(op.call_ns)
    )
}

/// A short reason for an operation that was not ok: its outcome and the HTTP status and
/// code, or the transport failure.
fn reason(op: &OpRecord) -> String {
    let e = op.error.as_deref().unwrap_or("");
    let what = if e.starts_with("HTTP ") {
        // "HTTP <status> <code>: <body>"
        e.split(':').next().unwrap_or(e).to_string()
    } else if e.starts_with("not sent") {
        if e.contains("refused") {
            "connection refused".to_string()
        } else {
            "not sent".to_string()
        }
    } else if e.starts_with("no answer") {
        if e.contains("timed out") {
            "client timeout".to_string()
        } else {
            "connection lost".to_string()
        }
    } else if e.starts_with("unexpected results") {
        "unexpected results".to_string()
    } else {
        "other".to_string()
    };
    format!("{}: {what}", op.outcome.as_str())
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).context("serializing the report")?;
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Copies the report and every node's log to `dir/<name>-<unix time>.json` and
/// `...-node-<id>.log`; returns the report's path.
fn save(c: &ProcessCluster, report: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{name}-{stamp}");
    let dest = dir.join(format!("{base}.json"));
    fs::copy(report, &dest).with_context(|| format!("copying to {}", dest.display()))?;
    for i in 0..c.node_count() {
        let log = c.dir().join(format!("node-{}", c.id(i))).join("stderr.log");
        let to = dir.join(format!("{base}-node-{}.log", c.id(i)));
        // A missing log is not worth failing the save for.
        let _ = fs::copy(&log, &to);
    }
    Ok(dest)
}

/// Waits until every node has applied what the leader committed, then until the workloads'
/// tables read the same on every node (locally, `level=none`), for up to
/// [`CATCH_UP_TIMEOUT`]. `Some(description)` when replicas still differ then.
fn replicas_agree(c: &ProcessCluster) -> Result<Option<String>> {
    c.wait_all_applied()?;
    // Ok(Ok(())): equal; Ok(Err(diff)): different; Err(e): a node did not answer.
    let compare = || -> Result<std::result::Result<(), String>> {
        let mut diffs = Vec::new();
        for sql in [
            "SELECT k, v FROM registers ORDER BY k",
            "SELECT id, balance FROM accounts ORDER BY id",
        ] {
            let mut seen: Vec<(u64, Value)> = Vec::new();
            for i in c.running() {
                seen.push((c.id(i), c.query_rows(i, sql, Level::None)?));
            }
            if let Some((first_id, first)) = seen.first() {
                for (id, rows) in &seen[1..] {
                    if rows != first {
                        diffs.push(format!(
                            "replicas differ on {sql:?}: node {first_id} has {first}, node {id} has {rows}"
                        ));
                    }
                }
            }
        }
        Ok(if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("; "))
        })
    };
    let mut last_diff = None;
    let mut last_error = None;
    let agreed = try_wait_for(CATCH_UP_TIMEOUT, "the replicas to agree", || {
        Ok(match compare() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(diff)) => {
                last_diff = Some(diff.clone());
                Err(diff)
            }
            Err(e) => {
                let e = format!("{e:#}");
                last_error = Some(e.clone());
                Err(e)
            }
        })
    });
    match (agreed, last_diff) {
        (Ok(()), _) => Ok(None),
        (Err(_), Some(diff)) => Ok(Some(diff)),
        (Err(e), None) => Err(e.context(last_error.unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_counts_add_up() {
        let mut c = OutcomeCounts::default();
        for o in [Outcome::Ok, Outcome::Ok, Outcome::Fail, Outcome::Unknown] {
            c.add(o);
        }
        assert_eq!((c.ok, c.fail, c.unknown, c.total()), (2, 1, 1, 4));
        assert_eq!(c.to_string(), "4 (2 ok, 1 fail, 1 unknown)");
    }

    #[test]
    fn an_op_record_serializes_with_its_outcome() {
        let op = OpRecord {
            index: 3,
            process: 1,
            node: 2,
            invocation: Invocation::Cas {
                key: 1,
                expected: 4,
                new: 9,
            },
            outcome: Outcome::Unknown,
            completion: None,
            call_ns: 10,
            return_ns: 20,
            error: Some("no answer: timed out".into()),
        };
        let v = serde_json::to_value(&op).expect("serializes");
        assert_eq!(v["invocation"]["f"], "cas");
        assert_eq!(v["outcome"], "unknown");
        assert!(v.get("completion").is_none());
    }
}
