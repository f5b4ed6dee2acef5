//! The REST API under `/v1`: databases, tables with typed columns, rows (insert, search
//! with filters, ordering, projection and pages, update, delete) and aggregates, through
//! the leader and through followers, with the same answers for bad input everywhere, and
//! the OpenAPI document that describes every route.

use cairn_testkit::{wait_for, Cluster, HttpClient, Reply, TestCluster, CATCH_UP_TIMEOUT};
use serde_json::{json, Value};

/// `path?params` with `params` form-encoded, for requests whose helper takes no params
/// (`DELETE`).
fn with_query(path: &str, params: &[(&str, &str)]) -> String {
    let url = HttpClient::url("http://localhost", path, params).expect("a valid URL");
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Asserts `r` has `status`; an error reply must also carry the JSON error shape
/// (`error` and `code`), with `code` equal to the one given. Returns `r`.
#[track_caller]
fn expect(r: Reply, status: u16, code: Option<&str>, what: &str) -> Reply {
    assert_eq!(r.status, status, "{what}: {r}");
    if status >= 400 {
        assert!(r.code().is_some(), "{what}: an error code: {r}");
        assert!(
            !r.error().unwrap_or_default().is_empty(),
            "{what}: an error message: {r}"
        );
    }
    if let Some(code) = code {
        assert_eq!(r.code(), Some(code), "{what}: {r}");
    }
    r
}

/// The `id` of every row object of a rows reply, in order.
fn ids(r: &Reply) -> Vec<i64> {
    r.body["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|o| o["id"].as_i64()).collect())
        .unwrap_or_default()
}

/// Waits until `GET path?params&level=none` on every running node answers 200 and
/// `check` accepts the body (`Err` says what it saw).
fn on_every_node(
    c: &TestCluster,
    path: &str,
    params: &[(&str, &str)],
    what: &str,
    check: impl Fn(&Value) -> Result<(), String>,
) {
    let mut params = params.to_vec();
    params.push(("level", "none"));
    for i in c.running() {
        wait_for(
            CATCH_UP_TIMEOUT,
            &format!("node {}: {what}", c.id(i)),
            || {
                let r = c.get(i, path, &params).map_err(|e| format!("{e:#}"))?;
                if r.status != 200 {
                    return Err(r.to_string());
                }
                check(&r.body).map_err(|e| format!("{e}; reply {r}"))
            },
        )
        .expect("every node catches up");
    }
}

/// The row count of `table` in `describe`, read through the leader.
fn row_count(c: &TestCluster, db: &str, table: &str) -> i64 {
    let leader = c.leader().expect("a leader");
    let r = c
        .get(
            leader,
            &format!("/v1/databases/{db}/tables/{table}"),
            &[("level", "strong")],
        )
        .expect("describe");
    assert_eq!(r.status, 200, "describe {table}: {r}");
    r.body["rows"].as_i64().expect("a row count")
}

/// `(name, type, primary_key, not_null)` of every column of a describe body.
fn columns(body: &Value) -> Vec<(String, String, bool, bool)> {
    body["columns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_string(),
                        c["type"].as_str().unwrap_or_default().to_string(),
                        c["primary_key"].as_bool().unwrap_or(false),
                        c["not_null"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn col(name: &str, ty: &str, pk: bool, not_null: bool) -> (String, String, bool, bool) {
    (name.to_string(), ty.to_string(), pk, not_null)
}

#[test]
fn databases_and_tables_are_created_described_altered_and_dropped() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let f = c.followers().expect("followers")[0];

    // Databases: created through a follower, listed and described everywhere.
    let r = c
        .post(f, "/v1/databases", &[], &json!({"name": "school"}))
        .expect("create");
    expect(r, 201, None, "create a database through a follower");
    let r = c
        .post(leader, "/v1/databases", &[], &json!({"name": "school"}))
        .expect("create again");
    expect(r, 409, Some("database_exists"), "create it again");
    for bad in ["bad-name", "1st", "", "a b", "x;DROP"] {
        let r = c
            .post(f, "/v1/databases", &[], &json!({ "name": bad }))
            .expect("bad name");
        expect(r, 400, Some("bad_identifier"), &format!("database {bad:?}"));
    }
    let r = c
        .post_raw(f, "/v1/databases", &[], "{\"name\": \"x\"")
        .expect("malformed");
    expect(r, 400, Some("bad_request"), "malformed JSON");
    let r = c
        .post(f, "/v1/databases", &[], &json!({"nom": "x"}))
        .expect("no name");
    expect(r, 400, Some("bad_request"), "no name field");
    on_every_node(&c, "/v1/databases", &[], "school is listed", |b| {
        let names: Vec<&str> = b["databases"]
            .as_array()
            .map(|d| d.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        if names == ["main", "school"] || names == ["school", "main"] {
            Ok(())
        } else {
            Err(format!("databases {names:?}"))
        }
    });
    let r = c.get(leader, "/v1/databases/school", &[]).expect("get");
    let r = expect(r, 200, None, "describe the database");
    assert_eq!(r.body["name"], "school", "{r}");
    assert!(r.body["size_bytes"].as_u64().is_some(), "a size: {r}");
    assert_eq!(r.body["tables"], json!([]), "no tables yet: {r}");

    // Tables: the full column form, through a follower.
    let base = "/v1/databases/school/tables";
    let people = json!({
        "name": "people",
        "columns": [
            {"name": "id", "type": "INTEGER", "primary_key": true},
            {"name": "name", "type": "TEXT", "not_null": true},
            {"name": "email", "type": "VARCHAR(255)", "unique": true},
            {"name": "score", "type": "REAL", "default": 0},
            {"name": "status", "type": "TEXT", "default": "active"},
        ]
    });
    let r = c.post(f, base, &[], &people).expect("create table");
    expect(r, 201, None, "create people through a follower");
    let r = c.post(leader, base, &[], &people).expect("create again");
    expect(r, 409, Some("already_exists"), "create people again");
    // The shorthands: an object of name -> type, and a list of untyped names.
    let r = c
        .post(
            leader,
            base,
            &[],
            &json!({"name": "typed", "columns": {"code": "VARCHAR(5)", "n": "INTEGER"}}),
        )
        .expect("map form");
    expect(r, 201, None, "columns as an object");
    let r = c
        .post(
            f,
            base,
            &[],
            &json!({"name": "loose", "columns": ["a", "b"]}),
        )
        .expect("list form");
    expect(r, 201, None, "columns as a list of names");

    let want_people = vec![
        col("id", "INTEGER", true, false),
        col("name", "TEXT", false, true),
        col("email", "VARCHAR(255)", false, false),
        col("score", "REAL", false, false),
        col("status", "TEXT", false, false),
    ];
    on_every_node(
        &c,
        &format!("{base}/people"),
        &[],
        "people is described",
        |b| {
            if b["name"] == "people" && columns(b) == want_people && b["rows"] == 0 {
                Ok(())
            } else {
                Err(format!("columns {:?}", columns(b)))
            }
        },
    );
    let r = c.get(leader, &format!("{base}/people"), &[]).expect("get");
    let cols = &r.body["columns"];
    assert_eq!(cols[0]["default"], Value::Null, "no default for id: {r}");
    assert_eq!(cols[3]["default"], json!(0), "score's default: {r}");
    let status_default = cols[4]["default"].as_str().unwrap_or_default();
    assert!(
        status_default.contains("active"),
        "status's default names its value: {r}"
    );
    let r = c.get(f, &format!("{base}/typed"), &[]).expect("get");
    assert_eq!(
        columns(&r.body),
        vec![
            col("code", "VARCHAR(5)", false, false),
            col("n", "INTEGER", false, false)
        ],
        "{r}"
    );
    let r = c.get(f, &format!("{base}/loose"), &[]).expect("get");
    assert_eq!(
        columns(&r.body),
        vec![col("a", "", false, false), col("b", "", false, false)],
        "{r}"
    );
    let r = c.get(f, base, &[]).expect("list tables");
    let r = expect(r, 200, None, "list tables");
    let listed: Vec<&str> = r.body["tables"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, ["loose", "people", "typed"], "{r}");
    assert_eq!(r.body["tables"][1]["columns"][1]["name"], "name", "{r}");

    // Bad table definitions are refused and create nothing.
    for (what, body) in [
        (
            "a bad table name",
            json!({"name": "bad-name", "columns": ["a"]}),
        ),
        (
            "a table name starting with a digit",
            json!({"name": "1t", "columns": ["a"]}),
        ),
        (
            "a bad column name",
            json!({"name": "t2", "columns": [{"name": "a b", "type": "TEXT"}]}),
        ),
    ] {
        let r = c.post(f, base, &[], &body).expect("bad definition");
        expect(r, 400, Some("bad_identifier"), what);
    }
    for (what, body) in [
        (
            "an injected type",
            json!({"name": "t2", "columns": [{"name": "a", "type": "INT); DROP TABLE people; --"}]}),
        ),
        (
            "an injected type in the map form",
            json!({"name": "t2", "columns": {"a": "TEXT, b TEXT) --"}}),
        ),
        ("no columns", json!({"name": "t2", "columns": []})),
        (
            "a repeated column",
            json!({"name": "t2", "columns": ["a", "A"]}),
        ),
        (
            "a non-string type",
            json!({"name": "t2", "columns": {"a": 1}}),
        ),
        ("no columns field", json!({"name": "t2"})),
    ] {
        let r = c.post(f, base, &[], &body).expect("bad definition");
        expect(r, 400, None, what);
    }
    let r = c
        .post_raw(f, base, &[], "{\"name\": \"t2\", \"columns\": [")
        .expect("malformed");
    expect(r, 400, Some("bad_request"), "malformed JSON");
    let r = c.get(leader, base, &[("level", "strong")]).expect("list");
    assert_eq!(
        r.body["tables"].as_array().map(Vec::len),
        Some(3),
        "refused definitions created nothing, and people survived: {r}"
    );

    // Unknown and bad table names.
    let r = c.get(f, &format!("{base}/nope"), &[]).expect("get");
    expect(r, 404, Some("table_not_found"), "an unknown table");
    let r = c.get(f, &format!("{base}/bad-name"), &[]).expect("get");
    expect(
        r,
        400,
        Some("bad_identifier"),
        "a bad table name in the path",
    );

    // PATCH: add a column, then rename it; through a follower.
    let r = c
        .patch(
            f,
            &format!("{base}/people"),
            &[],
            &json!({"add_column": {"name": "nickname", "type": "VARCHAR(40)"}}),
        )
        .expect("add column");
    let r = expect(r, 200, None, "add a column");
    assert_eq!(
        columns(&r.body).last(),
        Some(&col("nickname", "VARCHAR(40)", false, false)),
        "the reply describes the new column: {r}"
    );
    let r = c
        .patch(
            leader,
            &format!("{base}/people"),
            &[],
            &json!({"rename_column": {"from": "nickname", "to": "alias"}}),
        )
        .expect("rename column");
    let r = expect(r, 200, None, "rename a column");
    let mut want = want_people.clone();
    want.push(col("alias", "VARCHAR(40)", false, false));
    assert_eq!(columns(&r.body), want, "{r}");
    on_every_node(
        &c,
        &format!("{base}/people"),
        &[],
        "the renamed column",
        |b| {
            if columns(b) == want {
                Ok(())
            } else {
                Err(format!("columns {:?}", columns(b)))
            }
        },
    );
    // Bad changes are refused and change nothing.
    for (what, body, status, code) in [
        (
            "both changes at once",
            json!({"add_column": {"name": "x"}, "rename_column": {"from": "alias", "to": "y"}}),
            400,
            None,
        ),
        ("no change", json!({}), 400, None),
        (
            "an unknown field",
            json!({"drop_column": "alias"}),
            400,
            Some("bad_request"),
        ),
        (
            "a primary key column",
            json!({"add_column": {"name": "k", "type": "INTEGER", "primary_key": true}}),
            400,
            None,
        ),
        (
            "an injected type",
            json!({"add_column": {"name": "k", "type": "TEXT; DROP TABLE people"}}),
            400,
            None,
        ),
        (
            "a bad new name",
            json!({"rename_column": {"from": "alias", "to": "a-b"}}),
            400,
            Some("bad_identifier"),
        ),
        (
            "an existing column name",
            json!({"add_column": {"name": "email", "type": "TEXT"}}),
            400,
            None,
        ),
        (
            "renaming an unknown column",
            json!({"rename_column": {"from": "nope", "to": "y"}}),
            404,
            Some("column_not_found"),
        ),
    ] {
        let r = c
            .patch(f, &format!("{base}/people"), &[], &body)
            .expect("bad change");
        expect(r, status, code, what);
    }
    let r = c
        .patch(
            f,
            &format!("{base}/nope"),
            &[],
            &json!({"add_column": {"name": "x"}}),
        )
        .expect("patch unknown");
    expect(r, 404, Some("table_not_found"), "altering an unknown table");
    let r = c
        .get(leader, &format!("{base}/people"), &[("level", "strong")])
        .expect("get");
    assert_eq!(
        columns(&r.body),
        want,
        "refused changes changed nothing: {r}"
    );

    // The database description lists the tables with their row counts.
    let r = c
        .post(
            f,
            &format!("{base}/typed/rows"),
            &[],
            &json!([{"code": "a", "n": 1}, {"code": "b", "n": 2}]),
        )
        .expect("insert");
    expect(r, 201, None, "insert into typed");
    on_every_node(&c, "/v1/databases/school", &[], "the row counts", |b| {
        let want = json!([
            {"name": "loose", "rows": 0},
            {"name": "people", "rows": 0},
            {"name": "typed", "rows": 2},
        ]);
        if b["tables"] == want {
            Ok(())
        } else {
            Err(format!("tables {}", b["tables"]))
        }
    });

    // Dropping a table, through a follower: gone on every node.
    let r = c.delete(f, &format!("{base}/loose"), None).expect("drop");
    let r = expect(r, 200, None, "drop a table through a follower");
    assert_eq!(r.body["dropped"], "loose", "{r}");
    for i in c.running() {
        wait_for(CATCH_UP_TIMEOUT, "loose to be gone", || {
            let r = c
                .get(i, &format!("{base}/loose"), &[("level", "none")])
                .map_err(|e| format!("{e:#}"))?;
            if r.status == 404 && r.code() == Some("table_not_found") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        })
        .expect("the dropped table is 404 on every node");
    }
    let r = c
        .get(leader, &format!("{base}/loose/rows"), &[])
        .expect("rows of a dropped table");
    expect(r, 404, Some("table_not_found"), "rows of a dropped table");
    let r = c
        .delete(leader, &format!("{base}/loose"), None)
        .expect("drop again");
    expect(r, 404, Some("table_not_found"), "dropping it again");

    // Unknown databases are 404 on every route.
    let nope = "/v1/databases/nope";
    let t = "/v1/databases/nope/tables/t";
    for (what, r) in [
        ("describe", c.get(f, nope, &[])),
        ("list tables", c.get(f, &format!("{nope}/tables"), &[])),
        (
            "create a table",
            c.post(
                f,
                &format!("{nope}/tables"),
                &[],
                &json!({"name": "t", "columns": ["a"]}),
            ),
        ),
        ("describe a table", c.get(f, t, &[])),
        ("drop a table", c.delete(leader, t, None)),
        (
            "alter a table",
            c.patch(f, t, &[], &json!({"add_column": {"name": "x"}})),
        ),
        (
            "insert",
            c.post(f, &format!("{t}/rows"), &[], &json!({"a": 1})),
        ),
        ("search", c.get(f, &format!("{t}/rows"), &[])),
        (
            "update",
            c.patch(
                f,
                &format!("{t}/rows"),
                &[("a", "1")],
                &json!({"set": {"a": 2}}),
            ),
        ),
        (
            "delete",
            c.delete(f, &with_query(&format!("{t}/rows"), &[("a", "1")]), None),
        ),
        (
            "aggregate",
            c.get(f, &format!("{t}/aggregate"), &[("count", "*")]),
        ),
        ("drop the database", c.delete(leader, nope, None)),
    ] {
        expect(
            r.expect("the node answers"),
            404,
            Some("database_not_found"),
            what,
        );
    }

    // Dropping a database: refused on a follower with the leader's URL, done on the leader.
    let r = c
        .delete(f, "/v1/databases/school", None)
        .expect("drop on a follower");
    let r = expect(r, 403, Some("not_leader"), "drop through a follower");
    assert_eq!(r.body["leader"], Value::from(c.url(leader)), "{r}");
    assert_eq!(
        row_count(&c, "school", "typed"),
        2,
        "the refused drop kept it"
    );
    let r = c
        .delete(leader, "/v1/databases/main", None)
        .expect("drop main");
    expect(r, 403, Some("forbidden"), "dropping the default database");
    let r = c
        .get(leader, "/v1/databases/main", &[])
        .expect("describe main");
    expect(r, 200, None, "main is still there");
    let r = c
        .delete(leader, "/v1/databases/school", None)
        .expect("drop on the leader");
    expect(r, 200, None, "drop through the leader");
    for i in c.running() {
        wait_for(CATCH_UP_TIMEOUT, "school to be gone", || {
            let r = c
                .get(i, "/v1/databases/school/tables", &[("level", "none")])
                .map_err(|e| format!("{e:#}"))?;
            if r.status == 404 && r.code() == Some("database_not_found") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        })
        .expect("the dropped database is 404 on every node");
        let r = c.get(i, "/v1/databases/school", &[]).expect("describe");
        expect(r, 404, Some("database_not_found"), "describe a dropped db");
    }
}

/// A search: what it checks, its query parameters, and the ids it must return.
type FilterCase = (&'static str, Vec<(&'static str, &'static str)>, Vec<i64>);

/// Six people, for filters, ordering, projection and aggregates.
fn people_rows() -> Value {
    json!([
        {"name": "Alice", "age": 30, "grade": "A", "score": 91.5, "email": "alice@x"},
        {"name": "Bob", "age": 17, "grade": "B", "score": 72.0, "email": "bob@x"},
        {"name": "Carol", "age": 25, "grade": "A", "score": 88.0, "email": null},
        {"name": "Dave", "age": 17, "grade": "C", "score": 55.5, "email": "dave@x"},
        {"name": "Alfred", "age": 45, "grade": "B", "score": 64.0, "email": "alfred@x"},
        {"name": "Eve", "age": null, "grade": "A", "score": 99.0, "email": "eve@x"},
    ])
}

fn people_table() -> Value {
    json!({
        "name": "people",
        "columns": [
            {"name": "id", "type": "INTEGER", "primary_key": true},
            {"name": "name", "type": "TEXT", "not_null": true},
            {"name": "age", "type": "INTEGER"},
            {"name": "grade", "type": "TEXT"},
            {"name": "score", "type": "REAL"},
            {"name": "email", "type": "TEXT", "unique": true},
        ]
    })
}

#[test]
fn rows_are_filtered_ordered_projected_paged_and_aggregated() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let f = c.followers().expect("followers")[0];
    let base = "/v1/databases/main/tables";
    let rows = "/v1/databases/main/tables/people/rows";
    let r = c.post(f, base, &[], &people_table()).expect("create");
    expect(r, 201, None, "create people");
    let r = c.post(f, rows, &[], &people_rows()).expect("insert");
    let r = expect(r, 201, None, "insert six rows through a follower");
    assert_eq!(r.body["inserted"], 6, "{r}");
    assert_eq!(r.body["ids"], json!([1, 2, 3, 4, 5, 6]), "{r}");
    on_every_node(&c, rows, &[("order_by", "id")], "six people", |b| {
        if b["count"] == 6 {
            Ok(())
        } else {
            Err(format!("count {}", b["count"]))
        }
    });

    // Values come back with their types.
    let r = c.get(leader, rows, &[("id", "1")]).expect("get");
    assert_eq!(
        r.body,
        json!({"rows": [{"id": 1, "name": "Alice", "age": 30, "grade": "A", "score": 91.5, "email": "alice@x"}],
               "count": 1, "next": null}),
        "{r}"
    );

    // Every operator, on the leader, a follower (forwarded) and a local read.
    let cases: Vec<FilterCase> = vec![
        ("plain equality", vec![("name", "Alice")], vec![1]),
        ("[eq]", vec![("age[eq]", "17")], vec![2, 4]),
        ("[ne]", vec![("age[ne]", "17")], vec![1, 3, 5]),
        ("[lt]", vec![("age[lt]", "18")], vec![2, 4]),
        ("[lte]", vec![("age[lte]", "25")], vec![2, 3, 4]),
        ("[gt]", vec![("age[gt]", "25")], vec![1, 5]),
        ("[gte]", vec![("age[gte]", "18")], vec![1, 3, 5]),
        ("[in]", vec![("grade[in]", "A,B")], vec![1, 2, 3, 5, 6]),
        ("[nin]", vec![("grade[nin]", "A,B")], vec![4]),
        ("[like]", vec![("name[like]", "Al%")], vec![1, 5]),
        ("[is]=null", vec![("age[is]", "null")], vec![6]),
        (
            "[is]=notnull",
            vec![("email[is]", "notnull")],
            vec![1, 2, 4, 5, 6],
        ),
        (
            "two filters are ANDed",
            vec![("grade", "A"), ("age[gte]", "18")],
            vec![1, 3],
        ),
        ("a real", vec![("score[gt]", "90")], vec![1, 6]),
        ("a real equal to an integer", vec![("score", "72")], vec![2]),
        ("[in] on numbers", vec![("age[in]", "17,30")], vec![1, 2, 4]),
        ("[like] with _", vec![("name[like]", "_ve")], vec![6]),
        ("no match", vec![("name", "Zed")], vec![]),
        (
            "a quote is a value, not SQL",
            vec![("name", "x' OR '1'='1")],
            vec![],
        ),
    ];
    for (what, filter, want) in &cases {
        let mut params = filter.clone();
        params.push(("order_by", "id"));
        for (node, level) in [(leader, "weak"), (f, "weak"), (f, "none")] {
            let mut p = params.clone();
            p.push(("level", level));
            let r = c.get(node, rows, &p).expect("search");
            let r = expect(r, 200, None, what);
            assert_eq!(
                &ids(&r),
                want,
                "{what} on node {} at {level}: {r}",
                c.id(node)
            );
            assert_eq!(r.body["count"], want.len(), "{what}: {r}");
            assert_eq!(r.body["next"], Value::Null, "{what}: {r}");
        }
    }

    // Ordering: descending first key, NULL last in descending order, ties by name.
    let r = c.get(f, rows, &[("order_by", "-age,name")]).expect("order");
    assert_eq!(ids(&r), vec![5, 1, 3, 2, 4, 6], "{r}");
    let r = c
        .get(f, rows, &[("order_by", "grade"), ("order_by", "-score")])
        .expect("order");
    assert_eq!(ids(&r), vec![6, 1, 3, 2, 5, 4], "{r}");
    // limit and offset.
    let r = c
        .get(
            leader,
            rows,
            &[("order_by", "id"), ("limit", "2"), ("offset", "1")],
        )
        .expect("page");
    assert_eq!(ids(&r), vec![2, 3], "{r}");
    assert_eq!(r.body["count"], 2, "{r}");
    assert!(r.body["next"].is_string(), "more rows follow: {r}");
    let r = c
        .get(
            leader,
            rows,
            &[("order_by", "id"), ("limit", "2"), ("offset", "4")],
        )
        .expect("last page");
    assert_eq!(ids(&r), vec![5, 6], "{r}");
    assert_eq!(r.body["next"], Value::Null, "nothing follows: {r}");
    let r = c
        .get(leader, rows, &[("offset", "10")])
        .expect("past the end");
    assert_eq!(r.body["rows"], json!([]), "{r}");

    // Projection.
    let r = c
        .get(
            f,
            rows,
            &[
                ("columns", "name,age"),
                ("age[gte]", "30"),
                ("order_by", "id"),
            ],
        )
        .expect("projection");
    assert_eq!(
        r.body["rows"],
        json!([{"name": "Alice", "age": 30}, {"name": "Alfred", "age": 45}]),
        "{r}"
    );

    // Aggregates, grouped.
    let agg = "/v1/databases/main/tables/people/aggregate";
    let r = c
        .get(
            f,
            agg,
            &[
                ("count", "*"),
                ("sum", "score"),
                ("avg", "score"),
                ("min", "age"),
                ("max", "age"),
                ("group_by", "grade"),
            ],
        )
        .expect("aggregate");
    let r = expect(r, 200, None, "aggregate by grade");
    let groups = r.body["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(groups.len(), 3, "{r}");
    for (g, (grade, count, sum, avg, min, max)) in groups.iter().zip([
        ("A", 3, 278.5, 278.5 / 3.0, 25, 30),
        ("B", 2, 136.0, 68.0, 17, 45),
        ("C", 1, 55.5, 55.5, 17, 17),
    ]) {
        assert_eq!(g["grade"], grade, "{r}");
        assert_eq!(g["count"], count, "grade {grade}: {r}");
        let close = |k: &str, want: f64| {
            let got = g[k].as_f64().unwrap_or(f64::NAN);
            assert!((got - want).abs() < 1e-9, "grade {grade} {k}: {r}");
        };
        close("sum_score", sum);
        close("avg_score", avg);
        assert_eq!(g["min_age"], min, "grade {grade}: {r}");
        assert_eq!(g["max_age"], max, "grade {grade}: {r}");
    }
    let r = c
        .get(leader, agg, &[("count", "*"), ("age[gte]", "18")])
        .expect("filtered count");
    assert_eq!(r.body["rows"], json!([{"count": 3}]), "{r}");
    let r = c
        .get(leader, agg, &[("count", "age")])
        .expect("count a column");
    assert_eq!(
        r.body["rows"],
        json!([{"count": 5}]),
        "NULLs not counted: {r}"
    );
    for (what, params, status, code) in [
        ("no aggregate", vec![], 400, None),
        ("only group_by", vec![("group_by", "grade")], 400, None),
        (
            "an unknown column",
            vec![("sum", "height")],
            404,
            Some("column_not_found"),
        ),
        (
            "an unknown group",
            vec![("count", "*"), ("group_by", "house")],
            404,
            Some("column_not_found"),
        ),
        (
            "a bad column name",
            vec![("sum", "score)--")],
            400,
            Some("bad_identifier"),
        ),
    ] {
        let r = c.get(f, agg, &params).expect("bad aggregate");
        expect(r, status, code, what);
    }

    // Bad searches.
    for (what, params, status, code) in [
        (
            "an unknown filter column",
            vec![("height", "1")],
            404,
            "column_not_found",
        ),
        (
            "an unknown order_by column",
            vec![("order_by", "height")],
            404,
            "column_not_found",
        ),
        (
            "an unknown projected column",
            vec![("columns", "name,height")],
            404,
            "column_not_found",
        ),
        (
            "an unknown operator",
            vec![("age[approx]", "1")],
            400,
            "bad_request",
        ),
        (
            "a malformed filter key",
            vec![("age[gte", "1")],
            400,
            "bad_request",
        ),
        (
            "[is] with a value",
            vec![("age[is]", "5")],
            400,
            "bad_request",
        ),
        (
            "a bad filter column name",
            vec![("age;--", "1")],
            400,
            "bad_identifier",
        ),
        ("limit 0", vec![("limit", "0")], 400, "bad_request"),
        (
            "limit over 10000",
            vec![("limit", "10001")],
            400,
            "bad_request",
        ),
        (
            "limit not a number",
            vec![("limit", "ten")],
            400,
            "bad_request",
        ),
        (
            "a negative offset",
            vec![("offset", "-1")],
            400,
            "bad_request",
        ),
        ("a bad cursor", vec![("cursor", "!!!")], 400, "bad_request"),
        (
            "an unknown level",
            vec![("level", "eventual")],
            400,
            "bad_request",
        ),
    ] {
        for node in [leader, f] {
            let r = c.get(node, rows, &params).expect("bad search");
            expect(r, status, Some(code), what);
        }
    }
    let r = c
        .get(leader, "/v1/databases/main/tables/nope/rows", &[])
        .expect("unknown table");
    expect(r, 404, Some("table_not_found"), "search an unknown table");

    // Pages: 25 rows, 10 a page, walked with `next` on every node.
    let r = c
        .post(
            leader,
            base,
            &[],
            &json!({"name": "seq", "columns": [{"name": "id", "type": "INTEGER", "primary_key": true}, {"name": "v", "type": "TEXT"}]}),
        )
        .expect("create seq");
    expect(r, 201, None, "create seq");
    let batch: Vec<Value> = (1..=25).map(|k| json!({"v": format!("v{k}")})).collect();
    let seq = "/v1/databases/main/tables/seq/rows";
    let r = c.post(f, seq, &[], &Value::from(batch)).expect("insert");
    let r = expect(r, 201, None, "insert 25 rows");
    assert_eq!(r.body["inserted"], 25, "{r}");
    on_every_node(&c, seq, &[], "25 rows", |b| {
        if b["count"] == 25 && b["next"].is_null() {
            Ok(())
        } else {
            Err(format!("count {}", b["count"]))
        }
    });
    for node in c.running() {
        for (level, order) in [("none", None), ("weak", Some("id")), ("strong", Some("-v"))] {
            let mut seen = Vec::new();
            let mut sizes = Vec::new();
            let mut cursor: Option<String> = None;
            for _page in 0..10 {
                let mut p = vec![("limit", "10"), ("level", level)];
                if let Some(o) = order {
                    p.push(("order_by", o));
                }
                if let Some(cur) = &cursor {
                    p.push(("cursor", cur.as_str()));
                }
                let r = c.get(node, seq, &p).expect("page");
                let r = expect(r, 200, None, "a page");
                sizes.push(r.body["count"].as_u64().unwrap_or(0));
                seen.extend(ids(&r));
                match r.body["next"].as_str() {
                    Some(n) => cursor = Some(n.to_string()),
                    None => {
                        cursor = None;
                        break;
                    }
                }
            }
            assert!(cursor.is_none(), "the walk ended: {seen:?}");
            assert_eq!(sizes, [10, 10, 5], "node {} {level}", c.id(node));
            if order == Some("-v") {
                // Descending text order: v9, v8, ..., v25, v24, ..., v1.
                assert_eq!(seen.first(), Some(&9), "{seen:?}");
            }
            seen.sort_unstable();
            assert_eq!(
                seen,
                (1..=25).collect::<Vec<i64>>(),
                "node {} at {level}: every row exactly once",
                c.id(node)
            );
        }
    }
    // A page boundary that falls on the last row: no empty page after it.
    let r = c
        .get(leader, seq, &[("limit", "5"), ("offset", "20")])
        .expect("last page");
    assert_eq!(ids(&r), vec![21, 22, 23, 24, 25], "{r}");
    assert_eq!(r.body["next"], Value::Null, "{r}");
    let r = c.get(leader, seq, &[("limit", "10000")]).expect("max");
    assert_eq!(r.body["count"], 25, "{r}");
}

#[test]
fn rows_are_inserted_updated_and_deleted_atomically_with_filters() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let f = c.followers().expect("followers")[0];
    let base = "/v1/databases/main/tables";
    let rows = "/v1/databases/main/tables/people/rows";
    let r = c.post(leader, base, &[], &people_table()).expect("create");
    expect(r, 201, None, "create people");

    // One object, then an array, through a follower and the leader.
    let r = c
        .post(
            f,
            rows,
            &[],
            &json!({"name": "Alice", "age": 30, "grade": "A", "score": 91.5, "email": "alice@x"}),
        )
        .expect("insert one");
    let r = expect(r, 201, None, "insert one object");
    assert_eq!(r.body, json!({"inserted": 1, "ids": [1]}), "{r}");
    let rest: Vec<Value> = people_rows()
        .as_array()
        .map(|a| a[1..].to_vec())
        .unwrap_or_default();
    let r = c
        .post(leader, rows, &[], &Value::from(rest))
        .expect("insert");
    let r = expect(r, 201, None, "insert an array");
    assert_eq!(
        r.body,
        json!({"inserted": 5, "ids": [2, 3, 4, 5, 6]}),
        "{r}"
    );
    assert_eq!(row_count(&c, "main", "people"), 6);

    // Failed inserts insert nothing, not even the rows before the failing one.
    for (node, what, body, status, code) in [
        (
            f,
            "a duplicate in the second row",
            json!([{"name": "Zoe", "email": "zoe@x"}, {"name": "Zed", "email": "bob@x"}]),
            409,
            "constraint_violation",
        ),
        (
            leader,
            "a NULL in a NOT NULL column",
            json!([{"name": "Zoe"}, {"name": null}]),
            409,
            "constraint_violation",
        ),
        (
            f,
            "a duplicate primary key",
            json!([{"id": 100, "name": "Zoe"}, {"id": 1, "name": "Zed"}]),
            409,
            "constraint_violation",
        ),
        (
            f,
            "an unknown column",
            json!([{"name": "Zoe"}, {"name": "Zed", "height": 2}]),
            404,
            "column_not_found",
        ),
        (
            leader,
            "a bad column name",
            json!({"name": "Zoe", "a b": 1}),
            400,
            "bad_identifier",
        ),
        (
            f,
            "a non-scalar value",
            json!({"name": {"first": "Zoe"}}),
            400,
            "bad_request",
        ),
        (f, "an empty array", json!([]), 400, "bad_request"),
        (f, "a number", json!(5), 400, "bad_request"),
        (f, "an array of numbers", json!([1, 2]), 400, "bad_request"),
    ] {
        let r = c.post(node, rows, &[], &body).expect("bad insert");
        expect(r, status, Some(code), what);
        assert_eq!(
            row_count(&c, "main", "people"),
            6,
            "{what} inserted nothing"
        );
    }
    let r = c
        .post_raw(f, rows, &[], "[{\"name\": \"Zoe\"},")
        .expect("malformed");
    expect(r, 400, Some("bad_request"), "malformed JSON");
    assert_eq!(
        row_count(&c, "main", "people"),
        6,
        "malformed JSON inserted nothing"
    );

    // PATCH with a filter, through a follower.
    let r = c
        .patch(f, rows, &[("grade", "C")], &json!({"set": {"grade": "B"}}))
        .expect("update");
    let r = expect(r, 200, None, "update grade C");
    assert_eq!(r.body, json!({"updated": 1}), "{r}");
    let r = c
        .patch(
            leader,
            rows,
            &[("age[lt]", "18"), ("grade", "B")],
            &json!({"set": {"score": 60, "age": 18}}),
        )
        .expect("update");
    assert_eq!(r.body, json!({"updated": 2}), "{r}");
    let r = c
        .patch(f, rows, &[("name", "Nobody")], &json!({"set": {"age": 1}}))
        .expect("update none");
    assert_eq!(r.body, json!({"updated": 0}), "{r}");
    let r = c
        .get(
            leader,
            rows,
            &[("columns", "id,age,grade,score"), ("order_by", "id")],
        )
        .expect("read");
    let after_update = json!([
        {"id": 1, "age": 30, "grade": "A", "score": 91.5},
        {"id": 2, "age": 18, "grade": "B", "score": 60.0},
        {"id": 3, "age": 25, "grade": "A", "score": 88.0},
        {"id": 4, "age": 18, "grade": "B", "score": 60.0},
        {"id": 5, "age": 45, "grade": "B", "score": 64.0},
        {"id": 6, "age": null, "grade": "A", "score": 99.0},
    ]);
    assert_eq!(r.body["rows"], after_update, "{r}");

    // Refused updates change nothing.
    for (what, params, body, status, code) in [
        (
            "no filter",
            vec![],
            json!({"set": {"grade": "F"}}),
            400,
            "filter_required",
        ),
        (
            "only options, no filter",
            vec![("order_by", "id"), ("limit", "1")],
            json!({"set": {"grade": "F"}}),
            400,
            "filter_required",
        ),
        (
            "all=false",
            vec![("all", "false")],
            json!({"set": {"grade": "F"}}),
            400,
            "filter_required",
        ),
        (
            "an empty set",
            vec![("id", "1")],
            json!({"set": {}}),
            400,
            "bad_request",
        ),
        (
            "no set",
            vec![("id", "1")],
            json!({"grade": "F"}),
            400,
            "bad_request",
        ),
        (
            "an unknown set column",
            vec![("id", "1")],
            json!({"set": {"height": 2}}),
            404,
            "column_not_found",
        ),
        (
            "an unknown filter column",
            vec![("height", "1")],
            json!({"set": {"grade": "F"}}),
            404,
            "column_not_found",
        ),
        (
            "a unique violation on two rows",
            vec![("grade", "B")],
            json!({"set": {"email": "same@x"}}),
            409,
            "constraint_violation",
        ),
        (
            "a NOT NULL violation",
            vec![("id", "1")],
            json!({"set": {"name": null}}),
            409,
            "constraint_violation",
        ),
    ] {
        let r = c.patch(f, rows, &params, &body).expect("bad update");
        expect(r, status, Some(code), what);
    }
    let r = c
        .get(
            leader,
            rows,
            &[("columns", "id,age,grade,score"), ("order_by", "id")],
        )
        .expect("read");
    assert_eq!(
        r.body["rows"], after_update,
        "refused updates changed nothing: {r}"
    );
    let r = c.get(leader, rows, &[("email", "same@x")]).expect("read");
    assert_eq!(
        r.body["count"], 0,
        "the failed UPDATE left no row changed: {r}"
    );

    // all=true updates every row.
    let r = c
        .patch(f, rows, &[("all", "true")], &json!({"set": {"grade": "P"}}))
        .expect("update all");
    assert_eq!(r.body, json!({"updated": 6}), "{r}");

    // DELETE with filters; refused without one.
    let path = |p: &[(&str, &str)]| with_query(rows, p);
    for (what, params, status, code) in [
        ("no filter", vec![], 400, "filter_required"),
        (
            "only options",
            vec![("order_by", "id")],
            400,
            "filter_required",
        ),
        (
            "an unknown column",
            vec![("height", "1")],
            404,
            "column_not_found",
        ),
        ("a bad operator", vec![("age[xx]", "1")], 400, "bad_request"),
    ] {
        let r = c.delete(f, &path(&params), None).expect("bad delete");
        expect(r, status, Some(code), what);
        assert_eq!(row_count(&c, "main", "people"), 6, "{what} deleted nothing");
    }
    let r = c.delete(f, &path(&[("age", "18")]), None).expect("delete");
    let r = expect(r, 200, None, "delete age 18");
    assert_eq!(r.body, json!({"deleted": 2}), "{r}");
    let r = c
        .delete(leader, &path(&[("age[is]", "null")]), None)
        .expect("delete");
    assert_eq!(r.body, json!({"deleted": 1}), "{r}");
    on_every_node(
        &c,
        rows,
        &[("order_by", "id"), ("columns", "id,grade")],
        "three rows left",
        |b| {
            let want =
                json!([{"id": 1, "grade": "P"}, {"id": 3, "grade": "P"}, {"id": 5, "grade": "P"}]);
            if b["rows"] == want {
                Ok(())
            } else {
                Err(format!("rows {}", b["rows"]))
            }
        },
    );
    let r = c
        .delete(f, &path(&[("all", "true")]), None)
        .expect("delete all");
    assert_eq!(r.body, json!({"deleted": 3}), "{r}");
    on_every_node(&c, rows, &[], "no rows left", |b| {
        if b["rows"] == json!([]) {
            Ok(())
        } else {
            Err(format!("rows {}", b["rows"]))
        }
    });
    assert_eq!(row_count(&c, "main", "people"), 0);

    // Concurrent inserts through every node: each gets its own ids, none is lost.
    let per_node = 10;
    // (The cluster handle stays on this thread; each thread has a client and a URL.)
    let targets: Vec<(u64, String)> = c
        .running()
        .into_iter()
        .map(|i| (c.id(i), c.url(i)))
        .collect();
    let returned: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .map(|(id, base)| {
                let http = c.http().clone();
                s.spawn(move || {
                    let mut got = Vec::new();
                    for k in 0..per_node {
                        let name = format!("n{id}-{k}");
                        let r = http
                            .post(base, rows, &[], &json!({ "name": name }))
                            .expect("concurrent insert");
                        assert_eq!(r.status, 201, "{name}: {r}");
                        got.extend(
                            r.body["ids"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_i64),
                        );
                    }
                    got
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an inserting thread"))
            .collect()
    });
    let mut unique = returned.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 3 * per_node, "distinct ids: {returned:?}");
    on_every_node(
        &c,
        rows,
        &[("columns", "id"), ("order_by", "id")],
        "30 rows",
        |b| {
            let mut got: Vec<i64> = b["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["id"].as_i64())
                .collect();
            got.sort_unstable();
            if got == unique {
                Ok(())
            } else {
                Err(format!("ids {got:?}"))
            }
        },
    );
}

/// Read-your-writes at the default consistency level: a database created through a
/// follower is there when the same client describes it through that follower right
/// away (`level=weak`, the default, reads on the leader). Each round is a race the
/// server must never lose; 2 x 150 rounds (one thread per follower) make a lost one very
/// likely to show.
#[test]
fn a_database_created_through_a_follower_can_be_described_there_at_once() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let followers: Vec<(u64, String)> = c
        .followers()
        .expect("followers")
        .into_iter()
        .map(|i| (c.id(i), c.url(i)))
        .collect();
    std::thread::scope(|s| {
        for (id, base) in &followers {
            let http = c.http().clone();
            s.spawn(move || {
                for k in 0..150 {
                    let name = format!("db_{id}_{k}");
                    let r = http
                        .post(base, "/v1/databases", &[], &json!({ "name": name }))
                        .expect("create");
                    expect(r, 201, None, "create a database through a follower");
                    let r = http
                        .get(base, &format!("/v1/databases/{name}"), &[])
                        .expect("describe");
                    assert_eq!(
                        r.status, 200,
                        "round {k} on node {id}: the database just created through this \
                         follower is described at the default level (weak): {r}"
                    );
                }
            });
        }
    });
}

/// A column's default, as given when the table was created (a JSON scalar), is what
/// describe reports, so a client can copy a table's definition.
#[test]
fn column_defaults_read_back_as_given() {
    let c = TestCluster::start(1).expect("a node starts");
    let base = "/v1/databases/main/tables";
    let r = c
        .post(
            0,
            base,
            &[],
            &json!({"name": "d", "columns": [
                {"name": "status", "type": "TEXT", "default": "active"},
                {"name": "score", "type": "REAL", "default": 0},
                {"name": "quote", "type": "TEXT", "default": "it's"},
                {"name": "none", "type": "TEXT"},
            ]}),
        )
        .expect("create");
    expect(r, 201, None, "create a table with defaults");
    // The defaults apply to new rows.
    let r = c
        .post(0, &format!("{base}/d/rows"), &[], &json!({"none": "x"}))
        .expect("insert");
    expect(r, 201, None, "insert with defaults");
    let r = c.get(0, &format!("{base}/d/rows"), &[]).expect("read");
    assert_eq!(
        r.body["rows"],
        json!([{"status": "active", "score": 0.0, "quote": "it's", "none": "x"}]),
        "{r}"
    );
    let r = c.get(0, &format!("{base}/d"), &[]).expect("describe");
    let defaults: Vec<Value> = r.body["columns"]
        .as_array()
        .map(|cols| cols.iter().map(|c| c["default"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        defaults,
        vec![json!("active"), json!(0), json!("it's"), Value::Null],
        "describe reports each default as it was given, not as a SQL literal: {r}"
    );
}

/// What a client writes is what it reads back: strings stay strings (whatever they look
/// like), integers keep all 64 bits, booleans stay booleans in a BOOLEAN column; and a
/// filter finds a row by the string it was written with. Column names that are SQL
/// keywords or query options work too.
#[test]
fn values_read_back_as_written() {
    let c = TestCluster::start(1).expect("a node starts");
    let base = "/v1/databases/main/tables";
    let r = c
        .post(
            0,
            base,
            &[],
            &json!({"name": "v", "columns": [
                {"name": "id", "type": "INTEGER", "primary_key": true},
                {"name": "t", "type": "TEXT"},
                {"name": "i", "type": "INTEGER"},
                {"name": "r", "type": "REAL"},
                {"name": "b", "type": "BOOLEAN"},
                {"name": "u"},
                {"name": "order", "type": "TEXT"},
                {"name": "limit", "type": "INTEGER"},
            ]}),
        )
        .expect("create");
    expect(r, 201, None, "create a table with keyword column names");
    let rows = json!([
        {"id": 1, "t": "héllo ✓ 'q' \"d\" %_ \\ ; --", "i": i64::MAX, "r": 0.1, "b": true,
         "u": "007", "order": "first", "limit": 5},
        {"id": 2, "t": "", "i": i64::MIN, "r": -2.5, "b": false, "u": null,
         "order": "second", "limit": 6},
        {"id": 3, "t": "x'cafe'", "i": 0, "r": 1e300, "b": null, "u": 7,
         "order": "third", "limit": 7},
    ]);
    let path = format!("{base}/v/rows");
    let r = c.post(0, &path, &[], &rows).expect("insert");
    expect(r, 201, None, "insert");
    let r = c.get(0, &path, &[("order_by", "id")]).expect("read");
    let got = r.body["rows"].as_array().cloned().unwrap_or_default();
    let want = rows.as_array().cloned().unwrap_or_default();
    assert_eq!(got.len(), 3, "{r}");
    for (g, w) in got.iter().zip(&want) {
        for k in ["id", "t", "i", "b", "u", "order", "limit"] {
            if w["id"] == 3 && k == "t" {
                continue; // checked last, below
            }
            assert_eq!(g[k], w[k], "column {k} of row {}: {r}", w["id"]);
        }
        assert_eq!(g["r"].as_f64(), w["r"].as_f64(), "column r: {r}");
    }
    // Filters on keyword-named columns, and by the exact strings written.
    for (params, want) in [
        (vec![("order", "second")], vec![2]),
        (vec![("limit[eq]", "7")], vec![3]),
        (
            vec![("limit[gte]", "6"), ("order_by", "-order")],
            vec![3, 2],
        ),
        (vec![("t", "")], vec![2]),
        (vec![("i", &i64::MAX.to_string())], vec![1]),
    ] {
        let r = c.get(0, &path, &params).expect("search");
        let r = expect(r, 200, None, "search");
        assert_eq!(ids(&r), want, "{params:?}: {r}");
    }
    // A string that looks like SQL's blob literal is still just a string.
    assert_eq!(
        got.get(2).map(|g| g["t"].clone()),
        Some(json!("x'cafe'")),
        "the string x'cafe' reads back unchanged: {r}"
    );
    let r = c.get(0, &path, &[("t", "x'cafe'")]).expect("search");
    assert_eq!(
        ids(&r),
        vec![3],
        "found by the string it was written with: {r}"
    );
}

#[test]
fn the_openapi_document_describes_every_route() {
    let c = TestCluster::start(1).expect("a node starts");
    let r = c.get(0, "/v1/openapi.json", &[]).expect("openapi");
    let r = expect(r, 200, None, "the OpenAPI document");
    let version = r.body["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "OpenAPI 3.1: {version}");
    let paths = r.body["paths"].as_object().cloned().unwrap_or_default();
    let methods = |p: &str| -> Vec<String> {
        paths
            .get(p)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    for (path, want) in [
        ("/v1/databases", &["get", "post"][..]),
        ("/v1/databases/{db}", &["get", "delete"][..]),
        ("/v1/databases/{db}/tables", &["get", "post"][..]),
        (
            "/v1/databases/{db}/tables/{table}",
            &["get", "delete", "patch"][..],
        ),
        (
            "/v1/databases/{db}/tables/{table}/rows",
            &["get", "post", "patch", "delete"][..],
        ),
        ("/v1/databases/{db}/tables/{table}/aggregate", &["get"][..]),
        ("/create_table", &["post"][..]),
        ("/insert", &["post"][..]),
        ("/search", &["get"][..]),
        ("/ping", &["get"][..]),
        ("/createdb", &["get", "post"][..]),
        ("/dropdb", &["get", "post"][..]),
        ("/createtable", &["post"][..]),
        ("/select", &["get", "post"][..]),
        ("/update", &["post"][..]),
        ("/delete", &["post"][..]),
        ("/create-db", &["post"][..]),
        ("/drop-db", &["post"][..]),
        ("/create-table", &["post"][..]),
        ("/delete-table", &["post"][..]),
        ("/metadata", &["get"][..]),
        ("/health", &["get"][..]),
        ("/map-reduce-count", &["post"][..]),
        ("/security-check", &["post"][..]),
        ("/db/execute", &["post"][..]),
        ("/db/query", &["get", "post"][..]),
        ("/status", &["get"][..]),
    ] {
        let got = methods(path);
        for m in want {
            assert!(
                got.iter().any(|g| g == m),
                "{} {path} is described (described: {got:?}; paths: {:?})",
                m.to_uppercase(),
                paths.keys().collect::<Vec<_>>()
            );
        }
    }
    // Each REST operation documents its error replies.
    let rows = &r.body["paths"]["/v1/databases/{db}/tables/{table}/rows"];
    for (m, code) in [
        ("post", "409"),
        ("get", "404"),
        ("patch", "400"),
        ("delete", "400"),
    ] {
        assert!(
            rows[m]["responses"][code].is_object(),
            "{m} rows documents {code}: {}",
            rows[m]["responses"]
        );
    }
    // Routes outside the document are 404 with the JSON error shape.
    let r = c.get(0, "/v1/nope", &[]).expect("unknown route");
    expect(r, 404, Some("no_route"), "an unknown route");
    let r = c
        .patch(0, "/v1/databases", &[], &json!({}))
        .expect("wrong method");
    expect(r, 405, Some("method_not_allowed"), "a wrong method");
}
