//! Local Cairn processes, shared by the `cairn` binary (`cairn demo`, `cairn bench`) and
//! the test harness (`cairn-testkit`'s `ProcessCluster` and `Demo`):
//!
//! - [`NodeIdentity`]: the one reader and writer of a data directory's `node.json`.
//! - [`NodeProcess`]: the one supervisor of a child process (stdout and stderr to log
//!   files, SIGTERM-then-SIGKILL stop with a timeout, killed when dropped).
//! - [`LocalCluster`]: the one launcher of N `cairn start` processes on 127.0.0.1, formed
//!   by `--join` or by `--bootstrap-expect`, waited on until every node is ready.
//!
//! Every wait here is synchronous and bounded in time and in polls; call it from a thread
//! that may block (in async code, through `tokio::task::spawn_blocking`).

mod cluster;
mod error;
mod identity;
mod process;
mod procfs;
mod wait;

pub use cluster::{
    free_ports, Formation, LaunchOptions, LaunchTls, Layout, LocalCluster, NodeArgs, Ports,
    RaftAddrs, RaftHook, POLL_REQUEST_TIMEOUT,
};
pub use error::Error;
pub use identity::{NodeIdentity, NODE_JSON};
pub use process::{stop_all, tail, LogFiles, NodeProcess};
pub use procfs::{descendants, process_alive};
pub use wait::{poll, poll_until, TimedOut, POLL_INTERVAL};

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
