//! Errors of launching and supervising processes.

use std::path::PathBuf;
use std::process::ExitStatus;

/// What went wrong starting, watching or stopping a process or a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed; `what` names it.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. "opening /tmp/x/stderr.log".
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `node.json` holds something other than a node identity.
    #[error("{path}: not a node identity: {source}")]
    Identity {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// The harness asked something of a process it has not started (or already stopped).
    #[error("{0} is not running")]
    NotRunning(String),
    /// A process exited while it was expected to run.
    #[error("{name} exited unexpectedly ({status}); see {log}")]
    Exited {
        /// "node 2", "etcd e1".
        name: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
    },
    /// A wait passed its deadline; `last` is what the condition last reported.
    #[error("timed out after {secs:.1} s waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited, in seconds.
        secs: f64,
        /// The last reason the condition gave for not holding.
        last: String,
    },
    /// A request or an option that cannot be satisfied.
    #[error("{0}")]
    Invalid(String),
    /// Building the HTTP client used for readiness polls failed.
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The CA or client certificate of [`crate::LaunchTls`] does not load.
    #[error("the launcher's TLS client: {0}")]
    Tls(#[from] cairn_tls::TlsError),
}

impl Error {
    /// An [`Error::Io`] naming what was being done.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
