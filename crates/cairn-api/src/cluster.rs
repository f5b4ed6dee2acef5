//! Cluster routes: `/status`, `/nodes`, `/readyz`, `/leader`, `/remove`, `/join`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_node::{JoinRequest, NodeEntry, NodeError, Peer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::flags::Flags;
use crate::AppState;

/// A member as rqlite describes one: `{"id","api_addr","addr"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerInfo {
    /// Node id, as a string as in rqlite.
    pub id: String,
    /// `http://HOST:PORT` of its public API.
    pub api_addr: String,
    /// Its node-to-node RPC address, `HOST:PORT`.
    pub addr: String,
}

impl From<Peer> for PeerInfo {
    fn from(p: Peer) -> Self {
        PeerInfo {
            id: p.id.to_string(),
            api_addr: p.http_url(),
            addr: p.addr.raft_addr,
        }
    }
}

/// Body of `GET /leader` and `POST /leader`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaderBody {
    /// The (new) leader.
    pub leader: PeerInfo,
}

/// Body of `/nodes`: members keyed by id (rqlite's legacy shape), or `{"nodes": [...]}`
/// with `ver=2`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum NodesBody {
    /// Without `ver=2`: id -> member.
    ById(BTreeMap<String, NodeEntry>),
    /// With `ver=2`: the members sorted by id.
    List(NodesList),
}

/// `/nodes?ver=2`'s body.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodesList {
    /// The members, sorted by id.
    pub nodes: Vec<NodeEntry>,
}

/// A node id given as a string (`"3"`, rqlite's form) or a number.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum NodeIdInput {
    /// `"3"`.
    Text(String),
    /// `3`.
    Number(u64),
}

/// Body of `DELETE /remove`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RemoveNode {
    /// The id of the node to remove.
    pub id: NodeIdInput,
}

/// An empty JSON object, `{}`: the answer of `/remove` and `/join`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Empty {}

/// `GET /status`: rqlite's sections (`build`, `http`, `node`, `os`, `runtime`, `store`
/// with `ready`, `leader`, `raft`, `db_conf`, sizes) and Cairn's `raft`; see
/// [`cairn_node::Status`].
#[utoipa::path(get, path = "/status", tag = "cluster", responses((status = 200, description = "Node, Raft and store status: rqlite's sections and Cairn's raft", body = cairn_node::Status)))]
pub async fn status(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let service = state.service.clone();
    let mut status = off_the_runtime(move || service.status()).await??;
    // Only the API layer knows about `--auth`: the auth middleware identified the caller.
    if flags.identity.as_ref().is_some_and(|who| !who.is_open()) {
        status["http"]["auth"] = serde_json::Value::from("enabled");
    }
    Ok(flags.json(StatusCode::OK, &status))
}

/// Runs `f` (which reads files: sizes, the data directory) on the blocking pool, so that
/// a slow disk does not hold an async worker.
///
/// # Errors
/// `internal` when the task panicked.
async fn off_the_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::of(
            cairn_sql::ErrorCode::Internal,
            format!("reading the node's state: {e}"),
        )
    })
}

/// `GET /metrics`: this node's series in the Prometheus text format (OpenMetrics 1.0):
/// requests by route and status with latency histograms, write and read latency, Raft's
/// term, indexes and leader changes, each follower's lag (on the leader), log, snapshot and
/// database sizes, forwarded requests and errors by code. The series are listed in
/// [`cairn_node::NodeMetrics`] and in the README.
#[utoipa::path(get, path = "/metrics", tag = "cluster", responses((status = 200, description = "Prometheus/OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let service = state.service.clone();
    let text = off_the_runtime(move || service.render_metrics())
        .await?
        .ok_or_else(|| ApiError::of(cairn_sql::ErrorCode::NoRoute, "this node has no metrics"))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, cairn_node::METRICS_CONTENT_TYPE)],
        text,
    )
        .into_response())
}

/// `GET /nodes`: the voters (every member with `nonvoters`), keyed by id (rqlite's legacy
/// shape), or with `ver=2` as `{"nodes": [...]}` sorted by id. Each node is contacted;
/// reachable entries carry `version`, `time` (seconds) and `time_s` (a Go duration
/// string), as rqlite's `http/nodes.go`; see [`cairn_node::NodeEntry`].
#[utoipa::path(get, path = "/nodes", tag = "cluster", params(("ver" = Option<String>, Query, description = "2 for {\"nodes\": [...]}"), ("nonvoters" = Option<String>, Query, description = "Include non-voting members")), responses((status = 200, description = "Members by id, or {\"nodes\": [...]} with ver=2", body = NodesBody)))]
pub async fn nodes(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let mut nodes = state.service.nodes().await;
    nodes.retain(|n| n.voter || flags.nonvoters);
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let body = if flags.ver.as_deref() == Some("2") {
        NodesBody::List(NodesList { nodes })
    } else {
        NodesBody::ById(nodes.into_iter().map(|n| (n.id.clone(), n)).collect())
    };
    Ok(flags.json(StatusCode::OK, &body))
}

/// `GET /readyz`: 200 with `[+]node ok` lines when the node knows a leader (or with
/// `noleader`), 503 otherwise; `sync` waits until this node has applied what the leader
/// had committed (rqlite's `/readyz`).
#[utoipa::path(get, path = "/readyz", tag = "cluster", params(("noleader" = Option<String>, Query, description = "Do not require a leader"), ("sync" = Option<String>, Query, description = "Wait until caught up")), responses((status = 200, description = "[+]node ok lines", content_type = "text/plain"), (status = 503, description = "Not ready", content_type = "text/plain")))]
pub async fn readyz(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let mut lines = vec!["[+]node ok".to_string()];
    let mut ok = true;
    if !flags.noleader {
        if state.service.live_leader().await.is_some() {
            lines.push("[+]leader ok".into());
        } else {
            lines.push("[-]leader not ok".into());
            ok = false;
        }
    }
    if ok && flags.sync {
        match state.service.wait_synced(flags.timeout).await {
            Ok(()) => lines.push("[+]sync ok".into()),
            Err(e) => {
                lines.push(format!("[-]sync not ok: {e}"));
                ok = false;
            }
        }
    }
    if ok {
        lines.push("[+]store ok".into());
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, lines.join("\n") + "\n").into_response())
}

/// `GET /leader`: the current leader, or 503 when there is none.
#[utoipa::path(get, path = "/leader", tag = "cluster", responses((status = 200, description = "The leader", body = LeaderBody), (status = 503, description = "No leader", body = ErrorBody)))]
pub async fn leader(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let leader = state.service.leader().ok_or(NodeError::NoLeader)?;
    let body = LeaderBody {
        leader: leader.into(),
    };
    Ok(flags.json(StatusCode::OK, &body))
}

/// `POST /leader`: the leader hands leadership to another voter (Raft §3.10 leadership
/// transfer); on a follower the request is forwarded.
#[utoipa::path(post, path = "/leader", tag = "cluster", responses((status = 200, description = "The new leader", body = LeaderBody), (status = 400, description = "No other voter", body = ErrorBody)))]
pub async fn step_down(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let new_leader = state.service.step_down(flags.timeout).await?;
    let body = LeaderBody {
        leader: new_leader.into(),
    };
    Ok(flags.json(StatusCode::OK, &body))
}

/// `DELETE /remove` with `{"id": "3"}` (a string or a number): removes a node from the
/// cluster through the leader.
#[utoipa::path(delete, path = "/remove", tag = "cluster", request_body = RemoveNode, responses((status = 200, description = "Removed", body = Empty), (status = 404, description = "Not a member", body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    // Field by field, not with serde: a JSON array would deserialize into the struct.
    let id = match v
        .get("id")
        .cloned()
        .map(serde_json::from_value::<NodeIdInput>)
    {
        Some(Ok(NodeIdInput::Text(s))) => s.parse::<u64>().ok(),
        Some(Ok(NodeIdInput::Number(n))) => Some(n),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request("body must be {\"id\": \"<node id>\"}"))?;
    state.service.remove(id, flags.timeout).await?;
    Ok(flags.json(StatusCode::OK, &Empty {}))
}

/// `POST /join` with a [`JoinRequest`] and the cluster secret in `x-cairn-secret`: adds the
/// node as a learner, then as a voter once it has caught up.
#[utoipa::path(post, path = "/join", tag = "cluster", request_body(content = JoinRequest, description = "The new node, with the cluster secret in the x-cairn-secret header"), responses((status = 200, description = "Joined", body = Empty), (status = 401, description = "Wrong secret", body = ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    flags: Flags,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let secret = headers
        .get(cairn_node::SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let req: JoinRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid join request: {e}")))?;
    state.service.join(req, secret, flags.timeout).await?;
    Ok(flags.json(StatusCode::OK, &Empty {}))
}
