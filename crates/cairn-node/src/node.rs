//! The node: one Raft group over the node's SQLite store. This file holds the `Node` and
//! its start; its operations live beside it by concern: `routing.rs` (to the leader),
//! `writes.rs`, `reads.rs`, `membership.rs`, `status_report.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use cairn_raft::server::{raft_routes, require_secret, LeaderContact, RaftGroups, RaftService};
use cairn_raft::{
    Command, LogClosed, LogFile, Network, NodeAddr, Raft, Response, Scheme, StateMachine,
};
use cairn_sql::{Statement, StatementResult, Store};
use openraft::async_runtime::WatchReceiver;
use openraft::{RaftMetrics, ServerState};

use crate::queue::Queue;
use crate::rpc::{self, Reply};
use crate::{NodeConfig, NodeError, Peer};

pub(crate) type Metrics = RaftMetrics<cairn_raft::TypeConfig>;

/// Most attempts one request makes to reach a leader before giving up (each attempt also
/// bounded by the request's timeout).
pub(crate) const MAX_ROUTE_ATTEMPTS: usize = 100;

/// How long [`Node::shutdown`] waits for the log file to be closed.
const LOG_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running node.
pub struct Node {
    pub(crate) id: u64,
    pub(crate) addr: NodeAddr,
    /// The scheme of every node's public API in this cluster (`NodeConfig::http_scheme`).
    pub(crate) http_scheme: Scheme,
    /// The scheme of every node's raft address (`NodeConfig::raft_scheme`).
    pub(crate) raft_scheme: Scheme,
    pub(crate) raft: Raft,
    pub(crate) store: Arc<Store>,
    /// Requests to peers' public APIs (joining, bootstrap, `/nodes` checks).
    pub(crate) http: reqwest::Client,
    /// Requests to peers' raft ports (forwarded commands, the join's TLS check); with node
    /// TLS it trusts the node CA alone.
    pub(crate) raft_http: reqwest::Client,
    pub(crate) secret: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) contact: Arc<LeaderContact>,
    pub(crate) queue: Queue,
    pub(crate) started: Instant,
    /// The Raft groups served on the raft port (`internal_router`): group 0, `raft`, only.
    pub(crate) groups: RaftGroups,
    /// Counters and histograms of `/metrics`.
    pub(crate) telemetry: crate::NodeMetrics,
    /// Reports when the Raft log's file has been let go of, after shutdown.
    log_closed: LogClosed,
}

/// Counts leader changes for `cairn_raft_leader_changes_total` (the first leader seen
/// counts as one), until Raft shuts down.
fn spawn_leader_watch(node: &Arc<Node>) {
    let mut rx = node.raft.metrics();
    let telemetry = node.telemetry.clone();
    tokio::spawn(async move {
        // The last leader known: a spell with none (lost touch, an election that failed)
        // followed by the same leader is not a change.
        let mut last = rx.borrow_watched().current_leader;
        if last.is_some() {
            telemetry.observe_leader_change();
        }
        while rx.changed().await.is_ok() {
            let now = rx.borrow_watched().current_leader;
            if now.is_some() && now != last {
                telemetry.observe_leader_change();
                last = now;
            }
        }
    });
}

pub(crate) fn elapsed_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl Node {
    /// Opens the node's storage in `cfg.data_dir` and starts its Raft. The node serves
    /// nothing until the caller mounts [`Node::internal_router`] on the raft address and the
    /// public API on the HTTP address, then calls `bootstrap`.
    ///
    /// # Errors
    /// [`NodeError::Internal`] when storage cannot be opened or Raft cannot start.
    pub async fn start(cfg: &NodeConfig) -> Result<Arc<Node>, NodeError> {
        let internal = |e: &dyn std::fmt::Display| NodeError::Internal(e.to_string());
        if cairn_sql::crash::ENABLED {
            tracing::warn!(
                "built with test-only failpoints: CAIRN_CRASH_AT and CAIRN_FAULT_AT can abort \
                 this node or fail its writes; do not run this build in production"
            );
        }
        for sub in ["raft", "sm", "snapshots", "spool", "tmp"] {
            std::fs::create_dir_all(cfg.data_dir.join(sub)).map_err(|e| internal(&e))?;
        }
        // tmp/ only holds backups being served; a crash mid-backup leaves one behind.
        for entry in std::fs::read_dir(cfg.data_dir.join("tmp")).map_err(|e| internal(&e))? {
            let path = entry.map_err(|e| internal(&e))?.path();
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing a leftover backup");
            }
        }
        let store = Arc::new(Store::open(&cfg.data_dir.join("sm")).map_err(|e| internal(&e))?);
        // One log file per node; this node runs group 0 only, so far.
        let log_file =
            LogFile::open(&cfg.data_dir.join("raft").join("log.redb")).map_err(|e| internal(&e))?;
        let log = log_file.group(0).map_err(|e| internal(&e))?;
        let log_closed = log_file.closed_watch();
        let telemetry = crate::NodeMetrics::new();
        let observed = telemetry.clone();
        let sm = StateMachine::open(store.clone(), &cfg.data_dir.join("snapshots"))
            .map_err(|e| internal(&e))?
            .with_observer(Arc::new(move |e| observed.observe_snapshot(e)));
        let builder = || {
            let b = reqwest::Client::builder()
                .tcp_nodelay(true)
                .no_proxy()
                // Requests carry the cluster secret: never let a redirect take it elsewhere.
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(Duration::from_secs(30));
            // Connect from the IP the raft address is bound to, so that peers (and the test
            // harness's fault-injecting proxies) see which node a connection comes from.
            match cfg.bind_ip.filter(|ip| !ip.is_unspecified()) {
                Some(ip) => b.local_address(ip),
                None => b,
            }
        };
        // `alpn`: what the client offers in a TLS handshake; it must match how it speaks.
        let with_tls = |tls: &Option<rustls::ClientConfig>, alpn: &[u8]| match tls {
            Some(tls) => {
                let mut tls = tls.clone();
                tls.alpn_protocols = vec![alpn.to_vec()];
                builder().use_preconfigured_tls(tls)
            }
            None => builder(),
        };
        if cfg.raft_scheme == Scheme::Https && cfg.raft_tls_client.is_none() {
            return Err(NodeError::Internal(
                "node-to-node HTTPS needs the node's TLS client config".into(),
            ));
        }
        // Two trust stores: peers' public APIs (the node CA and the HTTP CA), and peers'
        // raft ports (the node CA alone). The raft port is spoken to over one HTTP/2
        // connection per peer for every RPC and forwarded request (pipelined replication
        // needs both bodies to flow at once), and over HTTP/1.1 connections of their own for
        // snapshots (`cairn_raft::Network`).
        let http = with_tls(&cfg.tls_client, b"http/1.1")
            .http1_only()
            .build()
            .map_err(|e| internal(&e))?;
        let raft_http = with_tls(&cfg.raft_tls_client, b"h2")
            .http2_prior_knowledge()
            .http2_adaptive_window(true)
            // A peer that stops answering pings is dropped, and the next request
            // reconnects, instead of waiting on a dead connection until its own timeout.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| internal(&e))?;
        let snapshot_http = with_tls(&cfg.raft_tls_client, b"http/1.1")
            .http1_only()
            .build()
            .map_err(|e| internal(&e))?;
        let network = Network::new(
            raft_http.clone(),
            snapshot_http,
            cfg.cluster_secret.clone(),
            0,
        )
        .with_scheme(cfg.raft_scheme);
        let config = cfg.raft.config().map_err(|e| internal(&e))?;
        let raft = Raft::new(cfg.id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| internal(&e))?;
        let started = Instant::now();
        let contact = Arc::new(LeaderContact::default());
        let groups = RaftGroups::new();
        groups
            .insert(RaftService {
                raft: raft.clone(),
                group: 0,
                spool_dir: Arc::new(cfg.data_dir.join("spool")),
                contact: contact.clone(),
                votes_from: started + Duration::from_millis(raft.config().election_timeout_max),
            })
            .map_err(|e| internal(&e))?;
        let node = Arc::new(Node {
            id: cfg.id,
            addr: NodeAddr {
                http_addr: cfg.http_addr.clone(),
                raft_addr: cfg.raft_addr.clone(),
            },
            http_scheme: cfg.http_scheme,
            raft_scheme: cfg.raft_scheme,
            raft,
            store,
            http,
            raft_http,
            secret: cfg.cluster_secret.clone(),
            data_dir: cfg.data_dir.clone(),
            contact,
            queue: Queue::new(),
            started,
            groups,
            telemetry,
            log_closed,
        });
        Queue::spawn_flusher(Arc::downgrade(&node));
        spawn_leader_watch(&node);
        Ok(node)
    }

    /// The routes served on the raft address: Raft's RPCs and the internal node RPC, all
    /// behind the cluster-secret check.
    pub fn internal_router(self: &Arc<Self>) -> Router {
        raft_routes(self.groups.clone())
            .merge(rpc::routes(self.clone()))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(self.secret.clone()),
                require_secret,
            ))
    }

    /// Stops Raft (for a clean shutdown), then waits up to [`LOG_CLOSE_TIMEOUT`] for its
    /// tasks and threads to let go of the log file, so the data directory can be opened
    /// again at once (a node restarted in the same process).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let deadline = Instant::now() + LOG_CLOSE_TIMEOUT;
        while !self.log_closed.is_closed() {
            if Instant::now() >= deadline {
                tracing::warn!("the Raft log is still open after shutdown");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This node's addresses.
    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    /// How the cluster's nodes serve their public API (`https` with HTTP TLS).
    pub fn http_scheme(&self) -> Scheme {
        self.http_scheme
    }

    /// How the cluster's nodes serve their raft address (`https`, mutual, with node TLS):
    /// the scheme of a URL to any member's raft port.
    pub fn raft_scheme(&self) -> Scheme {
        self.raft_scheme
    }

    pub(crate) fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Member `id` as this node hands it out: its addresses with the cluster's HTTP scheme
    /// (so that `Peer::http_url` says `https://` on a cluster that serves HTTPS).
    pub(crate) fn peer(&self, m: &Metrics, id: u64) -> Option<Peer> {
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|addr| Peer {
                id,
                addr: addr.clone().with_http_scheme(self.http_scheme),
            })
    }

    /// The base URL of a member's public API, with the cluster's scheme.
    pub(crate) fn api_url(&self, addr: &NodeAddr) -> String {
        addr.clone().with_http_scheme(self.http_scheme).http_url()
    }

    /// The leader this node currently knows of.
    pub fn leader(&self) -> Option<Peer> {
        let m = self.metrics();
        m.current_leader.and_then(|id| self.peer(&m, id))
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        let m = self.metrics();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    pub(crate) fn not_leader(&self) -> NodeError {
        NodeError::NotLeader {
            leader: self.leader().filter(|l| l.id != self.id),
        }
    }
}

/// The database a data command writes to (`None` for commands that manage databases).
pub(crate) fn cmd_database(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::Execute { db, .. }
        | Command::Script { db, .. }
        | Command::Load { db, .. }
        | Command::Query { db, .. } => Some(db),
        Command::Queued { .. } | Command::CreateDatabase { .. } | Command::DropDatabase { .. } => {
            None
        }
    }
}

pub(crate) fn unexpected(r: Reply) -> NodeError {
    NodeError::Internal(format!("unexpected reply from the leader: {r:?}"))
}

pub(crate) fn into_results(r: Response) -> Result<Vec<StatementResult>, NodeError> {
    match r.error {
        Some(e) => Err(e.into()),
        None => Ok(r.results),
    }
}

/// Refuses an empty statement list.
pub(crate) fn non_empty(stmts: Vec<Statement>) -> Result<Vec<Statement>, NodeError> {
    if stmts.is_empty() {
        return Err(NodeError::BadRequest("empty statement list".into()));
    }
    Ok(stmts)
}
