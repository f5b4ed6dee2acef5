//! One Cairn node as a library, the way mini-redis exposes `server::run`: the caller binds
//! the two listeners (so tests can bind `127.0.0.1:0`), [`serve`] starts the node on them
//! and returns a [`Handle`] at once; the node runs until the `shutdown` future resolves or
//! [`Handle::shutdown`] is called. The `cairn start` binary, `cairn demo`, `cairn bench` and
//! the in-process test cluster all start nodes through this one function.
//!
//! What runs, per node:
//! - the public API (`cairn_api::router`) on the HTTP listener;
//! - Raft's RPCs and the node-to-node RPC (`Node::internal_router`) on the raft listener,
//!   both behind the cluster secret;
//! - the bootstrap task: join through `join`, or form a cluster once `bootstrap_expect`
//!   nodes know each other (`Node::bootstrap`).
//!
//! Both listeners are served by [`http::serve_router_tls`], which bounds header time, body
//! idle time and open connections (see [`http::ServeLimits`]), over TLS when
//! [`ServerConfig::http_tls`] / [`ServerConfig::node_tls`] say so (`cairn_tls`: HTTPS on
//! the public port, mutual TLS between nodes, certificates reloaded when their files
//! change).

pub mod http;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_node::{Node, NodeConfig, NodeError, RaftSettings};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use http::{ServeLimits, PUBLIC_LIMITS, RAFT_LIMITS};

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file or listener operation failed: `what` names it.
    #[error("{what}: {source}")]
    Io {
        /// The operation, e.g. "creating /var/lib/cairn".
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The configuration cannot work (an empty cluster secret, for instance).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The node's storage or Raft could not start.
    #[error("starting the node: {0}")]
    Start(NodeError),
    /// The node could not join or form a cluster; it has been shut down.
    #[error("could not join a cluster: {0}")]
    Bootstrap(NodeError),
    /// A serving task panicked or was cancelled.
    #[error("a serving task failed: {0}")]
    Task(String),
    /// A TLS certificate, key or CA file cannot be used; the error names it.
    #[error("TLS: {0}")]
    Tls(#[from] cairn_tls::TlsError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// The two sockets a node serves, already bound.
#[derive(Debug)]
pub struct Listeners {
    /// The public API (rqlite's `/db/*`, REST, cluster routes).
    pub http: TcpListener,
    /// Node-to-node traffic: Raft RPCs and forwarded requests.
    pub raft: TcpListener,
}

impl Listeners {
    /// Binds both addresses (`HOST:PORT`; port 0 lets the OS pick).
    ///
    /// # Errors
    /// [`ServeError::Io`] naming the address that could not be bound.
    pub async fn bind(http: &str, raft: &str) -> Result<Listeners, ServeError> {
        let http_listener = TcpListener::bind(http)
            .await
            .map_err(io(format!("binding the HTTP address {http}")))?;
        let raft_listener = TcpListener::bind(raft)
            .await
            .map_err(io(format!("binding the raft address {raft}")))?;
        Ok(Listeners {
            http: http_listener,
            raft: raft_listener,
        })
    }
}

/// How to run one node. The addresses come from the [`Listeners`]; the advertised ones
/// override what peers and clients are told when the bound address is not reachable as is
/// (0.0.0.0, NAT).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This node's id; unique in the cluster, never reused.
    pub node_id: u64,
    /// Where the log, the databases and snapshots live; created if missing.
    pub data_dir: PathBuf,
    /// Authenticates node-to-node traffic; every node of a cluster must have the same one.
    /// `None`: the one kept in `data_dir/cluster-secret`, else a new random one kept there.
    pub cluster_secret: Option<String>,
    /// `HOST:PORT` clients and peers are told for the HTTP API, if not the bound one.
    pub http_advertise: Option<String>,
    /// `HOST:PORT` peers are told for node-to-node traffic, if not the bound one.
    pub raft_advertise: Option<String>,
    /// HTTP URLs of members to join through (or of all peers, with `bootstrap_expect`).
    pub join: Vec<String>,
    /// Form a new cluster once this many nodes (this one included) know each other.
    pub bootstrap_expect: Option<usize>,
    /// Raft timings and snapshot policy.
    pub raft: RaftSettings,
    /// Connection bounds of the public HTTP listener. Default [`PUBLIC_LIMITS`].
    pub http_limits: ServeLimits,
    /// Connection bounds of the node-to-node listener. Default [`RAFT_LIMITS`].
    pub raft_limits: ServeLimits,
    /// The users of `--auth`: every public request is authenticated and checked against
    /// its route's permission. `None`: everyone may do everything (a warning is logged).
    pub auth: Option<Arc<cairn_auth::Users>>,
    /// HTTPS on the public port (and, with its `client_ca`, the CA this node trusts when it
    /// calls a peer's API). Every node of a cluster serves HTTPS or none does: URLs handed
    /// to clients say `https://` then. Default `None`: plain HTTP.
    pub http_tls: Option<cairn_tls::HttpTls>,
    /// Mutual TLS on the raft port and in every node-to-node request. Every node of a
    /// cluster has it or none does. Default `None`: plain HTTP, guarded by the cluster
    /// secret alone.
    pub node_tls: Option<cairn_tls::NodeTls>,
    /// Browser origins allowed to call the public API from another site (CORS, the
    /// Fetch standard): `scheme://host[:port]` each, or `*` for any. Default: none, so
    /// browsers keep other sites' pages from reading the API's answers.
    pub cors_origins: Vec<String>,
}

impl ServerConfig {
    /// A configuration with default Raft settings, a secret from the data directory, and
    /// no peers: a node that waits to be joined (or, with `bootstrap_expect = Some(1)`,
    /// forms a single-node cluster).
    pub fn new(node_id: u64, data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            node_id,
            data_dir: data_dir.into(),
            cluster_secret: None,
            http_advertise: None,
            raft_advertise: None,
            join: Vec::new(),
            bootstrap_expect: None,
            raft: RaftSettings::default(),
            http_limits: PUBLIC_LIMITS,
            raft_limits: RAFT_LIMITS,
            auth: None,
            http_tls: None,
            node_tls: None,
            cors_origins: Vec::new(),
        }
    }
}

/// The CORS layer for `origins` (`None` when there are none; compared in lowercase, as
/// browsers send them; a `*` inside an origin is refused, it would never match): preflight requests are
/// answered before authentication (browsers send them without credentials); answers to
/// allowed origins carry `Access-Control-Allow-Origin`. Methods: those the API serves;
/// headers: `Content-Type`, `Authorization`, `Idempotency-Key`; exposed: the version header.
///
/// # Errors
/// [`ServeError::Config`] for an origin that is not `*` nor `scheme://host[:port]`.
pub fn cors_layer(origins: &[String]) -> Result<Option<tower_http::cors::CorsLayer>, ServeError> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let mut values = Vec::with_capacity(origins.len());
        for o in origins {
            // Browsers send origins in lowercase, without a path.
            let lower = o.trim().trim_end_matches('/').to_ascii_lowercase();
            let o = lower.as_str();
            let valid = o.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https")
                    && !rest.is_empty()
                    && !rest.contains(['/', '?', '#', ' ', '@', '*'])
            });
            let value = HeaderValue::from_str(o)
                .ok()
                .filter(|_| valid)
                .ok_or_else(|| {
                    ServeError::Config(format!(
                        "--cors-origins: {o:?} is not an origin (scheme://host[:port], or *)"
                    ))
                })?;
            values.push(value);
        }
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([HeaderName::from_static("x-rqlite-version")])
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

/// Loads the cluster secret: the given one, else the one kept in the data directory, else a
/// new random one that is then kept there (mode 0600).
///
/// # Errors
/// [`ServeError::Config`] for an empty secret, [`ServeError::Io`] when the file cannot be
/// read or written.
pub fn cluster_secret(given: Option<String>, data_dir: &Path) -> Result<String, ServeError> {
    let path = data_dir.join("cluster-secret");
    if let Some(s) = given {
        if s.is_empty() {
            return Err(ServeError::Config(
                "the cluster secret must not be empty".into(),
            ));
        }
        return Ok(s);
    }
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    }
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    write_private(&path, &secret).map_err(io(format!("writing {}", path.display())))?;
    tracing::warn!(
        path = %path.display(),
        "no cluster secret given: generated one; nodes joining this cluster need it"
    );
    Ok(secret)
}

/// Writes `text` to `path`, readable by this user alone (mode 0600, also when the file
/// existed with a looser mode), and syncs it: for secrets and keys.
///
/// # Errors
/// The operating system's, when the file cannot be opened, chmodded or written.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// A running node.
///
/// Dropping the handle does not stop the node; call [`Handle::shutdown`] (or resolve the
/// `shutdown` future given to [`serve`]) and then [`Handle::wait`].
pub struct Handle {
    node: Arc<Node>,
    http_addr: SocketAddr,
    raft_addr: SocketAddr,
    advertised_http: String,
    advertised_raft: String,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Handle {
    /// The node itself (its typed operations, status and Raft metrics).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The bound public HTTP address (the real port when 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound node-to-node address.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// The HTTP address peers and clients are told, `HOST:PORT`.
    pub fn advertised_http(&self) -> &str {
        &self.advertised_http
    }

    /// The node-to-node address peers are told, `HOST:PORT`.
    pub fn advertised_raft(&self) -> &str {
        &self.advertised_raft
    }

    /// Asks the node to stop: both listeners stop accepting, requests in flight get up to
    /// their drain timeout, then Raft shuts down. Returns at once; [`Handle::wait`] waits.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Waits until the node has stopped: after a shutdown, or early when it could not join
    /// a cluster.
    ///
    /// # Errors
    /// [`ServeError::Bootstrap`] when joining failed, [`ServeError::Task`] when a serving
    /// task panicked.
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Task(e.to_string())),
        }
    }

    /// Whether the node has stopped (after a shutdown, or on its own when it could not
    /// join a cluster).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// [`Handle::shutdown`], then [`Handle::wait`].
    ///
    /// # Errors
    /// As [`Handle::wait`].
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shutdown();
        self.wait().await
    }
}

/// Starts a node on `listeners` and returns once it serves both of them; joining or
/// forming the cluster goes on in the background. The node stops when `shutdown` resolves
/// or [`Handle::shutdown`] is called.
///
/// # Errors
/// [`ServeError::Io`] / [`ServeError::Config`] / [`ServeError::Start`] when the data
/// directory, the cluster secret or the node's storage cannot be set up, [`ServeError::Tls`]
/// when a TLS file does not load; nothing is served then.
pub async fn serve(
    listeners: Listeners,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Handle, ServeError> {
    let tls = Tls::load(&config)?;
    let cors = cors_layer(&config.cors_origins)?;
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
    let secret = cluster_secret(config.cluster_secret.clone(), data_dir)?;
    let http_addr = listeners
        .http
        .local_addr()
        .map_err(io("reading the HTTP listener's address"))?;
    let raft_addr = listeners
        .raft
        .local_addr()
        .map_err(io("reading the raft listener's address"))?;
    let advertised_http = config
        .http_advertise
        .clone()
        .unwrap_or_else(|| http_addr.to_string());
    let advertised_raft = config
        .raft_advertise
        .clone()
        .unwrap_or_else(|| raft_addr.to_string());
    let node_config = NodeConfig {
        id: config.node_id,
        http_addr: advertised_http.clone(),
        raft_addr: advertised_raft.clone(),
        data_dir: config.data_dir.clone(),
        cluster_secret: secret,
        join: config.join.clone(),
        bootstrap_expect: config.bootstrap_expect,
        raft: config.raft.clone(),
        bind_ip: Some(raft_addr.ip()),
        http_scheme: tls.http_scheme(),
        raft_scheme: tls.raft_scheme(),
        tls_client: tls.client_config()?,
        raft_tls_client: tls.raft_client_config()?,
    };
    let node = Node::start(&node_config).await.map_err(ServeError::Start)?;
    let stop = CancellationToken::new();
    let on_shutdown = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => on_shutdown.cancel(),
            () = on_shutdown.cancelled() => {}
        }
    });
    let limits = (config.http_limits, config.raft_limits);
    if config
        .http_tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_none())
    {
        tracing::warn!(
            "HTTPS without --http-ca-cert: this node trusts no CA for peers' HTTPS APIs, so it cannot join through https:// URLs or check peers in /nodes"
        );
    }
    let access = match &config.auth {
        Some(users) => {
            tracing::info!(
                users = users.len(),
                "authentication on: every request needs a permission"
            );
            cairn_api::Access::users(users.clone(), &node_config.cluster_secret)
                .with_trusted_origins(&config.cors_origins)
        }
        None => {
            tracing::warn!(
                "no --auth file: anyone who reaches the HTTP port may read, write, back up, replace and drop every database and change the cluster's membership"
            );
            cairn_api::Access::open()
        }
    };
    let task = tokio::spawn(run(
        node.clone(),
        listeners,
        node_config,
        (limits, access, cors),
        tls,
        stop.clone(),
    ));
    tracing::info!(
        id = config.node_id,
        http = %advertised_http,
        raft = %advertised_raft,
        "node started"
    );
    Ok(Handle {
        node,
        http_addr,
        raft_addr,
        advertised_http,
        advertised_raft,
        stop,
        task,
    })
}

/// Serves both listeners and bootstraps, until `stop` is cancelled.
async fn run(
    node: Arc<Node>,
    listeners: Listeners,
    node_config: NodeConfig,
    ((http_limits, raft_limits), access, cors): (
        (ServeLimits, ServeLimits),
        cairn_api::Access,
        Option<tower_http::cors::CorsLayer>,
    ),
    tls: Tls,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let internal = tokio::spawn(http::serve_router_tls(
        listeners.raft,
        node.internal_router()
            .layer(axum::Extension(cairn_node::Stopping(stop.clone()))),
        raft_limits,
        tls.node_server,
        stop.clone().cancelled_owned(),
    ));
    let mut public_router = cairn_api::router(node.clone(), access);
    if let Some(cors) = cors {
        public_router = public_router.layer(cors);
    }
    let public = tokio::spawn(http::serve_router_tls(
        listeners.http,
        public_router,
        http_limits,
        tls.http_server,
        stop.clone().cancelled_owned(),
    ));
    let boot_node = Arc::clone(&node);
    let mut bootstrap = tokio::spawn(async move { boot_node.bootstrap(&node_config).await });
    let outcome = tokio::select! {
        r = &mut bootstrap => match r {
            Ok(Ok(())) => {
                stop.cancelled().await;
                Ok(())
            }
            Ok(Err(e)) => Err(ServeError::Bootstrap(e)),
            Err(e) => Err(ServeError::Task(e.to_string())),
        },
        () = stop.cancelled() => Ok(()),
    };
    // Stopped while still joining: the node must not go on asking to join.
    bootstrap.abort();
    stop.cancel();
    for task in [public, internal] {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "a listener's task failed");
        }
    }
    node.shutdown().await;
    tracing::info!(id = node.id(), "node stopped");
    outcome
}

/// The TLS configs of one node, loaded from [`ServerConfig::http_tls`] and
/// [`ServerConfig::node_tls`] before anything is served.
struct Tls {
    http_server: Option<Arc<cairn_tls::ServerTls>>,
    node_server: Option<Arc<cairn_tls::ServerTls>>,
    /// For peers' public APIs (joining, bootstrap): the node CA and the HTTP CA.
    client: Option<cairn_tls::ClientTls>,
    /// For peers' raft ports: the node CA alone, so that a certificate from the HTTP CA
    /// cannot pass for a peer's raft port.
    raft_client: Option<cairn_tls::ClientTls>,
}

impl Tls {
    /// Loads every file now, so that a node with a bad certificate does not start.
    ///
    /// # Errors
    /// [`ServeError::Tls`] naming the file, or the setting, that does not work.
    fn load(config: &ServerConfig) -> Result<Tls, ServeError> {
        let http_server = match &config.http_tls {
            Some(t) => Some(Arc::new(cairn_tls::ServerTls::http(t)?)),
            None => None,
        };
        let node_server = match &config.node_tls {
            Some(t) => Some(Arc::new(cairn_tls::ServerTls::node(t)?)),
            None => None,
        };
        let client =
            cairn_tls::ClientTls::for_node(config.node_tls.as_ref(), config.http_tls.as_ref())?;
        let raft_client = cairn_tls::ClientTls::for_node(config.node_tls.as_ref(), None)?;
        Ok(Tls {
            http_server,
            node_server,
            client,
            raft_client,
        })
    }

    fn http_scheme(&self) -> cairn_node::Scheme {
        scheme(self.http_server.is_some())
    }

    fn raft_scheme(&self) -> cairn_node::Scheme {
        scheme(self.node_server.is_some())
    }

    fn client_config(&self) -> Result<Option<rustls::ClientConfig>, ServeError> {
        Ok(match &self.client {
            Some(c) => Some(c.config()?),
            None => None,
        })
    }

    fn raft_client_config(&self) -> Result<Option<rustls::ClientConfig>, ServeError> {
        Ok(match &self.raft_client {
            Some(c) => Some(c.config()?),
            None => None,
        })
    }
}

fn scheme(tls: bool) -> cairn_node::Scheme {
    if tls {
        cairn_node::Scheme::Https
    } else {
        cairn_node::Scheme::Http
    }
}
