//! SQL text from structured requests, for the REST API, the seeds' routes and `cairn import`:
//! `CREATE TABLE` from typed column specs, `INSERT`/`UPDATE`/`DELETE`/`SELECT` and
//! aggregates with filters (`builder.rs`), and seed 004's `condition` strings
//! (`condition.rs`, parsed with sqlparser so that only column references, literals,
//! comparisons, AND/OR/NOT, IN, LIKE, BETWEEN and IS NULL survive).
//!
//! Identifiers are validated (`cairn_sql::validate_name`) and quoted as `[name]`; values are
//! always bound parameters, never spliced into the text. The statements it builds run like
//! any client's, in the sandbox of `cairn-sql`; this crate only writes them.

mod builder;
mod condition;

pub use builder::{
    aggregate, column_def, create_table, delete, insert, parse_column_list, quote_ident, select,
    update, where_clause, Aggregate, ColumnSpec, Filter, Fragment, Op, Select,
};
pub use condition::parse_condition;
