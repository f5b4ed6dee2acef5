//! Many Raft groups behind one raft port, over one connection per peer pair: three nodes in
//! this process, each an axum server on 127.0.0.1 serving `raft_routes` (behind
//! `require_secret`) for two groups, 0 and 5, each node with one `LogFile` and one HTTP/2
//! client shared by both groups. Each group replicates its own writes only; every node accepts
//! at most one connection from each peer for both groups' traffic; an unknown group is
//! refused with 404, a request without the secret with 401.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::serve::ListenerExt;
use cairn_raft::server::{raft_routes, require_secret, LeaderContact, RaftGroups, RaftService};
use cairn_raft::{
    Command, LogClosed, LogFile, Network, NodeAddr, Raft, RaftSettings, StateMachine, TypeConfig,
    SECRET_HEADER,
};
use cairn_sql::{EntryContext, Outcome, Statement, Store, Value};
use openraft::async_runtime::WatchReceiver;
use openraft::raft::VoteRequest;
use openraft::type_config::alias::VoteOf;

type C = TypeConfig;

const SECRET: &str = "groups-test-secret";
const GROUPS: [u64; 2] = [0, 5];
const NODE_IDS: [u64; 3] = [1, 2, 3];
/// Every wait in this test gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The address node `id`'s clients connect from: a loopback address of its own, so that the
/// server knows which peer each accepted connection comes from (all of 127/8 is loopback on
/// Linux; the servers themselves listen on 127.0.0.1).
fn client_ip(id: u64) -> IpAddr {
    let last = u8::try_from(10 + id).unwrap_or(u8::MAX);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// The database group `g` writes to.
fn db_of(group: u64) -> String {
    format!("g{group}")
}

/// The rows group `g` inserts.
fn rows_of(group: u64) -> Vec<i64> {
    let base = i64::try_from(group * 100).unwrap_or(0);
    vec![base + 1, base + 2, base + 3]
}

/// One node's group: its Raft and the store its state machine applies to.
struct Group {
    raft: Raft,
    store: Arc<Store>,
}

/// One node: a server on 127.0.0.1 serving the node's registered groups.
struct TestNode {
    id: u64,
    addr: SocketAddr,
    groups: RaftGroups,
    rafts: HashMap<u64, Group>,
    /// Peer addresses of the connections the server accepted, in order.
    accepted: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The node's log file's watch, once `start_groups` opened it.
    log_closed: Option<LogClosed>,
    dir: tempfile::TempDir,
}

/// The node-to-node clients, built as `cairn-node/src/node.rs` builds them, connecting from
/// `ip`: HTTP/2 with prior knowledge for every RPC, HTTP/1.1 for snapshots.
fn clients(ip: IpAddr) -> anyhow::Result<(reqwest::Client, reqwest::Client)> {
    let builder = || {
        reqwest::Client::builder()
            .tcp_nodelay(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .local_address(ip)
    };
    let http = builder()
        .http2_prior_knowledge()
        .http2_adaptive_window(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .build()?;
    let snapshot_http = builder().http1_only().build()?;
    Ok((http, snapshot_http))
}

/// Binds node `id`'s listener and starts its server, with no group registered yet: the
/// groups are registered after the router is built, as a node adding groups would.
async fn serve(id: u64) -> anyhow::Result<TestNode> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let log = accepted.clone();
    let listener = listener.tap_io(move |tcp| {
        if let Ok(peer) = tcp.peer_addr() {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(peer);
        }
    });
    let groups = RaftGroups::new();
    let router = raft_routes(groups.clone()).layer(axum::middleware::from_fn_with_state(
        Arc::new(SECRET.to_string()),
        require_secret,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    let dir = tempfile::tempdir()?;
    Ok(TestNode {
        id,
        addr,
        groups,
        rafts: HashMap::new(),
        accepted,
        stop: Some(stop),
        server: Some(server),
        log_closed: None,
        dir,
    })
}

/// Starts `node`'s two groups over one log file and one HTTP/2 client, each group's state
/// machine over a store directory of its own, and registers them with the node's server.
async fn start_groups(node: &mut TestNode, settings: &RaftSettings) -> anyhow::Result<()> {
    let dir = node.dir.path().to_path_buf();
    let log_file = LogFile::open(&dir.join("log.redb"))?;
    node.log_closed = Some(log_file.closed_watch());
    let (http, snapshot_http) = clients(client_ip(node.id))?;
    let config = Arc::new(settings.config()?);
    for group in GROUPS {
        let gdir = dir.join(format!("group-{group}"));
        for sub in ["sm", "snapshots", "spool"] {
            std::fs::create_dir_all(gdir.join(sub))?;
        }
        let store = Arc::new(Store::open(&gdir.join("sm"))?);
        let sm = StateMachine::open(store.clone(), &gdir.join("snapshots"))?;
        let network = Network::new(
            http.clone(),
            snapshot_http.clone(),
            SECRET.to_string(),
            group,
        );
        let raft = Raft::new(node.id, config.clone(), network, log_file.group(group)?, sm).await?;
        node.groups.insert(RaftService {
            raft: raft.clone(),
            group,
            spool_dir: Arc::new(gdir.join("spool")),
            contact: Arc::new(LeaderContact::default()),
            votes_from: Instant::now() + Duration::from_millis(config.election_timeout_max),
        })?;
        node.rafts.insert(group, Group { raft, store });
    }
    Ok(())
}

fn group(node: &TestNode, g: u64) -> anyhow::Result<&Group> {
    node.rafts
        .get(&g)
        .with_context(|| format!("node {} has no group {g}", node.id))
}

/// Waits until every node of group `g` knows the same leader, and returns it.
async fn leader_of(nodes: &[TestNode], g: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut leaders = Vec::new();
        for n in nodes {
            leaders.push(group(n, g)?.raft.metrics().borrow_watched().current_leader);
        }
        if let Some(Some(l)) = leaders.first() {
            if leaders.iter().all(|x| *x == Some(*l)) {
                return Ok(*l);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "group {g} elected no leader known to all: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn node_by_id(nodes: &[TestNode], id: u64) -> anyhow::Result<&TestNode> {
    nodes
        .iter()
        .find(|n| n.id == id)
        .with_context(|| format!("no node {id}"))
}

/// The values of `t` in database `db` of `store`, ascending.
fn values(store: &Store, db: &str) -> anyhow::Result<Vec<i64>> {
    let res = store.query(db, &[Statement::new("SELECT v FROM t ORDER BY v")], None)?;
    let Some(Outcome::Rows(rows)) = res.first().map(|r| &r.outcome) else {
        anyhow::bail!("SELECT on {db} returned {res:?}");
    };
    rows.values
        .iter()
        .map(|row| match row.first() {
            Some(Value::Integer(v)) => Ok(*v),
            other => anyhow::bail!("unexpected value {other:?} in {db}"),
        })
        .collect()
}

/// Writes group `g`'s database through its leader: creates it, a table `t` and its rows.
/// Returns the log index of the last write.
async fn write_group(leader: &TestNode, g: u64) -> anyhow::Result<u64> {
    let raft = &group(leader, g)?.raft;
    raft.client_write(Command::CreateDatabase { name: db_of(g) })
        .await
        .with_context(|| format!("creating {} in group {g}", db_of(g)))?;
    let mut stmts = vec![Statement::new("CREATE TABLE t (v INTEGER)")];
    stmts.extend(
        rows_of(g)
            .into_iter()
            .map(|v| Statement::new(format!("INSERT INTO t VALUES ({v})"))),
    );
    let resp = raft
        .client_write(Command::Execute {
            db: db_of(g),
            stmts,
            transaction: true,
            ctx: EntryContext::default(),
            request_id: None,
        })
        .await
        .with_context(|| format!("writing group {g}"))?;
    anyhow::ensure!(
        resp.data.error.is_none(),
        "group {g}'s write failed: {:?}",
        resp.data.error
    );
    for r in &resp.data.results {
        anyhow::ensure!(
            matches!(r.outcome, Outcome::Write { .. }),
            "group {g}: a statement failed: {r:?}"
        );
    }
    Ok(resp.log_id.index)
}

/// Terms of every group on every node, to check that a refused request changed none.
fn terms(nodes: &[TestNode]) -> anyhow::Result<Vec<(u64, u64, u64)>> {
    let mut out = Vec::new();
    for n in nodes {
        for g in GROUPS {
            out.push((
                n.id,
                g,
                group(n, g)?.raft.metrics().borrow_watched().current_term,
            ));
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_groups_share_one_connection_per_peer() -> anyhow::Result<()> {
    let settings = RaftSettings {
        // No snapshot in this test: snapshots travel on connections of their own.
        snapshot_threshold: 100_000,
        ..RaftSettings::default()
    };
    let mut nodes = Vec::new();
    for id in NODE_IDS {
        nodes.push(serve(id).await?);
    }
    for node in &mut nodes {
        start_groups(node, &settings).await?;
        let ids = node.groups.ids();
        anyhow::ensure!(ids == GROUPS.to_vec(), "node {} serves {ids:?}", node.id);
    }
    let members: BTreeMap<u64, NodeAddr> = nodes
        .iter()
        .map(|n| {
            (
                n.id,
                NodeAddr {
                    http_addr: "127.0.0.1:1".into(),
                    raft_addr: n.addr.to_string(),
                },
            )
        })
        .collect();
    for g in GROUPS {
        group(&nodes[0], g)?
            .raft
            .initialize(members.clone())
            .await?;
    }

    // Both groups elect a leader; move group 5's to group 0's, so that one node's single
    // connection to each follower carries both groups' replication.
    let leader0 = leader_of(&nodes, 0).await?;
    let mut leader5 = leader_of(&nodes, 5).await?;
    if leader5 != leader0 {
        let deadline = Instant::now() + TIMEOUT;
        while leader5 != leader0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "group 5's leadership did not move to node {leader0}"
            );
            group(node_by_id(&nodes, leader5)?, 5)?
                .raft
                .trigger()
                .transfer_leader(leader0)
                .await?;
            // A transfer can fail (an election at the same moment): ask again, up to the
            // deadline, when this wait runs out.
            group(node_by_id(&nodes, leader0)?, 5)?
                .raft
                .wait(Some(Duration::from_secs(2)))
                .current_leader(leader0, "group 5 led by group 0's leader")
                .await
                .ok();
            leader5 = leader_of(&nodes, 5).await?;
        }
    }
    let leader = node_by_id(&nodes, leader0)?;

    // Each group's writes reach every node's store of that group, and only that group's.
    let mut last = HashMap::new();
    for g in GROUPS {
        last.insert(g, write_group(leader, g).await?);
    }
    for n in &nodes {
        for g in GROUPS {
            let grp = group(n, g)?;
            grp.raft
                .wait(Some(TIMEOUT))
                .applied_index_at_least(Some(last[&g]), "applied the writes")
                .await
                .with_context(|| format!("node {} group {g}", n.id))?;
            anyhow::ensure!(
                values(&grp.store, &db_of(g))? == rows_of(g),
                "node {} group {g} holds its rows",
                n.id
            );
            for other in GROUPS.iter().filter(|o| **o != g) {
                anyhow::ensure!(
                    !grp.store.exists(&db_of(*other)),
                    "node {} group {g} holds group {other}'s database",
                    n.id
                );
            }
        }
    }

    // One connection from each peer at most, for both groups' traffic.
    let node_of_ip: HashMap<IpAddr, u64> = NODE_IDS.iter().map(|&id| (client_ip(id), id)).collect();
    for n in &nodes {
        let accepted = n
            .accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut per_peer: BTreeMap<u64, usize> = BTreeMap::new();
        for peer in &accepted {
            let from = node_of_ip
                .get(&peer.ip())
                .with_context(|| format!("node {} accepted a stranger: {peer}", n.id))?;
            *per_peer.entry(*from).or_default() += 1;
        }
        anyhow::ensure!(
            per_peer.values().all(|&c| c <= 1),
            "node {} accepted more than one connection from a peer: {per_peer:?} ({accepted:?})",
            n.id
        );
        anyhow::ensure!(
            !per_peer.contains_key(&n.id),
            "node {} connected to itself",
            n.id
        );
        if n.id != leader0 {
            anyhow::ensure!(
                per_peer.get(&leader0) == Some(&1),
                "follower {} has its leader's connection: {per_peer:?}",
                n.id
            );
        }
    }

    // An unknown group: 404, and no group's term moved; no secret: 401.
    let probe = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .http1_only()
        .build()?;
    let before = terms(&nodes)?;
    let vote = cairn_raft::encode(&VoteRequest::<C>::new(VoteOf::<C>::new(1000, 2), None))?;
    let target = &nodes[0];
    let resp = probe
        .post(format!("http://{}/raft/9/vote", target.addr))
        .header(SECRET_HEADER, SECRET)
        .body(vote.clone())
        .send()
        .await?;
    anyhow::ensure!(resp.status() == reqwest::StatusCode::NOT_FOUND, "{resp:?}");
    let text = resp.text().await?;
    anyhow::ensure!(text == "no raft group 9 on this node", "{text}");
    for path in ["/raft/9/vote", "/raft/0/vote"] {
        let resp = probe
            .post(format!("http://{}{path}", target.addr))
            .body(vote.clone())
            .send()
            .await?;
        anyhow::ensure!(
            resp.status() == reqwest::StatusCode::UNAUTHORIZED,
            "{path} without the secret: {resp:?}"
        );
    }
    anyhow::ensure!(terms(&nodes)? == before, "a refused request moved a term");

    // Stop every Raft, then every server; the log files close.
    for n in &mut nodes {
        for g in GROUPS {
            n.groups.remove(g);
        }
        for (_, grp) in n.rafts.drain() {
            grp.raft.shutdown().await?;
        }
    }
    drop(probe);
    for n in &mut nodes {
        if let Some(stop) = n.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = n.server.take() {
            tokio::time::timeout(TIMEOUT, server)
                .await
                .with_context(|| format!("node {}'s server did not stop", n.id))???;
        }
        if let Some(closed) = &n.log_closed {
            wait_closed(closed).await?;
        }
    }
    Ok(())
}

/// Waits, up to [`TIMEOUT`], for the file behind `closed` to be closed.
async fn wait_closed(closed: &LogClosed) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    while !closed.is_closed() {
        anyhow::ensure!(Instant::now() < deadline, "a log file is still open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
