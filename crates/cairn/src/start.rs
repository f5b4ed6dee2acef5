//! `cairn start`: one node, served by [`cairn_server::serve`] until SIGINT or SIGTERM.

use anyhow::Context;
use cairn_server::{Listeners, ServerConfig};

use crate::config::{NodeIdentity, StartArgs};

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

/// Runs a node until SIGINT/SIGTERM.
pub async fn run(args: StartArgs) -> anyhow::Result<()> {
    let s = args.settings()?;
    let auth = match &s.auth {
        Some(path) => Some(std::sync::Arc::new(cairn_auth::Users::load(path)?)),
        None => None,
    };
    let listeners = Listeners::bind(&s.http_addr, &s.raft_addr).await?;
    let config = ServerConfig {
        node_id: s.node_id,
        data_dir: s.data_dir.clone(),
        cluster_secret: s.cluster_secret.clone(),
        http_advertise: s.http_adv_addr.clone(),
        raft_advertise: s.raft_adv_addr.clone(),
        join: s.join.clone(),
        bootstrap_expect: s.bootstrap_expect,
        raft: s.raft.clone(),
        http_limits: cairn_server::PUBLIC_LIMITS,
        raft_limits: cairn_server::RAFT_LIMITS,
        auth,
        http_tls: s.http_tls.clone(),
        node_tls: s.node_tls.clone(),
        cors_origins: s.cors_origins.clone(),
    };
    let handle = cairn_server::serve(listeners, config, shutdown_signal()).await?;
    let written = NodeIdentity {
        node_id: s.node_id,
        http_addr: handle.advertised_http().to_string(),
        raft_addr: handle.advertised_raft().to_string(),
    }
    .write(&s.data_dir);
    if let Err(e) = written {
        // Stop the node in order rather than leave Raft running as the process exits.
        let _ = handle.stop().await;
        return Err(e).context("writing node.json");
    }
    handle.wait().await?;
    Ok(())
}
