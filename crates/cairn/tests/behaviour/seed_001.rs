//! Seed 001 (`../shared/seeds/001_*.txt`, "Sample API Usage"): its three requests run
//! verbatim against a 3-node cluster, through the leader (the document's master) and
//! through followers (its slaves, which it says can insert and search too), and every
//! node's own replica holds the rows afterwards.

use cairn_testkit::{wait_for, Cluster, Reply, TestCluster, CATCH_UP_TIMEOUT};
use serde_json::{json, Value};

/// The document's "Create Table" body.
fn create_table() -> Value {
    json!({
      "table_name": "students",
      "columns": ["id", "name", "grade"]
    })
}

/// The document's "Insert Record" body.
fn insert_ahmed() -> Value {
    json!({
      "table_name": "students",
      "row_id": "1",
      "data": {
        "id": "1",
        "name": "Ahmed",
        "grade": "A"
      }
    })
}

/// `GET /search?table=students&column=...&value=...` on node `i`, plus `extra` params.
fn search(c: &TestCluster, i: usize, column: &str, value: &str, extra: &[(&str, &str)]) -> Reply {
    let mut params = vec![("table", "students"), ("column", column), ("value", value)];
    params.extend_from_slice(extra);
    c.get(i, "/search", &params).expect("the node answers")
}

#[test]
fn seed_001_create_insert_and_search_on_every_node() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let followers = c.followers().expect("followers");

    // POST /create_table, on the master as the document says.
    let r = c
        .post(leader, "/create_table", &[], &create_table())
        .expect("create_table");
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.body["table"], "students", "{r}");
    // Again, through a follower: the table exists.
    let r = c
        .post(followers[0], "/create_table", &[], &create_table())
        .expect("create_table again");
    assert_eq!(r.status, 409, "{r}");
    assert_eq!(r.code(), Some("already_exists"), "{r}");

    // POST /insert, verbatim, through a follower; another row through the leader and
    // one through the other follower.
    let r = c
        .post(followers[0], "/insert", &[], &insert_ahmed())
        .expect("insert");
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.body["inserted"], 1, "{r}");
    assert_eq!(
        r.body["row_id"], "1",
        "the document's row_id is echoed: {r}"
    );
    for (node, id, name, grade) in [(leader, "2", "Sara", "B"), (followers[1], "3", "Omar", "A")] {
        let body = json!({
            "table_name": "students",
            "row_id": id,
            "data": {"id": id, "name": name, "grade": grade}
        });
        let r = c.post(node, "/insert", &[], &body).expect("insert");
        assert_eq!(r.status, 201, "insert {name} on node {}: {r}", c.id(node));
    }

    // GET /search?table=students&column=name&value=Ahmed, verbatim, on every node; and
    // every node's own replica (level=none) has all three rows.
    let ahmed = json!([{"id": "1", "name": "Ahmed", "grade": "A"}]);
    for i in c.running() {
        let r = search(&c, i, "name", "Ahmed", &[]);
        assert_eq!(r.status, 200, "node {}: {r}", c.id(i));
        assert_eq!(r.body["rows"], ahmed, "node {}: {r}", c.id(i));
        assert_eq!(r.body["count"], 1, "{r}");
        wait_for(CATCH_UP_TIMEOUT, "the replica to hold every row", || {
            let a = search(&c, i, "grade", "A", &[("level", "none")]);
            let b = search(&c, i, "name", "Sara", &[("level", "none")]);
            let want_a = json!([
                {"id": "1", "name": "Ahmed", "grade": "A"},
                {"id": "3", "name": "Omar", "grade": "A"},
            ]);
            let want_b = json!([{"id": "2", "name": "Sara", "grade": "B"}]);
            if a.body["rows"] == want_a && b.body["rows"] == want_b {
                Ok(())
            } else {
                Err(format!("{a}; {b}"))
            }
        })
        .expect("every node's replica has the rows");
    }

    // The table lives in the default database, visible through the REST API too.
    let r = c
        .get(leader, "/v1/databases/main/tables/students", &[])
        .expect("describe");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["rows"], 3, "{r}");

    // Searches that match nothing, and bad searches.
    let r = search(&c, followers[0], "name", "Nobody", &[]);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["rows"], json!([]), "{r}");
    let r = search(&c, followers[0], "name", "x' OR '1'='1", &[]);
    assert_eq!(r.body["rows"], json!([]), "a value is never SQL: {r}");
    let r = search(&c, followers[0], "age", "1", &[]);
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.code(), Some("column_not_found"), "{r}");
    let r = search(&c, followers[0], "name; DROP TABLE students", "1", &[]);
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.code(), Some("bad_identifier"), "{r}");
    let r = c
        .get(
            leader,
            "/search",
            &[("table", "teachers"), ("column", "name"), ("value", "x")],
        )
        .expect("search");
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.code(), Some("table_not_found"), "{r}");
    let r = c
        .get(leader, "/search", &[("column", "name"), ("value", "x")])
        .expect("search");
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.code(), Some("missing_field"), "{r}");

    // Bad inserts insert nothing.
    for (what, body, status, code) in [
        (
            "no data",
            json!({"table_name": "students", "row_id": "4"}),
            400,
            "missing_field",
        ),
        (
            "an unknown column",
            json!({"table_name": "students", "data": {"id": "4", "age": 9}}),
            404,
            "column_not_found",
        ),
        (
            "an unknown table",
            json!({"table_name": "teachers", "data": {"id": "4"}}),
            404,
            "table_not_found",
        ),
        (
            "data that is not an object",
            json!({"table_name": "students", "data": ["4"]}),
            400,
            "bad_request",
        ),
    ] {
        let r = c.post(followers[1], "/insert", &[], &body).expect("insert");
        assert_eq!(r.status, status, "{what}: {r}");
        assert_eq!(r.code(), Some(code), "{what}: {r}");
    }
    let r = c
        .post_raw(
            followers[1],
            "/insert",
            &[],
            "{\"table_name\": \"students\",",
        )
        .expect("malformed");
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.code(), Some("bad_request"), "{r}");
    let r = c
        .get(
            leader,
            "/v1/databases/main/tables/students",
            &[("level", "strong")],
        )
        .expect("describe");
    assert_eq!(r.body["rows"], 3, "refused inserts inserted nothing: {r}");
}
