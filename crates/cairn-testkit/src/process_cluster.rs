//! `ProcessCluster`: a cluster of real `cairn start` processes on loopback, for what only
//! processes can show: SIGKILL and SIGSTOP, crash points that abort, fault-injecting
//! proxies between nodes, the binary's flags and files. Calls and waits come from
//! [`Cluster`].

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::client::Cluster;
use crate::http::HttpClient;
use crate::node::NodeProcess;
use crate::ports::free_ports;
use crate::proxy::ProxyNet;
use crate::wait::try_wait_for;
use crate::{START_TIMEOUT, STOP_TIMEOUT};

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
    /// [`ProcessCluster::proxies`]): the node with ID `k` binds its Raft listener on
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
    /// Reads the `raft` object of a `GET /status` body, in the shape
    /// [`cairn_node::RaftStatus`] defines. Index fields may be `null` (read as 0); voters
    /// and learners are sorted.
    pub fn from_status(status: &Value) -> Result<Self> {
        let raft = status
            .get("raft")
            .context("no \"raft\" object in /status")?;
        let typed: cairn_node::RaftStatus = serde_json::from_value(raft.clone())
            .with_context(|| format!("reading the raft section of /status: {raft}"))?;
        let (mut voters, mut learners) = (typed.voters, typed.learners);
        voters.sort_unstable();
        learners.sort_unstable();
        Ok(RaftStatus {
            state: typed.state,
            leader_id: typed.leader_id,
            term: typed.term,
            last_log_index: typed.last_log_index.unwrap_or(0),
            commit_index: typed.commit_index.unwrap_or(0),
            applied_index: typed.applied_index.unwrap_or(0),
            snapshot_index: typed.snapshot_index,
            purged_index: typed.purged_index,
            voters,
            learners,
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
pub struct ProcessCluster {
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

impl ProcessCluster {
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
        let mut cluster = ProcessCluster {
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

    fn node(&self, i: usize) -> Result<&NodeProcess> {
        self.nodes
            .get(i)
            .with_context(|| format!("no node {i} (the cluster has {})", self.nodes.len()))
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
        mut give_up: impl FnMut(&ProcessCluster) -> Option<String>,
    ) -> Result<ExitStatus> {
        let what = format!("node {} to exit", self.id(i));
        let this: &ProcessCluster = self;
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

impl Cluster for ProcessCluster {
    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn base(&self, i: usize) -> Result<String> {
        let node = self.node(i)?;
        let addr = node
            .http_addr
            .with_context(|| format!("node {}'s address is not known yet", node.id))?;
        Ok(format!("http://{addr}"))
    }

    fn http(&self) -> &HttpClient {
        &self.http
    }

    fn poll_client(&self) -> &HttpClient {
        &self.poll
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_expected_running())
            .collect()
    }

    fn check_alive(&self, i: usize) -> Result<()> {
        self.node(i)?.check_alive()
    }
}

impl Drop for ProcessCluster {
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
