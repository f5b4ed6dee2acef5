//! The SQL sandbox: what a client's statement may touch, enforced by SQLite itself.
//!
//! Every connection Cairn opens on a database gets the same guard, whatever the SQL text
//! looks like (nothing here parses SQL):
//! - `SQLITE_DBCONFIG_DEFENSIVE` (no writes to `sqlite_master`, no `writable_schema`
//!   corruption) and `trusted_schema=OFF` (schema objects may only call functions marked
//!   innocuous);
//! - an authorizer (<https://sqlite.org/c3ref/set_authorizer.html>) that refuses, at
//!   prepare time: `ATTACH`/`DETACH` (and so `VACUUM`, which attaches), `TEMP` objects,
//!   transaction control, every `PRAGMA` outside a read-only allow-list, Cairn's own
//!   bookkeeping tables, functions that read per-connection or per-file state, and
//!   `load_extension`;
//! - a progress handler (<https://sqlite.org/c3ref/progress_handler.html>) that bounds the
//!   work of one statement: a deterministic count of virtual-machine steps on the apply
//!   path (the same on every replica, so every replica aborts the same statement at the
//!   same point), a wall-clock deadline for reads.
//!
//! Cairn's own statements (the applied index, backups, snapshots) run with
//! [`Guard::internal`] set, which lifts the refusals for exactly their duration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::Connection;

use crate::Error;

/// Prefix of Cairn's bookkeeping tables inside every database (`sqlite_` names are
/// reserved by SQLite, so no client can create one, and listings that skip `sqlite_%`
/// skip them too).
pub(crate) const INTERNAL_PREFIX: &str = "sqlite_cairn";

/// Virtual-machine steps between two calls of the progress handler.
pub(crate) const PROGRESS_STEPS: i32 = 1000;

/// Largest string or BLOB a statement may build, in bytes (`SQLITE_LIMIT_LENGTH`). The
/// same on every node, so exceeding it is a deterministic statement error.
pub const MAX_VALUE_BYTES: i32 = 32 * 1024 * 1024;

/// Largest SQL text of one statement, in bytes (`SQLITE_LIMIT_SQL_LENGTH`).
pub const MAX_SQL_BYTES: i32 = 16 * 1024 * 1024;

/// Pragmas a client may run with or without an argument: they only report.
const REPORTING_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
];

/// Pragmas a client may read (no argument) but not set.
const READABLE_PRAGMAS: &[&str] = &[
    "page_size",
    "schema_version",
    "foreign_keys",
    "journal_mode",
    "synchronous",
    "auto_vacuum",
    "encoding",
    "cache_size",
    "recursive_triggers",
    "busy_timeout",
    "max_page_count",
    "secure_delete",
    "legacy_alter_table",
];

/// Pragmas that read the physical file or the connection, which differ between replicas
/// holding the same rows: readable on a read connection only.
const PHYSICAL_PRAGMAS: &[&str] = &["page_count", "freelist_count", "data_version"];

/// Header fields that belong to the client's data: read and written like rows (a write
/// goes through the log, so every replica stores the same value).
const DATA_PRAGMAS: &[&str] = &["user_version", "application_id"];

/// Functions that read the connection's history or the file's layout, which differ
/// between replicas: refused on the apply path.
const WRITER_DENIED_FUNCTIONS: &[&str] = &["total_changes", "sqlite_offset"];

/// Eponymous virtual tables that show physical or per-connection state.
const WRITER_DENIED_TABLES: &[&str] = &["dbstat", "sqlite_dbpage", "sqlite_stmt"];

/// Which connection a guard protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The state machine's connection: applies log entries.
    Writer,
    /// A pooled read-only connection.
    Reader,
}

/// How much work the statements now running may still do.
#[derive(Debug, Clone, Copy)]
enum Budget {
    /// No bound (Cairn's own statements).
    Unbounded,
    /// At most this many more progress-handler calls (each [`PROGRESS_STEPS`] steps).
    Steps { left: u64 },
    /// Until this instant.
    Deadline(Instant),
}

/// Why a statement was stopped by the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The deterministic step budget of the apply path ran out.
    Budget,
    /// The read's deadline passed.
    Deadline,
}

/// Per-connection sandbox state, shared with the authorizer and progress callbacks.
pub(crate) struct Guard {
    role: Role,
    internal: AtomicBool,
    /// Set while a loaded SQL script is prepared ([`Guard::script`]): a dump's wrapper
    /// statements are let through the authorizer, marked in `skip`, and not run.
    script: AtomicBool,
    /// The statement just prepared is a dump wrapper to leave out ([`Guard::take_skip`]).
    skip: AtomicBool,
    denied: Mutex<Option<String>>,
    budget: Mutex<Budget>,
    stopped: Mutex<Option<Stop>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Guard {
    /// Runs `f` as Cairn itself: the authorizer allows everything and no budget applies.
    pub(crate) fn internal<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = self.internal.swap(true, Ordering::SeqCst);
        let saved = std::mem::replace(&mut *lock(&self.budget), Budget::Unbounded);
        let out = f();
        *lock(&self.budget) = saved;
        self.internal.store(was, Ordering::SeqCst);
        out
    }

    /// Runs `f` over a loaded SQL script (`/db/load` of a dump): the statements that wrap
    /// what `sqlite3 .dump` and `/db/backup?fmt=sql` write, `BEGIN`/`BEGIN TRANSACTION`,
    /// `COMMIT`/`END` and `PRAGMA foreign_keys=...`, are recognised by the authorizer's
    /// action codes (not by reading the text) and left out: the script is applied in its
    /// own transaction already, and foreign keys stay as the database has them.
    /// `ROLLBACK` and savepoints are still refused.
    pub(crate) fn script<T>(&self, f: impl FnOnce() -> T) -> T {
        self.skip.store(false, Ordering::SeqCst);
        let was = self.script.swap(true, Ordering::SeqCst);
        let out = f();
        self.script.store(was, Ordering::SeqCst);
        out
    }

    /// Whether the statement prepared last is a dump wrapper to leave out; clears it.
    pub(crate) fn take_skip(&self) -> bool {
        self.skip.swap(false, Ordering::SeqCst)
    }

    /// Bounds the statements that follow by `steps` progress-handler calls in all (the
    /// apply path: deterministic).
    pub(crate) fn set_step_budget(&self, steps: u64) {
        *lock(&self.budget) = Budget::Steps { left: steps };
        *lock(&self.stopped) = None;
    }

    /// Bounds the statements that follow by a wall-clock deadline (reads), or lifts the
    /// bound with `None`.
    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) {
        *lock(&self.budget) = match deadline {
            Some(d) => Budget::Deadline(d),
            None => Budget::Unbounded,
        };
        *lock(&self.stopped) = None;
    }

    /// Takes the reason the authorizer gave for its last refusal, if any.
    pub(crate) fn take_denial(&self) -> Option<String> {
        lock(&self.denied).take()
    }

    /// Takes why the progress handler last interrupted a statement, if it did.
    pub(crate) fn take_stop(&self) -> Option<Stop> {
        lock(&self.stopped).take()
    }

    fn progress(&self) -> bool {
        let mut budget = lock(&self.budget);
        let stop = match &mut *budget {
            Budget::Unbounded => None,
            Budget::Steps { left } => {
                if *left == 0 {
                    Some(Stop::Budget)
                } else {
                    *left -= 1;
                    None
                }
            }
            Budget::Deadline(at) => (Instant::now() >= *at).then_some(Stop::Deadline),
        };
        match stop {
            Some(s) => {
                *lock(&self.stopped) = Some(s);
                true
            }
            None => false,
        }
    }

    fn authorize(&self, ctx: &AuthContext<'_>) -> Authorization {
        if self.internal.load(Ordering::SeqCst) {
            return Authorization::Allow;
        }
        if self.script.load(Ordering::SeqCst) && is_dump_wrapper(&ctx.action) {
            self.skip.store(true, Ordering::SeqCst);
            return Authorization::Allow;
        }
        match self.check(&ctx.action) {
            Ok(()) => Authorization::Allow,
            Err(reason) => {
                *lock(&self.denied) = Some(reason);
                Authorization::Deny
            }
        }
    }

    fn check(&self, action: &AuthAction<'_>) -> Result<(), String> {
        use AuthAction as A;
        let internal = |t: &str| {
            t.len() >= INTERNAL_PREFIX.len()
                && t[..INTERNAL_PREFIX.len()].eq_ignore_ascii_case(INTERNAL_PREFIX)
        };
        let writer = self.role == Role::Writer;
        match action {
            A::Attach { .. } | A::Detach { .. } => Err(
                "ATTACH, DETACH and VACUUM are not allowed: a database cannot reach other files"
                    .into(),
            ),
            A::CreateTempIndex { .. }
            | A::CreateTempTable { .. }
            | A::CreateTempTrigger { .. }
            | A::CreateTempView { .. }
            | A::DropTempIndex { .. }
            | A::DropTempTable { .. }
            | A::DropTempTrigger { .. }
            | A::DropTempView { .. } => Err(
                "TEMP objects are not allowed: they would live on one connection of one replica"
                    .into(),
            ),
            A::Transaction { .. } | A::Savepoint { .. } => Err(
                "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed: each request is applied \
                 in its own transaction (use the transaction flag to make a batch atomic)"
                    .into(),
            ),
            A::Pragma {
                pragma_name,
                pragma_value,
            } => check_pragma(pragma_name, pragma_value.is_some(), writer),
            A::Function { function_name } => {
                let f = function_name.to_ascii_lowercase();
                if f == "load_extension" {
                    Err("load_extension is not allowed".into())
                } else if writer && WRITER_DENIED_FUNCTIONS.contains(&f.as_str()) {
                    Err(format!(
                        "{f}() is not allowed in writes: its value differs between replicas"
                    ))
                } else {
                    Ok(())
                }
            }
            A::Read { table_name, .. } => {
                if internal(table_name) {
                    Err(format!("{table_name} is Cairn's own table"))
                } else if writer
                    && WRITER_DENIED_TABLES
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case(table_name))
                {
                    Err(format!(
                        "{table_name} is not allowed in writes: it differs between replicas"
                    ))
                } else {
                    Ok(())
                }
            }
            A::Insert { table_name }
            | A::Delete { table_name }
            | A::Update { table_name, .. }
            | A::DropTable { table_name }
            | A::AlterTable { table_name, .. }
            | A::Analyze { table_name }
            | A::CreateIndex { table_name, .. }
            | A::DropIndex { table_name, .. }
            | A::CreateTrigger { table_name, .. }
            | A::DropTrigger { table_name, .. }
                if internal(table_name) =>
            {
                Err(format!("{table_name} is Cairn's own table"))
            }
            A::CreateVtable { module_name, .. }
                if WRITER_DENIED_TABLES
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(module_name)) =>
            {
                Err(format!(
                    "virtual tables over {module_name} are not allowed: it differs between replicas"
                ))
            }
            A::Unknown { code, .. } => Err(format!("operation {code} is not allowed")),
            _ => Ok(()),
        }
    }
}

/// `BEGIN`, `COMMIT` and setting `foreign_keys`: what a SQL dump wraps its statements in.
fn is_dump_wrapper(action: &AuthAction<'_>) -> bool {
    use rusqlite::hooks::TransactionOperation as T;
    match action {
        // SQLite names a transaction statement BEGIN, COMMIT or ROLLBACK (`build.c`);
        // rusqlite 0.32 maps COMMIT (and END, its synonym) to `Unknown`.
        AuthAction::Transaction {
            operation: T::Begin | T::Unknown,
        } => true,
        AuthAction::Pragma {
            pragma_name,
            pragma_value: Some(_),
        } => pragma_name.eq_ignore_ascii_case("foreign_keys"),
        _ => false,
    }
}

fn check_pragma(name: &str, has_value: bool, writer: bool) -> Result<(), String> {
    let n = name.to_ascii_lowercase();
    let n = n.as_str();
    let ok = REPORTING_PRAGMAS.contains(&n)
        || DATA_PRAGMAS.contains(&n)
        || (!has_value && READABLE_PRAGMAS.contains(&n))
        || (!has_value && !writer && PHYSICAL_PRAGMAS.contains(&n));
    if ok {
        Ok(())
    } else if READABLE_PRAGMAS.contains(&n) || PHYSICAL_PRAGMAS.contains(&n) {
        Err(format!(
            "PRAGMA {n} may only be read, and only on a read: setting it would change one connection of one replica"
        ))
    } else {
        Err(format!(
            "PRAGMA {n} is not allowed: only pragmas that report (table_info, index_list, \
             foreign_key_list, ...) and user_version/application_id are"
        ))
    }
}

/// Puts `conn` in the sandbox: defensive mode, untrusted schema, limits, the authorizer
/// and the progress handler. Call before any client statement runs on it.
///
/// # Errors
/// [`Error::Sqlite`] when SQLite refuses a setting.
pub(crate) fn secure(conn: &Connection, role: Role) -> Result<Arc<Guard>, Error> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES);
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES);
    let guard = Arc::new(Guard {
        role,
        internal: AtomicBool::new(false),
        script: AtomicBool::new(false),
        skip: AtomicBool::new(false),
        denied: Mutex::new(None),
        budget: Mutex::new(Budget::Unbounded),
        stopped: Mutex::new(None),
    });
    let g = guard.clone();
    conn.authorizer(Some(move |ctx: AuthContext<'_>| g.authorize(&ctx)));
    let g = guard.clone();
    conn.progress_handler(PROGRESS_STEPS, Some(move || g.progress()));
    crate::linear::install(conn)?;
    Ok(guard)
}
