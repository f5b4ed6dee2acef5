//! How a node becomes part of a cluster when it starts on an empty data directory:
//! alone (no `--join`), by joining a running cluster (`--join`), or by forming a new one
//! with its peers (`--bootstrap-expect N --join <all peers>`). A node whose data directory
//! already holds Raft state does none of this: it resumes as it was.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_raft::{NodeAddr, Scheme};

use crate::{JoinRequest, Node, NodeConfig, NodeError, SECRET_HEADER};

/// How long a node keeps trying to join or to find its bootstrap peers.
const BOOTSTRAP_DEADLINE: Duration = Duration::from_secs(300);
const RETRY_EVERY: Duration = Duration::from_millis(250);

impl Node {
    /// Brings this node into a cluster as `cfg` says; returns once it is a member (or at
    /// once when it already was).
    ///
    /// # Errors
    /// [`NodeError::Timeout`] when no peer answered within five minutes.
    pub async fn bootstrap(self: &Arc<Self>, cfg: &NodeConfig) -> Result<(), NodeError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        if initialized {
            tracing::info!("raft state found on disk; resuming");
            return Ok(());
        }
        let peers: Vec<String> = cfg
            .join
            .iter()
            .map(|u| normalize_url(u, self.http_scheme))
            .collect();
        match cfg.bootstrap_expect {
            Some(n) if n > 1 => self.bootstrap_with_peers(&peers, n).await,
            _ if peers.is_empty() => {
                self.initialize(BTreeMap::from([(self.id, self.addr().clone())]))
                    .await
            }
            _ => self.join_cluster(&peers).await,
        }
    }

    async fn initialize(&self, members: BTreeMap<u64, NodeAddr>) -> Result<(), NodeError> {
        tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initializing a new cluster");
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another member initialized first and its leader has already reached us.
            Err(e) if e.api_error().is_some() => Ok(()),
            Err(e) => Err(NodeError::Internal(e.to_string())),
        }
    }

    async fn join_cluster(&self, peers: &[String]) -> Result<(), NodeError> {
        let req = JoinRequest {
            id: self.id,
            http_addr: self.addr().http_addr.clone(),
            raft_addr: self.addr().raft_addr.clone(),
        };
        let deadline = Instant::now() + BOOTSTRAP_DEADLINE;
        let mut attempt = 0u64;
        while Instant::now() < deadline {
            for url in peers {
                attempt += 1;
                let resp = self
                    .http
                    .post(format!("{url}/join"))
                    .header(SECRET_HEADER, &self.secret)
                    .json(&req)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        tracing::info!(via = %url, "joined the cluster");
                        return Ok(());
                    }
                    Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                        return Err(NodeError::Unauthorized);
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        tracing::warn!(via = %url, %status, %text, attempt, "join refused; retrying");
                    }
                    Err(e) => {
                        tracing::debug!(via = %url, error = %e, attempt, "join attempt failed; retrying")
                    }
                }
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
        Err(NodeError::Timeout(format!(
            "could not join through {peers:?}"
        )))
    }

    /// Waits until `expect` nodes (this one included) answer, then initializes Raft with all
    /// of them as voters. Every peer does the same with the same set, so they agree.
    async fn bootstrap_with_peers(&self, peers: &[String], expect: usize) -> Result<(), NodeError> {
        let deadline = Instant::now() + BOOTSTRAP_DEADLINE;
        while Instant::now() < deadline {
            if self.raft.is_initialized().await.unwrap_or(false) {
                return Ok(());
            }
            let mut found = BTreeMap::from([(self.id, self.addr().clone())]);
            let mut joined_cluster = None;
            for url in peers {
                let Ok(r) = self
                    .http
                    .get(format!("{url}/status"))
                    // Peers with `--auth` let the cluster secret's holder in.
                    .header(SECRET_HEADER, &self.secret)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                else {
                    continue;
                };
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    continue;
                };
                let (Some(id), Some(http), Some(raft)) = (
                    v["node"]["id"].as_u64(),
                    v["node"]["http_addr"].as_str(),
                    v["node"]["raft_addr"].as_str(),
                ) else {
                    continue;
                };
                if v["raft"]["leader_id"].as_u64().is_some() {
                    joined_cluster = Some(url.clone());
                }
                found.insert(
                    id,
                    NodeAddr {
                        http_addr: http.to_string(),
                        raft_addr: raft.to_string(),
                    },
                );
            }
            if let Some(url) = joined_cluster {
                // The others formed the cluster without us (we restarted with an empty
                // data directory): join it instead.
                return self.join_cluster(&[url]).await;
            }
            if found.len() >= expect {
                return self.initialize(found).await;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
        Err(NodeError::Timeout(format!(
            "fewer than {expect} nodes answered among {peers:?}"
        )))
    }
}

/// Accepts `host:port` (then `scheme://host:port`, the cluster's scheme) as well as
/// `http://host:port` and `https://host:port`, without a trailing slash.
fn normalize_url(u: &str, scheme: Scheme) -> String {
    let u = u.trim().trim_end_matches('/');
    if u.starts_with("http://") || u.starts_with("https://") {
        u.to_string()
    } else {
        scheme.url(u)
    }
}
