//! A Cairn node: hosts the Raft group, applies consistency levels to reads, forwards
//! writes to the leader, manages membership (bootstrap, join, remove, leader transfer) and
//! reports status.
//!
//! Write path: `Node::execute` -> (`forward` to the leader's internal RPC when this node is
//! a follower) -> `Raft::client_write` -> `LogStore::append` -> `StateMachine::apply` ->
//! `Store::apply_execute`.

mod bootstrap;
mod error;
mod membership;
mod metrics;
mod node;
mod queue;
mod reads;
mod routing;
mod rpc;
mod status;
mod status_report;
mod writes;

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use cairn_raft::server::Stopping;
pub use cairn_raft::{NodeAddr, RaftSettings, Scheme, SECRET_HEADER};
pub use error::{CommandError, NodeError};
pub use metrics::{NodeMetrics, OpKind, RaftGauges, METRICS_CONTENT_TYPE};
pub use node::Node;
pub use status::{
    friendly_bytes, go_duration, BuildStatus, ClusterStatus, DatabaseStatus, DbConf,
    FollowerProgress, HttpStatus, NodeEntry, NodeStatus, OsStatus, RaftStatus, RuntimeStatus,
    SqliteStatus, Status, StoreLeader, StoreRaft, StoreServer, StoreStatus,
};

/// Header carrying the node's version on every API response, under rqlite's name
/// (`http/service.go` `VersionHTTPHeader`); `/nodes` reads it from each member.
pub const VERSION_HEADER: &str = "X-RQLITE-VERSION";

/// Read consistency levels, with rqlite's names and meanings
/// (<https://rqlite.io/docs/api/read-consistency/>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Level {
    /// Read this node's replica, whatever its role; may be stale (bounded by `freshness`).
    None,
    /// The leader reads its replica after checking locally that it is the leader; stale only
    /// in the short window where a deposed leader has not noticed yet. rqlite's default.
    #[default]
    Weak,
    /// The leader confirms its leadership with a quorum (Raft §6.4 ReadIndex) and waits
    /// until it has applied the commit index, then reads: never stale.
    Linearizable,
    /// The read goes through the Raft log like a write: never stale, and slow.
    Strong,
    /// `none` on learners (read-only nodes), `weak` elsewhere.
    Auto,
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Level::None),
            "weak" | "" => Ok(Level::Weak),
            "linearizable" => Ok(Level::Linearizable),
            "strong" => Ok(Level::Strong),
            "auto" => Ok(Level::Auto),
            other => Err(format!("unknown consistency level {other:?}")),
        }
    }
}

/// A member of the cluster: its id and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Node id.
    pub id: u64,
    /// Its addresses.
    pub addr: NodeAddr,
}

impl Peer {
    /// The base URL of its public API, `http://HOST:PORT` or `https://HOST:PORT`: the
    /// peers a node hands out carry its cluster's scheme (see `NodeAddr::with_http_scheme`).
    pub fn http_url(&self) -> String {
        self.addr.http_url()
    }

    /// rqlite's description of a node: `{"id","api_addr","addr"}`.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id.to_string(),
            "api_addr": self.http_url(),
            "addr": self.addr.raft_addr,
        })
    }
}

/// A request to join the cluster, sent by a new node to any member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinRequest {
    /// The new node's id.
    pub id: u64,
    /// Its public HTTP address, `HOST:PORT`.
    pub http_addr: String,
    /// Its node-to-node RPC address, `HOST:PORT`.
    pub raft_addr: String,
}

/// The body of `/db/load`.
#[derive(Debug, Clone)]
pub enum LoadPayload {
    /// A SQLite database file.
    Sqlite(Vec<u8>),
    /// A SQL script.
    Script(String),
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id; unique in the cluster, never reused.
    pub id: u64,
    /// The bound public HTTP address, `HOST:PORT` (the real port when 0 was asked for).
    pub http_addr: String,
    /// The bound node-to-node RPC address, `HOST:PORT`.
    pub raft_addr: String,
    /// Where the log, the databases and snapshots live.
    pub data_dir: PathBuf,
    /// Shared by every node of the cluster; authenticates node-to-node traffic.
    pub cluster_secret: String,
    /// HTTP URLs of members to join through (or of all peers, with `bootstrap_expect`).
    pub join: Vec<String>,
    /// Form a new cluster once this many nodes (this one included) know each other.
    pub bootstrap_expect: Option<usize>,
    /// Raft timings and snapshot policy.
    pub raft: RaftSettings,
    /// The IP the raft listener is bound to; outgoing node-to-node connections use it as
    /// their source address (unless it is unspecified, e.g. 0.0.0.0).
    pub bind_ip: Option<std::net::IpAddr>,
    /// How every node of the cluster serves its public API: the scheme of the URLs this
    /// node hands out (`/nodes`, redirects, the leader in errors, `/status`) and of `--join`
    /// URLs given without one.
    pub http_scheme: Scheme,
    /// How every node of the cluster serves its raft address: the scheme of all
    /// node-to-node requests. [`Scheme::Https`] needs `tls_client`.
    pub raft_scheme: Scheme,
    /// The TLS config of this node's client (node-to-node traffic and calls to peers'
    /// public APIs): its certificate and the CAs it trusts. `None`: the client trusts no
    /// one, and speaks plain HTTP only.
    pub tls_client: Option<rustls::ClientConfig>,
    /// TLS for requests to peers' raft ports: trusts the node CA alone. [`Scheme::Https`]
    /// for `raft_scheme` needs it.
    pub raft_tls_client: Option<rustls::ClientConfig>,
}
