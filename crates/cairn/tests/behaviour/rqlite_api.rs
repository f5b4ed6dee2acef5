//! rqlite API details clients depend on: value encodings (BLOB, dates, booleans,
//! `blob_array`, `associative`), non-deterministic SQL made deterministic on every replica,
//! `/db/request`, queued writes, `/db/backup` and `/db/load`, `text/plain` bodies and
//! `POST /leader`.

use std::time::Duration;

use cairn_testkit::{wait_for, wait_until, Cluster, Level, TestCluster, CATCH_UP_TIMEOUT};
use serde_json::{json, Value};

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("an HTTP client")
}

/// A follower decides whether a `/db/request` batch is a read by preparing it on its own
/// replica, which may not have applied the `CREATE TABLE` just acknowledged: a statement
/// that does not compile there counts as a write (rqlite's rule) and goes to the leader,
/// instead of being served as a read and refused.
#[test]
fn a_write_through_a_follower_is_never_taken_for_a_read() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let f = c.followers().expect("followers")[0];
    for n in 0..50 {
        let table = format!("pair_{n}");
        let r = c
            .post(
                f,
                "/db/request",
                &[],
                &json!([format!("CREATE TABLE {table} (a)")]),
            )
            .expect("create through the follower");
        assert!(r.is_clean(), "CREATE {n}: {r}");
        let r = c
            .post(
                f,
                "/db/request",
                &[],
                &json!([[format!("INSERT INTO {table} VALUES (?)"), n]]),
            )
            .expect("insert through the follower");
        assert!(r.is_clean(), "INSERT {n} right after its CREATE: {r}");
        assert_eq!(r.result(0)["rows_affected"], 1, "INSERT {n}: {r}");
    }
    let r = c
        .query(f, "SELECT count(*) FROM pair_49", Level::Linearizable)
        .expect("read");
    assert_eq!(r.rows(), json!([[1]]), "{r}");
}

#[test]
fn rqlite_api_details_hold_on_every_node() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let f = c.followers().expect("followers")[0];

    // Value encodings, written through a follower.
    c.execute_ok(
        f,
        &json!([
            "CREATE TABLE v (id INTEGER PRIMARY KEY, b BLOB, ts DATETIME, ok BOOLEAN, r REAL)",
            [
                "INSERT INTO v(b, ts, ok, r) VALUES(?, ?, ?, ?)",
                "x'0102ff'",
                "2024-03-01 10:20:30",
                true,
                1.5
            ]
        ]),
    )
    .expect("create and insert");
    let r = c
        .query_with(f, &[("q", "SELECT * FROM v"), ("level", "weak")])
        .expect("query");
    assert_eq!(
        r.result(0)["types"],
        json!(["integer", "blob", "datetime", "boolean", "real"]),
        "{r}"
    );
    assert_eq!(
        r.rows(),
        json!([[1, "AQL/", "2024-03-01T10:20:30Z", true, 1.5]]),
        "{r}"
    );
    let r = c
        .query_with(f, &[("q", "SELECT b FROM v"), ("blob_array", "")])
        .expect("query");
    assert_eq!(r.rows(), json!([[[1, 2, 255]]]), "{r}");
    let r = c
        .query_with(f, &[("q", "SELECT id, ok FROM v"), ("associative", "")])
        .expect("query");
    assert_eq!(r.result(0)["rows"], json!([{"id": 1, "ok": true}]), "{r}");
    assert_eq!(
        r.result(0)["types"],
        json!({"id": "integer", "ok": "boolean"}),
        "{r}"
    );

    // RANDOM(), RANDOMBLOB() and 'now' are replaced by literals before the log: every
    // replica stores the same values.
    c.execute_ok(
        f,
        &json!([
            "CREATE TABLE nd (a INTEGER, b BLOB, c TEXT)",
            "INSERT INTO nd VALUES (random(), randomblob(16), datetime('now'))",
            "INSERT INTO nd SELECT random(), randomblob(4), strftime('%s','now') FROM nd"
        ]),
    )
    .expect("non-deterministic inserts");
    c.wait_all_applied().expect("every node applies");
    let sql = "SELECT a, hex(b), c FROM nd ORDER BY rowid";
    let first = c.query_rows(0, sql, Level::None).expect("rows on node 1");
    assert_eq!(first.as_array().map(Vec::len), Some(2), "{first}");
    for i in 1..3 {
        assert_eq!(
            c.query_rows(i, sql, Level::None).expect("rows"),
            first,
            "node {}",
            c.id(i)
        );
    }

    // /db/request: a mixed batch goes through the log; an all-read batch is a query.
    let r = c
        .post(
            f,
            "/db/request",
            &[],
            &json!(["INSERT INTO v(r) VALUES(2.5)", "SELECT COUNT(*) FROM v"]),
        )
        .expect("request");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.result(0)["rows_affected"], 1, "{r}");
    assert_eq!(r.result(1)["values"], json!([[2]]), "{r}");
    let r = c
        .post(
            f,
            "/db/request",
            &[("level", "none")],
            &json!(["SELECT r FROM v WHERE id = 1"]),
        )
        .expect("request");
    assert_eq!(r.result(0)["values"], json!([[1.5]]), "{r}");

    // Queued writes answer at once with a sequence number; `wait` waits for the batch.
    let r = c
        .execute_with(
            f,
            &[("queue", ""), ("wait", "")],
            &json!([["INSERT INTO v(r) VALUES(?)", 9]]),
        )
        .expect("queued write");
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.body["sequence_number"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );
    assert_eq!(
        c.query_rows(f, "SELECT COUNT(*) FROM v WHERE r = 9", Level::Linearizable)
            .expect("count"),
        json!([[1]]),
        "a waited-for queued write is applied"
    );
    for k in 0..5 {
        let r = c
            .execute_with(
                leader,
                &[("queue", "")],
                &json!([["INSERT INTO v(r) VALUES(?)", 100 + k]]),
            )
            .expect("queued write");
        assert_eq!(r.status, 200, "{r}");
    }
    wait_until(CATCH_UP_TIMEOUT, "queued writes to be applied", || {
        c.query_rows(
            leader,
            "SELECT COUNT(*) FROM v WHERE r >= 100",
            Level::Linearizable,
        )
        .is_ok_and(|v| v == json!([[5]]))
    })
    .expect("queued writes are written");

    // A text/plain body is one statement.
    let r = http()
        .post(format!("{}/db/execute", c.url(f)))
        .header("Content-Type", "text/plain")
        .body("INSERT INTO v(r) VALUES(7)")
        .send()
        .expect("text/plain execute");
    assert_eq!(r.status().as_u16(), 200);

    // /db/backup: a SQLite file, or a SQL dump, of the follower's replica (served locally,
    // as in rqlite), so wait until it has applied everything.
    c.wait_all_applied().expect("every node applies");
    let backup = http()
        .get(format!("{}/db/backup", c.url(f)))
        .send()
        .and_then(|r| r.bytes())
        .expect("backup");
    assert!(backup.starts_with(b"SQLite format 3\0"), "a SQLite file");
    let dump = http()
        .get(format!("{}/db/backup?fmt=sql", c.url(f)))
        .send()
        .and_then(|r| r.text())
        .expect("dump");
    assert!(
        dump.contains("CREATE TABLE v") && dump.contains("INSERT INTO"),
        "{dump}"
    );

    // /db/load: the backup into another database, through a follower, on every node.
    let r = c
        .post(leader, "/v1/databases", &[], &json!({"name": "restored"}))
        .expect("create db");
    assert_eq!(r.status, 201, "{r}");
    let count_main = c
        .query_rows(leader, "SELECT COUNT(*) FROM v", Level::Linearizable)
        .expect("count");
    let r = http()
        .post(format!("{}/db/load?db=restored", c.url(f)))
        .body(backup.to_vec())
        .send()
        .expect("load");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());
    c.wait_all_applied().expect("every node applies the load");
    for i in 0..3 {
        let r = c
            .query_with(
                i,
                &[
                    ("q", "SELECT COUNT(*) FROM v"),
                    ("db", "restored"),
                    ("level", "none"),
                ],
            )
            .expect("count");
        assert_eq!(r.rows(), count_main, "node {}: {r}", c.id(i));
    }
    // Garbage and a failing script change nothing.
    let r = http()
        .post(format!("{}/db/load?db=restored", c.url(f)))
        .body(b"SQLite format 3\0 but then nothing valid at all".to_vec())
        .send()
        .expect("load garbage");
    assert_eq!(r.status().as_u16(), 400);
    let r = c
        .post_raw(
            f,
            "/db/load",
            &[("db", "restored")],
            "CREATE TABLE s (a); INSERT INTO nope VALUES (1);",
        )
        .expect("failing script");
    // rqlite runs a SQL script as one request and reports each statement's result.
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.results().len(), 2, "{r}");
    assert_eq!(r.result(1)["code"], "sql_error", "{r}");
    let r = c
        .post_raw(
            f,
            "/db/load",
            &[("db", "restored")],
            "CREATE TABLE s (a); INSERT INTO s VALUES (1); INSERT INTO s VALUES (2);",
        )
        .expect("script");
    assert_eq!(r.status, 200, "{r}");
    let r = c
        .query_with(
            f,
            &[
                ("q", "SELECT COUNT(*) FROM s"),
                ("db", "restored"),
                ("level", "linearizable"),
            ],
        )
        .expect("count");
    assert_eq!(r.rows(), json!([[2]]), "only the good script ran: {r}");
    let r = c
        .query_with(
            f,
            &[
                ("q", "SELECT COUNT(*) FROM v"),
                ("db", "restored"),
                ("level", "linearizable"),
            ],
        )
        .expect("count");
    assert_eq!(
        r.rows(),
        count_main,
        "the garbage load changed nothing: {r}"
    );
    // The node's own SQL dump (and sqlite3's, which has the same wrapper) loads as it is.
    let dump = http()
        .get(format!("{}/db/backup?db=restored&fmt=sql", c.url(f)))
        .send()
        .expect("a dump")
        .text()
        .expect("text");
    assert!(dump.contains("BEGIN TRANSACTION"), "{dump}");
    let r = c
        .post(leader, "/v1/databases", &[], &json!({"name": "from_dump"}))
        .expect("create");
    assert!(r.status < 300, "{r}");
    let r = c
        .post_raw(f, "/db/load", &[("db", "from_dump")], &dump)
        .expect("load a dump");
    assert_eq!(r.status, 200, "{r}");
    assert!(r.results().iter().all(|x| x.get("error").is_none()), "{r}");
    let r = c
        .query_with(
            f,
            &[
                ("q", "SELECT COUNT(*) FROM s"),
                ("db", "from_dump"),
                ("level", "linearizable"),
            ],
        )
        .expect("count");
    assert_eq!(r.rows(), json!([[2]]), "the dump's rows: {r}");

    // POST /leader hands leadership to another voter.
    let old = c.id(leader);
    let r = c.post(f, "/leader", &[], &json!({})).expect("step down");
    assert_eq!(r.status, 200, "{r}");
    let new: u64 = r.body["leader"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("the new leader's id");
    assert_ne!(new, old, "{r}");
    let seen = wait_for(
        CATCH_UP_TIMEOUT,
        "every node to follow the new leader",
        || {
            let ids: Vec<Value> = (0..3)
                .map(|i| {
                    c.status(i)
                        .map(|s| s["raft"]["leader_id"].clone())
                        .unwrap_or(Value::Null)
                })
                .collect();
            if ids.iter().all(|x| x.as_u64() == Some(new)) {
                Ok(ids)
            } else {
                Err(format!("{ids:?}"))
            }
        },
    )
    .expect("leadership moved");
    assert_eq!(seen.len(), 3);
    c.execute_ok(leader, &json!([["INSERT INTO v(r) VALUES(?)", 42]]))
        .expect("writes work after the transfer, through the old leader");
}

/// Asserts that `v[path...]` exists and satisfies `ok` (a JSON type check), with the whole
/// document in the failure message.
fn field<'a>(doc: &'a Value, path: &[&str], ok: fn(&Value) -> bool, what: &str) -> &'a Value {
    let mut v = doc;
    for k in path {
        v = &v[*k];
    }
    assert!(ok(v), "{} should be {what}, is {v}: {doc}", path.join("."));
    v
}

/// Issue 8 item 2: `/status` carries rqlite's sections (`build`, `http`, `node`, `os`,
/// `runtime`, `store`) with the types rqlite gives them (its `http/service.go`
/// `handleStatus` and `store/store.go` `Stats`), `store.ready` turns true once a leader is
/// known, and Cairn's own `raft` section stays.
#[test]
fn status_has_rqlite_sections_and_store_ready() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let leader_id = c.id(leader).to_string();
    for i in c.running() {
        let s = wait_for(CATCH_UP_TIMEOUT, "store.ready and a known leader", || {
            let s = c.status(i).map_err(|e| format!("{e:#}"))?;
            if s["store"]["ready"] == true && s["store"]["leader"]["node_id"] == leader_id.as_str()
            {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        })
        .expect("the node is ready");
        for k in ["version", "commit", "branch", "build_time"] {
            field(&s, &["build", k], Value::is_string, "a string");
        }
        let bind = field(&s, &["http", "bind_addr"], Value::is_string, "a string");
        assert_eq!(bind, &Value::from(c.http_addr(i).to_string()), "{s}");
        field(&s, &["http", "auth"], Value::is_string, "a string");
        let api = field(
            &s,
            &["http", "cluster", "api_addr"],
            Value::is_string,
            "a string",
        );
        assert_eq!(api, &Value::from(c.url(i)), "{s}");
        for k in ["start_time", "current_time", "uptime"] {
            field(&s, &["node", k], Value::is_string, "a string");
        }
        field(&s, &["os", "pid"], Value::is_u64, "a number");
        field(&s, &["os", "ppid"], Value::is_u64, "a number");
        field(&s, &["os", "executable"], Value::is_string, "a string");
        field(&s, &["os", "hostname"], Value::is_string, "a string");
        for k in ["GOOS", "GOARCH", "version"] {
            field(&s, &["runtime", k], Value::is_string, "a string");
        }
        field(&s, &["runtime", "num_cpu"], Value::is_u64, "a number");
        field(&s, &["runtime", "GOMAXPROCS"], Value::is_u64, "a number");

        // store: rqlite's names, node ids as strings, Raft numbers as numbers.
        field(&s, &["store", "open"], Value::is_boolean, "a bool");
        let id = field(&s, &["store", "node_id"], Value::is_string, "a string");
        assert_eq!(id, &Value::from(c.id(i).to_string()), "{s}");
        let addr = field(&s, &["store", "addr"], Value::is_string, "a string");
        assert_eq!(addr, &Value::from(c.raft_addr(i).to_string()), "{s}");
        let laddr = field(
            &s,
            &["store", "leader", "addr"],
            Value::is_string,
            "a string",
        );
        assert_eq!(laddr, &Value::from(c.raft_addr(leader).to_string()), "{s}");
        let state = field(
            &s,
            &["store", "raft", "state"],
            Value::is_string,
            "a string",
        );
        let want = if i == leader { "Leader" } else { "Follower" };
        assert_eq!(state, want, "{s}");
        for k in [
            "term",
            "last_log_index",
            "commit_index",
            "applied_index",
            "last_snapshot_index",
            "num_peers",
        ] {
            field(&s, &["store", "raft", k], Value::is_u64, "a number");
        }
        assert_eq!(s["store"]["raft"]["num_peers"], 2, "{s}");
        field(&s, &["store", "raft", "voter"], Value::is_boolean, "a bool");
        field(
            &s,
            &["store", "db_conf", "fk_constraints"],
            Value::is_boolean,
            "a bool",
        );
        field(&s, &["store", "dir_size"], Value::is_u64, "a number");
        field(
            &s,
            &["store", "dir_size_friendly"],
            Value::is_string,
            "a string",
        );
        field(
            &s,
            &["store", "sqlite3", "db_size"],
            Value::is_u64,
            "a number",
        );
        field(
            &s,
            &["store", "sqlite3", "version"],
            Value::is_string,
            "a string",
        );
        field(&s, &["store", "fsm_index"], Value::is_u64, "a number");
        field(
            &s,
            &["store", "db_applied_index"],
            Value::is_u64,
            "a number",
        );
        let nodes = field(&s, &["store", "nodes"], Value::is_array, "an array");
        assert_eq!(nodes.as_array().map(Vec::len), Some(3), "{s}");
        for n in nodes.as_array().into_iter().flatten() {
            field(n, &["id"], Value::is_string, "a string");
            field(n, &["addr"], Value::is_string, "a string");
            assert_eq!(n["suffrage"], "Voter", "{s}");
        }
        // The data directory is not disclosed.
        assert!(s["store"].get("dir").is_none(), "{s}");
        assert!(s["node"].get("data_dir").is_none(), "{s}");
        // Cairn's own sections stay.
        assert_eq!(s["node"]["id"], c.id(i), "{s}");
        assert_eq!(s["raft"]["leader_id"], c.id(leader), "{s}");
    }
}

/// Issue 8 item 3: every reachable entry of `/nodes` carries `version` (a string), `time`
/// (seconds the check took, a number) and `time_s` (the same as a Go duration string such
/// as `"1.234ms"`), as rqlite's `http/nodes.go` `Node.Test` sets them, in the `ver=2` list,
/// the legacy map keyed by id, and with `nonvoters`.
#[test]
fn nodes_entries_have_version_and_check_time() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let f = c.followers().expect("followers")[0];
    let check = |entry: &Value, doc: &Value| {
        field(entry, &["reachable"], |v| v == &Value::Bool(true), "true");
        let v = field(entry, &["version"], Value::is_string, "a string");
        assert_ne!(v, "", "{doc}");
        let t = field(entry, &["time"], Value::is_f64, "a float");
        assert!(t.as_f64().is_some_and(|t| t > 0.0 && t < 5.0), "{doc}");
        let ts = field(entry, &["time_s"], Value::is_string, "a string");
        let ts = ts.as_str().unwrap_or_default();
        assert!(
            ["ns", "µs", "ms", "s"].iter().any(|u| ts.ends_with(u))
                && ts.starts_with(|ch: char| ch.is_ascii_digit()),
            "time_s {ts:?} is a Go duration: {doc}"
        );
    };
    for i in [leader, f] {
        for params in [&[("ver", "2")][..], &[("ver", "2"), ("nonvoters", "")][..]] {
            let doc = wait_for(CATCH_UP_TIMEOUT, "three reachable nodes", || {
                let r = c.get(i, "/nodes", params).map_err(|e| format!("{e:#}"))?;
                let list = r.body["nodes"].as_array().cloned().unwrap_or_default();
                if r.status == 200 && list.len() == 3 && list.iter().all(|n| n["reachable"] == true)
                {
                    Ok(r.body)
                } else {
                    Err(r.to_string())
                }
            })
            .expect("/nodes?ver=2");
            for n in doc["nodes"].as_array().into_iter().flatten() {
                check(n, &doc);
            }
        }
        for params in [&[][..], &[("nonvoters", "")][..]] {
            let doc = wait_for(CATCH_UP_TIMEOUT, "three reachable nodes", || {
                let r = c.get(i, "/nodes", params).map_err(|e| format!("{e:#}"))?;
                let all = r
                    .body
                    .as_object()
                    .is_some_and(|m| m.len() == 3 && m.values().all(|n| n["reachable"] == true));
                if r.status == 200 && all {
                    Ok(r.body)
                } else {
                    Err(r.to_string())
                }
            })
            .expect("/nodes (legacy map)");
            for k in 0..3 {
                check(&doc[c.id(k).to_string()], &doc);
            }
        }
    }
}

/// BLOB parameters given as arrays of byte values (rqlite 8.31 and later), SQLite's error
/// text passed through unchanged, and a SQL script `/db/load` answered statement by
/// statement: the details rqlite clients match on.
#[test]
fn blob_arrays_error_text_and_script_results_follow_rqlite() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let f = c.followers().expect("followers")[0];
    c.execute_ok(
        f,
        &json!([
            "CREATE TABLE bl (id INTEGER PRIMARY KEY, b BLOB)",
            ["INSERT INTO bl(b) VALUES(?)", [83, 81, 76]],
        ]),
    )
    .expect("a BLOB given as a byte array is accepted");
    let r = c
        .query_with(
            f,
            &[
                ("q", "SELECT hex(b), typeof(b) FROM bl"),
                ("level", "strong"),
            ],
        )
        .expect("read");
    assert_eq!(r.rows(), json!([["53514C", "blob"]]), "{r}");
    let r = c
        .execute(f, &json!([["INSERT INTO bl(b) VALUES(?)", [1, 256]]]))
        .expect("answer");
    assert_eq!(r.status, 400, "a byte above 255 is refused: {r}");

    let r = c.execute(f, &json!(["SELEC 1"])).expect("answer");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.result(0)["error"], "near \"SELEC\": syntax error", "{r}");
    assert_eq!(r.result(0)["code"], "sql_error", "{r}");

    let r = c
        .post_raw(
            f,
            "/db/load",
            &[],
            "CREATE TABLE sc (a); INSERT INTO sc VALUES (1); INSERT INTO sc VALUES (2), (3);",
        )
        .expect("script");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.results().len(), 3, "one result per statement: {r}");
    assert_eq!(r.result(1)["last_insert_id"], 1, "{r}");
    assert_eq!(r.result(2)["rows_affected"], 2, "{r}");
    assert_eq!(r.result(2)["last_insert_id"], 3, "{r}");
}
