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
    /// Leader heartbeat interval in milliseconds (default 30).
    #[arg(long, env = "CAIRN_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds (the maximum is twice this; default 100).
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// Serve the HTTP API over HTTPS with this certificate chain (PEM, leaf first); needs
    /// --http-key. Every node of a cluster serves HTTPS or none does. Reloaded when the
    /// file changes.
    #[arg(long, env = "CAIRN_HTTP_CERT", help_heading = "TLS")]
    pub http_cert: Option<PathBuf>,
    /// The private key of --http-cert (PEM: PKCS#8, RSA or EC). Reloaded when it changes.
    #[arg(long, env = "CAIRN_HTTP_KEY", help_heading = "TLS")]
    pub http_key: Option<PathBuf>,
    /// The CA of the HTTPS port (PEM): clients are checked against it with
    /// --http-verify-client, and this node trusts it when it calls a peer's HTTPS API
    /// (--join https://...). Needs --http-cert.
    #[arg(long, env = "CAIRN_HTTP_CA_CERT", help_heading = "TLS")]
    pub http_ca_cert: Option<PathBuf>,
    /// Require HTTPS clients to present a certificate signed by --http-ca-cert; others fail
    /// the TLS handshake. Nodes calling each other's API present their --node-cert, so it
    /// must then be signed by that CA too.
    #[arg(long, env = "CAIRN_HTTP_VERIFY_CLIENT", help_heading = "TLS")]
    pub http_verify_client: bool,
    /// Mutual TLS between nodes: this node's certificate (PEM), presented on the raft port
    /// and to peers; it must name the raft address (an IP or DNS SAN) and allow server and
    /// client use. Needs --node-key and --node-ca-cert; every node of a cluster has them
    /// or none does. Reloaded when the file changes.
    #[arg(long, env = "CAIRN_NODE_CERT", help_heading = "TLS")]
    pub node_cert: Option<PathBuf>,
    /// The private key of --node-cert (PEM). Reloaded when it changes.
    #[arg(long, env = "CAIRN_NODE_KEY", help_heading = "TLS")]
    pub node_key: Option<PathBuf>,
    /// The node CA (PEM): a peer must present a certificate it signed, or its connection
    /// fails the TLS handshake (always mutual). Reloaded when it changes.
    #[arg(long, env = "CAIRN_NODE_CA_CERT", help_heading = "TLS")]
    pub node_ca_cert: Option<PathBuf>,
    /// Browser origins allowed to call the API from other sites (CORS), comma-separated:
    /// `https://app.example.com,http://localhost:3000`, or `*` for any. None by default.
    #[arg(long, env = "CAIRN_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
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
    http_cert: Option<PathBuf>,
    http_key: Option<PathBuf>,
    http_ca_cert: Option<PathBuf>,
    http_verify_client: Option<bool>,
    node_cert: Option<PathBuf>,
    node_key: Option<PathBuf>,
    node_ca_cert: Option<PathBuf>,
    cors_origins: Option<Vec<String>>,
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
    pub http_tls: Option<cairn_tls::HttpTls>,
    pub node_tls: Option<cairn_tls::NodeTls>,
    /// `--cors-origins`: empty for none.
    pub cors_origins: Vec<String>,
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
        let http_tls = http_tls(
            self.http_cert.or(file.http_cert),
            self.http_key.or(file.http_key),
            self.http_ca_cert.or(file.http_ca_cert),
            self.http_verify_client || file.http_verify_client.unwrap_or(false),
        )?;
        let node_tls = node_tls(
            self.node_cert.or(file.node_cert),
            self.node_key.or(file.node_key),
            self.node_ca_cert.or(file.node_ca_cert),
        )?;
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
            http_tls,
            node_tls,
            cors_origins: self
                .cors_origins
                .or(file.cors_origins)
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect(),
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

/// The HTTPS settings, when --http-cert and --http-key are both given.
///
/// # Errors
/// One of the pair without the other; --http-ca-cert or --http-verify-client without
/// them; --http-verify-client without --http-ca-cert.
fn http_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    verify_client: bool,
) -> anyhow::Result<Option<cairn_tls::HttpTls>> {
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => bail!("--http-cert needs --http-key"),
        (None, Some(_)) => bail!("--http-key needs --http-cert"),
        (None, None) => {
            if client_ca.is_some() || verify_client {
                bail!("--http-ca-cert and --http-verify-client need --http-cert and --http-key");
            }
            return Ok(None);
        }
    };
    if verify_client && client_ca.is_none() {
        bail!("--http-verify-client needs --http-ca-cert, the CA that signs client certificates");
    }
    Ok(Some(cairn_tls::HttpTls {
        cert,
        key,
        client_ca,
        verify_client,
    }))
}

/// The node mutual-TLS settings: all three files or none.
///
/// # Errors
/// Some of --node-cert, --node-key, --node-ca-cert without the others.
fn node_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> anyhow::Result<Option<cairn_tls::NodeTls>> {
    match (cert, key, ca) {
        (Some(cert), Some(key), Some(ca)) => Ok(Some(cairn_tls::NodeTls { cert, key, ca })),
        (None, None, None) => Ok(None),
        (cert, key, ca) => {
            let missing: Vec<&str> = [
                (cert.is_none(), "--node-cert"),
                (key.is_none(), "--node-key"),
                (ca.is_none(), "--node-ca-cert"),
            ]
            .into_iter()
            .filter_map(|(m, name)| m.then_some(name))
            .collect();
            bail!(
                "node TLS needs --node-cert, --node-key and --node-ca-cert together; missing {}",
                missing.join(", ")
            )
        }
    }
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
    fn tls_flags_come_in_sets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = || StartArgs {
            node_id: Some(1),
            data_dir: Some(dir.path().to_path_buf()),
            ..StartArgs::default()
        };
        let p = |s: &str| Some(PathBuf::from(s));
        let err = |args: StartArgs| match args.settings() {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err(StartArgs {
            http_cert: p("c.pem"),
            ..base()
        })
        .contains("--http-key"));
        assert!(err(StartArgs {
            http_cert: p("c.pem"),
            http_key: p("k.pem"),
            http_verify_client: true,
            ..base()
        })
        .contains("--http-ca-cert"));
        assert!(err(StartArgs {
            http_ca_cert: p("ca.pem"),
            ..base()
        })
        .contains("--http-cert"));
        let e = err(StartArgs {
            node_cert: p("n.pem"),
            ..base()
        });
        assert!(
            e.contains("--node-key") && e.contains("--node-ca-cert"),
            "{e}"
        );
        let s = StartArgs {
            http_cert: p("c.pem"),
            http_key: p("k.pem"),
            http_ca_cert: p("ca.pem"),
            http_verify_client: true,
            node_cert: p("n.pem"),
            node_key: p("nk.pem"),
            node_ca_cert: p("nca.pem"),
            ..base()
        }
        .settings()
        .expect("complete sets");
        assert_eq!(
            s.http_tls.map(|t| (t.verify_client, t.client_ca)),
            Some((true, p("ca.pem")))
        );
        assert_eq!(s.node_tls.map(|t| t.ca), p("nca.pem"));
        assert!(base().settings().expect("no TLS").http_tls.is_none());
    }

    #[test]
    fn tls_settings_from_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("cairn.toml");
        std::fs::write(
            &cfg,
            "node_id = 2\nhttp_cert = \"h.pem\"\nhttp_key = \"h.key\"\nhttp_ca_cert = \"ca.pem\"\nhttp_verify_client = true\nnode_cert = \"n.pem\"\nnode_key = \"n.key\"\nnode_ca_cert = \"ca.pem\"\n",
        )
        .expect("write config");
        let s = StartArgs {
            data_dir: Some(dir.path().to_path_buf()),
            http_cert: Some(PathBuf::from("flag.pem")),
            config: Some(cfg),
            ..StartArgs::default()
        }
        .settings()
        .expect("settings");
        let http = s.http_tls.expect("https");
        assert_eq!(
            http.cert,
            PathBuf::from("flag.pem"),
            "flags win over the file"
        );
        assert!(http.verify_client);
        assert_eq!(s.node_tls.map(|t| t.key), Some(PathBuf::from("n.key")));
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
