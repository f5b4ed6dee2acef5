//! Why a TLS configuration could not be built. Every variant names the file at fault.

use std::path::PathBuf;

/// A certificate, key or CA file that cannot be used, or settings that do not go together.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not the PEM it should be: no certificate (or key) in it, a broken
    /// section, bad base64.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// rustls refused what the file holds: an unsupported or mismatched key, a CA
    /// certificate it cannot parse.
    #[error("{path}: {source}")]
    Rejected {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// Settings that cannot work together (e.g. `verify_client` without a CA).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}
