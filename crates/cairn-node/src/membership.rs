//! Membership: adding a node (as a learner, then a voter), removing one, and handing
//! leadership to another voter.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_raft::{NodeAddr, Scheme};
use openraft::errors::{ClientWriteError, RaftError};
use openraft::ChangeMembers;

use crate::node::{unexpected, Node};
use crate::rpc::{NodeRpc, Reply};
use crate::{JoinRequest, NodeError, Peer};

/// How long the TLS check of a joining node's raft address may take.
const TLS_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl Node {
    /// Adds a node (learner first, voter once caught up), through the leader. Requires the
    /// cluster secret.
    ///
    /// # Errors
    /// [`NodeError::Unauthorized`], [`NodeError::BadRequest`] for an id taken by another
    /// address or an address taken by another id, [`NodeError::NoLeader`].
    pub async fn join(
        &self,
        req: JoinRequest,
        secret: &str,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        use subtle::ConstantTimeEq;
        if !bool::from(secret.as_bytes().ct_eq(self.secret.as_bytes())) {
            return Err(NodeError::Unauthorized);
        }
        self.route(NodeRpc::Join(req), timeout).await.map(|_| ())
    }

    pub(crate) async fn add_node(&self, req: JoinRequest) -> Result<(), NodeError> {
        let addr = NodeAddr {
            http_addr: req.http_addr,
            raft_addr: req.raft_addr,
        };
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if let Some(existing) = membership.get_node(&req.id) {
            if *existing != addr {
                return Err(NodeError::BadRequest(format!(
                    "node id {} is already a member at {existing}; remove it first",
                    req.id
                )));
            }
            if membership.voter_ids().any(|v| v == req.id) {
                return Ok(());
            }
        } else {
            // One address, one member: Raft's messages name no target id, so a second id
            // at a member's raft address would be answered by that member, and a node
            // could vote twice (or, with enough such ids, alone be a majority).
            if let Some((other, _)) = membership.nodes().find(|(id, n)| {
                **id != req.id && (n.raft_addr == addr.raft_addr || n.http_addr == addr.http_addr)
            }) {
                return Err(NodeError::BadRequest(format!(
                    "node {} not added: node {other} is already a member at {addr}",
                    req.id
                )));
            }
            if self.raft_scheme == Scheme::Https {
                self.check_node_tls(req.id, &addr.raft_addr).await?;
            }
            self.raft
                .add_learner(req.id, addr, true)
                .await
                .map_err(|e| self.membership_error(e))?;
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds([req.id].into()), false)
            .await
            .map_err(|e| self.membership_error(e))?;
        tracing::info!(node = req.id, "node joined as a voter");
        Ok(())
    }

    /// With node TLS, a new node is added only once a TLS handshake with its raft address
    /// succeeds both ways: it presents a certificate from the node CA, and accepts this
    /// node's. Otherwise it would become a learner nobody can replicate to (and that can
    /// reach nobody). Any HTTP answer, even an error status, means the handshake passed.
    ///
    /// # Errors
    /// [`NodeError::BadRequest`] naming the handshake's failure; the joining node retries.
    async fn check_node_tls(&self, id: u64, raft_addr: &str) -> Result<(), NodeError> {
        let url = format!("{}/raft/0/node", self.raft_scheme.url(raft_addr));
        match self
            .raft_http
            .get(&url)
            .timeout(TLS_CHECK_TIMEOUT)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut reason = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    reason = format!("{reason}: {s}");
                    source = s.source();
                }
                Err(NodeError::BadRequest(format!(
                    "node {id} not added: no mutual TLS with its raft address {raft_addr} \
                     (its certificate must come from the node CA): {reason}"
                )))
            }
        }
    }

    pub(crate) fn membership_error(
        &self,
        e: RaftError<cairn_raft::TypeConfig, ClientWriteError<cairn_raft::TypeConfig>>,
    ) -> NodeError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => self.not_leader(),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                NodeError::BadRequest(c.to_string())
            }
            other => NodeError::Internal(other.to_string()),
        }
    }

    /// Removes node `id` from the cluster, through the leader.
    ///
    /// # Errors
    /// [`NodeError::NotFound`] for an unknown id, [`NodeError::NoLeader`].
    pub async fn remove(&self, id: u64, timeout: Duration) -> Result<(), NodeError> {
        self.route(NodeRpc::Remove(id), timeout).await.map(|_| ())
    }

    pub(crate) async fn remove_node(&self, id: u64) -> Result<(), NodeError> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(NodeError::NotFound(format!("node {id} is not a member")));
        }
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters([id].into())
        } else {
            ChangeMembers::RemoveNodes([id].into())
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| self.membership_error(e))?;
        tracing::info!(node = id, "node removed");
        Ok(())
    }

    /// Makes the leader hand leadership to the most up-to-date other voter (Raft §3.10,
    /// leadership transfer) and returns the new leader.
    ///
    /// # Errors
    /// [`NodeError::BadRequest`] when there is no other voter, [`NodeError::Timeout`].
    pub async fn step_down(&self, timeout: Duration) -> Result<Peer, NodeError> {
        match self.route(NodeRpc::StepDown, timeout).await? {
            Reply::Leader(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn transfer_leadership(&self, timeout: Duration) -> Result<Peer, NodeError> {
        let m = self.metrics();
        let progress: BTreeMap<u64, u64> = m
            .replication
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(id, l)| (id, l.map(|l| l.index).unwrap_or(0)))
            .collect();
        let target = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != self.id)
            .max_by_key(|v| progress.get(v).copied().unwrap_or(0))
            .ok_or_else(|| NodeError::BadRequest("no other voter to hand leadership to".into()))?;
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        let m = self
            .raft
            .wait(Some(timeout))
            .current_leader(target, "leadership transfer")
            .await
            .map_err(|e| NodeError::Timeout(e.to_string()))?;
        self.peer(&m, target)
            .ok_or_else(|| NodeError::Internal("new leader has no address".into()))
    }
}
