//! TLS on both ports of in-process clusters (`cairn_server::serve` through
//! `cairn_testkit::TestCluster`): HTTPS for clients, mutual TLS between nodes, client
//! certificates, and certificates replaced while the node runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_server::{Listeners, ServerConfig};
use cairn_testkit::{
    try_wait_for, Cluster, ClusterOptions, HttpClient, Level, TestCluster, TlsOptions,
};
use cairn_tls::pki::{CertificateAuthority, LOOPBACK_NAMES};
use cairn_tls::{ClientTls, NodeTls};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);

fn tls_cluster(nodes: usize, tls: TlsOptions) -> TestCluster {
    TestCluster::start_with(ClusterOptions {
        nodes,
        tls,
        ..ClusterOptions::default()
    })
    .expect("a TLS cluster forms")
}

fn ca(c: &TestCluster) -> PathBuf {
    c.pki().expect("the cluster has a PKI").ca_path()
}

#[test]
fn a_cluster_over_https_and_node_mtls_takes_writes_through_a_follower() {
    let c = tls_cluster(
        3,
        TlsOptions {
            https: true,
            node_mtls: true,
            ..TlsOptions::default()
        },
    );
    let leader = c.leader().expect("a leader");
    let followers = c.followers().expect("followers");
    let (f1, f2) = (followers[0], followers[1]);
    assert!(c.base(f1).expect("url").starts_with("https://"));

    // A follower forwards the write to the leader over the raft port's mutual TLS.
    c.execute_ok(
        f1,
        &json!([
            "CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT)",
            ["INSERT INTO foo(name) VALUES(?)", "fiona"]
        ]),
    )
    .expect("a write through a follower");
    let rows = c
        .query_rows(f2, "SELECT * FROM foo", Level::Linearizable)
        .expect("a read through the other follower");
    assert_eq!(rows, json!([[1, "fiona"]]));
    c.wait_rows(f2, "SELECT name FROM foo", &json!([["fiona"]]))
        .expect("replicated to every node");

    // Every URL a node hands out says https://.
    let nodes = c.get(f1, "/nodes", &[]).expect("/nodes");
    assert_eq!(nodes.status, 200, "{nodes}");
    let entries = nodes.body.as_object().expect("an object of nodes");
    assert_eq!(entries.len(), 3, "{nodes}");
    for (id, n) in entries {
        let api = n["api_addr"].as_str().unwrap_or_default();
        assert!(api.starts_with("https://127.0.0.1:"), "node {id}: {n}");
        assert_eq!(
            n["reachable"], true,
            "nodes check each other over HTTPS: {n}"
        );
    }
    let leader_url = c.base(leader).expect("url");
    let moved = c
        .execute_with(f1, &[("redirect", "")], &json!(["SELECT 1"]))
        .expect("a redirected write");
    assert_eq!(moved.status, 301, "{moved}");
    assert_eq!(
        moved.header("location"),
        Some(format!("{leader_url}/db/execute?redirect").as_str())
    );
    let status = c.status(f1).expect("/status");
    assert_eq!(status["http"]["cluster"]["https"], "true");
    assert_eq!(
        status["node"]["api_addr"],
        Value::String(c.base(f1).expect("url"))
    );
    assert_eq!(
        status["raft"]["leader_api_addr"],
        Value::String(leader_url.clone())
    );
    // A follower's refusal names the leader by its https:// URL.
    c.post(leader, "/v1/databases", &[], &json!({"name": "school"}))
        .expect("create a database");
    let refused = c
        .delete(f1, "/v1/databases/school", None)
        .expect("a delete on a follower");
    assert_eq!(refused.status, 403, "{refused}");
    assert_eq!(refused.body["leader"], Value::String(leader_url));

    // Seed 004's security check sees every raft port refuse a client without a node
    // certificate at the TLS handshake.
    let check = c
        .post(f1, "/security-check", &[], &json!({}))
        .expect("/security-check");
    assert_eq!(check.body["secure"], true, "{check}");
    for n in check.body["checks"].as_array().expect("checks") {
        assert_eq!(n["refused_at_handshake"], true, "{n}");
    }

    // Plain HTTP to the HTTPS port, or HTTPS without trusting the CA, gets nothing.
    let plain = HttpClient::new().expect("a plain client");
    let addr = c.http_addr(f1);
    let r = plain.get(&format!("http://{addr}"), "/readyz", &[]);
    assert!(
        !r.is_ok_and(|r| r.is_success()),
        "plain HTTP must not be served"
    );
    assert!(
        plain
            .get(&format!("https://{addr}"), "/readyz", &[])
            .is_err(),
        "a client that does not trust the test CA refuses the server"
    );
}

/// A request to node `i`'s raft port with the cluster secret, over TLS as `client` sets it
/// up. `Ok(status)` when a TLS session was established and the node answered.
fn raft_request(
    c: &TestCluster,
    i: usize,
    client: Option<rustls::ClientConfig>,
) -> Result<u16, String> {
    let url = format!("https://{}/raft/0/node", c.raft_addr(i));
    let secret = c.secret().to_string();
    c.runtime().block_on(async move {
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(config) = client {
            builder = builder.use_preconfigured_tls(config);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        let r = http
            .post(url)
            .header(cairn_node::SECRET_HEADER, secret)
            .body(Vec::new())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(r.status().as_u16())
    })
}

fn client_config(trust: &Path, identity: Option<(PathBuf, PathBuf)>) -> rustls::ClientConfig {
    ClientTls::new(vec![trust.to_path_buf()], identity)
        .and_then(|c| c.config())
        .expect("a client TLS config")
}

#[test]
fn node_mtls_refuses_a_node_whose_certificate_comes_from_another_ca() {
    let mut c = tls_cluster(
        2,
        TlsOptions {
            node_mtls: true,
            ..TlsOptions::default()
        },
    );
    let leader = c.leader().expect("a leader");
    let pki = c.pki().expect("pki");
    let ca = pki.ca_path();
    let node1 = pki.node_tls(1).expect("node 1's files").expect("node TLS");

    // A rogue node: the right secret, trusting the right CA, but its own certificate comes
    // from another CA.
    let rogue_dir = tempfile::tempdir().expect("tempdir");
    let rogue_ca = CertificateAuthority::new("rogue CA").expect("CA");
    let (rogue_cert, rogue_key) = (
        rogue_dir.path().join("n.pem"),
        rogue_dir.path().join("n.key"),
    );
    rogue_ca
        .issue(&LOOPBACK_NAMES)
        .expect("issue")
        .write(&rogue_cert, &rogue_key)
        .expect("write");

    // Its raft requests are refused at the TLS handshake, as are those without a
    // certificate; a member's certificate gets through to the node (which then answers).
    let rogue_client = client_config(&ca, Some((rogue_cert.clone(), rogue_key.clone())));
    let refused = raft_request(&c, leader, Some(rogue_client));
    assert!(
        refused.is_err(),
        "a rogue certificate is refused: {refused:?}"
    );
    let anonymous = raft_request(&c, leader, Some(client_config(&ca, None)));
    assert!(
        anonymous.is_err(),
        "no certificate is refused: {anonymous:?}"
    );
    let plain = raft_request(&c, leader, None);
    assert!(
        plain.is_err(),
        "a client trusting nobody gets nowhere: {plain:?}"
    );
    let member = client_config(&ca, Some((node1.cert.clone(), node1.key.clone())));
    let through = raft_request(&c, leader, Some(member));
    assert!(
        through.is_ok(),
        "a member's certificate passes: {through:?}"
    );

    // The rogue node starts and asks to join: it is never added.
    let mut config = ServerConfig::new(9, rogue_dir.path().join("data"));
    config.cluster_secret = Some(c.secret().to_string());
    config.join = vec![c.base(leader).expect("url")];
    config.node_tls = Some(NodeTls {
        cert: rogue_cert,
        key: rogue_key,
        ca: ca.clone(),
    });
    let rogue = c
        .runtime()
        .block_on(async {
            let listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0").await?;
            cairn_server::serve(listeners, config, std::future::pending()).await
        })
        .expect("the rogue node starts");
    // The same join request its bootstrap sends, to see the answer.
    let join = json!({
        "id": 9,
        "http_addr": rogue.http_addr().to_string(),
        "raft_addr": rogue.raft_addr().to_string(),
    });
    let answer = c
        .http()
        .post_with_headers(
            &c.base(leader).expect("url"),
            "/join",
            &[(cairn_node::SECRET_HEADER, c.secret())],
            &join,
        )
        .expect("POST /join");
    assert_eq!(answer.status, 400, "{answer}");
    assert!(answer.text.contains("mutual TLS"), "{answer}");
    let s = c.raft_status(leader).expect("status");
    assert!(
        !s.voters.contains(&9) && !s.learners.contains(&9),
        "the rogue is no member: {s:?}"
    );
    c.runtime()
        .block_on(async { tokio::time::timeout(DEADLINE, rogue.stop()).await })
        .expect("the rogue node stops")
        .ok();

    // A node with a certificate from the node CA joins.
    let i = c
        .add_node(0)
        .expect("a node with a valid certificate joins");
    let s = c
        .raft_status(c.leader().expect("a leader"))
        .expect("status");
    assert!(s.voters.contains(&c.id(i)), "{s:?}");
    assert!(!s.voters.contains(&9) && !s.learners.contains(&9), "{s:?}");
}

#[test]
fn verify_client_refuses_clients_without_a_certificate_from_the_ca() {
    let c = tls_cluster(
        2,
        TlsOptions {
            https: true,
            verify_client: true,
            ..TlsOptions::default()
        },
    );
    // The nodes joined each other through /join over HTTPS, presenting their certificates.
    c.wait_voters(&[1, 2]).expect("both voters");
    let base = c.base(0).expect("url");
    let ca = ca(&c);
    let anonymous = HttpClient::with_ca(&ca, None).expect("client");
    assert!(
        anonymous.get(&base, "/readyz", &[]).is_err(),
        "a client without a certificate fails the handshake"
    );
    let rogue_dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (
        rogue_dir.path().join("c.pem"),
        rogue_dir.path().join("c.key"),
    );
    CertificateAuthority::new("rogue CA")
        .and_then(|ca| ca.issue(&LOOPBACK_NAMES))
        .and_then(|i| i.write(&cert, &key))
        .expect("a rogue client certificate");
    let rogue = HttpClient::with_ca(&ca, Some((cert, key))).expect("client");
    assert!(
        rogue.get(&base, "/readyz", &[]).is_err(),
        "a certificate from another CA fails the handshake"
    );
    let identity = c.pki().expect("pki").client_identity();
    let good = HttpClient::with_ca(&ca, Some(identity)).expect("client");
    let r = good
        .get(&base, "/readyz", &[])
        .expect("a client with a certificate");
    assert_eq!(r.status, 200, "{r}");
    c.execute_ok(1, &json!(["CREATE TABLE t (x)"]))
        .expect("the harness's client presents its certificate");
}

/// The leaf certificate node `addr` presents to a new connection, trusting any of `cas`.
fn served_certificate(
    c: &TestCluster,
    addr: std::net::SocketAddr,
    cas: &[PathBuf],
) -> Result<CertificateDer<'static>, String> {
    let config = ClientTls::new(cas.to_vec(), None)
        .and_then(|t| t.config())
        .map_err(|e| e.to_string())?;
    c.runtime().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| cert.clone().into_owned())
            .ok_or_else(|| "no certificate".to_string())
    })
}

#[test]
fn a_replaced_http_certificate_is_served_without_a_restart() {
    let c = tls_cluster(
        1,
        TlsOptions {
            https: true,
            ..TlsOptions::default()
        },
    );
    let pki = c.pki().expect("pki");
    let files = pki.http_tls(1).expect("files").expect("https");
    let addr = c.http_addr(0);
    let old_ca = pki.ca_path();
    let before = CertificateDer::from_pem_file(&files.cert).expect("the first certificate");
    assert_eq!(
        served_certificate(&c, addr, std::slice::from_ref(&old_ca)),
        Ok(before.clone())
    );

    // A new pair from a new CA, renamed over the old files (key first).
    let dir = tempfile::tempdir().expect("tempdir");
    let new_ca = CertificateAuthority::new("the next CA").expect("CA");
    let new_ca_path = dir.path().join("ca.pem");
    new_ca.write_cert(&new_ca_path).expect("write CA");
    new_ca
        .issue(&LOOPBACK_NAMES)
        .expect("issue")
        .write(&files.cert, &files.key)
        .expect("replace the files");
    let after = CertificateDer::from_pem_file(&files.cert).expect("the new certificate");
    assert_ne!(before, after);

    let both = [old_ca.clone(), new_ca_path.clone()];
    try_wait_for(DEADLINE, "the new certificate on a new connection", || {
        Ok(match served_certificate(&c, addr, &both) {
            Ok(cert) if cert == after => Ok(()),
            Ok(_) => Err("still the old certificate".to_string()),
            Err(e) => Err(e),
        })
    })
    .expect("the node serves the new certificate");
    let next = HttpClient::with_ca(&new_ca_path, None).expect("client");
    let r = next
        .get(&c.base(0).expect("url"), "/readyz", &[])
        .expect("a client trusting only the new CA");
    assert_eq!(r.status, 200, "{r}");
    let old = HttpClient::with_ca(&old_ca, None).expect("client");
    assert!(
        old.get(&c.base(0).expect("url"), "/readyz", &[]).is_err(),
        "a client trusting only the old CA now refuses the server"
    );
}

#[test]
fn a_client_that_never_handshakes_is_dropped_after_the_header_timeout() {
    let limits = cairn_server::ServeLimits {
        header_read_timeout: Duration::from_millis(500),
        max_connections: 2,
        ..cairn_server::PUBLIC_LIMITS
    };
    let c = TestCluster::start_with_limits(
        ClusterOptions {
            nodes: 1,
            tls: TlsOptions {
                https: true,
                ..TlsOptions::default()
            },
            ..ClusterOptions::default()
        },
        limits,
        cairn_server::RAFT_LIMITS,
    )
    .expect("a node");
    let addr = c.http_addr(0);
    // Both permits taken by connections that send nothing, not even a ClientHello.
    let silent: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
        .collect();
    for mut s in silent {
        use std::io::Read;
        s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
        let mut buf = [0u8; 1];
        // The server closes it once the handshake timeout passes: end of stream (or a
        // reset), not our own read timeout.
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("the server sent {n} bytes to a client that said nothing"),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the server kept the silent connection open: {e}"
            ),
        }
    }
    // The permits came back: a real client is served.
    try_wait_for(DEADLINE, "an HTTPS request to be served", || {
        Ok(match c.get(0, "/readyz", &[]) {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(r.to_string()),
            Err(e) => Err(format!("{e:#}")),
        })
    })
    .expect("served after the silent connections were dropped");
}
