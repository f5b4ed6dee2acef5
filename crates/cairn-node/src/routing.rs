//! Routing a command to the leader: proposing it here when this node leads, forwarding it
//! over the internal RPC when it does not, and retrying only when the request certainly
//! did not arrive.

use std::time::{Duration, Instant};

use cairn_raft::{Command, Response};
use cairn_sql::EntryContext;
use openraft::errors::{ClientWriteError, RaftError};

use crate::node::{cmd_database, elapsed_left, unexpected, Node, MAX_ROUTE_ATTEMPTS};
use crate::rpc::{self, NodeRpc, Reply};
use crate::NodeError;

impl Node {
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
    pub(crate) async fn route(&self, rpc: NodeRpc, timeout: Duration) -> Result<Reply, NodeError> {
        if let NodeRpc::Write(cmd) = &rpc {
            NodeError::check_entry_size(cmd.encoded_size(), cairn_raft::MAX_ENTRY_BYTES)?;
        }
        let changes_state = rpc.changes_state();
        let deadline = Instant::now() + timeout;
        let mut last_err = NodeError::NoLeader;
        let mut forwarded = false;
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
                Some(l) => {
                    // Once per operation, however many attempts it takes.
                    if !forwarded {
                        forwarded = true;
                        self.telemetry.observe_forwarded(rpc.op_kind());
                    }
                    rpc::call(
                        &self.raft_http,
                        &self.secret,
                        self.raft_scheme,
                        l,
                        rpc.clone(),
                        left,
                    )
                    .await
                }
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
    pub(crate) async fn propose(&self, mut cmd: Command) -> Result<Response, NodeError> {
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

    pub(crate) async fn write(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<Response, NodeError> {
        match self.route(NodeRpc::Write(cmd), timeout).await? {
            Reply::Response(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }
}
