//! Multiple databases: created, written and read on every node, dropped only through the
//! leader, and gone everywhere afterwards.

use cairn_testkit::{wait_for, wait_until, Cluster, Level, Reply, TestCluster, CATCH_UP_TIMEOUT};
use serde_json::{json, Value};

/// The names in a `GET /v1/databases` reply.
fn names(r: &Reply) -> Vec<String> {
    r.body["databases"]
        .as_array()
        .map(|dbs| {
            dbs.iter()
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn databases_are_created_written_and_dropped_cluster_wide() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let f = c.followers().expect("followers")[0];

    let r = c.get(leader, "/v1/databases", &[]).expect("list");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        names(&r),
        vec!["main".to_string()],
        "a new cluster has main only: {r}"
    );

    let r = c
        .post(leader, "/v1/databases", &[], &json!({"name": "school"}))
        .expect("create");
    assert_eq!(r.status, 201, "{r}");
    let r = c
        .post(leader, "/v1/databases", &[], &json!({"name": "school"}))
        .expect("create again");
    assert_eq!(
        r.status, 409,
        "creating an existing database conflicts: {r}"
    );

    for i in c.running() {
        wait_until(CATCH_UP_TIMEOUT, "school to be listed", || {
            c.get(i, "/v1/databases", &[])
                .is_ok_and(|r| r.status == 200 && names(&r).contains(&"school".to_string()))
        })
        .expect("every node lists the new database");
    }

    // Writes with db=school go to that database, also through a follower.
    let r = c
        .execute_with(
            f,
            &[("db", "school")],
            &json!([
                "CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT)",
                ["INSERT INTO students(name) VALUES(?)", "fiona"],
            ]),
        )
        .expect("write to school");
    assert!(r.is_clean(), "{r}");
    let sql = "SELECT id, name FROM students";
    for i in c.running() {
        wait_for(CATCH_UP_TIMEOUT, "the school row on every node", || {
            let r = c
                .query_with(i, &[("q", sql), ("level", "none"), ("db", "school")])
                .map_err(|e| format!("{e:#}"))?;
            if r.is_clean() && r.rows() == json!([[1, "fiona"]]) {
                Ok(())
            } else {
                Err(r.to_string())
            }
        })
        .expect("every node has the school row");
        let r = c
            .query_with(i, &[("q", sql), ("level", "strong"), ("db", "school")])
            .expect("strong read");
        assert_eq!(r.rows(), json!([[1, "fiona"]]), "{r}");
    }
    // The default database is another one.
    let r = c.query(leader, sql, Level::Strong).expect("read main");
    assert_eq!(r.status, 200, "{r}");
    let err = r.result(0)["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("no such table"),
        "main has no students table: {r}"
    );

    // Dropping through a follower is refused with the leader's URL.
    let r = c
        .delete(f, "/v1/databases/school", None)
        .expect("drop on a follower");
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(r.code(), Some("not_leader"), "{r}");
    assert_eq!(r.body["leader"], Value::from(c.url(leader)), "{r}");
    let r = c
        .query_with(leader, &[("q", sql), ("level", "strong"), ("db", "school")])
        .expect("read school");
    assert_eq!(
        r.rows(),
        json!([[1, "fiona"]]),
        "the refused drop changed nothing: {r}"
    );

    // Dropping through the leader works, and the database is gone on every node.
    let r = c
        .delete(leader, "/v1/databases/school", None)
        .expect("drop on the leader");
    assert_eq!(r.status, 200, "{r}");
    for i in c.running() {
        wait_for(CATCH_UP_TIMEOUT, "school to be gone", || {
            let r = c
                .query_with(i, &[("q", sql), ("level", "none"), ("db", "school")])
                .map_err(|e| format!("{e:#}"))?;
            if r.status == 404 && r.code() == Some("database_not_found") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        })
        .expect("a read of the dropped database is 404 on every node");
        let r = c.get(i, "/v1/databases", &[]).expect("list");
        assert_eq!(names(&r), vec!["main".to_string()], "{r}");
    }
    let r = c
        .execute_with(leader, &[("db", "school")], &json!(["SELECT 1"]))
        .expect("write to the dropped database");
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.code(), Some("database_not_found"), "{r}");

    // main is untouched.
    c.execute_ok(f, &json!(["CREATE TABLE still_here (x)"]))
        .expect("main still takes writes");
}
