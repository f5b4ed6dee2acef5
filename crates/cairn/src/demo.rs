//! `cairn demo`: a local cluster of real `cairn start` processes on 127.0.0.1.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cairn_launch::{Formation, LaunchOptions, LocalCluster, Ports};
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
    /// Users: an auth file with one administrator (every permission, a random password
    /// printed at start) and `*` allowed `ready`, kept under the data directory.
    #[arg(long)]
    pub auth: bool,
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
            crate::secure::write_private(&secret_path, &s)?;
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
    let secured = crate::secure::secure(&root, args.tls, args.auth, &mut opts)?;
    let scheme = secured.scheme();
    let mut curl = match &secured.ca {
        Some(ca) => format!("curl --cacert {}", ca.display()),
        None => "curl".to_string(),
    };
    if let Some(password) = &secured.admin_password {
        curl.push_str(&format!(" -u {}:{password}", crate::secure::ADMIN));
    }
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
    if !args.auth {
        println!();
        println!("Anyone who can reach these ports may read, change and drop every database.");
        println!(
            "  cairn demo --auth --tls     users (an admin password is printed), HTTPS, node mTLS"
        );
        println!("  cairn start ... --auth users.json   see README \"Running securely\"; `cairn passwd` hashes passwords");
    }
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = watch_children(&cluster) => {}
    }
    println!("stopping the cluster");
    // Stopping waits for the nodes to exit (SIGTERM, then SIGKILL after the grace).
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    Ok(())
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
