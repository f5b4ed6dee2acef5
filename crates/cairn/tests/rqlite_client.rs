//! An unmodified rqlite client library (pyrqlite, from PyPI) works against Cairn: it
//! creates a table, writes with bound parameters and reads back through a follower.
//! Needs `python3` with `pyrqlite` installed (`pip install pyrqlite`; `.ci/run` does it).

use std::process::Command;

use cairn_testkit::{Cluster, ProcessCluster};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

const SCRIPT: &str = r#"
import json, sys
import pyrqlite.dbapi2 as dbapi2
conn = dbapi2.connect(host='127.0.0.1', port=int(sys.argv[1]))
out = {}
with conn.cursor() as c:
    c.execute('CREATE TABLE foo (id integer not null primary key, name text, ok boolean)')
    c.executemany('INSERT INTO foo(name, ok) VALUES(?, ?)', seq_of_parameters=(('fiona', True), ('sinead', False)))
    c.execute('SELECT id, name, ok FROM foo WHERE name = ?', ('fiona',))
    out['row'] = list(c.fetchone())
    c.execute('SELECT count(*) FROM foo')
    out['count'] = c.fetchone()[0]
    try:
        c.execute('SELECT * FROM missing')
        out['error'] = None
    except Exception as e:
        out['error'] = str(e)
print(json.dumps(out))
"#;

#[test]
fn pyrqlite_works_unchanged_through_a_follower() {
    let c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let f = c.followers().expect("followers")[0];
    let port = c.http_addr(f).port().to_string();
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &port])
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("python3 runs (install python3 and `pip install pyrqlite`)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the pyrqlite script failed (is pyrqlite installed? `pip install pyrqlite`):\n{stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    assert_eq!(v["row"], json!([1, "fiona", true]), "{v}");
    assert_eq!(v["count"], 2, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("no such table: missing")),
        "a SQL error reaches the client: {v}"
    );
}
