//! Seed 004 (`../shared/seeds/004_*.txt`): every curl example of its "Quick start", in
//! order, with the exact bodies (host and port changed), against a 3-node cluster, with
//! writes sent to followers as well as the leader; then the rest of its API table:
//! update and delete (refused without a condition, the document's "unsafe updates"),
//! conditions that try to smuggle SQL in (refused, table intact), `/delete-table`,
//! `/drop-db` (the leader only), `/metadata`, `/health` and `/security-check`.

use cairn_testkit::{wait_for, Cluster, Reply, TestCluster, CATCH_UP_TIMEOUT};
use serde_json::{json, Value};

/// The students' rows as `(student_id, name, grade)`, in id order.
fn students(r: &Reply) -> Vec<(i64, String, String)> {
    let mut v: Vec<(i64, String, String)> = r.body["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|o| {
                    (
                        o["student_id"].as_i64().unwrap_or(-1),
                        o["name"].as_str().unwrap_or_default().to_string(),
                        o["grade"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn row(id: i64, name: &str, grade: &str) -> (i64, String, String) {
    (id, name.to_string(), grade.to_string())
}

/// `POST /select {"db_name":"SchoolDB","table":"Students"}` with `level=none` on node `i`.
fn select_local(c: &TestCluster, i: usize) -> Reply {
    c.post(
        i,
        "/select",
        &[("level", "none")],
        &json!({"db_name": "SchoolDB", "table": "Students"}),
    )
    .expect("the node answers")
}

/// Waits until every node's own replica holds exactly `want`.
fn every_replica_has(c: &TestCluster, want: &[(i64, String, String)], what: &str) {
    for i in c.running() {
        wait_for(
            CATCH_UP_TIMEOUT,
            &format!("node {}: {what}", c.id(i)),
            || {
                let r = select_local(c, i);
                if r.status == 200 && students(&r) == want {
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
fn seed_004_quick_start_and_api_on_every_node() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let followers = c.followers().expect("followers");
    let (f1, f2) = (followers[0], followers[1]);

    // "Create databases on all shards", through a follower.
    let r = c
        .post(f1, "/create-db", &[], &json!({"db_name": "SchoolDB"}))
        .expect("create-db");
    assert_eq!(r.status, 201, "{r}");

    // "Create the table schema on all shards", through the leader.
    let r = c
        .post(
            leader,
            "/create-table",
            &[],
            &json!({
            "db_name": "SchoolDB",
            "table": "Students",
            "columns": {
            "student_id": "INT",
            "name": "VARCHAR(100)",
            "grade": "VARCHAR(5)"
            }
            }),
        )
        .expect("create-table");
    assert_eq!(r.status, 201, "{r}");

    // "Insert — routed to one shard", through the other follower.
    let r = c
        .post(
            f2,
            "/insert",
            &[],
            &json!({
            "db_name": "SchoolDB",
            "table": "Students",
            "shard_key": "1001",
            "data": {"student_id": "1001", "name": "Ali", "grade": "A"}
            }),
        )
        .expect("insert");
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.body["inserted"], 1, "{r}");
    assert_eq!(r.body["shard_key"], "1001", "{r}");

    // "Select — single shard (key provided)", on every node.
    let ali = vec![row(1001, "Ali", "A")];
    for i in c.running() {
        let r = c
            .post(
                i,
                "/select",
                &[],
                &json!({
                "db_name": "SchoolDB",
                "table": "Students",
                "shard_key": "1001",
                "condition": "student_id = 1001"
                }),
            )
            .expect("select with a key");
        assert_eq!(r.status, 200, "node {}: {r}", c.id(i));
        assert_eq!(students(&r), ali, "node {}: {r}", c.id(i));
        assert_eq!(r.body["count"], 1, "{r}");
        // The text "1001" was stored as the INT column's integer.
        assert_eq!(r.body["rows"][0]["student_id"], 1001, "{r}");
    }

    // "Select — scatter/gather all shards (no key)", on every node.
    for i in c.running() {
        let r = c
            .post(
                i,
                "/select",
                &[],
                &json!({"db_name": "SchoolDB", "table": "Students"}),
            )
            .expect("select without a key");
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(students(&r), ali, "node {}: {r}", c.id(i));
    }

    // "MapReduce count", through a follower.
    let r = c
        .post(
            f1,
            "/map-reduce-count",
            &[],
            &json!({"db_name": "SchoolDB", "table": "Students"}),
        )
        .expect("map-reduce-count");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["count"], 1, "{r}");
    every_replica_has(&c, &ali, "Ali");

    // More students, through each node.
    for (node, id, name, grade) in [
        (leader, "1002", "Sara", "B"),
        (f1, "1003", "Omar", "A"),
        (f2, "1004", "Lina", "C"),
    ] {
        let r = c
            .post(
                node,
                "/insert",
                &[],
                &json!({"db_name": "SchoolDB", "table": "Students", "shard_key": id,
                        "data": {"student_id": id, "name": name, "grade": grade}}),
            )
            .expect("insert");
        assert_eq!(r.status, 201, "{name} on node {}: {r}", c.id(node));
    }
    let mut all = vec![
        row(1001, "Ali", "A"),
        row(1002, "Sara", "B"),
        row(1003, "Omar", "A"),
        row(1004, "Lina", "C"),
    ];
    every_replica_has(&c, &all, "four students");

    // Conditions: the allowed grammar.
    for (cond, want) in [
        ("grade = 'A'", vec![1001, 1003]),
        ("grade IN ('B', 'C')", vec![1002, 1004]),
        ("name LIKE 'S%'", vec![1002]),
        ("student_id BETWEEN 1002 AND 1003", vec![1002, 1003]),
        ("NOT grade = 'A' AND student_id > 1002", vec![1004]),
        (
            "(grade = 'A' OR grade = 'C') AND student_id <> 1001",
            vec![1003, 1004],
        ),
        ("name IS NOT NULL", vec![1001, 1002, 1003, 1004]),
        ("name IS NULL", vec![]),
    ] {
        let r = c
            .post(
                f1,
                "/select",
                &[],
                &json!({"db_name": "SchoolDB", "table": "Students", "condition": cond}),
            )
            .expect("select");
        assert_eq!(r.status, 200, "{cond}: {r}");
        let got: Vec<i64> = students(&r).into_iter().map(|s| s.0).collect();
        assert_eq!(got, want, "{cond}: {r}");
        let r = c
            .post(
                f2,
                "/map-reduce-count",
                &[],
                &json!({"db_name": "SchoolDB", "table": "Students", "condition": cond}),
            )
            .expect("count");
        assert_eq!(r.body["count"], want.len(), "count where {cond}: {r}");
    }

    // /update with a condition, through a follower.
    let r = c
        .post(
            f2,
            "/update",
            &[],
            &json!({"db_name": "SchoolDB", "table": "Students", "shard_key": "1002",
                    "set": {"grade": "A"}, "condition": "student_id = 1002"}),
        )
        .expect("update");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["updated"], 1, "{r}");
    all[1] = row(1002, "Sara", "A");
    // Without a condition (or with an empty one): refused, nothing changed.
    for body in [
        json!({"db_name": "SchoolDB", "table": "Students", "set": {"grade": "F"}}),
        json!({"db_name": "SchoolDB", "table": "Students", "set": {"grade": "F"}, "condition": ""}),
        json!({"db_name": "SchoolDB", "table": "Students", "set": {"grade": "F"}, "condition": "  ", "shard_key": "1001"}),
    ] {
        for node in [leader, f1] {
            let r = c.post(node, "/update", &[], &body).expect("update");
            assert_eq!(r.status, 400, "{body}: {r}");
            assert_eq!(r.code(), Some("filter_required"), "{body}: {r}");
        }
    }
    every_replica_has(&c, &all, "Sara's grade updated, nothing else");

    // /delete with a condition, through the leader; refused without one.
    let r = c
        .post(
            leader,
            "/delete",
            &[],
            &json!({"db_name": "SchoolDB", "table": "Students", "condition": "student_id = 1004"}),
        )
        .expect("delete");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["deleted"], 1, "{r}");
    all.pop();
    for node in [leader, f2] {
        let r = c
            .post(
                node,
                "/delete",
                &[],
                &json!({"db_name": "SchoolDB", "table": "Students"}),
            )
            .expect("delete");
        assert_eq!(r.status, 400, "{r}");
        assert_eq!(r.code(), Some("filter_required"), "{r}");
    }
    every_replica_has(&c, &all, "Lina deleted, nothing else");

    // Conditions that try to run SQL: refused with 400 on every route, nothing run.
    for cond in [
        "1=1; DROP TABLE Students",
        "student_id = 1001; DROP TABLE Students",
        "student_id = (SELECT 1)",
        "student_id IN (SELECT student_id FROM Students)",
        "EXISTS (SELECT 1)",
        "load_extension('x') = 1",
        "randomblob(10) = 1",
        "name = 'x' UNION SELECT * FROM sqlite_master",
        "grade = 'A' OR sqlite_version() > '0'",
        "Students.grade = 'A'",
    ] {
        let body = json!({"db_name": "SchoolDB", "table": "Students", "condition": cond,
                          "set": {"grade": "F"}});
        for (node, path) in [
            (f1, "/select"),
            (leader, "/update"),
            (f2, "/delete"),
            (f1, "/map-reduce-count"),
        ] {
            let r = c.post(node, path, &[], &body).expect("the node answers");
            assert_eq!(r.status, 400, "{path} with {cond:?}: {r}");
            assert_eq!(r.code(), Some("bad_condition"), "{path} with {cond:?}: {r}");
        }
    }
    let r = c
        .get(
            leader,
            "/v1/databases/SchoolDB/tables",
            &[("level", "strong")],
        )
        .expect("tables");
    let tables: Vec<&str> = r.body["tables"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(tables, ["Students"], "the table is intact: {r}");
    every_replica_has(&c, &all, "the refused conditions changed nothing");

    // Bad requests.
    for (path, body, status, code) in [
        (
            "/select",
            json!({"db_name": "NoDB", "table": "Students"}),
            404,
            "database_not_found",
        ),
        (
            "/select",
            json!({"db_name": "SchoolDB", "table": "Teachers"}),
            404,
            "table_not_found",
        ),
        (
            "/select",
            json!({"db_name": "SchoolDB", "table": "Students", "condition": "age > 3"}),
            404,
            "column_not_found",
        ),
        (
            "/insert",
            json!({"db_name": "SchoolDB", "table": "Students"}),
            400,
            "missing_field",
        ),
        (
            "/create-table",
            json!({"db_name": "SchoolDB", "table": "T", "columns": {"a": "INT); DROP TABLE Students; --"}}),
            400,
            "bad_request",
        ),
        (
            "/create-table",
            json!({"db_name": "SchoolDB", "table": "Students", "columns": {"a": "INT"}}),
            409,
            "already_exists",
        ),
        (
            "/create-db",
            json!({"db_name": "SchoolDB"}),
            409,
            "database_exists",
        ),
        ("/create-db", json!({}), 400, "missing_field"),
    ] {
        let r = c.post(f2, path, &[], &body).expect("the node answers");
        assert_eq!(r.status, status, "{path} {body}: {r}");
        assert_eq!(r.code(), Some(code), "{path} {body}: {r}");
    }

    // /delete-table on a second table, through a follower.
    let r = c
        .post(
            f1,
            "/create-table",
            &[],
            &json!({"db_name": "SchoolDB", "table": "Courses", "columns": {"code": "VARCHAR(10)"}}),
        )
        .expect("create-table");
    assert_eq!(r.status, 201, "{r}");
    let r = c
        .post(
            f1,
            "/delete-table",
            &[],
            &json!({"db_name": "SchoolDB", "table": "Courses"}),
        )
        .expect("delete-table");
    assert_eq!(r.status, 200, "{r}");
    for i in c.running() {
        wait_for(CATCH_UP_TIMEOUT, "Courses to be gone", || {
            let r = c
                .get(
                    i,
                    "/v1/databases/SchoolDB/tables/Courses",
                    &[("level", "none")],
                )
                .map_err(|e| format!("{e:#}"))?;
            if r.status == 404 && r.code() == Some("table_not_found") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        })
        .expect("the deleted table is gone on every node");
    }

    // GET /metadata and GET /health on every node.
    for i in c.running() {
        let r = c.get(i, "/metadata", &[]).expect("metadata");
        assert_eq!(r.status, 200, "{r}");
        let role = if i == leader { "leader" } else { "follower" };
        assert_eq!(r.body["role"], role, "node {}: {r}", c.id(i));
        assert_eq!(r.body["node_id"], c.id(i), "{r}");
        assert_eq!(r.body["leader"]["api_addr"], c.url(leader), "{r}");
        assert_eq!(r.body["nodes"].as_array().map(Vec::len), Some(3), "{r}");
        let dbs: Vec<&str> = r.body["databases"]
            .as_array()
            .map(|d| d.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(dbs.contains(&"SchoolDB"), "node {}: {r}", c.id(i));

        let r = c.get(i, "/health", &[]).expect("health");
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.body["status"], "healthy", "node {}: {r}", c.id(i));
        let nodes = r.body["nodes"].as_array().cloned().unwrap_or_default();
        assert_eq!(nodes.len(), 3, "{r}");
        assert!(
            nodes.iter().all(|n| n["reachable"] == true),
            "every member answers: {r}"
        );
    }

    // POST /security-check: every node refuses its internal RPC without the secret.
    let r = c
        .post(f2, "/security-check", &[], &json!({}))
        .expect("check");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["secure"], true, "{r}");
    let checks = r.body["checks"].as_array().cloned().unwrap_or_default();
    assert_eq!(checks.len(), 3, "one check per node: {r}");
    for ch in &checks {
        assert_eq!(ch["without_secret"], 401, "{r}");
        assert_eq!(ch["wrong_secret"], 401, "{r}");
        assert_eq!(ch["refused"], true, "{r}");
    }

    // With all=true, an update without a condition is what the client asked for.
    let r = c
        .post(
            f1,
            "/update",
            &[("all", "true")],
            &json!({"db_name": "SchoolDB", "table": "Students", "set": {"grade": "P"}}),
        )
        .expect("update all");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["updated"], all.len(), "{r}");
    for s in &mut all {
        s.2 = "P".to_string();
    }
    every_replica_has(&c, &all, "every grade P");

    // /drop-db: refused on followers with the leader's address; done on the leader.
    for f in [f1, f2] {
        let r = c
            .post(f, "/drop-db", &[], &json!({"db_name": "SchoolDB"}))
            .expect("drop-db on a follower");
        assert_eq!(r.status, 403, "{r}");
        assert_eq!(r.code(), Some("not_leader"), "{r}");
        assert_eq!(r.body["leader"], Value::from(c.url(leader)), "{r}");
    }
    every_replica_has(&c, &all, "the refused drops kept the data");
    let r = c
        .post(leader, "/drop-db", &[], &json!({"db_name": "SchoolDB"}))
        .expect("drop-db on the leader");
    assert_eq!(r.status, 200, "{r}");
    for i in c.running() {
        wait_for(CATCH_UP_TIMEOUT, "SchoolDB to be gone", || {
            let r = select_local(&c, i);
            if r.status == 404 && r.code() == Some("database_not_found") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        })
        .expect("the dropped database is gone on every node");
    }
    let r = c
        .post(leader, "/drop-db", &[], &json!({"db_name": "SchoolDB"}))
        .expect("drop-db again");
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.code(), Some("database_not_found"), "{r}");
}
