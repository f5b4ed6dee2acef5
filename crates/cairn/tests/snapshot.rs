//! Log compaction: with `--snapshot-threshold 50`, a node that was down while the leader
//! snapshotted and purged its log catches up from the snapshot, and a cluster restarts
//! from snapshot plus log.

use cairn_testkit::{wait_for, Cluster, ClusterOptions, Level, ProcessCluster, CATCH_UP_TIMEOUT};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

const THRESHOLD: u64 = 50;
const ROWS: u64 = 200;

#[test]
fn a_node_stopped_during_log_compaction_catches_up_from_a_snapshot() {
    let mut c = ProcessCluster::start_with(
        BIN,
        ClusterOptions {
            nodes: 3,
            snapshot_threshold: Some(THRESHOLD),
            ..ClusterOptions::default()
        },
    )
    .expect("a 3-node cluster with --snapshot-threshold 50 starts");
    let leader = c.leader().expect("a leader is elected");
    c.execute_ok(
        leader,
        &json!(["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]),
    )
    .expect("create");
    c.wait_all_applied().expect("every node catches up");
    let f = c.followers().expect("followers")[0];
    let stopped_at = c.raft_status(f).expect("status").applied_index;
    c.stop(f).expect("the follower exits on SIGTERM");

    // One log entry per write, so the leader snapshots and purges several times.
    for id in 1..=ROWS {
        c.execute_ok(
            leader,
            &json!([["INSERT INTO t(id, v) VALUES(?, ?)", id, format!("row {id}")]]),
        )
        .expect("a write with one node down");
    }
    // The leader snapshotted past where the stopped node was, and purged the log
    // entries that node is missing, so it can only catch up from a snapshot.
    let s = wait_for(CATCH_UP_TIMEOUT, "the leader to snapshot and purge", || {
        let s = c.raft_status(leader).map_err(|e| format!("{e:#}"))?;
        let snapshotted = s
            .snapshot_index
            .is_some_and(|x| x >= stopped_at + ROWS - 2 * THRESHOLD);
        let purged = s.purged_index.is_some_and(|x| x > stopped_at);
        if snapshotted && purged {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .expect("the leader compacts its log past the stopped node");
    assert!(
        s.snapshot_index >= s.purged_index,
        "only entries in a snapshot are purged: {s:?}"
    );

    // Restarted, the node catches up: every row, with the leader's snapshot installed.
    c.restart(f).expect("restart the follower");
    c.wait_ready(f).expect("the follower is ready again");
    let summary = "SELECT COUNT(*), SUM(id), MAX(v) FROM t";
    let expected = json!([[ROWS, ROWS * (ROWS + 1) / 2, "row 99"]]);
    c.wait_rows(f, summary, &expected)
        .expect("the restarted node has every row");
    let s = c.raft_status(f).expect("status");
    assert_eq!(s.state, "Follower", "{s:?}");
    assert!(
        s.snapshot_index.is_some_and(|x| x > stopped_at),
        "the restarted node holds a snapshot past where it stopped: {s:?}"
    );
    c.wait_all_applied().expect("every node catches up");
    for i in c.running() {
        assert_eq!(
            c.query_rows(i, summary, Level::None).expect("local read"),
            expected,
            "node {}",
            c.id(i)
        );
    }

    // Restarted from scratch, every node rebuilds its data from snapshot plus log.
    for i in 0..3 {
        c.kill(i).expect("SIGKILL");
    }
    for i in 0..3 {
        c.restart(i).expect("restart");
    }
    for i in 0..3 {
        c.wait_ready(i).expect("ready after the restart");
    }
    for i in 0..3 {
        c.wait_rows(i, summary, &expected)
            .expect("the data survived the restart on every node");
    }
    let leader = c.leader().expect("a leader");
    let r = c
        .execute_ok(leader, &json!([["INSERT INTO t(v) VALUES(?)", "after"]]))
        .expect("a write after the restart");
    assert_eq!(r.result(0)["last_insert_id"], ROWS + 1, "{r}");
}
