//! The dashboard drawn from recorded documents (`crates/cairn/tests/fixtures/top/`: three
//! nodes' `/status`, `/nodes`, and two `/metrics` samples per node one second apart) into
//! ratatui's `TestBackend`. The full picture is also written to `docs/images/top.svg`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use serde_json::Value;

use super::load::OpMetrics;
use super::model::{self, NodeInput, Reach, Snapshot};
use super::{render, svg};

const WIDTH: u16 = 120;
const HEIGHT: u16 = 26;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/top")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The recorded cluster (node 3 leads), as one refresh one second after the previous one
/// would assemble it; `down` lists nodes whose `/status` did not answer this time.
fn recorded(down: &[u64], with_metrics: bool) -> Snapshot {
    let members = model::members(&json("nodes.json"));
    assert_eq!(members.len(), 3, "the fixture lists three nodes");
    let inputs = members
        .into_iter()
        .map(|(id, api_addr)| {
            let load = with_metrics.then(|| {
                let earlier = OpMetrics::parse(&fixture(&format!("metrics-{id}-a.txt")));
                let later = OpMetrics::parse(&fixture(&format!("metrics-{id}-b.txt")));
                later.since(&earlier, Duration::from_secs(1))
            });
            let up = !down.contains(&id);
            NodeInput {
                id: Some(id),
                api_addr,
                status: if up {
                    Ok(json(&format!("status-{id}.json")))
                } else {
                    Err((
                        Reach::Unreachable,
                        "Connection refused (os error 111)".to_string(),
                    ))
                },
                load: load.filter(|_| up),
                last_seen: Some(Duration::from_millis(2_500)),
            }
        })
        .collect();
    let tables = BTreeMap::from([
        ("main".to_string(), vec!["foo".to_string()]),
        (
            "school".to_string(),
            vec!["pupils".to_string(), "teachers".to_string()],
        ),
    ]);
    model::assemble(
        "http://127.0.0.1:4201",
        Duration::from_secs(1),
        "05:32:46 UTC".to_string(),
        inputs,
        &tables,
    )
}

fn render(snapshot: &Snapshot) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("a test terminal");
    terminal
        .draw(|frame| render::draw(frame, snapshot))
        .expect("drawing");
    terminal.backend().buffer().clone()
}

fn lines(buffer: &Buffer) -> Vec<String> {
    buffer
        .content()
        .chunks(usize::from(buffer.area.width))
        .map(|row| row.iter().map(|c| c.symbol()).collect())
        .collect()
}

/// The one screen line that contains every needle.
fn line_with(screen: &[String], needles: &[&str]) -> String {
    let found: Vec<&String> = screen
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect();
    match found.as_slice() {
        [one] => (*one).clone(),
        _ => panic!(
            "{} lines contain {needles:?}; the screen:\n{}",
            found.len(),
            screen.join("\n")
        ),
    }
}

/// The cells after `needle` on `line`, up to the end of its panel: `"node 3  120.0  300.0
/// │"` gives `["120.0", "300.0"]` (cells are separated by at least two spaces).
fn cells_after(line: &str, needle: &str) -> Vec<String> {
    let rest = line.split_once(needle).map_or("", |(_, rest)| rest);
    let panel = rest.split('│').next().unwrap_or("");
    panel
        .split("  ")
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn the_leader_is_marked_and_followers_lag_and_the_load_are_shown() {
    let snapshot = recorded(&[], true);
    assert_eq!(snapshot.leader, Some(3));
    let buffer = render(&snapshot);
    let screen = lines(&buffer);

    // The nodes: node 3 leads, marked and named so; the others follow.
    let leader = line_with(&screen, &[" 127.0.0.1:4205", "yes"]);
    assert!(
        leader.contains("*3") && leader.contains("LEADER"),
        "{leader}"
    );
    for addr in [" 127.0.0.1:4201", " 127.0.0.1:4203"] {
        let row = line_with(&screen, &[addr, "yes"]);
        assert!(row.contains("Follower") && !row.contains("LEADER"), "{row}");
        assert!(row.contains(" 44 "), "log, commit and applied index: {row}");
    }
    let header = line_with(&screen, &["leader node 3"]);
    assert!(
        header.contains("term 1") && header.contains("3 reachable"),
        "{header}"
    );

    // Replication as the leader reports it.
    let n1 = line_with(&screen, &["node 1", "entries"]);
    assert!(n1.contains("0 entries") && n1.contains("12 ms"), "{n1}");
    let n2 = line_with(&screen, &["node 2", "entries"]);
    assert!(
        n2.contains(" 40 ") && n2.contains("4 entries") && n2.contains("230 ms"),
        "{n2}"
    );

    // Load from the two samples, one second apart: node 3 served 120 writes and 300
    // reads; its writes' median is the top of the (1 ms, 2.5 ms] bucket (60 of 120), its
    // p99 interpolated inside (10 ms, 25 ms] (118.8 of 120: 0.4 of the way).
    let node3 = cells_after(&line_with(&screen, &["node 3", "300.0"]), "node 3");
    assert_eq!(
        node3,
        ["120.0", "300.0", "2.50 ms", "16.0 ms", "500 µs", "2.50 ms"],
        "node 3: writes/s, reads/s, write p50 and p99, read p50 and p99"
    );
    // node 1 served 30 writes and 200 reads, node 2 no writes and 50 reads.
    let all = cells_after(&line_with(&screen, &["all  ", "550.0"]), "all ");
    assert_eq!(&all[..2], ["150.0", "550.0"], "{all:?}");
    let header_load = line_with(&screen, &["all nodes"]);
    assert!(
        header_load.contains("writes 150.0/s") && header_load.contains("reads 550.0/s"),
        "{header_load}"
    );

    // Databases with their sizes and tables.
    let school = line_with(&screen, &["school"]);
    assert!(school.contains("pupils, teachers"), "{school}");
    let main = line_with(&screen, &["main ", "foo"]);
    assert!(main.contains("kB"), "{main}");

    let image = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images/top.svg");
    std::fs::write(&image, svg::to_svg(&buffer))
        .unwrap_or_else(|e| panic!("{}: {e}", image.display()));
}

#[test]
fn a_node_that_does_not_answer_shows_as_unreachable_and_no_longer_leads() {
    let snapshot = recorded(&[3], true);
    assert_eq!(snapshot.leader, None);
    let screen = lines(&render(&snapshot));
    let row = line_with(&screen, &[" 127.0.0.1:4205", "unreachable"]);
    assert!(row.contains("2.5 s ago"), "{row}");
    assert!(!screen.iter().any(|l| l.contains("LEADER")), "{screen:#?}");
    line_with(&screen, &["no leader known"]);
    line_with(&screen, &["node 3: Connection refused (os error 111)"]);
    line_with(&screen, &["no reachable leader"]);
}

#[test]
fn missing_metrics_and_replication_show_as_dashes() {
    let mut snapshot = recorded(&[], false);
    snapshot.replication = None;
    let screen = lines(&render(&snapshot));
    line_with(&screen, &["not reported by the leader"]);
    let header = line_with(&screen, &["all nodes"]);
    assert!(
        header.contains("writes -/s  reads -/s   write p50 - p99 -"),
        "{header}"
    );
    let node1 = cells_after(&line_with(&screen, &["node 1", " - "]), "node 1");
    assert_eq!(node1, ["-", "-", "-", "-", "-", "-"]);
}

/// The collector against three in-process nodes: one refresh from one address finds every
/// node and the leader; the next reads the tables; a stopped node is unreachable at the
/// refresh after.
#[test]
fn a_refresh_from_one_address_finds_every_node_the_leader_and_the_tables() {
    use cairn_testkit::{Cluster, TestCluster};

    use super::collect::Collector;
    use crate::client::base_url;

    let mut c = TestCluster::start(3).expect("a 3-node cluster starts");
    c.execute_ok(0, &serde_json::json!(["CREATE TABLE pets (name TEXT)"]))
        .expect("create a table");
    let leader = c.leader().expect("a leader");
    let follower = c
        .followers()
        .expect("followers")
        .into_iter()
        .next()
        .expect("a follower");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    let addr = c.http_addr(follower).to_string();
    let mut collector = Collector::new(client, &addr, base_url(&addr).expect("a URL"));
    let every = Duration::from_secs(1);

    let first = runtime.block_on(collector.collect(every, every));
    assert_eq!(first.nodes.len(), 3, "{first:#?}");
    assert!(
        first.nodes.iter().all(|n| n.reach == Reach::Up),
        "{first:#?}"
    );
    assert_eq!(first.leader, Some(c.id(leader)), "{first:#?}");
    assert!(first.errors.is_empty(), "{:?}", first.errors);

    let second = runtime.block_on(collector.collect(every, every));
    let main = second
        .databases
        .iter()
        .find(|d| d.name == "main")
        .expect("the main database");
    assert_eq!(main.tables, Some(vec!["pets".to_string()]), "{second:#?}");

    c.stop(follower).expect("stop a follower");
    let third = runtime.block_on(collector.collect(every, every));
    let stopped = third
        .nodes
        .iter()
        .find(|n| n.id == Some(c.id(follower)))
        .expect("the stopped node is still listed");
    assert_eq!(stopped.reach, Reach::Unreachable, "{third:#?}");
    assert!(stopped.last_seen.is_some(), "{stopped:?}");
    assert_eq!(third.leader, Some(c.id(leader)), "{third:#?}");
    assert_eq!(third.errors.len(), 1, "{:?}", third.errors);
}

#[test]
fn small_terminals_are_drawn_without_panicking() {
    let snapshot = recorded(&[2], true);
    for (w, h) in [(80, 24), (40, 10), (1, 1), (200, 3)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
        terminal
            .draw(|frame| render::draw(frame, &snapshot))
            .expect("drawing");
    }
    // 80 x 24 still shows the leader's row.
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("a test terminal");
    terminal
        .draw(|frame| render::draw(frame, &snapshot))
        .expect("drawing");
    let screen = lines(terminal.backend().buffer());
    line_with(&screen, &["LEADER"]);
}
