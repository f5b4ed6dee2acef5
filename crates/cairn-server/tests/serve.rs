//! `cairn_server::serve` as a library: a node starts on listeners the caller bound, serves
//! its API on them, stops when told (releasing its ports and its data directory), and a
//! node restarted on the same data directory resumes where it was.

use std::time::Duration;

use cairn_server::{Listeners, ServerConfig};
use cairn_testkit::{wait_for, Cluster, HttpClient, Level, TestCluster};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn a_node_serves_until_told_to_stop_and_releases_its_ports() {
    let dir = tempfile::tempdir().expect("a data directory");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let http = HttpClient::new().expect("an HTTP client");
    let (handle, http_addr, raft_addr) = runtime.block_on(async {
        let listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0")
            .await
            .expect("bind");
        let mut config = ServerConfig::new(1, dir.path().join("data"));
        config.cluster_secret = Some("s".into());
        let handle = cairn_server::serve(listeners, config, std::future::pending())
            .await
            .expect("serve");
        let (h, r) = (handle.http_addr(), handle.raft_addr());
        (handle, h, r)
    });
    assert_ne!(http_addr.port(), 0, "the bound port is reported");
    assert_eq!(handle.advertised_http(), http_addr.to_string());
    assert_eq!(handle.node().id(), 1);
    let base = format!("http://{http_addr}");
    wait_for(DEADLINE, "the single node to be ready", || {
        match http.get(&base, "/readyz", &[]) {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(r.to_string()),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .expect("the node is ready");
    let r = http
        .post(&base, "/db/execute", &[], &json!(["CREATE TABLE t (x)"]))
        .expect("execute");
    assert!(r.is_clean(), "{r}");

    runtime
        .block_on(async { tokio::time::timeout(DEADLINE, handle.stop()).await })
        .expect("the node stops within the deadline")
        .expect("and stops cleanly");
    // Both ports are free again, so a restart on the same addresses can bind them.
    runtime.block_on(async {
        Listeners::bind(&http_addr.to_string(), &raft_addr.to_string())
            .await
            .expect("the ports are released");
    });
    assert!(
        http.get(&base, "/readyz", &[]).is_err(),
        "nothing answers any more"
    );
}

#[test]
fn a_stopped_node_restarts_on_its_data_directory_and_catches_up() {
    let mut c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    c.execute_ok(
        leader,
        &json!(["CREATE TABLE t (v TEXT)", "INSERT INTO t VALUES ('a')"]),
    )
    .expect("writes");
    let f = c.followers().expect("followers")[0];
    // The leader keeps a replication stream open to it; stopping ends that stream at once
    // (`cairn_node::Stopping`) instead of waiting out the raft port's drain timeout.
    let stopping = std::time::Instant::now();
    c.stop(f).expect("stop a follower");
    assert!(
        stopping.elapsed() < cairn_server::RAFT_LIMITS.drain_timeout,
        "stopping took {:?}: the drain waited for the replication stream",
        stopping.elapsed()
    );
    c.execute_ok(leader, &json!(["INSERT INTO t VALUES ('b')"]))
        .expect("a write while it is stopped");
    c.restart(f).expect("restart it");
    c.wait_ready(f).expect("it is ready again");
    c.wait_rows(f, "SELECT v FROM t ORDER BY v", &json!([["a"], ["b"]]))
        .expect("it has the write it missed");
    assert_eq!(
        c.raft_status(f).expect("status").voters,
        vec![1, 2, 3],
        "it is still a voter"
    );
    assert_eq!(
        c.query_rows(f, "SELECT COUNT(*) FROM t", Level::Linearizable)
            .expect("a linearizable read through it"),
        json!([[2]])
    );
}
