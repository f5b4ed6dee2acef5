//! Local clusters for `--spawn N`: Cairn's through [`cairn_launch`] (the launcher `cairn
//! demo` and the tests use too), etcd's from the `etcd` binary, both supervised by
//! [`cairn_launch::NodeProcess`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_launch::{
    free_ports, stop_all, Formation, LaunchOptions, LocalCluster, LogFiles, NodeProcess,
};
use serde_json::{json, Value};

use super::System;

/// How long a spawned node may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The processes of a spawned cluster.
enum Nodes {
    /// `cairn start` processes, launched and supervised by [`LocalCluster`].
    Cairn(Box<LocalCluster>),
    /// etcd members.
    Etcd(Vec<NodeProcess>),
}

/// A spawned local cluster, stopped when dropped (SIGTERM, then SIGKILL after 10 s).
pub(super) struct Spawned {
    nodes: Nodes,
    /// The nodes' client URLs, `http://127.0.0.1:PORT`, in node order.
    pub(super) urls: Vec<String>,
    /// Holds the nodes' directories; declared after `nodes`, so removed after they stop.
    _dir: tempfile::TempDir,
}

impl Spawned {
    /// SIGKILLs node `i` (0-based) and reaps it.
    pub(super) fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        match &mut self.nodes {
            Nodes::Cairn(c) => c.kill(i)?,
            Nodes::Etcd(procs) => procs.get_mut(i).context("no such member")?.kill()?,
        }
        Ok(())
    }

    /// Starts node `i` again on its data directory with the same ports.
    pub(super) fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        match &mut self.nodes {
            Nodes::Cairn(c) => c.restart_with_env(i, &[])?,
            Nodes::Etcd(procs) => procs.get_mut(i).context("no such member")?.respawn()?,
        }
        Ok(())
    }

    /// SIGTERM to every node at once, then up to 10 s for each before SIGKILL; waits on a
    /// blocking thread.
    pub(super) async fn stop_all(&mut self) {
        self.blocking(|nodes| match nodes {
            Nodes::Cairn(c) => c.stop_all(STOP_GRACE),
            Nodes::Etcd(procs) => stop_all(procs.iter_mut(), STOP_GRACE),
        })
        .await;
    }

    /// SIGTERM to node `i`, then up to 10 s for it to exit before SIGKILL; waits on a
    /// blocking thread.
    pub(super) async fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        self.blocking(move |nodes| match nodes {
            Nodes::Cairn(c) => c.stop(i, STOP_GRACE).map(|_| ()).map_err(Into::into),
            Nodes::Etcd(procs) => {
                let p = procs.get_mut(i).context("no such member")?;
                p.stop(STOP_GRACE).map(|_| ()).map_err(Into::into)
            }
        })
        .await
        .context("the launcher's thread panicked")?
    }

    /// The number of nodes.
    pub(super) fn len(&self) -> usize {
        self.urls.len()
    }

    /// Runs `f` on the nodes on a blocking thread (the launcher's waits block); `None`
    /// when that thread panicked, and then the nodes are gone (each was SIGKILLed as it
    /// dropped).
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Nodes) -> R + Send + 'static,
    ) -> Option<R> {
        let mut nodes = std::mem::replace(&mut self.nodes, Nodes::Etcd(Vec::new()));
        let done = tokio::task::spawn_blocking(move || {
            let r = f(&mut nodes);
            (nodes, r)
        })
        .await;
        match done {
            Ok((nodes, r)) => {
                self.nodes = nodes;
                Some(r)
            }
            Err(_) => None,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // `LocalCluster` stops its nodes on drop by itself (`stop_on_drop`).
        if let Nodes::Etcd(procs) = &mut self.nodes {
            stop_all(procs.iter_mut(), STOP_GRACE);
        }
    }
}

pub(super) async fn wait_ok(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).timeout(Duration::from_secs(1)).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} not ready within {timeout:?}")
}

/// Starts `n` Cairn nodes of this binary on OS-chosen ports by `--join` and waits until
/// every node is ready and a voter; `extra_args` go on every node's `cairn start` command
/// line (e.g. `--snapshot-threshold 1000`).
pub(super) async fn spawn_cairn(
    n: u16,
    tls: bool,
    auth: bool,
    extra_args: Vec<String>,
) -> anyhow::Result<(Spawned, crate::secure::Secured)> {
    let dir = tempfile::Builder::new().prefix("cairn-bench-").tempdir()?;
    let exe = std::env::current_exe()?;
    let root = dir.path().to_path_buf();
    let mut opts = LaunchOptions {
        stop_on_drop: Some(STOP_GRACE),
        extra_args,
        ..LaunchOptions::new(usize::from(n), Formation::Join, "bench-secret")
    };
    let secured = crate::secure::secure(&root, tls, auth, &mut opts)?;
    // The launcher polls with a blocking client: off the runtime.
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::launch(&exe, &root, opts))
        .await?
        .context("starting the Cairn cluster")?;
    Ok((
        Spawned {
            urls: cluster.urls(),
            nodes: Nodes::Cairn(Box::new(cluster)),
            _dir: dir,
        },
        secured,
    ))
}

pub(super) async fn spawn_etcd(n: u16, http: &reqwest::Client) -> anyhow::Result<Spawned> {
    let exe =
        which("etcd").context("the etcd binary is not installed (apt-get install etcd-server)")?;
    let dir = tempfile::Builder::new().prefix("etcd-bench-").tempdir()?;
    let free = free_ports(2 * usize::from(n))?;
    let ports: Vec<(u16, u16)> = free.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    let cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
        .collect();
    let mut procs = Vec::new();
    let mut urls = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let d = dir.path().join(format!("e{}", i + 1));
        let args = vec![
            format!("--name=e{}", i + 1),
            format!("--data-dir={}", d.display()),
            format!("--listen-client-urls=http://127.0.0.1:{client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster={}", cluster.join(",")),
            "--initial-cluster-state=new".into(),
            "--initial-cluster-token=bench".into(),
        ];
        let log = LogFiles::combined(dir.path().join(format!("e{}.log", i + 1)));
        // etcd creates its own data directory (with the permissions it wants); the
        // supervisor's directory is only where it would look for a node.json.
        let mut member =
            NodeProcess::new(format!("etcd e{}", i + 1), dir.path().to_path_buf(), log)?;
        member.spawn(
            &exe,
            &args,
            &[("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)],
        )?;
        procs.push(member);
        urls.push(format!("http://127.0.0.1:{client}"));
    }
    for u in &urls {
        wait_ok(
            http,
            &format!("{u}/health"),
            "etcd",
            Duration::from_secs(60),
        )
        .await?;
    }
    Ok(Spawned {
        nodes: Nodes::Etcd(procs),
        urls,
        _dir: dir,
    })
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(bin))
        .find(|p| p.is_file())
}

/// Node `url`'s `/status` body, `None` when it does not answer 200 with JSON within a
/// second.
pub(super) async fn status(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http
        .get(format!("{url}/status"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Index of the current leader among the spawned nodes (etcd's through its JSON gateway,
/// or with `etcd-grpc` its gRPC maintenance status).
pub(super) async fn find_leader(
    system: System,
    http: &reqwest::Client,
    s: &Spawned,
    skip: Option<usize>,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for (i, u) in s.urls.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            #[cfg(feature = "etcd-grpc")]
            if system == System::EtcdGrpc {
                if super::etcd_grpc::is_leader(u).await {
                    return Ok(i);
                }
                continue;
            }
            let req = match system {
                System::Cairn => http.get(format!("{u}/status")),
                _ => http
                    .post(format!("{u}/v3/maintenance/status"))
                    .json(&json!({})),
            };
            let Ok(resp) = req.timeout(Duration::from_secs(1)).send().await else {
                continue;
            };
            let Ok(v) = resp.json::<Value>().await else {
                continue;
            };
            let is_leader = match system {
                System::Cairn => v["raft"]["state"] == "Leader",
                _ => v["leader"].is_string() && v["leader"] == v["header"]["member_id"],
            };
            if is_leader {
                return Ok(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("no leader found")
}
