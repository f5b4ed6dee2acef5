//! Cairn's Raft integration: the openraft type configuration, the redb [`LogStore`], the
//! SQLite [`StateMachine`], and node-to-node RPC ([`Network`] client, [`server`] routes).

mod command;
mod log_store;
mod network;
pub mod server;
mod state_machine;

pub use command::{Command, CommandError, NodeAddr, Response};
pub use log_store::LogStore;
pub use network::{decode, encode, Network};
pub use state_machine::StateMachine;

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
        RaftSettings {
            heartbeat_ms: 50,
            election_timeout_ms: (150, 300),
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
            max_payload_entries: 256,
            ..Default::default()
        }
        .validate()
    }
}
