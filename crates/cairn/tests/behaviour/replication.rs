//! Replication: what a client writes through any node is on every node, and reads at
//! every consistency level see it.

use cairn_testkit::{Cluster, Level, TestCluster};
use serde_json::json;

const CREATE_FOO: &str = "CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT)";

#[test]
fn writes_on_the_leader_reach_every_node() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");

    let r = c
        .execute_ok(
            leader,
            &json!([
                CREATE_FOO,
                ["INSERT INTO foo(name) VALUES(?)", "fiona"],
                ["INSERT INTO foo(name) VALUES(?)", "declan"],
                ["INSERT INTO foo(id, name) VALUES(:id, :name)", {"id": 7, "name": "sinead"}],
            ]),
        )
        .expect("the batch is applied on the leader");
    assert_eq!(r.results().len(), 4, "one result per statement: {r}");
    assert_eq!(r.result(1)["last_insert_id"], 1, "{r}");
    assert_eq!(r.result(1)["rows_affected"], 1, "{r}");
    assert_eq!(r.result(2)["last_insert_id"], 2, "{r}");
    assert_eq!(r.result(3)["last_insert_id"], 7, "named parameters: {r}");

    // Once every node has applied the leader's commit index, a local read on each node
    // returns exactly what was written.
    c.wait_all_applied()
        .expect("every node applies the leader's commit index");
    let expected = json!([[1, "fiona"], [2, "declan"], [7, "sinead"]]);
    for i in c.running() {
        let r = c
            .query(i, "SELECT id, name FROM foo ORDER BY id", Level::None)
            .expect("a local read is answered");
        assert_eq!(r.status, 200, "node {}: {r}", c.id(i));
        assert_eq!(r.result(0)["columns"], json!(["id", "name"]), "{r}");
        assert_eq!(r.result(0)["types"], json!(["integer", "text"]), "{r}");
        assert_eq!(r.rows(), expected, "node {} has every row", c.id(i));
    }

    // Updates and deletes are replicated too.
    let r = c
        .execute_ok(
            leader,
            &json!([
                ["UPDATE foo SET name = ? WHERE id = ?", "fiona2", 1],
                "DELETE FROM foo WHERE id = 2",
            ]),
        )
        .expect("update and delete are applied");
    assert_eq!(r.result(0)["rows_affected"], 1, "{r}");
    assert_eq!(r.result(1)["rows_affected"], 1, "{r}");
    for i in c.running() {
        c.wait_rows(
            i,
            "SELECT id, name FROM foo ORDER BY id",
            &json!([[1, "fiona2"], [7, "sinead"]]),
        )
        .expect("every node sees the update and the delete");
    }
}

#[test]
fn followers_forward_writes_and_serve_every_consistency_level() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let followers = c.followers().expect("a leader is elected");
    let (f, g) = (followers[0], followers[1]);

    // A write sent to a follower is forwarded to the leader transparently.
    let r = c
        .execute(
            f,
            &json!([CREATE_FOO, ["INSERT INTO foo(name) VALUES(?)", "fiona"]]),
        )
        .expect("the follower answers");
    assert!(r.is_clean(), "a write through a follower succeeds: {r}");
    assert_eq!(r.result(1)["last_insert_id"], 1, "{r}");

    // Reads at weak, linearizable and strong go through the leader, so they see the
    // write at once, on every node, without waiting for replication.
    let sql = "SELECT id, name FROM foo ORDER BY id";
    for i in c.running() {
        for level in [Level::Weak, Level::Linearizable, Level::Strong] {
            let rows = c.query_rows(i, sql, level).expect("the read is answered");
            assert_eq!(
                rows,
                json!([[1, "fiona"]]),
                "node {} at level {}",
                c.id(i),
                level.as_str()
            );
        }
    }

    // A write through the other follower is read right away through the first one.
    c.execute_ok(g, &json!([["INSERT INTO foo(name) VALUES(?)", "declan"]]))
        .expect("a write through the second follower succeeds");
    let both = json!([[1, "fiona"], [2, "declan"]]);
    assert_eq!(
        c.query_rows(f, sql, Level::Linearizable)
            .expect("linearizable read"),
        both,
        "a linearizable read on one follower sees a write made through another"
    );

    // Level none reads the local copy: after catching up, every node has both rows.
    c.wait_all_applied().expect("every node catches up");
    for i in c.running() {
        assert_eq!(
            c.query_rows(i, sql, Level::None).expect("local read"),
            both,
            "node {}",
            c.id(i)
        );
    }

    // rqlite's associative form: one object per row.
    let r = c
        .query_with(f, &[("q", sql), ("level", "strong"), ("associative", "")])
        .expect("associative read");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.result(0)["rows"],
        json!([{"id": 1, "name": "fiona"}, {"id": 2, "name": "declan"}]),
        "{r}"
    );
    assert_eq!(
        r.result(0)["types"],
        json!({"id": "integer", "name": "text"}),
        "{r}"
    );

    // POST /db/query with a parameterized statement in the body.
    let r = c
        .post(
            f,
            "/db/query",
            &[("level", "weak")],
            &json!([["SELECT name FROM foo WHERE id = ?", 2]]),
        )
        .expect("POST query");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.rows(), json!([["declan"]]), "{r}");

    // A query with no matching row omits `values` but keeps the columns.
    let r = c
        .query(f, "SELECT id FROM foo WHERE id > 100", Level::Weak)
        .expect("empty read");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.result(0)["columns"], json!(["id"]), "{r}");
    assert!(r.result(0).get("values").is_none(), "no values key: {r}");
}

#[test]
fn redirect_sends_clients_to_the_leader() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let f = c.followers().expect("followers")[0];
    c.execute_ok(
        leader,
        &json!([CREATE_FOO, ["INSERT INTO foo(name) VALUES(?)", "fiona"]]),
    )
    .expect("setup writes");
    let sql = "SELECT id, name FROM foo ORDER BY id";
    let count = "SELECT COUNT(*) FROM foo";

    // A read with `redirect` on a follower answers 301 with the leader's URL.
    let r = c
        .query_with(f, &[("q", sql), ("level", "weak"), ("redirect", "")])
        .expect("the follower answers");
    assert_eq!(r.status, 301, "{r}");
    let location = r.header("location").expect("a Location header").to_string();
    assert!(
        location.starts_with(&c.url(leader)),
        "Location {location} points at the leader {}",
        c.url(leader)
    );
    // Following it gives the answer.
    let followed = c.http().get(&location, "", &[]).expect("GET Location");
    assert_eq!(followed.status, 200, "{followed}");
    assert_eq!(followed.rows(), json!([[1, "fiona"]]), "{followed}");

    // A write with `redirect` on a follower is redirected, not applied.
    let r = c
        .execute_with(
            f,
            &[("redirect", "")],
            &json!([["INSERT INTO foo(name) VALUES(?)", "declan"]]),
        )
        .expect("the follower answers");
    assert_eq!(r.status, 301, "{r}");
    let location = r.header("location").expect("a Location header");
    assert!(location.starts_with(&c.url(leader)), "{location}");
    assert_eq!(
        c.query_rows(leader, count, Level::Strong).expect("count"),
        json!([[1]]),
        "a redirected write is not applied"
    );

    // On the leader, `redirect` changes nothing.
    let r = c
        .query_with(leader, &[("q", sql), ("level", "weak"), ("redirect", "")])
        .expect("the leader answers");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.rows(), json!([[1, "fiona"]]), "{r}");
    let r = c
        .execute_with(
            leader,
            &[("redirect", "")],
            &json!([["INSERT INTO foo(name) VALUES(?)", "declan"]]),
        )
        .expect("the leader answers");
    assert!(r.is_clean(), "{r}");
    assert_eq!(
        c.query_rows(leader, count, Level::Strong).expect("count"),
        json!([[2]])
    );
}
