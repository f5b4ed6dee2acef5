//! Node-to-node RPC, client side: openraft's `RaftNetworkV2` over HTTP/2 to the peer's raft
//! address, with postcard-encoded bodies, the cluster secret in a header and the Raft group
//! id in the path (`/raft/{group}/{rpc}`).
//!
//! - One HTTP/2 connection per peer carries every RPC of every group, and the writes a
//!   follower forwards: requests are streams on it, so a vote or a heartbeat never waits
//!   behind another request.
//! - Replication is pipelined ([`PeerClient::stream_append`]): one long-lived HTTP/2 stream
//!   per follower, `AppendEntries` requests written into its body as they are produced, up to
//!   [`PIPELINE_DEPTH`] of them unanswered, responses read back in order.
//! - Snapshots are streamed from the file over a connection of their own (HTTP/1.1), so that
//!   hundreds of megabytes queued in the socket do not delay the heartbeats.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt, TryStreamExt};

use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Encoder, LengthDelimitedCodec};

use crate::command::{NodeAddr, Scheme};
use crate::{TypeConfig, MAX_RPC_BODY_BYTES, SECRET_HEADER, SNAPSHOT_META_HEADER};

type C = TypeConfig;

/// Bytes read from a snapshot file per chunk of the streamed body.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Most `AppendEntries` requests of one replication stream sent and not yet answered. openraft
/// produces a request as soon as the leader's log has entries the previous requests did not
/// carry, so with followers' fsyncs taking milliseconds several batches are on the way at once.
pub const PIPELINE_DEPTH: usize = 16;

/// How long a replication stream waits for an answer before it fails (openraft then opens a
/// new one): a request is given one to two of these (`ReplyState::next_reply`). openraft's own per-request budget is the heartbeat
/// interval (30 ms), less than one fsync of a busy disk takes: a stream that failed each time
/// would resend everything it had in flight.
pub const STREAM_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often an idle replication stream sends an empty frame, so that the peer's timeout
/// between request-body pieces (60 s on the raft port) only ends streams that are dead.
pub const STREAM_KEEPALIVE: Duration = Duration::from_secs(10);

/// The framing of replication streams, both ways: each frame is an 8-byte big-endian length,
/// then that many bytes of postcard; a frame of length 0 is a keepalive and carries nothing.
/// Frames are bounded by [`MAX_RPC_BODY_BYTES`], the limit of a unary `AppendEntries`.
pub fn stream_codec() -> LengthDelimitedCodec {
    codec(MAX_RPC_BODY_BYTES)
}

/// Most bytes of one answer frame: an answer is a log id or an error message, far below this.
/// The reader of answers refuses a longer frame before it allocates for it.
pub const MAX_REPLY_FRAME_BYTES: usize = 64 * 1024;

fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(8)
        .max_frame_length(max)
        .new_codec()
}

/// One frame of [`stream_codec`] holding `payload`.
///
/// # Errors
/// When `payload` is longer than a frame may be.
pub fn frame(payload: Vec<u8>) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(payload.len() + 8);
    stream_codec().encode(Bytes::from(payload), &mut buf)?;
    Ok(buf.freeze())
}

/// A stream of byte chunks cut into the frames of [`stream_codec`] (keepalives included,
/// as empty frames). Ends with an error on a frame over the bound or a body cut mid-frame.
pub fn frames<S, E>(body: S) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send
where
    S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    frames_up_to(body, MAX_RPC_BODY_BYTES)
}

/// [`frames`] with frames bounded by `max` bytes.
fn frames_up_to<S, E>(
    body: S,
    max: usize,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send
where
    S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let reader = tokio_util::io::StreamReader::new(body.map_err(std::io::Error::other));
    tokio_util::codec::FramedRead::new(reader, codec(max)).map_ok(BytesMut::freeze)
}

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
    snapshot_http: reqwest::Client,
    secret: String,
    group: u64,
    scheme: Scheme,
}

impl Network {
    /// A network for group `group`, authenticating with `secret`, over plain HTTP.
    ///
    /// `http` carries every RPC but snapshots and must speak HTTP/2
    /// (`http2_prior_knowledge`): [`PeerClient::stream_append`] needs a request body and a
    /// response body that flow at the same time. `snapshot_http` carries snapshots, on
    /// connections of its own (HTTP/1.1 is fine).
    pub fn new(
        http: reqwest::Client,
        snapshot_http: reqwest::Client,
        secret: String,
        group: u64,
    ) -> Self {
        Network {
            http,
            snapshot_http,
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

    async fn new_snapshot_client(&mut self, target: u64, node: &NodeAddr) -> PeerClient {
        PeerClient {
            http: self.snapshot_http.clone(),
            ..self.new_client(target, node).await
        }
    }
}

/// Aborts a task when dropped: the writer of a replication stream ends with its reader.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes the requests of a replication stream into its body (`first` is told when the
/// first request exists, which opens the HTTP/2 stream): one frame each, each holding a
/// pipeline permit until its answer is read (so at most [`PIPELINE_DEPTH`] are unanswered);
/// after the first request, a keepalive frame after each [`STREAM_KEEPALIVE`] without one.
/// Ends when `input` ends, when the body is dropped, or on a request that cannot be encoded
/// (the body then fails, and so does the stream).
async fn write_requests<S>(
    mut input: S,
    mut body: futures::channel::mpsc::Sender<std::io::Result<Bytes>>,
    permits: Arc<tokio::sync::Semaphore>,
    first: tokio::sync::oneshot::Sender<()>,
) where
    S: futures::Stream<Item = AppendEntriesRequest<C>> + Unpin,
{
    let mut first = Some(first);
    loop {
        let next = loop {
            // No keepalive before the first request: nothing reads the body until the
            // stream is opened, which the first request does, and a keepalive that waited
            // for a reader would stop this task from ever asking for that request.
            if first.is_some() {
                break input.next().await;
            }
            match tokio::time::timeout(STREAM_KEEPALIVE, input.next()).await {
                Ok(next) => break next,
                Err(_) => {
                    if body.send(Ok(Bytes::from_static(&[0; 8]))).await.is_err() {
                        return;
                    }
                }
            }
        };
        let Some(req) = next else {
            return;
        };
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        // Taken once the request exists, so that the reader counts as unanswered only
        // requests that were sent.
        let Ok(permit) = permits.acquire().await else {
            return;
        };
        permit.forget();
        let frame = encode(&req).map_err(std::io::Error::other).and_then(frame);
        let failed = frame.is_err();
        if body.send(frame).await.is_err() || failed {
            return;
        }
    }
}

/// The answers' frames of a replication stream.
type Replies = std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Where a replication stream is: connecting, reading answers, or ended.
enum Stage {
    Opening {
        opened: BoxFuture<'static, Result<Option<Replies>, RPCError<C>>>,
        permits: Arc<tokio::sync::Semaphore>,
        writer: AbortOnDrop,
    },
    Open(Box<ReplyState>),
    Done,
}

/// The reading side of a replication stream.
struct ReplyState {
    replies: Replies,
    permits: Arc<tokio::sync::Semaphore>,
    /// Requests answered so far.
    answered: u64,
    /// How many requests had been sent when the last [`STREAM_RESPONSE_TIMEOUT`] passed
    /// without an answer.
    sent_at_last_quiet: u64,
    _writer: AbortOnDrop,
}

impl ReplyState {
    /// Requests sent and not answered (each holds a permit).
    fn outstanding(&self) -> usize {
        PIPELINE_DEPTH.saturating_sub(self.permits.available_permits())
    }

    /// The answer to the oldest unanswered request; `None` when the peer ended the stream
    /// with none outstanding. Fails when a request that was already sent when one
    /// [`STREAM_RESPONSE_TIMEOUT`] began passing quietly is still unanswered when the next
    /// one passes: within two timeouts of being sent, whether or not the stream was idle
    /// before it.
    async fn next_reply(&mut self) -> Option<Result<StreamAppendResult<C>, RPCError<C>>> {
        loop {
            let next =
                match tokio::time::timeout(STREAM_RESPONSE_TIMEOUT, self.replies.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        if self.answered < self.sent_at_last_quiet {
                            let outstanding = self.outstanding();
                            return Some(Err(RPCError::Network(net_err(format!(
                                "no answer within {STREAM_RESPONSE_TIMEOUT:?} to {outstanding} \
                             pipelined AppendEntries"
                            )))));
                        }
                        self.sent_at_last_quiet = self.answered + self.outstanding() as u64;
                        continue;
                    }
                };
            let outstanding = self.outstanding();
            let frame = match next {
                None if outstanding == 0 => return None,
                None => {
                    return Some(Err(RPCError::Network(net_err(format!(
                        "the peer ended the stream with {outstanding} AppendEntries unanswered"
                    )))))
                }
                Some(Err(e)) => return Some(Err(RPCError::Network(net_err(e)))),
                Some(Ok(frame)) => frame,
            };
            if frame.is_empty() {
                continue;
            }
            if outstanding == 0 {
                return Some(Err(RPCError::Network(net_err(
                    "the peer answered a request that was not sent",
                ))));
            }
            self.permits.add_permits(1);
            self.answered += 1;
            let reply: Result<StreamAppendResult<C>, String> = match decode(&frame) {
                Ok(r) => r,
                Err(e) => return Some(Err(RPCError::Network(net_err(e)))),
            };
            // The peer's Raft has stopped: unreachable, so that openraft backs off (as
            // `decode_reply` treats a remote fatal error).
            return Some(reply.map_err(|e| RPCError::Unreachable(Unreachable::from_string(e))));
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

    /// Pipelined replication over one HTTP/2 stream (`POST /raft/{group}/stream-append`, the
    /// server's `server.rs::stream_append`): a task writes each request openraft produces into
    /// the request body as a frame ([`stream_codec`]) while up to [`PIPELINE_DEPTH`] are
    /// unanswered; the follower answers each with a frame holding its
    /// `Result<StreamAppendResult, String>` (an `Err` is the follower's Raft having stopped),
    /// in request order, which is the order yielded here (openraft's contract). The stream
    /// fails when a request stays unanswered for two [`STREAM_RESPONSE_TIMEOUT`]s at most
    /// (`ReplyState::next_reply`) or the connection breaks; dropping it ends the HTTP/2
    /// stream and the writer task.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>>
    where
        S: futures::Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let (body_tx, body_rx) = futures::channel::mpsc::channel::<std::io::Result<Bytes>>(1);
            let permits = Arc::new(tokio::sync::Semaphore::new(PIPELINE_DEPTH));
            let (first_tx, first_rx) = tokio::sync::oneshot::channel();
            let writer = tokio::spawn(write_requests(input, body_tx, permits.clone(), first_tx));
            let writer = AbortOnDrop(writer);
            // Opened inside the stream once openraft has produced the first request, as its
            // sequential default sends one: openraft's backoff after errors runs while a
            // request is produced, so a stopped peer is retried at the backoff's pace. (Opened
            // at once, the connection was retried thousands of times a second.)
            let opening = self
                .http
                .post(format!("{}/stream-append", self.base))
                .header(SECRET_HEADER, &self.secret)
                .body(reqwest::Body::wrap_stream(body_rx))
                .send();
            let open_timeout = option.soft_ttl().max(STREAM_RESPONSE_TIMEOUT);
            let opened = async move {
                if first_rx.await.is_err() {
                    // The input ended before any request: nothing to send.
                    return Ok(None);
                }
                let resp = tokio::time::timeout(open_timeout, opening)
                    .await
                    .map_err(|_| RPCError::Network(net_err("no answer to opening the stream")))?
                    .map_err(send_err)?;
                let status = resp.status();
                if !status.is_success() {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(RPCError::Network(net_err(format!(
                        "peer answered {status}: {text}"
                    ))));
                }
                let replies = frames_up_to(resp.bytes_stream(), MAX_REPLY_FRAME_BYTES);
                Ok(Some(Box::pin(replies) as Replies))
            };
            let first = Stage::Opening {
                opened: Box::pin(opened),
                permits,
                writer,
            };
            let out = futures::stream::unfold(first, |stage| async move {
                let mut state = match stage {
                    Stage::Opening {
                        opened,
                        permits,
                        writer,
                    } => match opened.await {
                        Ok(None) => return None,
                        Ok(Some(replies)) => Box::new(ReplyState {
                            replies,
                            permits,
                            answered: 0,
                            sent_at_last_quiet: 0,
                            _writer: writer,
                        }),
                        Err(e) => return Some((Err(e), Stage::Done)),
                    },
                    Stage::Open(state) => state,
                    Stage::Done => return None,
                };
                let item = state.next_reply().await?;
                let next = if matches!(&item, Ok(Ok(_))) {
                    Stage::Open(state)
                } else {
                    Stage::Done
                };
                Some((item, next))
            });
            let out: BoxStream<'s, _> = Box::pin(out);
            Ok(out)
        })
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

#[cfg(test)]
mod tests {
    //! The replication stream's client against a fake follower on a real socket, served over
    //! HTTP/2 as the raft port serves it.

    use std::time::Instant;

    use axum::body::Body;
    use axum::routing::post;
    use axum::Router;
    use openraft::testing::log_id;
    use openraft::type_config::alias::VoteOf;

    use super::*;

    /// How the fake follower answers the requests of one stream.
    #[derive(Clone, Copy)]
    enum Follower {
        /// Holds every answer until `n` requests have arrived, then answers each with its
        /// `prev_log_id`, in order.
        AnswerAfter(usize),
        /// Reads the requests and never answers.
        Silent,
    }

    async fn serve(follower: Follower) -> (String, tokio::task::JoinHandle<()>) {
        let app = Router::new().route(
            "/raft/0/stream-append",
            post(move |body: Body| async move {
                let (tx, rx) = futures::channel::mpsc::channel::<std::io::Result<Bytes>>(64);
                tokio::spawn(async move {
                    let mut tx = tx;
                    let mut requests = Box::pin(frames(body.into_data_stream()));
                    let mut held = Vec::new();
                    while let Some(Ok(f)) = requests.next().await {
                        if f.is_empty() {
                            continue;
                        }
                        let req: AppendEntriesRequest<C> = decode(&f).expect("a request");
                        held.push(req.prev_log_id);
                        let Follower::AnswerAfter(n) = follower else {
                            continue;
                        };
                        if held.len() >= n {
                            for prev in held.drain(..) {
                                let reply: Result<StreamAppendResult<C>, String> = Ok(Ok(prev));
                                let f = frame(encode(&reply).expect("encode"));
                                if tx.send(f).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
                axum::response::Response::new(Body::from_stream(rx))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        (format!("http://{addr}/raft/0"), server)
    }

    fn client(base: String) -> PeerClient {
        PeerClient {
            base,
            http: reqwest::Client::builder()
                .http2_prior_knowledge()
                .no_proxy()
                .build()
                .expect("client"),
            secret: "s".into(),
        }
    }

    fn request(prev_index: u64) -> AppendEntriesRequest<C> {
        AppendEntriesRequest {
            vote: VoteOf::<C>::new_committed(1, 1),
            prev_log_id: Some(log_id::<C>(1, 1, prev_index)),
            leader_commit: None,
            entries: vec![],
        }
    }

    #[tokio::test]
    async fn requests_are_pipelined_and_answered_in_order() {
        let (base, server) = serve(Follower::AnswerAfter(3)).await;
        let mut peer = client(base);
        let input = futures::stream::iter([request(1), request(2), request(3)]);
        let out = peer
            .stream_append(input, RPCOption::new(Duration::from_millis(30)))
            .await
            .expect("the stream opens");
        // A client that waited for each answer before sending the next would wait forever:
        // the follower answers nothing before it holds three requests.
        let answers: Vec<_> = tokio::time::timeout(Duration::from_secs(10), out.collect())
            .await
            .expect("three answers within 10 s");
        let answered: Vec<u64> = answers
            .into_iter()
            .map(|a| {
                a.expect("no RPC error")
                    .expect("accepted")
                    .expect("a log id")
                    .index
            })
            .collect();
        assert_eq!(answered, vec![1, 2, 3]);
        server.abort();
    }

    /// openraft's backoff after errors runs while it produces a request, so a stream must
    /// not connect before it has one: else a stopped peer is retried in a tight loop.
    #[tokio::test]
    async fn no_connection_is_made_before_a_request_exists() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let mut peer = client(format!("http://{addr}/raft/0"));
        let out = peer
            .stream_append(
                futures::stream::empty(),
                RPCOption::new(Duration::from_millis(30)),
            )
            .await
            .expect("the stream opens");
        let items: Vec<_> = tokio::time::timeout(Duration::from_secs(10), out.collect())
            .await
            .expect("the stream ends");
        assert!(items.is_empty(), "no answers without requests");
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the stream connected without a request to send"
        );
    }

    /// A stream opened while the cluster is idle gets its first request after a while.
    /// Nothing reads the body before that request opens the stream, so keepalives sent
    /// meanwhile filled the body's channel and the writer stopped asking for the request:
    /// replication to that follower stopped for good.
    #[tokio::test(start_paused = true)]
    async fn the_first_request_is_asked_for_however_long_it_takes() {
        let (body_tx, _body_rx) = futures::channel::mpsc::channel(1);
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let input = Box::pin(
            futures::stream::once(async {
                tokio::time::sleep(STREAM_KEEPALIVE * 6).await;
                request(1)
            })
            .chain(futures::stream::pending()),
        );
        let permits = Arc::new(tokio::sync::Semaphore::new(PIPELINE_DEPTH));
        let writer = tokio::spawn(write_requests(input, body_tx, permits, first_tx));
        tokio::time::timeout(STREAM_KEEPALIVE * 12, first_rx)
            .await
            .expect("the first request was produced")
            .expect("and reported");
        writer.abort();
    }

    #[tokio::test]
    async fn a_follower_that_stops_answering_fails_the_stream() {
        let (base, server) = serve(Follower::Silent).await;
        let mut peer = client(base);
        // The request is sent, then the input stays open (as openraft's does between writes).
        let input = futures::stream::iter([request(1)]).chain(futures::stream::pending());
        let began = Instant::now();
        let mut out = peer
            .stream_append(Box::pin(input), RPCOption::new(Duration::from_millis(30)))
            .await
            .expect("the stream opens");
        let first = tokio::time::timeout(Duration::from_secs(10), out.next())
            .await
            .expect("an outcome within 10 s")
            .expect("an item, not the end");
        assert!(
            matches!(first, Err(RPCError::Network(_))),
            "a network error, got {first:?}"
        );
        // Not before a request had one whole timeout to be answered.
        let took = began.elapsed();
        assert!(
            took >= STREAM_RESPONSE_TIMEOUT,
            "failed after only {took:?}"
        );
        server.abort();
    }
}
