//! The boundary between the HTTP handlers and the node: every operation a handler needs, as
//! an object-safe trait (rqlite's `http/service.go` talks to `type Store interface` the same
//! way). [`cairn_node::Node`] implements it here; the handler tests implement it with a
//! small fake, so that handler logic is tested without a cluster.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use cairn_node::{JoinRequest, Level, LoadPayload, Node, NodeEntry, NodeError, Peer};
use cairn_sql::{Statement, StatementResult};

/// A boxed, sendable future: what the trait's async operations return, so that the trait
/// stays object safe (`Arc<dyn Service>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Every operation the HTTP API performs on a node. Durations are the request's `timeout`:
/// how long to wait for the leader (or a queue flush, a sync, a transfer). Errors are
/// [`NodeError`]s, mapped to status and code by [`crate::ApiError`].
pub trait Service: Send + Sync + 'static {
    /// This node's id.
    fn id(&self) -> u64;

    /// Whether this node is the leader.
    fn is_leader(&self) -> bool;

    /// The leader this node knows of, if any (possibly out of touch).
    fn leader(&self) -> Option<Peer>;

    /// The leader, if this node is in touch with it (or is it): what `/readyz` asks.
    fn live_leader(&self) -> BoxFuture<'_, Option<Peer>>;

    /// Runs write statements on `db` through the log, once per `request_id` (the
    /// `Idempotency-Key`) when one is given; `transaction`: all or nothing. Statement errors
    /// are in the results.
    ///
    /// # Errors
    /// `NoLeader`, `NotApplied`, `OutcomeUnknown`, `EntryTooLarge`,
    /// `Command(NoSuchDatabase)`, `BadRequest` for an empty batch.
    fn execute_once<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        transaction: bool,
        request_id: Option<String>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>>;

    /// [`Service::execute_once`] without a request id.
    ///
    /// # Errors
    /// As [`Service::execute_once`].
    fn execute<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        transaction: bool,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>> {
        self.execute_once(db, stmts, transaction, None, timeout)
    }

    /// Reads at `level`; `freshness` bounds a `level=none` read's staleness.
    ///
    /// # Errors
    /// `StaleRead`, `NoLeader`, `Unavailable`, `Command(NoSuchDatabase)`, `BadRequest`.
    fn query<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        level: Level,
        freshness: Option<Duration>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>>;

    /// Whether every statement leaves `db` unchanged (how `/db/request` picks its path).
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`.
    fn all_read_only(&self, db: &str, stmts: &[Statement]) -> Result<bool, NodeError>;

    /// Queues a write (rqlite's `queue` flag); returns the sequence number to wait for.
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`, `EntryTooLarge`, `BadRequest`; nothing is queued then.
    fn enqueue<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        transaction: bool,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<u64, NodeError>>;

    /// Waits until the queued batch holding `seq` is written.
    ///
    /// # Errors
    /// `Timeout`.
    fn wait_queue(&self, seq: u64, timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>>;

    /// Databases on this replica, with their sizes in bytes.
    fn databases(&self) -> Vec<(String, u64)>;

    /// Creates database `name` through the log.
    ///
    /// # Errors
    /// `Command(BadIdentifier)`, `Command(DatabaseExists)`, `NoLeader`.
    fn create_database<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), NodeError>>;

    /// Drops database `name`; the leader's alone.
    ///
    /// # Errors
    /// `NotLeader` (with the leader), `Command(NoSuchDatabase)`, `Command(Forbidden)`.
    fn drop_database<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), NodeError>>;

    /// Replaces `db` with a SQLite file or runs a SQL script on it, through the log.
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`, `Command(BadRequest)` for a file that is not a database.
    fn load<'a>(
        &'a self,
        db: &'a str,
        payload: LoadPayload,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>>;

    /// This replica's copy of `db` as SQLite file bytes.
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`, `Internal`.
    fn backup<'a>(&'a self, db: &'a str) -> BoxFuture<'a, Result<Vec<u8>, NodeError>>;

    /// This replica's copy of `db` as a SQL dump.
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`.
    fn dump_sql<'a>(&'a self, db: &'a str) -> BoxFuture<'a, Result<String, NodeError>>;

    /// `/status`: [`cairn_node::Status`] as JSON.
    ///
    /// # Errors
    /// `Internal` when it cannot be serialized.
    fn status(&self) -> Result<serde_json::Value, NodeError>;

    /// Every member, with whether it answers right now.
    fn nodes(&self) -> BoxFuture<'_, Vec<NodeEntry>>;

    /// Waits until this node has applied what the leader had committed.
    ///
    /// # Errors
    /// `Timeout`, `NoLeader`.
    fn wait_synced(&self, timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>>;

    /// Adds a node, through the leader; `secret` is the request's cluster secret.
    ///
    /// # Errors
    /// `Unauthorized`, `BadRequest`, `NoLeader`.
    fn join<'a>(
        &'a self,
        req: JoinRequest,
        secret: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), NodeError>>;

    /// Removes node `id`, through the leader.
    ///
    /// # Errors
    /// `NotFound`, `NoLeader`.
    fn remove(&self, id: u64, timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>>;

    /// Hands leadership to another voter; returns the new leader.
    ///
    /// # Errors
    /// `BadRequest` when there is no other voter, `Timeout`.
    fn step_down(&self, timeout: Duration) -> BoxFuture<'_, Result<Peer, NodeError>>;

    /// How the cluster's raft ports are reached: `https` (mutual TLS) with node TLS.
    fn raft_scheme(&self) -> cairn_raft::Scheme {
        cairn_raft::Scheme::Http
    }

    /// Where HTTP requests and error codes are counted (`None`: nowhere, as in the
    /// handler tests' fake).
    fn telemetry(&self) -> Option<&cairn_node::NodeMetrics> {
        None
    }

    /// The text of `GET /metrics` (see [`cairn_node::NodeMetrics`]); `None` where there
    /// are no metrics.
    fn render_metrics(&self) -> Option<String> {
        None
    }
}

impl Service for Node {
    fn id(&self) -> u64 {
        Node::id(self)
    }

    fn is_leader(&self) -> bool {
        Node::is_leader(self)
    }

    fn leader(&self) -> Option<Peer> {
        Node::leader(self)
    }

    fn live_leader(&self) -> BoxFuture<'_, Option<Peer>> {
        Box::pin(Node::live_leader(self))
    }

    fn execute_once<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        transaction: bool,
        request_id: Option<String>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>> {
        Box::pin(Node::execute_once(
            self,
            db,
            stmts,
            transaction,
            request_id,
            timeout,
        ))
    }

    fn query<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        level: Level,
        freshness: Option<Duration>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>> {
        Box::pin(Node::query(self, db, stmts, level, freshness, timeout))
    }

    fn all_read_only(&self, db: &str, stmts: &[Statement]) -> Result<bool, NodeError> {
        Node::all_read_only(self, db, stmts)
    }

    fn enqueue<'a>(
        &'a self,
        db: &'a str,
        stmts: Vec<Statement>,
        transaction: bool,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<u64, NodeError>> {
        Box::pin(Node::enqueue(self, db, stmts, transaction, timeout))
    }

    fn wait_queue(&self, seq: u64, timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>> {
        Box::pin(Node::wait_queue(self, seq, timeout))
    }

    fn databases(&self) -> Vec<(String, u64)> {
        Node::databases(self)
    }

    fn create_database<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        Box::pin(Node::create_database(self, name, timeout))
    }

    fn drop_database<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        Box::pin(Node::drop_database(self, name, timeout))
    }

    fn load<'a>(
        &'a self,
        db: &'a str,
        payload: LoadPayload,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<StatementResult>, NodeError>> {
        Box::pin(Node::load(self, db, payload, timeout))
    }

    fn backup<'a>(&'a self, db: &'a str) -> BoxFuture<'a, Result<Vec<u8>, NodeError>> {
        Box::pin(Node::backup(self, db))
    }

    fn dump_sql<'a>(&'a self, db: &'a str) -> BoxFuture<'a, Result<String, NodeError>> {
        Box::pin(Node::dump_sql(self, db))
    }

    fn status(&self) -> Result<serde_json::Value, NodeError> {
        serde_json::to_value(Node::status(self)).map_err(|e| NodeError::Internal(e.to_string()))
    }

    fn nodes(&self) -> BoxFuture<'_, Vec<NodeEntry>> {
        Box::pin(Node::nodes(self))
    }

    fn wait_synced(&self, timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>> {
        Box::pin(Node::wait_synced(self, timeout))
    }

    fn join<'a>(
        &'a self,
        req: JoinRequest,
        secret: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        Box::pin(Node::join(self, req, secret, timeout))
    }

    fn remove(&self, id: u64, timeout: Duration) -> BoxFuture<'_, Result<(), NodeError>> {
        Box::pin(Node::remove(self, id, timeout))
    }

    fn step_down(&self, timeout: Duration) -> BoxFuture<'_, Result<Peer, NodeError>> {
        Box::pin(Node::step_down(self, timeout))
    }

    fn raft_scheme(&self) -> cairn_raft::Scheme {
        Node::raft_scheme(self)
    }

    fn telemetry(&self) -> Option<&cairn_node::NodeMetrics> {
        Some(Node::telemetry(self))
    }

    fn render_metrics(&self) -> Option<String> {
        Some(Node::render_metrics(self))
    }
}
