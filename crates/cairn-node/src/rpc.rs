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
use cairn_raft::{decode, encode, Command, Scheme};
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
    /// Whether the leader has database `db`: answers `Reply::Done`, or
    /// `Command(NoSuchDatabase)`. New variants go last (the enum crosses the wire).
    HasDatabase(String),
}

impl NodeRpc {
    /// Whether the operation changes the cluster's state (goes through the log), so that a
    /// lost answer leaves its outcome unknown.
    pub(crate) fn changes_state(&self) -> bool {
        match self {
            NodeRpc::Write(Command::Query { .. }) => false,
            NodeRpc::Write(_) | NodeRpc::Join(_) | NodeRpc::Remove(_) | NodeRpc::StepDown => true,
            NodeRpc::Query { .. } | NodeRpc::CommitIndex | NodeRpc::HasDatabase(_) => false,
        }
    }

    /// What the operation is, for `cairn_forwarded_requests_total`.
    pub(crate) fn op_kind(&self) -> crate::OpKind {
        match self {
            NodeRpc::Write(Command::Query { .. }) | NodeRpc::Query { .. } => crate::OpKind::Read,
            NodeRpc::Write(_) => crate::OpKind::Write,
            _ => crate::OpKind::Other,
        }
    }
}

/// Why a call to the leader failed, by what it means for the operation's outcome.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The request certainly did not reach the leader's handler (the connection was
    /// refused): nothing happened, and it is safe to retry at once.
    NotSent(String),
    /// The leader refused the request before running it (e.g. a wrong secret, a body it
    /// could not decode): nothing happened, and a retry would get the same answer.
    Refused(NodeError),
    /// The request was sent and the answer was lost (connection broken, timeout, a server
    /// error after the handler ran): the operation may or may not have happened.
    Lost(String),
    /// The leader's own answer.
    Remote(NodeError),
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

impl Node {
    /// The leader this node knows of, if this node is still in touch with it (or is it).
    ///
    /// With Pre-Vote, a follower cut off from its leader keeps the leader's id: it does not
    /// start an election (and so forget the leader) until a quorum would grant it. The id
    /// alone therefore does not say that a leader is reachable; this answers `None` once the
    /// follower has not heard from its leader for twice the longest election timeout
    /// (openraft's vote lease, renewed by every `AppendEntries` from the leader).
    pub async fn live_leader(&self) -> Option<Peer> {
        let leader = self.leader()?;
        if leader.id == self.id {
            return Some(leader);
        }
        // The time of the last AppendEntries accepted from the leader, kept by the raft
        // server: the same moment openraft renews its vote lease at, read without a round
        // trip to the Raft core on every forwarded request.
        let max_ms = self.raft.config().election_timeout_max.saturating_mul(2);
        let fresh = self.contact.elapsed_ms().is_some_and(|ms| ms <= max_ms);
        fresh.then_some(leader)
    }
}

/// Routes for the internal node RPC (to be wrapped in the secret check). A forwarded command
/// may be as large as `MAX_ENTRY_BYTES`, so the body limit is the raft transport's.
pub(crate) fn routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/raft/0/node", post(handle))
        .layer(cairn_raft::server::rpc_body_limit())
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

/// Sends `rpc` to `leader`'s raft address over `scheme` and waits up to `timeout`.
///
/// # Errors
/// A [`CallError`] saying whether the request certainly did not run
/// ([`CallError::NotSent`], [`CallError::Refused`]), may have run ([`CallError::Lost`]), or
/// what the leader answered ([`CallError::Remote`]).
pub(crate) async fn call(
    http: &reqwest::Client,
    secret: &str,
    scheme: Scheme,
    leader: &Peer,
    rpc: NodeRpc,
    timeout: Duration,
) -> Result<Reply, CallError> {
    let env = Envelope {
        rpc,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let body = encode(&env).map_err(|e| CallError::Refused(NodeError::Internal(e.to_string())))?;
    let resp = http
        .post(format!(
            "{}/raft/0/node",
            scheme.url(&leader.addr.raft_addr)
        ))
        .header(cairn_raft::SECRET_HEADER, secret)
        .body(body)
        .timeout(timeout + Duration::from_secs(1))
        .send()
        .await
        .map_err(|e| {
            let msg = format!("leader {} unreachable: {e}", leader.id);
            // Only a failed connect proves the request never left: a timeout or a reset
            // may come after the leader received it.
            if e.is_connect() {
                CallError::NotSent(msg)
            } else {
                CallError::Lost(msg)
            }
        })?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| CallError::Lost(format!("reading the answer of leader {}: {e}", leader.id)))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes).to_string();
        return Err(if status == StatusCode::UNAUTHORIZED {
            CallError::Refused(NodeError::Internal(format!(
                "the leader refused this node's cluster secret: {text}"
            )))
        } else if status.is_client_error() {
            // 4xx come from the router or the decoder, before `serve_forwarded` runs.
            CallError::Refused(NodeError::NotApplied(format!(
                "leader {} refused the request with {status}: {text}",
                leader.id
            )))
        } else {
            CallError::Lost(format!("leader {} answered {status}: {text}", leader.id))
        });
    }
    let result: Result<Reply, NodeError> = decode(&bytes)
        .map_err(|e| CallError::Lost(format!("undecodable answer from the leader: {e}")))?;
    result.map_err(CallError::Remote)
}
