//! `cairn backup` and `cairn restore` against a 3-node cluster of real processes: a
//! database of several tables (every storage class, NULL, BLOBs, an index, a view, a
//! trigger) backed up as a SQLite file and as a SQL dump, restored into fresh databases,
//! and compared table by table; a failed backup leaves no file. And `cairn status` prints
//! every node, and says which one no longer answers.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use cairn_testkit::{wait_for, Cluster, Level, ProcessCluster};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// How long one `cairn` command may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `cairn ARGS` (stdin empty), bounded by [`RUN_TIMEOUT`]; returns its exit status,
/// stdout and stderr.
fn run_cairn(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn starts");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let status = wait_for(RUN_TIMEOUT, "cairn to exit", || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("still running".to_string()),
        Err(e) => Err(e.to_string()),
    });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e}");
        }
    };
    (
        status,
        reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default(),
    )
}

/// Fills database `db` with tables of every kind of value.
fn fill(cluster: &ProcessCluster, node: usize, db: &str) {
    let r =
        cluster
            .execute_with(
                node,
                &[("db", db)],
                &json!([
                "CREATE TABLE kinds (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, \
                 anything)",
                ["INSERT INTO kinds(i, r, t, b, anything) VALUES (?, ?, ?, x'00ff10', ?)",
                    i64::MAX, 1.5, "plain", 7],
                ["INSERT INTO kinds(i, r, t, b, anything) VALUES (?, ?, ?, x'', ?)",
                    i64::MIN, -0.25, "quote ' and \"double\"; semicolon\nnew line", "text"],
                "INSERT INTO kinds(i, r, t, b, anything) VALUES (NULL, NULL, NULL, NULL, NULL)",
                "INSERT INTO kinds(i, r, t, b, anything) VALUES (0, 1e300, 'ünïcødé ✓', \
                 randomblob(64), 2.0)",
                "CREATE TABLE pairs (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID",
                "INSERT INTO pairs VALUES ('b', 2), ('a', 1), ('c', 3)",
                "CREATE INDEX pairs_by_v ON pairs(v)",
                "CREATE VIEW big_pairs AS SELECT k FROM pairs WHERE v > 1",
                "CREATE TABLE audit (n INTEGER)",
                "CREATE TRIGGER pairs_audit AFTER INSERT ON pairs BEGIN \
                 INSERT INTO audit VALUES (NEW.v); END",
                "INSERT INTO pairs VALUES ('d', 4)",
                "CREATE TABLE empty (x TEXT)",
            ]),
            )
            .expect("the node answers");
    assert!(r.is_success() && r.slot_errors().is_empty(), "{r}");
}

/// `sqlite_master` of `db`, without Cairn's own tables, in a fixed order.
fn schema(cluster: &ProcessCluster, node: usize, db: &str) -> Value {
    query(
        cluster,
        node,
        db,
        "SELECT type, name, tbl_name, sql FROM sqlite_master \
         WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name",
    )
}

fn query(cluster: &ProcessCluster, node: usize, db: &str, sql: &str) -> Value {
    let r = cluster
        .post(
            node,
            "/db/query",
            &[
                ("db", db),
                ("level", Level::Strong.as_str()),
                ("blob_array", ""),
            ],
            &json!([sql]),
        )
        .expect("the node answers");
    assert!(r.is_success() && r.slot_errors().is_empty(), "{sql}: {r}");
    r.rows()
}

/// Asserts that `copy` holds what `original` holds: the same schema, and in every table
/// the same rows (values with their types: `blob_array` tells BLOBs from TEXT, and JSON
/// tells 2 from 2.0).
#[track_caller]
fn assert_same(cluster: &ProcessCluster, node: usize, original: &str, copy: &str) {
    let expected = schema(cluster, node, original);
    assert_eq!(schema(cluster, node, copy), expected, "schema of {copy}");
    let tables: Vec<String> = expected
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row[0] == "table")
        .filter_map(|row| row[1].as_str().map(str::to_string))
        .collect();
    assert_eq!(tables, ["audit", "empty", "kinds", "pairs"]);
    for table in tables {
        let sql = format!("SELECT * FROM \"{table}\" ORDER BY 1");
        let rows = query(cluster, node, original, &sql);
        assert_eq!(query(cluster, node, copy, &sql), rows, "rows of {table}");
        if table != "empty" {
            assert!(
                rows.as_array().is_some_and(|r| !r.is_empty()),
                "{table} has rows"
            );
        }
    }
}

fn no_partial_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("listing the directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect()
}

#[test]
fn a_backup_restored_into_a_fresh_database_is_equal_table_by_table() {
    let cluster = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = cluster.leader().expect("a leader");
    let follower = cluster.followers().expect("followers")[0];
    let r = cluster
        .post(leader, "/v1/databases", &[], &json!({"name": "shop"}))
        .expect("the leader answers");
    assert!(r.is_success(), "{r}");
    fill(&cluster, leader, "shop");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("shop.sqlite");
    let file_arg = file.to_str().expect("a UTF-8 path");

    // Backed up through a follower: the command fetches the leader's copy.
    let (status, stdout, stderr) = run_cairn(&[
        "backup",
        "--addr",
        &cluster.url(follower),
        "--db",
        "shop",
        file_arg,
    ]);
    assert!(status.success(), "backup: {stdout} {stderr}");
    assert!(stdout.contains("backed up database shop"), "{stdout}");
    let bytes = std::fs::read(&file).expect("the backup file exists");
    assert!(bytes.starts_with(b"SQLite format 3\0"), "a SQLite file");
    assert!(no_partial_files(dir.path()).is_empty());

    let (status, stdout, stderr) = run_cairn(&[
        "restore",
        "--addr",
        &cluster.url(follower),
        "--db",
        "copy",
        "--create",
        file_arg,
    ]);
    assert!(status.success(), "restore: {stdout} {stderr}");
    assert!(stdout.contains("a database file"), "{stdout}");
    assert_same(&cluster, leader, "shop", "copy");

    // The same through a SQL dump.
    let dump = dir.path().join("shop.sql");
    let dump_arg = dump.to_str().expect("a UTF-8 path");
    let (status, _, stderr) = run_cairn(&[
        "backup",
        "--addr",
        &cluster.url(leader),
        "--db",
        "shop",
        "--sql",
        dump_arg,
    ]);
    assert!(status.success(), "dump: {stderr}");
    let text = std::fs::read_to_string(&dump).expect("the dump exists");
    assert!(text.contains("CREATE TABLE kinds"), "{text}");
    let (status, stdout, stderr) = run_cairn(&[
        "restore",
        "--addr",
        &cluster.url(follower),
        "--db",
        "copy2",
        "--create",
        dump_arg,
    ]);
    assert!(status.success(), "restore of the dump: {stdout} {stderr}");
    assert!(stdout.contains("a SQL script"), "{stdout}");
    assert_same(&cluster, leader, "shop", "copy2");

    // Restoring replaces: rows written to the copy since are gone again.
    cluster
        .execute_with(leader, &[("db", "copy")], &json!(["DELETE FROM pairs"]))
        .expect("the leader answers");
    let (status, _, stderr) = run_cairn(&[
        "restore",
        "--addr",
        &cluster.url(leader),
        "--db",
        "copy",
        file_arg,
    ]);
    assert!(status.success(), "{stderr}");
    assert_same(&cluster, leader, "shop", "copy");

    // A failed backup leaves the old file as it was and no partial file.
    std::fs::write(&file, b"the old backup").expect("writing");
    let (status, _, stderr) = run_cairn(&[
        "backup",
        "--addr",
        &cluster.url(follower),
        "--db",
        "nope",
        file_arg,
    ]);
    assert!(!status.success());
    assert!(stderr.contains("database_not_found"), "{stderr}");
    assert_eq!(std::fs::read(&file).expect("the file"), b"the old backup");
    assert!(no_partial_files(dir.path()).is_empty());

    // Restoring something that is not SQL reports the API's error with its code.
    let junk = dir.path().join("junk.sql");
    std::fs::write(&junk, "this is not sql").expect("writing");
    let (status, _, stderr) = run_cairn(&[
        "restore",
        "--addr",
        &cluster.url(leader),
        "--db",
        "copy",
        junk.to_str().expect("a UTF-8 path"),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("sql_error"), "{stderr}");
    assert_same(&cluster, leader, "shop", "copy");
}

#[test]
fn status_prints_every_node_and_which_one_is_down() {
    let mut cluster = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = cluster.leader().expect("a leader");
    let (status, stdout, stderr) = run_cairn(&["status", "--addr", &cluster.url(0)]);
    assert!(status.success(), "{stdout} {stderr}");
    for i in 0..3 {
        let url = cluster.url(i);
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("{url} ")))
            .unwrap_or_else(|| panic!("a line for {url}: {stdout}"));
        let role = if i == leader { "Leader" } else { "Follower" };
        assert!(line.contains(role), "{line}");
        assert!(line.contains(&format!("| {} ", cluster.id(i))), "{line}");
    }
    assert!(
        stdout.contains("| ID ") && stdout.contains("COMMIT"),
        "{stdout}"
    );

    let (status, stdout, _) = run_cairn(&["status", "--addr", &cluster.url(0), "-w", "json"]);
    assert!(status.success());
    let nodes: Value = serde_json::from_str(&stdout).expect("JSON");
    let nodes = nodes.as_array().expect("an array");
    assert_eq!(nodes.len(), 3);
    assert_eq!(
        nodes.iter().filter(|n| n["is_leader"] == true).count(),
        1,
        "{stdout}"
    );
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["id"], (i + 1).to_string());
        assert_eq!(node["reachable"], true);
        assert!(
            node["commit_index"].as_u64().is_some_and(|c| c > 0),
            "{node}"
        );
        assert!(
            node["db_size_bytes"].as_u64().is_some_and(|c| c > 0),
            "{node}"
        );
    }

    // A killed follower shows as unreachable, and the command fails.
    let victim = cluster.followers().expect("followers")[0];
    cluster.kill(victim).expect("the follower is killed");
    let asked = if victim == 0 { 1 } else { 0 };
    let (status, stdout, stderr) = run_cairn(&["status", "--addr", &cluster.url(asked)]);
    assert!(!status.success());
    assert!(stderr.contains("1 of 3 nodes did not answer"), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains(&format!("{} ", cluster.url(victim))))
        .unwrap_or_else(|| panic!("a line for the killed node: {stdout}"));
    assert!(line.contains("false"), "{line}");
}
