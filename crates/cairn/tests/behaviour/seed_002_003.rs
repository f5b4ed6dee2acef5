//! Seeds 002 and 003 (`../shared/seeds/00[23]_*.txt`): `/ping`, `/createdb?name=mydb`
//! (003's curl example, verbatim), `/createtable` with the column definition string the
//! documents type into the dashboard (`id INT, name VARCHAR(255)`), `/insert`, `/select`,
//! `/update`, `/delete`, and `/dropdb`, which only the leader (the documents' master) may
//! do. Writes go through followers as well as the leader ("write operations from slaves
//! are forwarded to the master"), and every node's own replica sees them.

use cairn_testkit::{wait_for, Cluster, Reply, TestCluster, CATCH_UP_TIMEOUT};
use serde_json::{json, Value};

/// `GET /select?db=mydb&table=users&level=none` on node `i`, plus `extra` params.
fn select_local(c: &TestCluster, i: usize, extra: &[(&str, &str)]) -> Reply {
    let mut params = vec![("db", "mydb"), ("table", "users"), ("level", "none")];
    params.extend_from_slice(extra);
    c.get(i, "/select", &params).expect("the node answers")
}

/// Waits until every node's own replica returns `want` for `GET /select` of users.
fn every_replica_has(c: &TestCluster, want: &Value, what: &str) {
    for i in c.running() {
        wait_for(
            CATCH_UP_TIMEOUT,
            &format!("node {}: {what}", c.id(i)),
            || {
                let r = select_local(c, i, &[]);
                if r.status == 200 && &r.body["rows"] == want {
                    Ok(())
                } else {
                    Err(r.to_string())
                }
            },
        )
        .expect("every replica catches up");
    }
}

#[test]
fn seeds_002_003_ping_create_write_read_and_drop_on_every_node() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let followers = c.followers().expect("followers");
    let (f1, f2) = (followers[0], followers[1]);

    // GET /ping on every node: alive, with its id and role; one leader.
    let mut leaders = Vec::new();
    for i in c.running() {
        let r = c.get(i, "/ping", &[]).expect("ping");
        assert_eq!(r.status, 200, "node {}: {r}", c.id(i));
        assert_eq!(r.body["status"], "ok", "{r}");
        assert_eq!(r.body["node_id"], c.id(i), "{r}");
        match r.body["role"].as_str() {
            Some("leader") => leaders.push(i),
            Some("follower") => {}
            other => panic!("node {}: role {other:?}: {r}", c.id(i)),
        }
    }
    assert_eq!(leaders, vec![leader], "exactly the leader says it leads");

    // curl "http://localhost:8083/createdb?name=mydb" (seed 003), on the master.
    let r = c
        .get(leader, "/createdb", &[("name", "mydb")])
        .expect("createdb");
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.body["database"], "mydb", "{r}");
    let r = c
        .get(f1, "/createdb", &[("name", "mydb")])
        .expect("createdb again");
    assert_eq!(r.status, 409, "{r}");
    assert_eq!(r.code(), Some("database_exists"), "{r}");
    // POST through a follower creates another one.
    let r = c
        .post(f2, "/createdb", &[], &json!({"name": "other"}))
        .expect("createdb");
    assert_eq!(r.status, 201, "{r}");
    let r = c
        .get(f2, "/createdb", &[("name", "my-db")])
        .expect("bad name");
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.code(), Some("bad_identifier"), "{r}");
    let r = c.get(f2, "/createdb", &[]).expect("no name");
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.code(), Some("missing_field"), "{r}");

    // createtable: mydb, users, "id INT, name VARCHAR(255)" (seed 003), via a follower.
    let r = c
        .post(
            f1,
            "/createtable",
            &[],
            &json!({"db": "mydb", "table": "users", "columns": "id INT, name VARCHAR(255)"}),
        )
        .expect("createtable");
    assert_eq!(r.status, 201, "{r}");
    for i in c.running() {
        wait_for(CATCH_UP_TIMEOUT, "the users table on every node", || {
            let r = c
                .get(i, "/v1/databases/mydb/tables/users", &[("level", "none")])
                .map_err(|e| format!("{e:#}"))?;
            let cols: Vec<(String, String)> = r.body["columns"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            (
                                x["name"].as_str().unwrap_or_default().to_string(),
                                x["type"].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let want = [("id", "INT"), ("name", "VARCHAR(255)")]
                .map(|(a, b)| (a.to_string(), b.to_string()));
            if cols == want {
                Ok(())
            } else {
                Err(r.to_string())
            }
        })
        .expect("the column definition string gives typed columns everywhere");
    }
    // Definitions that are not a column list are refused, and create nothing.
    for (what, columns) in [
        (
            "a second statement",
            "id INT); DROP TABLE users; CREATE TABLE x (y INT",
        ),
        ("a bad name", "id-x INT"),
        ("an empty column", "id INT,, name TEXT"),
        ("a CHECK clause", "id INT CHECK (id > 0)"),
    ] {
        let r = c
            .post(
                leader,
                "/createtable",
                &[],
                &json!({"db": "mydb", "table": "bad", "columns": columns}),
            )
            .expect("createtable");
        assert_eq!(r.status, 400, "{what}: {r}");
        assert!(r.code().is_some(), "{what}: {r}");
    }
    let r = c
        .get(leader, "/v1/databases/mydb/tables", &[("level", "strong")])
        .expect("tables");
    assert_eq!(
        r.body["tables"].as_array().map(Vec::len),
        Some(1),
        "only users exists: {r}"
    );

    // /insert with db, table, data: through the leader and both followers.
    for (node, id, name) in [(leader, 1, "Alice"), (f1, 2, "Bob"), (f2, 3, "Carol")] {
        let r = c
            .post(
                node,
                "/insert",
                &[],
                &json!({"db": "mydb", "table": "users", "data": {"id": id, "name": name}}),
            )
            .expect("insert");
        assert_eq!(r.status, 201, "insert {name} on node {}: {r}", c.id(node));
        assert_eq!(r.body["inserted"], 1, "{r}");
    }
    let all = json!([
        {"id": 1, "name": "Alice"},
        {"id": 2, "name": "Bob"},
        {"id": 3, "name": "Carol"},
    ]);
    every_replica_has(&c, &all, "three users");

    // /select?db=mydb&table=users[&column=&value=] on every node.
    for i in c.running() {
        let r = c
            .get(i, "/select", &[("db", "mydb"), ("table", "users")])
            .expect("select");
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.body["rows"], all, "node {}: {r}", c.id(i));
        assert_eq!(r.body["count"], 3, "{r}");
        let r = select_local(&c, i, &[("column", "name"), ("value", "Bob")]);
        assert_eq!(r.body["rows"], json!([{"id": 2, "name": "Bob"}]), "{r}");
        let r = select_local(&c, i, &[("column", "id"), ("value", "3")]);
        assert_eq!(
            r.body["rows"],
            json!([{"id": 3, "name": "Carol"}]),
            "a number given as text matches an INT column: {r}"
        );
    }
    let r = c
        .get(f1, "/select", &[("db", "nope"), ("table", "users")])
        .expect("select");
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.code(), Some("database_not_found"), "{r}");
    let r = c
        .get(f1, "/select", &[("db", "mydb"), ("table", "nope")])
        .expect("select");
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.code(), Some("table_not_found"), "{r}");

    // /update with set and where, through a follower; refused without where.
    let r = c
        .post(
            f2,
            "/update",
            &[],
            &json!({"db": "mydb", "table": "users", "set": {"name": "Robert"}, "where": {"id": 2}}),
        )
        .expect("update");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["updated"], 1, "{r}");
    for body in [
        json!({"db": "mydb", "table": "users", "set": {"name": "X"}}),
        json!({"db": "mydb", "table": "users", "set": {"name": "X"}, "where": {}}),
    ] {
        let r = c.post(f1, "/update", &[], &body).expect("update");
        assert_eq!(r.status, 400, "{body}: {r}");
        assert_eq!(r.code(), Some("filter_required"), "{body}: {r}");
    }
    let r = c
        .post(
            f1,
            "/update",
            &[],
            &json!({"db": "mydb", "table": "users", "set": {"name": "X"}, "where": "id = 1"}),
        )
        .expect("update");
    assert_eq!(r.status, 400, "where must be an object: {r}");
    let renamed = json!([
        {"id": 1, "name": "Alice"},
        {"id": 2, "name": "Robert"},
        {"id": 3, "name": "Carol"},
    ]);
    every_replica_has(&c, &renamed, "Bob renamed, nothing else changed");

    // /delete with where, through the other follower; refused without where.
    let r = c
        .post(
            f1,
            "/delete",
            &[],
            &json!({"db": "mydb", "table": "users", "where": {"id": 1}}),
        )
        .expect("delete");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["deleted"], 1, "{r}");
    let r = c
        .post(f2, "/delete", &[], &json!({"db": "mydb", "table": "users"}))
        .expect("delete");
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.code(), Some("filter_required"), "{r}");
    let left = json!([{"id": 2, "name": "Robert"}, {"id": 3, "name": "Carol"}]);
    every_replica_has(&c, &left, "Alice deleted, nothing else");

    // /dropdb: refused on a follower with the leader's address, done on the leader.
    for f in [f1, f2] {
        let r = c
            .get(f, "/dropdb", &[("name", "mydb")])
            .expect("dropdb on a follower");
        assert_eq!(r.status, 403, "{r}");
        assert_eq!(r.code(), Some("not_leader"), "{r}");
        assert_eq!(r.body["leader"], Value::from(c.url(leader)), "{r}");
    }
    let r = c
        .get(
            leader,
            "/select",
            &[("db", "mydb"), ("table", "users"), ("level", "strong")],
        )
        .expect("select");
    assert_eq!(r.body["rows"], left, "the refused drops kept the data: {r}");
    let r = c
        .get(leader, "/dropdb", &[("name", "mydb")])
        .expect("dropdb on the leader");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["status"], "dropped", "{r}");
    let r = c
        .post(leader, "/dropdb", &[], &json!({"name": "other"}))
        .expect("dropdb by POST");
    assert_eq!(r.status, 200, "{r}");
    for i in c.running() {
        wait_for(CATCH_UP_TIMEOUT, "mydb to be gone", || {
            let r = select_local(&c, i, &[]);
            if r.status == 404 && r.code() == Some("database_not_found") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        })
        .expect("the dropped database is gone on every node");
    }
    let r = c
        .get(leader, "/dropdb", &[("name", "mydb")])
        .expect("dropdb again");
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.code(), Some("database_not_found"), "{r}");
}
