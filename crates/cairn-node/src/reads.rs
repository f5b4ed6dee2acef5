//! Reads at every consistency level (rqlite's `none`, `weak`, `linearizable`, `strong`),
//! the list of databases, backups and dumps of this replica, and waiting until this
//! replica has applied what the leader committed.

use std::time::{Duration, Instant};

use cairn_raft::Command;
use cairn_sql::{EntryContext, Statement, StatementResult};
use openraft::{LinearizerOption, ServerState};

use crate::node::{elapsed_left, into_results, unexpected, Node};
use crate::rpc::{NodeRpc, Reply};
use crate::{Level, NodeError};

impl Node {
    pub(crate) async fn leader_read(
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
                match self
                    .raft
                    .ensure_linearizable(self.read_index_option())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.forward_to_leader().is_some() => return Err(self.not_leader()),
                    Err(e) => {
                        return Err(NodeError::Unavailable(format!(
                            "cannot confirm leadership: {e}"
                        )))
                    }
                }
                self.local_query(db, stmts, deadline).await
            }
            _ => self.local_query(db, stmts, deadline).await,
        }
    }

    /// How the leader confirms a linearizable read (Raft thesis §6.4, ReadIndex): its
    /// commit index counts once a quorum has acknowledged this leader recently enough,
    /// then the read waits until that index is applied. "Recently enough" is half the
    /// leader lease: an acknowledgement of a heartbeat or append *sent* within the last
    /// `election_timeout_max / 2` (openraft stamps acknowledgements with their send
    /// time). Followers refuse to vote for anyone until `election_timeout_max` has passed
    /// since they last heard from this leader (openraft's leader lease, Raft thesis §6.4.1,
    /// measured on each node's monotonic clock), so no other leader can have been elected,
    /// nor any write committed elsewhere, before the read's confirmation point. The other
    /// half of the lease is the margin for clock-rate differences between nodes. openraft
    /// keeps a follower's lease in memory only, so a follower refuses to vote for one
    /// lease after it starts (`cairn_raft::server::RaftService::votes_from`): a restart
    /// cannot cut the lease short. When the
    /// latest acknowledgement is older (an idle cluster, a slow follower), the leader
    /// sends heartbeats at once and waits for them: plain ReadIndex. With heartbeats every
    /// 50 ms most reads need no round trip of their own.
    fn read_index_option(&self) -> LinearizerOption {
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        LinearizerOption::new(Some(lease / 2), true)
    }

    /// Reads this replica; a statement still running at `deadline` fails with
    /// `query_timeout`. SQLite runs on tokio's blocking pool, so the node needs no
    /// multi-thread runtime and a long read never holds up other requests' tasks.
    pub(crate) async fn local_query(
        &self,
        db: &str,
        stmts: Vec<Statement>,
        deadline: Instant,
    ) -> Result<Vec<StatementResult>, NodeError> {
        let store = self.store.clone();
        let db = db.to_string();
        Ok(blocking(move || store.query(&db, &stmts, Some(deadline))).await??)
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
        let started = Instant::now();
        let out = self.query_at(db, stmts, level, freshness, timeout).await;
        self.telemetry
            .observe_operation(crate::OpKind::Read, started.elapsed());
        out
    }

    async fn query_at(
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
            return self.local_query(db, stmts, Instant::now() + timeout).await;
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

    /// Databases on this replica with their sizes in bytes.
    pub fn databases(&self) -> Vec<(String, u64)> {
        self.store.databases()
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
        let (store, name) = (self.store.clone(), db.to_string());
        // The file is removed inside the blocking task: if this request is dropped
        // (the client went away), the task still runs to its end and cleans up.
        let result = blocking(move || {
            let read = store
                .backup(&name, &path)
                .and_then(|()| Ok(std::fs::read(&path)?));
            let _ = std::fs::remove_file(&path);
            read
        })
        .await?;
        Ok(result?)
    }

    /// This replica's copy of `db` as a SQL dump.
    ///
    /// # Errors
    /// `Command(NoSuchDatabase)`.
    pub async fn dump_sql(&self, db: &str) -> Result<String, NodeError> {
        let (store, name) = (self.store.clone(), db.to_string());
        Ok(blocking(move || store.dump_sql(&name)).await??)
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
}

/// Runs `f` on tokio's blocking pool.
///
/// # Errors
/// [`NodeError::Internal`] when the task panicked or the runtime is shutting down.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Internal(format!("a blocking task failed: {e}")))
}
