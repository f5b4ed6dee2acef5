//! `GET /metrics` read by a Prometheus text parser while a 3-node cluster takes writes, and
//! CORS (`--cors-origins`) as a browser sees it, on nodes started by `cairn_server::serve`.

use std::collections::HashMap;
use std::time::Duration;

use cairn_server::{Listeners, ServerConfig};
use cairn_testkit::{wait_for, Cluster, TestCluster};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

/// One scrape: every sample by its name and labels (`name{k="v",...}` with labels
/// sorted), and the samples' values.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn of(c: &TestCluster, i: usize) -> Scrape {
        let base = c.base(i).expect("url");
        let text = get_metrics_text(c, &format!("{base}/metrics"));
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("the text parses");
        let mut out = HashMap::new();
        for s in parsed.samples {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let key = if labels.is_empty() {
                s.metric.clone()
            } else {
                format!("{}{{{}}}", s.metric, labels.join(","))
            };
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => {
                    continue
                }
            };
            out.insert(key, value);
        }
        Scrape(out)
    }

    fn get(&self, key: &str) -> f64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no series {key}; have {:?}", self.keys()))
    }

    fn or_zero(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    fn keys(&self) -> Vec<&String> {
        let mut k: Vec<&String> = self.0.keys().collect();
        k.sort();
        k
    }
}

/// `GET url`, its status checked and its content type that of OpenMetrics text.
fn get_metrics_text(c: &TestCluster, url: &str) -> String {
    c.runtime().block_on(async {
        let resp = reqwest::get(url).await.expect("GET /metrics");
        assert_eq!(resp.status(), 200, "GET {url}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        resp.text().await.expect("a body")
    })
}

#[test]
fn metrics_name_every_series_and_move_with_writes() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let f = c.followers().expect("followers")[0];
    c.execute_ok(
        leader,
        &json!(["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]),
    )
    .expect("create");
    c.wait_all_applied().expect("caught up");

    let before_l = Scrape::of(&c, leader);
    let before_f = Scrape::of(&c, f);
    assert_eq!(before_l.get("cairn_raft_is_leader"), 1.0);
    assert_eq!(before_f.get("cairn_raft_is_leader"), 0.0);
    assert!(before_l.get("cairn_raft_term") >= 1.0);
    assert!(before_l.get("cairn_raft_leader_changes_total") >= 1.0);
    assert!(before_l.get("cairn_raft_log_bytes") > 0.0);
    assert!(before_l.get(r#"cairn_database_bytes{database="main"}"#) > 0.0);
    for id in c.running().into_iter().filter(|&i| i != leader) {
        let id = c.id(id);
        before_l.get(&format!(
            r#"cairn_raft_follower_lag_entries{{follower="{id}"}}"#
        ));
        before_l.get(&format!(
            r#"cairn_raft_follower_matched_index{{follower="{id}"}}"#
        ));
    }
    for name in [
        "cairn_raft_commit_index",
        "cairn_raft_applied_index",
        "cairn_raft_last_log_index",
        "cairn_snapshots_built_total",
        "cairn_snapshot_build_duration_seconds_count",
    ] {
        before_l.get(name);
    }

    // Five writes through the follower: forwarded, counted as writes on the follower, and
    // committed on the leader.
    for n in 0..5 {
        c.execute_ok(f, &json!([["INSERT INTO t(v) VALUES(?)", format!("v{n}")]]))
            .expect("a write through a follower");
    }
    // A request for a database that does not exist is counted by its code.
    let missing = c
        .get(f, "/db/query", &[("db", "nope"), ("q", "SELECT 1")])
        .expect("an answer");
    assert_eq!(missing.status, 404, "{missing}");
    c.wait_all_applied().expect("caught up");

    let after_l = Scrape::of(&c, leader);
    let after_f = Scrape::of(&c, f);
    let moved = |a: &Scrape, b: &Scrape, key: &str| a.or_zero(key) - b.or_zero(key);
    assert_eq!(
        moved(
            &after_f,
            &before_f,
            r#"cairn_forwarded_requests_total{kind="write"}"#
        ),
        5.0
    );
    assert_eq!(
        moved(
            &after_f,
            &before_f,
            r#"cairn_operation_duration_seconds_count{op="write"}"#
        ),
        5.0
    );
    assert_eq!(
        moved(
            &after_f,
            &before_f,
            r#"cairn_http_requests_total{method="POST",route="/db/execute",status="200"}"#
        ),
        5.0
    );
    assert_eq!(
        moved(
            &after_f,
            &before_f,
            r#"cairn_errors_total{code="database_not_found"}"#
        ),
        1.0
    );
    assert!(
        moved(&after_l, &before_l, "cairn_raft_commit_index") >= 5.0,
        "the leader committed the writes"
    );
    assert!(moved(&after_l, &before_l, "cairn_raft_applied_index") >= 5.0);
    // /status on the leader gives each follower's progress; followers give none.
    let status = c.status(leader).expect("/status");
    let replication = status["raft"]["replication"]
        .as_array()
        .expect("raft.replication on the leader")
        .clone();
    let mut ids: Vec<u64> = replication
        .iter()
        .map(|p| p["node_id"].as_u64().expect("a node id"))
        .collect();
    ids.sort_unstable();
    let mut want: Vec<u64> = c
        .running()
        .into_iter()
        .filter(|&i| i != leader)
        .map(|i| c.id(i))
        .collect();
    want.sort_unstable();
    assert_eq!(ids, want, "{status}");
    let last = status["raft"]["last_log_index"].as_u64().expect("an index");
    for p in &replication {
        let matched = p["matched_index"].as_u64().expect("a matched index");
        assert!(matched <= last, "{p}");
        assert_eq!(p["lag_entries"].as_u64(), Some(last - matched), "{p}");
        assert!(p["last_ack_ms"].as_u64().is_some(), "{p}");
    }
    let status = c.status(f).expect("/status");
    assert_eq!(status["raft"]["replication"], json!([]), "{status}");

    // Scrapes are counted too, under their route, and a path no route serves under one
    // label whatever the path.
    let _ = c.get(f, "/no/such/path/42", &[]).expect("an answer");
    let last = Scrape::of(&c, f);
    assert!(
        last.or_zero(r#"cairn_http_requests_total{method="GET",route="/metrics",status="200"}"#)
            >= 2.0
    );
    assert_eq!(
        last.or_zero(r#"cairn_http_requests_total{method="GET",route="unmatched",status="404"}"#),
        1.0
    );
}

/// A one-node cluster set up by `configure`, started and ready: its runtime, handle, base
/// URL and data directory (removed on drop).
fn single_node(
    configure: impl FnOnce(&mut ServerConfig),
) -> (
    tokio::runtime::Runtime,
    cairn_server::Handle,
    String,
    tempfile::TempDir,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = ServerConfig::new(1, dir.path().join("data"));
    config.bootstrap_expect = Some(1);
    configure(&mut config);
    let handle = rt
        .block_on(async {
            let listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0").await?;
            cairn_server::serve(listeners, config, std::future::pending()).await
        })
        .expect("a node starts");
    let base = format!("http://{}", handle.http_addr());
    let http = reqwest::Client::new();
    wait_for(DEADLINE, "the node is ready", || {
        let status = rt
            .block_on(http.get(format!("{base}/readyz")).send())
            .map(|r| r.status());
        match status {
            Ok(s) if s == 200 => Ok(()),
            other => Err(format!("readyz: {other:?}")),
        }
    })
    .expect("ready");
    (rt, handle, base, dir)
}

#[test]
fn cors_lets_only_the_configured_origins_read_answers() {
    let (rt, handle, base, _dir) = single_node(|config| {
        config.cors_origins = vec!["https://console.example".to_string()];
    });
    let http = reqwest::Client::new();
    rt.block_on(async {
        // A preflight from the allowed origin is answered with what it may send.
        let pre = http
            .request(reqwest::Method::OPTIONS, format!("{base}/db/execute"))
            .header("Origin", "https://console.example")
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,authorization",
            )
            .send()
            .await
            .expect("a preflight");
        assert!(pre.status().is_success(), "{}", pre.status());
        let h = pre.headers();
        assert_eq!(
            h["access-control-allow-origin"], "https://console.example",
            "{h:?}"
        );
        let methods = h["access-control-allow-methods"]
            .to_str()
            .unwrap_or_default();
        assert!(methods.contains("POST"), "{methods}");
        let headers = h["access-control-allow-headers"]
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(headers.contains("authorization"), "{headers}");

        // An answer to the allowed origin names it; to another origin it does not, so the
        // browser keeps that page from reading it.
        let ok = http
            .get(format!("{base}/status"))
            .header("Origin", "https://console.example")
            .send()
            .await
            .expect("GET");
        assert_eq!(
            ok.headers()["access-control-allow-origin"],
            "https://console.example"
        );
        let other = http
            .get(format!("{base}/status"))
            .header("Origin", "https://evil.example")
            .send()
            .await
            .expect("GET");
        assert!(
            other.headers().get("access-control-allow-origin").is_none(),
            "{:?}",
            other.headers()
        );
        handle.stop().await.expect("the node stops");
    });
}

#[test]
fn with_users_a_trusted_origin_passes_the_cross_site_check_and_others_do_not() {
    let (rt, handle, base, _dir) = single_node(|config| {
        config.cors_origins = vec!["https://Console.Example/".to_string()];
        config.auth = Some(std::sync::Arc::new(
            cairn_auth::Users::from_json(
                r#"[{"username": "ann", "password": "pw", "perms": ["all"]},
                    {"username": "*", "perms": ["ready"]}]"#,
            )
            .expect("an auth file"),
        ));
    });
    let http = reqwest::Client::new();
    rt.block_on(async {
        let write = |origin: &'static str, site: &'static str| {
            http.post(format!("{base}/db/execute"))
                .basic_auth("ann", Some("pw"))
                .header("Origin", origin)
                .header("Sec-Fetch-Site", site)
                .json(&json!(["CREATE TABLE IF NOT EXISTS t (x)"]))
                .send()
        };
        let trusted = write("https://console.example", "cross-site")
            .await
            .expect("POST");
        assert_eq!(trusted.status(), 200, "a page of the trusted origin writes");
        assert_eq!(
            trusted.headers()["access-control-allow-origin"],
            "https://console.example"
        );
        let other = write("https://evil.example", "cross-site")
            .await
            .expect("POST");
        assert_eq!(other.status(), 403, "another site is refused");
        let body: serde_json::Value = other.json().await.expect("JSON");
        assert_eq!(body["code"], "forbidden", "{body}");
        handle.stop().await.expect("the node stops");
    });
}

#[test]
fn an_origin_that_is_not_one_is_refused_at_start() {
    for bad in [
        "console.example",
        "https://x.example/path",
        "ftp://x",
        "",
        "https://*.example.com",
    ] {
        let err = cairn_server::cors_layer(&[bad.to_string()]);
        assert!(err.is_err(), "{bad:?} accepted");
    }
    assert!(cairn_server::cors_layer(&[]).expect("none").is_none());
    assert!(cairn_server::cors_layer(&["*".into()])
        .expect("any")
        .is_some());
    assert!(cairn_server::cors_layer(&["http://localhost:3000".into()])
        .expect("one")
        .is_some());
}
