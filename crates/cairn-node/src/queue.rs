//! rqlite's queued writes (`/db/execute?queue`): statements are acknowledged at once with a
//! sequence number and written in batches, many requests per log entry.

use std::sync::{Mutex, Weak};
use std::time::Duration;

use cairn_sql::Statement;
use tokio::sync::{watch, Notify};

use crate::{Node, NodeError};

/// Flush when this many statements are waiting, or every `FLUSH_INTERVAL`.
const FLUSH_STATEMENTS: usize = 128;
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

type Batch = (String, Vec<Statement>, bool);

/// Splits queued requests, in order, into groups that each fit in one `Command::Queued` log
/// entry (at most `MAX_ENTRY_BYTES`). `Node::enqueue` refuses a request that could not fit
/// alone, so every group holds at least one request.
pub(crate) fn split_into_entries(batches: Vec<Batch>) -> Vec<Vec<Batch>> {
    let budget = cairn_raft::MAX_ENTRY_BYTES - cairn_raft::Command::QUEUED_OVERHEAD;
    let mut groups: Vec<Vec<Batch>> = Vec::new();
    let mut current: Vec<Batch> = Vec::new();
    let mut size = 0usize;
    for b in batches {
        let n = cairn_raft::Command::queued_request_size(&b.0, &b.1, b.2);
        if !current.is_empty() && size.saturating_add(n) > budget {
            groups.push(std::mem::take(&mut current));
            size = 0;
        }
        size = size.saturating_add(n);
        current.push(b);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[derive(Default)]
struct Pending {
    next_seq: u64,
    batches: Vec<Batch>,
    statements: usize,
}

/// Statements waiting to be written, and the highest sequence number written so far.
pub(crate) struct Queue {
    pending: Mutex<Pending>,
    notify: Notify,
    done: watch::Sender<u64>,
}

impl Queue {
    pub(crate) fn new() -> Self {
        Queue {
            pending: Mutex::new(Pending {
                next_seq: 1,
                ..Pending::default()
            }),
            notify: Notify::new(),
            done: watch::channel(0).0,
        }
    }

    /// Adds a request; returns its sequence number.
    pub(crate) fn push(&self, db: String, stmts: Vec<Statement>, transaction: bool) -> u64 {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let seq = p.next_seq;
        p.next_seq += 1;
        p.statements += stmts.len();
        p.batches.push((db, stmts, transaction));
        if p.statements >= FLUSH_STATEMENTS {
            self.notify.notify_one();
        }
        seq
    }

    /// Waits until every request up to `seq` has been written (or failed, which is logged).
    pub(crate) async fn wait(&self, seq: u64, timeout: Duration) -> Result<(), NodeError> {
        let mut rx = self.done.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|d| *d >= seq)).await;
        match waited {
            Err(_) => Err(NodeError::Timeout(format!(
                "queued write {seq} not written yet"
            ))),
            Ok(Err(_)) => Err(NodeError::Internal("queue stopped".into())),
            Ok(Ok(_)) => Ok(()),
        }
    }

    fn take(&self) -> (Vec<Batch>, u64) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.statements = 0;
        let last = p.next_seq - 1;
        (std::mem::take(&mut p.batches), last)
    }

    /// Starts the task that writes queued batches; it ends when the node is dropped.
    pub(crate) fn spawn_flusher(node: Weak<Node>) {
        tokio::spawn(async move {
            loop {
                let Some(n) = node.upgrade() else { return };
                let notified = n.queue.notify.notified();
                let _ = tokio::time::timeout(FLUSH_INTERVAL, notified).await;
                let (batches, last) = n.queue.take();
                if batches.is_empty() {
                    continue;
                }
                if let Err(e) = n.flush_queue_batch(batches).await {
                    tracing::error!(error = %e, up_to = last, "queued write failed");
                }
                n.queue.done.send_replace(last);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_requests_are_split_to_fit_one_entry_each() {
        let big = "x".repeat(cairn_raft::MAX_ENTRY_BYTES / 3);
        let req = |sql: &str| ("main".to_string(), vec![Statement::new(sql)], false);
        let groups = split_into_entries(vec![req(&big), req(&big), req(&big), req("SELECT 1")]);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);
        for g in groups {
            let size = cairn_raft::Command::Queued {
                batches: g,
                ctx: cairn_sql::EntryContext::default(),
            }
            .encoded_size();
            assert!(size <= cairn_raft::MAX_ENTRY_BYTES, "{size}");
        }
        assert!(split_into_entries(Vec::new()).is_empty());
    }
}
