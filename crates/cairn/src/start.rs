//! `cairn start`: one node.

use std::sync::Arc;

use anyhow::Context;
use cairn_node::{Node, NodeConfig};

use crate::config::{write_identity, NodeIdentity, StartArgs};
use crate::serve::{serve, PUBLIC_LIMITS, RAFT_LIMITS};

/// Resolves once SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Loads the cluster secret: the flag's, else the one kept in the data directory, else a new
/// random one that is then kept there.
fn cluster_secret(given: Option<String>, data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("cluster-secret");
    if let Some(s) = given {
        if s.is_empty() {
            anyhow::bail!("--cluster-secret must not be empty");
        }
        return Ok(s);
    }
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(s.trim().to_string());
    }
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "no --cluster-secret given: generated one; nodes joining this cluster need it"
    );
    Ok(secret)
}

/// Runs a node until SIGINT/SIGTERM.
pub async fn run(args: StartArgs) -> anyhow::Result<()> {
    let s = args.settings()?;
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("creating {}", s.data_dir.display()))?;
    let secret = cluster_secret(s.cluster_secret.clone(), &s.data_dir)?;
    let http_listener = tokio::net::TcpListener::bind(&s.http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", s.http_addr))?;
    let raft_listener = tokio::net::TcpListener::bind(&s.raft_addr)
        .await
        .with_context(|| format!("binding the raft address {}", s.raft_addr))?;
    let http_addr = s
        .http_adv_addr
        .clone()
        .unwrap_or(http_listener.local_addr()?.to_string());
    let raft_addr = s
        .raft_adv_addr
        .clone()
        .unwrap_or(raft_listener.local_addr()?.to_string());
    let cfg = NodeConfig {
        id: s.node_id,
        http_addr: http_addr.clone(),
        raft_addr: raft_addr.clone(),
        data_dir: s.data_dir.clone(),
        cluster_secret: secret,
        join: s.join.clone(),
        bootstrap_expect: s.bootstrap_expect,
        raft: s.raft.clone(),
        bind_ip: Some(raft_listener.local_addr()?.ip()),
    };
    let node = Node::start(&cfg).await.context("starting the node")?;
    let internal = serve(
        raft_listener,
        node.internal_router(),
        RAFT_LIMITS,
        shutdown_signal(),
    );
    let public = serve(
        http_listener,
        cairn_api::router(node.clone()),
        PUBLIC_LIMITS,
        shutdown_signal(),
    );
    let internal = tokio::spawn(internal);
    let public = tokio::spawn(public);
    write_identity(
        &s.data_dir,
        &NodeIdentity {
            node_id: s.node_id,
            http_addr: http_addr.clone(),
            raft_addr: raft_addr.clone(),
        },
    )?;
    tracing::info!(id = s.node_id, http = %http_addr, raft = %raft_addr, "node started");
    let boot_node = Arc::clone(&node);
    let bootstrap = tokio::spawn(async move { boot_node.bootstrap(&cfg).await });
    tokio::select! {
        r = bootstrap => match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                node.shutdown().await;
                return Err(anyhow::anyhow!("could not join a cluster: {e}"));
            }
            Err(e) => return Err(e.into()),
        },
        _ = shutdown_signal() => {
            node.shutdown().await;
            return Ok(());
        }
    }
    let _ = public.await;
    let _ = internal.await;
    node.shutdown().await;
    tracing::info!("node stopped");
    Ok(())
}
