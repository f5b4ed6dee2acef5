//! The client workloads of a fault test, and how a reply becomes an [`Outcome`].
//!
//! - Registers: reads (`level=linearizable` unless [`WorkloadOptions::read_level`] says
//!   otherwise), writes and compare-and-set on a few rows of
//!   `registers(k INTEGER PRIMARY KEY, v INTEGER)`, checked for linearizability
//!   (`linearizability.rs`).
//! - Bank: transfers between accounts of `accounts(id, balance)`, each one transaction of two
//!   guarded `UPDATE`s, and reads of the total, which must never change ([`check_bank`]).
//!
//! Every request goes to a node chosen at random (followers forward writes and leader reads),
//! gives the server `timeout=1s` to find a leader, and gives up after a short client timeout.
//!
//! # Classifying replies
//! Soundness first: an outcome is [`Outcome::Fail`] only when the operation certainly did not
//! take effect, and everything the client cannot be sure of is [`Outcome::Unknown`]:
//!
//! | reply | outcome | why |
//! |---|---|---|
//! | 200, no error in any result slot | ok | |
//! | 200 with an error in a slot | fail | applied and rolled back (`transaction`), or the one statement failed |
//! | connection refused | fail | nothing was sent |
//! | any 4xx | fail | refused before proposing (bad request, unknown database), or applied as an error |
//! | 503 `no_leader` | fail | a node only reports it after attempts that never reached a leader (`Node::route` retries only when the request certainly did not arrive) |
//! | 503 `stale_read` | fail | a read refused locally |
//! | 503 `unavailable` | unknown | a forwarded write whose answer was lost, or an entry discarded on a leader change (`LogEntryDiscarded`): may commit later |
//! | 504 `timeout`, 500, other | unknown | |
//! | client timeout, reset after sending | unknown | |

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::blocking::Client;
use reqwest::redirect::Policy;
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::Cluster;
use crate::history::{Completion, History, Invocation, OpRecord, Outcome};
use crate::http::{HttpClient, Level};
use crate::wait::wait_for;
use crate::LEADER_TIMEOUT;

/// `registers`: one row per register.
pub const CREATE_REGISTERS: &str =
    "CREATE TABLE IF NOT EXISTS registers (k INTEGER PRIMARY KEY, v INTEGER)";
/// `accounts`: one row per bank account.
pub const CREATE_ACCOUNTS: &str =
    "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)";
const READ_REGISTER: &str = "SELECT v FROM registers WHERE k = ?";
const WRITE_REGISTER: &str =
    "INSERT INTO registers (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v";
const CAS_REGISTER: &str = "UPDATE registers SET v = ? WHERE k = ? AND v = ?";
/// Debits only when the balance covers the amount...
const DEBIT: &str = "UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ?";
/// ...and credits only when the debit just before it in the same transaction changed a row:
/// SQLite's `changes()` is the row count of the last completed INSERT, UPDATE or DELETE on
/// the connection, and a batch runs on one connection in order.
const CREDIT: &str = "UPDATE accounts SET balance = balance + ? WHERE id = ? AND changes() = 1";
const READ_TOTAL: &str = "SELECT COUNT(*), SUM(balance), MIN(balance) FROM accounts";

/// What the workloads do.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// Registers (keys 1..=keys). Default 4.
    pub keys: usize,
    /// Clients running register operations. Default 4.
    pub register_clients: usize,
    /// Clients running transfers. Default 2.
    pub transfer_clients: usize,
    /// Clients reading the bank's total. Default 1.
    pub total_readers: usize,
    /// Bank accounts (ids 1..=accounts). Default 4.
    pub accounts: usize,
    /// Each account's opening balance. Default 100.
    pub initial_balance: i64,
    /// How long a client waits for a reply before giving up. Default 3 s: above the
    /// server's worst case for `timeout=1s` (a forwarded request may take the timeout plus
    /// one second), so that the server's own, more precise answer usually arrives.
    pub request_timeout: Duration,
    /// The `timeout` the server gets to find a leader. Default 1 s.
    pub server_timeout: Duration,
    /// Most operations one client runs. Default 100 000.
    pub max_ops_per_client: usize,
    /// The consistency level of register and total reads. Default
    /// [`Level::Linearizable`]; weaker levels are expected to fail the checks under
    /// partitions, which shows that the checks can fail.
    pub read_level: Level,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            keys: 4,
            register_clients: 4,
            transfer_clients: 2,
            total_readers: 1,
            accounts: 4,
            initial_balance: 100,
            request_timeout: Duration::from_secs(3),
            server_timeout: Duration::from_secs(1),
            max_ops_per_client: 100_000,
            read_level: Level::Linearizable,
        }
    }
}

impl WorkloadOptions {
    /// The sum of all balances, which every transfer preserves.
    pub fn total(&self) -> i64 {
        i64::try_from(self.accounts).unwrap_or(i64::MAX) * self.initial_balance
    }
}

/// Creates the workloads' tables and opens the accounts, through node `via`, retrying
/// while no leader is known (up to [`LEADER_TIMEOUT`]).
///
/// # Errors
/// When the cluster does not accept the statements in time.
pub fn create_tables<C: Cluster + ?Sized>(c: &C, via: usize, opts: &WorkloadOptions) -> Result<()> {
    let mut stmts = vec![json!(CREATE_REGISTERS), json!(CREATE_ACCOUNTS)];
    for id in 1..=opts.accounts {
        stmts.push(json!([
            "INSERT OR IGNORE INTO accounts (id, balance) VALUES (?, ?)",
            id,
            opts.initial_balance
        ]));
    }
    let body = Value::Array(stmts);
    // One transaction of idempotent statements: a retry after a lost answer changes nothing.
    wait_for(LEADER_TIMEOUT, "the workload tables", || {
        match c.execute_with(via, &[("transaction", "")], &body) {
            Ok(r) if r.is_clean() => Ok(()),
            Ok(r) => Err(r.to_string()),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .context("creating the workload tables")
}

/// A reply, or why there is none.
#[derive(Debug)]
enum Answer {
    /// The request certainly did not reach the server (the connection failed).
    NotSent(String),
    /// It may have reached the server (timeout, reset, unreadable body).
    Lost(String),
    /// An HTTP answer.
    Http {
        status: u16,
        body: Value,
        text: String,
    },
}

impl Answer {
    fn describe(&self) -> String {
        match self {
            Answer::NotSent(e) => format!("not sent: {e}"),
            Answer::Lost(e) => format!("no answer: {e}"),
            Answer::Http { status, body, text } => {
                // The code first: the text may be cut.
                let code = match body.get("code").and_then(Value::as_str) {
                    Some(c) => c,
                    None if *status == 200 => "statement_error",
                    None => "-",
                };
                let t: String = text.trim().chars().take(300).collect();
                format!("HTTP {status} {code}: {t}")
            }
        }
    }
}

/// An error and its causes, `outer: inner: ...` (reqwest's own text hides the cause, e.g.
/// "connection refused" or "operation timed out").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    // Bounded: error chains are short; stop after a few links anyway.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Sorts a reply into an outcome (see the module docs); on `Ok`, returns the `results`.
fn classify(answer: &Answer) -> (Outcome, Option<&[Value]>) {
    match answer {
        Answer::NotSent(_) => (Outcome::Fail, None),
        Answer::Lost(_) => (Outcome::Unknown, None),
        Answer::Http { status, body, .. } => {
            let code = body.get("code").and_then(Value::as_str);
            match (*status, code) {
                (200, _) => match body.get("results").and_then(Value::as_array) {
                    Some(results) if results.iter().any(|r| r.get("error").is_some()) => {
                        (Outcome::Fail, None)
                    }
                    Some(results) => (Outcome::Ok, Some(results.as_slice())),
                    None => (Outcome::Unknown, None),
                },
                (400..=499, _) => (Outcome::Fail, None),
                (503, Some("no_leader" | "stale_read")) => (Outcome::Fail, None),
                _ => (Outcome::Unknown, None),
            }
        }
    }
}

/// `rows_affected` of a result slot; rqlite leaves it out when it is 0.
fn rows_affected(slot: &Value) -> Option<i64> {
    match slot.get("rows_affected") {
        None => Some(0),
        Some(v) => v.as_i64(),
    }
}

/// The first row of a query result slot, if it has one.
fn first_row(slot: &Value) -> Option<&[Value]> {
    slot.get("values")
        .and_then(Value::as_array)
        .and_then(|rows| rows.first())
        .and_then(Value::as_array)
        .map(Vec::as_slice)
}

/// The shared state of a fault test's clients.
#[derive(Debug)]
pub struct Workload {
    opts: WorkloadOptions,
    urls: Vec<String>,
    history: History,
    /// The next value to write: values are unique across the history, which keeps the
    /// checker's search small and makes every read attributable to one write.
    next_value: AtomicI64,
    params_timeout: String,
}

/// How a client loop ends: at `deadline`, when `stop` is set, or after
/// [`WorkloadOptions::max_ops_per_client`] operations.
#[derive(Debug, Clone, Copy)]
pub struct RunUntil<'a> {
    /// Set by the test to end the run.
    pub stop: &'a AtomicBool,
    /// The latest time a new operation starts.
    pub deadline: Instant,
}

impl RunUntil<'_> {
    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

impl Workload {
    /// Clients of the nodes at `urls` (`http://HOST:PORT`), recording into a new history.
    pub fn new(opts: WorkloadOptions, urls: Vec<String>) -> Self {
        let params_timeout = format!("{}ms", opts.server_timeout.as_millis());
        Workload {
            opts,
            urls,
            history: History::new(),
            next_value: AtomicI64::new(1),
            params_timeout,
        }
    }

    /// The options.
    pub fn options(&self) -> &WorkloadOptions {
        &self.opts
    }

    /// The history recorded so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    fn client(&self) -> Result<Client> {
        Client::builder()
            .timeout(self.opts.request_timeout)
            .connect_timeout(self.opts.request_timeout)
            .redirect(Policy::none())
            .no_proxy()
            // A fresh connection per request: a killed and restarted node reuses its port.
            .pool_max_idle_per_host(0)
            .build()
            .context("building a workload client")
    }

    fn post(
        &self,
        http: &Client,
        node: usize,
        path: &str,
        params: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let Some(base) = self.urls.get(node) else {
            return Answer::NotSent(format!("no node {node}"));
        };
        let url = match HttpClient::url(base, path, params) {
            Ok(u) => u,
            Err(e) => return Answer::NotSent(format!("{e:#}")),
        };
        match http.post(url).json(body).send() {
            Err(e) if e.is_connect() || e.is_builder() => Answer::NotSent(chain(&e)),
            Err(e) => Answer::Lost(chain(&e)),
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.text() {
                    Ok(text) => Answer::Http {
                        status,
                        body: serde_json::from_str(&text).unwrap_or(Value::Null),
                        text,
                    },
                    Err(e) => Answer::Lost(format!("HTTP {status}, body lost: {}", chain(&e))),
                }
            }
        }
    }

    /// Runs `invocation` on `node` and records it.
    fn invoke(
        &self,
        http: &Client,
        process: usize,
        node: usize,
        invocation: Invocation,
    ) -> OpRecord {
        let timeout = self.params_timeout.as_str();
        let (path, params, body): (&str, Vec<(&str, &str)>, Value) = match &invocation {
            Invocation::Read { key } => (
                "/db/query",
                vec![
                    ("level", self.opts.read_level.as_str()),
                    ("timeout", timeout),
                ],
                json!([[READ_REGISTER, key]]),
            ),
            Invocation::Write { key, value } => (
                "/db/execute",
                vec![("timeout", timeout)],
                json!([[WRITE_REGISTER, key, value]]),
            ),
            Invocation::Cas { key, expected, new } => (
                "/db/execute",
                vec![("timeout", timeout)],
                json!([[CAS_REGISTER, new, key, expected]]),
            ),
            Invocation::Transfer { from, to, amount } => (
                "/db/execute",
                vec![("transaction", ""), ("timeout", timeout)],
                json!([[DEBIT, amount, from, amount], [CREDIT, amount, to]]),
            ),
            Invocation::ReadTotal => (
                "/db/query",
                vec![
                    ("level", self.opts.read_level.as_str()),
                    ("timeout", timeout),
                ],
                json!([READ_TOTAL]),
            ),
        };
        let call_ns = self.history.now_ns();
        let answer = self.post(http, node, path, &params, &body);
        let return_ns = self.history.now_ns();
        let (mut outcome, results) = classify(&answer);
        let mut completion = None;
        let mut error = (outcome != Outcome::Ok).then(|| answer.describe());
        if let Some(results) = results {
            completion = complete(&invocation, results);
            if completion.is_none() {
                // A 200 whose results make no sense for the statement: do not guess.
                outcome = Outcome::Unknown;
                error = Some(format!("unexpected results: {}", answer.describe()));
            }
        }
        let record = OpRecord {
            index: 0,
            process,
            node,
            invocation,
            outcome,
            completion,
            call_ns,
            return_ns,
            error,
        };
        let index = self.history.record(record.clone());
        OpRecord { index, ..record }
    }

    fn fresh_value(&self) -> i64 {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }

    fn key_count(&self) -> i64 {
        i64::try_from(self.opts.keys.max(1)).unwrap_or(1)
    }

    fn account_count(&self) -> i64 {
        i64::try_from(self.opts.accounts.max(2)).unwrap_or(2)
    }

    /// A register client: reads (half), writes and compare-and-sets (a quarter each) on
    /// random registers through random nodes, until `until`. A swap expects the value this
    /// client last saw in the register, so that some succeed.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn run_register_client(
        &self,
        process: usize,
        seed: u64,
        until: RunUntil<'_>,
    ) -> Result<()> {
        let http = self.client()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seen: HashMap<i64, i64> = HashMap::new();
        for _ in 0..self.opts.max_ops_per_client {
            if until.done() {
                break;
            }
            let key = rng.gen_range(1..=self.key_count());
            let node = rng.gen_range(0..self.urls.len().max(1));
            let invocation = match rng.gen_range(0..4) {
                0 | 1 => Invocation::Read { key },
                2 => Invocation::Write {
                    key,
                    value: self.fresh_value(),
                },
                _ => Invocation::Cas {
                    key,
                    expected: seen.get(&key).copied().unwrap_or(0),
                    new: self.fresh_value(),
                },
            };
            let r = self.invoke(&http, process, node, invocation);
            match (&r.invocation, &r.completion) {
                (_, Some(Completion::Value { value: Some(v) })) => {
                    seen.insert(key, *v);
                }
                (Invocation::Write { value, .. }, Some(Completion::Written)) => {
                    seen.insert(key, *value);
                }
                (Invocation::Cas { new, .. }, Some(Completion::Swapped { swapped: true })) => {
                    seen.insert(key, *new);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A bank client: transfers of 1 up to the opening balance between two random accounts,
    /// through random nodes, until `until`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn run_transfer_client(
        &self,
        process: usize,
        seed: u64,
        until: RunUntil<'_>,
    ) -> Result<()> {
        let http = self.client()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let n = self.account_count();
        for _ in 0..self.opts.max_ops_per_client {
            if until.done() {
                break;
            }
            let from = rng.gen_range(1..=n);
            let to = (from + rng.gen_range(1..n) - 1) % n + 1;
            let amount = rng.gen_range(1..=self.opts.initial_balance.max(1));
            let node = rng.gen_range(0..self.urls.len().max(1));
            self.invoke(
                &http,
                process,
                node,
                Invocation::Transfer { from, to, amount },
            );
        }
        Ok(())
    }

    /// A bank reader: reads of the total through random nodes until `until`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn run_total_reader(&self, process: usize, seed: u64, until: RunUntil<'_>) -> Result<()> {
        let http = self.client()?;
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..self.opts.max_ops_per_client {
            if until.done() {
                break;
            }
            let node = rng.gen_range(0..self.urls.len().max(1));
            self.invoke(&http, process, node, Invocation::ReadTotal);
        }
        Ok(())
    }

    /// After the faults: one successful read of every register and of the bank
    /// total, recorded as process `process`, each retried through the nodes in turn until
    /// it succeeds or `timeout` passes.
    ///
    /// # Errors
    /// When a read does not succeed in time.
    pub fn final_reads(&self, process: usize, timeout: Duration) -> Result<()> {
        let http = self.client()?;
        let mut invocations: Vec<Invocation> = (1..=self.key_count())
            .map(|key| Invocation::Read { key })
            .collect();
        invocations.push(Invocation::ReadTotal);
        for inv in invocations {
            let mut attempt = 0usize;
            let nodes = self.urls.len().max(1);
            wait_for(timeout, &format!("a final {inv:?}"), || {
                attempt += 1;
                let r = self.invoke(&http, process, attempt % nodes, inv.clone());
                if r.outcome == Outcome::Ok {
                    Ok(())
                } else {
                    Err(r.error.unwrap_or_default())
                }
            })?;
        }
        Ok(())
    }
}

/// What a 200 reply's `results` say about `invocation`, or `None` when they do not fit it.
fn complete(invocation: &Invocation, results: &[Value]) -> Option<Completion> {
    let first = results.first()?;
    match invocation {
        Invocation::Read { .. } => match first_row(first) {
            None => Some(Completion::Value { value: None }),
            Some([v]) if v.is_null() => Some(Completion::Value { value: None }),
            Some([v]) => v.as_i64().map(|v| Completion::Value { value: Some(v) }),
            Some(_) => None,
        },
        Invocation::Write { .. } => (rows_affected(first)? == 1).then_some(Completion::Written),
        Invocation::Cas { .. } => match rows_affected(first)? {
            0 => Some(Completion::Swapped { swapped: false }),
            1 => Some(Completion::Swapped { swapped: true }),
            _ => None,
        },
        Invocation::Transfer { .. } => Some(Completion::Transferred {
            debited: rows_affected(first)?,
            credited: rows_affected(results.get(1)?)?,
        }),
        Invocation::ReadTotal => match first_row(first)? {
            [n, sum, min] => Some(Completion::Total {
                accounts: n.as_i64()?,
                total: sum.as_i64()?,
                min: min.as_i64()?,
            }),
            _ => None,
        },
    }
}

/// What the bank's history shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BankCheck {
    /// Transfers that moved money.
    pub moved: usize,
    /// Transfers refused for lack of funds (neither `UPDATE` changed a row).
    pub refused: usize,
    /// Successful reads of the total.
    pub totals_read: usize,
    /// Every violation: a total that differs from the opening total, a negative balance, a
    /// missing account, a transfer that debited without crediting or the reverse.
    pub anomalies: Vec<String>,
}

/// Checks the bank's invariants on `history`: every successful read sees `accounts`
/// accounts, the total `total` and no negative balance; every successful transfer either
/// debited and credited one row each, or neither.
pub fn check_bank(history: &[OpRecord], accounts: usize, total: i64) -> BankCheck {
    let mut check = BankCheck::default();
    let accounts = i64::try_from(accounts).unwrap_or(i64::MAX);
    for op in history.iter().filter(|o| o.outcome == Outcome::Ok) {
        match (&op.invocation, &op.completion) {
            (Invocation::Transfer { .. }, Some(Completion::Transferred { debited, credited })) => {
                match (debited, credited) {
                    (1, 1) => check.moved += 1,
                    (0, 0) => check.refused += 1,
                    _ => check.anomalies.push(format!(
                    "operation {}: transfer {:?} debited {debited} row(s) and credited {credited}",
                    op.index, op.invocation
                )),
                }
            }
            (
                Invocation::ReadTotal,
                Some(Completion::Total {
                    accounts: n,
                    total: sum,
                    min,
                }),
            ) => {
                check.totals_read += 1;
                if *n != accounts || *sum != total || *min < 0 {
                    check.anomalies.push(format!(
                        "operation {} (node index {}): read {n} accounts, total {sum}, lowest balance {min}; expected {accounts} accounts, total {total}, none negative",
                        op.index, op.node
                    ));
                }
            }
            (Invocation::Transfer { .. } | Invocation::ReadTotal, c) => {
                check.anomalies.push(format!(
                    "operation {}: ok without a fitting completion ({c:?})",
                    op.index
                ))
            }
            _ => {}
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, body: Value) -> Answer {
        Answer::Http {
            status,
            text: body.to_string(),
            body,
        }
    }

    #[test]
    fn replies_are_classified_soundly() {
        let ok = http(200, json!({"results": [{"rows_affected": 1}]}));
        assert_eq!(classify(&ok).0, Outcome::Ok);
        let sql_error = http(
            200,
            json!({"results": [{"rows_affected": 1}, {"error": "no such table"}]}),
        );
        assert_eq!(classify(&sql_error).0, Outcome::Fail);
        assert_eq!(
            classify(&Answer::NotSent("refused".into())).0,
            Outcome::Fail
        );
        assert_eq!(
            classify(&Answer::Lost("timed out".into())).0,
            Outcome::Unknown
        );
        let no_leader = http(503, json!({"code": "no_leader", "error": "no leader"}));
        assert_eq!(classify(&no_leader).0, Outcome::Fail);
        let unavailable = http(503, json!({"code": "unavailable", "error": "lost"}));
        assert_eq!(classify(&unavailable).0, Outcome::Unknown);
        let timeout = http(504, json!({"code": "timeout", "error": "slow"}));
        assert_eq!(classify(&timeout).0, Outcome::Unknown);
        let internal = http(500, json!({"code": "internal", "error": "?"}));
        assert_eq!(classify(&internal).0, Outcome::Unknown);
        assert_eq!(
            classify(&http(400, json!({"code": "bad_request"}))).0,
            Outcome::Fail
        );
        assert_eq!(classify(&http(200, Value::Null)).0, Outcome::Unknown);
    }

    #[test]
    fn results_become_completions() {
        let read = Invocation::Read { key: 1 };
        assert_eq!(
            complete(&read, &[json!({"columns": ["v"], "values": [[7]]})]),
            Some(Completion::Value { value: Some(7) })
        );
        assert_eq!(
            complete(&read, &[json!({"columns": ["v"]})]),
            Some(Completion::Value { value: None })
        );
        let cas = Invocation::Cas {
            key: 1,
            expected: 1,
            new: 2,
        };
        assert_eq!(
            complete(&cas, &[json!({"last_insert_id": 3})]),
            Some(Completion::Swapped { swapped: false }),
            "rqlite leaves rows_affected out when it is 0"
        );
        assert_eq!(
            complete(&cas, &[json!({"rows_affected": 1})]),
            Some(Completion::Swapped { swapped: true })
        );
        let t = Invocation::Transfer {
            from: 1,
            to: 2,
            amount: 5,
        };
        assert_eq!(
            complete(
                &t,
                &[json!({"rows_affected": 1}), json!({"rows_affected": 1})]
            ),
            Some(Completion::Transferred {
                debited: 1,
                credited: 1
            })
        );
        assert_eq!(
            complete(&Invocation::ReadTotal, &[json!({"values": [[4, 400, 0]]})]),
            Some(Completion::Total {
                accounts: 4,
                total: 400,
                min: 0
            })
        );
    }

    #[test]
    fn the_bank_check_finds_created_money_and_half_transfers() {
        let rec = |index, invocation, completion| OpRecord {
            index,
            process: 0,
            node: 0,
            invocation,
            outcome: Outcome::Ok,
            completion: Some(completion),
            call_ns: 0,
            return_ns: 1,
            error: None,
        };
        let t = Invocation::Transfer {
            from: 1,
            to: 2,
            amount: 5,
        };
        let good = vec![
            rec(
                0,
                t.clone(),
                Completion::Transferred {
                    debited: 1,
                    credited: 1,
                },
            ),
            rec(
                1,
                t.clone(),
                Completion::Transferred {
                    debited: 0,
                    credited: 0,
                },
            ),
            rec(
                2,
                Invocation::ReadTotal,
                Completion::Total {
                    accounts: 2,
                    total: 200,
                    min: 0,
                },
            ),
        ];
        let c = check_bank(&good, 2, 200);
        assert!(c.anomalies.is_empty(), "{c:?}");
        assert_eq!((c.moved, c.refused, c.totals_read), (1, 1, 1));
        let bad = vec![
            rec(
                0,
                t,
                Completion::Transferred {
                    debited: 0,
                    credited: 1,
                },
            ),
            rec(
                1,
                Invocation::ReadTotal,
                Completion::Total {
                    accounts: 2,
                    total: 205,
                    min: 0,
                },
            ),
            rec(
                2,
                Invocation::ReadTotal,
                Completion::Total {
                    accounts: 2,
                    total: 200,
                    min: -5,
                },
            ),
        ];
        assert_eq!(check_bank(&bad, 2, 200).anomalies.len(), 3);
    }
}
