//! Writes through the log: statements (at most once with an idempotency key), queued
//! writes, creating and dropping databases, loading a database file or SQL script.

use std::time::Duration;

use cairn_raft::Command;
use cairn_sql::{EntryContext, Statement, StatementResult};

use crate::node::{into_results, non_empty, unexpected, Node};
use crate::rpc::{NodeRpc, Reply};
use crate::{LoadPayload, NodeError};

impl Node {
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
        let started = std::time::Instant::now();
        let out = self.write(cmd, timeout).await.and_then(into_results);
        self.telemetry
            .observe_operation(crate::OpKind::Write, started.elapsed());
        out
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
        // Whether `db` exists is the leader's to say (`routing.rs::serve_forwarded`, before
        // the entry takes an index): a follower may not have applied a create the leader
        // acknowledged yet, so `cairn restore --create` through a follower was refused.
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
}
