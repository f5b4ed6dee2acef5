//! The dashboard's state: a [`Snapshot`] of the cluster as one refresh saw it, assembled
//! from each node's `/status` and its load, without any I/O (the collector fetches, the
//! renderer draws, tests feed recorded documents).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::load::{Load, LoadDelta};

/// Everything one screen shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The `--addr` the dashboard started from.
    pub source: String,
    /// The refresh interval.
    pub interval: Duration,
    /// When the documents were fetched, as shown (`"05:32:46 UTC"`); empty before the first
    /// refresh.
    pub taken_at: String,
    /// Every known node, by id (a node whose id is not known yet last).
    pub nodes: Vec<NodeRow>,
    /// The id of the leader: the reachable node that says it leads, with the highest term.
    pub leader: Option<u64>,
    /// The leader's view of its followers (`raft.replication`); `None` when there is no
    /// reachable leader or it does not report replication.
    pub replication: Option<Vec<Follower>>,
    /// Load summed over the nodes.
    pub cluster_load: Load,
    /// Databases as the leader (or the first reachable node) lists them.
    pub databases: Vec<DatabaseRow>,
    /// Why nodes could not be read, one line each (`"node 3: connection refused"`).
    pub errors: Vec<String>,
    /// The outcome of the last key action (`s`), shown in the footer.
    pub notice: Option<String>,
}

/// Whether a node answered this refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// `/status` answered.
    Up,
    /// No answer (refused, timed out, reset).
    Unreachable,
    /// An answer that is not a status document (an HTTP error, say 401).
    Error,
}

/// One node's row.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// Node id; `None` while only the address is known.
    pub id: Option<u64>,
    /// Its API URL.
    pub api_addr: String,
    /// Whether it answered this refresh.
    pub reach: Reach,
    /// Its Raft state as it reports it (`Leader`, `Follower`, `Candidate`, `Learner`).
    pub role: Option<String>,
    /// Whether it is the [`Snapshot::leader`].
    pub is_leader: bool,
    /// Its current term.
    pub term: Option<u64>,
    /// Milliseconds since its leader last reached it (followers).
    pub last_contact_ms: Option<u64>,
    /// How long ago it last answered, when it did not answer this refresh.
    pub last_seen: Option<Duration>,
    /// Index of the last entry in its log.
    pub last_log_index: Option<u64>,
    /// Its commit index.
    pub commit_index: Option<u64>,
    /// Its applied index.
    pub applied_index: Option<u64>,
    /// What it served since the previous refresh.
    pub load: Load,
}

/// One follower as the leader sees it (`raft.replication[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// The follower's id.
    pub node_id: u64,
    /// The highest log index the leader knows it holds; `None` before the first ack.
    pub matched_index: Option<u64>,
    /// How many entries it is behind the leader's log.
    pub lag_entries: Option<u64>,
    /// Milliseconds since it last acknowledged the leader; `None` before the first ack.
    pub last_ack_ms: Option<u64>,
}

/// One database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRow {
    /// Its name.
    pub name: String,
    /// Its SQLite file's size in bytes.
    pub size_bytes: u64,
    /// Its tables, `None` until they have been read.
    pub tables: Option<Vec<String>>,
}

/// What one refresh learned about one node, the input of [`assemble`].
#[derive(Debug, Clone)]
pub struct NodeInput {
    /// Its id if membership or an earlier answer gave it.
    pub id: Option<u64>,
    /// Its API URL.
    pub api_addr: String,
    /// Its `/status` document, or why there is none with whether it answered at all.
    pub status: Result<Value, (Reach, String)>,
    /// What it served since the previous refresh; `None` without two `/metrics` samples.
    pub load: Option<LoadDelta>,
    /// How long ago it last answered `/status` (for one that did not answer now).
    pub last_seen: Option<Duration>,
}

/// The fields of `/status` the dashboard shows, read leniently: anything missing or of the
/// wrong type is `None` (a node of another version, or not a Cairn node at all).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusView {
    /// `node.id`.
    pub id: Option<u64>,
    /// `raft.state`.
    pub state: Option<String>,
    /// `raft.term`.
    pub term: Option<u64>,
    /// `raft.leader_id`.
    pub leader_id: Option<u64>,
    /// `raft.leader_api_addr`.
    pub leader_api_addr: Option<String>,
    /// `raft.last_log_index`.
    pub last_log_index: Option<u64>,
    /// `raft.commit_index`.
    pub commit_index: Option<u64>,
    /// `raft.applied_index`.
    pub applied_index: Option<u64>,
    /// `raft.last_contact_ms`.
    pub last_contact_ms: Option<u64>,
    /// `raft.replication`, when present (the leader).
    pub replication: Option<Vec<Follower>>,
    /// `store.databases`: `(name, size_bytes)`.
    pub databases: Vec<(String, u64)>,
}

impl StatusView {
    /// Reads the dashboard's fields out of a `/status` body.
    pub fn read(status: &Value) -> StatusView {
        let raft = &status["raft"];
        let u64_at = |v: &Value| v.as_u64();
        let replication = raft["replication"].as_array().map(|list| {
            list.iter()
                .filter_map(|f| {
                    Some(Follower {
                        node_id: u64_at(&f["node_id"])?,
                        matched_index: u64_at(&f["matched_index"]),
                        lag_entries: u64_at(&f["lag_entries"]),
                        last_ack_ms: u64_at(&f["last_ack_ms"]),
                    })
                })
                .collect()
        });
        let databases = status["store"]["databases"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|d| {
                        Some((
                            d["name"].as_str()?.to_string(),
                            d["size_bytes"].as_u64().unwrap_or(0),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        StatusView {
            id: u64_at(&status["node"]["id"]),
            state: raft["state"].as_str().map(str::to_string),
            term: u64_at(&raft["term"]),
            leader_id: u64_at(&raft["leader_id"]),
            leader_api_addr: raft["leader_api_addr"].as_str().map(str::to_string),
            last_log_index: u64_at(&raft["last_log_index"]),
            commit_index: u64_at(&raft["commit_index"]),
            applied_index: u64_at(&raft["applied_index"]),
            last_contact_ms: u64_at(&raft["last_contact_ms"]),
            replication,
            databases,
        }
    }

    /// Whether the node says it is the leader.
    pub fn leads(&self) -> bool {
        self.state.as_deref() == Some("Leader")
    }
}

/// The members listed by `/nodes` (either shape: rqlite's `{"1": {...}}` or `?ver=2`'s
/// `{"nodes": [...]}`): `(id, api_addr)`, sorted by id. Entries without a numeric id or
/// an address are skipped.
pub fn members(nodes: &Value) -> Vec<(u64, String)> {
    let entries: Vec<&Value> = match nodes.get("nodes").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => nodes
            .as_object()
            .map(|m| m.values().collect())
            .unwrap_or_default(),
    };
    let mut out: Vec<(u64, String)> = entries
        .into_iter()
        .filter_map(|n| {
            let id = match &n["id"] {
                Value::String(s) => s.parse().ok()?,
                v => v.as_u64()?,
            };
            Some((id, n["api_addr"].as_str()?.to_string()))
        })
        .collect();
    out.sort();
    out.dedup_by_key(|(id, _)| *id);
    out
}

/// Builds the snapshot of one refresh. `tables` holds the latest table lists by database
/// name; `source`, `interval` and `taken_at` go to the header as given.
pub fn assemble(
    source: &str,
    interval: Duration,
    taken_at: String,
    nodes: Vec<NodeInput>,
    tables: &BTreeMap<String, Vec<String>>,
) -> Snapshot {
    let views: Vec<Option<StatusView>> = nodes
        .iter()
        .map(|n| n.status.as_ref().ok().map(StatusView::read))
        .collect();
    let leader_at = views
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_ref().filter(|v| v.leads()).map(|v| (i, v)))
        .max_by_key(|(_, v)| v.term.unwrap_or(0))
        .map(|(i, _)| i);
    let leader = leader_at.and_then(|i| views[i].as_ref().and_then(|v| v.id).or(nodes[i].id));
    let replication = leader_at.and_then(|i| views[i].as_ref()?.replication.clone());
    let db_source = leader_at.or_else(|| views.iter().position(Option::is_some));
    let databases = db_source
        .and_then(|i| views[i].as_ref())
        .map(|v| {
            v.databases
                .iter()
                .map(|(name, size)| DatabaseRow {
                    name: name.clone(),
                    size_bytes: *size,
                    tables: tables.get(name).cloned(),
                })
                .collect()
        })
        .unwrap_or_default();

    let mut total = LoadDelta::default();
    let mut errors = Vec::new();
    let mut rows: Vec<NodeRow> = Vec::with_capacity(nodes.len());
    for (i, (input, view)) in nodes.iter().zip(&views).enumerate() {
        if let Some(delta) = &input.load {
            total.add(delta);
        }
        let id = view.as_ref().and_then(|v| v.id).or(input.id);
        let reach = match &input.status {
            Ok(_) => Reach::Up,
            Err((reach, why)) => {
                let who = id.map_or_else(|| input.api_addr.clone(), |id| format!("node {id}"));
                errors.push(format!("{who}: {why}"));
                *reach
            }
        };
        let v = view.clone().unwrap_or_default();
        rows.push(NodeRow {
            id,
            api_addr: input.api_addr.clone(),
            reach,
            role: v.state,
            is_leader: leader_at == Some(i),
            term: v.term,
            last_contact_ms: v.last_contact_ms,
            last_seen: if reach == Reach::Up {
                None
            } else {
                input.last_seen
            },
            last_log_index: v.last_log_index,
            commit_index: v.commit_index,
            applied_index: v.applied_index,
            load: input.load.as_ref().map(LoadDelta::load).unwrap_or_default(),
        });
    }
    rows.sort_by_key(|r| (r.id.is_none(), r.id));
    Snapshot {
        source: source.to_string(),
        interval,
        taken_at,
        nodes: rows,
        leader,
        replication,
        cluster_load: total.load(),
        databases,
        errors,
        notice: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_shapes_of_nodes_give_the_members() {
        let v2 = json!({"nodes": [
            {"id": "2", "api_addr": "http://b"}, {"id": "1", "api_addr": "http://a"},
            {"id": "x", "api_addr": "http://bad"}, {"id": "3"}
        ]});
        let want = vec![(1, "http://a".to_string()), (2, "http://b".to_string())];
        assert_eq!(members(&v2), want);
        let legacy = json!({"1": {"id": "1", "api_addr": "http://a"}, "2": {"id": 2, "api_addr": "http://b"}});
        assert_eq!(members(&legacy), want);
        assert_eq!(members(&json!([1, 2])), vec![]);
    }

    #[test]
    fn a_status_of_the_wrong_shape_reads_as_nothing() {
        let v = StatusView::read(&json!({"raft": {"term": "seven", "replication": [{"x": 1}]}}));
        assert_eq!(v.term, None);
        assert_eq!(v.replication, Some(vec![]));
        assert_eq!(StatusView::read(&json!(null)), StatusView::default());
    }
}
