//! A full disk under the databases: every node's SQLite `COMMIT` fails with `ENOSPC`
//! (injected at the `sm.commit` failpoint with `CAIRN_FAULT_AT`, see `cairn_sql::crash`),
//! as on a machine whose nodes share a disk that filled up. Checks what users rely on: a
//! write fails with a stable code and an honest outcome (it is in the log, so "unknown", not
//! "changed nothing"), nothing is corrupted or half-applied, no node panics or exits, and
//! once space returns the stuck write and new ones are applied, once, on every replica.

use std::time::Duration;

use cairn_testkit::{assert_replicas_identical, wait_for, Cluster, ProcessCluster, LEADER_TIMEOUT};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// How long the nodes get to apply the stuck write once the fault is lifted: the state
/// machine retries a local failure with a backoff of at most a second.
const RESUME_TIMEOUT: Duration = Duration::from_secs(30);

fn rows(c: &ProcessCluster, i: usize) -> Value {
    c.query_with(
        i,
        &[("q", "SELECT v FROM t ORDER BY id"), ("level", "none")],
    )
    .expect("a local read")
    .rows()
}

#[test]
fn a_full_disk_fails_writes_honestly_and_they_resume_when_space_returns() {
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let l = c.leader().expect("a leader");
    c.execute_ok(
        l,
        &json!([
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            "INSERT INTO t(v) VALUES ('before')"
        ]),
    )
    .expect("setup");
    c.wait_all_applied().expect("every node applies");

    // The disk "fills up": every node restarts with the fault armed while the file exists.
    let full = c.dir().join("disk-full");
    std::fs::write(&full, b"").expect("create the fault file");
    let full_str = full.to_string_lossy().to_string();
    for i in 0..3 {
        c.stop(i).expect("a node exits on SIGTERM");
    }
    for i in 0..3 {
        c.restart_with_env(
            i,
            &[
                ("CAIRN_FAULT_AT", "sm.commit"),
                ("CAIRN_FAULT_WHILE", &full_str),
            ],
        )
        .expect("restart with the fault armed");
    }
    for i in 0..3 {
        c.wait_ready(i).expect("the node starts with a full disk");
    }
    let l = c.leader_within(LEADER_TIMEOUT).expect("a leader");

    let r = c
        .execute_with(
            l,
            &[("timeout", "1s")],
            &json!([["INSERT INTO t(v) VALUES (?)", "during"]]),
        )
        .expect("the leader answers");
    assert_eq!(r.status, 503, "a write that cannot be applied fails: {r}");
    assert_eq!(
        r.code(),
        Some("outcome_unknown"),
        "the entry is in the log: its outcome is unknown, not 'changed nothing': {r}"
    );

    // Nothing half-applied, nobody down: every node still serves its old data and reports
    // the entry as committed but not applied.
    for i in 0..3 {
        assert_eq!(
            rows(&c, i),
            json!([["before"]]),
            "node {} is unchanged",
            c.id(i)
        );
    }
    let s = c
        .raft_status(l)
        .expect("a node with a full disk still answers");
    assert!(
        s.applied_index < s.commit_index,
        "the write is committed but not applied: {s:?}"
    );
    assert_eq!(c.running().len(), 3, "no node exited");
    let log = c.log_tail(l, 200);
    assert!(
        log.contains("no space left on device"),
        "the node logs why it cannot apply: {log}"
    );

    // Space returns: the stuck write is applied (once), and new writes succeed.
    std::fs::remove_file(&full).expect("lift the fault");
    wait_for(RESUME_TIMEOUT, "the stuck write to be applied", || {
        let got = rows(&c, l);
        if got == json!([["before"], ["during"]]) {
            Ok(())
        } else {
            Err(got.to_string())
        }
    })
    .expect("the write resumes");
    c.execute_ok(l, &json!([["INSERT INTO t(v) VALUES (?)", "after"]]))
        .expect("a write after space returns");
    let all = assert_replicas_identical(&c, "main");
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[0].tables["t"]["rows"],
        json!([[1, "before"], [2, "during"], [3, "after"]]),
        "every write is applied exactly once"
    );

    // And the data directories are sound: a node restarts on them without the fault.
    c.stop(l).expect("stop");
    c.restart(l).expect("restart");
    c.wait_ready(l).expect("the node restarts on its data");
    assert_replicas_identical(&c, "main");
}
