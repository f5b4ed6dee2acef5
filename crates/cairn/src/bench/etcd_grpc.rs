//! etcd through its native gRPC API (the `etcd-client` crate), compiled in only with the
//! `etcd-grpc` feature: puts, serializable or linearizable ranges, transactions of puts,
//! and the maintenance status that names the leader.
//!
//! Connections: one gRPC client (one HTTP/2 connection) per bench client, client `k` on
//! member `k mod N`, as the HTTP drivers spread their clients. etcd's own benchmark tool
//! shares `--conns` connections among `--clients` clients instead; one each keeps the
//! comparison with Cairn's HTTP clients (one keep-alive connection each) even.
//!
//! Each client is a plain lazy tonic channel to its one member, not the balanced channel
//! `Client::connect` builds: a balanced channel whose only member is down waits for it to
//! come back, so a bench client on a killed leader would hang instead of failing over to
//! the next member (as an HTTP client, refused at once, does). A lazy channel fails the
//! call when it cannot connect, and connects again on a later call.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use etcd_client::{Channel, Client, GetOptions, Txn, TxnOp};

/// How long one request may take (a member that accepted it may hold it until its own
/// request timeout, about 7 s, when its leader is gone).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// gRPC clients to an etcd cluster, one per bench client.
#[derive(Clone)]
pub(super) struct EtcdGrpc {
    conns: Arc<Vec<Client>>,
}

/// A client of the one member at `url` (`http://HOST:PORT`); connects lazily.
async fn connect(url: &str) -> anyhow::Result<Client> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .with_context(|| format!("etcd member URL {url}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true);
    Client::from_channel(Channel::Tonic(endpoint.connect_lazy()), None)
        .await
        .with_context(|| format!("etcd gRPC client for {url}"))
}

/// `fut`, failed when it takes longer than [`REQUEST_TIMEOUT`] (a second bound beside the
/// channel's own).
async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => bail!("etcd request timed out after {REQUEST_TIMEOUT:?}"),
    }
}

impl EtcdGrpc {
    /// `clients` clients (at least one per member), client `k` on `urls[k % urls.len()]`.
    pub(super) async fn connect(urls: &[String], clients: usize) -> anyhow::Result<EtcdGrpc> {
        if urls.is_empty() {
            bail!("no etcd member to connect to");
        }
        let mut conns = Vec::new();
        for k in 0..clients.max(urls.len()) {
            conns.push(connect(&urls[k % urls.len()]).await?);
        }
        Ok(EtcdGrpc {
            conns: Arc::new(conns),
        })
    }

    fn client(&self, client: usize) -> Client {
        self.conns[client % self.conns.len()].clone()
    }

    /// One put of `key`.
    pub(super) async fn put(&self, client: usize, key: &str, value: &str) -> anyhow::Result<()> {
        let mut c = self.client(client);
        bounded(c.put(key, value, None)).await?;
        Ok(())
    }

    /// Every `(key, value)` put in one transaction (no compare: it always succeeds).
    pub(super) async fn put_all(
        &self,
        client: usize,
        kvs: impl Iterator<Item = (String, String)>,
    ) -> anyhow::Result<()> {
        let ops: Vec<TxnOp> = kvs.map(|(k, v)| TxnOp::put(k, v, None)).collect();
        let mut c = self.client(client);
        let r = bounded(c.txn(Txn::new().and_then(ops))).await?;
        if !r.succeeded() {
            bail!("etcd transaction did not succeed");
        }
        Ok(())
    }

    /// Reads `key`, serializable (the member's own copy) or linearizable (through a
    /// quorum); fails when it is absent.
    pub(super) async fn get(
        &self,
        client: usize,
        key: &str,
        serializable: bool,
    ) -> anyhow::Result<()> {
        let opts = if serializable {
            GetOptions::new().with_serializable()
        } else {
            GetOptions::new()
        };
        let mut c = self.client(client);
        let r = bounded(c.get(key, Some(opts))).await?;
        if r.kvs().is_empty() {
            bail!("key {key} not found");
        }
        Ok(())
    }

    /// Every key under `prefix`, read linearizably through the first member that answers.
    pub(super) async fn keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut last = None;
        for k in 0..self.conns.len() {
            let mut c = self.client(k);
            match bounded(c.get(
                prefix,
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ))
            .await
            {
                Ok(r) => {
                    return Ok(r
                        .kvs()
                        .iter()
                        .filter_map(|kv| kv.key_str().ok().map(str::to_string))
                        .collect())
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no etcd member answered")))
    }
}

/// Whether the member at `url` is the leader, by its maintenance status (its member ID is
/// the leader ID it reports); `false` when it does not answer within a second.
pub(super) async fn is_leader(url: &str) -> bool {
    let Ok(mut c) = connect(url).await else {
        return false;
    };
    match tokio::time::timeout(Duration::from_secs(1), c.status()).await {
        Ok(Ok(s)) => s.header().is_some_and(|h| h.member_id() == s.leader()),
        _ => false,
    }
}
