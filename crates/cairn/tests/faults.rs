//! Fault injection: while clients run a register workload (linearizable reads, writes,
//! compare-and-set) and a bank workload (transfers in one transaction, reads of the total),
//! a nemesis kills and restarts nodes, pauses them, and cuts the network between them
//! through per-node Raft proxies, on a random schedule drawn from a seed. Afterwards the
//! register history must be linearizable (checked key by key), the bank's total must never
//! have changed, and every replica must hold the same data. See
//! `cairn_testkit::run_faults` for the run and `cairn_testkit::Workload` for how replies are
//! classified as ok, fail or unknown.
//!
//! CI runs three short schedules (a minute and a half of faults in all). Each test prints its
//! report: operations by outcome, faults injected by kind, the checker's verdict per
//! register, anomalies. A failing run saves its history, fault schedule, verdicts and the
//! nodes' logs under `target/fault-reports/` and prints the path.
//!
//! Environment:
//! - `CAIRN_FAULT_SECONDS`: how long each schedule injects faults, in seconds (default 30).
//!   A longer run: `CAIRN_FAULT_SECONDS=600 cargo test -p cairn --test faults -- --nocapture`.
//! - `CAIRN_FAULT_SEED`: the seed every schedule uses instead of its own, to replay a
//!   failing run (the seed is printed at the start of each run and in its report).

use std::path::PathBuf;
use std::time::Duration;

use cairn_testkit::{
    run_faults, wait_for, Cluster, ClusterOptions, CutMode, FaultRunOptions, ProcessCluster,
    LEADER_TIMEOUT,
};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// Seconds of faults per schedule when `CAIRN_FAULT_SECONDS` is not set.
const DEFAULT_FAULT_SECONDS: u64 = 30;

fn fault_duration() -> Duration {
    let secs = match std::env::var("CAIRN_FAULT_SECONDS") {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("CAIRN_FAULT_SECONDS={s:?} is not a number: {e}")),
        Err(_) => DEFAULT_FAULT_SECONDS,
    };
    Duration::from_secs(secs)
}

fn seed(default: u64) -> u64 {
    match std::env::var("CAIRN_FAULT_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("CAIRN_FAULT_SEED={s:?} is not a number: {e}")),
        Err(_) => default,
    }
}

/// `target/fault-reports`, beside cargo's `target/tmp`.
fn report_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map_or(tmp.clone(), PathBuf::from)
        .join("fault-reports")
}

fn run(name: &str, opts: FaultRunOptions) {
    let report = run_faults(BIN, &opts).expect("the cluster starts and the tables are created");
    println!("{name}:\n{report}");
    assert!(
        report.passed(),
        "{name} (replay with CAIRN_FAULT_SEED={}) found problems:\n{report}",
        opts.seed
    );
    // The run must have exercised something: faults happened, and operations succeeded
    // and were checked.
    assert!(
        report.faults.values().sum::<usize>() > 0,
        "no fault was injected:\n{report}"
    );
    assert!(
        report.register_ops.ok > 0 && report.bank.totals_read > 0,
        "{report}"
    );
    assert!(
        report.registers.iter().all(|k| k.ops > 0),
        "every register was checked:\n{report}"
    );
}

/// The harness itself: nodes advertise their proxies, and isolating the leader through them
/// really partitions it (if it did not, the schedules below would test nothing).
#[test]
fn a_leader_isolated_by_its_proxies_is_replaced_and_serves_no_linearizable_read() {
    let c = ProcessCluster::start_with(
        BIN,
        ClusterOptions {
            raft_proxies: true,
            ..ClusterOptions::default()
        },
    )
    .expect("a 3-node cluster behind proxies starts");
    let net = c.proxies().expect("the cluster has proxies");
    let old = c.leader().expect("a leader is elected");
    let old_id = c.id(old);
    let old_term = c.raft_status(old).expect("status").term;
    for i in 0..c.node_count() {
        let advertised = net.nodes()[&c.id(i)].advertised;
        let status = c.status(i).expect("status");
        assert_eq!(
            status["node"]["raft_addr"],
            advertised.to_string(),
            "node {} advertises its proxy",
            c.id(i)
        );
    }

    net.isolate(old_id, CutMode::Blackhole);
    let others: Vec<usize> = (0..c.node_count()).filter(|&i| i != old).collect();
    let new = wait_for(LEADER_TIMEOUT, "a leader among the other nodes", || {
        for &i in &others {
            match c.raft_status(i) {
                Ok(s) if s.state == "Leader" && s.term > old_term => return Ok(i),
                Ok(_) => {}
                Err(e) => return Err(format!("{e:#}")),
            }
        }
        Err("no new leader yet".to_string())
    })
    .expect("the majority elects a new leader");
    let r = c
        .query_with(
            old,
            &[
                ("q", "SELECT 1"),
                ("level", "linearizable"),
                ("timeout", "1s"),
            ],
        )
        .expect("the isolated node answers");
    assert_ne!(
        r.status, 200,
        "an isolated leader cannot confirm it leads: {r}"
    );

    net.heal_all();
    let new_id = c.id(new);
    wait_for(
        LEADER_TIMEOUT,
        "the old leader to follow the new one",
        || match c.raft_status(old) {
            Ok(s) if s.leader_id == Some(new_id) => Ok(()),
            Ok(s) => Err(format!("{s:?}")),
            Err(e) => Err(format!("{e:#}")),
        },
    )
    .expect("once healed, the old leader follows the new one");
    assert!(
        net.stats().blackholed + net.stats().dropped > 0,
        "{:?}",
        net.stats()
    );
}

#[test]
fn three_nodes_stay_linearizable_through_kills_pauses_and_partitions() {
    let opts = FaultRunOptions {
        duration: fault_duration(),
        ..FaultRunOptions::new(seed(1), report_dir())
    };
    run("three nodes", opts);
}

#[test]
fn five_nodes_stay_linearizable_through_minority_and_majority_splits() {
    let opts = FaultRunOptions {
        nodes: 5,
        duration: fault_duration(),
        ..FaultRunOptions::new(seed(2), report_dir())
    };
    run("five nodes", opts);
}

#[test]
fn nodes_that_catch_up_from_snapshots_stay_linearizable() {
    let opts = FaultRunOptions {
        // Snapshots (and log purges) every 64 entries: a node that was down or cut off
        // for a few seconds catches up by installing a snapshot.
        snapshot_threshold: Some(64),
        duration: fault_duration(),
        ..FaultRunOptions::new(seed(3), report_dir())
    };
    run("three nodes with frequent snapshots", opts);
}
