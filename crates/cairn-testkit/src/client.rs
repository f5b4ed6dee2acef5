//! What every test cluster offers, in-process ([`crate::TestCluster`]) or of processes
//! ([`crate::ProcessCluster`]): addressing nodes by index, HTTP calls to them, and waits
//! with deadlines for leaders, voters and applied indexes.
//!
//! Nodes are addressed by index `i` (0-based, in start order); node `i` has Raft node ID
//! `i + 1`.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::http::{HttpClient, Level, Reply};
use crate::process_cluster::RaftStatus;
use crate::wait::try_wait_for;
use crate::{CATCH_UP_TIMEOUT, LEADER_TIMEOUT, START_TIMEOUT};

/// A cluster a test talks to. Implementors give addresses and liveness; every call and
/// wait is provided on top of them.
pub trait Cluster {
    /// The number of nodes ever started, running or not.
    fn node_count(&self) -> usize;

    /// Node `i`'s base URL, `http://127.0.0.1:PORT`; an error when there is no node `i` or
    /// its address is not known yet.
    fn base(&self, i: usize) -> Result<String>;

    /// The HTTP client calls go through (no redirects followed, no proxy).
    fn http(&self) -> &HttpClient;

    /// The client status polls go through: a short timeout, so that a node that does not
    /// answer is polled again rather than waited on.
    fn poll_client(&self) -> &HttpClient;

    /// Indexes of the nodes the harness started and has not killed or stopped.
    fn running(&self) -> Vec<usize>;

    /// An error when node `i` was started, not stopped by the harness, but is gone (its
    /// process exited, its task ended).
    fn check_alive(&self, i: usize) -> Result<()>;

    /// The Raft node ID of node `i`: `i + 1`.
    fn id(&self, i: usize) -> u64 {
        u64::try_from(i + 1).unwrap_or(u64::MAX)
    }

    /// The node IDs of all nodes ever started.
    fn ids(&self) -> Vec<u64> {
        (0..self.node_count()).map(|i| self.id(i)).collect()
    }

    /// The index of the node with Raft node ID `id`.
    fn index_of(&self, id: u64) -> Result<usize> {
        (0..self.node_count())
            .find(|&i| self.id(i) == id)
            .with_context(|| format!("no node with ID {id}"))
    }

    /// Node `i`'s HTTP URL, `http://127.0.0.1:PORT`.
    ///
    /// # Panics
    /// When there is no node `i`.
    fn url(&self, i: usize) -> String {
        match self.base(i) {
            Ok(u) => u,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Waits up to [`START_TIMEOUT`] until node `i`'s `GET /readyz` answers 200.
    fn wait_ready(&self, i: usize) -> Result<()> {
        let base = self.base(i)?;
        try_wait_for(START_TIMEOUT, &format!("node {} ready", self.id(i)), || {
            self.check_alive(i)?;
            Ok(match self.poll_client().get(&base, "/readyz", &[]) {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(r.to_string()),
                Err(e) => Err(format!("{e:#}")),
            })
        })
    }

    /// Node `i`'s `GET /status` body; an error unless it answers 200 with JSON.
    fn status(&self, i: usize) -> Result<Value> {
        let r = self.poll_client().get(&self.base(i)?, "/status", &[])?;
        if r.status != 200 || r.body.is_null() {
            bail!("GET /status on node {}: {r}", self.id(i));
        }
        Ok(r.body)
    }

    /// The `raft` part of node `i`'s `GET /status`.
    fn raft_status(&self, i: usize) -> Result<RaftStatus> {
        RaftStatus::from_status(&self.status(i)?)
            .with_context(|| format!("reading node {}'s /status", self.id(i)))
    }

    /// One look for the leader among running nodes: the node that reports itself
    /// `Leader` with the highest term. The inner `Err` describes what each node said;
    /// the outer one means a node crashed.
    fn find_leader(&self) -> Result<std::result::Result<(usize, RaftStatus), String>> {
        let mut best: Option<(usize, RaftStatus)> = None;
        let mut seen = Vec::new();
        for i in self.running() {
            self.check_alive(i)?;
            match self.raft_status(i) {
                Ok(s) => {
                    seen.push(format!(
                        "node {}: {} (leader {:?}, term {})",
                        self.id(i),
                        s.state,
                        s.leader_id,
                        s.term
                    ));
                    let better = best.as_ref().is_none_or(|(_, b)| s.term > b.term);
                    if s.state == "Leader" && better {
                        best = Some((i, s));
                    }
                }
                Err(e) => seen.push(format!("node {}: {e:#}", self.id(i))),
            }
        }
        Ok(best.ok_or_else(|| seen.join("; ")))
    }

    /// The index of the leader, waiting up to [`LEADER_TIMEOUT`] for one: the running
    /// node whose `/status` says `Leader` (the highest term wins if two do).
    fn leader(&self) -> Result<usize> {
        self.leader_within(LEADER_TIMEOUT)
    }

    /// Like [`Self::leader`] with a chosen timeout.
    fn leader_within(&self, timeout: Duration) -> Result<usize> {
        try_wait_for(timeout, "a leader", || {
            Ok(self.find_leader()?.map(|(i, _)| i))
        })
    }

    /// Running nodes other than the leader (waits for a leader like [`Self::leader`]).
    fn followers(&self) -> Result<Vec<usize>> {
        let l = self.leader()?;
        Ok(self.running().into_iter().filter(|&i| i != l).collect())
    }

    /// Waits up to [`START_TIMEOUT`] until the leader's voters are exactly `ids` (in
    /// any order) and it has no learners.
    fn wait_voters(&self, ids: &[u64]) -> Result<()> {
        let mut want = ids.to_vec();
        want.sort_unstable();
        try_wait_for(START_TIMEOUT, &format!("voters {want:?}"), || {
            Ok(self.find_leader()?.and_then(|(_, s)| {
                if s.voters == want && s.learners.is_empty() {
                    Ok(())
                } else {
                    Err(format!("voters {:?}, learners {:?}", s.voters, s.learners))
                }
            }))
        })
    }

    /// Waits up to [`CATCH_UP_TIMEOUT`] until every running node's applied index has
    /// reached the leader's commit index as read when this is called. Returns that index.
    fn wait_all_applied(&self) -> Result<u64> {
        let l = self.leader()?;
        let commit = self.raft_status(l)?.commit_index;
        for i in self.running() {
            self.wait_applied(i, commit)?;
        }
        Ok(commit)
    }

    /// Waits up to [`CATCH_UP_TIMEOUT`] until node `i`'s applied index is at least
    /// `index`.
    fn wait_applied(&self, i: usize, index: u64) -> Result<()> {
        let what = format!("node {} to apply index {index}", self.id(i));
        try_wait_for(CATCH_UP_TIMEOUT, &what, || {
            self.check_alive(i)?;
            Ok(match self.raft_status(i) {
                Ok(s) if s.applied_index >= index => Ok(()),
                Ok(s) => Err(format!("{s:?}")),
                Err(e) => Err(format!("{e:#}")),
            })
        })
    }

    /// Waits up to [`CATCH_UP_TIMEOUT`] until `sql` read at level `none` on node `i`
    /// returns exactly the rows `expected` (a JSON array of rows).
    fn wait_rows(&self, i: usize, sql: &str, expected: &Value) -> Result<()> {
        let what = format!("node {} to return {expected} for {sql}", self.id(i));
        try_wait_for(CATCH_UP_TIMEOUT, &what, || {
            self.check_alive(i)?;
            Ok(match self.query(i, sql, Level::None) {
                Ok(r) if r.is_clean() && &r.rows() == expected => Ok(()),
                Ok(r) => Err(r.to_string()),
                Err(e) => Err(format!("{e:#}")),
            })
        })
    }

    /// `GET path?params` on node `i`; see [`HttpClient::url`] for `params`.
    fn get(&self, i: usize, path: &str, params: &[(&str, &str)]) -> Result<Reply> {
        self.http().get(&self.base(i)?, path, params)
    }

    /// `POST path?params` on node `i` with a JSON body.
    fn post(&self, i: usize, path: &str, params: &[(&str, &str)], body: &Value) -> Result<Reply> {
        self.http().post(&self.base(i)?, path, params, body)
    }

    /// `PATCH path?params` on node `i` with a JSON body.
    fn patch(&self, i: usize, path: &str, params: &[(&str, &str)], body: &Value) -> Result<Reply> {
        self.http().patch(&self.base(i)?, path, params, body)
    }

    /// `POST path?params` on node `i` with `body` sent verbatim as `application/json`.
    fn post_raw(&self, i: usize, path: &str, params: &[(&str, &str)], body: &str) -> Result<Reply> {
        self.http().post_raw(&self.base(i)?, path, params, body)
    }

    /// `POST path?params` on node `i` with `body` sent as is under `content_type` (e.g.
    /// `text/plain` for one SQL statement, `application/octet-stream` for `/db/load`).
    fn post_bytes(
        &self,
        i: usize,
        path: &str,
        params: &[(&str, &str)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Reply> {
        self.http()
            .post_bytes(&self.base(i)?, path, params, content_type, body)
    }

    /// `GET path?params` on node `i`, returning the status and the raw body (for binary
    /// answers such as `/db/backup`).
    fn get_bytes(&self, i: usize, path: &str, params: &[(&str, &str)]) -> Result<(u16, Vec<u8>)> {
        self.http().get_bytes(&self.base(i)?, path, params)
    }

    /// `DELETE path` on node `i`, with a JSON body when given.
    fn delete(&self, i: usize, path: &str, body: Option<&Value>) -> Result<Reply> {
        self.http().delete(&self.base(i)?, path, body)
    }

    /// `POST /db/execute` on node `i` with `statements` (a JSON array).
    fn execute(&self, i: usize, statements: &Value) -> Result<Reply> {
        self.execute_with(i, &[], statements)
    }

    /// `POST /db/execute?params` on node `i`, e.g. `&[("transaction", ""), ("db", "school")]`.
    fn execute_with(&self, i: usize, params: &[(&str, &str)], statements: &Value) -> Result<Reply> {
        self.post(i, "/db/execute", params, statements)
    }

    /// `POST /db/execute` on node `i`; an error unless the reply is 200 with no error
    /// in any result slot. For test setup.
    fn execute_ok(&self, i: usize, statements: &Value) -> Result<Reply> {
        let r = self.execute(i, statements)?;
        if !r.is_clean() {
            bail!("execute {statements} on node {}: {r}", self.id(i));
        }
        Ok(r)
    }

    /// `GET /db/query?q=sql&level=...` on node `i`.
    fn query(&self, i: usize, sql: &str, level: Level) -> Result<Reply> {
        self.query_with(i, &[("q", sql), ("level", level.as_str())])
    }

    /// `GET /db/query?params` on node `i`.
    fn query_with(&self, i: usize, params: &[(&str, &str)]) -> Result<Reply> {
        self.get(i, "/db/query", params)
    }

    /// The rows (`values` of the first result) of `sql` at `level` on node `i`; an
    /// error unless the reply is 200 without a statement error.
    fn query_rows(&self, i: usize, sql: &str, level: Level) -> Result<Value> {
        let r = self.query(i, sql, level)?;
        if !r.is_clean() {
            bail!(
                "query {sql:?} at level {} on node {}: {r}",
                level.as_str(),
                self.id(i)
            );
        }
        Ok(r.rows())
    }
}
