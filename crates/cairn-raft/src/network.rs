//! Node-to-node RPC, client side: openraft's `RaftNetworkV2` over HTTP/1.1 to the peer's
//! raft address, with postcard-encoded bodies, the cluster secret in a header and the Raft
//! group id in the path (`/raft/{group}/{rpc}`). Snapshots are streamed from the file.

use std::future::Future;
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::{NodeAddr, Scheme};
use crate::{TypeConfig, SECRET_HEADER, SNAPSHOT_META_HEADER};

type C = TypeConfig;

/// Bytes read from a snapshot file per chunk of the streamed body.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Encodes a value for the wire (postcard).
///
/// # Errors
/// When serde fails, which only happens for types postcard cannot represent.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(v)
}

/// Decodes a value from the wire (postcard).
///
/// # Errors
/// When the bytes are not a valid encoding of `T`.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}

/// Creates RPC clients for one Raft group.
#[derive(Clone)]
pub struct Network {
    http: reqwest::Client,
    secret: String,
    group: u64,
    scheme: Scheme,
}

impl Network {
    /// A network for group `group`, authenticating with `secret`, over plain HTTP.
    pub fn new(http: reqwest::Client, secret: String, group: u64) -> Self {
        Network {
            http,
            secret,
            group,
            scheme: Scheme::Http,
        }
    }

    /// Speaks to the peers' raft addresses over `scheme` (HTTPS when the nodes use TLS;
    /// `http` must then be a client with the node's TLS config).
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }
}

impl RaftNetworkFactory<C> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, _target: u64, node: &NodeAddr) -> PeerClient {
        PeerClient {
            base: format!("{}/raft/{}", self.scheme.url(&node.raft_addr), self.group),
            http: self.http.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// RPC client to one peer.
pub struct PeerClient {
    base: String,
    http: reqwest::Client,
    secret: String,
}

fn net_err(e: impl std::fmt::Display) -> NetworkError<C> {
    NetworkError::from_string(e.to_string())
}

fn send_err(e: reqwest::Error) -> RPCError<C> {
    if e.is_connect() {
        RPCError::Unreachable(Unreachable::from_string(e.to_string()))
    } else {
        RPCError::Network(net_err(e))
    }
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<C>> {
        let body = encode(req).map_err(|e| RPCError::Network(net_err(e)))?;
        let resp = self
            .http
            .post(format!("{}/{rpc}", self.base))
            .header(SECRET_HEADER, &self.secret)
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(send_err)?;
        decode_reply(resp).await
    }
}

async fn decode_reply<Resp: DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<Resp, RPCError<C>> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(send_err)?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        return Err(RPCError::Network(net_err(format!(
            "peer answered {status}: {text}"
        ))));
    }
    let res: Result<Resp, RaftError<C>> =
        decode(&bytes).map_err(|e| RPCError::Network(net_err(e)))?;
    // A remote fatal error means the peer's Raft has stopped: treat it as unreachable so
    // that openraft backs off (as openraft's own HTTP example does).
    res.map_err(|e| RPCError::Unreachable(Unreachable::from_string(e.to_string())))
}

impl RaftNetworkV2<C> for PeerClient {
    type SnapshotData = tokio::fs::File;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }

    /// Pre-Vote (Raft thesis §9.6): asks the peer whether it would vote for this node at
    /// the next term, without changing the peer's term or vote. It must be a real RPC:
    /// openraft's default implementation grants every pre-vote, which makes Pre-Vote a no-op.
    /// An unreachable peer is an error, never a grant.
    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call("pre-vote", &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, tokio::fs::File>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let header = serde_json::to_string(&(vote, snapshot.meta))
            .map_err(|e| StreamingError::Network(net_err(e)))?;
        // 1 MiB reads: the default 4 KiB chunks cost a syscall and an HTTP chunk each.
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            snapshot.snapshot,
            SNAPSHOT_CHUNK_BYTES,
        ));
        let send = async {
            let resp = self
                .http
                .post(format!("{}/snapshot", self.base))
                .header(SECRET_HEADER, &self.secret)
                .header(SNAPSHOT_META_HEADER, header)
                .body(body)
                .timeout(option.hard_ttl())
                .send()
                .await
                .map_err(send_err)?;
            decode_reply::<SnapshotResponse<C>>(resp).await
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = send => Ok(r?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.call("transfer-leader", &req, option.hard_ttl()).await
    }
}
