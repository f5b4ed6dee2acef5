//! Test harness for Cairn: clusters on loopback, in-process or of real `cairn` processes.
//!
//! [`TestCluster`] runs N nodes inside the test process through `cairn_server::serve`, on
//! real sockets with ports the OS picks: the default for behaviour tests. [`ProcessCluster`]
//! runs real `cairn start` processes, for what needs a process: SIGKILL and SIGSTOP, crash
//! points, fault-injecting proxies, the binary's flags. Both offer the calls and waits of
//! [`Cluster`]:
//!
//! ```no_run
//! use cairn_testkit::{Cluster, Level, TestCluster};
//! use serde_json::json;
//!
//! # fn main() -> anyhow::Result<()> {
//! let c = TestCluster::start(3)?;
//! let leader = c.leader()?;
//! c.execute_ok(leader, &json!(["CREATE TABLE t (x INTEGER)"]))?;
//! let rows = c.query_rows(leader, "SELECT COUNT(*) FROM t", Level::Strong)?;
//! assert_eq!(rows, json!([[0]]));
//! # Ok(())
//! # }
//! ```
//!
//! Rules the harness follows so tests can too: every wait has a deadline and a bounded
//! number of polls ([`try_wait_for`]); every node it starts is stopped (every process
//! killed) when its owner is dropped, also on panic; when a test fails, a process cluster
//! prints the processes' log tails.

mod client;
mod demo;
mod fault_run;
mod files;
mod history;
mod http;
mod in_process;
mod linearizability;
mod nemesis;
mod ports;
mod process_cluster;
mod proxy;
mod replicas;
mod tls;
mod wait;
mod workload;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use cairn_server::{ServeLimits, PUBLIC_LIMITS, RAFT_LIMITS};
pub use client::Cluster;
pub use demo::{descendants, process_alive, Demo};
pub use fault_run::{run_faults, FaultReport, FaultRunOptions, OutcomeCounts};
pub use files::find_files;
pub use history::{Completion, History, Invocation, OpRecord, Outcome};
pub use http::{basic_auth, HttpClient, Level, Reply, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
pub use in_process::TestCluster;
pub use linearizability::{
    check, check_registers, collapse_unobserved, register_operations, CheckResult, Counterexample,
    KeyVerdict, Limits, Model, Operation, RegisterInput, RegisterModel, RegisterOutput, Verdict,
};
pub use nemesis::{node_pid, FaultEvent, FaultKind, Nemesis, NemesisOptions};
pub use ports::{free_port, free_port_range, free_ports};
pub use process_cluster::{ClusterOptions, Formation, ProcessCluster, RaftStatus};
pub use proxy::{node_ip, node_of_ip, CutMode, ProxiedAddrs, ProxyNet, ProxyStats, NODE_IP_BASE};
pub use replicas::{
    assert_replicas_identical, check_replicas_identical, replica_contents, ReplicaContents,
    REPLICA_TIMEOUT,
};
pub use tls::{TestPki, TlsOptions, HARNESS_USER};
pub use wait::{try_wait_for, wait_for, wait_until, POLL_INTERVAL};
pub use workload::{
    check_bank, create_tables, BankCheck, RunUntil, Workload, WorkloadOptions, CREATE_ACCOUNTS,
    CREATE_REGISTERS,
};

/// How long a node may take to write `node.json` and answer `/readyz` with 200, and a
/// cluster to list its voters, on a loaded 2-core machine with debug builds.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an election may take before [`Cluster::leader`] gives up.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node may take to catch up with the leader (including from a snapshot).
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a process may take to exit after SIGTERM or SIGINT.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Serializes process clusters (and demos) within one test binary; see [`ProcessCluster`].
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A test that panicked while holding the lock has already cleaned up its processes.
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}
