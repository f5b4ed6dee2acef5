//! TLS and users through the `cairn` binary: a cluster of processes started with
//! `--http-cert`/`--node-cert` and friends, `cairn demo --tls --auth`, `cairn passwd`, and
//! the startup errors of incomplete flag sets.

use std::process::Command;

use cairn_testkit::{
    wait_until, Cluster, ClusterOptions, Demo, Formation, HttpClient, Level, ProcessCluster,
    TlsOptions, STOP_TIMEOUT,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

#[test]
fn processes_started_with_tls_flags_form_a_cluster_over_https_and_mtls() {
    let c = ProcessCluster::start_with(
        BIN,
        ClusterOptions {
            nodes: 3,
            formation: Formation::BootstrapExpect,
            tls: TlsOptions {
                https: true,
                node_mtls: true,
                ..TlsOptions::default()
            },
            ..ClusterOptions::default()
        },
    )
    .expect("a 3-node cluster over TLS forms");
    let leader = c.leader().expect("a leader");
    let followers = c.followers().expect("followers");
    c.execute_ok(
        followers[0],
        &json!(["CREATE TABLE t (x)", ["INSERT INTO t VALUES(?)", 7]]),
    )
    .expect("a write through a follower, forwarded over mTLS");
    let rows = c
        .query_rows(followers[1], "SELECT x FROM t", Level::Strong)
        .expect("a read over HTTPS");
    assert_eq!(rows, json!([[7]]));
    let nodes = c.get(followers[1], "/nodes", &[]).expect("/nodes");
    for (id, n) in nodes.body.as_object().expect("nodes") {
        assert!(
            n["api_addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("https://")),
            "node {id}: {n}"
        );
    }
    let moved = c
        .execute_with(followers[0], &[("redirect", "")], &json!(["SELECT 1"]))
        .expect("redirect");
    assert_eq!(moved.status, 301, "{moved}");
    let leader_url = c.base(leader).expect("url");
    assert!(
        moved
            .header("location")
            .is_some_and(|l| l.starts_with(&format!("{leader_url}/"))),
        "{moved:?}"
    );
    let plain = HttpClient::new().expect("client");
    let r = plain.get(&format!("http://{}", c.http_addr(leader)), "/status", &[]);
    assert!(!r.is_ok_and(|r| r.is_success()), "plain HTTP is not served");
}

#[test]
fn cairn_demo_tls_auth_is_the_secure_set_up_in_one_command() {
    let demo = Demo::start_with_args(BIN, 3, &["--tls", "--auth"])
        .expect("`cairn demo --tls --auth` starts");
    let ca = demo.data_dir().join("tls").join("ca.pem");
    assert!(ca.exists(), "the demo's CA is at {}", ca.display());
    let password = std::fs::read_to_string(demo.data_dir().join("admin-password"))
        .expect("the demo keeps the administrator's password");
    let password = password.trim();
    let lines = demo.stdout_lines();
    let https = |k: u16| format!("https://127.0.0.1:{}", demo.http_port(k));
    for k in 1..=3 {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("node {k} ")) && l.contains(&https(k))),
            "a line for node {k} with {}: {lines:#?}",
            https(k)
        );
    }
    let curl = format!("curl --cacert {} -u admin:{password}", ca.display());
    wait_until(STOP_TIMEOUT, "curl lines with --cacert and -u", || {
        demo.stdout_lines()
            .iter()
            .any(|l| l.contains(&curl) && l.contains(&https(1)))
    })
    .expect("curl lines name the CA, the administrator and https:// URLs");

    let anonymous = HttpClient::with_ca(&ca, None).expect("a client trusting the demo's CA");
    let r = anonymous
        .post(
            &https(2),
            "/db/execute",
            &[],
            &json!(["CREATE TABLE foo (x)"]),
        )
        .expect("answered");
    assert_eq!(r.status, 401, "no credentials, no write: {r}");
    assert_eq!(
        anonymous
            .get(&https(2), "/readyz", &[])
            .expect("answered")
            .status,
        200,
        "health checks stay anonymous"
    );
    let admin = HttpClient::configured(
        cairn_testkit::REQUEST_TIMEOUT,
        Some((ca.as_path(), None)),
        cairn_testkit::basic_auth("admin", password).expect("credentials"),
    )
    .expect("an administrator's client");
    let r = admin
        .post(
            &https(2),
            "/db/execute",
            &[],
            &json!(["CREATE TABLE foo (x)"]),
        )
        .expect("a write over HTTPS");
    assert!(r.is_clean(), "{r}");

    // `cairn import` reaches the secured cluster with the CA and the credentials.
    let csv = demo.data_dir().join("rows.csv");
    std::fs::write(&csv, "x\n1\n2\n3\n").expect("write a CSV");
    let out = std::process::Command::new(BIN)
        .args(["import", "--addr", &https(3), "--table", "foo", "--cacert"])
        .arg(&ca)
        .args(["--user", &format!("admin:{password}")])
        .arg(&csv)
        .output()
        .expect("cairn import runs");
    assert!(
        out.status.success(),
        "cairn import over HTTPS with a user: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = admin
        .get(
            &https(3),
            "/db/query",
            &[("q", "SELECT COUNT(*) FROM foo"), ("level", "strong")],
        )
        .expect("a read over HTTPS");
    assert_eq!(r.rows(), json!([[3]]), "{r}");
}

/// `cairn start` with `flags` on a fresh data directory: its exit status and stderr.
fn start_with(flags: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").display().to_string();
    let out = Command::new(BIN)
        .args(["start", "--node-id", "1", "--data-dir", &data])
        .args(["--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"])
        .args(flags)
        .env("CAIRN_CLUSTER_SECRET", "s")
        .output()
        .expect("cairn runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn incomplete_tls_flags_are_a_startup_error() {
    for (flags, names) in [
        (&["--http-cert", "c.pem"][..], "--http-key"),
        (&["--http-key", "k.pem"][..], "--http-cert"),
        (
            &[
                "--http-cert",
                "c.pem",
                "--http-key",
                "k.pem",
                "--http-verify-client",
            ][..],
            "--http-ca-cert",
        ),
        (&["--http-ca-cert", "ca.pem"][..], "--http-cert"),
        (
            &["--node-cert", "n.pem", "--node-key", "n.key"][..],
            "--node-ca-cert",
        ),
    ] {
        let (ok, stderr) = start_with(flags);
        assert!(!ok, "{flags:?} must not start");
        assert!(stderr.contains(names), "{flags:?}: {stderr}");
    }
    // Complete, but the files do not exist: the error names the file.
    let (ok, stderr) = start_with(&["--http-cert", "/nonexistent/c.pem", "--http-key", "k.pem"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/c.pem"), "{stderr}");
}

/// `cairn passwd` prints an argon2id hash that an auth file accepts, and with `--user` a
/// whole entry.
#[test]
fn cairn_passwd_prints_a_hash_an_auth_file_accepts() {
    use std::io::Write as _;
    let mut child = std::process::Command::new(BIN)
        .args(["passwd", "--user", "bob"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cairn passwd runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret pw\n")
        .expect("write the password");
    let out = child.wait_with_output().expect("cairn passwd exits");
    assert!(out.status.success());
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON entry");
    assert!(entry["password"]
        .as_str()
        .is_some_and(|p| p.starts_with("$argon2id$")));
    let users = cairn_auth::Users::from_json(&format!("[{entry}]")).expect("the entry loads as is");
    let bob = users
        .authenticate(&cairn_auth::Credentials::new("bob", "s3cret pw"))
        .expect("the password verifies");
    assert!(bob.allows(cairn_auth::Perm::Execute, Some("main")));
    assert!(users
        .authenticate(&cairn_auth::Credentials::new("bob", "s3cret"))
        .is_err());
}
