//! `TestCluster`: N Cairn nodes inside the test process, each started by
//! [`cairn_server::serve`] on real sockets on `127.0.0.1` with ports the OS picks, the way
//! the `cairn start` binary starts one. No process is spawned, so a cluster is up in the
//! time its elections take, clusters of one test binary can run side by side, and a test
//! can reach each node's typed [`Node`] as well as its HTTP API.
//!
//! What it cannot do is what needs a process: SIGKILL, SIGSTOP, aborting at a crash point,
//! the binary's flags. Those tests use [`crate::ProcessCluster`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_node::{Node, RaftSettings};
use cairn_server::{Handle, Listeners, ServeLimits, ServerConfig, PUBLIC_LIMITS, RAFT_LIMITS};
use tempfile::TempDir;
use tokio::runtime::Runtime;

use crate::client::Cluster;
use crate::http::HttpClient;
use crate::process_cluster::{ClusterOptions, Formation};
use crate::tls::TestPki;
use crate::wait::try_wait_for;
use crate::START_TIMEOUT;

/// How long a node may take to stop: its listeners' drain (up to 10 s) plus closing its
/// log (up to 10 s), with room to spare on a loaded machine.
const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a status poll may take (as for process clusters).
const POLL_TIMEOUT: Duration = Duration::from_secs(3);

/// How many in-process clusters of one test binary may run at once, unless
/// `CAIRN_TEST_CLUSTERS` says otherwise: enough to overlap one cluster's elections and
/// waits with another's requests, few enough that a 2-core machine still meets the
/// heartbeat deadlines of all of them.
const DEFAULT_CONCURRENT_CLUSTERS: usize = 2;

/// A counting semaphore over the clusters of this test binary.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

static SLOTS: Slots = Slots {
    used: Mutex::new(0),
    freed: Condvar::new(),
};

/// Holds one of the [`SLOTS`] until dropped.
#[derive(Debug)]
struct SlotGuard;

impl SlotGuard {
    fn acquire() -> SlotGuard {
        let limit = std::env::var("CAIRN_TEST_CLUSTERS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_CONCURRENT_CLUSTERS);
        // A test that panicked while holding the lock left the count consistent.
        let mut used = SLOTS.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used >= limit {
            used = SLOTS
                .freed
                .wait(used)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *used += 1;
        SlotGuard
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut used = SLOTS.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(1);
        SLOTS.freed.notify_one();
    }
}

/// One node of a [`TestCluster`].
struct InProcessNode {
    id: u64,
    data_dir: PathBuf,
    http_addr: SocketAddr,
    raft_addr: SocketAddr,
    /// `None` once the harness stopped the node.
    handle: Option<Handle>,
}

/// A cluster of in-process nodes, each with its own data directory in a fresh temporary
/// directory. Node `i` has Raft node ID `i + 1`. Dropping the cluster stops every node
/// (also when a test panics) and its runtime.
///
/// Up to `CAIRN_TEST_CLUSTERS` (default 2) clusters of one test binary run at once; the
/// constructor waits for a slot.
pub struct TestCluster {
    nodes: Vec<InProcessNode>,
    secret: String,
    raft: RaftSettings,
    limits: (ServeLimits, ServeLimits),
    auth: Option<Arc<cairn_auth::Users>>,
    http: HttpClient,
    poll: HttpClient,
    /// The test CA and the nodes' certificates, with [`ClusterOptions::tls`].
    pki: Option<Arc<TestPki>>,
    // Fields drop in declaration order: the nodes (stopped in `drop`), then the runtime
    // (shut down with a deadline in `drop`), and only then the data directories.
    runtime: Option<Runtime>,
    dir: TempDir,
    _slot: SlotGuard,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("dir", &self.dir.path())
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl TestCluster {
    fn rt(&self) -> &Runtime {
        // `None` only inside `drop`.
        self.runtime
            .as_ref()
            .expect("the cluster's runtime runs until it is dropped")
    }

    /// Starts `nodes` nodes by [`Formation::Join`] and waits until every node is a voter
    /// and ready.
    pub fn start(nodes: usize) -> Result<Self> {
        Self::start_with(ClusterOptions {
            nodes,
            ..ClusterOptions::default()
        })
    }

    /// Starts a cluster as `opts` says and waits until every node is a voter and its
    /// `/readyz` answers 200. `opts.raft_proxies` is refused: proxies need nodes on their
    /// own IPs, which is what [`crate::ProcessCluster`] is for.
    pub fn start_with(opts: ClusterOptions) -> Result<Self> {
        Self::start_with_limits(opts, PUBLIC_LIMITS, RAFT_LIMITS)
    }

    /// Like [`Self::start_with`], with the connection bounds of every node's public
    /// (`http`) and node-to-node (`raft`) listener, e.g. a short header timeout so that a
    /// test of it need not wait for the default 30 s.
    pub fn start_with_limits(
        opts: ClusterOptions,
        http: ServeLimits,
        raft: ServeLimits,
    ) -> Result<Self> {
        if opts.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        if opts.raft_proxies {
            bail!("in-process clusters have no Raft proxies; use ProcessCluster");
        }
        let slot = SlotGuard::acquire();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-test-node")
            .enable_all()
            .build()
            .context("building the nodes' runtime")?;
        let dir = tempfile::Builder::new()
            .prefix("cairn-test-")
            .tempdir()
            .context("creating the cluster directory")?;
        let limits = (http, raft);
        let mut raft = RaftSettings::default();
        if let Some(n) = opts.snapshot_threshold {
            raft.snapshot_threshold = n;
        }
        let pki = if opts.tls.any() {
            Some(Arc::new(TestPki::new(&dir.path().join("tls"), opts.tls)?))
        } else {
            None
        };
        // With `--auth`, the harness's own requests authenticate as a user of its own.
        let (auth, credentials) = match &opts.auth {
            Some(json) => {
                let (json, credentials) = crate::tls::with_harness_user(json)?;
                let users =
                    cairn_auth::Users::from_json(&json).context("the cluster's auth file")?;
                (Some(Arc::new(users)), credentials)
            }
            None => (None, reqwest::header::HeaderMap::new()),
        };
        let (http, poll) = crate::tls::clients(pki.as_deref(), POLL_TIMEOUT, &credentials)?;
        let mut cluster = TestCluster {
            nodes: Vec::new(),
            secret: opts.cluster_secret.clone(),
            raft,
            limits,
            auth,
            http,
            poll,
            pki,
            runtime: Some(runtime),
            dir,
            _slot: slot,
        };
        match opts.formation {
            Formation::Join => {
                cluster.spawn(1, Vec::new(), None)?;
                cluster.wait_ready(0)?;
                for _ in 1..opts.nodes {
                    cluster.add_node(0)?;
                }
            }
            Formation::BootstrapExpect => cluster.form_by_bootstrap_expect(opts.nodes)?,
        }
        cluster.wait_voters(&cluster.ids())?;
        Ok(cluster)
    }

    fn form_by_bootstrap_expect(&mut self, n: usize) -> Result<()> {
        // Bind every listener first, so each node can be told all its peers' URLs.
        let mut bound = Vec::new();
        for _ in 0..n {
            bound.push(self.bind("127.0.0.1:0", "127.0.0.1:0")?);
        }
        let urls: Vec<String> = bound
            .iter()
            .map(|l| {
                l.http
                    .local_addr()
                    .map(|a| format!("{}://{a}", self.scheme()))
            })
            .collect::<std::io::Result<_>>()
            .context("reading a listener's address")?;
        for (k, listeners) in bound.into_iter().enumerate() {
            let id = u64::try_from(k + 1).context("too many nodes")?;
            self.serve(id, listeners, urls.clone(), Some(n))?;
        }
        for k in 0..n {
            self.wait_ready(k)?;
        }
        Ok(())
    }

    fn bind(&self, http: &str, raft: &str) -> Result<Listeners> {
        self.rt()
            .block_on(Listeners::bind(http, raft))
            .context("binding a node's listeners")
    }

    /// Binds fresh listeners and serves node `id` on them, as a new node.
    fn spawn(&mut self, id: u64, join: Vec<String>, expect: Option<usize>) -> Result<()> {
        let listeners = self.bind("127.0.0.1:0", "127.0.0.1:0")?;
        self.serve(id, listeners, join, expect)
    }

    fn config(&self, id: u64, data_dir: &Path, join: Vec<String>) -> Result<ServerConfig> {
        let mut config = ServerConfig::new(id, data_dir);
        config.cluster_secret = Some(self.secret.clone());
        config.join = join;
        config.raft = self.raft.clone();
        (config.http_limits, config.raft_limits) = self.limits;
        config.auth = self.auth.clone();
        if let Some(pki) = &self.pki {
            config.http_tls = pki.http_tls(id)?;
            config.node_tls = pki.node_tls(id)?;
        }
        Ok(config)
    }

    /// `"https"` when the nodes serve HTTPS ([`ClusterOptions::tls`]), else `"http"`.
    pub fn scheme(&self) -> &'static str {
        match &self.pki {
            Some(p) if p.options().https => "https",
            _ => "http",
        }
    }

    /// The test CA and the nodes' certificate files, when started with
    /// [`ClusterOptions::tls`].
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_deref()
    }

    /// The runtime the nodes run on, for a test that serves a node of its own beside them
    /// (`cairn_server::serve`) or makes async calls.
    pub fn runtime(&self) -> &Runtime {
        self.rt()
    }

    /// Serves a node on the cluster's runtime until the harness stops it.
    fn launch(&self, listeners: Listeners, config: ServerConfig) -> Result<Handle> {
        Ok(self.rt().block_on(cairn_server::serve(
            listeners,
            config,
            std::future::pending::<()>(),
        ))?)
    }

    fn serve(
        &mut self,
        id: u64,
        listeners: Listeners,
        join: Vec<String>,
        expect: Option<usize>,
    ) -> Result<()> {
        let data_dir = self.dir.path().join(format!("node-{id}")).join("data");
        let mut config = self.config(id, &data_dir, join)?;
        config.bootstrap_expect = expect;
        let handle = self
            .launch(listeners, config)
            .with_context(|| format!("starting node {id}"))?;
        self.nodes.push(InProcessNode {
            id,
            data_dir,
            http_addr: handle.http_addr(),
            raft_addr: handle.raft_addr(),
            handle: Some(handle),
        });
        Ok(())
    }

    /// Starts a new node that joins through node `via` (any member may be named), waits
    /// until the leader lists it as a voter and it is ready, and returns its index.
    pub fn add_node(&mut self, via: usize) -> Result<usize> {
        let join = self.base(via)?;
        let id = u64::try_from(self.nodes.len() + 1).context("too many nodes")?;
        self.spawn(id, vec![join], None)?;
        let i = self.nodes.len() - 1;
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

    fn member(&self, i: usize) -> Result<&InProcessNode> {
        self.nodes
            .get(i)
            .with_context(|| format!("no node {i} (the cluster has {})", self.nodes.len()))
    }

    /// Node `i`'s typed node: its operations, status and Raft metrics without HTTP; an
    /// error when it is stopped.
    pub fn node(&self, i: usize) -> Result<&Arc<Node>> {
        let n = self.member(i)?;
        n.handle
            .as_ref()
            .map(Handle::node)
            .with_context(|| format!("node {} is stopped", n.id))
    }

    /// Node `i`'s bound HTTP address.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn http_addr(&self, i: usize) -> SocketAddr {
        match self.member(i) {
            Ok(n) => n.http_addr,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Node `i`'s bound Raft address.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn raft_addr(&self, i: usize) -> SocketAddr {
        match self.member(i) {
            Ok(n) => n.raft_addr,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Node `i`'s data directory.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn data_dir(&self, i: usize) -> &Path {
        match self.member(i) {
            Ok(n) => &n.data_dir,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// The cluster's temporary directory (`node-<id>/data` per node). Deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster secret every node shares.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Stops node `i` as SIGTERM stops a process: its listeners stop accepting, requests
    /// in flight finish, Raft shuts down. Waits up to 30 s; its data directory
    /// is kept.
    pub fn stop(&mut self, i: usize) -> Result<()> {
        let id = self.member(i)?.id;
        let handle = self
            .nodes
            .get_mut(i)
            .and_then(|n| n.handle.take())
            .with_context(|| format!("node {id} is already stopped"))?;
        match self
            .rt()
            .block_on(async { tokio::time::timeout(NODE_STOP_TIMEOUT, handle.stop()).await })
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("node {id} stopped"))),
            Err(_) => bail!("node {id} did not stop within {NODE_STOP_TIMEOUT:?}"),
        }
    }

    /// Starts stopped node `i` again on its data directory and its former addresses (its
    /// identity and cluster come from the data directory). Does not wait: use
    /// [`Cluster::wait_ready`].
    pub fn restart(&mut self, i: usize) -> Result<()> {
        let n = self.member(i)?;
        if n.handle.is_some() {
            bail!("node {} is running; stop it first", n.id);
        }
        let (id, http, raft, data_dir) = (n.id, n.http_addr, n.raft_addr, n.data_dir.clone());
        let listeners = self.bind(&http.to_string(), &raft.to_string())?;
        let config = self.config(id, &data_dir, Vec::new())?;
        let handle = self
            .launch(listeners, config)
            .with_context(|| format!("restarting node {id}"))?;
        if let Some(n) = self.nodes.get_mut(i) {
            n.handle = Some(handle);
        }
        Ok(())
    }
}

impl Cluster for TestCluster {
    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn base(&self, i: usize) -> Result<String> {
        Ok(format!("{}://{}", self.scheme(), self.member(i)?.http_addr))
    }

    fn http(&self) -> &HttpClient {
        &self.http
    }

    fn poll_client(&self) -> &HttpClient {
        &self.poll
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].handle.is_some())
            .collect()
    }

    fn check_alive(&self, i: usize) -> Result<()> {
        let n = self.member(i)?;
        match &n.handle {
            Some(h) if h.is_finished() => bail!("node {} stopped on its own", n.id),
            _ => Ok(()),
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let handles: Vec<Handle> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.handle.take())
            .collect();
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        runtime.block_on(async {
            for h in &handles {
                h.shutdown();
            }
            for h in handles {
                // A node that does not stop in time is dropped with the runtime.
                let _ = tokio::time::timeout(NODE_STOP_TIMEOUT, h.wait()).await;
            }
        });
        // Blocking work still running (a retried apply, say) must not hold the test up.
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}
