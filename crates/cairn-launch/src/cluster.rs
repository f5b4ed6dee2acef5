//! `LocalCluster`: N `cairn start` processes on 127.0.0.1, formed by `--join` or by
//! `--bootstrap-expect`, and waited on until every node is ready.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

use crate::process::{stop_all, LogFiles, NodeProcess};
use crate::wait::poll_until;
use crate::{Error, Result};

/// How long one readiness request (`/readyz`, `/status`) may take before it counts as
/// "not answering" and is retried.
pub const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How the nodes of a cluster find each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formation {
    /// Node 1 starts alone (a one-node cluster); each other node then starts with
    /// `--join <node 1's URL>`, one at a time, and is waited on until it is a voter.
    Join,
    /// All nodes start at once, each with `--bootstrap-expect N --join` and the URLs of
    /// all N nodes; their HTTP ports are chosen before the start.
    BootstrapExpect,
}

/// Which ports the nodes listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// Chosen by the OS: port 0 for [`Formation::Join`] (read back from `node.json`);
    /// ports found free a moment before the start for [`Formation::BootstrapExpect`].
    Os,
    /// Node `k` (1-based) serves HTTP on `BASE + 2(k-1)` and Raft on the next port.
    Base(u16),
}

/// Where each node's files go under the cluster's root directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `node<k>/` is the data directory; stdout and stderr go to `node<k>/cairn.log`.
    /// What `cairn demo` and `cairn bench` use.
    Flat,
    /// `node-<k>/data/` is the data directory; `node-<k>/stdout.log` and
    /// `node-<k>/stderr.log`, with a marker line before each start. What the test
    /// harness uses.
    Nested,
}

/// The Raft listener of one node: the address it binds (`--raft-addr`) and, when others
/// must use another one (a proxy in front of it), the address it advertises
/// (`--raft-adv-addr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftAddrs {
    /// `--raft-addr`, `HOST:PORT`.
    pub bind: String,
    /// `--raft-adv-addr`, when it differs from `bind`.
    pub advertise: Option<String>,
}

/// Chooses a node's Raft addresses at each start: called with the node ID and the
/// address the launcher would bind otherwise (`127.0.0.1:0`, a chosen port, or the port
/// of the previous start). `Err` is a reason, in words, and fails the start.
pub type RaftHook = Box<dyn FnMut(u64, &str) -> std::result::Result<RaftAddrs, String> + Send>;

/// Flags for one node's `cairn start` command line, given its node ID, added at each of its
/// starts (e.g. its own `--node-cert`). `Err` is a reason, in words, and fails the start.
pub type NodeArgs = Box<dyn FnMut(u64) -> std::result::Result<Vec<String>, String> + Send>;

/// How the launcher's own client reaches nodes that serve HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTls {
    /// The CA file (PEM) the nodes' HTTP certificates are signed by.
    pub ca: PathBuf,
    /// A client certificate and key (PEM) to present, for nodes started with
    /// `--http-verify-client`.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// What cluster to start.
pub struct LaunchOptions {
    /// The number of nodes, at least 1.
    pub nodes: usize,
    /// How the cluster forms.
    pub formation: Formation,
    /// Which ports the nodes listen on.
    pub ports: Ports,
    /// The cluster secret every node gets, through `CAIRN_CLUSTER_SECRET` (not a flag, so
    /// that it does not show in the process list).
    pub secret: String,
    /// Flags added to every node's `cairn start` command line (e.g.
    /// `--snapshot-threshold 100`).
    pub extra_args: Vec<String>,
    /// Where the nodes' files go.
    pub layout: Layout,
    /// How long each step of a start may take: a node writing `node.json`, answering
    /// `/readyz`, becoming a voter, the cluster listing every voter.
    pub start_timeout: Duration,
    /// On drop: `None` SIGKILLs every node; `Some(grace)` sends SIGTERM to all and waits
    /// up to `grace` for each before SIGKILL.
    pub stop_on_drop: Option<Duration>,
    /// Chooses the Raft addresses of each start; `None` binds the default.
    pub raft_addrs: Option<RaftHook>,
    /// Flags for each node by its ID, after `extra_args` (e.g. TLS files); `None`: none.
    pub node_args: Option<NodeArgs>,
    /// The nodes serve HTTPS (their flags, in `extra_args` or `node_args`, say so): node
    /// URLs are `https://`, and the launcher's readiness and status client trusts this CA.
    /// `None`: plain HTTP.
    pub https: Option<LaunchTls>,
}

impl LaunchOptions {
    /// `nodes` nodes by `formation` on OS-chosen ports, [`Layout::Flat`], a 60 s start
    /// timeout, killed on drop, no extra flags.
    pub fn new(nodes: usize, formation: Formation, secret: impl Into<String>) -> Self {
        LaunchOptions {
            nodes,
            formation,
            ports: Ports::Os,
            secret: secret.into(),
            extra_args: Vec::new(),
            layout: Layout::Flat,
            start_timeout: Duration::from_secs(60),
            stop_on_drop: None,
            raft_addrs: None,
            node_args: None,
            https: None,
        }
    }
}

/// One node of a [`LocalCluster`].
#[derive(Debug)]
struct Node {
    id: u64,
    process: NodeProcess,
    http: Option<SocketAddr>,
    raft: Option<SocketAddr>,
}

/// A local cluster of `cairn start` processes. Node `i` (0-based, in start order) has
/// node ID `i + 1`. Dropping it stops every node as [`LaunchOptions::stop_on_drop`] says.
///
/// Methods that wait make blocking HTTP requests: call them from a thread that may
/// block (in async code, inside `tokio::task::spawn_blocking`).
pub struct LocalCluster {
    bin: PathBuf,
    root: PathBuf,
    nodes: Vec<Node>,
    opts: LaunchOptions,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("bin", &self.bin)
            .field("root", &self.root)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl LocalCluster {
    /// Starts the cluster [`LocalCluster::new`] describes and waits until it is formed
    /// ([`LocalCluster::form`]). On an error every started node is stopped.
    ///
    /// # Errors
    /// Those of [`LocalCluster::form`].
    pub fn launch(bin: &Path, root: &Path, opts: LaunchOptions) -> Result<LocalCluster> {
        let mut c = LocalCluster::new(bin, root, opts)?;
        c.form()?;
        Ok(c)
    }

    /// A cluster of the binary `bin` with its nodes' directories under `root`, not
    /// started yet.
    ///
    /// # Errors
    /// [`Error::Invalid`] for zero nodes or base ports that leave no room for them.
    pub fn new(bin: &Path, root: &Path, opts: LaunchOptions) -> Result<LocalCluster> {
        if opts.nodes == 0 {
            return Err(Error::Invalid("a cluster needs at least one node".into()));
        }
        if let Ports::Base(base) = opts.ports {
            let last = u64::from(base) + 2 * u64::try_from(opts.nodes).unwrap_or(u64::MAX / 4);
            if last > 65536 {
                return Err(Error::Invalid(format!(
                    "base port {base} leaves no room for {} nodes",
                    opts.nodes
                )));
            }
        }
        Ok(LocalCluster {
            bin: bin.to_path_buf(),
            root: root.to_path_buf(),
            nodes: Vec::new(),
            opts,
        })
    }

    /// Starts the nodes as [`LaunchOptions::formation`] says and waits, each step up to
    /// [`LaunchOptions::start_timeout`], until every node wrote `node.json`, answers
    /// `/readyz` with 200, and lists a leader and all the nodes as voters in `/status`.
    /// Returns those `/status` bodies, one per node.
    ///
    /// # Errors
    /// [`Error::Exited`] when a node exits, [`Error::Timeout`] when a step takes too long,
    /// [`Error::Io`] when a node cannot be started.
    pub fn form(&mut self) -> Result<Vec<Value>> {
        let n = self.opts.nodes;
        let timeout = self.opts.start_timeout;
        match self.opts.formation {
            Formation::Join => {
                let (http, raft) = self.ports_of(1, None)?;
                let i = self.start_node(1, &http, &raft, Vec::new())?;
                self.read_identity(i)?;
                self.wait_ready(i, timeout)?;
                for _ in 1..n {
                    self.add_node(0)?;
                }
            }
            Formation::BootstrapExpect => {
                let free = match self.opts.ports {
                    Ports::Os => Some(free_ports(2 * n)?),
                    Ports::Base(_) => None,
                };
                let addrs = (1..=n)
                    .map(|k| self.ports_of(k, free.as_deref()))
                    .collect::<Result<Vec<_>>>()?;
                let scheme = self.scheme();
                let join: Vec<String> = addrs
                    .iter()
                    .map(|(h, _)| format!("{scheme}://{h}"))
                    .collect();
                let join = join.join(",");
                for (k, (http, raft)) in addrs.iter().enumerate() {
                    let extra = vec![
                        "--bootstrap-expect".to_string(),
                        n.to_string(),
                        "--join".to_string(),
                        join.clone(),
                    ];
                    self.start_node(as_id(k + 1), http, raft, extra)?;
                }
                for (k, (want, _)) in addrs.iter().enumerate() {
                    self.read_identity(k)?;
                    let got = self.nodes[k]
                        .http
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    if &got != want {
                        return Err(Error::Invalid(format!(
                            "node {} wrote http_addr {got} to node.json, started with {want}",
                            k + 1
                        )));
                    }
                }
                for k in 0..n {
                    self.wait_ready(k, timeout)?;
                }
            }
        }
        self.wait_formed(timeout)
    }

    /// The HTTP and default Raft addresses of node `k` (1-based).
    fn ports_of(&self, k: usize, free: Option<&[u16]>) -> Result<(String, String)> {
        let pair = |h: u64, r: u64| (format!("127.0.0.1:{h}"), format!("127.0.0.1:{r}"));
        let k0 = u64::try_from(k - 1).map_err(|_| Error::Invalid("too many nodes".into()))?;
        Ok(match (self.opts.ports, free) {
            (Ports::Base(base), _) => {
                let h = u64::from(base) + 2 * k0;
                pair(h, h + 1)
            }
            (Ports::Os, Some(free)) => {
                let at = |j: usize| free.get(j).copied().map(u64::from);
                match (at(2 * (k - 1)), at(2 * (k - 1) + 1)) {
                    (Some(h), Some(r)) => pair(h, r),
                    _ => return Err(Error::Invalid(format!("no free ports for node {k}"))),
                }
            }
            (Ports::Os, None) => pair(0, 0),
        })
    }

    /// The data directory and log files of node `id` under the root.
    fn files_of(&self, id: u64) -> (PathBuf, LogFiles) {
        match self.opts.layout {
            Layout::Flat => {
                let dir = self.root.join(format!("node{id}"));
                let log = dir.join("cairn.log");
                (dir, LogFiles::combined(log))
            }
            Layout::Nested => {
                let dir = self.root.join(format!("node-{id}"));
                (
                    dir.join("data"),
                    LogFiles {
                        stdout: dir.join("stdout.log"),
                        stderr: dir.join("stderr.log"),
                        mark_starts: true,
                    },
                )
            }
        }
    }

    /// The `cairn start` command line of node `id` and runs it; `extra` goes after the
    /// common flags. Returns the node's index.
    fn start_node(&mut self, id: u64, http: &str, raft: &str, extra: Vec<String>) -> Result<usize> {
        let (data_dir, logs) = self.files_of(id);
        let process = NodeProcess::new(format!("node {id}"), data_dir, logs)?;
        self.nodes.push(Node {
            id,
            process,
            http: None,
            raft: None,
        });
        let i = self.nodes.len() - 1;
        self.spawn(i, http, raft, extra, &[])?;
        Ok(i)
    }

    fn spawn(
        &mut self,
        i: usize,
        http: &str,
        raft: &str,
        extra: Vec<String>,
        env: &[(&str, &str)],
    ) -> Result<()> {
        let id = self.node(i)?.id;
        let raft = match self.opts.raft_addrs.as_mut() {
            Some(hook) => hook(id, raft)
                .map_err(|e| Error::Invalid(format!("choosing node {id}'s Raft address: {e}")))?,
            None => RaftAddrs {
                bind: raft.to_string(),
                advertise: None,
            },
        };
        let data_dir = self.node(i)?.process.data_dir().display().to_string();
        let mut args: Vec<String> = vec![
            "start".into(),
            "--node-id".into(),
            id.to_string(),
            "--http-addr".into(),
            http.into(),
            "--raft-addr".into(),
            raft.bind,
            "--data-dir".into(),
            data_dir,
        ];
        args.extend(self.opts.extra_args.iter().cloned());
        if let Some(node_args) = self.opts.node_args.as_mut() {
            args.extend(
                node_args(id)
                    .map_err(|e| Error::Invalid(format!("choosing node {id}'s flags: {e}")))?,
            );
        }
        args.extend(extra);
        if let Some(adv) = raft.advertise {
            args.extend(["--raft-adv-addr".to_string(), adv]);
        }
        let secret = self.opts.secret.clone();
        let mut all_env = vec![("CAIRN_CLUSTER_SECRET", secret.as_str())];
        all_env.extend_from_slice(env);
        let bin = self.bin.clone();
        self.node_mut(i)?.process.spawn(&bin, &args, &all_env)
    }

    /// Waits for node `i`'s `node.json` and records its addresses.
    fn read_identity(&mut self, i: usize) -> Result<()> {
        let timeout = self.opts.start_timeout;
        let node = self.node_mut(i)?;
        let ident = node.process.read_identity(Some(node.id), timeout)?;
        let (http, raft) = ident.bound_addrs().map_err(Error::Invalid)?;
        node.http = Some(http);
        node.raft = Some(raft);
        Ok(())
    }

    /// Starts a new node with `--join <URL of node via>`, waits until a leader lists it
    /// as a voter and it answers `/readyz`, and returns its index.
    ///
    /// # Errors
    /// [`Error::Invalid`] when node `via` has no known address; errors of [`Self::form`].
    pub fn add_node(&mut self, via: usize) -> Result<usize> {
        let join = self.url(via)?;
        let id = as_id(self.nodes.len() + 1);
        let k = self.nodes.len() + 1;
        let (http, raft) = match self.opts.ports {
            Ports::Base(_) => self.ports_of(k, None)?,
            Ports::Os => ("127.0.0.1:0".to_string(), "127.0.0.1:0".to_string()),
        };
        let i = self.start_node(id, &http, &raft, vec!["--join".to_string(), join])?;
        self.read_identity(i)?;
        let timeout = self.opts.start_timeout;
        let client = self.client()?;
        poll_until(timeout, &format!("node {id} to be a voter"), || {
            self.node(i)?.process.check_alive()?;
            let mut seen = Vec::new();
            for j in self.running() {
                match self.status_with(&client, j) {
                    Ok(s) if s["raft"]["state"] == "Leader" => {
                        let voters = ids(&s["raft"]["voters"]);
                        if voters.contains(&id) {
                            return Ok(Ok(()));
                        }
                        seen.push(format!(
                            "leader {} lists voters {voters:?}",
                            self.nodes[j].id
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => seen.push(e.to_string()),
                }
            }
            Ok(Err(if seen.is_empty() {
                "no leader".to_string()
            } else {
                seen.join("; ")
            }))
        })?;
        self.wait_ready(i, timeout)?;
        Ok(i)
    }

    /// Waits up to `timeout` until node `i` answers `GET /readyz` with 200.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Exited`] when the node exits meanwhile.
    pub fn wait_ready(&self, i: usize, timeout: Duration) -> Result<()> {
        let client = self.client()?;
        let node = self.node(i)?;
        let url = format!("{}/readyz", self.url(i)?);
        poll_until(timeout, &format!("node {} ready", node.id), || {
            node.process.check_alive()?;
            Ok(match client.get(&url).send() {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            })
        })
    }

    /// Waits up to `timeout` until every node the cluster expects to run answers
    /// `/status` naming a leader and exactly the cluster's node IDs as voters; returns
    /// those `/status` bodies, one per node in index order (`Null` for a node not
    /// running).
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Exited`] when a node exits meanwhile.
    pub fn wait_formed(&self, timeout: Duration) -> Result<Vec<Value>> {
        let client = self.client()?;
        let want: BTreeSet<u64> = self.nodes.iter().map(|n| n.id).collect();
        poll_until(timeout, &format!("voters {want:?} on every node"), || {
            let mut bodies = Vec::with_capacity(self.nodes.len());
            for (j, n) in self.nodes.iter().enumerate() {
                if !n.process.is_expected_running() {
                    bodies.push(Value::Null);
                    continue;
                }
                n.process.check_alive()?;
                let s = match self.status_with(&client, j) {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e.to_string())),
                };
                let voters: BTreeSet<u64> = ids(&s["raft"]["voters"]).into_iter().collect();
                if !s["raft"]["leader_id"].is_u64() || voters != want {
                    return Ok(Err(format!(
                        "node {}: leader {}, voters {voters:?}",
                        n.id, s["raft"]["leader_id"]
                    )));
                }
                bodies.push(s);
            }
            Ok(Ok(bodies))
        })
    }

    /// Node `i`'s `GET /status` body.
    ///
    /// # Errors
    /// [`Error::Invalid`] when it does not answer 200 with JSON within
    /// [`POLL_REQUEST_TIMEOUT`].
    pub fn status(&self, i: usize) -> Result<Value> {
        self.status_with(&self.client()?, i)
    }

    fn status_with(&self, client: &reqwest::blocking::Client, i: usize) -> Result<Value> {
        let url = format!("{}/status", self.url(i)?);
        let id = self.node(i)?.id;
        let fail = |e: String| Error::Invalid(format!("GET /status on node {id}: {e}"));
        let r = client.get(&url).send().map_err(|e| fail(e.to_string()))?;
        if !r.status().is_success() {
            return Err(fail(format!("HTTP {}", r.status())));
        }
        r.json::<Value>().map_err(|e| fail(e.to_string()))
    }

    /// Starts node `i` again on its data directory with the same node ID and addresses
    /// (the Raft address through [`LaunchOptions::raft_addrs`] again), without `--join`
    /// or `--bootstrap-expect`, with `env` added for this start only. Does not wait.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the node never wrote its addresses or still runs;
    /// [`Error::Io`] when it cannot be started.
    pub fn restart_with_env(&mut self, i: usize, env: &[(&str, &str)]) -> Result<()> {
        let node = self.node(i)?;
        let (Some(http), Some(raft)) = (node.http, node.raft) else {
            return Err(Error::Invalid(format!(
                "node {} was never started",
                node.id
            )));
        };
        self.spawn(i, &http.to_string(), &raft.to_string(), Vec::new(), env)
    }

    /// SIGKILLs node `i` and reaps it; its data directory is kept.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when it does not run.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        self.node_mut(i)?.process.kill()
    }

    /// SIGTERM to node `i`, then up to `timeout` for it to exit (SIGKILL and
    /// [`Error::Timeout`] when it does not); returns its exit status.
    ///
    /// # Errors
    /// As [`NodeProcess::stop`].
    pub fn stop(&mut self, i: usize, timeout: Duration) -> Result<ExitStatus> {
        self.node_mut(i)?.process.stop(timeout)
    }

    /// SIGTERM to every node at once, then up to `timeout` for each to exit before it is
    /// SIGKILLed.
    pub fn stop_all(&mut self, timeout: Duration) {
        stop_all(self.nodes.iter_mut().map(|n| &mut n.process), timeout);
    }

    /// The number of nodes started so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was started yet.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Indexes of the nodes expected to run (started, not stopped or killed since).
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].process.is_expected_running())
            .collect()
    }

    fn node(&self, i: usize) -> Result<&Node> {
        self.nodes.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "no node {i} (the cluster has {})",
                self.nodes.len()
            ))
        })
    }

    fn node_mut(&mut self, i: usize) -> Result<&mut Node> {
        let len = self.nodes.len();
        self.nodes
            .get_mut(i)
            .ok_or_else(|| Error::Invalid(format!("no node {i} (the cluster has {len})")))
    }

    /// Node `i`'s process.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no node `i`.
    pub fn process(&self, i: usize) -> Result<&NodeProcess> {
        Ok(&self.node(i)?.process)
    }

    /// Node `i`'s process, to stop, signal or forget it.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no node `i`.
    pub fn process_mut(&mut self, i: usize) -> Result<&mut NodeProcess> {
        Ok(&mut self.node_mut(i)?.process)
    }

    /// Node `i`'s node ID (`i + 1`), `None` when there is no node `i`.
    pub fn id(&self, i: usize) -> Option<u64> {
        self.nodes.get(i).map(|n| n.id)
    }

    /// Node `i`'s bound HTTP address, once read from its `node.json`.
    pub fn http_addr(&self, i: usize) -> Option<SocketAddr> {
        self.nodes.get(i).and_then(|n| n.http)
    }

    /// Node `i`'s bound Raft address, once read from its `node.json`.
    pub fn raft_addr(&self, i: usize) -> Option<SocketAddr> {
        self.nodes.get(i).and_then(|n| n.raft)
    }

    /// Node `i`'s base URL, `http://127.0.0.1:PORT` (`https://` with
    /// [`LaunchOptions::https`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no node `i` or its address is not known yet.
    pub fn url(&self, i: usize) -> Result<String> {
        let node = self.node(i)?;
        match node.http {
            Some(a) => Ok(format!("{}://{a}", self.scheme())),
            None => Err(Error::Invalid(format!(
                "node {}'s address is not known yet",
                node.id
            ))),
        }
    }

    /// Every node's base URL, in index order (nodes whose address is not known yet are
    /// left out).
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len())
            .filter_map(|i| self.url(i).ok())
            .collect()
    }

    /// The root directory holding the nodes' directories.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `"https"` with [`LaunchOptions::https`], else `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.opts.https.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The client of readiness polls, trusting [`LaunchOptions::https`]'s CA if given.
    /// It sends the cluster secret, which nodes started with `--auth` accept for their
    /// status and readiness routes.
    fn client(&self) -> Result<reqwest::blocking::Client> {
        client(self.opts.https.as_ref(), &self.opts.secret)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Some(grace) = self.opts.stop_on_drop {
            self.stop_all(grace);
        }
        // Whatever still runs is SIGKILLed by each NodeProcess's own Drop.
    }
}

/// The header peers carry the cluster secret in (`cairn_raft::SECRET_HEADER`; the
/// launcher does not link the node's crates).
const SECRET_HEADER: &str = "x-cairn-secret";

/// Node ID of the `k`-th node (1-based); saturates (a cluster is never that large).
fn as_id(k: usize) -> u64 {
    u64::try_from(k).unwrap_or(u64::MAX)
}

/// The numbers in a JSON array of node IDs; other elements are skipped.
fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The HTTP client of readiness polls: no proxy (loopback), [`POLL_REQUEST_TIMEOUT`],
/// trusting `tls`'s CA (and presenting its identity) when the nodes serve HTTPS.
fn client(tls: Option<&LaunchTls>, secret: &str) -> Result<reqwest::blocking::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(mut v) = reqwest::header::HeaderValue::from_str(secret) {
        v.set_sensitive(true);
        headers.insert(SECRET_HEADER, v);
    }
    let mut builder = reqwest::blocking::Client::builder()
        .default_headers(headers)
        // The secret must not follow a redirect to another host.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(POLL_REQUEST_TIMEOUT);
    if let Some(tls) = tls {
        let config = cairn_tls::ClientTls::new(vec![tls.ca.clone()], tls.identity.clone())
            .and_then(|c| c.config())?;
        builder = builder.use_preconfigured_tls(config);
    }
    Ok(builder.build()?)
}

/// `count` distinct TCP ports on 127.0.0.1 that were free a moment ago: all bound at
/// once, read, released. Another process may take one before a node binds it; the
/// window is short.
///
/// # Errors
/// [`Error::Io`] when 127.0.0.1 cannot be bound.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| Error::io("binding 127.0.0.1:0", e))
        })
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| Error::io("reading a bound address", e))
        })
        .collect()
}
