//! The set of databases on one node: one SQLite file per logical database, plus a small
//! metadata file for the Raft state that must survive restarts.
//!
//! # Correctness
//! Every database stores the log index of the last entry applied to it in its own header
//! (`PRAGMA user_version`), written in the same transaction as the entry's changes. After
//! a crash the Raft layer replays entries from the last index it saved, and entries a
//! database has already applied are skipped, so replay never applies anything twice.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;

use crate::database::{self, applied_index, set_applied_index};
use crate::result::StatementResult;
use crate::value::Statement;
use crate::Error;

/// The database every cluster has, used when a request names none (rqlite has exactly one).
pub const DEFAULT_DATABASE: &str = "main";

const SNAPSHOT_MAGIC: &[u8; 12] = b"CAIRN-SNAP1\n";
const MAX_READERS: usize = 16;

/// Checks a database name: 1 to 64 ASCII letters, digits or underscores, not starting with
/// a digit.
///
/// # Errors
/// [`Error::BadIdentifier`] otherwise.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::BadIdentifier(name.to_string()))
    }
}

/// One logical database: a writer connection used only by the Raft state machine, and a
/// pool of read-only connections for queries (WAL lets them run beside the writer).
struct DbHandle {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl DbHandle {
    fn open(path: PathBuf) -> Result<Self, Error> {
        let writer = database::open_writer(&path)?;
        Ok(DbHandle {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> T) -> Result<T, Error> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => database::open_reader(&self.path)?,
        };
        let out = f(&conn);
        let mut pool = lock(&self.readers);
        if pool.len() < MAX_READERS {
            pool.push(conn);
        }
        Ok(out)
    }
}

/// std Mutex, not tokio's: SQLite calls are blocking and no lock is held across an await.
/// A poisoned lock only means another thread panicked mid-call; SQLite's own transaction
/// rollback keeps the file consistent, so the guard is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All databases of one node, under `dir`.
pub struct Store {
    dir: PathBuf,
    dbs: RwLock<BTreeMap<String, Arc<DbHandle>>>,
    meta: Mutex<Connection>,
}

impl Store {
    /// Opens (creating when absent) the store in `dir`: `dir/db/<name>.sqlite` per database
    /// and `dir/state.sqlite` for metadata. The default database always exists.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Sqlite`] when the files cannot be opened.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        let dbdir = dir.join("db");
        fs::create_dir_all(&dbdir)?;
        let meta = Connection::open(dir.join("state.sqlite"))?;
        meta.pragma_update(None, "journal_mode", "WAL")?;
        meta.pragma_update(None, "synchronous", "FULL")?;
        meta.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        )?;
        let store = Store {
            dir: dir.to_path_buf(),
            dbs: RwLock::new(BTreeMap::new()),
            meta: Mutex::new(meta),
        };
        store.load_handles()?;
        Ok(store)
    }

    fn db_dir(&self) -> PathBuf {
        self.dir.join("db")
    }

    fn db_path(&self, name: &str) -> PathBuf {
        self.db_dir().join(format!("{name}.sqlite"))
    }

    fn load_handles(&self) -> Result<(), Error> {
        let mut map = BTreeMap::new();
        for entry in fs::read_dir(self.db_dir())? {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".sqlite"))
            else {
                continue;
            };
            if validate_name(name).is_ok() {
                map.insert(name.to_string(), Arc::new(DbHandle::open(path.clone())?));
            }
        }
        if !map.contains_key(DEFAULT_DATABASE) {
            let h = DbHandle::open(self.db_path(DEFAULT_DATABASE))?;
            map.insert(DEFAULT_DATABASE.to_string(), Arc::new(h));
        }
        *self.dbs.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    fn handle(&self, db: &str) -> Result<Arc<DbHandle>, Error> {
        self.dbs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(db)
            .cloned()
            .ok_or_else(|| Error::NoSuchDatabase(db.to_string()))
    }

    /// Names of all databases with their file sizes in bytes, sorted by name.
    pub fn databases(&self) -> Vec<(String, u64)> {
        let map = self.dbs.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(n, h)| {
                let size = fs::metadata(&h.path).map(|m| m.len()).unwrap_or(0);
                (n.clone(), size)
            })
            .collect()
    }

    /// Whether database `db` exists.
    pub fn exists(&self, db: &str) -> bool {
        self.handle(db).is_ok()
    }

    /// Applies the write batch of log entry `index` to `db`; an entry the database has
    /// already applied (a replay after a crash) is skipped and returns no results.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`]; [`Error::Sqlite`] when the transaction itself fails
    /// (statement errors are reported in their result slots instead).
    pub fn apply_execute(
        &self,
        index: u64,
        db: &str,
        stmts: &[Statement],
        transaction: bool,
    ) -> Result<Vec<StatementResult>, Error> {
        Ok(self
            .apply_batches(index, db, &[(stmts, transaction)])?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Applies several batches of one log entry (queued writes) to `db` in one SQLite
    /// transaction, each batch with its own `transaction` flag (a failing atomic batch is
    /// rolled back alone). The entry's index is recorded once, so a replay skips them all.
    ///
    /// # Errors
    /// As [`Store::apply_execute`].
    pub fn apply_batches(
        &self,
        index: u64,
        db: &str,
        batches: &[(&[Statement], bool)],
    ) -> Result<Vec<Vec<StatementResult>>, Error> {
        let h = self.handle(db)?;
        let conn = lock(&h.writer);
        if applied_index(&conn)? >= index {
            return Ok(Vec::new());
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let results = (|| {
            set_applied_index(&conn, index)?;
            let mut all = Vec::with_capacity(batches.len());
            for (stmts, transaction) in batches {
                if !transaction {
                    all.push(database::run_statements(&conn, stmts, false));
                    continue;
                }
                conn.execute_batch("SAVEPOINT batch")?;
                let results = database::run_statements(&conn, stmts, true);
                if results.iter().any(StatementResult::is_error) {
                    conn.execute_batch("ROLLBACK TO batch")?;
                }
                conn.execute_batch("RELEASE batch")?;
                all.push(results);
            }
            Ok(all)
        })();
        finish(&conn, results)
    }

    /// Applies a SQL script (several statements in one string, as `/db/load` accepts) to
    /// `db` in one transaction: all of it or none.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`]; [`Error::Sqlite`] with SQLite's message when a statement
    /// fails (nothing is kept).
    pub fn apply_script(&self, index: u64, db: &str, sql: &str) -> Result<(), Error> {
        let h = self.handle(db)?;
        let conn = lock(&h.writer);
        if applied_index(&conn)? >= index {
            return Ok(());
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute_batch("SAVEPOINT script")?;
        if let Err(e) = conn.execute_batch(sql) {
            conn.execute_batch("ROLLBACK TO script; RELEASE script")?;
            set_applied_index(&conn, index)?;
            conn.execute_batch("COMMIT")?;
            return Err(e.into());
        }
        let r = conn
            .execute_batch("RELEASE script")
            .map_err(Error::from)
            .and_then(|_| set_applied_index(&conn, index));
        finish(&conn, r)
    }

    /// Creates database `name` at log index `index`.
    ///
    /// # Errors
    /// [`Error::BadIdentifier`], [`Error::DatabaseExists`].
    pub fn create_database(&self, index: u64, name: &str) -> Result<(), Error> {
        validate_name(name)?;
        let mut map = self.dbs.write().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(name) {
            return Err(Error::DatabaseExists(name.to_string()));
        }
        let path = self.db_path(name);
        remove_db_files(&path)?;
        let h = DbHandle::open(path)?;
        set_applied_index(&lock(&h.writer), index)?;
        map.insert(name.to_string(), Arc::new(h));
        Ok(())
    }

    /// Drops database `name` and deletes its files. The default database cannot be dropped.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`], [`Error::Forbidden`] for the default database.
    pub fn drop_database(&self, name: &str) -> Result<(), Error> {
        if name == DEFAULT_DATABASE {
            return Err(Error::Forbidden(format!(
                "database {name} cannot be dropped"
            )));
        }
        let mut map = self.dbs.write().unwrap_or_else(|e| e.into_inner());
        let h = map
            .remove(name)
            .ok_or_else(|| Error::NoSuchDatabase(name.to_string()))?;
        let path = h.path.clone();
        drop(h);
        remove_db_files(&path)?;
        Ok(())
    }

    /// Replaces the contents of `db` with the SQLite database file `bytes` (rqlite's
    /// `/db/load` of a binary file).
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`]; [`Error::BadRequest`] when `bytes` is not a valid
    /// SQLite database (nothing changes then).
    pub fn apply_load(&self, index: u64, db: &str, bytes: &[u8]) -> Result<(), Error> {
        let old = self.handle(db)?;
        if applied_index(&lock(&old.writer))? >= index {
            return Ok(());
        }
        let tmp = self.db_dir().join(format!(".load-{db}.tmp"));
        remove_db_files(&tmp)?;
        fs::write(&tmp, bytes)?;
        let check = (|| -> Result<(), Error> {
            let c = Connection::open(&tmp)?;
            let ok: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
            if ok != "ok" {
                return Err(Error::BadRequest(format!(
                    "not a valid SQLite database: {ok}"
                )));
            }
            c.pragma_update(None, "journal_mode", "WAL")?;
            set_applied_index(&c, index)?;
            Ok(())
        })();
        if let Err(e) = check {
            remove_db_files(&tmp)?;
            return Err(match e {
                Error::Sqlite(s) => Error::BadRequest(format!("not a valid SQLite database: {s}")),
                other => other,
            });
        }
        let mut map = self.dbs.write().unwrap_or_else(|e| e.into_inner());
        let path = old.path.clone();
        map.remove(db);
        drop(old);
        remove_db_files(&path)?;
        fs::rename(&tmp, &path)?;
        remove_db_files(&tmp)?;
        map.insert(db.to_string(), Arc::new(DbHandle::open(path)?));
        Ok(())
    }

    /// Runs read-only statements on a pooled read connection of `db`. A statement that
    /// would write fails in its slot with SQLite's read-only error.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`], [`Error::Sqlite`] when no connection can be opened.
    pub fn query(&self, db: &str, stmts: &[Statement]) -> Result<Vec<StatementResult>, Error> {
        self.handle(db)?
            .with_reader(|c| database::run_statements(c, stmts, false))
    }

    /// Whether every statement leaves `db` unchanged (statements that do not compile count
    /// as reads, so that their error is reported without a log entry).
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`].
    pub fn all_read_only(&self, db: &str, stmts: &[Statement]) -> Result<bool, Error> {
        self.handle(db)?.with_reader(|c| {
            stmts
                .iter()
                .all(|s| database::is_read_only(c, &s.sql).unwrap_or(true))
        })
    }

    /// The applied index stored in `db`'s header.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`], [`Error::Sqlite`].
    pub fn applied_index(&self, db: &str) -> Result<u64, Error> {
        let h = self.handle(db)?;
        let c = lock(&h.writer);
        applied_index(&c)
    }

    /// Writes a consistent copy of `db` to `dest` (`VACUUM INTO`): rqlite's `/db/backup`.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`], [`Error::Sqlite`], [`Error::Io`].
    pub fn backup(&self, db: &str, dest: &Path) -> Result<(), Error> {
        let h = self.handle(db)?;
        if dest.exists() {
            fs::remove_file(dest)?;
        }
        h.with_reader(|c| c.execute("VACUUM INTO ?1", [dest.to_string_lossy()]))??;
        Ok(())
    }

    /// A SQL text dump of `db` (`/db/backup?fmt=sql`): schema and `INSERT` statements
    /// inside one transaction, as the `sqlite3` shell's `.dump` writes them.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`], [`Error::Sqlite`].
    pub fn dump_sql(&self, db: &str) -> Result<String, Error> {
        self.handle(db)?.with_reader(dump)?
    }

    /// Reads a metadata value saved with [`Store::set_meta`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        use rusqlite::OptionalExtension;
        Ok(lock(&self.meta)
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Saves metadata values durably (`synchronous=FULL`), all in one transaction.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn set_meta(&self, pairs: &[(&str, &[u8])]) -> Result<(), Error> {
        let mut c = lock(&self.meta);
        let tx = c.transaction()?;
        for (k, v) in pairs {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                rusqlite::params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Checkpoints every database's WAL into its main file (which SQLite fsyncs), so that
    /// everything applied so far is on disk before the caller records it as applied.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn checkpoint(&self) -> Result<(), Error> {
        let handles: Vec<_> = self
            .dbs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for h in handles {
            let c = lock(&h.writer);
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    /// Writes a snapshot of every database to `dest`: a small archive of `VACUUM INTO`
    /// copies (magic, then per file: name length u32 BE, name, size u64 BE, bytes).
    /// Writers are locked for the duration, so the copies are of one applied index.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Sqlite`].
    pub fn write_snapshot(&self, dest: &Path) -> Result<(), Error> {
        let map = self.dbs.read().unwrap_or_else(|e| e.into_inner());
        let tmpdir = self.dir.join("snapshot.tmp");
        let _ = fs::remove_dir_all(&tmpdir);
        fs::create_dir_all(&tmpdir)?;
        let guards: Vec<_> = map.iter().map(|(n, h)| (n, lock(&h.writer))).collect();
        let mut out = BufWriter::new(File::create(dest)?);
        out.write_all(SNAPSHOT_MAGIC)?;
        for (name, conn) in &guards {
            let copy = tmpdir.join(format!("{name}.sqlite"));
            conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()])?;
            let len = fs::metadata(&copy)?.len();
            let name_bytes = name.as_bytes();
            out.write_all(&u32::try_from(name_bytes.len()).unwrap_or(0).to_be_bytes())?;
            out.write_all(name_bytes)?;
            out.write_all(&len.to_be_bytes())?;
            std::io::copy(&mut File::open(&copy)?, &mut out)?;
            fs::remove_file(&copy)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        drop(guards);
        let _ = fs::remove_dir_all(&tmpdir);
        Ok(())
    }

    /// Replaces every database with the contents of snapshot `src` (written by
    /// [`Store::write_snapshot`]). The archive is unpacked beside the live files first, so
    /// a corrupt archive changes nothing.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a malformed archive, [`Error::Io`], [`Error::Sqlite`].
    pub fn restore_snapshot(&self, src: &Path) -> Result<(), Error> {
        let staging = self.dir.join("restore.tmp");
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)?;
        unpack(src, &staging)?;
        let mut map = self.dbs.write().unwrap_or_else(|e| e.into_inner());
        map.clear();
        let dbdir = self.db_dir();
        let old = self.dir.join("db.old");
        let _ = fs::remove_dir_all(&old);
        fs::rename(&dbdir, &old)?;
        fs::rename(&staging, &dbdir)?;
        let _ = fs::remove_dir_all(&old);
        drop(map);
        self.load_handles()
    }
}

fn finish<T>(conn: &Connection, r: Result<T, Error>) -> Result<T, Error> {
    match r {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn remove_db_files(path: &Path) -> Result<(), Error> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn unpack(src: &Path, dir: &Path) -> Result<(), Error> {
    let bad = |m: &str| Error::BadRequest(format!("malformed snapshot: {m}"));
    let mut r = BufReader::new(File::open(src)?);
    let mut magic = [0u8; 12];
    r.read_exact(&mut magic).map_err(|_| bad("too short"))?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(bad("wrong magic"));
    }
    loop {
        let mut len4 = [0u8; 4];
        match r.read_exact(&mut len4) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let n = u32::from_be_bytes(len4) as usize;
        if n > 64 {
            return Err(bad("name too long"));
        }
        let mut name = vec![0u8; n];
        r.read_exact(&mut name).map_err(|_| bad("truncated name"))?;
        let name = String::from_utf8(name).map_err(|_| bad("name is not UTF-8"))?;
        validate_name(&name).map_err(|_| bad("invalid database name"))?;
        let mut len8 = [0u8; 8];
        r.read_exact(&mut len8).map_err(|_| bad("truncated size"))?;
        let size = u64::from_be_bytes(len8);
        let mut out = File::create(dir.join(format!("{name}.sqlite")))?;
        let copied = std::io::copy(&mut (&mut r).take(size), &mut out)?;
        if copied != size {
            return Err(bad("truncated file"));
        }
        out.sync_all()?;
    }
}

fn dump(c: &Connection) -> Result<String, Error> {
    let mut out = String::from("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n");
    let mut stmt = c.prepare(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql NOT NULL \
         AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
    )?;
    let tables: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (name, sql) in tables {
        out.push_str(&sql);
        out.push_str(";\n");
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let cols: Vec<String> = c
            .prepare(&format!(
                "SELECT name FROM pragma_table_info({})",
                sql_quote(&name)
            ))?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        let exprs: Vec<String> = cols
            .iter()
            .map(|col| format!("quote(\"{}\")", col.replace('"', "\"\"")))
            .collect();
        let q = format!(
            "SELECT 'INSERT INTO ' || {} || ' VALUES(' || {} || ');' FROM {quoted}",
            sql_quote(&quoted),
            exprs.join(" || ',' || ")
        );
        let mut rows = c.prepare(&q)?;
        let lines = rows.query_map([], |r| r.get::<_, String>(0))?;
        for line in lines {
            out.push_str(&line?);
            out.push('\n');
        }
    }
    let mut other = c.prepare(
        "SELECT sql FROM sqlite_master WHERE type IN ('index','trigger','view') AND sql NOT NULL ORDER BY rowid",
    )?;
    for sql in other.query_map([], |r| r.get::<_, String>(0))? {
        out.push_str(&sql?);
        out.push_str(";\n");
    }
    out.push_str("COMMIT;\n");
    Ok(out)
}

fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Outcome;

    fn stmts(sqls: &[&str]) -> Vec<Statement> {
        sqls.iter().map(|s| Statement::new(*s)).collect()
    }

    #[test]
    fn replayed_entries_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(1, "main", &stmts(&["CREATE TABLE t (a)"]), false)
            .expect("apply");
        s.apply_execute(2, "main", &stmts(&["INSERT INTO t VALUES (1)"]), false)
            .expect("apply");
        let again = s
            .apply_execute(2, "main", &stmts(&["INSERT INTO t VALUES (1)"]), false)
            .expect("replay");
        assert!(again.is_empty());
        let r = s
            .query("main", &stmts(&["SELECT count(*) FROM t"]))
            .expect("query");
        let Outcome::Rows(rows) = &r[0].outcome else {
            panic!("rows")
        };
        assert_eq!(rows.values[0][0], crate::Value::Integer(1));
    }

    #[test]
    fn every_batch_of_a_queued_entry_is_applied_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(1, "main", &stmts(&["CREATE TABLE t (a UNIQUE)"]), false)
            .expect("apply");
        let one = stmts(&["INSERT INTO t VALUES (1)"]);
        let bad = stmts(&["INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (1)"]);
        let three = stmts(&["INSERT INTO t VALUES (3)"]);
        let batches: Vec<(&[Statement], bool)> = vec![(&one, false), (&bad, true), (&three, false)];
        let r = s.apply_batches(2, "main", &batches).expect("apply");
        assert_eq!(r.len(), 3);
        assert!(s
            .apply_batches(2, "main", &batches)
            .expect("replay")
            .is_empty());
        let r = s
            .query("main", &stmts(&["SELECT group_concat(a) FROM t"]))
            .expect("query");
        let Outcome::Rows(rows) = &r[0].outcome else {
            panic!("rows")
        };
        assert_eq!(
            rows.values[0][0],
            crate::Value::Text("1,3".into()),
            "the failed atomic batch alone is rolled back"
        );
    }

    #[test]
    fn transaction_rolls_back_but_advances_applied_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(1, "main", &stmts(&["CREATE TABLE t (a UNIQUE)"]), false)
            .expect("apply");
        let r = s
            .apply_execute(
                2,
                "main",
                &stmts(&["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"]),
                true,
            )
            .expect("apply");
        assert!(r[1].is_error());
        assert_eq!(s.applied_index("main").expect("index"), 2);
        let r = s
            .query("main", &stmts(&["SELECT count(*) FROM t"]))
            .expect("query");
        let Outcome::Rows(rows) = &r[0].outcome else {
            panic!("rows")
        };
        assert_eq!(rows.values[0][0], crate::Value::Integer(0));
    }

    #[test]
    fn queries_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(1, "main", &stmts(&["CREATE TABLE t (a)"]), false)
            .expect("apply");
        let r = s
            .query("main", &stmts(&["INSERT INTO t VALUES (1)"]))
            .expect("query");
        assert!(r[0].is_error());
        assert!(!s
            .all_read_only("main", &stmts(&["SELECT 1", "DELETE FROM t"]))
            .expect("classify"));
    }

    #[test]
    fn snapshot_round_trip_and_databases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.create_database(1, "school").expect("create");
        assert!(matches!(
            s.create_database(2, "school"),
            Err(Error::DatabaseExists(_))
        ));
        assert!(matches!(
            s.create_database(2, "bad-name"),
            Err(Error::BadIdentifier(_))
        ));
        s.apply_execute(
            3,
            "school",
            &stmts(&["CREATE TABLE k (n)", "INSERT INTO k VALUES (7)"]),
            false,
        )
        .expect("apply");
        let snap = dir.path().join("snap.bin");
        s.write_snapshot(&snap).expect("snapshot");

        let dir2 = tempfile::tempdir().expect("tempdir");
        let s2 = Store::open(dir2.path()).expect("open");
        s2.restore_snapshot(&snap).expect("restore");
        let names: Vec<String> = s2.databases().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["main", "school"]);
        let r = s2
            .query("school", &stmts(&["SELECT n FROM k"]))
            .expect("query");
        let Outcome::Rows(rows) = &r[0].outcome else {
            panic!("rows")
        };
        assert_eq!(rows.values, vec![vec![crate::Value::Integer(7)]]);
        assert!(s2
            .dump_sql("school")
            .expect("dump")
            .contains("INSERT INTO \"k\" VALUES(7);"));
        s2.drop_database("school").expect("drop");
        assert!(!s2.exists("school"));
        assert!(s2.drop_database("main").is_err());
    }

    #[test]
    fn load_rejects_garbage_and_keeps_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(1, "main", &stmts(&["CREATE TABLE t (a)"]), false)
            .expect("apply");
        assert!(s
            .apply_load(2, "main", b"not a database at all, definitely not")
            .is_err());
        assert!(
            s.query("main", &stmts(&["SELECT * FROM t"]))
                .expect("query")[0]
                .outcome
                != Outcome::Error(String::new())
        );
        let backup = dir.path().join("b.sqlite");
        s.backup("main", &backup).expect("backup");
        s.apply_load(3, "main", &fs::read(&backup).expect("read"))
            .expect("load");
        assert_eq!(s.applied_index("main").expect("index"), 3);
    }
}
