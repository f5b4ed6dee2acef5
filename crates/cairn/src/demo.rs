//! `cairn demo`: a local cluster of real `cairn start` processes on 127.0.0.1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use crate::procs::{stop_all, Proc};
use crate::start::shutdown_signal;

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
}

/// The demo's nodes; all stopped together when dropped.
struct Children(Vec<Proc>);

impl Drop for Children {
    fn drop(&mut self) {
        stop_all(&mut self.0);
    }
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
    let addrs: Vec<(String, String)> = (0..args.nodes)
        .map(|i| {
            let http = args.base_port + 2 * i;
            (
                format!("127.0.0.1:{http}"),
                format!("127.0.0.1:{}", http + 1),
            )
        })
        .collect();
    let join: Vec<String> = addrs.iter().map(|(h, _)| format!("http://{h}")).collect();
    let mut children = Children(Vec::new());
    for (i, (http, raft)) in addrs.iter().enumerate() {
        let dir = root.join(format!("node{}", i + 1));
        std::fs::create_dir_all(&dir)?;
        let args = vec![
            "start".to_string(),
            "--node-id".into(),
            (i + 1).to_string(),
            "--http-addr".into(),
            http.clone(),
            "--raft-addr".into(),
            raft.clone(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--bootstrap-expect".into(),
            args.nodes.to_string(),
            "--join".into(),
            join.join(","),
        ];
        let env = vec![("CAIRN_CLUSTER_SECRET".to_string(), secret.clone())];
        let child = Proc::start(&exe, args, env, dir.join("cairn.log"))
            .with_context(|| format!("starting node {}", i + 1))?;
        children.0.push(child);
    }
    println!("Starting {} nodes, data in {}", args.nodes, root.display());
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut roles = Vec::new();
    loop {
        roles.clear();
        for (http_addr, _) in &addrs {
            let status = http
                .get(format!("http://{http_addr}/status"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            let v = match status {
                Ok(r) => r.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            };
            roles.push(v);
        }
        let ready = roles.iter().all(|v| {
            v.as_ref().is_some_and(|v| {
                v["raft"]["leader_id"].is_u64()
                    && v["raft"]["voters"].as_array().map_or(0, Vec::len) == usize::from(args.nodes)
            })
        });
        if ready {
            break;
        }
        for (i, c) in children.0.iter_mut().enumerate() {
            if let Some(code) = c.exited() {
                bail!(
                    "node {} exited with {code}; see {}",
                    i + 1,
                    root.join(format!("node{}", i + 1))
                        .join("cairn.log")
                        .display()
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the cluster did not become ready within 60 s; logs are in {}",
                root.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, ((http_addr, raft_addr), v)) in addrs.iter().zip(&roles).enumerate() {
        let state = v
            .as_ref()
            .and_then(|v| v["raft"]["state"].as_str())
            .unwrap_or("unknown")
            .to_lowercase();
        println!(
            "node {}  http://{http_addr}  raft {raft_addr}  {state}",
            i + 1
        );
    }
    let first = &addrs[0].0;
    let second = &addrs.get(1).unwrap_or(&addrs[0]).0;
    println!("cluster ready: {} nodes, Ctrl-C stops them all", args.nodes);
    println!();
    println!("Try:");
    println!(
        "  curl -XPOST 'http://{first}/db/execute?pretty&timings' -H 'Content-Type: application/json' \\\n    -d '[\"CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT)\", [\"INSERT INTO foo(name) VALUES(?)\", \"fiona\"]]'"
    );
    println!("  curl -G 'http://{second}/db/query?pretty&level=linearizable' --data-urlencode 'q=SELECT * FROM foo'");
    println!("  curl 'http://{first}/nodes?pretty'");
    println!("  curl 'http://{first}/status?pretty'");
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = watch_children(&mut children) => {}
    }
    println!("stopping the cluster");
    drop(children);
    Ok(())
}

/// Reports children that exit on their own (e.g. killed to try a failover); never returns.
/// The others keep running: a cluster survives the loss of a minority.
async fn watch_children(children: &mut Children) {
    let mut reported = vec![false; children.0.len()];
    loop {
        for (i, c) in children.0.iter_mut().enumerate() {
            if let Some(code) = c.exited() {
                if !reported[i] {
                    eprintln!("node {} exited with {code}", i + 1);
                    reported[i] = true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
