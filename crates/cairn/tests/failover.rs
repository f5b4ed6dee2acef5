//! Failures: the leader dies, the whole cluster dies, a node loses its quorum. Nothing
//! acknowledged is lost, and the cluster serves again once a quorum is back.

use cairn_testkit::{wait_for, wait_until, Cluster, Level, ProcessCluster, LEADER_TIMEOUT};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

const CREATE_T: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)";

/// `[[1, "v1"], [2, "v2"], ...]` for the given ids.
fn rows_for(ids: impl IntoIterator<Item = u64>) -> Value {
    Value::Array(
        ids.into_iter()
            .map(|id| json!([id, format!("v{id}")]))
            .collect(),
    )
}

/// Inserts row `id` through node `via`, retrying until the cluster accepts it or
/// [`LEADER_TIMEOUT`] passes (an election may be under way). `INSERT OR IGNORE` keeps the
/// retry idempotent when an attempt committed but its answer was lost.
fn insert_with_retry(c: &ProcessCluster, via: usize, id: u64) {
    let stmt = json!([[
        "INSERT OR IGNORE INTO t(id, v) VALUES(?, ?)",
        id,
        format!("v{id}")
    ]]);
    wait_for(
        LEADER_TIMEOUT,
        &format!("row {id} to be written"),
        || match c.execute(via, &stmt) {
            Ok(r) if r.is_clean() => Ok(()),
            Ok(r) => Err(r.to_string()),
            Err(e) => Err(format!("{e:#}")),
        },
    )
    .expect("the write is acknowledged once a leader is elected");
}

#[test]
fn writes_resume_after_the_leader_is_killed_and_it_rejoins_as_a_follower() {
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let old = c.leader().expect("a leader is elected");
    let old_term = c.raft_status(old).expect("status").term;
    c.execute_ok(old, &json!([CREATE_T])).expect("create");
    for id in 1..=10 {
        insert_with_retry(&c, old, id);
    }

    c.kill(old).expect("SIGKILL the leader");

    // Writes through each survivor, the future leader and the future follower alike,
    // are accepted once a new leader is elected.
    let survivors = c.running();
    assert_eq!(survivors.len(), 2);
    for id in 11..=20u64 {
        let via = survivors[usize::from(id % 2 == 0)];
        insert_with_retry(&c, via, id);
    }
    let new = c.leader().expect("a new leader is elected");
    assert_ne!(new, old);
    let new_status = c.raft_status(new).expect("status");
    assert!(
        new_status.term > old_term,
        "the new leader's term {} is above the old {old_term}",
        new_status.term
    );

    // The old leader comes back on its data directory as a follower of the new leader.
    c.restart(old).expect("restart the old leader");
    c.wait_ready(old).expect("the old leader is ready again");
    let new_id = c.id(new);
    wait_for(
        LEADER_TIMEOUT,
        "the old leader to follow the new one",
        || {
            let s = c.raft_status(old).map_err(|e| format!("{e:#}"))?;
            if s.state == "Follower" && s.leader_id == Some(new_id) {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .expect("the old leader rejoins as a follower");

    // Every acknowledged write is on every node, including the one that was down.
    let expected = rows_for(1..=20);
    for i in c.running() {
        c.wait_rows(i, "SELECT id, v FROM t ORDER BY id", &expected)
            .expect("every acknowledged write is on every node");
    }
    let voters = c.raft_status(new).expect("status").voters;
    assert_eq!(voters, vec![1, 2, 3], "membership is unchanged");
}

#[test]
fn a_cluster_killed_entirely_restarts_with_its_data() {
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    c.execute_ok(leader, &json!([CREATE_T])).expect("create");
    for batch in 0..4u64 {
        let stmts: Vec<Value> = (1..=5u64)
            .map(|k| {
                let id = batch * 5 + k;
                json!(["INSERT INTO t(id, v) VALUES(?, ?)", id, format!("v{id}")])
            })
            .collect();
        c.execute_ok(leader, &Value::Array(stmts))
            .expect("insert a batch");
    }
    c.wait_all_applied().expect("every node catches up");

    for i in 0..3 {
        c.kill(i).expect("SIGKILL");
    }
    for i in 0..3 {
        c.restart(i).expect("restart on the same data directory");
    }
    for i in 0..3 {
        c.wait_ready(i).expect("the restarted node is ready");
    }
    let leader = c.leader().expect("a leader is elected after the restart");

    let expected = rows_for(1..=20);
    for i in 0..3 {
        c.wait_rows(i, "SELECT id, v FROM t ORDER BY id", &expected)
            .expect("the data survived on every node");
    }
    let f = c.followers().expect("followers")[0];
    assert_eq!(
        c.query_rows(f, "SELECT id, v FROM t ORDER BY id", Level::Linearizable)
            .expect("a linearizable read after the restart"),
        expected
    );

    // New writes are accepted and continue where the data left off.
    let r = c
        .execute_ok(f, &json!([["INSERT INTO t(v) VALUES(?)", "after"]]))
        .expect("a write after the restart");
    assert_eq!(r.result(0)["last_insert_id"], 21, "{r}");
    assert_eq!(
        c.raft_status(leader).expect("status").voters,
        vec![1, 2, 3],
        "membership survived the restart"
    );
}

#[test]
fn a_node_cut_off_from_the_quorum_refuses_writes_and_stale_reads() {
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    c.execute_ok(
        leader,
        &json!([CREATE_T, ["INSERT INTO t(id, v) VALUES(?, ?)", 1, "v1"]]),
    )
    .expect("setup writes");
    c.wait_all_applied().expect("every node catches up");
    let f = c.followers().expect("followers")[0];
    let sql = "SELECT id, v FROM t ORDER BY id";

    // A follower in touch with its leader serves a read with a freshness bound.
    let r = c
        .query_with(f, &[("q", sql), ("level", "none"), ("freshness", "1s")])
        .expect("fresh read");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.rows(), rows_for([1]), "{r}");

    let others: Vec<usize> = c.running().into_iter().filter(|&i| i != f).collect();
    for &i in &others {
        c.kill(i).expect("SIGKILL");
    }

    // Alone, the node finds no leader: /readyz says so...
    wait_until(LEADER_TIMEOUT, "/readyz to answer 503", || {
        c.get(f, "/readyz", &[]).is_ok_and(|r| r.status == 503)
    })
    .expect("/readyz reports the missing leader");
    // ...and writes and leader reads are refused with a stable code (once `timeout`,
    // how long the node waits for a leader to appear, has passed).
    let r = c
        .execute_with(
            f,
            &[("timeout", "1s")],
            &json!([["INSERT INTO t(id, v) VALUES(?, ?)", 2, "v2"]]),
        )
        .expect("the node answers");
    assert_eq!(r.status, 503, "{r}");
    assert_eq!(r.code(), Some("no_leader"), "{r}");
    let r = c
        .query_with(f, &[("q", sql), ("level", "weak"), ("timeout", "1s")])
        .expect("the node answers");
    assert_eq!(r.status, 503, "{r}");
    assert_eq!(r.code(), Some("no_leader"), "{r}");

    // A local read without a freshness bound still answers from the local copy...
    assert_eq!(
        c.query_rows(f, sql, Level::None).expect("local read"),
        rows_for([1])
    );
    // ...but one with a bound is refused once the leader has been silent for longer.
    wait_until(LEADER_TIMEOUT, "a stale read error", || {
        c.query_with(f, &[("q", sql), ("level", "none"), ("freshness", "1s")])
            .is_ok_and(|r| r.text.to_lowercase().contains("stale read"))
    })
    .expect("a read with freshness=1s is refused as stale");

    // With a quorum back, the cluster serves writes again and nothing was lost.
    for &i in &others {
        c.restart(i).expect("restart");
    }
    for i in c.running() {
        c.wait_ready(i).expect("ready after the restart");
    }
    c.execute_ok(f, &json!([["INSERT INTO t(id, v) VALUES(?, ?)", 2, "v2"]]))
        .expect("a write after the quorum is back");
    for i in c.running() {
        c.wait_rows(i, sql, &rows_for([1, 2]))
            .expect("every node has both rows");
    }
}
