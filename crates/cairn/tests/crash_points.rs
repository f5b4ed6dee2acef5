//! Issue 7, crash windows (item 10): a node started with `CAIRN_CRASH_AT=<point>` aborts at
//! that named durable step of installing a snapshot or applying a `/db/load`. Restarted
//! without it, the node must hold exactly the data of a committed index: it starts,
//! catches up, and ends identical to the other replicas.

use std::time::Duration;

use cairn_testkit::{
    assert_replicas_identical, wait_for, Cluster, ClusterOptions, ProcessCluster, CATCH_UP_TIMEOUT,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

const THRESHOLD: u64 = 20;
/// Entries written while a follower is down: enough for the leader to snapshot and purge
/// past it several times.
const ROWS: u64 = 80;

/// How long a node started with a crash point may take to reach it and exit.
const CRASH_TIMEOUT: Duration = CATCH_UP_TIMEOUT;

/// Waits for node `f`, started with `CAIRN_CRASH_AT=point`, to exit; fails at once when
/// it applies `target` without having crashed (the point was never reached).
fn wait_crash(c: &mut ProcessCluster, f: usize, point: &str, target: u64) {
    let status = c
        .wait_exit(f, CRASH_TIMEOUT, |c| {
            c.raft_status(f)
                .ok()
                .filter(|s| s.applied_index >= target)
                .map(|s| {
                    format!(
                        "it applied index {} (>= {target}) without crashing at {point}",
                        s.applied_index
                    )
                })
        })
        .unwrap_or_else(|e| panic!("node {} exits at crash point {point}: {e:#}", c.id(f)));
    assert!(
        !status.success(),
        "a crash point aborts the process, it does not exit cleanly: {status}"
    );
}

fn row_count(all: &[cairn_testkit::ReplicaContents]) -> usize {
    all[0].tables["t"]["rows"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_crash_at_each_step_of_a_snapshot_install_recovers_to_a_committed_index() {
    let mut c = ProcessCluster::start_with(
        BIN,
        ClusterOptions {
            nodes: 3,
            snapshot_threshold: Some(THRESHOLD),
            ..ClusterOptions::default()
        },
    )
    .expect("a 3-node cluster with a small snapshot threshold starts");
    let l = c.leader().expect("a leader");
    c.execute_ok(
        l,
        &json!(["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]),
    )
    .expect("create");
    c.wait_all_applied().expect("every node applies");
    let f = c.followers().expect("followers")[0];
    let mut written = 0u64;

    for point in ["snapshot.unpacked", "snapshot.swapped", "snapshot.recorded"] {
        let stopped_at = c.raft_status(f).expect("status").applied_index;
        c.stop(f).expect("the follower exits on SIGTERM");
        for k in 0..ROWS {
            c.execute_ok(
                l,
                &json!([["INSERT INTO t(v) VALUES (?)", format!("{point} {k}")]]),
            )
            .expect("a write with one node down");
            written += 1;
        }
        // The leader snapshotted and purged past the stopped follower, so the follower
        // can only catch up by installing a snapshot.
        wait_for(CATCH_UP_TIMEOUT, "the leader to snapshot and purge", || {
            let s = c.raft_status(l).map_err(|e| format!("{e:#}"))?;
            if s.purged_index.is_some_and(|x| x > stopped_at) {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        })
        .expect("the leader compacts its log past the stopped follower");
        let target = c.raft_status(l).expect("status").commit_index;

        c.restart_with_env(f, &[("CAIRN_CRASH_AT", point)])
            .expect("restart the follower with a crash point");
        wait_crash(&mut c, f, point, target);

        c.restart(f)
            .expect("restart the follower without the crash point");
        c.wait_ready(f)
            .unwrap_or_else(|e| panic!("the node starts after crashing at {point}: {e:#}"));
        let all = assert_replicas_identical(&c, "main");
        assert_eq!(
            row_count(&all),
            usize::try_from(written).expect("small"),
            "after a crash at {point}, every row is on every node"
        );
    }
}

#[test]
fn a_crash_at_each_step_of_a_load_recovers_to_a_committed_index() {
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let l = c.leader().expect("a leader");
    c.execute_ok(
        l,
        &json!([
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            "INSERT INTO t(v) VALUES ('a')",
            "INSERT INTO t(v) VALUES ('b')"
        ]),
    )
    .expect("setup");
    c.wait_all_applied().expect("every node applies");
    let (status, backup) = c.get_bytes(l, "/db/backup", &[]).expect("GET /db/backup");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&backup));
    assert!(
        backup.starts_with(b"SQLite format 3\0"),
        "the backup is a SQLite file"
    );
    let f = c.followers().expect("followers")[0];

    for point in ["load.written", "load.swapped"] {
        // A write after the backup, so that loading it changes the data.
        c.execute_ok(
            l,
            &json!([[
                "INSERT INTO t(v) VALUES (?)",
                format!("before load at {point}")
            ]]),
        )
        .expect("a write after the backup");
        c.stop(f).expect("the follower exits on SIGTERM");
        c.restart_with_env(f, &[("CAIRN_CRASH_AT", point)])
            .expect("restart the follower with a crash point");
        c.wait_ready(f).expect("the follower serves until the load");
        c.wait_all_applied().expect("every node applies");

        let r = c
            .post_bytes(
                l,
                "/db/load",
                &[],
                "application/octet-stream",
                backup.clone(),
            )
            .expect("POST /db/load");
        assert!(r.is_clean(), "the load is applied: {r}");
        let target = c.raft_status(l).expect("status").commit_index;
        wait_crash(&mut c, f, point, target);

        c.restart(f)
            .expect("restart the follower without the crash point");
        c.wait_ready(f)
            .unwrap_or_else(|e| panic!("the node starts after crashing at {point}: {e:#}"));
        let all = assert_replicas_identical(&c, "main");
        assert_eq!(
            all[0].tables["t"]["rows"],
            json!([[1, "a"], [2, "b"]]),
            "after a crash at {point}, every node holds exactly the loaded data"
        );
    }
}
