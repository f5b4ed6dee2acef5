//! Cairn's Raft integration: the openraft type configuration, the redb [`LogFile`] with one
//! [`LogStore`] per group, the SQLite [`StateMachine`], and node-to-node RPC ([`Network`]
//! client, [`server`] routes).

mod command;
mod log_store;
mod network;
pub mod server;
mod state_machine;

pub use command::{Command, CommandError, NodeAddr, Response, Scheme};
pub use log_store::{LogClosed, LogFile, LogStore};
pub use network::{decode, encode, Network};
pub use state_machine::{SnapshotEvent, SnapshotObserver, StateMachine};

openraft::declare_raft_types!(
    /// Cairn's Raft types: commands in, responses out, `u64` node ids, nodes known by their
    /// two addresses.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = NodeAddr,
);

/// A Raft group handle.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// Header carrying the cluster secret on every node-to-node request.
pub const SECRET_HEADER: &str = "x-cairn-secret";

/// Header carrying a streamed snapshot's `(vote, meta)` as JSON.
pub const SNAPSHOT_META_HEADER: &str = "x-cairn-snapshot-meta";

/// Largest [`Command`] one log entry may carry, in bytes of its postcard encoding (what
/// travels in `AppendEntries` and is stored in the log): 16 MiB.
///
/// The leader checks it before proposing ([`Command::encoded_size`]); a larger command is
/// refused (HTTP 413 `entry_too_large`) before it takes a log index, so it changes nothing.
/// Every limit on the way is derived from it: the public API's body limit, the forwarding
/// RPC and [`MAX_RPC_BODY_BYTES`], so that an entry the leader accepted is always accepted by
/// every follower's transport.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

/// Most entries in one `AppendEntries` request (openraft's `max_payload_entries`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 256;

/// Room for everything in an RPC body besides the commands: log ids, vote, membership
/// entries, the forwarding envelope. Generous: these are a few hundred bytes.
const RPC_OVERHEAD_BYTES: usize = 1024 * 1024;

/// Largest body the raft router accepts from an authenticated peer, in bytes: a full
/// `AppendEntries` batch of [`MAX_PAYLOAD_ENTRIES`] entries of [`MAX_ENTRY_BYTES`] each, plus
/// overhead (so it also covers a forwarded command). Snapshots are streamed and not bounded
/// by it. The secret is checked before any body is read.
pub const MAX_RPC_BODY_BYTES: usize = (MAX_PAYLOAD_ENTRIES as usize)
    .saturating_mul(MAX_ENTRY_BYTES + 4096)
    .saturating_add(RPC_OVERHEAD_BYTES);

/// Raft timing and snapshot settings.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// Leader heartbeat interval, in milliseconds.
    pub heartbeat_ms: u64,
    /// Election timeout range, in milliseconds (Raft §5.2: randomized to avoid split votes).
    pub election_timeout_ms: (u64, u64),
    /// Log entries between snapshots.
    pub snapshot_threshold: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        // An election starts 100–200 ms after the last heartbeat, but a follower refuses to
        // vote until openraft's leader lease (`election_timeout_max`) has run out since it
        // last heard from the leader, so a crashed leader is replaced 200–400 ms after its
        // last heartbeat (measured by `cairn bench --workload failover`: median about
        // 390 ms; with 150–300 ms it was about 560 ms). Heartbeats every 30 ms keep a
        // follower's lease renewed several times within it.
        RaftSettings {
            heartbeat_ms: 30,
            election_timeout_ms: (100, 200),
            snapshot_threshold: 8192,
        }
    }
}

impl RaftSettings {
    /// The openraft configuration these settings give.
    ///
    /// # Errors
    /// When the values are inconsistent (e.g. heartbeat not below the election timeout).
    pub fn config(&self) -> Result<openraft::Config, openraft::ConfigError> {
        openraft::Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms.0,
            election_timeout_max: self.election_timeout_ms.1,
            install_snapshot_timeout: 120_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_threshold),
            max_in_snapshot_log_to_keep: (self.snapshot_threshold / 2).min(1000),
            purge_batch_size: (self.snapshot_threshold / 4).clamp(1, 256),
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            // A follower that was paused or cut off asks before it bumps its term, so it
            // cannot depose a healthy leader when it comes back (Raft thesis §9.6). Needs
            // the `pre-vote` RPC (`network.rs`, `server.rs`).
            enable_pre_vote: Some(true),
            // Entries go to the followers as soon as they are in the leader's log, not once
            // the leader's own fsync is done: the leader's fsync and the followers' run side
            // by side (Raft §10.2.1 of the thesis: the leader may write its log in parallel
            // with replicating it). Commit still needs a quorum of durable copies, the
            // leader's counted only once flushed.
            broadcast_submitted_on_append: Some(true),
            ..Default::default()
        }
        .validate()
    }
}
