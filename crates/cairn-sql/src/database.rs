//! Running statements on one SQLite connection.

use std::path::Path;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};

use crate::result::{Outcome, Rows, StatementResult};
use crate::value::{Params, Statement, Value};
use crate::Error;

/// Upper bound on rows one query may return, so that one request cannot exhaust memory.
pub const MAX_ROWS: usize = 1_000_000;

/// Opens a database file for writing: WAL journal, `synchronous=NORMAL` (safe because the
/// Raft log is the durable record and each database stores its applied index in the same
/// transaction as the data), foreign keys on.
///
/// # Errors
/// [`Error::Sqlite`] when the file cannot be opened or configured.
pub fn open_writer(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Opens a read-only connection: a write sent as a query fails with SQLite's
/// "attempt to write a readonly database", as in rqlite.
///
/// # Errors
/// [`Error::Sqlite`] when the file cannot be opened.
pub fn open_reader(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The applied log index stored in the database header (`PRAGMA user_version`).
///
/// # Errors
/// [`Error::Sqlite`] on I/O errors.
pub fn applied_index(conn: &Connection) -> Result<u64, Error> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(u64::try_from(v).unwrap_or(0))
}

/// Records `index` as this database's applied log index; call inside the transaction
/// that applies the entry.
///
/// # Correctness
/// `user_version` is a 32-bit header field: indexes above `i32::MAX` wrap the skip check,
/// which only matters for replays after a crash in a cluster that has committed more than
/// two billion entries.
pub fn set_applied_index(conn: &Connection, index: u64) -> Result<(), Error> {
    let v = i32::try_from(index).unwrap_or(i32::MAX);
    conn.pragma_update(None, "user_version", v)?;
    Ok(())
}

/// Whether `sql` leaves the database unchanged (`sqlite3_stmt_readonly`): how
/// `/db/request` tells queries from writes.
///
/// # Errors
/// [`Error::Sqlite`] when the SQL does not compile (e.g. unknown table).
pub fn is_read_only(conn: &Connection, sql: &str) -> Result<bool, Error> {
    let stmt = conn.prepare(sql)?;
    Ok(stmt.readonly())
}

/// Runs `stmts` in order. With `transaction`, the caller has opened a savepoint and the
/// run stops at the first error (the caller rolls back); without it every statement runs
/// and an error stays in its own slot (rqlite's behaviour).
pub fn run_statements(
    conn: &Connection,
    stmts: &[Statement],
    transaction: bool,
) -> Vec<StatementResult> {
    let mut out = Vec::with_capacity(stmts.len());
    for s in stmts {
        let start = Instant::now();
        let outcome = match run_one(conn, s) {
            Ok(o) => o,
            Err(e) => Outcome::Error(e.to_string()),
        };
        let failed = matches!(outcome, Outcome::Error(_));
        out.push(StatementResult {
            outcome,
            time: start.elapsed().as_secs_f64(),
        });
        if failed && transaction {
            break;
        }
    }
    out
}

fn run_one(conn: &Connection, s: &Statement) -> Result<Outcome, Error> {
    let trimmed = s.sql.trim();
    if trimmed.is_empty() {
        return Err(Error::BadRequest("empty statement".into()));
    }
    let first = trimmed
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if matches!(
        first.as_str(),
        "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "ATTACH" | "DETACH"
    ) {
        return Err(Error::BadRequest(format!(
            "{first} is not allowed: each request is applied in its own transaction \
             (use the transaction flag to make a batch atomic)"
        )));
    }
    let mut stmt = conn.prepare_cached(trimmed)?;
    bind(&mut stmt, &s.params)?;
    if stmt.column_count() == 0 {
        let changed = stmt.raw_execute()?;
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
    let mut values = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        if values.len() >= MAX_ROWS {
            return Err(Error::BadRequest(format!(
                "query returns more than {MAX_ROWS} rows; add a LIMIT"
            )));
        }
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            vals.push(Value::from(row.get_ref(i)?));
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

fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: &Params) -> Result<(), Error> {
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

    fn mem() -> Connection {
        Connection::open_in_memory().expect("in-memory database")
    }

    #[test]
    fn write_then_query_with_types() {
        let c = mem();
        let r = run_statements(
            &c,
            &[
                Statement::new(
                    "CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT, ok BOOLEAN)",
                ),
                Statement {
                    sql: "INSERT INTO foo(name, ok) VALUES(?, ?)".into(),
                    params: Params::Positional(vec![
                        Value::Text("fiona".into()),
                        Value::Integer(1),
                    ]),
                },
                Statement::new("SELECT *, count(*) AS n FROM foo"),
            ],
            false,
        );
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
        let c = mem();
        let stmts = [
            Statement::new("CREATE TABLE t (a INTEGER PRIMARY KEY)"),
            Statement::new("INSERT INTO nope VALUES (1)"),
            Statement::new("INSERT INTO t VALUES (1)"),
        ];
        let r = run_statements(&c, &stmts, false);
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].outcome, Outcome::Error("no such table: nope".into()));
        assert!(!r[2].is_error());
        let r = run_statements(&c, &stmts[1..], true);
        assert_eq!(r.len(), 1, "transaction stops at the first error");
    }

    #[test]
    fn named_and_missing_parameters() {
        let c = mem();
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
        let Outcome::Rows(rows) = &run_statements(&c, &[named], false)[0].outcome else {
            panic!("expected rows")
        };
        assert_eq!(rows.values, vec![vec![Value::Integer(5)]]);
        let missing = Statement::new("SELECT ?");
        assert!(run_statements(&c, &[missing], false)[0].is_error());
    }

    #[test]
    fn classification_uses_sqlite() {
        let c = mem();
        c.execute_batch("CREATE TABLE t (a)").expect("create");
        assert!(is_read_only(&c, "SELECT * FROM t").expect("compiles"));
        assert!(!is_read_only(&c, "INSERT INTO t VALUES (1)").expect("compiles"));
        assert!(is_read_only(&c, "SELECT * FROM missing").is_err());
    }
}
