//! Behaviour tests: what clients see, on in-process clusters
//! ([`cairn_testkit::TestCluster`], nodes started by `cairn_server::serve` on real sockets).
//! One test binary, so that its tests run side by side (up to `CAIRN_TEST_CLUSTERS`
//! clusters at once) and the stack is linked once. Tests that need processes (SIGKILL,
//! SIGSTOP, crash points, fault proxies, the quick start, a real rqlite client) live in
//! the other files of `crates/cairn/tests/`.

mod api_errors;
mod auth;
mod databases;
mod hostile_http;
mod import;
mod membership;
mod replication;
mod rest_api;
mod rqlite_api;
mod seed_001;
mod seed_002_003;
mod seed_004;
mod status_api;
