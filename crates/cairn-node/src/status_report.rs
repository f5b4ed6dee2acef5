//! This node's view of itself and its peers, as `/status` and `/nodes` report it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_raft::{NodeAddr, Scheme};
use openraft::ServerState;

use crate::node::Node;
use crate::status::{
    self, BuildStatus, ClusterStatus, DatabaseStatus, DbConf, FollowerProgress, HttpStatus,
    NodeEntry, NodeStatus, OsStatus, RaftStatus, RuntimeStatus, SqliteStatus, Status, StoreLeader,
    StoreRaft, StoreServer, StoreStatus,
};
use crate::VERSION_HEADER;

/// The highest index known committed: the quorum's, else this node's own.
fn commit_index(m: &crate::node::Metrics) -> Option<u64> {
    m.cluster_committed
        .as_ref()
        .or(m.local_committed.as_ref())
        .map(|l| l.index)
}

impl Node {
    /// On the leader, each other member's progress (empty elsewhere).
    pub(crate) fn replication(&self, m: &crate::node::Metrics) -> Vec<FollowerProgress> {
        let (Some(replication), true) = (&m.replication, m.state == ServerState::Leader) else {
            return Vec::new();
        };
        use openraft::Instant as _;
        let last = m.last_log_index.unwrap_or(0);
        replication
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(&node_id, matched)| {
                let matched_index = matched.as_ref().map(|l| l.index);
                let last_ack_ms = m
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(&node_id).cloned().flatten())
                    .map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX));
                FollowerProgress {
                    node_id,
                    matched_index,
                    lag_entries: last.saturating_sub(matched_index.unwrap_or(0)),
                    last_ack_ms,
                }
            })
            .collect()
    }

    /// The text of `GET /metrics` (Prometheus/OpenMetrics; see [`crate::NodeMetrics`]):
    /// counters as they stand, gauges read from Raft and the store now.
    pub fn render_metrics(&self) -> String {
        let m = self.metrics();
        let commit_index = commit_index(&m);
        let followers = self
            .replication(&m)
            .into_iter()
            .map(|f| {
                (
                    f.node_id,
                    f.matched_index,
                    f.lag_entries,
                    f.last_ack_ms.map(|ms| ms as f64 / 1000.0),
                )
            })
            .collect();
        let log_bytes =
            std::fs::metadata(self.data_dir.join("raft").join("log.redb")).map_or(0, |md| md.len());
        self.telemetry.render(&crate::RaftGauges {
            term: m.current_term,
            is_leader: m.state == ServerState::Leader && m.current_leader == Some(self.id),
            last_log_index: m.last_log_index,
            commit_index,
            applied_index: m.last_applied.as_ref().map(|l| l.index),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            purged_index: m.purged.as_ref().map(|l| l.index),
            followers,
            log_bytes,
            databases: self.store.databases(),
        })
    }

    /// This node's counters and histograms, for the API layer to record requests in.
    pub fn telemetry(&self) -> &crate::NodeMetrics {
        &self.telemetry
    }

    /// Node, Raft and store status: rqlite's `/status` sections and Cairn's `raft` (see
    /// [`Status`]).
    pub fn status(&self) -> Status {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let leader = m.current_leader.and_then(|id| self.peer(&m, id));
        let voters: Vec<u64> = membership.voter_ids().collect();
        let commit_index = commit_index(&m);
        let applied_index = m.last_applied.as_ref().map(|l| l.index);
        let state = format!("{:?}", m.state);
        let raft = RaftStatus {
            state: state.clone(),
            leader_id: m.current_leader,
            leader_api_addr: leader.as_ref().map(|l| l.http_url()),
            term: m.current_term,
            last_log_index: m.last_log_index,
            commit_index,
            applied_index,
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            purged_index: m.purged.as_ref().map(|l| l.index),
            voters: voters.clone(),
            learners: membership.learner_ids().collect(),
            last_contact_ms: if m.state == ServerState::Leader {
                None
            } else {
                self.contact.elapsed_ms()
            },
            replication: self.replication(&m),
        };
        let databases: Vec<DatabaseStatus> = self
            .store
            .databases()
            .into_iter()
            .map(|(name, size_bytes)| DatabaseStatus { name, size_bytes })
            .collect();
        let main_size = databases
            .iter()
            .find(|d| d.name == cairn_sql::DEFAULT_DATABASE)
            .map_or(0, |d| d.size_bytes);
        let dir_size = status::dir_size(&self.data_dir);
        let uptime = self.started.elapsed();
        let now = chrono::Utc::now();
        let started = chrono::Duration::from_std(uptime).map_or(now, |d| now - d);
        let rfc3339 = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        };
        let store = StoreStatus {
            open: true,
            ready: m.current_leader.is_some(),
            node_id: self.id.to_string(),
            addr: self.addr.raft_addr.clone(),
            leader: StoreLeader {
                node_id: m
                    .current_leader
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                addr: leader.map(|l| l.addr.raft_addr).unwrap_or_default(),
            },
            raft: StoreRaft {
                state,
                term: m.current_term,
                last_log_index: m.last_log_index.unwrap_or(0),
                commit_index: commit_index.unwrap_or(0),
                applied_index: applied_index.unwrap_or(0),
                last_snapshot_index: m.snapshot.as_ref().map_or(0, |l| l.index),
                num_peers: voters.iter().filter(|&&v| v != self.id).count() as u64,
                voter: voters.contains(&self.id),
            },
            fsm_index: applied_index.unwrap_or(0),
            db_applied_index: applied_index.unwrap_or(0),
            nodes: membership
                .nodes()
                .map(|(id, n)| StoreServer {
                    id: id.to_string(),
                    addr: n.raft_addr.clone(),
                    suffrage: if voters.contains(id) {
                        "Voter"
                    } else {
                        "Nonvoter"
                    },
                })
                .collect(),
            dir_size,
            dir_size_friendly: status::friendly_bytes(dir_size),
            sqlite3: SqliteStatus {
                version: rusqlite::version(),
                db_size: main_size,
                db_size_friendly: status::friendly_bytes(main_size),
            },
            db_conf: DbConf {
                fk_constraints: true,
            },
            databases,
        };
        Status {
            build: BuildStatus::current(),
            http: HttpStatus {
                bind_addr: self.addr.http_addr.clone(),
                auth: "disabled",
                cluster: ClusterStatus {
                    addr: self.addr.raft_addr.clone(),
                    https: if self.http_scheme == Scheme::Https {
                        "true"
                    } else {
                        "false"
                    },
                    api_addr: self.api_url(&self.addr),
                },
            },
            node: NodeStatus {
                id: self.id,
                http_addr: self.addr.http_addr.clone(),
                raft_addr: self.addr.raft_addr.clone(),
                api_addr: self.api_url(&self.addr),
                version: env!("CARGO_PKG_VERSION"),
                uptime_s: uptime.as_secs_f64(),
                start_time: rfc3339(started),
                current_time: rfc3339(now),
                uptime: status::go_duration(uptime),
            },
            os: OsStatus::current(),
            runtime: RuntimeStatus::current(),
            store,
            raft,
        }
    }

    /// Every member with its role and whether it answers right now, as rqlite's `/nodes`
    /// reports them (`http/nodes.go`): each node, this one included, is asked for
    /// `/readyz?noleader` over HTTP with a 1-second timeout, all at once; a reachable entry
    /// carries the version from its `X-RQLITE-VERSION` header and how long the check took,
    /// an unreachable one the error.
    pub async fn nodes(&self) -> Vec<NodeEntry> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members: Vec<(u64, NodeAddr)> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        let checks = members.iter().map(|(_, addr)| async move {
            let start = Instant::now();
            let reply = self
                .http
                .get(format!("{}/readyz?noleader", self.api_url(addr)))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            let took = start.elapsed();
            match reply {
                // A peer with `--auth` whose `*` user lacks `ready` answers 401: it answered,
                // so it is reachable. The cluster secret is not sent for this: `/nodes` is
                // asked by users, and the secret would travel to every member's public port.
                Ok(r)
                    if r.status().is_success()
                        || r.status() == reqwest::StatusCode::UNAUTHORIZED =>
                {
                    let version = r
                        .headers()
                        .get(VERSION_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .filter(|v| !v.is_empty())
                        .unwrap_or("unknown")
                        .to_string();
                    Ok((version, took))
                }
                Ok(r) => Err(format!("node answered {}", r.status())),
                Err(e) if e.is_timeout() => Err("timeout waiting for node to respond".into()),
                Err(e) => Err(e.to_string()),
            }
        });
        let checked = futures::future::join_all(checks).await;
        members
            .into_iter()
            .zip(checked)
            .map(|((id, addr), check)| {
                let (version, time, time_s, error) = match check {
                    Ok((version, took)) => (
                        version,
                        Some(took.as_secs_f64()),
                        Some(status::go_duration(took)),
                        None,
                    ),
                    Err(e) => (String::new(), None, None, Some(e)),
                };
                NodeEntry {
                    id: id.to_string(),
                    api_addr: self.api_url(&addr),
                    addr: addr.raft_addr.clone(),
                    version,
                    voter: voters.contains(&id),
                    reachable: error.is_none(),
                    leader: error.is_none() && m.current_leader == Some(id),
                    time,
                    time_s,
                    error,
                }
            })
            .collect()
    }
}
