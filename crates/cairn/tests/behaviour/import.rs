//! `cairn import` end to end: the real binary imports Debian's iso-codes JSON files through
//! a follower, and every node ends up with every row; bad input fails cleanly; CSV column
//! types are inferred.
//!
//! Needs Debian's `iso-codes` package (`apt-get install iso-codes`; `.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cairn_testkit::{try_wait_for, Cluster, Level, TestCluster, CATCH_UP_TIMEOUT};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

const ISO_DIR: &str = "/usr/share/iso-codes/json";

/// `ISO_DIR/name`; fails the test (not skips it) when the package is missing.
fn iso_file(name: &str) -> PathBuf {
    let dir = Path::new(ISO_DIR);
    assert!(
        dir.is_dir(),
        "{ISO_DIR} is missing: this test imports Debian's iso-codes files; \
         run `apt-get install iso-codes` (.ci/run does)"
    );
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The number of objects in an iso-codes file: `{"3166-1": [ {...}, ... ]}`.
fn element_count(path: &Path) -> usize {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let arrays: Vec<&Vec<Value>> = v
        .as_object()
        .map(|m| m.values().filter_map(Value::as_array).collect())
        .unwrap_or_default();
    assert_eq!(
        arrays.len(),
        1,
        "{} should hold one array at the top level",
        path.display()
    );
    arrays[0].len()
}

/// Runs `cairn import ARGS` and returns its output.
fn import(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("import")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {BIN} import: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs an import that must succeed, checks its summary line, and returns that line.
fn import_ok(args: &[&str], rows: usize, target: &str) -> String {
    let out = import(args);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "cairn import {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    let line = stdout.trim().to_string();
    let prefix = format!("imported {rows} rows into {target} in ");
    assert!(
        line.starts_with(&prefix) && line.ends_with(" rows/s)") && !line.contains('\n'),
        "stdout should be one summary line starting {prefix:?}: {stdout:?}"
    );
    eprintln!("{}: {line}", args.last().copied().unwrap_or_default());
    line
}

/// Waits until `sql` read at level `none` on node `i` in database `db` returns `expected`.
fn wait_rows_in(c: &TestCluster, i: usize, db: &str, sql: &str, expected: &Value) {
    let what = format!("node {} to return {expected} for {sql} in {db}", c.id(i));
    try_wait_for(CATCH_UP_TIMEOUT, &what, || {
        Ok(
            match c.query_with(i, &[("q", sql), ("level", "none"), ("db", db)]) {
                Ok(r) if r.is_clean() && &r.rows() == expected => Ok(()),
                Ok(r) => Err(r.to_string()),
                Err(e) => Err(format!("{e:#}")),
            },
        )
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The rows of `sql` in database `db` on node `i`, read locally.
fn rows_in(c: &TestCluster, i: usize, db: &str, sql: &str) -> Value {
    let r = c
        .query_with(i, &[("q", sql), ("level", "none"), ("db", db)])
        .unwrap_or_else(|e| panic!("{sql}: {e:#}"));
    assert!(r.is_clean(), "{sql} on node {}: {r}", c.id(i));
    r.rows()
}

#[test]
fn iso_codes_imported_through_a_follower_reach_every_node() {
    let files = [
        ("iso_3166-1.json", "countries"),
        ("iso_3166-2.json", "subdivisions"),
        ("iso_639-3.json", "languages"),
    ];
    let paths: Vec<PathBuf> = files.iter().map(|(f, _)| iso_file(f)).collect();
    let counts: Vec<usize> = paths.iter().map(|p| element_count(p)).collect();

    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let f = c.followers().expect("followers")[0];
    let r = c
        .post(f, "/v1/databases", &[], &json!({"name": "iso"}))
        .expect("create iso");
    assert_eq!(r.status, 201, "{r}");

    let url = c.url(f);
    for ((path, (_, table)), &n) in paths.iter().zip(&files).zip(&counts) {
        let file = path.to_str().expect("a UTF-8 path");
        import_ok(
            &[
                "--addr", &url, "--db", "iso", "--table", table, "--batch", "500", file,
            ],
            n,
            &format!("iso.{table}"),
        );
    }

    for i in c.running() {
        for ((_, table), &n) in files.iter().zip(&counts) {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            wait_rows_in(&c, i, "iso", &sql, &json!([[n]]));
        }
        assert_eq!(
            rows_in(
                &c,
                i,
                "iso",
                "SELECT name, alpha_3, numeric, typeof(numeric) FROM countries \
                 WHERE alpha_2 = 'FR'"
            ),
            json!([["France", "FRA", "250", "text"]]),
            "node {}",
            c.id(i)
        );
        assert_eq!(
            rows_in(
                &c,
                i,
                "iso",
                "SELECT numeric FROM countries WHERE alpha_2 = 'AF'"
            ),
            json!([["004"]]),
            "JSON strings stay text, leading zeros included (node {})",
            c.id(i)
        );
        assert_eq!(
            rows_in(
                &c,
                i,
                "iso",
                "SELECT code, name FROM subdivisions WHERE code IN ('US-CA', 'DE-BY') \
                 ORDER BY code"
            ),
            json!([["DE-BY", "Bayern"], ["US-CA", "California"]]),
            "node {}",
            c.id(i)
        );
        assert_eq!(
            rows_in(
                &c,
                i,
                "iso",
                "SELECT name, alpha_2 FROM languages WHERE alpha_3 = 'fra'"
            ),
            json!([["French", "fr"]]),
            "node {}",
            c.id(i)
        );
    }
    // The same checks through the REST API, on every node at level none (its own replica).
    for i in c.running() {
        for ((_, table), &n) in files.iter().zip(&counts) {
            let r = c
                .get(
                    i,
                    &format!("/v1/databases/iso/tables/{table}/aggregate"),
                    &[("count", "*"), ("level", "none")],
                )
                .expect("REST aggregate");
            assert_eq!(
                r.body["rows"],
                json!([{"count": n}]),
                "{table} on node {}: {r}",
                c.id(i)
            );
        }
        let r = c
            .get(
                i,
                "/v1/databases/iso/tables/countries/rows",
                &[
                    ("alpha_2", "FR"),
                    ("columns", "name,alpha_3"),
                    ("level", "none"),
                ],
            )
            .expect("REST search");
        assert_eq!(
            r.body["rows"],
            json!([{"name": "France", "alpha_3": "FRA"}]),
            "node {}: {r}",
            c.id(i)
        );
        let r = c
            .get(
                i,
                "/v1/databases/iso/tables/languages/rows",
                &[("alpha_3", "fra"), ("columns", "name"), ("level", "none")],
            )
            .expect("REST search");
        assert_eq!(
            r.body["rows"],
            json!([{"name": "French"}]),
            "node {}: {r}",
            c.id(i)
        );
        let r = c
            .get(
                i,
                "/v1/databases/iso/tables/subdivisions/rows",
                &[
                    ("code[in]", "DE-BY,US-CA"),
                    ("order_by", "code"),
                    ("columns", "name"),
                    ("level", "none"),
                ],
            )
            .expect("REST search");
        assert_eq!(
            r.body["rows"],
            json!([{"name": "Bayern"}, {"name": "California"}]),
            "node {}: {r}",
            c.id(i)
        );
    }
    // The tables went to database iso, not main.
    let rows = c
        .query_rows(
            f,
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'countries'",
            Level::None,
        )
        .expect("read main");
    assert_eq!(rows, json!([[0]]));
}

#[test]
fn bad_input_fails_cleanly_and_csv_types_are_inferred() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, body: &str| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p.to_str().expect("a UTF-8 path").to_string()
    };
    let typed = write(
        "typed.csv",
        "id,score,name,code,note\n1,1.5,alice,007,\n2,2,bob,010,x\n3,,carol,42,\n",
    );
    let bad_cols = write("bad.csv", "id,bad-name\n1,2\n");
    let dupes = write("dupes.csv", "id\n1\n2\n3\n3\n");
    let nested = write(
        "nested.jsonl",
        "{\"k\": 1, \"tags\": [\"a\", \"b\"]}\n{\"k\": 2, \"extra\": true}\n",
    );

    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let f = c.followers().expect("followers")[0];
    let url = c.url(f);

    // A database that does not exist: a non-zero exit that names it.
    let out = import(&["--addr", &url, "--db", "nope", "--table", "t", &typed]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "importing into db nope succeeded");
    assert!(
        stderr.contains("\"nope\"") && stderr.contains("does not exist"),
        "the error names the missing database: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    // An invalid column name: refused before anything is written.
    let out = import(&["--addr", &url, "--table", "badcols", &bad_cols]);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a CSV with column bad-name was imported"
    );
    assert!(
        stderr.contains("invalid column name \"bad-name\""),
        "{stderr}"
    );
    let sql = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'badcols'";
    assert_eq!(
        c.query_rows(leader, sql, Level::Linearizable)
            .expect("read sqlite_master"),
        json!([[0]]),
        "the refused import created no table"
    );

    // Column types inferred from CSV text, through a follower.
    import_ok(
        &["--addr", &url, "--table", "typed", &typed],
        3,
        "main.typed",
    );
    for i in c.running() {
        c.wait_rows(i, "SELECT COUNT(*) FROM typed", &json!([[3]]))
            .expect("every node has the typed rows");
        assert_eq!(
            c.query_rows(
                i,
                "SELECT name, type FROM pragma_table_info('typed') ORDER BY cid",
                Level::None
            )
            .expect("table info"),
            json!([
                ["id", "INTEGER"],
                ["score", "REAL"],
                ["name", "TEXT"],
                ["code", "TEXT"],
                ["note", "TEXT"]
            ])
        );
        assert_eq!(
            c.query_rows(
                i,
                "SELECT typeof(id), typeof(score), typeof(name), typeof(code), code, \
                 typeof(note) FROM typed ORDER BY id",
                Level::None
            )
            .expect("typeof"),
            json!([
                ["integer", "real", "text", "text", "007", "null"],
                ["integer", "real", "text", "text", "010", "text"],
                ["integer", "null", "text", "text", "42", "null"]
            ])
        );
    }

    // JSON Lines: nested values are stored as JSON text, missing keys as NULL.
    import_ok(
        &["--addr", &url, "--table", "nested", &nested],
        2,
        "main.nested",
    );
    c.wait_rows(
        leader,
        "SELECT k, tags, extra FROM nested ORDER BY k",
        &json!([[1, "[\"a\",\"b\"]", null], [2, null, 1]]),
    )
    .expect("the nested rows");

    // A failing batch stops the import; the batches before it stay, it does not.
    c.execute_ok(
        leader,
        &json!(["CREATE TABLE uniq (id INTEGER PRIMARY KEY)"]),
    )
    .expect("create uniq");
    let out = import(&["--addr", &url, "--table", "uniq", "--batch", "2", &dupes]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "duplicate keys were imported");
    assert!(
        stderr.contains("rows 3-4 were not imported")
            && stderr.contains("UNIQUE constraint failed")
            && stderr.contains("row 4 (line 5 of the file)"),
        "the error names the batch, the row and SQLite's message: {stderr}"
    );
    assert_eq!(
        c.query_rows(leader, "SELECT id FROM uniq ORDER BY id", Level::Strong)
            .expect("read uniq"),
        json!([[1], [2]])
    );
}
