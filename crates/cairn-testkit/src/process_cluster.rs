//! `ProcessCluster`: a cluster of real `cairn start` processes on loopback, for what only
//! processes can show: SIGKILL and SIGSTOP, crash points that abort, fault-injecting
//! proxies between nodes, the binary's flags and files. Calls and waits come from
//! [`Cluster`].

use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use cairn_launch::{
    LaunchOptions, LaunchTls, Layout, LocalCluster, NodeProcess, Ports, RaftAddrs, RaftHook,
};

use crate::client::Cluster;
use crate::http::HttpClient;
use crate::proxy::ProxyNet;
use crate::tls::{TestPki, TlsOptions};
use crate::wait::try_wait_for;
use crate::{START_TIMEOUT, STOP_TIMEOUT};

/// How the nodes of a cluster find each other: the launcher's own formations.
pub use cairn_launch::Formation;

/// How long a status poll may take; a node that does not answer /status within this is
/// treated as not answering, and the poll is retried.
const POLL_TIMEOUT: Duration = Duration::from_secs(3);

/// How many log lines per node are printed when a test fails.
const FAILURE_LOG_LINES: usize = 40;

/// What cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The number of nodes, at least 1. Default 3.
    pub nodes: usize,
    /// How the cluster forms. Default [`Formation::Join`].
    pub formation: Formation,
    /// `--snapshot-threshold`: log entries between snapshots. Default: the server's.
    pub snapshot_threshold: Option<u64>,
    /// The cluster secret shared by every node (given to each process as
    /// `CAIRN_CLUSTER_SECRET`, so that it does not show in the process list). Default
    /// `"test-secret"`.
    pub cluster_secret: String,
    /// Put every node's Raft traffic behind a fault-injecting proxy ([`ProxyNet`], see
    /// [`ProcessCluster::proxies`]): the node with ID `k` binds its Raft listener on
    /// `127.0.0.{10+k}` and advertises its proxy's address there. Default `false`: Raft
    /// listens on `127.0.0.1` with no proxy.
    pub raft_proxies: bool,
    /// TLS on every node, from certificates the harness generates in the cluster
    /// directory (`tls/`, see [`TestPki`]); the harness's clients trust its CA. Default:
    /// none.
    pub tls: TlsOptions,
    /// An auth file's JSON (rqlite's format, see `cairn_auth`): every node starts with it
    /// as `--auth`. The harness adds a user of its own with every permission
    /// ([`HARNESS_USER`](crate::HARNESS_USER)), and its requests (polls, waits,
    /// [`Cluster::http`] calls) authenticate as it. Tests of permissions use their own
    /// clients ([`HttpClient::as_user`]). Default `None`: no auth.
    ///
    /// [`Cluster::http`]: crate::Cluster::http
    /// [`HttpClient::as_user`]: crate::HttpClient::as_user
    pub auth: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            formation: Formation::Join,
            snapshot_threshold: None,
            cluster_secret: "test-secret".to_string(),
            raft_proxies: false,
            tls: TlsOptions::default(),
            auth: None,
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
    /// The nodes, launched and supervised by `cairn_launch` (layout `node-<id>/data`,
    /// `stdout.log`, `stderr.log`). Declared first: dropped (every node killed) before the
    /// proxies and the directory.
    nodes: LocalCluster,
    secret: String,
    http: HttpClient,
    poll: HttpClient,
    /// The nodes' Raft proxies, when started with [`ClusterOptions::raft_proxies`]. Dropped
    /// after the nodes are killed.
    proxies: Option<Arc<ProxyNet>>,
    /// The test CA and the nodes' certificates, with [`ClusterOptions::tls`].
    pki: Option<Arc<TestPki>>,
    dir: TempDir,
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
        let mut extra_args = Vec::new();
        if let Some(n) = opts.snapshot_threshold {
            extra_args.extend(["--snapshot-threshold".to_string(), n.to_string()]);
        }
        let proxies = if opts.raft_proxies {
            Some(Arc::new(ProxyNet::new()?))
        } else {
            None
        };
        let pki = if opts.tls.any() {
            Some(Arc::new(TestPki::new(&dir.path().join("tls"), opts.tls)?))
        } else {
            None
        };
        let credentials = match &opts.auth {
            Some(json) => {
                let (json, credentials) = crate::tls::with_harness_user(json)?;
                let path = dir.path().join("auth.json");
                std::fs::write(&path, json).context("writing the auth file")?;
                extra_args.extend(["--auth".to_string(), path.display().to_string()]);
                credentials
            }
            None => reqwest::header::HeaderMap::new(),
        };
        let launch = LaunchOptions {
            nodes: opts.nodes,
            formation: opts.formation,
            ports: Ports::Os,
            secret: opts.cluster_secret.clone(),
            extra_args,
            layout: Layout::Nested,
            start_timeout: START_TIMEOUT,
            stop_on_drop: None,
            raft_addrs: proxies.clone().map(proxy_hook),
            node_args: pki.clone().map(|pki| -> cairn_launch::NodeArgs {
                Box::new(move |id| pki.flags(id).map_err(|e| format!("{e:#}")))
            }),
            https: pki.as_ref().filter(|_| opts.tls.https).map(|p| LaunchTls {
                ca: p.ca_path(),
                identity: p.harness_identity(),
            }),
        };
        let nodes = LocalCluster::new(bin.as_ref(), dir.path(), launch)?;
        let (http, poll) = crate::tls::clients(pki.as_deref(), POLL_TIMEOUT, &credentials)?;
        let mut cluster = ProcessCluster {
            nodes,
            secret: opts.cluster_secret.clone(),
            http,
            poll,
            pki,
            proxies,
            dir,
            _serial: serial,
        };
        if let Err(e) = cluster.nodes.form() {
            cluster.dump_logs();
            return Err(anyhow::Error::new(e).context(format!(
                "forming a {}-node cluster ({:?})",
                opts.nodes, opts.formation
            )));
        }
        Ok(cluster)
    }

    /// Starts a new node with `--join <URL of node via>` (any member may be named),
    /// waits until the leader lists it as a voter and it is ready, and returns its index.
    pub fn add_node(&mut self, via: usize) -> Result<usize> {
        Ok(self.nodes.add_node(via)?)
    }

    fn node(&self, i: usize) -> Result<&NodeProcess> {
        Ok(self.nodes.process(i)?)
    }

    /// Node `i`'s bound HTTP address, as written in its `node.json`.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn http_addr(&self, i: usize) -> std::net::SocketAddr {
        match self.nodes.http_addr(i) {
            Some(a) => a,
            _ => panic!("node {i} has no known HTTP address"),
        }
    }

    /// Node `i`'s bound Raft address, as written in its `node.json`.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn raft_addr(&self, i: usize) -> std::net::SocketAddr {
        match self.nodes.raft_addr(i) {
            Some(a) => a,
            _ => panic!("node {i} has no known Raft address"),
        }
    }

    /// Node `i`'s `--data-dir`.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn data_dir(&self, i: usize) -> &Path {
        match self.node(i) {
            Ok(n) => n.data_dir(),
            Err(e) => panic!("{e:#}"),
        }
    }

    /// The cluster's temporary directory, which holds each node's directory
    /// (`node-<id>/`, with `data/` and the logs). Deleted when the cluster is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The test CA and the nodes' certificate files, when started with
    /// [`ClusterOptions::tls`].
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_deref()
    }

    /// The fault-injecting proxies in front of the nodes' Raft listeners, when the cluster
    /// was started with [`ClusterOptions::raft_proxies`].
    pub fn proxies(&self) -> Option<Arc<ProxyNet>> {
        self.proxies.clone()
    }

    /// The cluster secret every node was started with.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    // ---- lifecycle ----

    /// Kills node `i` with SIGKILL and reaps it. Its data directory is kept.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        Ok(self.nodes.kill(i)?)
    }

    /// Sends SIGTERM to node `i` and waits up to [`STOP_TIMEOUT`] for it to exit;
    /// returns its exit status. When it does not exit in time, it is killed and an error
    /// returned.
    pub fn stop(&mut self, i: usize) -> Result<ExitStatus> {
        self.nodes
            .stop(i, STOP_TIMEOUT)
            .with_context(|| format!("stopping node {}", self.id(i)))
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
        Ok(self.nodes.restart_with_env(i, env)?)
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
        self.nodes.process_mut(i)?.forget_exited();
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
        for i in 0..self.nodes.len() {
            let Ok(n) = self.nodes.process(i) else {
                continue;
            };
            eprintln!(
                "==== {} ({}), last {FAILURE_LOG_LINES} lines of {}:\n{}",
                n.name(),
                self.nodes
                    .http_addr(i)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                n.logs().stderr.display(),
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
        Ok(self.nodes.url(i)?)
    }

    fn http(&self) -> &HttpClient {
        &self.http
    }

    fn poll_client(&self) -> &HttpClient {
        &self.poll
    }

    fn running(&self) -> Vec<usize> {
        self.nodes.running()
    }

    fn check_alive(&self, i: usize) -> Result<()> {
        Ok(self.node(i)?.check_alive()?)
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for i in self.nodes.running() {
            let _ = self.nodes.kill(i);
        }
    }
}

/// The launcher hook that puts node `id`'s Raft listener behind its proxy in `net`: the
/// node binds its own address on `127.0.0.{10+id}` and advertises its proxy's address.
fn proxy_hook(net: Arc<ProxyNet>) -> RaftHook {
    Box::new(move |id, _default| {
        let a = net.add_node(id).map_err(|e| format!("{e:#}"))?;
        Ok(RaftAddrs {
            bind: a.bind.to_string(),
            advertise: Some(a.advertised.to_string()),
        })
    })
}
