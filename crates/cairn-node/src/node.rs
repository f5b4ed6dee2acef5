//! The node: one Raft group over the node's SQLite store, and every operation the API
//! offers, routed to the leader where the operation needs it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use cairn_raft::server::{raft_routes, require_secret, LeaderContact, RaftService};
use cairn_raft::{Command, LogStore, Network, NodeAddr, Raft, Response, StateMachine};
use cairn_sql::{EntryContext, Statement, StatementResult, Store};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, RaftMetrics, ReadPolicy, ServerState};

use crate::queue::Queue;
use crate::rpc::{self, NodeRpc, Reply};
use crate::status::{
    self, BuildStatus, ClusterStatus, DatabaseStatus, DbConf, HttpStatus, NodeEntry, NodeStatus,
    OsStatus, RaftStatus, RuntimeStatus, SqliteStatus, Status, StoreLeader, StoreRaft, StoreServer,
    StoreStatus,
};
use crate::{JoinRequest, Level, LoadPayload, NodeConfig, NodeError, Peer, VERSION_HEADER};

type Metrics = RaftMetrics<cairn_raft::TypeConfig>;

/// Most attempts one request makes to reach a leader before giving up (each attempt also
/// bounded by the request's timeout).
const MAX_ROUTE_ATTEMPTS: usize = 100;

/// A running node.
pub struct Node {
    pub(crate) id: u64,
    addr: NodeAddr,
    pub(crate) raft: Raft,
    store: Arc<Store>,
    pub(crate) http: reqwest::Client,
    pub(crate) secret: String,
    data_dir: PathBuf,
    pub(crate) contact: Arc<LeaderContact>,
    pub(crate) queue: Queue,
    started: Instant,
}

fn elapsed_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl Node {
    /// Opens the node's storage in `cfg.data_dir` and starts its Raft. The node serves
    /// nothing until the caller mounts [`Node::internal_router`] on the raft address and the
    /// public API on the HTTP address, then calls `bootstrap`.
    ///
    /// # Errors
    /// [`NodeError::Internal`] when storage cannot be opened or Raft cannot start.
    pub async fn start(cfg: &NodeConfig) -> Result<Arc<Node>, NodeError> {
        let internal = |e: &dyn std::fmt::Display| NodeError::Internal(e.to_string());
        for sub in ["raft", "sm", "snapshots", "spool", "tmp"] {
            std::fs::create_dir_all(cfg.data_dir.join(sub)).map_err(|e| internal(&e))?;
        }
        let store = Arc::new(Store::open(&cfg.data_dir.join("sm")).map_err(|e| internal(&e))?);
        let log = LogStore::open(&cfg.data_dir.join("raft").join("log.redb"), 0)
            .map_err(|e| internal(&e))?;
        let sm = StateMachine::open(store.clone(), &cfg.data_dir.join("snapshots"))
            .map_err(|e| internal(&e))?;
        let mut builder = reqwest::Client::builder()
            .tcp_nodelay(true)
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30));
        // Connect from the IP the raft address is bound to, so that peers (and the test
        // harness's fault-injecting proxies) see which node a connection comes from.
        if let Some(ip) = cfg.bind_ip.filter(|ip| !ip.is_unspecified()) {
            builder = builder.local_address(ip);
        }
        let http = builder.build().map_err(|e| internal(&e))?;
        let network = Network::new(http.clone(), cfg.cluster_secret.clone(), 0);
        let config = cfg.raft.config().map_err(|e| internal(&e))?;
        let raft = Raft::new(cfg.id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| internal(&e))?;
        let node = Arc::new(Node {
            id: cfg.id,
            addr: NodeAddr {
                http_addr: cfg.http_addr.clone(),
                raft_addr: cfg.raft_addr.clone(),
            },
            raft,
            store,
            http,
            secret: cfg.cluster_secret.clone(),
            data_dir: cfg.data_dir.clone(),
            contact: Arc::new(LeaderContact::default()),
            queue: Queue::new(),
            started: Instant::now(),
        });
        Queue::spawn_flusher(Arc::downgrade(&node));
        Ok(node)
    }

    /// The routes served on the raft address: Raft's RPCs and the internal node RPC, all
    /// behind the cluster-secret check.
    pub fn internal_router(self: &Arc<Self>) -> Router {
        let svc = RaftService {
            raft: self.raft.clone(),
            group: 0,
            spool_dir: Arc::new(self.data_dir.join("spool")),
            contact: self.contact.clone(),
        };
        raft_routes(svc).merge(rpc::routes(self.clone())).layer(
            axum::middleware::from_fn_with_state(Arc::new(self.secret.clone()), require_secret),
        )
    }

    /// Stops Raft (for a clean shutdown).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This node's addresses.
    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    pub(crate) fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow_watched().clone()
    }

    fn peer(m: &Metrics, id: u64) -> Option<Peer> {
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|addr| Peer {
                id,
                addr: addr.clone(),
            })
    }

    /// The leader this node currently knows of.
    pub fn leader(&self) -> Option<Peer> {
        let m = self.metrics();
        m.current_leader.and_then(|id| Self::peer(&m, id))
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        let m = self.metrics();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    fn not_leader(&self) -> NodeError {
        NodeError::NotLeader {
            leader: self.leader().filter(|l| l.id != self.id),
        }
    }

    /// Runs `rpc` on the leader: here when this node leads, else forwarded over the internal
    /// RPC. Retries while the leader is unknown or has just changed, for up to `timeout`,
    /// and only when the previous attempt certainly did not run, so a write is never
    /// proposed twice.
    ///
    /// # Errors
    /// For an operation that changes state: [`NodeError::NoLeader`] or
    /// [`NodeError::NotApplied`] when it certainly did not happen, and
    /// [`NodeError::OutcomeUnknown`] when it was sent and the answer was lost. For reads,
    /// [`NodeError::Unavailable`] in both cases. [`NodeError::EntryTooLarge`] for a write
    /// that cannot fit in one log entry (checked before anything is sent). Else the
    /// leader's own error.
    async fn route(&self, rpc: NodeRpc, timeout: Duration) -> Result<Reply, NodeError> {
        if let NodeRpc::Write(cmd) = &rpc {
            NodeError::check_entry_size(cmd.encoded_size(), cairn_raft::MAX_ENTRY_BYTES)?;
        }
        let changes_state = rpc.changes_state();
        let deadline = Instant::now() + timeout;
        let mut last_err = NodeError::NoLeader;
        for _ in 0..MAX_ROUTE_ATTEMPTS {
            let left = elapsed_left(deadline);
            if left.is_zero() {
                break;
            }
            // Not `self.leader()`: with Pre-Vote a cut-off follower keeps a dead leader's id.
            let leader = self.live_leader().await;
            let outcome = match &leader {
                Some(l) if l.id == self.id => self
                    .serve_forwarded(rpc.clone(), left)
                    .await
                    .map_err(rpc::CallError::Remote),
                Some(l) => rpc::call(&self.http, &self.secret, l, rpc.clone(), left).await,
                None => {
                    // A leader id may be known but out of touch: then the metrics do not
                    // change when it comes back, so wait a bounded slice and look again.
                    let slice = left.min(Duration::from_millis(50));
                    let _ = self
                        .raft
                        .wait(Some(slice))
                        .metrics(|m| m.current_leader.is_some(), "a leader is known")
                        .await;
                    if self.leader().is_some() {
                        tokio::time::sleep(slice).await;
                    }
                    last_err = NodeError::NoLeader;
                    continue;
                }
            };
            match outcome {
                Ok(reply) => return Ok(reply),
                // The leader moved before it proposed, or the request never left this node:
                // nothing happened, safe to retry.
                Err(rpc::CallError::Remote(
                    e @ (NodeError::NotLeader { .. } | NodeError::NoLeader),
                )) => last_err = e,
                Err(rpc::CallError::NotSent(msg)) => {
                    last_err = if changes_state {
                        NodeError::NotApplied(msg)
                    } else {
                        NodeError::Unavailable(msg)
                    }
                }
                Err(rpc::CallError::Lost(msg)) => {
                    return Err(if changes_state {
                        NodeError::OutcomeUnknown(format!(
                            "{msg}; the write may or may not have been applied"
                        ))
                    } else {
                        NodeError::Unavailable(msg)
                    })
                }
                Err(rpc::CallError::Refused(e) | rpc::CallError::Remote(e)) => return Err(e),
            }
            let prev = leader.map(|l| l.id);
            let wait = left.min(Duration::from_millis(50));
            let _ = self
                .raft
                .wait(Some(wait))
                .metrics(
                    move |m| m.current_leader.is_some() && m.current_leader != prev,
                    "leader changed",
                )
                .await;
        }
        Err(match last_err {
            NodeError::NotLeader { .. } => NodeError::NoLeader,
            e => e,
        })
    }

    /// Serves an operation that must run on the leader, on this node; answers
    /// [`NodeError::NotLeader`] when this node is not the leader (the caller retries).
    ///
    /// # Errors
    /// The operation's errors; for a write that does not finish within `timeout`,
    /// [`NodeError::OutcomeUnknown`] (it may have been proposed), for other operations
    /// [`NodeError::Timeout`].
    pub(crate) async fn serve_forwarded(
        &self,
        rpc: NodeRpc,
        timeout: Duration,
    ) -> Result<Reply, NodeError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let changes_state = rpc.changes_state();
        let fut = async {
            match rpc {
                NodeRpc::Write(cmd) => {
                    // Refuse a write to a database the leader does not have before it takes
                    // a log entry: the leader has applied every create it acknowledged.
                    if let Some(db) = cmd_database(&cmd) {
                        if !self.store.exists(db) {
                            return Err(cairn_sql::Error::NoSuchDatabase(db.to_string()).into());
                        }
                    }
                    self.propose(cmd).await.map(Reply::Response)
                }
                NodeRpc::Query { db, stmts, level } => self
                    .leader_read(&db, stmts, level, timeout)
                    .await
                    .map(Reply::Results),
                NodeRpc::Join(req) => self.add_node(req).await.map(|_| Reply::Done),
                NodeRpc::Remove(id) => self.remove_node(id).await.map(|_| Reply::Done),
                NodeRpc::StepDown => self.transfer_leadership(timeout).await.map(Reply::Leader),
                NodeRpc::CommitIndex => {
                    let m = self.metrics();
                    Ok(Reply::Index(
                        m.cluster_committed.map(|l| l.index).unwrap_or(0),
                    ))
                }
                NodeRpc::HasDatabase(db) => {
                    if self.store.exists(&db) {
                        Ok(Reply::Done)
                    } else {
                        Err(cairn_sql::Error::NoSuchDatabase(db).into())
                    }
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.map_err(|_| {
            if changes_state {
                NodeError::OutcomeUnknown(
                    "the leader did not finish in time; the write may still be applied".into(),
                )
            } else {
                NodeError::Timeout("the leader did not finish in time".into())
            }
        })?
    }

    /// Proposes `cmd` on this node, which believes it is the leader.
    ///
    /// # Errors
    /// [`NodeError::EntryTooLarge`] (before proposing); [`NodeError::NotLeader`] when
    /// openraft says another node leads (not proposed); [`NodeError::OutcomeUnknown`] when
    /// the entry was discarded by a leadership change or Raft stopped while it was in flight.
    async fn propose(&self, mut cmd: Command) -> Result<Response, NodeError> {
        // The leader fixes the entry's time, seed and budget: every replica applies it with
        // these (see `cairn_sql::EntryContext`).
        cmd.stamp(EntryContext::now());
        NodeError::check_entry_size(cmd.encoded_size(), cairn_raft::MAX_ENTRY_BYTES)?;
        match self.raft.client_write(cmd).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(self.not_leader()),
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => Err(NodeError::OutcomeUnknown(
                "leadership changed while the write was in flight; it may or may not have been applied".into(),
            )),
            Err(e) => Err(NodeError::OutcomeUnknown(format!(
                "raft failed while the write was in flight ({e}); it may or may not have been applied"
            ))),
        }
    }

    async fn leader_read(
        &self,
        db: &str,
        stmts: Vec<Statement>,
        level: Level,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, NodeError> {
        let deadline = Instant::now() + timeout;
        match level {
            Level::Strong => {
                let cmd = Command::Query {
                    db: db.to_string(),
                    stmts,
                    ctx: EntryContext::now(),
                };
                into_results(self.propose(cmd).await?)
            }
            Level::Linearizable => {
                match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                    Ok(_) => {}
                    Err(e) if e.forward_to_leader().is_some() => return Err(self.not_leader()),
                    Err(e) => {
                        return Err(NodeError::Unavailable(format!(
                            "cannot confirm leadership: {e}"
                        )))
                    }
                }
                self.local_query(db, &stmts, deadline)
            }
            _ => self.local_query(db, &stmts, deadline),
        }
    }

    /// Reads this replica; a statement still running at `deadline` fails with
    /// `query_timeout`.
    fn local_query(
        &self,
        db: &str,
        stmts: &[Statement],
        deadline: Instant,
    ) -> Result<Vec<StatementResult>, NodeError> {
        Ok(tokio::task::block_in_place(|| {
            self.store.query(db, stmts, Some(deadline))
        })?)
    }

    /// Runs write statements on database `db` through the log (forwarded to the leader when
    /// this node is a follower).
    ///
    /// # Errors
    /// [`NodeError::NoLeader`] when no leader is reachable within `timeout`; the leader's
    /// errors (e.g. `Command(NoSuchDatabase)`). Statement-level SQL errors are in the results.
    pub async fn execute(
        &self,
        db: &str,
        stmts: Vec<Statement>,
        transaction: bool,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, NodeError> {
        self.execute_once(db, stmts, transaction, None, timeout)
            .await
    }

    /// [`Node::execute`] with a client's `request_id` (the `Idempotency-Key` header): a
    /// write retried with the same id within the last `cairn_sql::REQUEST_ID_WINDOW`
    /// entries applies once, and the retry gets the first attempt's results.
    ///
    /// # Errors
    /// As [`Node::execute`].
    pub async fn execute_once(
        &self,
        db: &str,
        stmts: Vec<Statement>,
        transaction: bool,
        request_id: Option<String>,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, NodeError> {
        let stmts = non_empty(stmts)?;
        let cmd = Command::Execute {
            db: db.to_string(),
            stmts,
            transaction,
            ctx: EntryContext::now(),
            request_id,
        };
        self.write(cmd, timeout).await.and_then(into_results)
    }

    async fn write(&self, cmd: Command, timeout: Duration) -> Result<Response, NodeError> {
        match self.route(NodeRpc::Write(cmd), timeout).await? {
            Reply::Response(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Reads at `level`: `none` here (refused with [`NodeError::StaleRead`] when `freshness`
    /// is given and this follower has not heard from the leader within it), the others on
    /// the leader.
    ///
    /// # Errors
    /// [`NodeError::StaleRead`], [`NodeError::NoLeader`], `Command(NoSuchDatabase)`.
    pub async fn query(
        &self,
        db: &str,
        stmts: Vec<Statement>,
        level: Level,
        freshness: Option<Duration>,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, NodeError> {
        if stmts.is_empty() {
            return Err(NodeError::BadRequest("empty statement list".into()));
        }
        let level = match level {
            Level::Auto if self.metrics().state == ServerState::Learner => Level::None,
            Level::Auto => Level::Weak,
            l => l,
        };
        if level == Level::None {
            if let Some(f) = freshness {
                if !self.is_leader() {
                    let last = self.contact.elapsed_ms();
                    let limit = u64::try_from(f.as_millis()).unwrap_or(u64::MAX);
                    if last.is_none_or(|ms| ms > limit) {
                        return Err(NodeError::StaleRead {
                            last_contact_ms: last.unwrap_or(u64::MAX),
                            freshness_ms: limit,
                        });
                    }
                }
            }
            return self.local_query(db, &stmts, Instant::now() + timeout);
        }
        let rpc = NodeRpc::Query {
            db: db.to_string(),
            stmts,
            level,
        };
        match self.route(rpc, timeout).await? {
            Reply::Results(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Whether every statement leaves `db` unchanged (how `/db/request` picks its path).
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`.
    pub fn all_read_only(&self, db: &str, stmts: &[Statement]) -> Result<bool, NodeError> {
        Ok(self.store.all_read_only(db, stmts)?)
    }

    /// Queues `stmts` to be written in a later batch (rqlite's `queue` flag) and returns the
    /// sequence number to wait for. The request is validated first, so that a queued write
    /// is not lost silently later: database `db` must exist (when this replica does not have
    /// it yet, the leader is asked, within `timeout`), and the request must fit in one log
    /// entry.
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`, [`NodeError::EntryTooLarge`], `BadRequest` for an empty
    /// list; [`NodeError::NoLeader`] / [`NodeError::Unavailable`] when the leader must be
    /// asked and cannot be. Nothing is queued on error.
    pub async fn enqueue(
        &self,
        db: &str,
        stmts: Vec<Statement>,
        transaction: bool,
        timeout: Duration,
    ) -> Result<u64, NodeError> {
        let stmts = non_empty(stmts)?;
        NodeError::check_entry_size(
            Command::queued_request_size(db, &stmts, transaction),
            cairn_raft::MAX_ENTRY_BYTES - Command::QUEUED_OVERHEAD,
        )?;
        if !self.store.exists(db) {
            // This replica may lag behind a create the leader has applied: the leader's
            // view decides.
            self.route(NodeRpc::HasDatabase(db.to_string()), timeout)
                .await?;
        }
        Ok(self.queue.push(db.to_string(), stmts, transaction))
    }

    /// Waits until the queued batch holding `seq` has been written.
    ///
    /// # Errors
    /// [`NodeError::Timeout`].
    pub async fn wait_queue(&self, seq: u64, timeout: Duration) -> Result<(), NodeError> {
        self.queue.wait(seq, timeout).await
    }

    /// Writes queued requests, as few log entries as fit them (each entry at most
    /// `MAX_ENTRY_BYTES`), one after the other.
    ///
    /// # Errors
    /// The first entry's error; the other entries are still written.
    pub(crate) async fn flush_queue_batch(
        &self,
        batches: Vec<(String, Vec<Statement>, bool)>,
    ) -> Result<(), NodeError> {
        let mut first_err = None;
        for batches in crate::queue::split_into_entries(batches) {
            let written = self
                .write(
                    Command::Queued {
                        batches,
                        ctx: EntryContext::now(),
                    },
                    Duration::from_secs(30),
                )
                .await
                .and_then(|resp| resp.error.map_or(Ok(()), |e| Err(e.into())));
            if let Err(e) = written {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Databases on this replica with their sizes in bytes.
    pub fn databases(&self) -> Vec<(String, u64)> {
        self.store.databases()
    }

    /// Creates database `name` through the log.
    ///
    /// # Errors
    /// `Command(BadIdentifier)`, `Command(DatabaseExists)`, [`NodeError::NoLeader`].
    pub async fn create_database(&self, name: &str, timeout: Duration) -> Result<(), NodeError> {
        cairn_sql::validate_name(name)?;
        let resp = self
            .write(
                Command::CreateDatabase {
                    name: name.to_string(),
                },
                timeout,
            )
            .await?;
        into_results(resp).map(|_| ())
    }

    /// Drops database `name`. Only the leader may: on a follower this answers
    /// [`NodeError::NotLeader`] with the leader's address, and nothing is forwarded.
    ///
    /// # Errors
    /// [`NodeError::NotLeader`], `Command(NoSuchDatabase)`, `Command(Forbidden)` for `main`.
    pub async fn drop_database(&self, name: &str, timeout: Duration) -> Result<(), NodeError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let cmd = Command::DropDatabase {
            name: name.to_string(),
        };
        match self.serve_forwarded(NodeRpc::Write(cmd), timeout).await? {
            Reply::Response(r) => into_results(r).map(|_| ()),
            other => Err(unexpected(other)),
        }
    }

    /// Loads a SQLite file or runs a SQL script on `db`, through the log. A script runs as
    /// one atomic batch, statement by statement in the sandbox; the results are each
    /// statement's, up to the first error (after which nothing of it is kept). A file gives
    /// no results.
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`, `Command(BadRequest)` for a file that is not a database.
    pub async fn load(
        &self,
        db: &str,
        payload: LoadPayload,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, NodeError> {
        if !self.store.exists(db) {
            return Err(cairn_sql::Error::NoSuchDatabase(db.to_string()).into());
        }
        let cmd = match payload {
            LoadPayload::Sqlite(bytes) => Command::Load {
                db: db.to_string(),
                bytes,
            },
            LoadPayload::Script(sql) => Command::Script {
                db: db.to_string(),
                sql,
                ctx: EntryContext::now(),
            },
        };
        into_results(self.write(cmd, timeout).await?)
    }

    /// This replica's copy of `db` as SQLite file bytes.
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`, `Internal` on I/O errors.
    pub async fn backup(&self, db: &str) -> Result<Vec<u8>, NodeError> {
        let path = self
            .data_dir
            .join("tmp")
            .join(format!("backup-{db}-{}.sqlite", rand::random::<u64>()));
        let result = tokio::task::block_in_place(|| {
            self.store.backup(db, &path)?;
            Ok::<_, cairn_sql::Error>(std::fs::read(&path)?)
        });
        let _ = std::fs::remove_file(&path);
        Ok(result?)
    }

    /// This replica's copy of `db` as a SQL dump.
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`.
    pub async fn dump_sql(&self, db: &str) -> Result<String, NodeError> {
        Ok(tokio::task::block_in_place(|| self.store.dump_sql(db))?)
    }

    /// Node, Raft and store status: rqlite's `/status` sections and Cairn's `raft` (see
    /// [`Status`]).
    pub fn status(&self) -> Status {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let leader = m.current_leader.and_then(|id| Self::peer(&m, id));
        let voters: Vec<u64> = membership.voter_ids().collect();
        let commit_index = m
            .cluster_committed
            .as_ref()
            .map(|l| l.index)
            .or(m.local_committed.as_ref().map(|l| l.index));
        let applied_index = m.last_applied.as_ref().map(|l| l.index);
        let state = format!("{:?}", m.state);
        let raft = RaftStatus {
            state: state.clone(),
            leader_id: m.current_leader,
            leader_api_addr: leader.as_ref().map(|l| l.http_url()),
            term: m.current_term,
            last_log_index: m.last_log_index,
            commit_index,
            applied_index,
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            purged_index: m.purged.as_ref().map(|l| l.index),
            voters: voters.clone(),
            learners: membership.learner_ids().collect(),
            last_contact_ms: if m.state == ServerState::Leader {
                None
            } else {
                self.contact.elapsed_ms()
            },
        };
        let databases: Vec<DatabaseStatus> = self
            .store
            .databases()
            .into_iter()
            .map(|(name, size_bytes)| DatabaseStatus { name, size_bytes })
            .collect();
        let main_size = databases
            .iter()
            .find(|d| d.name == cairn_sql::DEFAULT_DATABASE)
            .map_or(0, |d| d.size_bytes);
        let dir_size = status::dir_size(&self.data_dir);
        let uptime = self.started.elapsed();
        let now = chrono::Utc::now();
        let started = chrono::Duration::from_std(uptime).map_or(now, |d| now - d);
        let rfc3339 = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        };
        let store = StoreStatus {
            open: true,
            ready: m.current_leader.is_some(),
            node_id: self.id.to_string(),
            addr: self.addr.raft_addr.clone(),
            leader: StoreLeader {
                node_id: m
                    .current_leader
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                addr: leader.map(|l| l.addr.raft_addr).unwrap_or_default(),
            },
            raft: StoreRaft {
                state,
                term: m.current_term,
                last_log_index: m.last_log_index.unwrap_or(0),
                commit_index: commit_index.unwrap_or(0),
                applied_index: applied_index.unwrap_or(0),
                last_snapshot_index: m.snapshot.as_ref().map_or(0, |l| l.index),
                num_peers: voters.iter().filter(|&&v| v != self.id).count() as u64,
                voter: voters.contains(&self.id),
            },
            fsm_index: applied_index.unwrap_or(0),
            db_applied_index: applied_index.unwrap_or(0),
            nodes: membership
                .nodes()
                .map(|(id, n)| StoreServer {
                    id: id.to_string(),
                    addr: n.raft_addr.clone(),
                    suffrage: if voters.contains(id) {
                        "Voter"
                    } else {
                        "Nonvoter"
                    },
                })
                .collect(),
            dir_size,
            dir_size_friendly: status::friendly_bytes(dir_size),
            sqlite3: SqliteStatus {
                version: rusqlite::version(),
                db_size: main_size,
                db_size_friendly: status::friendly_bytes(main_size),
            },
            db_conf: DbConf {
                fk_constraints: true,
            },
            databases,
        };
        Status {
            build: BuildStatus::current(),
            http: HttpStatus {
                bind_addr: self.addr.http_addr.clone(),
                auth: "disabled",
                cluster: ClusterStatus {
                    addr: self.addr.raft_addr.clone(),
                    https: "false",
                    api_addr: self.addr.http_url(),
                },
            },
            node: NodeStatus {
                id: self.id,
                http_addr: self.addr.http_addr.clone(),
                raft_addr: self.addr.raft_addr.clone(),
                api_addr: self.addr.http_url(),
                version: env!("CARGO_PKG_VERSION"),
                uptime_s: uptime.as_secs_f64(),
                start_time: rfc3339(started),
                current_time: rfc3339(now),
                uptime: status::go_duration(uptime),
            },
            os: OsStatus::current(),
            runtime: RuntimeStatus::current(),
            store,
            raft,
        }
    }

    /// Every member with its role and whether it answers right now, as rqlite's `/nodes`
    /// reports them (`http/nodes.go`): each node, this one included, is asked for
    /// `/readyz?noleader` over HTTP with a 1-second timeout, all at once; a reachable entry
    /// carries the version from its `X-RQLITE-VERSION` header and how long the check took,
    /// an unreachable one the error.
    pub async fn nodes(&self) -> Vec<NodeEntry> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members: Vec<(u64, NodeAddr)> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        let checks = members.iter().map(|(_, addr)| async move {
            let start = Instant::now();
            let reply = self
                .http
                .get(format!("{}/readyz?noleader", addr.http_url()))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            let took = start.elapsed();
            match reply {
                Ok(r) if r.status().is_success() => {
                    let version = r
                        .headers()
                        .get(VERSION_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .filter(|v| !v.is_empty())
                        .unwrap_or("unknown")
                        .to_string();
                    Ok((version, took))
                }
                Ok(r) => Err(format!("node answered {}", r.status())),
                Err(e) if e.is_timeout() => Err("timeout waiting for node to respond".into()),
                Err(e) => Err(e.to_string()),
            }
        });
        let checked = futures::future::join_all(checks).await;
        members
            .into_iter()
            .zip(checked)
            .map(|((id, addr), check)| {
                let (version, time, time_s, error) = match check {
                    Ok((version, took)) => (
                        version,
                        Some(took.as_secs_f64()),
                        Some(status::go_duration(took)),
                        None,
                    ),
                    Err(e) => (String::new(), None, None, Some(e)),
                };
                NodeEntry {
                    id: id.to_string(),
                    api_addr: addr.http_url(),
                    addr: addr.raft_addr.clone(),
                    version,
                    voter: voters.contains(&id),
                    reachable: error.is_none(),
                    leader: error.is_none() && m.current_leader == Some(id),
                    time,
                    time_s,
                    error,
                }
            })
            .collect()
    }

    /// Waits until this node has applied everything the leader had committed when asked
    /// (`/readyz?sync`).
    ///
    /// # Errors
    /// [`NodeError::Timeout`], [`NodeError::NoLeader`].
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), NodeError> {
        let deadline = Instant::now() + timeout;
        let index = match self.route(NodeRpc::CommitIndex, timeout).await? {
            Reply::Index(i) => i,
            other => return Err(unexpected(other)),
        };
        self.raft
            .wait(Some(elapsed_left(deadline)))
            .applied_index_at_least(Some(index), "sync")
            .await
            .map(|_| ())
            .map_err(|e| NodeError::Timeout(format!("applying up to index {index}: {e}")))
    }

    /// Adds a node (learner first, voter once caught up), through the leader. Requires the
    /// cluster secret.
    ///
    /// # Errors
    /// [`NodeError::Unauthorized`], [`NodeError::BadRequest`] for an id taken by another
    /// address, [`NodeError::NoLeader`].
    pub async fn join(
        &self,
        req: JoinRequest,
        secret: &str,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        use subtle::ConstantTimeEq;
        if !bool::from(secret.as_bytes().ct_eq(self.secret.as_bytes())) {
            return Err(NodeError::Unauthorized);
        }
        self.route(NodeRpc::Join(req), timeout).await.map(|_| ())
    }

    async fn add_node(&self, req: JoinRequest) -> Result<(), NodeError> {
        let addr = NodeAddr {
            http_addr: req.http_addr,
            raft_addr: req.raft_addr,
        };
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if let Some(existing) = membership.get_node(&req.id) {
            if *existing != addr {
                return Err(NodeError::BadRequest(format!(
                    "node id {} is already a member at {existing}; remove it first",
                    req.id
                )));
            }
            if membership.voter_ids().any(|v| v == req.id) {
                return Ok(());
            }
        } else {
            self.raft
                .add_learner(req.id, addr, true)
                .await
                .map_err(|e| self.membership_error(e))?;
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds([req.id].into()), false)
            .await
            .map_err(|e| self.membership_error(e))?;
        tracing::info!(node = req.id, "node joined as a voter");
        Ok(())
    }

    fn membership_error(
        &self,
        e: RaftError<cairn_raft::TypeConfig, ClientWriteError<cairn_raft::TypeConfig>>,
    ) -> NodeError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => self.not_leader(),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                NodeError::BadRequest(c.to_string())
            }
            other => NodeError::Internal(other.to_string()),
        }
    }

    /// Removes node `id` from the cluster, through the leader.
    ///
    /// # Errors
    /// [`NodeError::NotFound`] for an unknown id, [`NodeError::NoLeader`].
    pub async fn remove(&self, id: u64, timeout: Duration) -> Result<(), NodeError> {
        self.route(NodeRpc::Remove(id), timeout).await.map(|_| ())
    }

    async fn remove_node(&self, id: u64) -> Result<(), NodeError> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(NodeError::NotFound(format!("node {id} is not a member")));
        }
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters([id].into())
        } else {
            ChangeMembers::RemoveNodes([id].into())
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| self.membership_error(e))?;
        tracing::info!(node = id, "node removed");
        Ok(())
    }

    /// Makes the leader hand leadership to the most up-to-date other voter (Raft §3.10,
    /// leadership transfer) and returns the new leader.
    ///
    /// # Errors
    /// [`NodeError::BadRequest`] when there is no other voter, [`NodeError::Timeout`].
    pub async fn step_down(&self, timeout: Duration) -> Result<Peer, NodeError> {
        match self.route(NodeRpc::StepDown, timeout).await? {
            Reply::Leader(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    async fn transfer_leadership(&self, timeout: Duration) -> Result<Peer, NodeError> {
        let m = self.metrics();
        let progress: BTreeMap<u64, u64> = m
            .replication
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(id, l)| (id, l.map(|l| l.index).unwrap_or(0)))
            .collect();
        let target = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != self.id)
            .max_by_key(|v| progress.get(v).copied().unwrap_or(0))
            .ok_or_else(|| NodeError::BadRequest("no other voter to hand leadership to".into()))?;
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        let m = self
            .raft
            .wait(Some(timeout))
            .current_leader(target, "leadership transfer")
            .await
            .map_err(|e| NodeError::Timeout(e.to_string()))?;
        Self::peer(&m, target)
            .ok_or_else(|| NodeError::Internal("new leader has no address".into()))
    }
}

/// The database a data command writes to (`None` for commands that manage databases).
fn cmd_database(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::Execute { db, .. }
        | Command::Script { db, .. }
        | Command::Load { db, .. }
        | Command::Query { db, .. } => Some(db),
        Command::Queued { .. } | Command::CreateDatabase { .. } | Command::DropDatabase { .. } => {
            None
        }
    }
}

fn into_results(r: Response) -> Result<Vec<StatementResult>, NodeError> {
    match r.error {
        Some(e) => Err(e.into()),
        None => Ok(r.results),
    }
}

fn unexpected(r: Reply) -> NodeError {
    NodeError::Internal(format!("unexpected reply from the leader: {r:?}"))
}

/// Refuses an empty statement list.
fn non_empty(stmts: Vec<Statement>) -> Result<Vec<Statement>, NodeError> {
    if stmts.is_empty() {
        return Err(NodeError::BadRequest("empty statement list".into()));
    }
    Ok(stmts)
}
