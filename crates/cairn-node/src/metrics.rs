//! `GET /metrics`: one node's series in the Prometheus text format, from a registry of its
//! own (`prometheus-client`; no process-wide recorder, so that several nodes in one test
//! process keep their series apart).
//!
//! Counters and histograms move as requests are served; gauges (Raft's indexes, each
//! follower's lag, sizes) are read from the node when the page is rendered.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `cairn_http_requests_total` | counter | `route` (the matched route, `unmatched` else), `method`, `status` |
//! | `cairn_http_request_duration_seconds` | histogram | `route`, `method` |
//! | `cairn_operation_duration_seconds` | histogram | `op`: `write` (an execute this node was asked for, forwarded or not) or `read` (a query at any level) |
//! | `cairn_errors_total` | counter | `code`: the API's stable error code |
//! | `cairn_forwarded_requests_total` | counter | `kind`: `write`, `read`, `other`: operations this follower sent to the leader (once each, whatever the retries) |
//! | `cairn_raft_term`, `cairn_raft_is_leader` | gauge | |
//! | `cairn_raft_last_log_index`, `cairn_raft_commit_index`, `cairn_raft_applied_index`, `cairn_raft_snapshot_index`, `cairn_raft_purged_index` | gauge | |
//! | `cairn_raft_leader_changes_total` | counter | leaders this node has seen change since it started |
//! | `cairn_raft_follower_matched_index`, `cairn_raft_follower_lag_entries`, `cairn_raft_follower_last_ack_seconds` | gauge | `follower` (on the leader only) |
//! | `cairn_raft_log_bytes` | gauge | the Raft log's file size |
//! | `cairn_snapshots_built_total`, `cairn_snapshots_installed_total` | counter | |
//! | `cairn_snapshot_build_duration_seconds` | histogram | |
//! | `cairn_database_bytes` | gauge | `database` |

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`NodeMetrics::render`]'s text: OpenMetrics 1.0, which Prometheus
/// reads (and which is the Prometheus text format plus a closing `# EOF`).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FollowerLabels {
    follower: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseLabels {
    database: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 0.25 ms to about 8 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Snapshot build buckets from 10 ms to about 10 min, doubling.
fn snapshot_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

/// What an operation was, for `cairn_operation_duration_seconds` and
/// `cairn_forwarded_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A write (execute, load, schema change).
    Write,
    /// A read at any consistency level.
    Read,
    /// Anything else sent to the leader (membership, leader transfer).
    Other,
}

impl OpKind {
    fn label(self) -> &'static str {
        match self {
            OpKind::Write => "write",
            OpKind::Read => "read",
            OpKind::Other => "other",
        }
    }
}

/// Raft's state at render time, as the node reads it from openraft's metrics.
#[derive(Debug, Default, Clone)]
pub struct RaftGauges {
    /// Current term.
    pub term: u64,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// Index of the last entry in the log.
    pub last_log_index: Option<u64>,
    /// Highest index known committed.
    pub commit_index: Option<u64>,
    /// Highest index applied to the databases.
    pub applied_index: Option<u64>,
    /// Index the newest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// Highest index purged from the log.
    pub purged_index: Option<u64>,
    /// On the leader: per follower, its matched index, its lag in entries and the seconds
    /// since it last acknowledged the leader.
    pub followers: Vec<(u64, Option<u64>, u64, Option<f64>)>,
    /// The Raft log file's size in bytes.
    pub log_bytes: u64,
    /// Each database's size in bytes.
    pub databases: Vec<(String, u64)>,
}

/// One node's metrics. Cheap to clone (every series is shared).
#[derive(Clone)]
pub struct NodeMetrics {
    registry: std::sync::Arc<Registry>,
    /// Held while the gauges are set and the registry encoded: two scrapes at once must
    /// not see each other's half-refilled families.
    render_lock: std::sync::Arc<std::sync::Mutex<()>>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    operations: HistogramFamily<OpLabels>,
    errors: Family<CodeLabels, Counter>,
    forwarded: Family<KindLabels, Counter>,
    leader_changes: Counter,
    snapshots_built: Counter,
    snapshots_installed: Counter,
    snapshot_duration: Histogram,
    term: Gauge,
    is_leader: Gauge,
    last_log_index: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    purged_index: Gauge,
    follower_matched: Family<FollowerLabels, Gauge>,
    follower_lag: Family<FollowerLabels, Gauge>,
    follower_last_ack: Family<FollowerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    log_bytes: Gauge,
    database_bytes: Family<DatabaseLabels, Gauge>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics::new()
    }
}

fn gauge_of(v: Option<u64>) -> i64 {
    v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl NodeMetrics {
    /// Every series, registered and at zero.
    pub fn new() -> NodeMetrics {
        let mut r = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        r.register(
            "cairn_http_requests",
            "HTTP requests served, by matched route, method and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "cairn_http_request_duration_seconds",
            "Time to answer an HTTP request, by matched route and method",
            http_duration.clone(),
        );
        let operations: HistogramFamily<OpLabels> = Family::new_with_constructor(latency_histogram);
        r.register(
            "cairn_operation_duration_seconds",
            "Time to serve a write (op=write) or a read (op=read) asked of this node",
            operations.clone(),
        );
        let errors = Family::<CodeLabels, Counter>::default();
        r.register(
            "cairn_errors",
            "Error answers, by the API's stable error code",
            errors.clone(),
        );
        let forwarded = Family::<KindLabels, Counter>::default();
        r.register(
            "cairn_forwarded_requests",
            "Operations this node forwarded to the leader, by kind",
            forwarded.clone(),
        );
        let leader_changes = Counter::default();
        r.register(
            "cairn_raft_leader_changes",
            "Times the leader this node knows of changed since it started",
            leader_changes.clone(),
        );
        let snapshots_built = Counter::default();
        r.register(
            "cairn_snapshots_built",
            "Snapshots this node built",
            snapshots_built.clone(),
        );
        let snapshots_installed = Counter::default();
        r.register(
            "cairn_snapshots_installed",
            "Snapshots this node received from the leader and installed",
            snapshots_installed.clone(),
        );
        let snapshot_duration = snapshot_histogram();
        r.register(
            "cairn_snapshot_build_duration_seconds",
            "Time to build a snapshot (writing its archive; applying goes on meanwhile)",
            snapshot_duration.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let term = gauge(&mut r, "cairn_raft_term", "Current Raft term");
        let is_leader = gauge(&mut r, "cairn_raft_is_leader", "1 on the leader, else 0");
        let last_log_index = gauge(
            &mut r,
            "cairn_raft_last_log_index",
            "Index of the last log entry (-1: none)",
        );
        let commit_index = gauge(
            &mut r,
            "cairn_raft_commit_index",
            "Highest log index known committed (-1: none)",
        );
        let applied_index = gauge(
            &mut r,
            "cairn_raft_applied_index",
            "Highest log index applied to the databases (-1: none)",
        );
        let snapshot_index = gauge(
            &mut r,
            "cairn_raft_snapshot_index",
            "Log index the newest snapshot covers (-1: none)",
        );
        let purged_index = gauge(
            &mut r,
            "cairn_raft_purged_index",
            "Highest log index purged from the log (-1: none)",
        );
        let follower_matched = Family::<FollowerLabels, Gauge>::default();
        r.register(
            "cairn_raft_follower_matched_index",
            "On the leader: the highest index each follower holds (-1: unknown)",
            follower_matched.clone(),
        );
        let follower_lag = Family::<FollowerLabels, Gauge>::default();
        r.register(
            "cairn_raft_follower_lag_entries",
            "On the leader: entries each follower is behind the leader's last log index",
            follower_lag.clone(),
        );
        let follower_last_ack =
            Family::<FollowerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        r.register(
            "cairn_raft_follower_last_ack_seconds",
            "On the leader: seconds since each follower last acknowledged the leader",
            follower_last_ack.clone(),
        );
        let log_bytes = gauge(&mut r, "cairn_raft_log_bytes", "Size of the Raft log file");
        let database_bytes = Family::<DatabaseLabels, Gauge>::default();
        r.register(
            "cairn_database_bytes",
            "Size of each SQLite database's main file (its WAL is checkpointed into it in the background)",
            database_bytes.clone(),
        );
        NodeMetrics {
            registry: std::sync::Arc::new(r),
            render_lock: std::sync::Arc::default(),
            http_requests,
            http_duration,
            operations,
            errors,
            forwarded,
            leader_changes,
            snapshots_built,
            snapshots_installed,
            snapshot_duration,
            term,
            is_leader,
            last_log_index,
            commit_index,
            applied_index,
            snapshot_index,
            purged_index,
            follower_matched,
            follower_lag,
            follower_last_ack,
            log_bytes,
            database_bytes,
        }
    }

    /// Counts one HTTP request: `route` is the matched route pattern (e.g.
    /// `/v1/databases/{db}`, never the raw path, so that the label set stays bounded).
    pub fn observe_http(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method: method.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one error answer by its stable code (e.g. `database_not_found`).
    pub fn observe_error(&self, code: &str) {
        self.errors
            .get_or_create(&CodeLabels {
                code: code.to_string(),
            })
            .inc();
    }

    /// Records how long a write or a read asked of this node took.
    pub fn observe_operation(&self, op: OpKind, took: Duration) {
        self.operations
            .get_or_create(&OpLabels { op: op.label() })
            .observe(took.as_secs_f64());
    }

    /// Counts one operation forwarded to the leader.
    pub fn observe_forwarded(&self, kind: OpKind) {
        self.forwarded
            .get_or_create(&KindLabels { kind: kind.label() })
            .inc();
    }

    /// Counts one change of the known leader.
    pub fn observe_leader_change(&self) {
        self.leader_changes.inc();
    }

    /// Records a snapshot event from the state machine.
    pub fn observe_snapshot(&self, event: cairn_raft::SnapshotEvent) {
        match event {
            cairn_raft::SnapshotEvent::Built(took) => {
                self.snapshots_built.inc();
                self.snapshot_duration.observe(took.as_secs_f64());
            }
            cairn_raft::SnapshotEvent::Installed => {
                self.snapshots_installed.inc();
            }
        }
    }

    /// The text of `/metrics` (see [`METRICS_CONTENT_TYPE`]), with the gauges set from
    /// `raft` first.
    pub fn render(&self, raft: &RaftGauges) -> String {
        let _one_at_a_time = self
            .render_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.term.set(i64::try_from(raft.term).unwrap_or(i64::MAX));
        self.is_leader.set(i64::from(raft.is_leader));
        self.last_log_index.set(gauge_of(raft.last_log_index));
        self.commit_index.set(gauge_of(raft.commit_index));
        self.applied_index.set(gauge_of(raft.applied_index));
        self.snapshot_index.set(gauge_of(raft.snapshot_index));
        self.purged_index.set(gauge_of(raft.purged_index));
        self.follower_matched.clear();
        self.follower_lag.clear();
        self.follower_last_ack.clear();
        for (id, matched, lag, ack) in &raft.followers {
            let labels = FollowerLabels {
                follower: id.to_string(),
            };
            self.follower_matched
                .get_or_create(&labels)
                .set(gauge_of(*matched));
            self.follower_lag
                .get_or_create(&labels)
                .set(i64::try_from(*lag).unwrap_or(i64::MAX));
            if let Some(s) = ack {
                self.follower_last_ack.get_or_create(&labels).set(*s);
            }
        }
        self.log_bytes
            .set(i64::try_from(raft.log_bytes).unwrap_or(i64::MAX));
        self.database_bytes.clear();
        for (name, size) in &raft.databases {
            self.database_bytes
                .get_or_create(&DatabaseLabels {
                    database: name.clone(),
                })
                .set(i64::try_from(*size).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing into a String cannot fail; keep what was written.
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_rendered_with_its_labels() {
        let m = NodeMetrics::new();
        m.observe_http("/db/execute", "POST", 200, Duration::from_millis(3));
        m.observe_operation(OpKind::Write, Duration::from_millis(3));
        m.observe_error("database_not_found");
        m.observe_forwarded(OpKind::Write);
        m.observe_leader_change();
        m.observe_snapshot(cairn_raft::SnapshotEvent::Built(Duration::from_millis(40)));
        let text = m.render(&RaftGauges {
            term: 3,
            is_leader: true,
            last_log_index: Some(10),
            commit_index: Some(10),
            applied_index: Some(9),
            followers: vec![(2, Some(8), 2, Some(0.01))],
            log_bytes: 4096,
            databases: vec![("main".into(), 8192)],
            ..RaftGauges::default()
        });
        for needle in [
            r#"cairn_http_requests_total{route="/db/execute",method="POST",status="200"} 1"#,
            r#"cairn_operation_duration_seconds_count{op="write"} 1"#,
            r#"cairn_errors_total{code="database_not_found"} 1"#,
            r#"cairn_forwarded_requests_total{kind="write"} 1"#,
            "cairn_raft_leader_changes_total 1",
            "cairn_snapshots_built_total 1",
            "cairn_snapshot_build_duration_seconds_count 1",
            "cairn_raft_term 3",
            "cairn_raft_is_leader 1",
            "cairn_raft_applied_index 9",
            r#"cairn_raft_follower_lag_entries{follower="2"} 2"#,
            r#"cairn_raft_follower_matched_index{follower="2"} 8"#,
            "cairn_raft_log_bytes 4096",
            r#"cairn_database_bytes{database="main"} 8192"#,
            "cairn_raft_snapshot_index -1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // A follower that left is not reported any more.
        let text = m.render(&RaftGauges::default());
        assert!(!text.contains(r#"follower="2""#), "{text}");
    }
}
