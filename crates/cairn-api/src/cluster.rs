//! Cluster routes: `/status`, `/nodes`, `/readyz`, `/leader`, `/remove`, `/join`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_node::{JoinRequest, NodeEntry, NodeError};
use serde::Serialize;

use crate::error::ApiError;
use crate::flags::Flags;
use crate::AppState;

/// `GET /status`: rqlite's sections (`build`, `http`, `node`, `os`, `runtime`, `store`
/// with `ready`, `leader`, `raft`, `db_conf`, sizes) and Cairn's `raft`; see
/// [`cairn_node::Status`].
#[utoipa::path(get, path = "/status", tag = "cluster", responses((status = 200, description = "Node, Raft and store status: rqlite's sections and Cairn's raft", body = serde_json::Value)))]
pub async fn status(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    Ok(flags.json(StatusCode::OK, &state.service.status()?))
}

/// `GET /nodes`: the voters (every member with `nonvoters`), keyed by id (rqlite's legacy
/// shape), or with `ver=2` as `{"nodes": [...]}` sorted by id. Each node is contacted;
/// reachable entries carry `version`, `time` (seconds) and `time_s` (a Go duration
/// string), as rqlite's `http/nodes.go`; see [`cairn_node::NodeEntry`].
#[utoipa::path(get, path = "/nodes", tag = "cluster", params(("ver" = Option<String>, Query, description = "2 for {\"nodes\": [...]}"), ("nonvoters" = Option<String>, Query, description = "Include non-voting members")), responses((status = 200, description = "Members by id", body = serde_json::Value)))]
pub async fn nodes(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let mut nodes = state.service.nodes().await;
    nodes.retain(|n| n.voter || flags.nonvoters);
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let body = if flags.ver.as_deref() == Some("2") {
        serde_json::to_value(NodesList { nodes })
    } else {
        let map: BTreeMap<String, NodeEntry> =
            nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
        serde_json::to_value(map)
    }
    .map_err(ApiError::internal)?;
    Ok(flags.json(StatusCode::OK, &body))
}

/// `/nodes?ver=2`'s body.
#[derive(Serialize)]
struct NodesList {
    nodes: Vec<NodeEntry>,
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
#[utoipa::path(get, path = "/leader", tag = "cluster", responses((status = 200, description = "The leader", body = serde_json::Value), (status = 503, description = "No leader", body = crate::error::ErrorBody)))]
pub async fn leader(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let leader = state.service.leader().ok_or(NodeError::NoLeader)?;
    let body = serde_json::json!({ "leader": leader.describe() });
    Ok(flags.json(StatusCode::OK, &body))
}

/// `POST /leader`: the leader hands leadership to another voter (Raft §3.10 leadership
/// transfer); on a follower the request is forwarded.
#[utoipa::path(post, path = "/leader", tag = "cluster", responses((status = 200, description = "The new leader", body = serde_json::Value), (status = 400, description = "No other voter", body = crate::error::ErrorBody)))]
pub async fn step_down(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let new_leader = state.service.step_down(flags.timeout).await?;
    let body = serde_json::json!({ "leader": new_leader.describe() });
    Ok(flags.json(StatusCode::OK, &body))
}

/// `DELETE /remove` with `{"id": "3"}` (a string or a number): removes a node from the
/// cluster through the leader.
#[utoipa::path(delete, path = "/remove", tag = "cluster", request_body(content = serde_json::Value, description = "{\"id\": \"3\"}"), responses((status = 200, description = "Removed", body = serde_json::Value), (status = 404, description = "Not a member", body = crate::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let id = match &v["id"] {
        serde_json::Value::String(s) => s.parse::<u64>().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request("body must be {\"id\": \"<node id>\"}"))?;
    state.service.remove(id, flags.timeout).await?;
    Ok(flags.json(StatusCode::OK, &serde_json::json!({})))
}

/// `POST /join` with a [`JoinRequest`] and the cluster secret in `x-cairn-secret`: adds the
/// node as a learner, then as a voter once it has caught up.
#[utoipa::path(post, path = "/join", tag = "cluster", request_body(content = serde_json::Value, description = "{\"id\", \"http_addr\", \"raft_addr\"} with the x-cairn-secret header"), responses((status = 200, description = "Joined", body = serde_json::Value), (status = 401, description = "Wrong secret", body = crate::error::ErrorBody)))]
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
    Ok(flags.json(StatusCode::OK, &serde_json::json!({})))
}
