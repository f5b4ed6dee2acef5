//! Cairn's SQL engine: one SQLite file per logical database, rqlite's statement and
//! result formats, and the rewrite that makes writes deterministic. It knows nothing of
//! Raft: the state machine in `cairn-raft` calls [`Store`] with log indexes.

mod builder;
mod condition;
mod database;
mod result;
mod rewrite;
mod store;
mod value;

pub use builder::{
    aggregate, column_def, create_table, delete, insert, parse_column_list, quote_ident, select,
    update, where_clause, Aggregate, ColumnSpec, Filter, Fragment, Op, Select,
};
pub use condition::parse_condition;
pub use database::{is_read_only, MAX_ROWS};
pub use result::{render_value, Encoding, Outcome, Rows, StatementResult};
pub use rewrite::make_deterministic;
pub use store::{validate_name, Store, DEFAULT_DATABASE};
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
}
