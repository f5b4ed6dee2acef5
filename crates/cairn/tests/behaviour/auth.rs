//! Users and permissions on a real cluster (`--auth`): a follower checks the caller's
//! permission before it forwards anything, refusals change nothing on any replica,
//! per-database grants stay on their database, and nodes still form, join and poll each
//! other with the cluster secret. The per-route matrix is `cairn-api`'s `auth_tests`.

use cairn_testkit::{Cluster, ClusterOptions, Formation, HttpClient, Level, TestCluster};
use serde_json::{json, Value};

fn auth_file() -> String {
    let admin = cairn_auth::hash_password("admin-pw").expect("hash");
    json!([
        {"username": "admin", "password": admin, "perms": ["all"]},
        {"username": "reader", "password": "reader-pw", "perms": ["query"]},
        {"username": "writer", "password": "writer-pw", "perms": ["query", "execute"]},
        {"username": "school_app", "password": "school-pw",
         "perms": [{"db": "school", "perms": ["query", "execute", "schema"]}]},
        {"username": "*", "perms": ["ready"]},
    ])
    .to_string()
}

fn cluster(formation: Formation) -> TestCluster {
    TestCluster::start_with(ClusterOptions {
        nodes: 3,
        formation,
        auth: Some(auth_file()),
        ..ClusterOptions::default()
    })
    .expect("a 3-node cluster with --auth forms: peers join and poll with the cluster secret")
}

fn client(user: &str, password: &str) -> HttpClient {
    HttpClient::as_user(user, password).expect("a client")
}

/// Rows of `t` on node `i`, read locally (the harness's client holds the cluster secret).
fn rows(c: &TestCluster, i: usize) -> Value {
    c.query_rows(i, "SELECT x FROM t ORDER BY x", Level::None)
        .expect("a local read")
}

#[test]
fn a_follower_refuses_before_forwarding_and_refusals_change_nothing() {
    let c = cluster(Formation::Join);
    let leader = c.leader().expect("a leader");
    c.execute_ok(leader, &json!(["CREATE TABLE t (x INTEGER)"]))
        .expect("setup");
    let f = c.followers().expect("followers")[0];
    let base = c.url(f);
    let insert = json!([["INSERT INTO t VALUES (?)", 1]]);

    let anon = HttpClient::new().expect("a client");
    let r = anon
        .post(&base, "/db/execute", &[], &insert)
        .expect("answered");
    assert_eq!(r.status, 401, "{r}");
    assert_eq!(r.code(), Some("unauthorized"));
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic")),
        "{r}"
    );
    let r = client("writer", "wrong")
        .post(&base, "/db/execute", &[], &insert)
        .expect("answered");
    assert_eq!((r.status, r.code()), (401, Some("unauthorized")), "{r}");

    // A reader stays a reader through a follower: refused there, with or without
    // `redirect`, and the leader never sees the write.
    let reader = client("reader", "reader-pw");
    for params in [&[][..], &[("redirect", "")][..]] {
        let r = reader
            .post(&base, "/db/execute", params, &insert)
            .expect("answered");
        assert_eq!(
            (r.status, r.code()),
            (403, Some("permission_denied")),
            "{r}"
        );
    }
    // `query` cannot write either, at any level: reads run on read-only connections.
    for level in ["none", "weak", "linearizable", "strong"] {
        let r = reader
            .post(
                &base,
                "/db/query",
                &[("level", level)],
                &json!(["INSERT INTO t VALUES (7)"]),
            )
            .expect("answered");
        assert!(!r.is_clean(), "level {level}: {r}");
    }
    let r = reader
        .post(&base, "/db/request", &[], &insert)
        .expect("answered");
    assert_eq!(r.status, 403, "/db/request needs execute too: {r}");
    let leader_before = c.raft_status(leader).expect("status").leader_id;
    let r = reader
        .post(&base, "/leader", &[], &json!({}))
        .expect("answered");
    assert_eq!(r.status, 403, "{r}");
    let r = reader
        .delete(&base, "/remove", Some(&json!({"id": c.id(leader)})))
        .expect("answered");
    assert_eq!(r.status, 403, "{r}");
    let r = reader.get(&base, "/status", &[]).expect("answered");
    assert_eq!(
        r.status, 403,
        "no status permission, no data directory: {r}"
    );
    let (status, _) = reader_bytes(&reader, &base, "/db/backup");
    assert_eq!(status, 403);

    // Nothing changed anywhere: no row, same leader, same voters.
    c.wait_all_applied().expect("replicas catch up");
    for i in c.running() {
        assert_eq!(rows(&c, i), json!([]), "node {}", c.id(i));
    }
    assert_eq!(
        c.raft_status(leader).expect("status").leader_id,
        leader_before
    );
    assert_eq!(c.raft_status(leader).expect("status").voters, vec![1, 2, 3]);

    // A writer's write through the same follower is forwarded and lands everywhere.
    let r = client("writer", "writer-pw")
        .post(&base, "/db/execute", &[], &insert)
        .expect("answered");
    assert!(r.is_clean(), "{r}");
    for i in c.running() {
        c.wait_rows(i, "SELECT x FROM t ORDER BY x", &json!([[1]]))
            .expect("the writer's row replicates");
    }
    let r = reader
        .get(
            &base,
            "/db/query",
            &[("q", "SELECT x FROM t"), ("level", "linearizable")],
        )
        .expect("answered");
    assert_eq!(r.rows(), json!([[1]]), "{r}");

    // Anonymous requests have `*`'s permissions; the admin (an argon2id hash) has all.
    assert_eq!(
        anon.get(&base, "/readyz", &[]).expect("answered").status,
        200
    );
    let admin = client("admin", "admin-pw");
    let s = admin.get(&base, "/status", &[]).expect("answered");
    assert_eq!(s.status, 200, "{s}");
    assert_eq!(s.body["http"]["auth"], json!("enabled"), "{s}");
    let nodes = admin.get(&base, "/nodes", &[]).expect("answered");
    assert_eq!(nodes.status, 200, "{nodes}");
    for (id, n) in nodes.body.as_object().expect("nodes by id") {
        assert_eq!(
            n["reachable"],
            json!(true),
            "peers poll each other with the secret: node {id}: {n}"
        );
    }
}

fn reader_bytes(client: &HttpClient, base: &str, path: &str) -> (u16, Vec<u8>) {
    client.get_bytes(base, path, &[]).expect("answered")
}

#[test]
fn per_database_grants_stay_on_their_database() {
    let c = cluster(Formation::BootstrapExpect);
    let f = c.followers().expect("followers")[0];
    let base = c.url(f);
    let app = client("school_app", "school-pw");

    let r = app
        .post(&base, "/v1/databases", &[], &json!({"name": "school"}))
        .expect("answered");
    assert_eq!(r.status, 201, "{r}");
    let r = app
        .post(&base, "/v1/databases/school/tables", &[],
            &json!({"name": "students", "columns": [{"name": "id", "type": "INTEGER", "primary_key": true}, {"name": "name", "type": "TEXT"}]}))
        .expect("answered");
    assert_eq!(r.status, 201, "{r}");
    let r = app
        .post(
            &base,
            "/v1/databases/school/tables/students/rows",
            &[],
            &json!({"name": "ada"}),
        )
        .expect("answered");
    assert!(r.is_success(), "{r}");
    let r = app
        .post(
            &base,
            "/db/execute",
            &[("db", "school")],
            &json!([["INSERT INTO students(name) VALUES (?)", "bob"]]),
        )
        .expect("answered");
    assert!(r.is_clean(), "{r}");

    // Not on main, not another database, not the cluster.
    let r = app
        .post(
            &base,
            "/db/execute",
            &[],
            &json!(["CREATE TABLE stolen (x)"]),
        )
        .expect("answered");
    assert_eq!(
        (r.status, r.code()),
        (403, Some("permission_denied")),
        "{r}"
    );
    let r = app
        .post(&base, "/v1/databases", &[], &json!({"name": "other"}))
        .expect("answered");
    assert_eq!(r.status, 403, "{r}");
    let r = app
        .post(
            &base,
            "/insert",
            &[],
            &json!({"db_name": "main", "table": "t", "data": {"x": 1}}),
        )
        .expect("answered");
    assert_eq!(
        r.status, 403,
        "a seed route reads the database from the body: {r}"
    );
    let r = app.get(&base, "/status", &[]).expect("answered");
    assert_eq!(r.status, 403, "{r}");
    let listed = app.get(&base, "/v1/databases", &[]).expect("answered");
    assert_eq!(listed.status, 200, "{listed}");

    let main_tables = c
        .query_rows(
            f,
            "SELECT name FROM sqlite_master WHERE name = 'stolen'",
            Level::Linearizable,
        )
        .expect("a read");
    assert_eq!(main_tables, json!([]), "nothing was created in main");
    let databases = c.get(f, "/v1/databases", &[]).expect("answered");
    assert!(!databases.text.contains("\"other\""), "{databases}");
    let r = app
        .get(
            &base,
            "/db/query",
            &[
                ("db", "school"),
                ("q", "SELECT name FROM students ORDER BY id"),
                ("level", "linearizable"),
            ],
        )
        .expect("answered");
    assert_eq!(r.rows(), json!([["ada"], ["bob"]]), "{r}");
}
