//! `ProxyNet`: a fault-injecting TCP proxy in front of every node's Raft listener, so that
//! the network between any two nodes can be cut, one direction at a time.
//!
//! The node with Raft ID `k` binds its Raft listener on its own loopback address
//! [`node_ip`]`(k)` = `127.0.0.{10+k}` (Linux routes all of 127.0.0.0/8 to `lo`) and
//! advertises the address of its proxy, which listens on the same IP and forwards to the real
//! port. Cairn opens node-to-node connections from the IP its Raft listener is bound to, so
//! the proxy of node `i` learns from the peer address of each connection which node `j`
//! opened it, and applies the state of the link `j -> i`:
//!
//! ```text
//! node j (127.0.0.{10+j}) --connect--> proxy of i (127.0.0.{10+i}:Q) --> node i (127.0.0.{10+i}:P)
//! ```
//!
//! Raft's RPCs are requests on connections the sender opens, and their answers come back on
//! the same connection, so cutting `j -> i` means "j cannot reach i": i still reaches j.
//! Connections from any other address (the test itself) are always forwarded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The last octet of [`node_ip`]`(0)`: node `k` gets `127.0.0.{10+k}`.
pub const NODE_IP_BASE: u8 = 10;

/// How long the proxy waits for a node's real Raft listener to accept a connection. A node
/// that is down refuses at once; a paused one is accepted by its kernel.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a blackholed connection is held before it is closed, whether or not its link
/// healed: the sender gave up on it long before.
const MAX_HOLD: Duration = Duration::from_secs(120);

/// How often a proxy whose node is down checks whether it accepts connections again.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// How long dropping a [`ProxyNet`] waits for its tasks to end.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// The loopback address of the node with Raft ID `id`: `127.0.0.{10+id}`.
///
/// # Errors
/// When `id` is 0 or above 244 (the address would leave `127.0.0.1..=127.0.0.254`).
pub fn node_ip(id: u64) -> Result<Ipv4Addr> {
    match u8::try_from(id) {
        Ok(k) if (1..=254 - NODE_IP_BASE).contains(&k) => {
            Ok(Ipv4Addr::new(127, 0, 0, NODE_IP_BASE + k))
        }
        _ => bail!("node ID {id} has no loopback address of its own (1..=244 have)"),
    }
}

/// The node ID whose [`node_ip`] is `ip`, if any.
pub fn node_of_ip(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            (a == 127 && b == 0 && c == 0 && d > NODE_IP_BASE).then(|| u64::from(d - NODE_IP_BASE))
        }
        IpAddr::V6(_) => None,
    }
}

/// What a cut link does to the sender's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CutMode {
    /// Open connections are reset; new ones are accepted and reset at once, so the sender
    /// learns of the failure immediately (like a refused connection).
    Reset,
    /// Open connections are reset; new ones are accepted but nothing is forwarded, so the
    /// sender waits for its own timeout (like packets lost in a partition).
    Blackhole,
}

impl fmt::Display for CutMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CutMode::Reset => "reset",
            CutMode::Blackhole => "blackhole",
        })
    }
}

/// The addresses a proxied node is started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedAddrs {
    /// Where the node binds its Raft listener (`--raft-addr`): `node_ip(id):P`.
    pub bind: SocketAddr,
    /// Where its proxy listens, which the node advertises (`--raft-adv-addr`):
    /// `node_ip(id):Q`.
    pub advertised: SocketAddr,
}

/// Counters of what the proxies did, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Connections forwarded to a node.
    pub forwarded: u64,
    /// Open connections closed because their link was cut.
    pub dropped: u64,
    /// New connections reset at once on a cut link ([`CutMode::Reset`]).
    pub refused: u64,
    /// New connections held without forwarding on a cut link ([`CutMode::Blackhole`]).
    pub blackholed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    blackholed: AtomicU64,
}

/// The state of every link, shared by the proxies' tasks.
#[derive(Debug)]
struct Links {
    /// Cut links `(from, to)`. A std mutex: it is never held across an await.
    cut: Mutex<BTreeMap<(u64, u64), CutMode>>,
    /// Bumped on every change, so that open connections re-check their link.
    changed: watch::Sender<u64>,
    counters: Counters,
}

impl Links {
    fn mode(&self, from: Option<u64>, to: u64) -> Option<CutMode> {
        let from = from?;
        self.cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(from, to))
            .copied()
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<(u64, u64), CutMode>)) {
        f(&mut self.cut.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Resolves with the link's mode once `from -> to` is cut (at once if it is), or never
    /// if the network is dropped first.
    async fn until_cut(
        &self,
        rx: &mut watch::Receiver<u64>,
        from: Option<u64>,
        to: u64,
    ) -> CutMode {
        // Bounded by the number of link changes; each iteration awaits one.
        loop {
            rx.borrow_and_update();
            if let Some(mode) = self.mode(from, to) {
                return mode;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Resolves once `from -> to` is no longer cut, or when the network is dropped.
    async fn until_healed(&self, rx: &mut watch::Receiver<u64>, from: Option<u64>, to: u64) {
        loop {
            rx.borrow_and_update();
            if self.mode(from, to).is_none() || rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The set of proxies of a cluster and the state of the links between its nodes.
///
/// Methods take `&self`; the proxies run on a small tokio runtime of their own, which is shut
/// down (closing every connection) when the `ProxyNet` is dropped, also on panic.
pub struct ProxyNet {
    runtime: Option<tokio::runtime::Runtime>,
    links: Arc<Links>,
    nodes: Mutex<BTreeMap<u64, ProxiedAddrs>>,
}

impl fmt::Debug for ProxyNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyNet")
            .field("nodes", &self.nodes())
            .field("cut", &self.cut_links())
            .finish()
    }
}

impl ProxyNet {
    /// A network with no proxies yet and every link whole.
    ///
    /// # Errors
    /// When the runtime cannot start.
    pub fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cairn-proxy")
            .enable_all()
            .build()
            .context("starting the proxies' runtime")?;
        let (changed, _) = watch::channel(0);
        Ok(ProxyNet {
            runtime: Some(runtime),
            links: Arc::new(Links {
                cut: Mutex::new(BTreeMap::new()),
                changed,
                counters: Counters::default(),
            }),
            nodes: Mutex::new(BTreeMap::new()),
        })
    }

    /// Starts the proxy of node `id` and returns the addresses to start the node with. The
    /// node's own Raft port is one the OS reported free a moment ago on `node_ip(id)`, an
    /// address nothing else binds. Calling it again for the same node returns the same
    /// addresses.
    ///
    /// # Errors
    /// When `id` has no [`node_ip`] or an address cannot be bound.
    pub fn add_node(&self, id: u64) -> Result<ProxiedAddrs> {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = nodes.get(&id) {
            return Ok(*a);
        }
        let ip = node_ip(id)?;
        let bind = {
            let probe = std::net::TcpListener::bind((ip, 0))
                .with_context(|| format!("binding {ip}:0 for node {id}'s Raft port"))?;
            probe.local_addr().context("reading a bound address")?
        };
        let listener = std::net::TcpListener::bind((ip, 0))
            .with_context(|| format!("binding node {id}'s proxy on {ip}:0"))?;
        listener
            .set_nonblocking(true)
            .context("making the proxy listener non-blocking")?;
        let advertised = listener.local_addr().context("reading a bound address")?;
        let runtime = self.runtime.as_ref().context("the proxies are shut down")?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(listener).context("registering the proxy listener")?
        };
        runtime.spawn(accept_loop(
            listener,
            advertised,
            id,
            bind,
            Arc::clone(&self.links),
        ));
        let addrs = ProxiedAddrs { bind, advertised };
        nodes.insert(id, addrs);
        Ok(addrs)
    }

    /// The nodes with a proxy and their addresses.
    pub fn nodes(&self) -> BTreeMap<u64, ProxiedAddrs> {
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn ids(&self) -> BTreeSet<u64> {
        self.nodes().into_keys().collect()
    }

    /// Cuts the link `from -> to`: node `from` can no longer reach node `to` (open
    /// connections are reset, new ones treated as `mode` says). `to -> from` is unchanged.
    pub fn cut(&self, from: u64, to: u64, mode: CutMode) {
        self.links.update(|cut| {
            cut.insert((from, to), mode);
        });
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_both(&self, a: u64, b: u64, mode: CutMode) {
        self.links.update(|cut| {
            cut.insert((a, b), mode);
            cut.insert((b, a), mode);
        });
    }

    /// Cuts every link to and from node `id` (among the nodes with a proxy).
    pub fn isolate(&self, id: u64, mode: CutMode) {
        let others: Vec<u64> = self.ids().into_iter().filter(|&o| o != id).collect();
        self.links.update(|cut| {
            for o in others {
                cut.insert((id, o), mode);
                cut.insert((o, id), mode);
            }
        });
    }

    /// Cuts every link between nodes of different `groups`, in both directions; links
    /// within a group are left as they are.
    pub fn partition(&self, groups: &[Vec<u64>], mode: CutMode) {
        self.links.update(|cut| {
            for (gi, a) in groups.iter().enumerate() {
                for (gj, b) in groups.iter().enumerate() {
                    if gi != gj {
                        for &x in a {
                            for &y in b {
                                cut.insert((x, y), mode);
                            }
                        }
                    }
                }
            }
        });
    }

    /// Restores the link `from -> to`.
    pub fn heal(&self, from: u64, to: u64) {
        self.links.update(|cut| {
            cut.remove(&(from, to));
        });
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        self.links.update(BTreeMap::clear);
    }

    /// The links that are cut, as `(from, to, mode)`.
    pub fn cut_links(&self) -> Vec<(u64, u64, CutMode)> {
        self.links
            .cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(&(f, t), &m)| (f, t, m))
            .collect()
    }

    /// What the proxies did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.links.counters;
        ProxyStats {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            blackholed: c.blackholed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for ProxyNet {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
        }
    }
}

/// Accepts connections for node `to` until the runtime shuts down.
///
/// While node `to` refuses connections (it is down), the proxy closes its own listener, so
/// that senders too see their connections refused, as without a proxy (a node retries a
/// forwarded request only when the connection was refused, i.e. certainly not delivered).
/// It probes the node every [`PROBE_INTERVAL`] and listens again once the node accepts.
async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    to: u64,
    upstream: SocketAddr,
    links: Arc<Links>,
) {
    // Connections that found the node down say so here.
    let (down_tx, mut down_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut listener = Some(listener);
    // Ends when the runtime is shut down (the task is dropped at an await); each iteration
    // awaits a connection, a probe interval or a back-off.
    loop {
        let Some(l) = &listener else {
            tokio::time::sleep(PROBE_INTERVAL).await;
            if TcpStream::connect(upstream).await.is_ok() {
                listener = TcpListener::bind(addr).await.ok();
                // Forget reports from before the node came back.
                while down_rx.try_recv().is_ok() {}
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => match accepted {
                Ok((conn, peer)) => {
                    let from = node_of_ip(peer.ip());
                    let (links, down) = (Arc::clone(&links), down_tx.clone());
                    tokio::spawn(serve(conn, from, to, upstream, links, down));
                }
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(()) = down_rx.recv() => listener = None,
        }
    }
}

/// Closes `conn` with a TCP reset rather than an orderly FIN.
fn reset(conn: TcpStream) {
    let _ = conn.set_zero_linger();
    drop(conn);
}

/// Forwards one connection from node `from` (`None`: not a node) to node `to` while the link
/// is whole.
async fn serve(
    mut conn: TcpStream,
    from: Option<u64>,
    to: u64,
    upstream: SocketAddr,
    links: Arc<Links>,
    down: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let mut rx = links.changed.subscribe();
    match links.mode(from, to) {
        Some(CutMode::Reset) => {
            links.counters.refused.fetch_add(1, Ordering::Relaxed);
            reset(conn);
            return;
        }
        Some(CutMode::Blackhole) => {
            links.counters.blackholed.fetch_add(1, Ordering::Relaxed);
            // Hold the connection unread; close it once the link heals (the sender has
            // given up on it by then) or after MAX_HOLD.
            let _ = tokio::time::timeout(MAX_HOLD, links.until_healed(&mut rx, from, to)).await;
            reset(conn);
            return;
        }
        None => {}
    }
    let mut up =
        match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                // The node is down: refuse further connections until it is back. This one
                // was accepted already; the sender sees it reset.
                let _ = down.send(());
                reset(conn);
                return;
            }
            _ => return,
        };
    let _ = conn.set_nodelay(true);
    let _ = up.set_nodelay(true);
    links.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut conn, &mut up) => {}
        _ = links.until_cut(&mut rx, from, to) => {
            links.counters.dropped.fetch_add(1, Ordering::Relaxed);
            reset(conn);
            reset(up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn node_ips_map_both_ways() {
        assert_eq!(node_ip(1).ok(), Some(Ipv4Addr::new(127, 0, 0, 11)));
        assert_eq!(node_ip(244).ok(), Some(Ipv4Addr::new(127, 0, 0, 254)));
        assert!(node_ip(0).is_err());
        assert!(node_ip(245).is_err());
        assert_eq!(
            node_of_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 13))),
            Some(3)
        );
        assert_eq!(node_of_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)), None);
    }

    /// An echo server on `addr` that answers each connection until it closes.
    fn echo_server(addr: SocketAddr) -> std::net::TcpListener {
        let l = std::net::TcpListener::bind(addr).expect("bind the echo server");
        let l2 = l.try_clone().expect("clone the listener");
        std::thread::spawn(move || {
            for conn in l2.incoming().take(16) {
                let Ok(mut c) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    for _ in 0..64 {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if c.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        l
    }

    /// Connects from node `from`'s IP to `to` and sends one byte; whether it came back
    /// within half a second.
    fn round_trip(from: u64, to: SocketAddr) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            let src = SocketAddr::new(IpAddr::V4(node_ip(from).expect("ip")), 0);
            s.bind(src).expect("bind the source address");
            let attempt = async {
                let mut stream = s.connect(to).await.ok()?;
                stream.write_all(b"x").await.ok()?;
                let mut b = [0u8; 1];
                let n = stream.read(&mut b).await.ok()?;
                Some(n == 1 && b[0] == b'x')
            };
            matches!(
                tokio::time::timeout(Duration::from_millis(500), attempt).await,
                Ok(Some(true))
            )
        })
    }

    #[test]
    fn cut_links_stop_traffic_in_one_direction_and_heal() {
        let net = ProxyNet::new().expect("proxies");
        let a = net.add_node(201).expect("node 201");
        let b = net.add_node(202).expect("node 202");
        let _ea = echo_server(a.bind);
        let _eb = echo_server(b.bind);
        assert!(round_trip(201, b.advertised), "a whole link forwards");
        assert!(round_trip(202, a.advertised));

        net.cut(201, 202, CutMode::Reset);
        assert!(!round_trip(201, b.advertised), "201 -> 202 is cut");
        assert!(round_trip(202, a.advertised), "202 -> 201 still works");

        net.cut(201, 202, CutMode::Blackhole);
        assert!(
            !round_trip(201, b.advertised),
            "a blackholed link answers nothing"
        );

        net.heal_all();
        assert!(round_trip(201, b.advertised), "healed");
        let s = net.stats();
        assert!(
            s.refused >= 1 && s.blackholed >= 1 && s.forwarded >= 3,
            "{s:?}"
        );
    }

    #[test]
    fn a_proxy_refuses_connections_while_its_node_is_down() {
        let net = ProxyNet::new().expect("proxies");
        let a = net.add_node(221).expect("node 221");
        let refused = || {
            matches!(
                std::net::TcpStream::connect(a.advertised),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        };
        // Nothing listens on the node's port: the first connection tells the proxy so.
        assert!(!round_trip(222, a.advertised));
        crate::wait_until(Duration::from_secs(5), "the proxy to refuse", refused)
            .expect("a proxy whose node is down refuses connections");
        let _echo = echo_server(a.bind);
        crate::wait_until(Duration::from_secs(5), "the proxy to forward again", || {
            round_trip(222, a.advertised)
        })
        .expect("the proxy listens again once its node is up");
    }

    #[test]
    fn isolation_and_partition_cut_the_right_links() {
        let net = ProxyNet::new().expect("proxies");
        for id in [211, 212, 213] {
            net.add_node(id).expect("node");
        }
        net.isolate(212, CutMode::Reset);
        let mut cut: Vec<(u64, u64)> = net.cut_links().iter().map(|&(f, t, _)| (f, t)).collect();
        cut.sort_unstable();
        assert_eq!(cut, [(211, 212), (212, 211), (212, 213), (213, 212)]);
        net.heal_all();
        net.partition(&[vec![211], vec![212, 213]], CutMode::Blackhole);
        let mut cut: Vec<(u64, u64)> = net.cut_links().iter().map(|&(f, t, _)| (f, t)).collect();
        cut.sort_unstable();
        assert_eq!(cut, [(211, 212), (211, 213), (212, 211), (213, 211)]);
        net.heal(211, 212);
        assert_eq!(net.cut_links().len(), 3);
    }
}
