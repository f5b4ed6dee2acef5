//! Hostile (or careless) HTTP clients, issue 7 items 7-11: an oversized entry, bodies and
//! durations that used to panic or wedge, writes whose outcome a
//! follower cannot know, queued writes to unknown databases, and a paused follower that
//! used to depose a healthy leader. Each test asserts the status and stable `code`, that the
//! refused request changed nothing, and that every replica is identical afterwards.
//! (Half-open connections are tested in-process: `behaviour/hostile_http.rs`.)

use std::time::Duration;

use cairn_testkit::{node_pid, wait_until, Cluster, Level, ProcessCluster};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// `MAX_ENTRY_BYTES` of cairn-raft.
const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

/// Waits until every replica has applied the leader's commit index, then asserts that
/// `sql` (read at level `none`) returns the same rows on each of them; returns those rows.
fn assert_replicas_identical(c: &ProcessCluster, sql: &str) -> Value {
    c.wait_all_applied().expect("every replica catches up");
    let mut first: Option<Value> = None;
    for i in c.running() {
        let rows = c.query_rows(i, sql, Level::None).expect("a local read");
        match &first {
            None => first = Some(rows),
            Some(f) => assert_eq!(f, &rows, "node {} differs for {sql}", c.id(i)),
        }
    }
    first.unwrap_or(Value::Null)
}

fn signal(c: &ProcessCluster, i: usize, sig: Signal) {
    let pid = node_pid(c, i).expect("the node's process");
    let pid = Pid::from_raw(i32::try_from(pid).expect("a pid fits i32"));
    kill(pid, sig).expect("signal the node");
}

/// Item 7: a 3 MiB write used to be committed on the leader and refused (413) by every
/// follower's raft router forever. Now it replicates; a write above `MAX_ENTRY_BYTES` is
/// refused with 413 `entry_too_large` before it takes a log index, and replication goes on.
#[test]
fn large_entries_replicate_and_oversized_ones_are_refused() {
    let c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let f = c.followers().expect("followers")[0];
    c.execute_ok(
        leader,
        &json!(["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]),
    )
    .expect("setup");

    // 3 MiB through a follower (forwarded) and the leader: both replicate everywhere.
    let three = "a".repeat(3 * 1024 * 1024);
    for i in [f, leader] {
        let r = c
            .execute(i, &json!([["INSERT INTO t(v) VALUES(?)", three]]))
            .expect("the node answers");
        assert!(r.is_clean(), "node {}: {r}", c.id(i));
    }
    let sql = "SELECT id, length(v) FROM t ORDER BY id";
    let rows = assert_replicas_identical(&c, sql);
    assert_eq!(rows, json!([[1, 3145728], [2, 3145728]]));

    // Above the entry limit but below the body limit: refused at proposal, on the leader,
    // on a follower, and when queued.
    let big = "b".repeat(MAX_ENTRY_BYTES + 1024);
    let stmt = json!([["INSERT INTO t(v) VALUES(?)", big]]);
    for (i, params) in [
        (leader, &[][..]),
        (f, &[][..]),
        (f, &[("queue", "")][..]),
        (leader, &[("transaction", "")][..]),
    ] {
        let r = c.execute_with(i, params, &stmt).expect("the node answers");
        assert_eq!(r.status, 413, "node {} {params:?}: {r}", c.id(i));
        assert_eq!(r.code(), Some("entry_too_large"), "{r}");
    }
    // Nothing changed, and replication still works.
    c.execute_ok(f, &json!([["INSERT INTO t(v) VALUES(?)", "after"]]))
        .expect("a write after the refusals");
    let rows = assert_replicas_identical(&c, sql);
    assert_eq!(rows, json!([[1, 3145728], [2, 3145728], [3, 5]]));
}

/// Item 10: `timeout=1e19` and friends panicked the handler. Huge values are capped, bad
/// ones answer 400 `bad_request`, and the node keeps serving.
#[test]
fn absurd_durations_do_not_panic() {
    let c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let f = c.followers().expect("followers")[0];
    c.execute_ok(leader, &json!(["CREATE TABLE t (x)"]))
        .expect("setup");
    for i in [leader, f] {
        for v in ["1e19", "1e30", "18446744073709551616"] {
            let r = c
                .execute_with(i, &[("timeout", v)], &json!(["INSERT INTO t VALUES(1)"]))
                .expect("the node answers");
            assert!(r.is_clean(), "timeout={v}: {r}");
            let r = c
                .query_with(i, &[("q", "SELECT 1"), ("level", "none"), ("freshness", v)])
                .expect("the node answers");
            assert!(r.is_clean(), "freshness={v}: {r}");
            let r = c
                .get(i, "/readyz", &[("sync", ""), ("timeout", v)])
                .expect("the node answers");
            assert_eq!(r.status, 200, "readyz timeout={v}: {r}");
        }
        for v in ["-1", "NaN", "inf", "-3s", "soon"] {
            let r = c
                .execute_with(i, &[("timeout", v)], &json!(["INSERT INTO t VALUES(2)"]))
                .expect("the node answers");
            assert_eq!((r.status, r.code()), (400, Some("bad_request")), "{v}: {r}");
            let r = c
                .query_with(i, &[("q", "SELECT 1"), ("level", "none"), ("freshness", v)])
                .expect("the node answers");
            assert_eq!((r.status, r.code()), (400, Some("bad_request")), "{v}: {r}");
            let r = c
                .get(i, "/readyz", &[("sync", ""), ("timeout", v)])
                .expect("the node answers");
            assert_eq!(r.status, 400, "readyz timeout={v}: {r}");
        }
    }
    let rows = assert_replicas_identical(&c, "SELECT x, count(*) FROM t GROUP BY x");
    assert_eq!(rows, json!([[1, 6]]), "only the accepted writes");
}

/// Item 9: a queued write to an unknown database used to answer 200 and be lost. It is
/// refused with 404 before it is queued, on the leader and on followers; a database the
/// leader has is accepted on a follower even before its replica has it.
#[test]
fn queued_writes_to_unknown_databases_are_refused() {
    let c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    for i in c.running() {
        let r = c
            .execute_with(
                i,
                &[("queue", ""), ("db", "nope")],
                &json!(["CREATE TABLE t (x)"]),
            )
            .expect("the node answers");
        assert_eq!(r.status, 404, "node {}: {r}", c.id(i));
        assert_eq!(r.code(), Some("database_not_found"), "{r}");
    }
    let r = c
        .post(leader, "/v1/databases", &[], &json!({"name": "d2"}))
        .expect("create a database");
    assert!(r.is_success(), "{r}");
    for i in c.running() {
        let r = c
            .execute_with(
                i,
                &[("queue", ""), ("wait", ""), ("db", "d2")],
                &json!([
                    format!("CREATE TABLE IF NOT EXISTS t (x)"),
                    format!("INSERT INTO t VALUES({})", c.id(i))
                ]),
            )
            .expect("the node answers");
        assert_eq!(r.status, 200, "node {}: {r}", c.id(i));
    }
    c.wait_all_applied().expect("caught up");
    for i in c.running() {
        let r = c
            .query_with(
                i,
                &[
                    ("q", "SELECT x FROM t ORDER BY x"),
                    ("level", "none"),
                    ("db", "d2"),
                ],
            )
            .expect("a local read");
        assert_eq!(r.rows(), json!([[1], [2], [3]]), "node {}: {r}", c.id(i));
        let dbs = c.get(i, "/v1/databases", &[]).expect("list");
        assert!(!dbs.text.contains("\"nope\""), "no database nope: {dbs}");
    }
}

/// Item 9: a write forwarded to a leader that stops answering mid-request is reported as
/// 503 `outcome_unknown`, never as "not applied"; a write that certainly reached no leader
/// is reported as `not_applied` or `no_leader`, and was indeed not applied.
#[test]
fn forwarded_write_outcomes_are_honest() {
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    c.execute_ok(leader, &json!(["CREATE TABLE t (x)"]))
        .expect("setup");
    let f = c.followers().expect("followers")[0];
    c.wait_all_applied().expect("caught up");

    // The leader freezes after accepting the connection: the follower cannot know.
    signal(&c, leader, Signal::SIGSTOP);
    let r = c.execute_with(
        f,
        &[("timeout", "1s")],
        &json!(["INSERT INTO t VALUES('unknown')"]),
    );
    signal(&c, leader, Signal::SIGCONT);
    let r = r.expect("the follower answers");
    assert_eq!(r.status, 503, "{r}");
    assert_eq!(r.code(), Some("outcome_unknown"), "{r}");
    let rows = assert_replicas_identical(&c, "SELECT x FROM t WHERE x = 'unknown'");
    assert!(rows.as_array().is_some_and(|a| a.len() <= 1), "{rows}");

    // Only one node left: no leader can take the write, and the answer says so.
    let leader = c.leader().expect("a leader");
    let others: Vec<usize> = c.running().into_iter().filter(|&i| i != leader).collect();
    let (lone, gone) = (others[0], others[1]);
    c.kill(leader).expect("kill the leader");
    c.kill(gone).expect("kill another node");
    let r = c
        .execute_with(
            lone,
            &[("timeout", "1s")],
            &json!(["INSERT INTO t VALUES('never')"]),
        )
        .expect("the node answers");
    assert_eq!(r.status, 503, "{r}");
    assert!(
        matches!(r.code(), Some("not_applied" | "no_leader")),
        "certainly not applied: {r}"
    );
    c.restart(leader).expect("restart");
    c.restart(gone).expect("restart");
    c.leader().expect("a leader again");
    let rows = assert_replicas_identical(&c, "SELECT count(*) FROM t WHERE x = 'never'");
    assert_eq!(rows, json!([[0]]), "a not-applied write was not applied");
}

/// Item 11: a follower resumed after a 1-2.5 s pause used to depose the healthy leader
/// (term + 2). With Pre-Vote (a real RPC) it asks first, is refused while the leader's lease
/// holds, and rejoins as a follower: same leader, same term.
#[test]
fn paused_follower_does_not_depose_the_leader() {
    let c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    c.execute_ok(leader, &json!(["CREATE TABLE t (x)"]))
        .expect("setup");
    let before = c.raft_status(leader).expect("status");
    let f = c.followers().expect("followers")[0];
    for (round, pause_ms) in [1500u64, 2500].into_iter().enumerate() {
        signal(&c, f, Signal::SIGSTOP);
        // The pause is the fault itself.
        std::thread::sleep(Duration::from_millis(pause_ms));
        // A write while it is paused, so that it has something to catch up on.
        c.execute_ok(leader, &json!([["INSERT INTO t VALUES(?)", round]]))
            .expect("a write during the pause");
        signal(&c, f, Signal::SIGCONT);
        let commit = c.raft_status(leader).expect("status").commit_index;
        c.wait_applied(f, commit).expect("the follower catches up");
        wait_until(
            Duration::from_secs(5),
            "the follower knows the leader",
            || {
                c.raft_status(f)
                    .is_ok_and(|s| s.leader_id == Some(c.id(leader)))
            },
        )
        .expect("the follower follows");
        let after = c.raft_status(leader).expect("status");
        assert_eq!(after.state, "Leader", "round {round}: {after:?}");
        assert_eq!(
            after.term, before.term,
            "round {round}: the term moved: {after:?}"
        );
        let fs = c.raft_status(f).expect("status");
        assert_eq!(
            fs.term, before.term,
            "round {round}: the follower's term: {fs:?}"
        );
    }
    let rows = assert_replicas_identical(&c, "SELECT x FROM t ORDER BY x");
    assert_eq!(rows, json!([[0], [1]]));
}

/// A client that retries a write after `outcome_unknown` sends the same `Idempotency-Key`:
/// the write applies once, and the retry (through any node) gets the first answer.
#[test]
fn a_retried_write_with_the_same_idempotency_key_applies_once() {
    let c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let f = c.followers().expect("followers")[0];
    c.execute_ok(
        leader,
        &json!(["CREATE TABLE once (id INTEGER PRIMARY KEY, r)"]),
    )
    .expect("create");
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("an HTTP client");
    let post = |node: usize, key: &str| -> (u16, Value) {
        let r = http
            .post(format!("{}/db/execute", c.url(node)))
            .header("Idempotency-Key", key)
            .json(&json!(["INSERT INTO once (r) VALUES (random())"]))
            .send()
            .expect("the node answers");
        let status = r.status().as_u16();
        (status, r.json().expect("a JSON body"))
    };
    let (s1, first) = post(f, "order-17");
    assert_eq!(s1, 200, "{first}");
    assert_eq!(first["results"][0]["rows_affected"], 1, "{first}");
    let (s2, again) = post(leader, "order-17");
    assert_eq!(s2, 200, "{again}");
    assert_eq!(again, first, "the retry gets the first attempt's results");
    let (s3, other) = post(f, "order-18");
    assert_eq!(s3, 200, "{other}");
    assert_eq!(other["results"][0]["last_insert_id"], 2, "{other}");
    let (s4, bad) = post(leader, "");
    assert_eq!(s4, 400, "an empty key is refused: {bad}");
    assert_eq!(bad["code"], "bad_request", "{bad}");
    let rows = assert_replicas_identical(&c, "SELECT id, r FROM once ORDER BY id");
    assert_eq!(
        rows.as_array().map(Vec::len),
        Some(2),
        "two writes, not three: {rows}"
    );
}
