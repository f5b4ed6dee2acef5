//! Histories: every client operation of a fault test, with when it was invoked, when the
//! client stopped waiting, and what came of it, as a checker needs them.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What came of an operation, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It took effect (once, between its invocation and its return), with the
    /// [`Completion`] recorded.
    Ok,
    /// It certainly did not take effect: it was refused before anything was proposed, or
    /// applied and rolled back.
    Fail,
    /// It may have taken effect at any time after its invocation, or never (a timeout, a
    /// connection lost after sending, a leader change while in flight).
    Unknown,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Fail, Outcome::Unknown];

    /// `ok`, `fail` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        }
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Invocation {
    /// `SELECT v FROM registers WHERE k=?`, at `level=linearizable` unless the workload
    /// says otherwise.
    Read {
        /// The register.
        key: i64,
    },
    /// `INSERT ... ON CONFLICT(k) DO UPDATE SET v=excluded.v`.
    Write {
        /// The register.
        key: i64,
        /// The value written; unique per key within a history.
        value: i64,
    },
    /// `UPDATE registers SET v=new WHERE k=key AND v=expected`.
    Cas {
        /// The register.
        key: i64,
        /// The value the register must hold for the swap.
        expected: i64,
        /// The value written when it does; unique per key within a history.
        new: i64,
    },
    /// Moves `amount` from account `from` to `to` in one transaction, only if `from` holds
    /// at least `amount`.
    Transfer {
        /// The account debited.
        from: i64,
        /// The account credited.
        to: i64,
        /// How much, above 0.
        amount: i64,
    },
    /// `SELECT COUNT(*), SUM(balance), MIN(balance) FROM accounts`, at the same level as
    /// register reads.
    ReadTotal,
}

impl Invocation {
    /// Whether this is an operation of the register workload (the others are the bank's).
    pub fn is_register(&self) -> bool {
        matches!(
            self,
            Invocation::Read { .. } | Invocation::Write { .. } | Invocation::Cas { .. }
        )
    }

    /// The register the operation is on, for a register operation.
    pub fn key(&self) -> Option<i64> {
        match self {
            Invocation::Read { key }
            | Invocation::Write { key, .. }
            | Invocation::Cas { key, .. } => Some(*key),
            Invocation::Transfer { .. } | Invocation::ReadTotal => None,
        }
    }
}

/// What an operation that completed ([`Outcome::Ok`]) returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Completion {
    /// A read's value; `None` when the register has no row yet.
    Value {
        /// The value read.
        value: Option<i64>,
    },
    /// A write was applied.
    Written,
    /// A compare-and-set was applied: whether it swapped (`rows_affected` 1) or found
    /// another value (0).
    Swapped {
        /// Whether the register held `expected`.
        swapped: bool,
    },
    /// A transfer was applied, changing `debited` rows with its debit and `credited` with
    /// its credit: 1 and 1 when money moved, 0 and 0 when the debited account held too
    /// little. Anything else is an anomaly.
    Transferred {
        /// `rows_affected` of the debit.
        debited: i64,
        /// `rows_affected` of the credit.
        credited: i64,
    },
    /// The bank read.
    Total {
        /// The number of accounts.
        accounts: i64,
        /// The sum of all balances.
        total: i64,
        /// The lowest balance.
        min: i64,
    },
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Its position in the history, from 0, in the order operations completed.
    pub index: usize,
    /// The client (thread) that ran it; a client runs one operation at a time.
    pub process: usize,
    /// The index of the node the request was sent to.
    pub node: usize,
    /// What was asked.
    pub invocation: Invocation,
    /// What came of it.
    pub outcome: Outcome,
    /// What it returned, when `outcome` is [`Outcome::Ok`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<Completion>,
    /// When the client sent it, in nanoseconds since the history began.
    pub call_ns: u64,
    /// When the client stopped waiting for it, in nanoseconds since the history began.
    /// For an [`Outcome::Unknown`] operation the effect may come later.
    pub return_ns: u64,
    /// Why it failed or is unknown: the HTTP status and body, or the transport error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A history being recorded by many clients at once.
#[derive(Debug)]
pub struct History {
    origin: Instant,
    ops: Mutex<Vec<OpRecord>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        History {
            origin: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the history began, on the monotonic clock all clients share.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant the history's clock counts from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Appends a finished operation; its `index` is set to its position, which is returned.
    pub fn record(&self, mut op: OpRecord) -> usize {
        let mut ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let index = ops.len();
        op.index = index;
        ops.push(op);
        index
    }

    /// A copy of every operation recorded so far, in the order they were recorded.
    pub fn ops(&self) -> Vec<OpRecord> {
        self.ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many operations with `outcome` that satisfy `filter` were invoked at or after
    /// `since_ns`.
    pub fn count_since(
        &self,
        since_ns: u64,
        outcome: Outcome,
        filter: impl Fn(&Invocation) -> bool,
    ) -> usize {
        self.ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|o| o.call_ns >= since_ns && o.outcome == outcome && filter(&o.invocation))
            .count()
    }
}
