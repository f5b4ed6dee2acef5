//! Cairn's SQL engine: one SQLite file per logical database inside a sandbox, rqlite's
//! statement and result formats, and functions that make writes deterministic. It knows nothing of
//! Raft: the state machine in `cairn-raft` calls [`Store`] with log indexes.

pub mod crash;
mod database;
mod determinism;
mod error_code;
mod linear;
mod result;
mod sandbox;
mod store;
mod value;

pub use database::{MAX_RESULT_BYTES, MAX_ROWS, REQUEST_ID_WINDOW};
pub use determinism::{EntryContext, DEFAULT_STEP_BUDGET};
pub use error_code::ErrorCode;
pub use result::{
    render_value, Encoding, Outcome, Rendered, RenderedAll, Rows, StatementError, StatementResult,
};
pub use sandbox::{MAX_SQL_BYTES, MAX_VALUE_BYTES};
pub use store::{validate_name, PinnedSnapshot, Store, DEFAULT_DATABASE};
pub use value::{Params, Statement, Value};

/// Errors of the SQL layer. Each maps to one stable API error code upstream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused an operation; the text is SQLite's message.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The request named a database that does not exist.
    #[error("database not found: {0}")]
    NoSuchDatabase(String),
    /// `create` named a database that exists already.
    #[error("database already exists: {0}")]
    DatabaseExists(String),
    /// A name that is not 1-64 letters, digits or underscores.
    #[error("invalid identifier {0:?}: use 1-64 letters, digits or underscores, not starting with a digit")]
    BadIdentifier(String),
    /// A parameter that cannot be bound, or a count that does not match the placeholders.
    #[error("{0}")]
    BadParameter(String),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// An operation that is never allowed (e.g. dropping the default database).
    #[error("{0}")]
    Forbidden(String),
    /// One string held several statements.
    #[error("{0}")]
    MultipleStatements(String),
    /// A read's rows exceed the response limits.
    #[error("{0}")]
    ResultTooLarge(String),
    /// Applying an entry failed for a reason of this replica's own (I/O, a lock, memory),
    /// not of the entry: nothing was applied or recorded, and the entry must be retried,
    /// never answered (fail-stop).
    #[error("applying the entry failed on this replica: {0}")]
    Local(String),
}

impl Error {
    /// Whether this is a failure of this replica rather than an outcome of the request:
    /// I/O, and SQLite errors of the transaction itself (a lock, a full disk, ...).
    /// The state machine retries such an entry instead of answering it.
    pub fn is_local(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Local(_) | Error::Sqlite(_))
    }
}
