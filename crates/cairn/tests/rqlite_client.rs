//! An unmodified rqlite client library (pyrqlite, from PyPI) works against Cairn: it
//! creates a table, writes with bound parameters and reads back through a follower, over
//! plain HTTP, and over HTTPS with the cluster's CA as a user with a password.
//! Needs `python3` with `pyrqlite` installed (`pip install pyrqlite`; `.ci/run` does it).

use std::path::Path;
use std::process::Command;

use cairn_testkit::{Cluster, ClusterOptions, ProcessCluster, TlsOptions};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// Reads its connection settings as JSON from argv[1]: `port`, `scheme`, `cafile` (the CA
/// to trust over HTTPS), `user`, `password` (`null` when not used).
const SCRIPT: &str = r#"
import json, ssl, sys
import pyrqlite.dbapi2 as dbapi2
args = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=args['cafile']) if args['cafile'] else None
conn = dbapi2.connect(scheme=args['scheme'], host='127.0.0.1', port=args['port'],
                      ssl_context=ctx, user=args['user'], password=args['password'])
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

/// How pyrqlite connects to a node.
struct Target<'a> {
    port: u16,
    /// The CA to trust: HTTPS when given, plain HTTP otherwise.
    ca: Option<&'a Path>,
    /// HTTP Basic credentials, for clusters that authenticate users.
    user: Option<&'a str>,
    password: Option<&'a str>,
}

/// Runs [`SCRIPT`] against `target`.
fn pyrqlite_output(target: &Target<'_>) -> std::process::Output {
    let args = json!({
        "port": target.port,
        "scheme": if target.ca.is_some() { "https" } else { "http" },
        "cafile": target.ca.map(|p| p.display().to_string()),
        "user": target.user,
        "password": target.password,
    });
    Command::new("python3")
        .args(["-c", SCRIPT, &args.to_string()])
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .expect("python3 runs (install python3 and `pip install pyrqlite`)")
}

/// Runs [`SCRIPT`] against `target` and checks what it saw.
fn run_pyrqlite(target: &Target<'_>) {
    let out = pyrqlite_output(target);
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

#[test]
fn pyrqlite_works_unchanged_through_a_follower() {
    let c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let f = c.followers().expect("followers")[0];
    run_pyrqlite(&Target {
        port: c.http_addr(f).port(),
        ca: None,
        user: None,
        password: None,
    });
}

#[test]
fn pyrqlite_works_over_https_with_a_user_and_password() {
    let hash = cairn_auth::hash_password("app-pw").expect("hash");
    let auth = json!([
        {"username": "app", "password": hash, "perms": ["query", "execute", "schema"]},
        {"username": "reader", "password": "reader-pw", "perms": ["query"]},
    ]);
    let c = ProcessCluster::start_with(
        BIN,
        ClusterOptions {
            nodes: 3,
            tls: TlsOptions {
                https: true,
                node_mtls: true,
                ..TlsOptions::default()
            },
            auth: Some(auth.to_string()),
            ..ClusterOptions::default()
        },
    )
    .expect("a 3-node cluster with HTTPS, node mTLS and --auth starts");
    let f = c.followers().expect("followers")[0];
    let ca = c.pki().expect("the cluster's PKI").ca_path();
    run_pyrqlite(&Target {
        port: c.http_addr(f).port(),
        ca: Some(&ca),
        user: Some("app"),
        password: Some("app-pw"),
    });
    // A wrong password and a user without `execute` get nowhere.
    for (user, password) in [("app", "wrong"), ("reader", "reader-pw")] {
        let out = pyrqlite_output(&Target {
            port: c.http_addr(f).port(),
            ca: Some(&ca),
            user: Some(user),
            password: Some(password),
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && (stderr.contains("401") || stderr.contains("403")),
            "{user}/{password} must be refused with 401 or 403:\n{stderr}"
        );
    }
}
