//! The README's quick start: `cairn demo`, then the curl lines, then Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use cairn_testkit::{process_alive, wait_for, wait_until, Demo, HttpClient, STOP_TIMEOUT};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

#[test]
fn readme_quick_start_works() {
    let mut demo = Demo::start(BIN, 3).expect("`cairn demo` prints `cluster ready`");

    // One line per node with its URL and Raft address; one of them is the leader.
    let lines = demo.stdout_lines();
    let mut leaders = 0;
    for k in 1..=3u16 {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("node {k} ")) && l.contains(&demo.url(k)))
            .unwrap_or_else(|| panic!("a line for node {k} with {}: {lines:#?}", demo.url(k)));
        let raft = format!("127.0.0.1:{}", demo.raft_port(k));
        assert!(line.contains(&raft), "{line:?} names {raft}");
        if line.contains("leader") {
            leaders += 1;
        }
    }
    assert_eq!(leaders, 1, "exactly one node line says leader: {lines:#?}");
    // Then the curl lines of the quick start, aimed at the demo's nodes.
    wait_until(STOP_TIMEOUT, "curl lines on the demo's stdout", || {
        demo.stdout_lines()
            .iter()
            .any(|l| l.contains("curl") && l.contains(&demo.url(1)))
    })
    .expect("the demo prints curl lines for the first node");

    // curl -XPOST 'localhost:P/db/execute?pretty&timings' -H 'Content-Type: application/json' -d '[...]'
    let http = HttpClient::new().expect("client");
    let r = http
        .post(
            &demo.url(1),
            "/db/execute",
            &[("pretty", ""), ("timings", "")],
            &json!([
                "CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT)",
                ["INSERT INTO foo(name) VALUES(?)", "fiona"],
            ]),
        )
        .expect("the first node answers");
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.result(1)["last_insert_id"], 1, "{r}");
    assert_eq!(r.result(1)["rows_affected"], 1, "{r}");
    assert!(r.body["time"].is_number(), "timings: {r}");

    // curl -G 'localhost:P+2/db/query?pretty&timings&level=linearizable' --data-urlencode 'q=SELECT * FROM foo'
    let r = http
        .get(
            &demo.url(2),
            "/db/query",
            &[("level", "linearizable"), ("q", "SELECT * FROM foo")],
        )
        .expect("the second node answers");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.result(0)["columns"], json!(["id", "name"]), "{r}");
    assert_eq!(r.rows(), json!([[1, "fiona"]]), "{r}");

    // Ctrl-C stops the demo and every node it started.
    let children = demo.descendant_pids();
    let status = demo.interrupt().expect("the demo exits on SIGINT");
    assert!(
        status.code().is_some(),
        "the demo handles SIGINT and exits by itself: {status}"
    );
    let ports = demo.ports();
    wait_for(STOP_TIMEOUT, "every demo port to close", || {
        let open: Vec<u16> = ports.iter().copied().filter(|&p| port_open(p)).collect();
        if open.is_empty() {
            Ok(())
        } else {
            Err(format!("still listening: {open:?}"))
        }
    })
    .expect("no node of the demo still listens");
    wait_for(STOP_TIMEOUT, "every demo child process to exit", || {
        let alive: Vec<u32> = children
            .iter()
            .copied()
            .filter(|&pid| process_alive(pid))
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {alive:?}"))
        }
    })
    .expect("no child of the demo is left running");
}
