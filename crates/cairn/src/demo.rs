//! `cairn demo`: a local cluster of real `cairn start` processes on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cairn_launch::{Formation, LaunchOptions, LaunchTls, LocalCluster, Ports};
use cairn_tls::pki::{self, PkiFiles};
use clap::Args;

use crate::start::shutdown_signal;

/// How long the cluster may take to form: every node ready and a voter.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopped node may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Flags of `cairn demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// HTTP port of node 1; node i uses BASE+2(i-1) for HTTP and the next port for Raft.
    #[arg(long, default_value_t = 4001)]
    pub base_port: u16,
    /// Keep the nodes' data here (reused on the next run); a temporary directory otherwise.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTPS on every node's API and mutual TLS between the nodes, with a throw-away CA and
    /// certificate generated under the data directory (`tls/`; kept and reused with
    /// --data-dir).
    #[arg(long)]
    pub tls: bool,
}

/// Runs the demo cluster until SIGINT/SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let last_port = u32::from(args.base_port) + 2 * u32::from(args.nodes) - 1;
    if last_port > 65535 {
        bail!(
            "--base-port {} leaves no room for {} nodes",
            args.base_port,
            args.nodes
        );
    }
    let (_tmp, root) = match &args.data_dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::Builder::new().prefix("cairn-demo-").tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    std::fs::create_dir_all(&root)?;
    let secret_path = root.join("cluster-secret");
    let secret = match std::fs::read_to_string(&secret_path) {
        Ok(s) => s.trim().to_string(),
        Err(_) => {
            let s: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            std::fs::write(&secret_path, &s)?;
            s
        }
    };
    let exe = std::env::current_exe().context("locating the cairn binary")?;
    let mut opts = LaunchOptions {
        ports: Ports::Base(args.base_port),
        stop_on_drop: Some(STOP_GRACE),
        start_timeout: START_TIMEOUT,
        ..LaunchOptions::new(usize::from(args.nodes), Formation::BootstrapExpect, secret)
    };
    let ca = if args.tls {
        let files = demo_pki(&root.join("tls"))?;
        opts.extra_args = tls_flags(&files);
        opts.https = Some(LaunchTls {
            ca: files.ca.clone(),
            identity: None,
        });
        Some(files.ca)
    } else {
        None
    };
    let (scheme, curl) = match &ca {
        Some(ca) => ("https", format!("curl --cacert {}", ca.display())),
        None => ("http", "curl".to_string()),
    };
    println!("Starting {} nodes, data in {}", args.nodes, root.display());
    let launch_root = root.clone();
    // The launcher blocks (it polls the nodes with a blocking client): off the runtime.
    let (cluster, statuses) = tokio::task::spawn_blocking(move || {
        let mut c = LocalCluster::new(&exe, &launch_root, opts)?;
        let statuses = c.form()?;
        Ok::<_, cairn_launch::Error>((c, statuses))
    })
    .await?
    .map_err(|e| match e {
        cairn_launch::Error::Exited { name, status, log } => {
            anyhow!("{name} exited with {status}; see {}", log.display())
        }
        cairn_launch::Error::Timeout { .. } => anyhow!(
            "the cluster did not become ready within 60 s; logs are in {}",
            root.display()
        ),
        e => anyhow::Error::new(e).context("starting the cluster"),
    })?;
    for (i, v) in statuses.iter().enumerate() {
        let state = v["raft"]["state"]
            .as_str()
            .unwrap_or("unknown")
            .to_lowercase();
        let http_addr = cluster
            .http_addr(i)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let raft_addr = cluster
            .raft_addr(i)
            .map(|a| a.to_string())
            .unwrap_or_default();
        println!(
            "node {}  {scheme}://{http_addr}  raft {raft_addr}  {state}",
            i + 1
        );
    }
    let addr = |i: usize| {
        cluster
            .http_addr(i)
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    let first = addr(0);
    let second = if cluster.len() > 1 { addr(1) } else { addr(0) };
    println!("cluster ready: {} nodes, Ctrl-C stops them all", args.nodes);
    println!();
    println!("Try:");
    println!(
        "  {curl} -XPOST '{scheme}://{first}/db/execute?pretty&timings' -H 'Content-Type: application/json' \\\n    -d '[\"CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT)\", [\"INSERT INTO foo(name) VALUES(?)\", \"fiona\"]]'"
    );
    println!("  {curl} -G '{scheme}://{second}/db/query?pretty&level=linearizable' --data-urlencode 'q=SELECT * FROM foo'");
    println!("  {curl} '{scheme}://{first}/nodes?pretty'");
    println!("  {curl} '{scheme}://{first}/status?pretty'");
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = watch_children(&cluster) => {}
    }
    println!("stopping the cluster");
    // Stopping waits for the nodes to exit (SIGTERM, then SIGKILL after the grace).
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    Ok(())
}

/// The demo's CA and node certificate in `dir`: the ones a previous run left there, else
/// new ones (one CA for both ports; one certificate for every node, naming 127.0.0.1, ::1
/// and localhost).
fn demo_pki(dir: &Path) -> anyhow::Result<PkiFiles> {
    let kept = PkiFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
    };
    if kept.ca.exists() && kept.cert.exists() && kept.key.exists() {
        return Ok(kept);
    }
    pki::write_node_pki(dir, &pki::LOOPBACK_NAMES)
        .with_context(|| format!("generating the demo's certificates in {}", dir.display()))
}

/// `cairn start` flags for HTTPS and node mutual TLS with `files`.
fn tls_flags(files: &PkiFiles) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    [
        ("--http-cert", &files.cert),
        ("--http-key", &files.key),
        ("--http-ca-cert", &files.ca),
        ("--node-cert", &files.cert),
        ("--node-key", &files.key),
        ("--node-ca-cert", &files.ca),
    ]
    .into_iter()
    .flat_map(|(flag, p)| [flag.to_string(), path(p)])
    .collect()
}

/// Reports nodes that exit on their own (e.g. killed to try a failover); never returns.
/// The others keep running: a cluster survives the loss of a minority.
async fn watch_children(cluster: &LocalCluster) {
    let mut reported = vec![false; cluster.len()];
    loop {
        for (i, done) in reported.iter_mut().enumerate() {
            let exited = cluster.process(i).ok().and_then(|p| match p.exit_status() {
                Ok(status) => status.map(|s| s.to_string()),
                Err(e) => Some(e.to_string()),
            });
            if let Some(code) = exited {
                if !*done {
                    eprintln!("node {} exited with {code}", i + 1);
                    *done = true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
