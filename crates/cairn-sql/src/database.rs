//! Running statements on one sandboxed SQLite connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Batch, Connection, OpenFlags};

use crate::determinism::{self, EntryContext, Overrides};
use crate::result::{ErrorCode, Outcome, Rows, StatementError, StatementResult};
use crate::sandbox::{self, Guard, Role, Stop, INTERNAL_PREFIX};
use crate::value::{Params, Statement, Value};
use crate::Error;

/// Upper bound on rows one query may return, so that one request cannot exhaust memory.
pub const MAX_ROWS: usize = 1_000_000;

/// Upper bound on the bytes of values one request's reads may return (the sum over its
/// statements; BLOB and TEXT lengths, 8 per number).
pub const MAX_RESULT_BYTES: usize = 32 * 1024 * 1024;

/// Cairn's bookkeeping table in every database: row 1 holds the applied log index.
const STATE_TABLE: &str = "sqlite_cairn";

/// Client request ids already applied, with their results, for idempotent retries.
const REQUESTS_TABLE: &str = "sqlite_cairn_requests";

/// How many log entries a request id is remembered for.
pub const REQUEST_ID_WINDOW: u64 = 100_000;

/// One connection to a database file, inside the sandbox (see `sandbox.rs`).
pub(crate) struct Db {
    pub(crate) conn: Connection,
    guard: Arc<Guard>,
    /// Set on the writer only: the entry-seeded replacements of non-deterministic functions.
    overrides: Option<Overrides>,
}

/// A failure of a statement on the apply path that is not the same on every replica (I/O,
/// a lock, memory): the entry must not be answered or recorded; the caller rolls back and
/// retries (fail-stop).
#[derive(Debug)]
pub(crate) struct LocalFailure(pub(crate) String);

/// What running a batch on the writer did.
#[derive(Debug)]
pub(crate) struct Ran {
    /// One result per statement run; the run stops at the statement that ended the
    /// transaction, if one did.
    pub(crate) results: Vec<StatementResult>,
    /// SQLite itself rolled back the whole transaction (an `OR ROLLBACK` conflict, a
    /// trigger's `RAISE(ROLLBACK)`, an interrupted write): nothing of the entry is kept.
    pub(crate) rolled_back: bool,
}

impl Db {
    /// Opens a database file for the state machine: WAL journal, `synchronous=NORMAL`
    /// (safe because the Raft log is the durable record and each database stores its
    /// applied index in the same transaction as the data), foreign keys on, Cairn's
    /// bookkeeping tables, the sandbox and the deterministic functions.
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the file cannot be opened or configured.
    pub(crate) fn open_writer(path: &Path) -> Result<Db, Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The store's checkpointer thread checkpoints (`store.rs`), never a commit here: a
        // commit that follows a long-held reader would otherwise copy the whole backlog.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // A WAL that grew while a snapshot held it is cut back to this when it restarts.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        create_internal_tables(&conn, true)?;
        let guard = sandbox::secure(&conn, Role::Writer)?;
        let overrides = determinism::install(&conn)?;
        Ok(Db {
            conn,
            guard,
            overrides: Some(overrides),
        })
    }

    /// Opens a read-only connection: a write sent as a query fails with SQLite's
    /// "attempt to write a readonly database", as in rqlite.
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the file cannot be opened.
    pub(crate) fn open_reader(path: &Path) -> Result<Db, Error> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let guard = sandbox::secure(&conn, Role::Reader)?;
        Ok(Db {
            conn,
            guard,
            overrides: None,
        })
    }

    /// Runs `f` on the connection as Cairn itself (outside the sandbox's refusals).
    pub(crate) fn internal<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        self.guard.internal(|| f(&self.conn))
    }

    /// Runs `sql` (Cairn's own statements) outside the sandbox.
    pub(crate) fn exec(&self, sql: &str) -> Result<(), Error> {
        Ok(self.internal(|c| c.execute_batch(sql))?)
    }

    /// The applied log index recorded in this database.
    ///
    /// # Errors
    /// [`Error::Sqlite`] on I/O errors.
    pub(crate) fn applied_index(&self) -> Result<u64, Error> {
        self.internal(read_applied)
    }

    /// Records `index` as this database's applied log index; call inside the transaction
    /// that applies the entry. It also leaves `changes()` at 1 and `last_insert_rowid()`
    /// at 1, so that an entry's first statement sees the same values on every replica,
    /// whatever the connection ran before.
    pub(crate) fn set_applied_index(&self, index: u64) -> Result<(), Error> {
        Ok(self.internal(|c| write_applied(c, index))?)
    }

    /// Prepares the sandbox for log entry `index`: its time and random numbers, and its
    /// deterministic work budget.
    pub(crate) fn begin_entry(&self, index: u64, ctx: &EntryContext) {
        if let Some(o) = &self.overrides {
            o.begin_entry(index, *ctx);
        }
        self.guard.set_step_budget(ctx.step_budget);
    }

    /// Bounds the reads that follow by a wall-clock `deadline` (or none), or, with
    /// `steps`, by a step budget (reads through the log).
    pub(crate) fn begin_read(&self, deadline: Option<Instant>, steps: Option<u64>) {
        match steps {
            Some(s) => self.guard.set_step_budget(s),
            None => self.guard.set_deadline(deadline),
        }
    }

    /// The results a request id got when it was applied, if it was within the window.
    pub(crate) fn remembered(
        &self,
        request_id: &str,
    ) -> Result<Option<Vec<StatementResult>>, Error> {
        use rusqlite::OptionalExtension;
        let bytes: Option<Vec<u8>> = self.internal(|c| {
            c.prepare_cached(&format!(
                "SELECT results FROM {REQUESTS_TABLE} WHERE id = ?1"
            ))?
            .query_row([request_id], |r| r.get(0))
            .optional()
        })?;
        match bytes {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::BadRequest(format!("stored results unreadable: {e}"))),
        }
    }

    /// Remembers the results of `request_id`, applied at `index`, and forgets ids older
    /// than [`REQUEST_ID_WINDOW`] entries.
    pub(crate) fn remember(
        &self,
        index: u64,
        request_id: &str,
        results: &[StatementResult],
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec(results).map_err(|e| Error::BadRequest(e.to_string()))?;
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        let window = i64::try_from(REQUEST_ID_WINDOW).unwrap_or(i64::MAX);
        self.internal(|c| -> rusqlite::Result<()> {
            c.prepare_cached(&format!(
                "DELETE FROM {REQUESTS_TABLE} WHERE log_index < ?1"
            ))?
            .execute([index.saturating_sub(window)])?;
            c.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {REQUESTS_TABLE} (id, log_index, results) VALUES (?1, ?2, ?3)"
            ))?
            .execute(rusqlite::params![request_id, index, bytes])?;
            Ok(())
        })?;
        Ok(())
    }

    /// Whether `sql` leaves the database unchanged (`sqlite3_stmt_readonly`): how
    /// `/db/request` tells queries from writes.
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the SQL does not compile (e.g. unknown table).
    pub(crate) fn is_read_only(&self, sql: &str) -> Result<bool, Error> {
        let stmt = self.conn.prepare(sql);
        self.guard.take_denial();
        Ok(stmt?.readonly())
    }

    /// Runs `stmts` in order. With `transaction`, the caller has opened a savepoint and
    /// the run stops at the first error (the caller rolls back); without it every
    /// statement runs and an error stays in its own slot (rqlite's behaviour).
    ///
    /// # Errors
    /// [`LocalFailure`] on the writer when a statement failed for a reason of this
    /// replica's own (never on a reader: there it is the statement's error).
    pub(crate) fn run_statements(
        &self,
        stmts: &[Statement],
        transaction: bool,
    ) -> Result<Ran, LocalFailure> {
        let mut it = stmts.iter();
        self.run_each(transaction, |bytes_left| {
            it.next().map(|s| self.run_one(s, bytes_left))
        })
    }

    /// Runs the statements `next` yields (`None`: no more), recording each one's outcome,
    /// until the end, the first error when `stop_on_error`, or a transaction SQLite ended.
    fn run_each(
        &self,
        stop_on_error: bool,
        mut next: impl FnMut(&mut usize) -> Option<Result<Outcome, Error>>,
    ) -> Result<Ran, LocalFailure> {
        let mut out = Vec::new();
        let mut bytes_left = MAX_RESULT_BYTES;
        let in_transaction = !self.conn.is_autocommit();
        loop {
            let start = Instant::now();
            let outcome = match next(&mut bytes_left) {
                None => break,
                Some(Ok(o)) => o,
                Some(Err(e)) => Outcome::Error(self.classify(e)?),
            };
            let failed = matches!(outcome, Outcome::Error(_));
            out.push(StatementResult {
                outcome,
                time: start.elapsed().as_secs_f64(),
            });
            if self.transaction_lost(in_transaction) {
                return Ok(Ran {
                    results: out,
                    rolled_back: true,
                });
            }
            if failed && stop_on_error {
                break;
            }
        }
        Ok(Ran {
            results: out,
            rolled_back: false,
        })
    }

    /// Whether the writer's transaction, open when the run began (`in_transaction`), was
    /// ended by SQLite during the last statement.
    fn transaction_lost(&self, in_transaction: bool) -> bool {
        in_transaction && self.conn.is_autocommit()
    }

    /// Runs a SQL script (`/db/load` of SQL text): statement by statement, each split off
    /// by SQLite's own parser and prepared only after the previous one ran, stopping at
    /// the first error (the caller holds a savepoint and rolls back).
    ///
    /// # Errors
    /// As [`Db::run_statements`].
    pub(crate) fn run_script(&self, sql: &str) -> Result<Ran, LocalFailure> {
        let mut batch = Batch::new(&self.conn, sql);
        self.run_each(true, |bytes_left| {
            self.guard.take_denial();
            // A dump's BEGIN/COMMIT/PRAGMA foreign_keys are prepared, seen by the
            // authorizer, and left out (see `Guard::script`); at most every statement of
            // the script is one, so this ends with the script.
            loop {
                let next = self.guard.script(|| batch.next());
                match next {
                    Ok(None) => return None,
                    Ok(Some(_)) if self.guard.take_skip() => continue,
                    Ok(Some(mut stmt)) => return Some(self.run_prepared(&mut stmt, bytes_left)),
                    Err(e) => return Some(Err(e.into())),
                }
            }
        })
    }

    /// Turns a statement's failure into its stable error, or into a [`LocalFailure`] when
    /// it is not the same on every replica and this is the writer.
    fn classify(&self, e: Error) -> Result<StatementError, LocalFailure> {
        let denial = self.guard.take_denial();
        let stop = self.guard.take_stop();
        // SQLite's extended result code, kept so that the API can tell a constraint
        // violation or a missing table from other SQL errors without reading messages.
        let sqlite_code = match &e {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => Some(f.extended_code),
            Error::Sqlite(rusqlite::Error::SqlInputError { error, .. }) => {
                Some(error.extended_code)
            }
            _ => None,
        };
        let err = |code, message: String| {
            Ok(StatementError {
                code,
                message,
                sqlite_code,
            })
        };
        if let Some(reason) = denial {
            return err(
                ErrorCode::NotAuthorized,
                format!("not authorized: {reason}"),
            );
        }
        let code = match &e {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => Some(f.code),
            Error::Sqlite(rusqlite::Error::SqlInputError { error, .. }) => Some(error.code),
            _ => None,
        };
        use rusqlite::ErrorCode as C;
        match (code, stop) {
            (Some(C::OperationInterrupted), Some(Stop::Budget)) => err(
                ErrorCode::BudgetExceeded,
                "statement exceeded the work budget of a write (or a read at level strong); \
                 split it, or bound it with LIMIT"
                    .into(),
            ),
            (Some(C::OperationInterrupted), Some(Stop::Deadline)) => err(
                ErrorCode::QueryTimeout,
                "query did not finish before its timeout".into(),
            ),
            (
                Some(
                    C::InternalMalfunction
                    | C::PermissionDenied
                    | C::OperationAborted
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::OutOfMemory
                    | C::ReadOnly
                    | C::OperationInterrupted
                    | C::SystemIoFailure
                    | C::DatabaseCorrupt
                    | C::NotFound
                    | C::DiskFull
                    | C::CannotOpen
                    | C::FileLockingProtocolFailed
                    | C::SchemaChanged
                    | C::NoLargeFileSupport
                    | C::NotADatabase,
                ),
                _,
            ) if self.overrides.is_some() => Err(LocalFailure(e.to_string())),
            (Some(C::AuthorizationForStatementDenied), _) => {
                err(ErrorCode::NotAuthorized, sqlite_message(&e))
            }
            (Some(_), _) => err(ErrorCode::SqlError, sqlite_message(&e)),
            (None, _) => match e {
                Error::BadParameter(m) => err(ErrorCode::BadParameter, m),
                Error::MultipleStatements(m) => err(ErrorCode::MultipleStatements, m),
                Error::ResultTooLarge(m) => err(ErrorCode::ResultTooLarge, m),
                Error::Sqlite(
                    rusqlite::Error::InvalidParameterCount(..)
                    | rusqlite::Error::InvalidParameterName(_)
                    | rusqlite::Error::ToSqlConversionFailure(_),
                ) => err(ErrorCode::BadParameter, e.to_string()),
                other => err(ErrorCode::SqlError, other.to_string()),
            },
        }
    }

    fn run_one(&self, s: &Statement, bytes_left: &mut usize) -> Result<Outcome, Error> {
        self.guard.take_denial();
        let sql = s.sql.trim();
        if sql.is_empty() {
            return Err(Error::BadRequest("empty statement".into()));
        }
        if sql.contains(';') && self.holds_several(sql) {
            return Err(Error::MultipleStatements(
                "one string holds several statements: send each as its own statement \
                 (nothing was run)"
                    .into(),
            ));
        }
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind(&mut stmt, &s.params)?;
        self.run_prepared(&mut stmt, bytes_left)
    }

    /// Runs a prepared, bound statement: a write's counts, or a query's rows (bounded by
    /// [`MAX_ROWS`] and `bytes_left`).
    fn run_prepared(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        bytes_left: &mut usize,
    ) -> Result<Outcome, Error> {
        let conn = &self.conn;
        if stmt.column_count() == 0 {
            let before = conn.total_changes();
            let changed = stmt.raw_execute()?;
            // `changes()` and `last_insert_rowid()` keep the values of the last statement
            // that changed rows: a statement that changed none (DDL, an UPDATE matching
            // nothing) reports zeros instead of another statement's counts.
            if conn.total_changes() == before {
                return Ok(Outcome::Write {
                    last_insert_id: 0,
                    rows_affected: 0,
                });
            }
            return Ok(Outcome::Write {
                last_insert_id: conn.last_insert_rowid(),
                rows_affected: i64::try_from(changed).unwrap_or(i64::MAX),
            });
        }
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let decl: Vec<Option<String>> = stmt
            .columns()
            .iter()
            .map(|c| c.decl_type().map(str::to_ascii_lowercase))
            .collect();
        let n = columns.len();
        // Every row may be rendered with its column names (rqlite's `associative`), so
        // they count against the limit once per row too.
        let names_len: usize = columns.iter().map(|c| c.len() + 8).sum();
        let mut values = Vec::new();
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            if names_len > *bytes_left {
                return Err(Error::ResultTooLarge(format!(
                    "the rows of this request exceed {MAX_RESULT_BYTES} bytes; \
                     add a LIMIT or select fewer columns"
                )));
            }
            *bytes_left -= names_len;
            if values.len() >= MAX_ROWS {
                return Err(Error::ResultTooLarge(format!(
                    "query returns more than {MAX_ROWS} rows; add a LIMIT"
                )));
            }
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                let v = Value::from(row.get_ref(i)?);
                let size = byte_len(&v);
                if size > *bytes_left {
                    return Err(Error::ResultTooLarge(format!(
                        "the rows of this request exceed {MAX_RESULT_BYTES} bytes; \
                         add a LIMIT or select fewer columns"
                    )));
                }
                *bytes_left -= size;
                vals.push(v);
            }
            values.push(vals);
        }
        let types = decl
            .into_iter()
            .enumerate()
            .map(|(i, d)| match d {
                Some(t) => t,
                None => values
                    .first()
                    .and_then(|r: &Vec<Value>| r.get(i))
                    .map(|v| v.type_name().to_string())
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Outcome::Rows(Rows {
            columns,
            types,
            values,
        }))
    }

    /// Whether `sql` holds more than one statement, as SQLite's parser splits it (a `;`
    /// inside a string literal or a trailing `;` does not count).
    fn holds_several(&self, sql: &str) -> bool {
        let mut batch = Batch::new(&self.conn, sql);
        let several = match batch.next() {
            Ok(Some(_)) => !matches!(batch.next(), Ok(None)),
            // The first statement does not compile: its own error will say why.
            _ => false,
        };
        self.guard.take_denial();
        several
    }
}

/// SQLite's own message, unchanged (rqlite passes it through and clients match on it):
/// without the statement text and offset that rusqlite's `Display` appends.
fn sqlite_message(e: &Error) -> String {
    match e {
        Error::Sqlite(rusqlite::Error::SqliteFailure(_, Some(msg)))
        | Error::Sqlite(rusqlite::Error::SqlInputError { msg, .. }) => msg.clone(),
        other => other.to_string(),
    }
}

/// The bytes a value counts for against [`MAX_RESULT_BYTES`].
fn byte_len(v: &Value) -> usize {
    match v {
        Value::Text(t) => t.len(),
        Value::Blob(b) => b.len(),
        _ => 8,
    }
}

/// Creates Cairn's bookkeeping tables when absent. With `migrate_legacy`, a database
/// written before they existed has its applied index moved out of `user_version` (never
/// for a client's upload, whose `user_version` is the client's).
fn create_internal_tables(conn: &Connection, migrate_legacy: bool) -> Result<(), Error> {
    let exists: bool = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [STATE_TABLE],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if exists {
        return Ok(());
    }
    // `sqlite_` names are reserved: SQLite lets them be created only with writable_schema
    // on, which the sandbox forbids to everybody else.
    debug_assert!(STATE_TABLE.starts_with(INTERNAL_PREFIX));
    let legacy: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "PRAGMA writable_schema = ON;
         BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS {STATE_TABLE} (k INTEGER PRIMARY KEY, v ANY NOT NULL);
         CREATE TABLE IF NOT EXISTS {REQUESTS_TABLE} (
             id TEXT PRIMARY KEY, log_index INTEGER NOT NULL, results BLOB NOT NULL);
         COMMIT;
         PRAGMA writable_schema = OFF;"
    ))?;
    // Databases written before the bookkeeping moved kept the applied index in
    // user_version, which now belongs to the client again.
    if migrate_legacy && legacy > 0 {
        write_applied(conn, u64::try_from(legacy).unwrap_or(0))?;
        conn.pragma_update(None, "user_version", 0)?;
    }
    Ok(())
}

pub(crate) fn read_applied(c: &Connection) -> Result<u64, Error> {
    use rusqlite::OptionalExtension;
    let v: Option<i64> = c
        .prepare_cached(&format!("SELECT v FROM {STATE_TABLE} WHERE k = 1"))?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

fn write_applied(c: &Connection, index: u64) -> rusqlite::Result<()> {
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {STATE_TABLE} (k, v) VALUES (1, ?1)"
    ))?
    .execute([i64::try_from(index).unwrap_or(i64::MAX)])?;
    Ok(())
}

/// Prepares a freshly written database file (a `/db/load` upload) for use at `index`:
/// Cairn's tables (a backup of a Cairn database carries them), no remembered request ids
/// from elsewhere, WAL mode.
///
/// # Errors
/// [`Error::Sqlite`] when the file is not a usable database.
pub(crate) fn adopt_file(path: &Path, index: u64) -> Result<(), Error> {
    let c = Connection::open(path)?;
    let ok: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if ok != "ok" {
        return Err(Error::BadRequest(format!(
            "not a valid SQLite database: {ok}"
        )));
    }
    // The upload's own idea of Cairn's tables is not trusted: a Cairn backup carries them
    // exactly as Cairn creates them; anything else (another shape, an index or a trigger
    // on them) could make the applied index lie, and is refused.
    let uploaded = internal_schema(&c)?;
    if !uploaded.is_empty() {
        let canonical = {
            let m = Connection::open_in_memory()?;
            create_internal_tables(&m, false)?;
            internal_schema(&m)?
        };
        if uploaded != canonical {
            return Err(Error::BadRequest(format!(
                "the file holds {INTERNAL_PREFIX}* objects that Cairn did not create"
            )));
        }
    }
    c.pragma_update(None, "journal_mode", "WAL")?;
    create_internal_tables(&c, false)?;
    c.execute_batch(&format!(
        "DELETE FROM {STATE_TABLE}; DELETE FROM {REQUESTS_TABLE}"
    ))?;
    write_applied(&c, index)?;
    c.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// The schema rows of Cairn's bookkeeping objects and of anything attached to them.
fn internal_schema(c: &Connection) -> Result<Vec<[Option<String>; 4]>, Error> {
    let pattern = format!("{INTERNAL_PREFIX}%");
    let mut stmt = c.prepare(
        "SELECT type, name, tbl_name, sql FROM sqlite_master \
         WHERE name LIKE ?1 OR tbl_name LIKE ?1 ORDER BY type, name",
    )?;
    let rows = stmt
        .query_map([pattern], |r| {
            Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn bind(stmt: &mut rusqlite::Statement<'_>, params: &Params) -> Result<(), Error> {
    stmt.clear_bindings();
    let count = stmt.parameter_count();
    match params {
        Params::None => {
            if count > 0 {
                return Err(Error::BadParameter(format!(
                    "statement has {count} parameters but none were given"
                )));
            }
        }
        Params::Positional(vals) => {
            if vals.len() != count {
                return Err(Error::BadParameter(format!(
                    "statement has {count} parameters but {} were given",
                    vals.len()
                )));
            }
            for (i, v) in vals.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, v)?;
            }
        }
        Params::Named(map) => {
            for i in 1..=count {
                let name = stmt.parameter_name(i).map(str::to_string);
                let Some(name) = name else {
                    return Err(Error::BadParameter(format!(
                        "parameter {i} is positional but named values were given"
                    )));
                };
                let bare = name.get(1..).unwrap_or("");
                let v = map.get(bare).or_else(|| map.get(&name)).ok_or_else(|| {
                    Error::BadParameter(format!("missing value for parameter {name}"))
                })?;
                stmt.raw_bind_parameter(i, v)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &tempfile::TempDir, name: &str) -> Db {
        Db::open_writer(&dir.path().join(name)).expect("open writer")
    }

    fn run(db: &Db, sqls: &[&str]) -> Vec<StatementResult> {
        let stmts: Vec<Statement> = sqls.iter().map(|s| Statement::new(*s)).collect();
        db.begin_entry(1, &EntryContext::default());
        db.run_statements(&stmts, false)
            .expect("no local failure")
            .results
    }

    fn code(r: &StatementResult) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    fn rows(r: &StatementResult) -> &Vec<Vec<Value>> {
        match &r.outcome {
            Outcome::Rows(rows) => &rows.values,
            other => panic!("expected rows, got {other:?}"),
        }
    }

    #[test]
    fn write_then_query_with_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = writer(&dir, "a.sqlite");
        let stmts = [
            Statement::new(
                "CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT, ok BOOLEAN)",
            ),
            Statement {
                sql: "INSERT INTO foo(name, ok) VALUES(?, ?)".into(),
                params: Params::Positional(vec![Value::Text("fiona".into()), Value::Integer(1)]),
            },
            Statement::new("SELECT *, count(*) AS n FROM foo"),
        ];
        let r = c.run_statements(&stmts, false).expect("runs").results;
        assert_eq!(
            r[1].outcome,
            Outcome::Write {
                last_insert_id: 1,
                rows_affected: 1
            }
        );
        let Outcome::Rows(rows) = &r[2].outcome else {
            panic!("expected rows, got {:?}", r[2].outcome)
        };
        assert_eq!(rows.columns, ["id", "name", "ok", "n"]);
        assert_eq!(rows.types, ["integer", "text", "boolean", "integer"]);
        assert_eq!(rows.values.len(), 1);
    }

    #[test]
    fn errors_stay_in_their_slot_unless_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = writer(&dir, "a.sqlite");
        let stmts = [
            Statement::new("CREATE TABLE t (a INTEGER PRIMARY KEY)"),
            Statement::new("INSERT INTO nope VALUES (1)"),
            Statement::new("INSERT INTO t VALUES (1)"),
        ];
        let r = c.run_statements(&stmts, false).expect("runs").results;
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[1].err().map(|e| (e.code, e.message.as_str())),
            Some((ErrorCode::SqlError, "no such table: nope"))
        );
        assert!(!r[2].is_error());
        let r = c.run_statements(&stmts[1..], true).expect("runs").results;
        assert_eq!(r.len(), 1, "transaction stops at the first error");
    }

    #[test]
    fn sql_errors_keep_sqlite_extended_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = writer(&dir, "a.sqlite");
        let stmts = [
            Statement::new("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL UNIQUE)"),
            Statement::new("INSERT INTO t VALUES (1, 'x')"),
            Statement::new("INSERT INTO t VALUES (2, 'x')"),
            Statement::new("INSERT INTO t VALUES (3, NULL)"),
            Statement::new("INSERT INTO nope VALUES (1)"),
            Statement::new("CREATE TABLE t (a)"),
            Statement::new("CREATE TABLE s (a INTEGER) STRICT"),
            Statement::new("INSERT INTO s VALUES ('x')"),
        ];
        let r = c.run_statements(&stmts, false).expect("runs").results;
        let got: Vec<_> = r[2..]
            .iter()
            .map(|r| r.err().map(|e| (e.code, e.sqlite_code, e.api_code())))
            .collect();
        assert_eq!(
            got,
            [
                // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_NOTNULL
                Some((
                    ErrorCode::SqlError,
                    Some(2067),
                    ErrorCode::ConstraintViolation
                )),
                Some((
                    ErrorCode::SqlError,
                    Some(1299),
                    ErrorCode::ConstraintViolation
                )),
                Some((ErrorCode::SqlError, Some(1), ErrorCode::TableNotFound)),
                Some((ErrorCode::SqlError, Some(1), ErrorCode::AlreadyExists)),
                None,
                // SQLITE_CONSTRAINT_DATATYPE: a STRICT type check stays sql_error.
                Some((ErrorCode::SqlError, Some(3091), ErrorCode::SqlError)),
            ]
        );
    }

    #[test]
    fn named_and_missing_parameters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = writer(&dir, "a.sqlite");
        let named = Statement {
            sql: "SELECT :a + @b AS s".into(),
            params: Params::Named(
                [
                    ("a".into(), Value::Integer(2)),
                    ("b".into(), Value::Integer(3)),
                ]
                .into(),
            ),
        };
        let r = c.run_statements(&[named], false).expect("runs").results;
        assert_eq!(rows(&r[0]), &vec![vec![Value::Integer(5)]]);
        let r = c
            .run_statements(&[Statement::new("SELECT ?")], false)
            .expect("runs")
            .results;
        assert_eq!(code(&r[0]), Some(ErrorCode::BadParameter));
    }

    #[test]
    fn classification_uses_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = writer(&dir, "a.sqlite");
        run(&c, &["CREATE TABLE t (a)"]);
        assert!(c.is_read_only("SELECT * FROM t").expect("compiles"));
        assert!(!c
            .is_read_only("INSERT INTO t VALUES (1)")
            .expect("compiles"));
        assert!(c.is_read_only("SELECT * FROM missing").is_err());
    }

    #[test]
    fn the_sandbox_refuses_what_escapes_or_diverges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = writer(&dir, "a.sqlite");
        let outside = dir.path().join("outside.db");
        let attach = format!("/**/ATTACH DATABASE '{}' AS e", outside.display());
        let vacuum = format!("VACUUM INTO '{}'", outside.display());
        let refused = [
            attach.as_str(),
            ";ATTACH ':memory:' AS m",
            vacuum.as_str(),
            "VACUUM",
            "DETACH main",
            "CREATE TEMP TABLE x (a)",
            "CREATE TEMPORARY VIEW v AS SELECT 1",
            "PRAGMA writable_schema = ON",
            "PRAGMA locking_mode = EXCLUSIVE",
            "PRAGMA query_only = 1",
            "PRAGMA journal_mode = DELETE",
            "PRAGMA foreign_keys = OFF",
            "PRAGMA page_count",
            "BEGIN",
            "SAVEPOINT s",
            "SELECT * FROM sqlite_cairn",
            "UPDATE sqlite_cairn SET v = 0",
            "SELECT load_extension('x')",
            "SELECT total_changes()",
            "SELECT count(*) FROM dbstat",
            "CREATE VIRTUAL TABLE s USING dbstat",
            "PRAGMA database_list",
        ];
        for sql in refused {
            let r = run(&c, &[sql]);
            assert_eq!(
                code(&r[0]),
                Some(ErrorCode::NotAuthorized),
                "{sql}: {:?}",
                r[0]
            );
        }
        assert!(!outside.exists(), "no file is created outside");
        let r = run(&c, &["UPDATE sqlite_master SET sql = 'x'"]);
        assert!(r[0].is_error(), "sqlite_master is not writable: {:?}", r[0]);
        let allowed = [
            "CREATE TABLE t (a INTEGER PRIMARY KEY, b)",
            "PRAGMA table_info(t)",
            "SELECT * FROM pragma_table_info('t')",
            "PRAGMA index_list(t)",
            "PRAGMA foreign_key_list(t)",
            "PRAGMA foreign_keys",
            "PRAGMA integrity_check",
            "PRAGMA user_version = 2000000000",
            "PRAGMA user_version",
        ];
        for sql in allowed {
            let r = run(&c, &[sql]);
            assert!(!r[0].is_error(), "{sql}: {:?}", r[0]);
        }
        let r = run(&c, &["PRAGMA user_version"]);
        assert_eq!(rows(&r[0]), &vec![vec![Value::Integer(2_000_000_000)]]);
        c.set_applied_index(7).expect("set");
        assert_eq!(
            c.applied_index().expect("read"),
            7,
            "bookkeeping is not user_version"
        );
    }

    #[test]
    fn non_deterministic_functions_follow_the_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = [
            "CREATE TABLE d (id INTEGER PRIMARY KEY, r DEFAULT (random()), \
             b DEFAULT (randomblob(8)), t DEFAULT CURRENT_TIMESTAMP, j DEFAULT (julianday()))",
            "CREATE TABLE log (x)",
            "CREATE TRIGGER tr AFTER INSERT ON d BEGIN \
             INSERT INTO log VALUES (random() || unixepoch('subsec') || datetime('now')); END",
            "INSERT INTO d (id) VALUES (1), (2)",
            "INSERT INTO log SELECT randomblob(100000) FROM d ORDER BY random() LIMIT 1",
            "SELECT r, b, t, j FROM d ORDER BY id",
            "SELECT x FROM log ORDER BY rowid",
            "SELECT strftime('%s'), date(), time('now', '+1 day'), timediff('now', '2000-01-01')",
        ];
        let ctx = EntryContext {
            time_ms: 1_700_000_000_123,
            seed: 42,
            step_budget: 1_000_000,
        };
        let mut outs = Vec::new();
        for name in ["one.sqlite", "two.sqlite"] {
            let c = writer(&dir, name);
            // Connection history differs between the two: it must not matter.
            if name == "two.sqlite" {
                run(&c, &["SELECT random(), randomblob(3)"]);
            }
            c.begin_entry(9, &ctx);
            let stmts: Vec<Statement> = script.iter().map(|s| Statement::new(*s)).collect();
            let r = c.run_statements(&stmts, false).expect("runs").results;
            for x in &r {
                assert!(!x.is_error(), "{x:?}");
            }
            outs.push((
                rows(&r[5]).clone(),
                rows(&r[6]).clone(),
                rows(&r[7]).clone(),
            ));
        }
        for (k, (a, b)) in [
            (&outs[0].0, &outs[1].0),
            (&outs[0].1, &outs[1].1),
            (&outs[0].2, &outs[1].2),
        ]
        .into_iter()
        .enumerate()
        {
            let show = |v: &Vec<Vec<Value>>| format!("{v:?}").chars().take(300).collect::<String>();
            assert!(a == b, "query {k} differs: {} vs {}", show(a), show(b));
        }
        assert_eq!(outs[0].0[0][2], Value::Text("2023-11-14 22:13:20".into()));
        assert_eq!(outs[0].2[0][0], Value::Text("1700000000".into()));
        let c = writer(&dir, "one.sqlite");
        c.begin_entry(9, &ctx);
        let r = c
            .run_statements(
                &[Statement::new("SELECT datetime('now', 'localtime')")],
                false,
            )
            .expect("runs")
            .results;
        assert_eq!(code(&r[0]), Some(ErrorCode::SqlError), "{:?}", r[0]);
    }

    #[test]
    fn now_cannot_hide_or_reach_a_stored_expression() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = writer(&dir, "a.sqlite");
        c.begin_entry(
            3,
            &EntryContext {
                time_ms: 1_700_000_000_123,
                seed: 1,
                step_budget: 1_000_000,
            },
        );
        let stmts: Vec<Statement> = [
            "SELECT strftime('%f', 'now' || char(0)), unixepoch(CAST('subsec' AS BLOB)), date(CAST('NOW' AS BLOB))",
            "SELECT datetime('2000-01-01', CAST('localtime' AS BLOB))",
            "CREATE TABLE d (id INTEGER PRIMARY KEY, tag)",
            "CREATE INDEX gi ON d (julianday('now') - id)",
            "CREATE TABLE g (a, b AS (datetime('now')))",
        ]
        .iter()
        .map(|s| Statement::new(*s))
        .collect();
        let r = c.run_statements(&stmts, false).expect("runs").results;
        assert_eq!(
            rows(&r[0]),
            &vec![vec![
                Value::Text("20.123".into()),
                Value::Real(1_700_000_000.123),
                Value::Text("2023-11-14".into())
            ]],
            "'now' behind a NUL or in a BLOB is the entry's time"
        );
        assert!(
            r[1].is_error(),
            "a BLOB 'localtime' is refused too: {:?}",
            r[1]
        );
        assert!(!r[2].is_error(), "{:?}", r[2]);
        assert!(
            r[3].is_error(),
            "no index over the entry's time: {:?}",
            r[3]
        );
        assert!(r[4].is_error(), "no generated column over it: {:?}", r[4]);
    }

    #[test]
    fn an_upload_cannot_bring_its_own_bookkeeping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let evil = dir.path().join("evil.sqlite");
        {
            let c = Connection::open(&evil).expect("open");
            c.execute_batch(
                "PRAGMA writable_schema = ON;
                 CREATE TABLE sqlite_cairn (k, v ANY NOT NULL);
                 INSERT INTO sqlite_cairn VALUES (1, 9000000000000000000);
                 PRAGMA writable_schema = OFF;
                 CREATE TABLE victim (a);",
            )
            .expect("build the upload");
        }
        assert!(matches!(adopt_file(&evil, 5), Err(Error::BadRequest(_))));

        let good = dir.path().join("good.sqlite");
        {
            let c = writer(&dir, "good.sqlite");
            c.set_applied_index(9_000).expect("index");
            c.exec("CREATE TABLE t (a)").expect("table");
        }
        adopt_file(&good, 5).expect("a Cairn backup is adopted");
        let c = Db::open_writer(&good).expect("open");
        assert_eq!(
            c.applied_index().expect("index"),
            5,
            "the upload's index is replaced"
        );
    }

    #[test]
    fn work_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = writer(&dir, "a.sqlite");
        let forever =
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";
        c.begin_entry(
            1,
            &EntryContext {
                step_budget: 100,
                ..EntryContext::default()
            },
        );
        let r = c
            .run_statements(&[Statement::new(forever)], false)
            .expect("runs")
            .results;
        assert_eq!(code(&r[0]), Some(ErrorCode::BudgetExceeded));

        let reader = Db::open_reader(&dir.path().join("a.sqlite")).expect("reader");
        reader.begin_read(
            Some(Instant::now() + std::time::Duration::from_millis(50)),
            None,
        );
        let r = reader
            .run_statements(&[Statement::new(forever)], false)
            .expect("runs")
            .results;
        assert_eq!(code(&r[0]), Some(ErrorCode::QueryTimeout));

        let r = run(&c, &["SELECT zeroblob(1000000) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100) SELECT x FROM c)"]);
        assert_eq!(code(&r[0]), Some(ErrorCode::ResultTooLarge));
        let long = format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 20000) SELECT x AS \"{}\" FROM c",
            "n".repeat(10_000)
        );
        let r = run(&c, &[long.as_str()]);
        assert_eq!(
            code(&r[0]),
            Some(ErrorCode::ResultTooLarge),
            "column names count per row"
        );
        let r = run(&c, &["SELEC 1"]);
        assert_eq!(
            r[0].err().map(|e| e.message.as_str()),
            Some("near \"SELEC\": syntax error"),
            "SQLite's message, unchanged"
        );
        let r = run(&c, &["SELECT 1; SELECT 2", "SELECT 'a;b';"]);
        assert_eq!(code(&r[0]), Some(ErrorCode::MultipleStatements));
        assert!(
            !r[1].is_error(),
            "a ; inside a literal or at the end is one statement"
        );
    }

    #[test]
    fn a_transaction_ended_by_sqlite_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = writer(&dir, "a.sqlite");
        run(
            &c,
            &["CREATE TABLE t (a UNIQUE)", "INSERT INTO t VALUES (1)"],
        );
        c.exec("BEGIN IMMEDIATE").expect("begin");
        let stmts = [
            Statement::new("INSERT INTO t VALUES (2)"),
            Statement::new("INSERT OR ROLLBACK INTO t VALUES (1)"),
            Statement::new("INSERT INTO t VALUES (3)"),
        ];
        let ran = c.run_statements(&stmts, false).expect("runs");
        assert!(ran.rolled_back);
        assert_eq!(ran.results.len(), 2, "nothing runs after the rollback");
    }
}
