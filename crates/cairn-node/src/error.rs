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
    /// A peer could not be reached for a read or a status request. (Writes answer
    /// [`NodeError::NotApplied`] or [`NodeError::OutcomeUnknown`] instead.)
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
    // New variants go last: this enum crosses the wire (postcard numbers variants), and
    // nodes of two versions may talk during an upgrade.
    /// A write that certainly changed nothing and may be retried as is: no leader took it
    /// (the connection to the leader was refused, or every leader tried answered that it no
    /// longer leads, before proposing).
    #[error("not applied: {0}")]
    NotApplied(String),
    /// A write whose outcome this node cannot know: it reached the leader (or was proposed)
    /// and then the answer was lost (connection broken, timeout, leadership changed while the
    /// entry was in flight). It may have been applied, or may still be; retry only if the
    /// write is idempotent, or read to find out.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The command's encoding is larger than one log entry may be
    /// (`cairn_raft::MAX_ENTRY_BYTES`); refused before proposing, so it changed nothing.
    #[error("entry too large: the write encodes to {bytes} bytes, more than the {max} bytes one log entry may hold")]
    EntryTooLarge {
        /// The command's encoded size, in bytes.
        bytes: u64,
        /// `cairn_raft::MAX_ENTRY_BYTES`.
        max: u64,
    },
}

impl NodeError {
    /// Refuses a command that would not fit in one log entry.
    ///
    /// # Errors
    /// [`NodeError::EntryTooLarge`] when `bytes` exceeds `max`.
    pub(crate) fn check_entry_size(bytes: usize, max: usize) -> Result<(), NodeError> {
        if bytes <= max {
            return Ok(());
        }
        let to_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Err(NodeError::EntryTooLarge {
            bytes: to_u64(bytes),
            max: to_u64(max),
        })
    }
}

impl From<cairn_sql::Error> for NodeError {
    fn from(e: cairn_sql::Error) -> Self {
        NodeError::Command(CommandError::from(e))
    }
}
