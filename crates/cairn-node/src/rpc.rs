//! Internal node RPC beside Raft's own: a follower forwards writes, leader-level reads and
//! membership changes to the leader over `POST /raft/{group}/node` on the raft address,
//! postcard-encoded and authenticated by the cluster secret like all node-to-node traffic.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use cairn_raft::{decode, encode, Command};
use cairn_sql::{Statement, StatementResult};
use serde::{Deserialize, Serialize};

use crate::{JoinRequest, Level, Node, NodeError, Peer};

/// An operation a follower asks the leader to perform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum NodeRpc {
    /// Propose a command; answers `Reply::Response`.
    Write(Command),
    /// Read at a leader level (`weak`, `linearizable`, `strong`); answers `Reply::Results`.
    Query {
        db: String,
        stmts: Vec<Statement>,
        level: Level,
    },
    /// Add a node; answers `Reply::Done`.
    Join(JoinRequest),
    /// Remove a node; answers `Reply::Done`.
    Remove(u64),
    /// Hand leadership to another voter; answers `Reply::Leader`.
    StepDown,
    /// The leader's commit index; answers `Reply::Index`.
    CommitIndex,
}

/// The leader's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Reply {
    Response(cairn_raft::Response),
    Results(Vec<StatementResult>),
    Done,
    Leader(Peer),
    Index(u64),
}

/// The wire form of a request: the operation and how long the caller waits, in ms.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    rpc: NodeRpc,
    timeout_ms: u64,
}

/// Routes for the internal node RPC (to be wrapped in the secret check).
pub(crate) fn routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/raft/0/node", post(handle))
        .with_state(node)
}

async fn handle(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let env: Envelope = match decode(&body) {
        Ok(e) => e,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let timeout = Duration::from_millis(env.timeout_ms.min(120_000));
    let result: Result<Reply, NodeError> = node.serve_forwarded(env.rpc, timeout).await;
    match encode(&result) {
        Ok(b) => (StatusCode::OK, b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Sends `rpc` to `leader` and waits up to `timeout`.
///
/// # Errors
/// The leader's own error; [`NodeError::Unavailable`] when it cannot be reached (with
/// `retryable` set when the request was certainly not delivered, i.e. the connection
/// failed).
pub(crate) async fn call(
    http: &reqwest::Client,
    secret: &str,
    leader: &Peer,
    rpc: NodeRpc,
    timeout: Duration,
) -> Result<Reply, (NodeError, bool)> {
    let env = Envelope {
        rpc,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let body = encode(&env).map_err(|e| (NodeError::Internal(e.to_string()), false))?;
    let resp = http
        .post(format!("http://{}/raft/0/node", leader.addr.raft_addr))
        .header(cairn_raft::SECRET_HEADER, secret)
        .body(body)
        .timeout(timeout + Duration::from_secs(1))
        .send()
        .await
        .map_err(|e| {
            let retry = e.is_connect();
            (
                NodeError::Unavailable(format!("leader {} unreachable: {e}", leader.id)),
                retry,
            )
        })?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| {
        (
            NodeError::Unavailable(format!("reading the leader's answer: {e}")),
            false,
        )
    })?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes).to_string();
        let err = if status == StatusCode::UNAUTHORIZED {
            NodeError::Internal(format!(
                "the leader refused this node's cluster secret: {text}"
            ))
        } else {
            NodeError::Unavailable(format!("leader answered {status}: {text}"))
        };
        return Err((err, false));
    }
    let result: Result<Reply, NodeError> =
        decode(&bytes).map_err(|e| (NodeError::Internal(e.to_string()), false))?;
    result.map_err(|e| (e, false))
}
