//! Handler tests against a small fake [`Service`] (as rqlite's `http/service_test.go` tests
//! its handlers against a fake store): flags, leader redirects, error mapping and one
//! success path per kind of route, without a cluster or a socket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use cairn_node::{
    CommandError, JoinRequest, Level, LoadPayload, NodeAddr, NodeEntry, NodeError, Peer,
};
use cairn_sql::{ErrorCode, Outcome, Rows, Statement, StatementError, StatementResult, Value};
use tower::ServiceExt as _;

use crate::service::{BoxFuture, Service};

/// A node that answers what it was set up with and records what it was asked.
#[derive(Default)]
pub(crate) struct Fake {
    /// Whether it is the leader.
    leader: bool,
    /// The leader it knows of.
    known_leader: Option<Peer>,
    /// When set, every fallible operation fails with it.
    fail: Option<NodeError>,
    /// What `execute_once` and `query` answer.
    results: Vec<StatementResult>,
    /// One line per call: `"execute main [INSERT ...] tx=true id=Some(..)"`.
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn record(&self, call: String) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn outcome<T>(&self, ok: T) -> Result<T, NodeError> {
        match &self.fail {
            Some(e) => Err(e.clone()),
            None => Ok(ok),
        }
    }
}

fn sqls(stmts: &[Statement]) -> Vec<String> {
    stmts.iter().map(|s| s.sql.clone()).collect()
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl Service for Fake {
    fn id(&self) -> u64 {
        1
    }

    fn is_leader(&self) -> bool {
        self.leader
    }

    fn leader(&self) -> Option<Peer> {
        self.known_leader.clone()
    }

    fn live_leader(&self) -> BoxFuture<'_, Option<Peer>> {
        ready(self.known_leader.clone())
    }

    fn execute_once<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        transaction: bool,
        request_id: Option<String>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>> {
        self.record(format!(
            "execute {db} {:?} tx={transaction} id={request_id:?}",
            sqls(&stmts)
        ));
        ready(self.outcome(self.results.clone()))
    }

    fn query<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        level: Level,
        _freshness: Option<Duration>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>> {
        self.record(format!("query {db} {:?} {level:?}", sqls(&stmts)));
        ready(self.outcome(self.results.clone()))
    }

    fn all_read_only(&self, _db: &str, stmts: &[Statement]) -> Result<bool, NodeError> {
        Ok(stmts.iter().all(|s| {
            s.sql
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("SELECT")
        }))
    }

    fn enqueue<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        _transaction: bool,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<u64, NodeError>> {
        self.record(format!("enqueue {db} {:?}", sqls(&stmts)));
        ready(self.outcome(42))
    }

    fn wait_queue(&self, seq: u64, _timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>> {
        self.record(format!("wait_queue {seq}"));
        ready(self.outcome(()))
    }

    fn databases(&self) -> Vec<(String, u64)> {
        vec![("main".into(), 4096)]
    }

    fn create_database<'a>(
        &'a self,
        name: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        self.record(format!("create_database {name}"));
        ready(self.outcome(()))
    }

    fn drop_database<'a>(
        &'a self,
        name: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        self.record(format!("drop_database {name}"));
        ready(self.outcome(()))
    }

    fn load<'a>(
        &'a self,
        db: &'a str,
        _payload: LoadPayload,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>> {
        self.record(format!("load {db}"));
        ready(self.outcome(Vec::new()))
    }

    fn backup<'a>(&'a self, _db: &'a str) -> BoxFuture<'a, Result<Vec<u8>, NodeError>> {
        ready(self.outcome(b"SQLite format 3\0".to_vec()))
    }

    fn dump_sql<'a>(&'a self, _db: &'a str) -> BoxFuture<'a, Result<String, NodeError>> {
        ready(self.outcome("BEGIN;\nCOMMIT;\n".to_string()))
    }

    fn status(&self) -> Result<serde_json::Value, NodeError> {
        self.outcome(serde_json::json!({"node": {"id": "1"}}))
    }

    fn nodes(&self) -> BoxFuture<'_, Vec<NodeEntry>> {
        ready(Vec::new())
    }

    fn wait_synced(&self, _timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>> {
        ready(self.outcome(()))
    }

    fn join<'a>(
        &'a self,
        req: JoinRequest,
        _secret: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        self.record(format!("join {}", req.id));
        ready(self.outcome(()))
    }

    fn remove(&self, id: u64, _timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>> {
        self.record(format!("remove {id}"));
        ready(self.outcome(()))
    }

    fn step_down(&self, _timeout: Duration) -> BoxFuture<'_, Result<Peer, NodeError>> {
        ready(self.outcome(peer(2)))
    }
}

fn peer(id: u64) -> Peer {
    Peer {
        id,
        addr: NodeAddr {
            http_addr: format!("10.0.0.{id}:4001"),
            raft_addr: format!("10.0.0.{id}:4002"),
        },
    }
}

pub(crate) fn leader() -> Fake {
    Fake {
        leader: true,
        known_leader: Some(peer(1)),
        ..Fake::default()
    }
}

fn write_result(last_insert_id: i64) -> StatementResult {
    StatementResult {
        outcome: Outcome::Write {
            last_insert_id,
            rows_affected: 1,
        },
        time: 0.0,
    }
}

fn sql_error(sqlite_code: i32, message: &str) -> StatementResult {
    StatementResult {
        outcome: Outcome::Error(StatementError {
            code: ErrorCode::SqlError,
            message: message.into(),
            sqlite_code: Some(sqlite_code),
        }),
        time: 0.0,
    }
}

/// The answer of one request: status, headers and the body as JSON (`Null` when it is not).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    location: Option<String>,
    pub(crate) www_authenticate: Option<String>,
    pub(crate) body: serde_json::Value,
}

impl Answer {
    pub(crate) fn code(&self) -> Option<&str> {
        self.body["code"].as_str()
    }
}

async fn call(fake: Arc<Fake>, method: &str, uri: &str, body: &str) -> Answer {
    call_with(fake, method, uri, body, &[]).await
}

async fn call_with(
    fake: Arc<Fake>,
    method: &str,
    uri: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Answer {
    call_as(fake, crate::Access::open(), method, uri, body, headers).await
}

/// One request through the router with `access` in front.
pub(crate) async fn call_as(
    fake: Arc<Fake>,
    access: crate::Access,
    method: &str,
    uri: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Body::from(body.to_string()))
        .expect("a valid request");
    let resp = crate::router_for(fake, access)
        .oneshot(req)
        .await
        .expect("the router is infallible");
    let status = resp.status();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let www_authenticate = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        location,
        www_authenticate,
        body,
    }
}

#[tokio::test]
async fn bad_flags_are_refused_before_the_node_is_asked() {
    for (method, uri) in [
        ("GET", "/db/query?q=SELECT+1&level=eventual"),
        ("POST", "/db/execute?timeout=soon"),
        ("GET", "/v1/databases/main/tables?freshness=-1"),
        ("POST", "/insert?timeout=NaN"),
    ] {
        let fake = Arc::new(leader());
        let a = call(fake.clone(), method, uri, r#"["SELECT 1"]"#).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{method} {uri}: {}",
            a.body
        );
        assert!(fake.calls().is_empty(), "{uri}: {:?}", fake.calls());
    }
}

#[tokio::test]
async fn a_follower_redirects_when_asked_and_forwards_otherwise() {
    let follower = || Fake {
        known_leader: Some(peer(3)),
        results: vec![write_result(1)],
        ..Fake::default()
    };
    let fake = Arc::new(follower());
    let a = call(
        fake.clone(),
        "POST",
        "/db/execute?redirect&db=x",
        r#"["DELETE FROM t"]"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        a.location.as_deref(),
        Some("http://10.0.0.3:4001/db/execute?redirect&db=x")
    );
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    // A `level=none` read is served here, redirect or not.
    let fake = Arc::new(follower());
    let a = call(
        fake.clone(),
        "GET",
        "/db/query?redirect&level=none&q=SELECT+1",
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(fake.calls(), [r#"query main ["SELECT 1"] None"#]);

    // Without `redirect` the write goes to the service (which forwards it).
    let fake = Arc::new(follower());
    let a = call(fake.clone(), "POST", "/db/execute", r#"["DELETE FROM t"]"#).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(fake.calls().len(), 1);

    // No leader to redirect to: 503 no_leader.
    let fake = Arc::new(Fake::default());
    let a = call(fake, "POST", "/db/execute?redirect", r#"["DELETE FROM t"]"#).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("no_leader"))
    );
}

#[tokio::test]
async fn not_leader_names_the_leader() {
    let fake = Arc::new(Fake {
        known_leader: Some(peer(3)),
        fail: Some(NodeError::NotLeader {
            leader: Some(peer(3)),
        }),
        ..Fake::default()
    });
    let a = call(fake, "DELETE", "/v1/databases/school", "").await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::FORBIDDEN, Some("not_leader"))
    );
    assert_eq!(a.body["leader"], "http://10.0.0.3:4001");
}

#[tokio::test]
async fn node_errors_map_to_status_and_code() {
    let cases = [
        (NodeError::NoLeader, 503, "no_leader"),
        (NodeError::NotApplied("refused".into()), 503, "not_applied"),
        (
            NodeError::OutcomeUnknown("lost".into()),
            503,
            "outcome_unknown",
        ),
        (
            NodeError::StaleRead {
                last_contact_ms: 5,
                freshness_ms: 1,
            },
            503,
            "stale_read",
        ),
        (NodeError::Timeout("slow".into()), 504, "timeout"),
        (
            NodeError::EntryTooLarge { bytes: 2, max: 1 },
            413,
            "entry_too_large",
        ),
        (
            NodeError::Command(CommandError::NoSuchDatabase("x".into())),
            404,
            "database_not_found",
        ),
        (
            NodeError::Command(CommandError::DatabaseExists("x".into())),
            409,
            "database_exists",
        ),
        (NodeError::Internal("disk".into()), 500, "internal"),
    ];
    for (err, status, code) in cases {
        let fake = Arc::new(Fake {
            fail: Some(err.clone()),
            ..leader()
        });
        let a = call(
            fake,
            "POST",
            "/db/execute",
            r#"["INSERT INTO t VALUES (1)"]"#,
        )
        .await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (status, Some(code)),
            "{err:?}: {}",
            a.body
        );
        assert_eq!(a.body["error"], err.to_string());
    }
}

#[tokio::test]
async fn statement_errors_map_by_sqlite_code_on_rest_routes() {
    let cases = [
        (
            2067,
            "UNIQUE constraint failed: t.a",
            409,
            "constraint_violation",
        ),
        (
            1299,
            "NOT NULL constraint failed: t.b",
            409,
            "constraint_violation",
        ),
        (1, "no such table: t", 404, "table_not_found"),
        (1, "table t has no column named zz", 404, "column_not_found"),
        (1, "near \"X\": syntax error", 400, "sql_error"),
    ];
    for (sqlite_code, msg, status, code) in cases {
        let fake = Arc::new(Fake {
            results: vec![sql_error(sqlite_code, msg)],
            ..leader()
        });
        let a = call(
            fake,
            "POST",
            "/v1/databases/main/tables/t/rows",
            r#"{"a": 1}"#,
        )
        .await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (status, Some(code)),
            "{msg}: {}",
            a.body
        );
        assert_eq!(a.body["error"], msg);
    }
    // On the rqlite routes the same error stays in its slot, with 200 and `sql_error`.
    let fake = Arc::new(Fake {
        results: vec![sql_error(2067, "UNIQUE constraint failed: t.a")],
        ..leader()
    });
    let a = call(
        fake,
        "POST",
        "/db/execute",
        r#"["INSERT INTO t VALUES (1)"]"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["results"][0]["code"], "sql_error", "{}", a.body);
}

#[tokio::test]
async fn execute_passes_flags_and_idempotency_key() {
    let fake = Arc::new(Fake {
        results: vec![write_result(7)],
        ..leader()
    });
    let a = call_with(
        fake.clone(),
        "POST",
        "/db/execute?db=school&transaction",
        r#"["INSERT INTO t VALUES (1)"]"#,
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["results"][0]["last_insert_id"], 7, "{}", a.body);
    assert_eq!(a.body["results"][0]["rows_affected"], 1, "{}", a.body);
    assert_eq!(
        fake.calls(),
        [r#"execute school ["INSERT INTO t VALUES (1)"] tx=true id=Some("k-1")"#]
    );
}

#[tokio::test]
async fn queue_answers_a_sequence_number() {
    let fake = Arc::new(leader());
    let a = call(
        fake.clone(),
        "POST",
        "/db/execute?queue&wait",
        r#"["DELETE FROM t"]"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body,
        serde_json::json!({"results": [], "sequence_number": 42})
    );
    assert_eq!(
        fake.calls(),
        [r#"enqueue main ["DELETE FROM t"]"#, "wait_queue 42"]
    );
}

#[tokio::test]
async fn query_renders_rows() {
    let fake = Arc::new(Fake {
        results: vec![StatementResult {
            outcome: Outcome::Rows(Rows {
                columns: vec!["n".into()],
                types: vec!["integer".into()],
                values: vec![vec![Value::Integer(1)]],
            }),
            time: 0.0,
        }],
        ..leader()
    });
    let a = call(
        fake.clone(),
        "GET",
        "/db/query?q=SELECT+1+AS+n&level=strong",
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body,
        serde_json::json!({"results": [{"columns": ["n"], "types": ["integer"], "values": [[1]]}]})
    );
    assert_eq!(fake.calls(), [r#"query main ["SELECT 1 AS n"] Strong"#]);

    let a = call(fake, "GET", "/db/query?q=SELECT+1+AS+n&associative", "").await;
    assert_eq!(a.body["results"][0]["rows"], serde_json::json!([{"n": 1}]));
}

#[tokio::test]
async fn rest_insert_answers_ids() {
    let fake = Arc::new(Fake {
        results: vec![write_result(5), write_result(6)],
        ..leader()
    });
    let a = call(
        fake.clone(),
        "POST",
        "/v1/databases/school/tables/pupils/rows",
        r#"[{"name": "Ali"}, {"name": "Bea"}]"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body, serde_json::json!({"inserted": 2, "ids": [5, 6]}));
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "one atomic batch: {calls:?}");
    assert!(calls[0].starts_with("execute school ") && calls[0].contains("tx=true"));

    let a = call(
        fake,
        "POST",
        "/v1/databases/school/tables/pupils/rows",
        "[1]",
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
}

#[tokio::test]
async fn seed_001_insert() {
    let fake = Arc::new(Fake {
        results: vec![write_result(9)],
        ..leader()
    });
    let a = call(
        fake.clone(),
        "POST",
        "/insert",
        r#"{"table_name": "students", "row_id": 1, "data": {"name": "Ali"}}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(
        a.body,
        serde_json::json!({"status": "inserted", "database": "main", "table": "students",
            "inserted": 1, "id": 9, "row_id": 1})
    );
    assert_eq!(fake.calls().len(), 1);

    let a = call(fake, "POST", "/insert", r#"{"data": {"name": "Ali"}}"#).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, Some("missing_field"))
    );
}

#[tokio::test]
async fn seed_ping_and_unknown_routes() {
    let a = call(Arc::new(leader()), "GET", "/ping", "").await;
    assert_eq!(
        a.body,
        serde_json::json!({"status": "ok", "node_id": 1, "role": "leader"})
    );
    let a = call(Arc::new(leader()), "GET", "/nope", "").await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::NOT_FOUND, Some("no_route"))
    );
}
