//! The shapes of `/status` and `/nodes`: rqlite's sections and field names (its
//! `http/service.go` `handleStatus`, `store/store.go` `Store.Stats`, `http/nodes.go`
//! `Node`), so that rqlite clients read them unchanged, next to Cairn's own `raft` section
//! and node identity. [`Node::status`](crate::Node::status) and
//! [`Node::nodes`](crate::Node::nodes) fill them in.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// `/status`: rqlite's sections (`build`, `http`, `node`, `os`, `runtime`, `store`) and
/// Cairn's `raft`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// What was built.
    pub build: BuildStatus,
    /// The HTTP API.
    pub http: HttpStatus,
    /// Identity, addresses and times of this node.
    pub node: NodeStatus,
    /// The process.
    pub os: OsStatus,
    /// The machine, with rqlite's Go-runtime field names.
    pub runtime: RuntimeStatus,
    /// rqlite's `store` section, plus Cairn's database list.
    pub store: StoreStatus,
    /// Cairn's Raft state (read by Cairn's tools and test harness).
    pub raft: RaftStatus,
}

/// `build`: rqlite's build information. Fields not known at build time are `"unknown"`, as
/// in rqlite (`cmd/version.go`).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildStatus {
    /// Cairn's version (`CARGO_PKG_VERSION`), also sent as `X-RQLITE-VERSION` on every
    /// response.
    pub version: &'static str,
    /// The git commit, from `CAIRN_BUILD_COMMIT` at build time.
    pub commit: &'static str,
    /// The git branch, from `CAIRN_BUILD_BRANCH` at build time.
    pub branch: &'static str,
    /// When it was built, from `CAIRN_BUILD_TIME` at build time.
    pub build_time: &'static str,
    /// Always `"rustc"` (rqlite: Go's `runtime.Compiler`).
    pub compiler_toolchain: &'static str,
}

impl BuildStatus {
    /// The build information of this binary.
    pub fn current() -> BuildStatus {
        BuildStatus {
            version: env!("CARGO_PKG_VERSION"),
            commit: option_env!("CAIRN_BUILD_COMMIT").unwrap_or("unknown"),
            branch: option_env!("CAIRN_BUILD_BRANCH").unwrap_or("unknown"),
            build_time: option_env!("CAIRN_BUILD_TIME").unwrap_or("unknown"),
            compiler_toolchain: "rustc",
        }
    }
}

/// `http`: the API listener.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpStatus {
    /// `HOST:PORT` the API listens on.
    pub bind_addr: String,
    /// rqlite's user/password authentication: `"disabled"` as the node reports it; the
    /// API answers `"enabled"` when the node runs with `--auth` (users are the API's
    /// business, not the node's).
    pub auth: &'static str,
    /// How other nodes reach this one.
    pub cluster: ClusterStatus,
}

/// `http.cluster`: rqlite's `cluster/service.go` `Stats`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStatus {
    /// The Raft (inter-node) address, `HOST:PORT`.
    pub addr: String,
    /// `"true"` or `"false"`, a string as in rqlite: whether the API is served over HTTPS.
    pub https: &'static str,
    /// `http://HOST:PORT` (or `https://`) of this node's API.
    pub api_addr: String,
}

/// `node`: Cairn's identity fields and rqlite's times.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStatus {
    /// Node id (a number; `store.node_id` is the same as a string, as rqlite has it).
    pub id: u64,
    /// `HOST:PORT` of the API.
    pub http_addr: String,
    /// `HOST:PORT` of the Raft listener.
    pub raft_addr: String,
    /// `http://HOST:PORT` (or `https://`) of the API.
    pub api_addr: String,
    /// Cairn's version.
    pub version: &'static str,
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// When the node started, RFC 3339 with nanoseconds (Go's `time.Time` JSON form).
    pub start_time: String,
    /// Now, RFC 3339 with nanoseconds.
    pub current_time: String,
    /// Time since the start as a Go duration string (`"1h2m3.5s"`), see [`go_duration`].
    pub uptime: String,
}

/// `os`: the process (rqlite also has `page_size`, which Cairn omits).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OsStatus {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Path of the running binary; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// Host name; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl OsStatus {
    /// This process.
    pub fn current() -> OsStatus {
        OsStatus {
            pid: std::process::id(),
            ppid: std::os::unix::process::parent_id(),
            executable: std::env::current_exe()
                .ok()
                .map(|p| p.display().to_string()),
            hostname: hostname(),
        }
    }
}

/// The host name, as the kernel reports it (Linux); `None` elsewhere.
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// `runtime`: rqlite reports Go's runtime; Cairn fills the same names with the machine's.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuntimeStatus {
    /// Operating system, Go's spelling (`linux`, `darwin`).
    #[serde(rename = "GOOS")]
    pub goos: &'static str,
    /// CPU architecture, Go's spelling (`amd64`, `arm64`).
    #[serde(rename = "GOARCH")]
    pub goarch: &'static str,
    /// Threads available to the process (`std::thread::available_parallelism`).
    #[serde(rename = "GOMAXPROCS")]
    pub gomaxprocs: usize,
    /// The same, as rqlite's `num_cpu`.
    pub num_cpu: usize,
    /// `"rust"`: the runtime (rqlite: the Go version).
    pub version: &'static str,
}

impl RuntimeStatus {
    /// This machine.
    pub fn current() -> RuntimeStatus {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        RuntimeStatus {
            goos: match std::env::consts::OS {
                "macos" => "darwin",
                os => os,
            },
            goarch: match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                "x86" => "386",
                arch => arch,
            },
            gomaxprocs: cpus,
            num_cpu: cpus,
            version: "rust",
        }
    }
}

/// `store`: rqlite's `Store.Stats` fields that Cairn has, and Cairn's `databases`. The
/// data directory's path (rqlite's `dir`, `sqlite3.path`) is not disclosed.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreStatus {
    /// Always `true` once the node serves HTTP.
    pub open: bool,
    /// Whether the node knows a leader: clients wait for this (rqlite's `Store.Ready`).
    pub ready: bool,
    /// This node's id, a string.
    pub node_id: String,
    /// This node's Raft address.
    pub addr: String,
    /// The leader this node knows of; both fields are `""` when there is none.
    pub leader: StoreLeader,
    /// Raft state in hashicorp/raft's `Stats` names (numbers, 0 before the first entry).
    pub raft: StoreRaft,
    /// Index of the last entry applied to the state machine.
    pub fsm_index: u64,
    /// Index of the last entry applied to the databases (the same in Cairn).
    pub db_applied_index: u64,
    /// The members in the latest configuration.
    pub nodes: Vec<StoreServer>,
    /// Bytes under the node's data directory (log, databases, snapshots).
    pub dir_size: u64,
    /// `dir_size` in SI units, as rqlite (go-humanize) writes it: `"83 MB"`.
    pub dir_size_friendly: String,
    /// The `main` database's SQLite file.
    pub sqlite3: SqliteStatus,
    /// How SQLite is configured.
    pub db_conf: DbConf,
    /// Every database on this replica with its file size (Cairn's).
    pub databases: Vec<DatabaseStatus>,
}

/// `store.leader`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreLeader {
    /// The leader's id as a string, `""` when unknown.
    pub node_id: String,
    /// The leader's Raft address, `""` when unknown.
    pub addr: String,
}

/// `store.raft`: hashicorp/raft's `Stats` keys, which rqlite converts to numbers where they
/// parse as integers.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreRaft {
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    /// Current term.
    pub term: u64,
    /// Index of the last entry in the log.
    pub last_log_index: u64,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied.
    pub applied_index: u64,
    /// Index covered by the newest snapshot, 0 when none.
    pub last_snapshot_index: u64,
    /// Voters other than this node.
    pub num_peers: u64,
    /// Whether this node votes.
    pub voter: bool,
}

/// One entry of `store.nodes` (rqlite's `store.Server` JSON).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreServer {
    /// Node id, a string.
    pub id: String,
    /// Raft address.
    pub addr: String,
    /// `Voter` or `Nonvoter`.
    pub suffrage: &'static str,
}

/// `store.sqlite3`: the `main` database.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SqliteStatus {
    /// SQLite's version, `"3.46.0"`.
    pub version: &'static str,
    /// Size of the `main` database file in bytes.
    pub db_size: u64,
    /// `db_size` in SI units (`"12 kB"`).
    pub db_size_friendly: String,
}

/// `store.db_conf` (rqlite's `store.DBConfig`).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DbConf {
    /// Whether foreign key constraints are enforced: always `true` in Cairn.
    pub fk_constraints: bool,
}

/// One of Cairn's databases.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseStatus {
    /// Database name.
    pub name: String,
    /// Size of its SQLite file in bytes.
    pub size_bytes: u64,
}

/// Cairn's `raft` section. Indexes are log indexes; `None` before the first entry.
/// Deserializable, so that clients (the test harness, `cairn` tools) read the wire shape
/// this one definition gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RaftStatus {
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    /// The leader this node knows of.
    pub leader_id: Option<u64>,
    /// The leader's HTTP URL.
    pub leader_api_addr: Option<String>,
    /// Current term.
    pub term: u64,
    /// Index of the last entry in this node's log.
    pub last_log_index: Option<u64>,
    /// Highest index known to be committed.
    pub commit_index: Option<u64>,
    /// Highest index applied to this node's databases.
    pub applied_index: Option<u64>,
    /// Index covered by the newest snapshot.
    pub snapshot_index: Option<u64>,
    /// Highest index purged from the log.
    pub purged_index: Option<u64>,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Non-voting members.
    pub learners: Vec<u64>,
    /// Milliseconds since the leader last reached this node (followers only).
    pub last_contact_ms: Option<u64>,
    /// On the leader: every other member's replication progress, by node id. Empty on
    /// followers and learners.
    #[serde(default)]
    pub replication: Vec<FollowerProgress>,
}

/// How far one follower (or learner) has caught up with the leader, as the leader sees it
/// (openraft's `RaftMetrics::replication` and `heartbeat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FollowerProgress {
    /// The member's node id.
    pub node_id: u64,
    /// The highest log index the leader knows the member holds (`null`: none yet).
    pub matched_index: Option<u64>,
    /// Entries the member is behind the leader's last log index.
    pub lag_entries: u64,
    /// Milliseconds since the member last acknowledged the leader (`null`: never, since
    /// this node became leader).
    pub last_ack_ms: Option<u64>,
}

/// One member as `/nodes` lists it: rqlite's `http/nodes.go` `Node` fields.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeEntry {
    /// Node id, as a string as in rqlite.
    pub id: String,
    /// `http://HOST:PORT` (or `https://`).
    pub api_addr: String,
    /// Raft address.
    pub addr: String,
    /// The node's version (its `X-RQLITE-VERSION` header, `"unknown"` when it sent none);
    /// `""` when unreachable, as in rqlite.
    pub version: String,
    /// Whether it votes.
    pub voter: bool,
    /// Whether this node could reach it just now.
    pub reachable: bool,
    /// Whether it is the leader.
    pub leader: bool,
    /// Seconds the check of this node took; absent when unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
    /// The same as a Go duration string (`"1.234567ms"`, see [`go_duration`]); absent when
    /// unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_s: Option<String>,
    /// Why the check failed; absent when reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `d` the way Go's `time.Duration.String` writes it, as rqlite's `uptime` and `time_s`
/// carry it: `"0s"`, `"850ns"`, `"1.5µs"` (U+00B5), `"12.25ms"`, `"3.000001s"`,
/// `"2m5s"`, `"1h0m0s"`; trailing zeros of the fraction are dropped.
pub fn go_duration(d: Duration) -> String {
    const US: u128 = 1_000;
    const MS: u128 = 1_000_000;
    const S: u128 = 1_000_000_000;
    let ns = d.as_nanos();
    match ns {
        0 => "0s".to_string(),
        n if n < US => format!("{n}ns"),
        n if n < MS => with_fraction(n, US, 3, "µs"),
        n if n < S => with_fraction(n, MS, 6, "ms"),
        n => {
            let secs = n / S;
            let (h, m) = (secs / 3600, (secs / 60) % 60);
            let mut out = String::new();
            if h > 0 {
                out.push_str(&format!("{h}h"));
            }
            if h > 0 || m > 0 {
                out.push_str(&format!("{m}m"));
            }
            out + &with_fraction(n % (60 * S), S, 9, "s")
        }
    }
}

/// `n / unit` with its fraction of `digits` decimal digits, trailing zeros removed.
fn with_fraction(n: u128, unit: u128, digits: usize, suffix: &str) -> String {
    let (whole, frac) = (n / unit, n % unit);
    if frac == 0 {
        return format!("{whole}{suffix}");
    }
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}{suffix}", frac.trim_end_matches('0'))
}

/// `n` bytes in SI units the way go-humanize's `Bytes` (rqlite's `friendlyBytes`) writes
/// them: `"9 B"`, `"1.5 kB"`, `"83 MB"`.
pub fn friendly_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let mut e = 0;
    let mut scale = 1f64;
    while e + 1 < UNITS.len() && n as f64 >= scale * 1000.0 {
        e += 1;
        scale *= 1000.0;
    }
    let val = (n as f64 / scale * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// Total size in bytes of the regular files under `dir` (0 for what cannot be read: files
/// come and go while snapshots and backups run).
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_matches_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(850), "850ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_micros(12_250), "12.25ms"),
            (Duration::from_nanos(3_000_001_000), "3.000001s"),
            (Duration::from_secs(125), "2m5s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(3_723_500), "1h2m3.5s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn friendly_bytes_matches_go_humanize() {
        let cases = [
            (0, "0 B"),
            (9, "9 B"),
            (10, "10 B"),
            (999, "999 B"),
            (1_500, "1.5 kB"),
            (82_854_982, "83 MB"),
            (1_000_000_000, "1.0 GB"),
        ];
        for (n, want) in cases {
            assert_eq!(friendly_bytes(n), want, "{n}");
        }
    }
}
