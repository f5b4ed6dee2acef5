//! Bad input and refused requests: stable status codes and error codes, SQL errors in
//! their statement's slot, transactions that roll back, and an internal RPC that needs
//! the cluster secret.

use cairn_testkit::{Cluster, Level, TestCluster};
use serde_json::json;

#[test]
fn malformed_requests_get_400_and_unknown_databases_404() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    c.execute_ok(c.leader().expect("leader"), &json!(["CREATE TABLE t (x)"]))
        .expect("setup");
    // The same answers on the leader and on followers: errors are not forwarded away.
    for i in c.running() {
        let id = c.id(i);
        for path in ["/db/execute", "/db/query", "/db/request"] {
            let r = c
                .post_raw(i, path, &[], "[\"CREATE TABLE")
                .expect("the node answers");
            assert_eq!(r.status, 400, "node {id} {path}, malformed JSON: {r}");
            assert_eq!(r.code(), Some("bad_request"), "node {id} {path}: {r}");
            assert!(!r.error().unwrap_or_default().is_empty(), "a message: {r}");

            let r = c.post(i, path, &[], &json!([])).expect("the node answers");
            assert_eq!(r.status, 400, "node {id} {path}, empty array: {r}");
            assert_eq!(r.code(), Some("bad_request"), "node {id} {path}: {r}");
        }

        let r = c
            .execute_with(i, &[("db", "nope")], &json!(["INSERT INTO t VALUES(1)"]))
            .expect("the node answers");
        assert_eq!(r.status, 404, "node {id}: {r}");
        assert_eq!(r.code(), Some("database_not_found"), "node {id}: {r}");
        for level in Level::ALL {
            let r = c
                .query_with(
                    i,
                    &[
                        ("q", "SELECT * FROM t"),
                        ("level", level.as_str()),
                        ("db", "nope"),
                    ],
                )
                .expect("the node answers");
            assert_eq!(r.status, 404, "node {id} level {}: {r}", level.as_str());
            assert_eq!(r.code(), Some("database_not_found"), "{r}");
        }
    }
    // Nothing was written by the refused requests.
    let leader = c.leader().expect("leader");
    assert_eq!(
        c.query_rows(leader, "SELECT COUNT(*) FROM t", Level::Strong)
            .expect("count"),
        json!([[0]])
    );
}

#[test]
fn sql_errors_are_reported_per_statement_and_transactions_roll_back() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let f = c.followers().expect("followers")[0];

    // Without a transaction, a failing statement fails alone, in its own slot, and the
    // reply is still 200.
    let r = c
        .execute(
            f,
            &json!([
                "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
                "INSERT INTO nope VALUES(1)",
                ["INSERT INTO t(v) VALUES(?)", "a"],
            ]),
        )
        .expect("the node answers");
    assert_eq!(r.status, 200, "{r}");
    assert!(r.result(0).get("error").is_none(), "{r}");
    let err = r.result(1)["error"].as_str().unwrap_or_default();
    assert!(err.contains("no such table: nope"), "{r}");
    assert_eq!(r.result(2)["last_insert_id"], 1, "{r}");

    let r = c.execute(f, &json!(["SELEC 1"])).expect("the node answers");
    assert_eq!(r.status, 200, "{r}");
    let err = r.result(0)["error"].as_str().unwrap_or_default();
    assert!(err.contains("syntax error"), "{r}");

    // In a transaction, one failure rolls back the whole batch.
    let r = c
        .execute_with(
            f,
            &[("transaction", "")],
            &json!([
                ["INSERT INTO t(v) VALUES(?)", "b"],
                "INSERT INTO t(v) VALUES(NULL)",
                ["INSERT INTO t(v) VALUES(?)", "c"],
            ]),
        )
        .expect("the node answers");
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.slot_errors()
            .iter()
            .any(|(_, e)| e.contains("NOT NULL constraint failed")),
        "the failing statement's error is reported: {r}"
    );
    let sql = "SELECT id, v FROM t ORDER BY id";
    assert_eq!(
        c.query_rows(leader, sql, Level::Strong).expect("read"),
        json!([[1, "a"]]),
        "nothing of the failed transaction is applied"
    );

    // A transaction without failure applies every statement.
    let r = c
        .execute_with(
            f,
            &[("transaction", "")],
            &json!([
                ["INSERT INTO t(v) VALUES(?)", "b"],
                ["INSERT INTO t(v) VALUES(?)", "c"],
            ]),
        )
        .expect("the node answers");
    assert!(r.is_clean(), "{r}");
    let all = json!([[1, "a"], [2, "b"], [3, "c"]]);
    c.wait_all_applied().expect("every node catches up");
    for i in c.running() {
        assert_eq!(
            c.query_rows(i, sql, Level::None).expect("local read"),
            all,
            "node {}: the rolled-back batch left nothing behind",
            c.id(i)
        );
    }

    // /db/request runs writes and reads in one request.
    let r = c
        .post(
            f,
            "/db/request",
            &[],
            &json!([
                ["INSERT INTO t(v) VALUES(?)", "d"],
                "SELECT COUNT(*) FROM t"
            ]),
        )
        .expect("the node answers");
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.result(0)["last_insert_id"], 4, "{r}");
    assert_eq!(r.result(1)["values"], json!([[4]]), "{r}");

    // `timings` adds the time taken.
    let r = c
        .execute_with(
            f,
            &[("timings", "")],
            &json!([["INSERT INTO t(v) VALUES(?)", "e"]]),
        )
        .expect("the node answers");
    assert!(r.is_clean(), "{r}");
    assert!(r.body["time"].is_number(), "a top-level time: {r}");
}

#[test]
fn internal_rpc_requires_the_cluster_secret() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let f = c.followers().expect("followers")[0];
    c.execute_ok(
        leader,
        &json!(["CREATE TABLE t (x)", "INSERT INTO t VALUES(1)"]),
    )
    .expect("setup");

    // Requests that, if obeyed, would move the node to a huge term.
    const TERM: u64 = 1_000_000;
    let vote = json!({
        "vote": {"leader_id": {"term": TERM, "node_id": 99}, "committed": false},
        "last_log_id": null,
    });
    let append = json!({
        "vote": {"leader_id": {"term": TERM, "node_id": 99}, "committed": true},
        "prev_log_id": null,
        "entries": [],
        "leader_commit": null,
    });
    let wrong = [("x-cairn-secret", "wrong-secret")];
    let prefix = format!("{}-and-more", c.secret());
    let longer = [("x-cairn-secret", prefix.as_str())];
    for i in [f, leader] {
        let raft = format!("http://{}", c.raft_addr(i));
        for (path, body) in [
            ("/raft/0/vote", &vote),
            ("/raft/0/append", &append),
            ("/raft/0/snapshot", &append),
        ] {
            for headers in [&[][..], &wrong[..], &longer[..]] {
                let r = c
                    .http()
                    .post_with_headers(&raft, path, headers, body)
                    .expect("the Raft port answers");
                assert_eq!(
                    r.status,
                    401,
                    "node {} {path} with headers {headers:?}: {r}",
                    c.id(i)
                );
            }
        }
    }

    // Nothing changed: no node moved to the term in the refused requests, the leader and
    // membership are the same, and the cluster still takes writes.
    for i in c.running() {
        let s = c.raft_status(i).expect("status");
        assert!(s.term < TERM, "node {}: {s:?}", c.id(i));
        assert_eq!(s.voters, vec![1, 2, 3], "node {}: {s:?}", c.id(i));
        assert_ne!(s.leader_id, Some(99), "node {}: {s:?}", c.id(i));
    }
    assert_eq!(c.leader().expect("leader"), leader);
    c.execute_ok(f, &json!(["INSERT INTO t VALUES(2)"]))
        .expect("the cluster still takes writes");

    // With the right secret the request gets past the check (it may still be refused as
    // malformed, but not as unauthorized).
    let raft = format!("http://{}", c.raft_addr(f));
    let r = c
        .http()
        .post_with_headers(
            &raft,
            "/raft/0/vote",
            &[("x-cairn-secret", c.secret())],
            &json!({}),
        )
        .expect("the Raft port answers");
    assert_ne!(r.status, 401, "the right secret is accepted: {r}");
}
