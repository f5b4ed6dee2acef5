//! Test harness for Cairn: clusters of real `cairn` processes on loopback.
//!
//! End-to-end tests live in `crates/cairn/tests/` and pass the binary built by cargo:
//!
//! ```no_run
//! use cairn_testkit::{Level, TestCluster};
//! use serde_json::json;
//!
//! # fn main() -> anyhow::Result<()> {
//! // In crates/cairn/tests/*.rs: TestCluster::start(env!("CARGO_BIN_EXE_cairn"), 3)
//! let c = TestCluster::start("target/debug/cairn", 3)?;
//! let leader = c.leader()?;
//! c.execute_ok(leader, &json!(["CREATE TABLE t (x INTEGER)"]))?;
//! let rows = c.query_rows(leader, "SELECT COUNT(*) FROM t", Level::Strong)?;
//! assert_eq!(rows, json!([[0]]));
//! # Ok(())
//! # }
//! ```
//!
//! Rules the harness follows so tests can too: every wait has a deadline and a bounded
//! number of polls ([`try_wait_for`]); every process it starts is killed when its owner is
//! dropped, also on panic; when a test fails, the owner prints the processes' log tails.

mod cluster;
mod demo;
mod fault_run;
mod files;
mod history;
mod http;
mod linearizability;
mod nemesis;
mod node;
mod ports;
mod proxy;
mod replicas;
mod wait;
mod workload;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use cluster::{ClusterOptions, Formation, RaftStatus, TestCluster};
pub use demo::{descendants, process_alive, Demo};
pub use fault_run::{run_faults, FaultReport, FaultRunOptions, OutcomeCounts};
pub use files::find_files;
pub use history::{Completion, History, Invocation, OpRecord, Outcome};
pub use http::{HttpClient, Level, Reply, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
pub use linearizability::{
    check, check_registers, collapse_unobserved, register_operations, CheckResult, Counterexample,
    KeyVerdict, Limits, Model, Operation, RegisterInput, RegisterModel, RegisterOutput, Verdict,
};
pub use nemesis::{node_pid, FaultEvent, FaultKind, Nemesis, NemesisOptions};
pub use ports::{free_port, free_port_range, free_ports};
pub use proxy::{node_ip, node_of_ip, CutMode, ProxiedAddrs, ProxyNet, ProxyStats, NODE_IP_BASE};
pub use replicas::{
    assert_replicas_identical, check_replicas_identical, replica_contents, ReplicaContents,
    REPLICA_TIMEOUT,
};
pub use wait::{try_wait_for, wait_for, wait_until, POLL_INTERVAL};
pub use workload::{
    check_bank, create_tables, BankCheck, RunUntil, Workload, WorkloadOptions, CREATE_ACCOUNTS,
    CREATE_REGISTERS,
};

/// How long a node may take to write `node.json` and answer `/readyz` with 200, and a
/// cluster to list its voters, on a loaded 2-core machine with debug builds.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an election may take before [`TestCluster::leader`] gives up.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node may take to catch up with the leader (including from a snapshot).
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a process may take to exit after SIGTERM or SIGINT.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Serializes clusters (and demos) within one test binary; see [`TestCluster`].
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A test that panicked while holding the lock has already cleaned up its processes.
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}
