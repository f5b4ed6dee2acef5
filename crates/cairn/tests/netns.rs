//! Deployment beyond one machine, on one machine: three `cairn start` processes, each in a
//! network namespace of its own, as three hosts would be. The test creates the namespaces,
//! a bridge in a fourth one and a veth pair from each into it, with private addresses
//! (`10.213.X.0/24`, a range nothing on the machine uses) that exist only there. Each node
//! runs the host file of `deploy/hosts` (its addresses moved into that range) and binds its
//! namespace's address: not loopback, not 0.0.0.0. The test process reaches the nodes through
//! a veth of its own into the bridge (`10.213.X.254`), as a client on that network would.
//!
//! What it shows: the documented files form a 3-node cluster over a real (virtual) network;
//! writes through every node (followers forward to the leader) are read back from every
//! node; after the leader is SIGKILLed the survivors elect a new one and take writes, no
//! acknowledged write is lost, and the killed node rejoins on its data directory.
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2's `ip`, as CI has. Where network
//! namespaces cannot be created (not root, or EPERM in a container) it prints `skipped: ...`
//! and returns. Everything it creates (processes, namespaces, veths, the bridge) is removed
//! when the test ends, also on panic; namespaces left by a run that was killed are removed
//! by the next run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_launch::{LogFiles, NodeProcess};
use cairn_testkit::{
    try_wait_for, wait_for, HttpClient, RaftStatus, Reply, LEADER_TIMEOUT, START_TIMEOUT,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// The prefix of every namespace this test creates: `cairn-nt<pid>-br`, `cairn-nt<pid>-n1`...
const NS_PREFIX: &str = "cairn-nt";

/// The first three octets of the addresses in `deploy/hosts/*.toml` (node k is `.1k`).
const EXAMPLE_NET: &str = "10.0.0.";

/// How many nodes, as in `deploy/hosts`.
const NODES: u64 = 3;

/// How long one status poll may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(3);

/// How many log lines per node are printed when the test fails.
const FAILURE_LOG_LINES: usize = 40;

const CREATE_T: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, via INTEGER NOT NULL)";

/// Runs `ip args...`; its stderr is the error when it fails.
fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {} (is iproute2 installed?)", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether this process runs with effective uid 0 (from `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Removes the namespaces of earlier runs of this test whose process is gone (a run that
/// was SIGKILLed could not clean up), and stops the nodes still running in them.
fn remove_stale_namespaces() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(owner) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        if let Ok(pids) = ip(&["netns", "pids", name]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        match ip(&["netns", "del", name]) {
            Ok(_) => eprintln!("removed {name}, left by an earlier run (pid {owner})"),
            Err(e) => eprintln!("could not remove {name}, left by an earlier run: {e:#}"),
        }
    }
}

/// The test's network: a bridge namespace, one namespace per node with a veth into the
/// bridge, and a veth from the test's own namespace into it. Dropping it deletes all of it.
#[derive(Debug)]
struct Net {
    /// The first three octets of the test's subnet with a trailing dot, e.g. `10.213.7.`.
    subnet: String,
    /// The node namespaces, node k at index k - 1.
    nodes: Vec<String>,
    bridge: String,
    /// The veth in the test's own namespace.
    root_veth: String,
}

impl Net {
    /// Creates the namespaces, the bridge and the veths, or returns `Ok(None)` when this
    /// process may not create network namespaces at all (the one case the test skips).
    /// Whatever was created before an error is deleted again.
    fn create_or_skip() -> Result<Option<Net>> {
        if !is_root() {
            eprintln!(
                "skipped: creating network namespaces needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); this process is not root"
            );
            return Ok(None);
        }
        remove_stale_namespaces();
        let tag = format!("{NS_PREFIX}{}", std::process::id());
        let bridge = format!("{tag}-br");
        if let Err(e) = ip(&["netns", "add", &bridge]) {
            let text = format!("{e:#}");
            if text.contains("Operation not permitted") || text.contains("Permission denied") {
                eprintln!("skipped: network namespaces cannot be created here: {text}");
                return Ok(None);
            }
            return Err(e);
        }
        let mut net = Net {
            subnet: String::new(),
            nodes: Vec::new(),
            bridge,
            // Interface names hold at most 15 bytes: "cnt" and a pid of at most 7 digits.
            root_veth: format!("cnt{}", std::process::id()),
        };
        net.subnet = free_subnet()?;
        net.build(&tag)?;
        Ok(Some(net))
    }

    fn build(&mut self, tag: &str) -> Result<()> {
        let br = self.bridge.clone();
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for k in 1..=NODES {
            let ns = format!("{tag}-n{k}");
            ip(&["netns", "add", &ns])?;
            self.nodes.push(ns.clone());
            let port = format!("n{k}");
            // Both ends are created inside their namespaces: nothing appears in ours.
            ip(&[
                "link", "add", "cairn0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &br,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let addr = format!("{}/24", self.node_ip(k));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "cairn0"])?;
            ip(&["-n", &ns, "link", "set", "cairn0", "up"])?;
        }
        let root = self.root_veth.clone();
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "client", "netns", &br,
        ])?;
        ip(&["-n", &br, "link", "set", "client", "master", "br0"])?;
        ip(&["-n", &br, "link", "set", "client", "up"])?;
        let addr = format!("{}254/24", self.subnet);
        ip(&["addr", "add", &addr, "dev", &root])?;
        ip(&["link", "set", &root, "up"])?;
        Ok(())
    }

    /// Node k's address, `10.213.X.1k` (as the example's `10.0.0.1k`).
    fn node_ip(&self, k: u64) -> String {
        format!("{}{}", self.subnet, 10 + k)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes both; namespaces go once no process is in them.
        if let Err(e) = ip(&["link", "del", &self.root_veth]) {
            eprintln!("cleanup: {e:#}");
        }
        for ns in self.nodes.iter().chain([&self.bridge]) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e:#}");
            }
        }
    }
}

/// A `10.213.X.` prefix that no address or route of this namespace uses, starting from one
/// picked by the pid so that concurrent runs on one machine are unlikely to meet.
fn free_subnet() -> Result<String> {
    let used = format!(
        "{}\n{}",
        ip(&["-4", "-o", "addr", "show"])?,
        ip(&["-4", "route", "show", "table", "all"])?
    );
    let start = std::process::id() % 254;
    for i in 0..254 {
        let x = (start + i) % 254 + 1;
        let subnet = format!("10.213.{x}.");
        if !used.contains(&subnet) {
            return Ok(subnet);
        }
    }
    bail!("every 10.213.X.0/24 is in use on this machine")
}

/// The index of node k (1-based) in the lists of nodes.
fn index(k: u64) -> usize {
    usize::try_from(k - 1).expect("a node number fits usize")
}

/// The three nodes, their files and the network. Fields drop in order: the processes are
/// killed before the namespaces are deleted, and the directory goes last.
struct Deployment {
    nodes: Vec<NodeProcess>,
    http: HttpClient,
    poll: HttpClient,
    net: Net,
    _dir: tempfile::TempDir,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (i, node) in self.nodes.iter().enumerate() {
                let log = std::fs::read_to_string(&node.logs().stderr).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(FAILURE_LOG_LINES)..].join("\n");
                eprintln!(
                    "---- node {} ({}) log tail ----\n{tail}",
                    i + 1,
                    node.name()
                );
            }
        }
        for node in &mut self.nodes {
            let _ = node.kill();
        }
    }
}

impl Deployment {
    /// Starts node k with `deploy/hosts/node<k>.toml`, its addresses moved into the test's
    /// subnet, in namespace k; the data directory and the secret file are the test's.
    fn start(net: Net) -> Result<Deployment> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-netns-")
            .tempdir()
            .context("creating the test directory")?;
        let secret = dir.path().join("cluster-secret");
        std::fs::write(&secret, "netns-test-secret\n").context("writing the secret")?;
        let hosts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/hosts");
        let mut nodes = Vec::new();
        for k in 1..=NODES {
            let example = hosts.join(format!("node{k}.toml"));
            let text = std::fs::read_to_string(&example)
                .with_context(|| format!("reading {}", example.display()))?;
            if !text.contains(&format!("http_addr = \"{EXAMPLE_NET}1{k}:4001\"")) {
                bail!("{} does not bind {EXAMPLE_NET}1{k}", example.display());
            }
            let config = dir.path().join(format!("node{k}.toml"));
            std::fs::write(&config, text.replace(EXAMPLE_NET, &net.subnet))
                .context("writing the config")?;
            let data = dir.path().join(format!("node{k}/data"));
            let log = dir.path().join(format!("node{k}/cairn.log"));
            let mut node =
                NodeProcess::new(format!("node {k}"), data.clone(), LogFiles::combined(log))?;
            let ns = &net.nodes[index(k)];
            let args: Vec<String> = ["netns", "exec", ns, BIN, "start", "--config"]
                .iter()
                .map(|s| s.to_string())
                .chain([
                    config.display().to_string(),
                    // Flags win over the file: the host paths become the test's.
                    "--data-dir".into(),
                    data.display().to_string(),
                    "--cluster-secret-file".into(),
                    secret.display().to_string(),
                ])
                .collect();
            // `ip netns exec` execs the command in place: the child is the node itself, so
            // killing it kills the node.
            node.spawn(Path::new("ip"), &args, &[])?;
            nodes.push(node);
        }
        Ok(Deployment {
            nodes,
            http: HttpClient::new()?,
            poll: HttpClient::with_timeout(POLL_TIMEOUT)?,
            net,
            _dir: dir,
        })
    }

    fn node(&self, k: u64) -> &NodeProcess {
        &self.nodes[index(k)]
    }

    fn node_mut(&mut self, k: u64) -> &mut NodeProcess {
        &mut self.nodes[index(k)]
    }

    fn url(&self, k: u64) -> String {
        format!("http://{}:4001", self.net.node_ip(k))
    }

    fn status(&self, k: u64) -> Result<RaftStatus> {
        let r = self.poll.get(&self.url(k), "/status", &[])?;
        if r.status != 200 {
            bail!("node {k}: {r}");
        }
        RaftStatus::from_status(&r.body)
    }

    fn execute(&self, k: u64, body: &Value) -> Result<Reply> {
        self.http.post(&self.url(k), "/db/execute", &[], body)
    }

    /// The ids in `t`, read on node k at `level`.
    fn ids(&self, k: u64, level: &str) -> Result<Vec<u64>> {
        let r = self.http.get(
            &self.url(k),
            "/db/query",
            &[("q", "SELECT id FROM t ORDER BY id"), ("level", level)],
        )?;
        if !r.is_clean() {
            bail!("node {k}: {r}");
        }
        let rows = r.rows();
        rows.as_array()
            .map(|rows| rows.iter().filter_map(|row| row[0].as_u64()).collect())
            .with_context(|| format!("rows of {r}"))
    }

    /// Waits until every node is ready, knows all three voters and a leader.
    fn wait_formed(&self) -> Result<()> {
        for k in 1..=NODES {
            try_wait_for(
                START_TIMEOUT,
                &format!("node {k} to join a 3-node cluster"),
                || {
                    self.node(k).check_alive()?;
                    Ok(match self.status(k) {
                        Ok(s) if s.voters == [1, 2, 3] && s.leader_id.is_some() => Ok(()),
                        Ok(s) => Err(format!("{s:?}")),
                        Err(e) => Err(format!("{e:#}")),
                    })
                },
            )?;
        }
        Ok(())
    }

    /// The node among `among` that says it leads, with a term above `above`.
    fn wait_leader(&self, among: &[u64], above: u64) -> Result<(u64, u64)> {
        wait_for(LEADER_TIMEOUT, "a leader", || {
            let mut seen = Vec::new();
            for &k in among {
                match self.status(k) {
                    Ok(s) if s.state == "Leader" && s.term > above => return Ok((k, s.term)),
                    Ok(s) => seen.push(format!("node {k}: {} term {}", s.state, s.term)),
                    Err(e) => seen.push(format!("node {k}: {e:#}")),
                }
            }
            Err(seen.join("; "))
        })
    }

    /// Inserts row `id` through node `via`, retrying until it is acknowledged (an election
    /// may be under way). `INSERT OR IGNORE` keeps a retry of a write whose answer was lost
    /// from failing.
    fn insert(&self, via: u64, id: u64) -> Result<()> {
        let stmt = json!([["INSERT OR IGNORE INTO t(id, via) VALUES(?, ?)", id, via]]);
        wait_for(
            LEADER_TIMEOUT,
            &format!("row {id} through node {via}"),
            || match self.execute(via, &stmt) {
                Ok(r) if r.is_clean() => Ok(()),
                Ok(r) => Err(r.to_string()),
                Err(e) => Err(format!("{e:#}")),
            },
        )
    }

    /// Waits until node k's own replica (`level=none`) holds exactly `want`.
    fn wait_replica(&self, k: u64, want: &[u64]) -> Result<()> {
        wait_for(
            START_TIMEOUT,
            &format!("node {k}'s replica to hold every row"),
            || match self.ids(k, "none") {
                Ok(ids) if ids == want => Ok(()),
                Ok(ids) => Err(format!("{} of {} rows: {ids:?}", ids.len(), want.len())),
                Err(e) => Err(format!("{e:#}")),
            },
        )
    }
}

#[test]
fn three_nodes_in_three_network_namespaces_survive_a_leader_kill() {
    let started = Instant::now();
    let Some(net) = Net::create_or_skip().expect("creating the test's network") else {
        return;
    };
    let subnet = net.subnet.clone();
    let mut d = Deployment::start(net).expect("starting three nodes");
    d.wait_formed().expect("the three nodes form one cluster");

    // Each node bound and advertises its namespace's address, and reaches the others there.
    for k in 1..=NODES {
        let id = d
            .node(k)
            .read_identity(Some(k), START_TIMEOUT)
            .expect("node.json");
        assert_eq!(id.http_addr, format!("{subnet}{}:4001", 10 + k));
        assert_eq!(id.raft_addr, format!("{subnet}{}:4002", 10 + k));
    }
    let nodes = d.http.get(&d.url(1), "/nodes", &[]).expect("/nodes");
    for k in 1..=NODES {
        let n = &nodes.body[k.to_string()];
        assert_eq!(
            n["api_addr"],
            format!("http://{subnet}{}:4001", 10 + k),
            "{nodes}"
        );
        assert_eq!(n["reachable"], true, "node 1 reaches node {k}: {nodes}");
    }

    // Writes through every node (two of them followers that forward to the leader), read
    // back on every node.
    let create = wait_for(LEADER_TIMEOUT, "the table to be created", || {
        match d.execute(2, &json!([CREATE_T])) {
            Ok(r) if r.is_clean() => Ok(()),
            Ok(r) => Err(r.to_string()),
            Err(e) => Err(format!("{e:#}")),
        }
    });
    create.expect("CREATE TABLE through node 2");
    let mut acked = Vec::new();
    for k in 1..=NODES {
        for j in 1..=5 {
            let id = 10 * k + j;
            d.insert(k, id).expect("a write through every node");
            acked.push(id);
        }
    }
    for k in 1..=NODES {
        assert_eq!(d.ids(k, "linearizable").expect("read"), acked, "node {k}");
        d.wait_replica(k, &acked)
            .expect("every replica has every row");
    }

    // SIGKILL the leader: the survivors elect another and take writes through both.
    let all: Vec<u64> = (1..=NODES).collect();
    let (old, old_term) = d.wait_leader(&all, 0).expect("a leader");
    d.node_mut(old).kill().expect("SIGKILL the leader");
    let survivors: Vec<u64> = all.iter().copied().filter(|&k| k != old).collect();
    let (new, _) = d
        .wait_leader(&survivors, old_term)
        .expect("a new leader among the survivors");
    assert_ne!(new, old);
    for &k in &survivors {
        for j in 1..=5 {
            let id = 100 + 10 * k + j;
            d.insert(k, id).expect("a write after the leader kill");
            acked.push(id);
        }
    }
    acked.sort_unstable();
    for &k in &survivors {
        assert_eq!(
            d.ids(k, "linearizable").expect("read"),
            acked,
            "nothing acknowledged is lost (node {k})"
        );
    }

    // The killed node comes back on its data directory, follows the new leader, and catches up.
    d.node_mut(old).respawn().expect("restart the old leader");
    wait_for(
        START_TIMEOUT,
        "the old leader to follow the new one",
        || match d.status(old) {
            Ok(s) if s.state == "Follower" && s.leader_id == Some(new) => Ok(()),
            Ok(s) => Err(format!("{s:?}")),
            Err(e) => Err(format!("{e:#}")),
        },
    )
    .expect("the old leader rejoins");
    d.wait_replica(old, &acked)
        .expect("the old leader catches up");
    eprintln!(
        "three namespaces on {subnet}0/24: {} rows, leader {old} killed, {new} took over, {:.1}s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
}
