//! Node-to-node RPC, server side: the axum routes that feed peers' requests into the local
//! Raft groups ([`RaftGroups`]), and the middleware that rejects any request without the
//! cluster secret.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::{StreamExt, TryStreamExt};
use openraft::errors::RaftError;
use openraft::raft::{AppendEntriesRequest, StreamAppendError, StreamAppendResult};
use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};
use openraft::Snapshot;
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

use crate::network::{decode, encode};
use crate::{Raft, TypeConfig, MAX_RPC_BODY_BYTES, SECRET_HEADER, SNAPSHOT_META_HEADER};

type C = TypeConfig;

/// What the RPC handlers need.
#[derive(Clone)]
pub struct RaftService {
    /// The group's Raft.
    pub raft: Raft,
    /// The group's id: the `{group}` of the paths it is served on.
    pub group: u64,
    /// Where received snapshots are spooled before they are installed.
    pub spool_dir: Arc<std::path::PathBuf>,
    /// When a leader last reached this node.
    pub contact: Arc<LeaderContact>,
    /// Until when this node refuses vote and pre-vote requests: its start plus the leader
    /// lease (`election_timeout_max`). openraft keeps the lease a follower grants its
    /// leader in memory only and forgets it on a restart; without this, a follower that
    /// acknowledged a heartbeat, crashed and came back at once could vote a new leader in
    /// while the old one still counts that acknowledgement for its linearizable reads
    /// (`cairn-node/src/reads.rs::read_index_option`). Refusing for one lease after the
    /// start is what the lost lease would have done at most.
    pub votes_from: std::time::Instant,
}

/// The Raft groups a node serves on its raft port: group id -> [`RaftService`]. Cheap to
/// clone (one shared map); [`raft_routes`] serves whatever is registered when a request
/// arrives, so groups added or removed after the router was built are served or refused
/// from then on.
///
/// std `RwLock`, not tokio's: it is held only to clone a service out or to change the map,
/// never across an await.
#[derive(Clone, Default)]
pub struct RaftGroups {
    inner: Arc<RwLock<HashMap<u64, RaftService>>>,
}

/// [`RaftGroups::insert`] of a group that is already registered.
#[derive(Debug, thiserror::Error)]
#[error("raft group {0} is already registered on this node")]
pub struct GroupExists(pub u64);

impl RaftGroups {
    /// An empty registry.
    pub fn new() -> RaftGroups {
        RaftGroups::default()
    }

    /// Registers `svc` under `svc.group`; its RPCs are served from now on.
    ///
    /// # Errors
    /// [`GroupExists`] when a service is already registered for that group (it stays, `svc`
    /// is dropped): remove it first to replace it.
    pub fn insert(&self, svc: RaftService) -> Result<(), GroupExists> {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match map.entry(svc.group) {
            std::collections::hash_map::Entry::Occupied(_) => Err(GroupExists(svc.group)),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(svc);
                Ok(())
            }
        }
    }

    /// Unregisters `group`: requests for it get 404 from now on (those already running
    /// finish with the service they cloned). Returns the service, `None` when the group
    /// was not registered. Does not stop its Raft.
    pub fn remove(&self, group: u64) -> Option<RaftService> {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&group)
    }

    /// The service of `group` (a clone: handles, not a copy of the group), `None` when it is
    /// not registered.
    pub fn get(&self, group: u64) -> Option<RaftService> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&group)
            .cloned()
    }

    /// The registered group ids, ascending.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// Refuses a vote or pre-vote request while `svc.votes_from` is ahead (see there). The
/// candidate counts the error as a vote not granted.
fn check_votes_allowed(svc: &RaftService) -> Result<(), Box<Response>> {
    if std::time::Instant::now() >= svc.votes_from {
        Ok(())
    } else {
        let msg = "this node started within one leader lease and grants no vote yet";
        Err(Box::new(
            (StatusCode::SERVICE_UNAVAILABLE, msg).into_response(),
        ))
    }
}

/// When this node last accepted an `AppendEntries` from a leader: how a follower knows how
/// stale its replica may be (rqlite's `freshness`).
#[derive(Debug, Default)]
pub struct LeaderContact {
    /// Milliseconds since `epoch` of the last contact, plus one (0 = never).
    last_ms: AtomicU64,
    epoch: std::sync::OnceLock<std::time::Instant>,
}

impl LeaderContact {
    fn epoch(&self) -> std::time::Instant {
        *self.epoch.get_or_init(std::time::Instant::now)
    }

    /// Records a contact now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.epoch().elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ms.store(ms + 1, Ordering::Relaxed);
    }

    /// Milliseconds since the last contact; `None` when there was none.
    pub fn elapsed_ms(&self) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if last == 0 {
            return None;
        }
        let now = u64::try_from(self.epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        Some(now.saturating_sub(last - 1))
    }
}

/// Whether `headers` carry `secret` (compared in constant time, so the comparison's timing
/// tells an attacker nothing about the secret).
pub fn has_secret(headers: &HeaderMap, secret: &str) -> bool {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    bool::from(given.ct_eq(secret.as_bytes()))
}

/// Middleware: 401 `unauthorized` unless the request carries the cluster secret.
pub async fn require_secret(
    State(secret): State<Arc<String>>,
    req: Request,
    next: Next,
) -> Response {
    if !has_secret(req.headers(), &secret) {
        let body = serde_json::json!({"error": "missing or wrong cluster secret", "code": cairn_sql::ErrorCode::Unauthorized});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    next.run(req).await
}

/// The Raft RPC routes of every group in `groups`: `/raft/{group}/append`,
/// `/stream-append`, `/vote`, `/pre-vote`, `/snapshot`, `/transfer-leader`, where `{group}`
/// is a group id (`u64`). The group is looked up when each request arrives: one registered
/// after the router was built is served; a group that is not registered gets 404
/// `no raft group {group} on this node` and nothing reaches any Raft (a non-numeric
/// `{group}` gets axum's 400). All groups share the router, hence one connection per peer.
/// Wrap the router with [`require_secret`]. Bodies are bounded by [`rpc_body_limit`], not
/// axum's default of 2 MiB, which would refuse a batch holding one large entry, forever.
pub fn raft_routes(groups: RaftGroups) -> Router {
    Router::new()
        .route("/raft/{group}/append", post(append))
        .route("/raft/{group}/stream-append", post(stream_append))
        .route("/raft/{group}/vote", post(vote))
        .route("/raft/{group}/pre-vote", post(pre_vote))
        .route("/raft/{group}/snapshot", post(snapshot))
        .route("/raft/{group}/transfer-leader", post(transfer_leader))
        .layer(rpc_body_limit())
        .with_state(groups)
}

/// The body limit of every buffered node-to-node RPC: [`MAX_RPC_BODY_BYTES`], enough for a
/// full `AppendEntries` batch of the largest entries and for a forwarded command. The
/// snapshot route streams its body and is not affected.
pub fn rpc_body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_RPC_BODY_BYTES)
}

fn reply<T: Serialize>(v: &T) -> Response {
    match encode(v) {
        Ok(b) => (StatusCode::OK, b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn bad(msg: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, msg.to_string()).into_response()
}

/// The service of the path's `group`, or the 404 to answer.
fn lookup(groups: &RaftGroups, group: u64) -> Result<RaftService, Box<Response>> {
    groups.get(group).ok_or_else(|| {
        let msg = format!("no raft group {group} on this node");
        Box::new((StatusCode::NOT_FOUND, msg).into_response())
    })
}

async fn append(State(groups): State<RaftGroups>, Path(group): Path<u64>, body: Bytes) -> Response {
    let svc = match lookup(&groups, group) {
        Ok(svc) => svc,
        Err(r) => return *r,
    };
    match decode(&body) {
        Ok(req) => {
            let res = svc.raft.append_entries(req).await;
            if matches!(&res, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)))
            {
                svc.contact.touch();
            }
            reply(&res)
        }
        Err(e) => bad(e),
    }
}

/// Given to the raft router's requests as an `axum::Extension` by whoever serves it
/// (`cairn-server`): cancelled when the node begins to stop. A replication stream lasts as
/// long as its leader keeps it open, so without this a stopping node's listener would wait
/// its whole drain timeout for the streams to end; with it they end at once (the leader sees
/// the stream end and opens a new one, which the closed listener refuses).
#[derive(Debug, Clone, Default)]
pub struct Stopping(pub tokio_util::sync::CancellationToken);

/// Pipelined replication (the client is `network.rs::PeerClient::stream_append`): the request
/// body is a sequence of frames (`network::stream_codec`) each holding one `AppendEntries`
/// request, fed to openraft's `Raft::stream_append` as they arrive; the response body holds
/// one frame per request, in order, with `Result<StreamAppendResult, String>` (`Err`: this
/// node's Raft stopped). Needs HTTP/2, where both bodies flow at once. The stream ends at the
/// first request that does not decode, at the first refused append (a conflict or a higher
/// vote, which openraft ends the stream with), or when the leader ends its body.
async fn stream_append(
    State(groups): State<RaftGroups>,
    Path(group): Path<u64>,
    stopping: Option<axum::Extension<Stopping>>,
    body: Body,
) -> Response {
    let svc = match lookup(&groups, group) {
        Ok(svc) => svc,
        Err(r) => return *r,
    };
    tracing::debug!(group, "replication stream opened");
    let stopping = stopping.map(|s| s.0 .0).unwrap_or_default();
    // Each frame: a request, `None` for a keepalive, or `Err` where the stream ends (the
    // body was cut, or a request does not decode).
    let requests =
        crate::network::frames(body.into_data_stream())
            .take_until(stopping.clone().cancelled_owned())
            .map(|frame| {
                let f = frame.map_err(|e| tracing::debug!(error = %e, "replication stream cut"))?;
                if f.is_empty() {
                    return Ok(None);
                }
                decode::<AppendEntriesRequest<C>>(&f).map(Some).map_err(|e| {
                tracing::warn!(error = %e, "undecodable AppendEntries in a replication stream");
            })
            })
            .take_while(|req| std::future::ready(req.is_ok()))
            .filter_map(|req| std::future::ready(req.ok().flatten()));
    let contact = svc.contact.clone();
    let replies = svc.raft.stream_append(requests).map(move |res| {
        let reply: Result<StreamAppendResult<C>, String> = match res {
            Ok(r) => {
                if !matches!(r, Err(StreamAppendError::HigherVote(_))) {
                    contact.touch();
                }
                Ok(r)
            }
            Err(fatal) => Err(fatal.to_string()),
        };
        encode(&reply)
            .map_err(std::io::Error::other)
            .and_then(crate::network::frame)
    });
    Response::new(Body::from_stream(
        replies.take_until(stopping.cancelled_owned()),
    ))
}

async fn vote(State(groups): State<RaftGroups>, Path(group): Path<u64>, body: Bytes) -> Response {
    let svc = match lookup(&groups, group) {
        Ok(svc) => svc,
        Err(r) => return *r,
    };
    if let Err(r) = check_votes_allowed(&svc) {
        return *r;
    }
    match decode(&body) {
        Ok(req) => reply(&svc.raft.vote(req).await),
        Err(e) => bad(e),
    }
}

/// Pre-Vote: whether this node would grant the vote, answered without persisting anything
/// (openraft's `Raft::pre_vote`; it refuses while this node's leader lease holds).
async fn pre_vote(
    State(groups): State<RaftGroups>,
    Path(group): Path<u64>,
    body: Bytes,
) -> Response {
    let svc = match lookup(&groups, group) {
        Ok(svc) => svc,
        Err(r) => return *r,
    };
    if let Err(r) = check_votes_allowed(&svc) {
        return *r;
    }
    match decode(&body) {
        Ok(req) => reply(&svc.raft.pre_vote(req).await),
        Err(e) => bad(e),
    }
}

async fn transfer_leader(
    State(groups): State<RaftGroups>,
    Path(group): Path<u64>,
    body: Bytes,
) -> Response {
    let svc = match lookup(&groups, group) {
        Ok(svc) => svc,
        Err(r) => return *r,
    };
    match decode(&body) {
        Ok(req) => {
            let res: Result<_, RaftError<C>> = svc
                .raft
                .handle_transfer_leader(req)
                .await
                .map_err(RaftError::Fatal);
            reply(&res)
        }
        Err(e) => bad(e),
    }
}

static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

/// Receives a streamed snapshot: the metadata travels in a header, the archive in the body,
/// spooled to a file and handed to Raft without being held in memory.
async fn snapshot(
    State(groups): State<RaftGroups>,
    Path(group): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let svc = match lookup(&groups, group) {
        Ok(svc) => svc,
        Err(r) => return *r,
    };
    let Some(meta) = headers
        .get(SNAPSHOT_META_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return bad("missing snapshot metadata header");
    };
    let (vote, meta): (VoteOf<C>, SnapshotMetaOf<C>) = match serde_json::from_str(meta) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    let path = svc.spool_dir.join(format!(
        "recv-{}.snap",
        SPOOL_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    // Unlinked first, never truncated: a spool file left by a crash may be the current
    // snapshot itself (installing links it there, `state_machine.rs::link_open_file`).
    let _ = tokio::fs::remove_file(&path).await;
    let spooled = async {
        // Buffered: the body arrives in chunks of a few KiB, written in 1 MiB pieces.
        let mut file =
            tokio::io::BufWriter::with_capacity(1024 * 1024, tokio::fs::File::create(&path).await?);
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.try_next().await.map_err(std::io::Error::other)? {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.get_ref().sync_all().await?;
        tokio::fs::File::open(&path).await
    }
    .await;
    let file = match spooled {
        Ok(f) => f,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    let res: Result<_, RaftError<C>> = svc
        .raft
        .install_full_snapshot(
            vote,
            Snapshot {
                meta,
                snapshot: file,
            },
        )
        .await
        .map_err(RaftError::Fatal);
    let _ = tokio::fs::remove_file(&path).await;
    reply(&res)
}
