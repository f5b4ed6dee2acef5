//! `TestCluster`: a cluster of real `cairn start` processes on loopback, with helpers to
//! talk to them, fail them and wait for them.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::http::{HttpClient, Level, Reply};
use crate::node::NodeProcess;
use crate::ports::free_ports;
use crate::proxy::ProxyNet;
use crate::wait::try_wait_for;
use crate::{CATCH_UP_TIMEOUT, LEADER_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT};

/// How long a status poll may take; a node that does not answer /status within this is
/// treated as not answering, and the poll is retried.
const POLL_TIMEOUT: Duration = Duration::from_secs(3);

/// How many log lines per node are printed when a test fails.
const FAILURE_LOG_LINES: usize = 40;

/// How the nodes of a cluster find each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formation {
    /// Node 1 starts alone (a one-node cluster); each other node then starts with
    /// `--join <node 1's URL>`, one at a time, and is waited on until it is a voter.
    Join,
    /// All nodes start at once on free ports, each with `--bootstrap-expect N --join`
    /// and the URLs of all N nodes.
    BootstrapExpect,
}

/// What cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The number of nodes, at least 1. Default 3.
    pub nodes: usize,
    /// How the cluster forms. Default [`Formation::Join`].
    pub formation: Formation,
    /// `--snapshot-threshold`: log entries between snapshots. Default: the server's.
    pub snapshot_threshold: Option<u64>,
    /// `--cluster-secret` shared by every node. Default `"test-secret"`.
    pub cluster_secret: String,
    /// Put every node's Raft traffic behind a fault-injecting proxy ([`ProxyNet`], see
    /// [`TestCluster::proxies`]): the node with ID `k` binds its Raft listener on
    /// `127.0.0.{10+k}` and advertises its proxy's address there. Default `false`: Raft
    /// listens on `127.0.0.1` with no proxy.
    pub raft_proxies: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            formation: Formation::Join,
            snapshot_threshold: None,
            cluster_secret: "test-secret".to_string(),
            raft_proxies: false,
        }
    }
}

/// The `raft` part of a node's `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// `Leader`, `Follower`, `Candidate` or `Learner`.
    pub state: String,
    /// The node ID of the leader this node knows, if any.
    pub leader_id: Option<u64>,
    /// The current term.
    pub term: u64,
    /// The index of the last log entry (0 when `null`).
    pub last_log_index: u64,
    /// The commit index (0 when `null`).
    pub commit_index: u64,
    /// The applied index (0 when `null`).
    pub applied_index: u64,
    /// The last log index included in the latest snapshot, if there is one.
    pub snapshot_index: Option<u64>,
    /// The highest log index purged from the log after a snapshot, if any. A Cairn
    /// addition to the interface: `None` also when the field is absent.
    pub purged_index: Option<u64>,
    /// Node IDs of the voters, sorted.
    pub voters: Vec<u64>,
    /// Node IDs of the learners, sorted.
    pub learners: Vec<u64>,
}

impl RaftStatus {
    /// Reads the `raft` object of a `GET /status` body. Index fields may be `null`
    /// (read as 0); a missing field is an error.
    pub fn from_status(status: &Value) -> Result<Self> {
        let raft = status
            .get("raft")
            .context("no \"raft\" object in /status")?;
        let field = |k: &str| {
            raft.get(k)
                .with_context(|| format!("no raft.{k} in /status"))
        };
        let opt_u64 = |k: &str| -> Result<Option<u64>> {
            match field(k)? {
                Value::Null => Ok(None),
                v => v
                    .as_u64()
                    .map(Some)
                    .with_context(|| format!("raft.{k} is not a number: {v}")),
            }
        };
        let u64_or_zero = |k: &str| -> Result<u64> { Ok(opt_u64(k)?.unwrap_or(0)) };
        let ids = |k: &str| -> Result<Vec<u64>> {
            let v = field(k)?;
            let arr = v
                .as_array()
                .with_context(|| format!("raft.{k} is not an array: {v}"))?;
            let mut ids = arr
                .iter()
                .map(|x| {
                    x.as_u64()
                        .with_context(|| format!("raft.{k} holds a non-number: {x}"))
                })
                .collect::<Result<Vec<u64>>>()?;
            ids.sort_unstable();
            Ok(ids)
        };
        let state = field("state")?
            .as_str()
            .context("raft.state is not a string")?
            .to_string();
        Ok(RaftStatus {
            state,
            leader_id: opt_u64("leader_id")?,
            term: u64_or_zero("term")?,
            last_log_index: u64_or_zero("last_log_index")?,
            commit_index: u64_or_zero("commit_index")?,
            applied_index: u64_or_zero("applied_index")?,
            snapshot_index: opt_u64("snapshot_index")?,
            purged_index: match raft.get("purged_index") {
                None => None,
                Some(_) => opt_u64("purged_index")?,
            },
            voters: ids("voters")?,
            learners: ids("learners")?,
        })
    }
}

/// A cluster of real `cairn` processes, each with its own data directory in a fresh
/// temporary directory and ports chosen by the OS.
///
/// Nodes are addressed by index `i` (0-based, in start order); node `i` has Raft node ID
/// `i + 1`. Dropping the cluster kills every process it started (also when a test
/// panics) and, when the test is failing, prints the tail of every node's log.
///
/// Clusters in one test binary run one at a time (the constructor waits for the previous
/// cluster to be dropped), so that parallel tests on a small machine do not starve each
/// other's heartbeats into spurious elections.
#[derive(Debug)]
pub struct TestCluster {
    bin: PathBuf,
    secret: String,
    base_args: Vec<String>,
    nodes: Vec<NodeProcess>,
    http: HttpClient,
    poll: HttpClient,
    dir: TempDir,
    /// The nodes' Raft proxies, when started with [`ClusterOptions::raft_proxies`]. Dropped
    /// after the nodes are killed.
    proxies: Option<Arc<ProxyNet>>,
    _serial: MutexGuard<'static, ()>,
}

impl TestCluster {
    /// Starts `nodes` nodes of the `cairn` binary at `bin` by [`Formation::Join`], and
    /// waits until every node is a voter and ready.
    pub fn start(bin: impl AsRef<Path>, nodes: usize) -> Result<Self> {
        Self::start_with(
            bin,
            ClusterOptions {
                nodes,
                ..ClusterOptions::default()
            },
        )
    }

    /// Starts a cluster as `opts` says and waits until every node is a voter and its
    /// `/readyz` answers 200. On failure, prints the nodes' log tails and kills them.
    pub fn start_with(bin: impl AsRef<Path>, opts: ClusterOptions) -> Result<Self> {
        if opts.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        let serial = crate::serial();
        let dir = tempfile::Builder::new()
            .prefix("cairn-test-")
            .tempdir()
            .context("creating the cluster directory")?;
        let mut base_args = Vec::new();
        if let Some(n) = opts.snapshot_threshold {
            base_args.extend(["--snapshot-threshold".to_string(), n.to_string()]);
        }
        let mut cluster = TestCluster {
            bin: bin.as_ref().to_path_buf(),
            secret: opts.cluster_secret.clone(),
            base_args,
            nodes: Vec::new(),
            http: HttpClient::new()?,
            poll: HttpClient::with_timeout(POLL_TIMEOUT)?,
            dir,
            proxies: if opts.raft_proxies {
                Some(Arc::new(ProxyNet::new()?))
            } else {
                None
            },
            _serial: serial,
        };
        let formed = match opts.formation {
            Formation::Join => cluster.form_by_join(opts.nodes),
            Formation::BootstrapExpect => cluster.form_by_bootstrap_expect(opts.nodes),
        };
        if let Err(e) = formed {
            cluster.dump_logs();
            return Err(e.context(format!(
                "forming a {}-node cluster ({:?})",
                opts.nodes, opts.formation
            )));
        }
        Ok(cluster)
    }

    /// The `--raft-addr` to start node `id` with, and flags to add to its command line:
    /// `default` and none without proxies; behind a proxy, the node's own address and
    /// `--raft-adv-addr <its proxy's address>`.
    fn raft_flags(&self, id: u64, default: &str) -> Result<(String, Vec<String>)> {
        match &self.proxies {
            None => Ok((default.to_string(), Vec::new())),
            Some(net) => {
                let a = net.add_node(id)?;
                Ok((
                    a.bind.to_string(),
                    vec!["--raft-adv-addr".to_string(), a.advertised.to_string()],
                ))
            }
        }
    }

    fn form_by_join(&mut self, n: usize) -> Result<()> {
        let mut first = NodeProcess::new(self.dir.path(), 1)?;
        let (raft, adv) = self.raft_flags(1, "127.0.0.1:0")?;
        let mut extra = self.base_args.clone();
        extra.extend(adv);
        first.spawn(&self.bin, &self.secret, "127.0.0.1:0", &raft, &extra)?;
        self.nodes.push(first);
        self.nodes[0].read_node_json(START_TIMEOUT)?;
        self.wait_ready(0)?;
        for _ in 1..n {
            self.add_node(0)?;
        }
        self.wait_voters(&self.ids())
    }

    fn form_by_bootstrap_expect(&mut self, n: usize) -> Result<()> {
        let ports = free_ports(2 * n)?;
        let urls: Vec<String> = (0..n)
            .map(|k| format!("http://127.0.0.1:{}", ports[2 * k]))
            .collect();
        let join = urls.join(",");
        for k in 0..n {
            let id = u64::try_from(k + 1).context("too many nodes")?;
            let mut node = NodeProcess::new(self.dir.path(), id)?;
            let (raft, adv) = self.raft_flags(id, &format!("127.0.0.1:{}", ports[2 * k + 1]))?;
            let mut extra = self.base_args.clone();
            extra.extend([
                "--bootstrap-expect".to_string(),
                n.to_string(),
                "--join".to_string(),
                join.clone(),
            ]);
            extra.extend(adv);
            node.spawn(
                &self.bin,
                &self.secret,
                &format!("127.0.0.1:{}", ports[2 * k]),
                &raft,
                &extra,
            )?;
            self.nodes.push(node);
        }
        for k in 0..n {
            self.nodes[k].read_node_json(START_TIMEOUT)?;
            let node = &self.nodes[k];
            let want_http = format!("127.0.0.1:{}", ports[2 * k]);
            let got_http = node.http_addr.map(|a| a.to_string()).unwrap_or_default();
            if got_http != want_http {
                bail!(
                    "node {} wrote http_addr {got_http} to node.json, started with {want_http}",
                    node.id
                );
            }
        }
        for k in 0..n {
            self.wait_ready(k)?;
        }
        self.wait_voters(&self.ids())
    }

    /// Starts a new node with `--join <URL of node via>` (any member may be named),
    /// waits until the leader lists it as a voter and it is ready, and returns its index.
    pub fn add_node(&mut self, via: usize) -> Result<usize> {
        let join = self.base(via)?;
        let id = u64::try_from(self.nodes.len() + 1).context("too many nodes")?;
        let mut node = NodeProcess::new(self.dir.path(), id)?;
        let (raft, adv) = self.raft_flags(id, "127.0.0.1:0")?;
        let mut extra = self.base_args.clone();
        extra.extend(["--join".to_string(), join]);
        extra.extend(adv);
        node.spawn(&self.bin, &self.secret, "127.0.0.1:0", &raft, &extra)?;
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.nodes[i].read_node_json(START_TIMEOUT)?;
        try_wait_for(START_TIMEOUT, &format!("node {id} to be a voter"), || {
            self.check_alive(i)?;
            Ok(self.find_leader()?.and_then(|(_, s)| {
                if s.voters.contains(&id) {
                    Ok(())
                } else {
                    Err(format!("voters {:?}, learners {:?}", s.voters, s.learners))
                }
            }))
        })?;
        self.wait_ready(i)?;
        Ok(i)
    }

    /// The number of nodes ever started, running or not.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The Raft node ID of node `i`: `i + 1`.
    pub fn id(&self, i: usize) -> u64 {
        u64::try_from(i + 1).unwrap_or(u64::MAX)
    }

    /// The node IDs of all nodes ever started.
    pub fn ids(&self) -> Vec<u64> {
        (0..self.nodes.len()).map(|i| self.id(i)).collect()
    }

    /// The index of the node with Raft node ID `id`.
    pub fn index_of(&self, id: u64) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .with_context(|| format!("no node with ID {id}"))
    }

    fn node(&self, i: usize) -> Result<&NodeProcess> {
        self.nodes
            .get(i)
            .with_context(|| format!("no node {i} (the cluster has {})", self.nodes.len()))
    }

    fn base(&self, i: usize) -> Result<String> {
        let node = self.node(i)?;
        let addr = node
            .http_addr
            .with_context(|| format!("node {}'s address is not known yet", node.id))?;
        Ok(format!("http://{addr}"))
    }

    /// Node `i`'s HTTP URL, `http://127.0.0.1:PORT`.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn url(&self, i: usize) -> String {
        match self.base(i) {
            Ok(u) => u,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Node `i`'s bound HTTP address, as written in its `node.json`.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn http_addr(&self, i: usize) -> std::net::SocketAddr {
        match self.node(i).map(|n| n.http_addr) {
            Ok(Some(a)) => a,
            _ => panic!("node {i} has no known HTTP address"),
        }
    }

    /// Node `i`'s bound Raft address, as written in its `node.json`.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn raft_addr(&self, i: usize) -> std::net::SocketAddr {
        match self.node(i).map(|n| n.raft_addr) {
            Ok(Some(a)) => a,
            _ => panic!("node {i} has no known Raft address"),
        }
    }

    /// Node `i`'s `--data-dir`.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn data_dir(&self, i: usize) -> &Path {
        match self.node(i) {
            Ok(n) => &n.data_dir,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// The cluster's temporary directory, which holds each node's directory
    /// (`node-<id>/`, with `data/` and the logs). Deleted when the cluster is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The fault-injecting proxies in front of the nodes' Raft listeners, when the cluster
    /// was started with [`ClusterOptions::raft_proxies`].
    pub fn proxies(&self) -> Option<Arc<ProxyNet>> {
        self.proxies.clone()
    }

    /// The `--cluster-secret` every node was started with.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The HTTP client the cluster uses (no redirects followed, no proxy).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Indexes of the nodes the harness started and has not killed or stopped.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_expected_running())
            .collect()
    }

    /// An error when node `i` was started, not stopped by the harness, but exited.
    fn check_alive(&self, i: usize) -> Result<()> {
        self.node(i)?.check_alive()
    }

    // ---- lifecycle ----

    /// Kills node `i` with SIGKILL and reaps it. Its data directory is kept.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        self.nodes
            .get_mut(i)
            .with_context(|| format!("no node {i}"))?
            .kill()
    }

    /// Sends SIGTERM to node `i` and waits up to [`STOP_TIMEOUT`] for it to exit;
    /// returns its exit status. When it does not exit in time, it is killed and an error
    /// returned.
    pub fn stop(&mut self, i: usize) -> Result<ExitStatus> {
        self.nodes
            .get_mut(i)
            .with_context(|| format!("no node {i}"))?
            .stop(STOP_TIMEOUT)
    }

    /// Starts node `i` again on its data directory with the same HTTP and Raft
    /// addresses and node ID, without `--join` or `--bootstrap-expect` (its identity and
    /// cluster come from the data directory). Does not wait: use [`Self::wait_ready`].
    /// Behind a proxy, the node binds its own address again and advertises its proxy.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.restart_with_env(i, &[])
    }

    /// Like [`Self::restart`], with extra environment variables for this start only, e.g.
    /// `&[("CAIRN_CRASH_AT", "snapshot.swapped")]` to make the node abort at that named
    /// durable step. A later [`Self::restart`] starts it without them. Does not wait.
    pub fn restart_with_env(&mut self, i: usize, env: &[(&str, &str)]) -> Result<()> {
        let bin = self.bin.clone();
        let secret = self.secret.clone();
        let mut args = self.base_args.clone();
        let (Some(http), Some(raft)) = (self.node(i)?.http_addr, self.node(i)?.raft_addr) else {
            bail!("node {} was never started", self.id(i));
        };
        let (raft, adv) = self.raft_flags(self.id(i), &raft.to_string())?;
        args.extend(adv);
        let node = self
            .nodes
            .get_mut(i)
            .with_context(|| format!("no node {i}"))?;
        node.spawn_with_env(&bin, &secret, &http.to_string(), &raft, &args, env)
    }

    /// Waits up to `timeout` for node `i` to exit on its own (say, at a crash point), and
    /// returns its exit status; afterwards the harness no longer counts it as running
    /// (start it again with [`Self::restart`]). `give_up` is asked at every poll while the
    /// node still runs: `Some(reason)` ends the wait at once with an error (say, the node
    /// caught up without ever reaching its crash point). An error too when `timeout`
    /// passes; the node is then left running.
    pub fn wait_exit(
        &mut self,
        i: usize,
        timeout: Duration,
        mut give_up: impl FnMut(&TestCluster) -> Option<String>,
    ) -> Result<ExitStatus> {
        let what = format!("node {} to exit", self.id(i));
        let this: &TestCluster = self;
        let status = try_wait_for(timeout, &what, || {
            if let Some(status) = this.node(i)?.exit_status()? {
                return Ok(Ok(status));
            }
            if let Some(reason) = give_up(this) {
                bail!("node {} still runs: {reason}", this.id(i));
            }
            Ok(Err("still running".to_string()))
        })?;
        self.nodes
            .get_mut(i)
            .with_context(|| format!("no node {i}"))?
            .forget_exited();
        Ok(status)
    }

    // ---- waiting ----

    /// Waits up to [`START_TIMEOUT`] until node `i`'s `GET /readyz` answers 200.
    pub fn wait_ready(&self, i: usize) -> Result<()> {
        let base = self.base(i)?;
        try_wait_for(START_TIMEOUT, &format!("node {} ready", self.id(i)), || {
            self.check_alive(i)?;
            Ok(match self.poll.get(&base, "/readyz", &[]) {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(r.to_string()),
                Err(e) => Err(format!("{e:#}")),
            })
        })
    }

    /// Node `i`'s `GET /status` body; an error unless it answers 200 with JSON.
    pub fn status(&self, i: usize) -> Result<Value> {
        let r = self.poll.get(&self.base(i)?, "/status", &[])?;
        if r.status != 200 || r.body.is_null() {
            bail!("GET /status on node {}: {r}", self.id(i));
        }
        Ok(r.body)
    }

    /// The `raft` part of node `i`'s `GET /status`.
    pub fn raft_status(&self, i: usize) -> Result<RaftStatus> {
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
    pub fn leader(&self) -> Result<usize> {
        self.leader_within(LEADER_TIMEOUT)
    }

    /// Like [`Self::leader`] with a chosen timeout.
    pub fn leader_within(&self, timeout: Duration) -> Result<usize> {
        try_wait_for(timeout, "a leader", || {
            Ok(self.find_leader()?.map(|(i, _)| i))
        })
    }

    /// Running nodes other than the leader (waits for a leader like [`Self::leader`]).
    pub fn followers(&self) -> Result<Vec<usize>> {
        let l = self.leader()?;
        Ok(self.running().into_iter().filter(|&i| i != l).collect())
    }

    /// Waits up to [`START_TIMEOUT`] until the leader's voters are exactly `ids` (in
    /// any order) and it has no learners.
    pub fn wait_voters(&self, ids: &[u64]) -> Result<()> {
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
    pub fn wait_all_applied(&self) -> Result<u64> {
        let l = self.leader()?;
        let commit = self.raft_status(l)?.commit_index;
        for i in self.running() {
            self.wait_applied(i, commit)?;
        }
        Ok(commit)
    }

    /// Waits up to [`CATCH_UP_TIMEOUT`] until node `i`'s applied index is at least
    /// `index`.
    pub fn wait_applied(&self, i: usize, index: u64) -> Result<()> {
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
    pub fn wait_rows(&self, i: usize, sql: &str, expected: &Value) -> Result<()> {
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

    // ---- HTTP ----

    /// `GET path?params` on node `i`; see [`HttpClient::url`] for `params`.
    pub fn get(&self, i: usize, path: &str, params: &[(&str, &str)]) -> Result<Reply> {
        self.http.get(&self.base(i)?, path, params)
    }

    /// `POST path?params` on node `i` with a JSON body.
    pub fn post(
        &self,
        i: usize,
        path: &str,
        params: &[(&str, &str)],
        body: &Value,
    ) -> Result<Reply> {
        self.http.post(&self.base(i)?, path, params, body)
    }

    /// `PATCH path?params` on node `i` with a JSON body.
    pub fn patch(
        &self,
        i: usize,
        path: &str,
        params: &[(&str, &str)],
        body: &Value,
    ) -> Result<Reply> {
        self.http.patch(&self.base(i)?, path, params, body)
    }

    /// `POST path?params` on node `i` with `body` sent verbatim as `application/json`.
    pub fn post_raw(
        &self,
        i: usize,
        path: &str,
        params: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply> {
        self.http.post_raw(&self.base(i)?, path, params, body)
    }

    /// `POST path?params` on node `i` with `body` sent as is under `content_type` (e.g.
    /// `text/plain` for one SQL statement, `application/octet-stream` for `/db/load`).
    pub fn post_bytes(
        &self,
        i: usize,
        path: &str,
        params: &[(&str, &str)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Reply> {
        self.http
            .post_bytes(&self.base(i)?, path, params, content_type, body)
    }

    /// `GET path?params` on node `i`, returning the status and the raw body (for binary
    /// answers such as `/db/backup`).
    pub fn get_bytes(
        &self,
        i: usize,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>)> {
        self.http.get_bytes(&self.base(i)?, path, params)
    }

    /// `DELETE path` on node `i`, with a JSON body when given.
    pub fn delete(&self, i: usize, path: &str, body: Option<&Value>) -> Result<Reply> {
        self.http.delete(&self.base(i)?, path, body)
    }

    /// `POST /db/execute` on node `i` with `statements` (a JSON array).
    pub fn execute(&self, i: usize, statements: &Value) -> Result<Reply> {
        self.execute_with(i, &[], statements)
    }

    /// `POST /db/execute?params` on node `i`, e.g. `&[("transaction", ""), ("db", "school")]`.
    pub fn execute_with(
        &self,
        i: usize,
        params: &[(&str, &str)],
        statements: &Value,
    ) -> Result<Reply> {
        self.post(i, "/db/execute", params, statements)
    }

    /// `POST /db/execute` on node `i`; an error unless the reply is 200 with no error
    /// in any result slot. For test setup.
    pub fn execute_ok(&self, i: usize, statements: &Value) -> Result<Reply> {
        let r = self.execute(i, statements)?;
        if !r.is_clean() {
            bail!("execute {statements} on node {}: {r}", self.id(i));
        }
        Ok(r)
    }

    /// `GET /db/query?q=sql&level=...` on node `i`.
    pub fn query(&self, i: usize, sql: &str, level: Level) -> Result<Reply> {
        self.query_with(i, &[("q", sql), ("level", level.as_str())])
    }

    /// `GET /db/query?params` on node `i`.
    pub fn query_with(&self, i: usize, params: &[(&str, &str)]) -> Result<Reply> {
        self.get(i, "/db/query", params)
    }

    /// The rows (`values` of the first result) of `sql` at `level` on node `i`; an
    /// error unless the reply is 200 without a statement error.
    pub fn query_rows(&self, i: usize, sql: &str, level: Level) -> Result<Value> {
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

    // ---- logs ----

    /// The last `lines` lines of node `i`'s stderr (its logs), across all its starts.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        match self.node(i) {
            Ok(n) => n.log_tail(lines),
            Err(e) => format!("{e:#}"),
        }
    }

    /// Prints the tail of every node's log to stderr (the test's captured output).
    pub fn dump_logs(&self) {
        eprintln!("==== cluster directory: {}", self.dir.path().display());
        for n in &self.nodes {
            eprintln!(
                "==== node {} ({}), last {FAILURE_LOG_LINES} lines of {}:\n{}",
                n.id,
                n.http_addr.map(|a| a.to_string()).unwrap_or_default(),
                n.stderr_path().display(),
                n.log_tail(FAILURE_LOG_LINES)
            );
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for n in &mut self.nodes {
            if n.is_expected_running() {
                let _ = n.kill();
            }
        }
    }
}
