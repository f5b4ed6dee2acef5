//! The node's errors. `NotLeader` is defined here once and matched everywhere.

use serde::{Deserialize, Serialize};

pub use cairn_raft::CommandError;

use crate::Peer;

/// Why a node could not serve a request.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum NodeError {
    /// The operation is the leader's alone and this node is not the leader.
    #[error("not the leader{}", .leader.as_ref().map(|l| format!(": the leader is node {} at {}", l.id, l.http_url())).unwrap_or_default())]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<Peer>,
    },
    /// No leader is known (an election is under way, or there is no quorum).
    #[error(
        "no leader: the cluster has no leader at the moment (election in progress or no quorum)"
    )]
    NoLeader,
    /// A `level=none` read with `freshness`, on a node that has not heard from the leader
    /// recently enough.
    #[error("stale read: last contact with the leader was {last_contact_ms} ms ago, more than the freshness of {freshness_ms} ms")]
    StaleRead {
        /// Milliseconds since the last message from the leader (`u64::MAX` when never).
        last_contact_ms: u64,
        /// The bound the client asked for, in milliseconds.
        freshness_ms: u64,
    },
    /// The operation did not finish within its timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A peer could not be reached, or the outcome of a forwarded write is unknown.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Missing or wrong cluster secret.
    #[error("missing or wrong cluster secret")]
    Unauthorized,
    /// Malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// Something the request named does not exist (e.g. a node id).
    #[error("{0}")]
    NotFound(String),
    /// A failure inside this node.
    #[error("internal error: {0}")]
    Internal(String),
    /// The replicated command failed as a whole.
    #[error("{0}")]
    Command(#[from] CommandError),
}

impl From<cairn_sql::Error> for NodeError {
    fn from(e: cairn_sql::Error) -> Self {
        NodeError::Command(CommandError::from(e))
    }
}
