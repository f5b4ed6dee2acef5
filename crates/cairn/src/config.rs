//! `cairn start` settings, from flags, environment variables (`CAIRN_*`) and a TOML file,
//! in that order of precedence.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;

/// Flags of `cairn start`. Every flag also reads an environment variable and a key of the
/// same name (with underscores) in the `--config` TOML file.
#[derive(Args, Debug, Default)]
pub struct StartArgs {
    /// This node's id: a positive integer, unique in the cluster and never reused.
    #[arg(long, env = "CAIRN_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address the HTTP API listens on (HOST:PORT; port 0 picks a free one).
    #[arg(long, env = "CAIRN_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Address node-to-node RPC listens on (HOST:PORT; port 0 picks a free one).
    #[arg(long, env = "CAIRN_RAFT_ADDR")]
    pub raft_addr: Option<String>,
    /// HTTP address other nodes and clients should use, when it differs from --http-addr
    /// (e.g. the node listens on 0.0.0.0).
    #[arg(long, env = "CAIRN_HTTP_ADV_ADDR")]
    pub http_adv_addr: Option<String>,
    /// Raft address other nodes should use, when it differs from --raft-addr.
    #[arg(long, env = "CAIRN_RAFT_ADV_ADDR")]
    pub raft_adv_addr: Option<String>,
    /// Directory for the Raft log, the databases and snapshots.
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP URLs of cluster members to join through, comma-separated.
    #[arg(long, env = "CAIRN_JOIN", value_delimiter = ',')]
    pub join: Option<Vec<String>>,
    /// Form a new cluster once this many nodes (listed in --join, this one included) are up.
    #[arg(long, env = "CAIRN_BOOTSTRAP_EXPECT")]
    pub bootstrap_expect: Option<usize>,
    /// Secret shared by all nodes; authenticates node-to-node traffic. When absent, one is
    /// generated and kept in the data directory.
    #[arg(long, env = "CAIRN_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret (surrounding whitespace is ignored), so that it
    /// shows neither in `ps` nor in the environment. Not with --cluster-secret.
    #[arg(long, env = "CAIRN_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// An auth file in rqlite's format: a JSON array of {"username", "password", "perms"}
    /// (username "*" for every request; passwords plain or argon2id from `cairn passwd`;
    /// per-database grants as {"db": NAME, "perms": [..]}). Without it every request is
    /// allowed everything.
    #[arg(long, env = "CAIRN_AUTH")]
    pub auth: Option<PathBuf>,
    /// Take a snapshot (and compact the log) every N log entries.
    #[arg(long, env = "CAIRN_SNAPSHOT_THRESHOLD")]
    pub snapshot_threshold: Option<u64>,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long, env = "CAIRN_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds (the maximum is twice this).
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// A TOML file with any of the settings above.
    #[arg(long, env = "CAIRN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The TOML config file: the same settings as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<u64>,
    http_addr: Option<String>,
    raft_addr: Option<String>,
    http_adv_addr: Option<String>,
    raft_adv_addr: Option<String>,
    data_dir: Option<PathBuf>,
    join: Option<Vec<String>>,
    bootstrap_expect: Option<usize>,
    cluster_secret: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    auth: Option<PathBuf>,
    snapshot_threshold: Option<u64>,
    heartbeat_ms: Option<u64>,
    election_timeout_ms: Option<u64>,
}

pub use cairn_launch::NodeIdentity;

/// Settings after merging, with defaults applied.
#[derive(Debug)]
pub struct Settings {
    pub node_id: u64,
    pub http_addr: String,
    pub raft_addr: String,
    pub http_adv_addr: Option<String>,
    pub raft_adv_addr: Option<String>,
    pub data_dir: PathBuf,
    pub join: Vec<String>,
    pub bootstrap_expect: Option<usize>,
    pub cluster_secret: Option<String>,
    /// The auth file, if any.
    pub auth: Option<PathBuf>,
    pub raft: cairn_node::RaftSettings,
}

impl StartArgs {
    /// Merges flags/env with the config file and the data directory's `node.json`.
    ///
    /// # Errors
    /// An unreadable or invalid config file, a missing node id, or a node id that differs
    /// from the one the data directory belongs to.
    pub fn settings(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .context("--data-dir is required (or CAIRN_DATA_DIR, or data_dir in --config)")?;
        let known = NodeIdentity::read(&data_dir)?;
        let node_id = match (self.node_id.or(file.node_id), &known) {
            (Some(id), Some(k)) if id != k.node_id => {
                bail!(
                    "{} belongs to node {}, not node {id}",
                    data_dir.display(),
                    k.node_id
                )
            }
            (Some(id), _) => id,
            (None, Some(k)) => k.node_id,
            (None, None) => bail!("--node-id is required on a new data directory"),
        };
        if node_id == 0 {
            bail!("--node-id must be a positive integer");
        }
        let mut raft = cairn_node::RaftSettings::default();
        if let Some(n) = self.snapshot_threshold.or(file.snapshot_threshold) {
            if n == 0 {
                bail!("--snapshot-threshold must be at least 1");
            }
            raft.snapshot_threshold = n;
        }
        if let Some(h) = self.heartbeat_ms.or(file.heartbeat_ms) {
            raft.heartbeat_ms = h;
        }
        if let Some(e) = self.election_timeout_ms.or(file.election_timeout_ms) {
            raft.election_timeout_ms = (e, e * 2);
        }
        let cluster_secret = match (
            self.cluster_secret.or(file.cluster_secret),
            self.cluster_secret_file.or(file.cluster_secret_file),
        ) {
            (Some(_), Some(_)) => {
                bail!("give the cluster secret either directly or as a file, not both")
            }
            (Some(s), None) => Some(s),
            (None, Some(path)) => Some(read_secret(&path)?),
            (None, None) => None,
        };
        Ok(Settings {
            node_id,
            http_addr: self
                .http_addr
                .or(file.http_addr)
                .or(known.as_ref().map(|k| k.http_addr.clone()))
                .unwrap_or_else(|| "127.0.0.1:4001".into()),
            raft_addr: self
                .raft_addr
                .or(file.raft_addr)
                .or(known.as_ref().map(|k| k.raft_addr.clone()))
                .unwrap_or_else(|| "127.0.0.1:4002".into()),
            http_adv_addr: self.http_adv_addr.or(file.http_adv_addr),
            raft_adv_addr: self.raft_adv_addr.or(file.raft_adv_addr),
            data_dir,
            join: self.join.or(file.join).unwrap_or_default(),
            bootstrap_expect: self.bootstrap_expect.or(file.bootstrap_expect),
            cluster_secret,
            auth: self.auth.or(file.auth),
            raft,
        })
    }
}

/// The cluster secret kept in `path`, trimmed.
///
/// # Errors
/// An unreadable file, or one holding only whitespace.
fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the cluster secret file {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("the cluster secret file {} is empty", path.display());
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_fills_what_flags_leave_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("cairn.toml");
        std::fs::write(
            &cfg,
            format!(
                "node_id = 7\nhttp_addr = \"127.0.0.1:5001\"\ndata_dir = \"{}\"\njoin = [\"http://127.0.0.1:4001\"]\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write config");
        let args = StartArgs {
            http_addr: Some("127.0.0.1:6001".into()),
            config: Some(cfg),
            ..StartArgs::default()
        };
        let s = args.settings().expect("valid settings");
        assert_eq!(s.node_id, 7);
        assert_eq!(s.http_addr, "127.0.0.1:6001", "flags win over the file");
        assert_eq!(s.raft_addr, "127.0.0.1:4002", "default");
        assert_eq!(s.join, ["http://127.0.0.1:4001"]);
    }

    #[test]
    fn data_dir_keeps_its_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        NodeIdentity {
            node_id: 3,
            http_addr: "127.0.0.1:7001".into(),
            raft_addr: "127.0.0.1:7002".into(),
        }
        .write(dir.path())
        .expect("write identity");
        let s = StartArgs {
            data_dir: Some(dir.path().to_path_buf()),
            ..StartArgs::default()
        }
        .settings()
        .expect("identity from node.json");
        assert_eq!((s.node_id, s.http_addr.as_str()), (3, "127.0.0.1:7001"));
        let wrong = StartArgs {
            node_id: Some(4),
            data_dir: Some(dir.path().to_path_buf()),
            ..StartArgs::default()
        };
        assert!(wrong.settings().is_err());
    }

    #[test]
    fn the_cluster_secret_can_come_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "  s3cret\n").expect("write secret");
        let args = |secret: Option<&str>, file: Option<PathBuf>| StartArgs {
            node_id: Some(1),
            data_dir: Some(dir.path().join("data")),
            cluster_secret: secret.map(String::from),
            cluster_secret_file: file,
            ..StartArgs::default()
        };
        let s = args(None, Some(file.clone())).settings().expect("valid");
        assert_eq!(s.cluster_secret.as_deref(), Some("s3cret"));
        let both = args(Some("x"), Some(file.clone())).settings();
        assert!(both.is_err(), "both at once are refused");
        std::fs::write(&file, " \n").expect("write secret");
        let empty = args(None, Some(file)).settings();
        assert!(format!("{:#}", empty.expect_err("empty")).contains("empty"));
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, "nodeid = 1\n").expect("write config");
        let args = StartArgs {
            config: Some(cfg),
            data_dir: Some(dir.path().to_path_buf()),
            ..StartArgs::default()
        };
        assert!(args.settings().is_err());
    }
}
