//! TLS for Cairn's two ports, with rustls and the `ring` crypto provider only (no aws-lc,
//! no OpenSSL; every config is built with [`provider`], never from a process-wide default).
//!
//! - [`ServerTls`]: the server side of either port. For the public HTTP API from an
//!   [`HttpTls`] (client certificates only with `verify_client`); for the raft port from a
//!   [`NodeTls`], always mutual: a peer without a certificate signed by the node CA fails
//!   the handshake.
//! - [`ClientTls`]: the client side of node-to-node traffic (and of a node's calls to a
//!   peer's public API, such as `/join`): trusts the node CA and the HTTP CA, presents the
//!   node certificate, checks the server's name against the address it dials.
//! - [`pki`]: a throw-away CA and certificates for `cairn demo --tls` and tests.
//!
//! # Reloading
//! Every certificate, key and CA file is read again when it changes, without a restart:
//! see [`reload`](crate::ServerTls#reloading) for how and why a change is noticed on a
//! handshake rather than by a watcher. A reload that fails (a half-written file, a key
//! that does not match the certificate) keeps the previous material and logs a warning.

mod client;
mod error;
mod files;
pub mod pki;
mod reload;
mod server;

use std::path::PathBuf;
use std::sync::Arc;

pub use client::ClientTls;
pub use error::TlsError;
pub use reload::RELOAD_CHECK_INTERVAL;
pub use server::ServerTls;

/// TLS of the public HTTP API: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTls {
    /// The certificate chain this port presents, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// The CA of the HTTP port (PEM, one or more certificates): clients are verified
    /// against it when `verify_client` is set, and a node trusts it when it calls a peer's
    /// HTTPS API (joining through `https://`, `/nodes` checks).
    pub client_ca: Option<PathBuf>,
    /// Require a client certificate signed by `client_ca`; a client without one fails the
    /// handshake. Needs `client_ca`.
    pub verify_client: bool,
}

/// TLS of node-to-node traffic (the raft port), always mutual: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTls {
    /// This node's certificate chain, leaf first, presented both as a server and as a
    /// client; it must name the raft address's IP or host (a SAN) and allow both uses.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// The node CA: peers must present a certificate it signed, and the peers' servers
    /// are verified against it.
    pub ca: PathBuf,
}

/// The one crypto provider of every config this crate builds: rustls's `ring` provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
