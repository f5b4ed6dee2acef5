//! Hostile HTTP clients that need no process tricks (those stay in
//! `crates/cairn/tests/hostile_http.rs`): connections that never finish their header.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cairn_testkit::{
    assert_replicas_identical, Cluster, ClusterOptions, ServeLimits, TestCluster, PUBLIC_LIMITS,
    RAFT_LIMITS,
};
use serde_json::json;

/// Hostile item 10: connections that never finish their header used to stay open forever.
/// The server closes them after its header read timeout (30 s on the public listener and
/// 60 s on the node-to-node one by default; 2 s and 5 s here, so the test need not wait),
/// and serves others meanwhile.
#[test]
fn half_open_connections_are_closed() {
    let short = |header_s, base: ServeLimits| ServeLimits {
        header_read_timeout: Duration::from_secs(header_s),
        body_idle_timeout: Duration::from_secs(header_s),
        ..base
    };
    let c = TestCluster::start_with_limits(
        ClusterOptions::default(),
        short(2, PUBLIC_LIMITS),
        short(5, RAFT_LIMITS),
    )
    .expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let mut socks = Vec::new();
    for port in [c.http_addr(leader), c.raft_addr(leader)] {
        for _ in 0..150 {
            let mut s = TcpStream::connect(port).expect("connect");
            s.write_all(b"POST /db/execute HTTP/1.1\r\nHost: x\r\n")
                .expect("a partial header");
            socks.push(s);
        }
    }
    // The raft port speaks HTTP/2 too: connections that open it (the preface and an empty
    // SETTINGS frame) and then start no request are closed as well.
    for _ in 0..50 {
        let mut s = TcpStream::connect(c.raft_addr(leader)).expect("connect");
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .expect("an HTTP/2 preface");
        socks.push(s);
    }
    // The node still serves while they hang.
    c.execute_ok(leader, &json!(["CREATE TABLE t (x)"]))
        .expect("a write while 300 connections hang");
    let deadline = Instant::now() + Duration::from_secs(60);
    for (n, s) in socks.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "connection {n} still open after 60 s");
        s.set_read_timeout(Some(left)).expect("read timeout");
        let mut buf = [0u8; 1024];
        // Closed: EOF, or a reset; an answer (408) followed by EOF is fine too.
        let mut reads = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) if reads < 16 => reads += 1,
                Ok(_) => panic!("connection {n} keeps sending"),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("connection {n} still open at the deadline")
                }
                Err(_) => break,
            }
        }
    }
    assert_replicas_identical(&c, "main");
}
