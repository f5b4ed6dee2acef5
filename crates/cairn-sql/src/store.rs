//! The set of databases on one node: one SQLite file per logical database, plus a small
//! metadata file for the Raft state that must survive restarts.
//!
//! # Correctness
//! - Every database records the log index of the last entry applied to it in its own
//!   bookkeeping table (`sqlite_cairn`, out of clients' reach), written in the same
//!   transaction as the entry's changes. After a crash the Raft layer replays entries from
//!   the last index it saved, and entries a database has already applied are skipped, so
//!   replay never applies anything twice.
//! - An entry either commits with its deterministic outcome (statement errors included)
//!   or, when this replica fails locally (I/O, a lock), rolls back entirely and returns
//!   [`Error::Local`]: the caller retries it, and never answers it.
//! - The files live in a *generation* directory: `CURRENT` names it (absent: the store's
//!   own directory). Replacing every database (a snapshot install) writes a new generation
//!   beside the old one, fsyncs it, then switches `CURRENT` with one atomic rename: a crash
//!   at any point leaves either the old or the new generation, whole, with its metadata.
//! - Replacing one database (`/db/load`) checkpoints and closes the old file, then renames
//!   the new, fsynced file over it: a crash leaves one of the two, whole.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rusqlite::Connection;

use crate::crash::crash_point;
use crate::database::{self, Db, LocalFailure};
use crate::determinism::EntryContext;
use crate::result::{ErrorCode, StatementResult};
use crate::value::Statement;
use crate::Error;

/// The database every cluster has, used when a request names none (rqlite has exactly one).
pub const DEFAULT_DATABASE: &str = "main";

const SNAPSHOT_MAGIC: &[u8; 12] = b"CAIRN-SNAP1\n";
/// Buffer size for copying snapshot archives, in bytes.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;
const MAX_READERS: usize = 16;
const CURRENT_FILE: &str = "CURRENT";
const GENERATION_PREFIX: &str = "gen-";

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
    writer: Mutex<Db>,
    readers: Mutex<Vec<Db>>,
    /// The checkpointer thread's connection (see [`checkpointer`]), opened on first use
    /// and closed with the handle (a load or a drop waits for that: [`close_handle`]).
    checkpointer: Mutex<Option<Connection>>,
}

impl DbHandle {
    fn open(path: PathBuf) -> Result<Self, Error> {
        let writer = Db::open_writer(&path)?;
        Ok(DbHandle {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            checkpointer: Mutex::new(None),
        })
    }

    /// Copies what it can of the WAL into the database file (`PRAGMA
    /// wal_checkpoint(PASSIVE)`: never waits for the writer or readers, and skips frames a
    /// reader still needs), fsyncing the WAL before and the file after. Runs on the
    /// checkpointer thread, on its own connection, so the state machine's writer never
    /// checkpoints: its commits stay short even after a snapshot held the WAL for a long
    /// copy.
    fn checkpoint_passive(&self) -> Result<(), Error> {
        let mut slot = lock(&self.checkpointer);
        let conn = match slot.take() {
            Some(c) => c,
            None => {
                let c = Connection::open(&self.path)?;
                // `synchronous` is FULL by default: the checkpoint fsyncs.
                c.busy_timeout(std::time::Duration::from_millis(100))?;
                c
            }
        };
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        *slot = Some(conn);
        Ok(())
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Db) -> T) -> Result<T, Error> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => Db::open_reader(&self.path)?,
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

fn local(f: LocalFailure) -> Error {
    Error::Local(f.0)
}

/// The files of one generation.
struct Generation {
    /// The generation's directory: `state.sqlite` and `db/`.
    dir: PathBuf,
    meta: Connection,
}

/// All databases of one node, under `dir`.
pub struct Store {
    root: PathBuf,
    /// Shared with the checkpointer thread, which ends once the store is dropped.
    dbs: Arc<RwLock<BTreeMap<String, Arc<DbHandle>>>>,
    current: Mutex<Generation>,
}

fn open_meta(dir: &Path) -> Result<Connection, Error> {
    let meta = Connection::open(dir.join("state.sqlite"))?;
    meta.pragma_update(None, "journal_mode", "WAL")?;
    meta.pragma_update(None, "synchronous", "FULL")?;
    meta.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    )?;
    Ok(meta)
}

/// fsyncs a directory, so that the names created or renamed in it are durable.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn write_meta(meta: &mut Connection, pairs: &[(&str, &[u8])]) -> Result<(), Error> {
    let tx = meta.transaction()?;
    for (k, v) in pairs {
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            rusqlite::params![k, v],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Opens (creating when absent) the store in `dir`: the generation `dir/CURRENT` names
    /// (or `dir` itself), with `db/<name>.sqlite` per database and `state.sqlite` for
    /// metadata. Leftovers of an interrupted snapshot install are removed. The default
    /// database always exists.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Sqlite`] when the files cannot be opened.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        fs::create_dir_all(dir)?;
        let gen_dir = match fs::read_to_string(dir.join(CURRENT_FILE)) {
            Ok(name) => {
                let name = name.trim();
                let valid = name
                    .strip_prefix(GENERATION_PREFIX)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                if !valid {
                    return Err(Error::BadRequest(format!(
                        "{}: not a generation name: {name:?}",
                        dir.join(CURRENT_FILE).display()
                    )));
                }
                dir.join(name)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => dir.to_path_buf(),
            Err(e) => return Err(e.into()),
        };
        remove_stale_generations(dir, &gen_dir)?;
        fs::create_dir_all(gen_dir.join("db"))?;
        let meta = open_meta(&gen_dir)?;
        let store = Store {
            root: dir.to_path_buf(),
            dbs: Arc::new(RwLock::new(BTreeMap::new())),
            current: Mutex::new(Generation { dir: gen_dir, meta }),
        };
        store.load_handles()?;
        let dbs = Arc::downgrade(&store.dbs);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(&dbs))?;
        Ok(store)
    }

    fn db_dir(&self) -> PathBuf {
        lock(&self.current).dir.join("db")
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

    /// Applies the write batch of log entry `index` to `db` under the entry's `ctx`; an
    /// entry the database has already applied (a replay after a crash) is skipped and
    /// returns no results. With a `request_id` that this database applied within the last
    /// [`crate::REQUEST_ID_WINDOW`] entries, nothing runs and the results it got then are
    /// returned again (a retried write applies once).
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`]; [`Error::Local`] (or `Io`/`Sqlite`) when this replica
    /// failed to apply it: nothing was applied, retry. Statement errors are reported in
    /// their result slots instead.
    pub fn apply_execute(
        &self,
        index: u64,
        ctx: &EntryContext,
        db: &str,
        stmts: &[Statement],
        transaction: bool,
        request_id: Option<&str>,
    ) -> Result<Vec<StatementResult>, Error> {
        Ok(self
            .apply_entry(index, ctx, db, &[(stmts, transaction)], request_id)?
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
        ctx: &EntryContext,
        db: &str,
        batches: &[(&[Statement], bool)],
    ) -> Result<Vec<Vec<StatementResult>>, Error> {
        self.apply_entry(index, ctx, db, batches, None)
    }

    fn apply_entry(
        &self,
        index: u64,
        ctx: &EntryContext,
        db: &str,
        batches: &[(&[Statement], bool)],
        request_id: Option<&str>,
    ) -> Result<Vec<Vec<StatementResult>>, Error> {
        let h = self.handle(db)?;
        let w = lock(&h.writer);
        if w.applied_index()? >= index {
            return Ok(Vec::new());
        }
        w.exec("BEGIN IMMEDIATE")?;
        let results = (|| {
            w.set_applied_index(index)?;
            if let Some(id) = request_id {
                if let Some(previous) = w.remembered(id)? {
                    return Ok(vec![previous]);
                }
            }
            w.begin_entry(index, ctx);
            let mut all: Vec<Vec<StatementResult>> = Vec::with_capacity(batches.len());
            for (stmts, transaction) in batches {
                if *transaction {
                    w.exec("SAVEPOINT batch")?;
                }
                let ran = w.run_statements(stmts, *transaction).map_err(local)?;
                if ran.rolled_back {
                    all.push(ran.results);
                    return restart_rolled_back(&w, index, all);
                }
                if *transaction {
                    if ran.results.iter().any(StatementResult::is_error) {
                        w.exec("ROLLBACK TO batch")?;
                    }
                    w.exec("RELEASE batch")?;
                }
                all.push(ran.results);
            }
            if let Some(id) = request_id {
                let flat: Vec<StatementResult> = all.iter().flatten().cloned().collect();
                w.remember(index, id, &flat)?;
            }
            Ok(all)
        })();
        finish(&w, results)
    }

    /// Applies a SQL script (several statements in one string, `/db/load` of SQL text) to
    /// `db` as one atomic batch: SQLite's parser splits it, each statement runs in the
    /// sandbox, and the first error rolls all of it back. Returns each statement's result
    /// up to the first error.
    ///
    /// # Errors
    /// As [`Store::apply_execute`].
    pub fn apply_script(
        &self,
        index: u64,
        ctx: &EntryContext,
        db: &str,
        sql: &str,
    ) -> Result<Vec<StatementResult>, Error> {
        let h = self.handle(db)?;
        let w = lock(&h.writer);
        if w.applied_index()? >= index {
            return Ok(Vec::new());
        }
        w.exec("BEGIN IMMEDIATE")?;
        let results = (|| {
            w.set_applied_index(index)?;
            w.begin_entry(index, ctx);
            w.exec("SAVEPOINT script")?;
            let ran = w.run_script(sql).map_err(local)?;
            if ran.rolled_back {
                return Ok(restart_rolled_back(&w, index, vec![ran.results])?
                    .into_iter()
                    .flatten()
                    .collect());
            }
            if ran.results.iter().any(StatementResult::is_error) {
                w.exec("ROLLBACK TO script")?;
            }
            w.exec("RELEASE script")?;
            Ok(ran.results)
        })();
        finish(&w, results)
    }

    /// Creates database `name` at log index `index`.
    ///
    /// # Errors
    /// [`Error::BadIdentifier`], [`Error::DatabaseExists`]; `Io`/`Sqlite` (local).
    pub fn create_database(&self, index: u64, name: &str) -> Result<(), Error> {
        validate_name(name)?;
        let mut map = self.dbs.write().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(name) {
            return Err(Error::DatabaseExists(name.to_string()));
        }
        let path = self.db_path(name);
        remove_db_files(&path)?;
        let h = DbHandle::open(path)?;
        lock(&h.writer).set_applied_index(index)?;
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
        if let Err(h) = close_handle(h) {
            map.insert(name.to_string(), h);
            return Err(Error::Local(format!(
                "cannot drop {name} yet: reads still use it"
            )));
        }
        remove_db_files(&path)?;
        Ok(())
    }

    /// Replaces the contents of `db` with the SQLite database file `bytes` (rqlite's
    /// `/db/load` of a binary file), at log index `index`. The new file is written and
    /// fsynced beside the old one, then renamed over it once the old one is checkpointed
    /// and closed (crash points `load.written`, `load.swapped`).
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`]; [`Error::BadRequest`] when `bytes` is not a valid
    /// SQLite database (nothing changes then); `Io`/`Sqlite` (local).
    pub fn apply_load(&self, index: u64, db: &str, bytes: &[u8]) -> Result<(), Error> {
        let old = self.handle(db)?;
        if lock(&old.writer).applied_index()? >= index {
            return Ok(());
        }
        let dir = self.db_dir();
        let tmp = dir.join(format!(".load-{db}.tmp"));
        remove_db_files(&tmp)?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        if let Err(e) = database::adopt_file(&tmp, index) {
            remove_db_files(&tmp)?;
            return Err(match e {
                Error::Sqlite(s) => Error::BadRequest(format!("not a valid SQLite database: {s}")),
                other => other,
            });
        }
        File::open(&tmp)?.sync_all()?;
        crash_point("load.written");
        let mut map = self.dbs.write().unwrap_or_else(|e| e.into_inner());
        let path = old.path.clone();
        {
            // Everything in the old WAL goes into the old file before its WAL is removed,
            // so that a crash before the rename below still finds the old database whole.
            // A reader still inside the WAL blocks that: retry later (nothing changed yet).
            let w = lock(&old.writer);
            let busy: i64 =
                w.internal(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)))?;
            if busy != 0 {
                return Err(Error::Local(format!(
                    "cannot replace {db}: readers still use its WAL"
                )));
            }
        }
        map.remove(db);
        if let Err(old) = close_handle(old) {
            map.insert(db.to_string(), old);
            return Err(Error::Local(format!(
                "cannot replace {db} yet: reads still use it"
            )));
        }
        for suffix in ["-wal", "-shm", "-journal"] {
            match fs::remove_file(format!("{}{suffix}", path.display())) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&dir)?;
        crash_point("load.swapped");
        map.insert(db.to_string(), Arc::new(DbHandle::open(path)?));
        Ok(())
    }

    /// Runs read-only statements on a pooled read connection of `db`, each bounded by
    /// `deadline` (a statement still running then fails with `query_timeout`). A statement
    /// that would write fails in its slot with SQLite's read-only error.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`], [`Error::Sqlite`] when no connection can be opened.
    pub fn query(
        &self,
        db: &str,
        stmts: &[Statement],
        deadline: Option<Instant>,
    ) -> Result<Vec<StatementResult>, Error> {
        self.read(db, stmts, deadline, None)
    }

    /// Runs a read that went through the log (`level=strong`), bounded by the entry's
    /// deterministic step budget like a write.
    ///
    /// # Errors
    /// As [`Store::query`].
    pub fn query_in_log(
        &self,
        ctx: &EntryContext,
        db: &str,
        stmts: &[Statement],
    ) -> Result<Vec<StatementResult>, Error> {
        self.read(db, stmts, None, Some(ctx.step_budget))
    }

    fn read(
        &self,
        db: &str,
        stmts: &[Statement],
        deadline: Option<Instant>,
        steps: Option<u64>,
    ) -> Result<Vec<StatementResult>, Error> {
        self.handle(db)?.with_reader(|c| {
            c.begin_read(deadline, steps);
            let ran = c.run_statements(stmts, false);
            c.begin_read(None, None);
            ran.map(|r| r.results).map_err(local)
        })?
    }

    /// Whether every statement leaves `db` unchanged. A statement that does not compile
    /// here counts as a write (rqlite's rule): this replica may lag behind the leader, and
    /// the leader decides.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`].
    pub fn all_read_only(&self, db: &str, stmts: &[Statement]) -> Result<bool, Error> {
        self.handle(db)?.with_reader(|c| {
            stmts
                .iter()
                .all(|s| c.is_read_only(&s.sql).unwrap_or(false))
        })
    }

    /// The applied index recorded in `db`.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`], [`Error::Sqlite`].
    pub fn applied_index(&self, db: &str) -> Result<u64, Error> {
        let h = self.handle(db)?;
        let w = lock(&h.writer);
        w.applied_index()
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
        h.with_reader(|c| c.internal(|c| c.execute("VACUUM INTO ?1", [dest.to_string_lossy()])))??;
        Ok(())
    }

    /// A SQL text dump of `db` (`/db/backup?fmt=sql`): schema and `INSERT` statements
    /// inside one transaction, as the `sqlite3` shell's `.dump` writes them.
    ///
    /// # Errors
    /// [`Error::NoSuchDatabase`], [`Error::Sqlite`].
    pub fn dump_sql(&self, db: &str) -> Result<String, Error> {
        self.handle(db)?.with_reader(|c| c.internal(dump))?
    }

    /// Reads a metadata value saved with [`Store::set_meta`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        use rusqlite::OptionalExtension;
        Ok(lock(&self.current)
            .meta
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Saves metadata values durably (`synchronous=FULL`), all in one transaction.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn set_meta(&self, pairs: &[(&str, &[u8])]) -> Result<(), Error> {
        crash_point("sm.applied.before");
        write_meta(&mut lock(&self.current).meta, pairs)?;
        crash_point("sm.applied.after");
        Ok(())
    }

    /// Writes a snapshot of every database to `dest` ([`Store::pin_snapshot`], then
    /// [`PinnedSnapshot::write`]).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Sqlite`].
    pub fn write_snapshot(&self, dest: &Path) -> Result<(), Error> {
        self.pin_snapshot()?.write(dest)
    }

    /// Pins a consistent view of every database as it is now, to be copied later
    /// ([`PinnedSnapshot::write`]) while writes go on: each database gets its own read-only
    /// connection with an open read transaction, which in WAL mode keeps seeing the
    /// database as of this call whatever is committed afterwards (SQLite, "Write-Ahead
    /// Logging", §2.2 "Concurrency"). Taking it costs milliseconds whatever the size of
    /// the data: the copying happens in `write`.
    ///
    /// The view is also made durable: every database's WAL is fsynced, so that once the
    /// caller records the entries applied so far as applied, they survive a crash.
    /// (Commits run with `synchronous=NORMAL`, which leaves the WAL unsynced. Pages a
    /// checkpoint copied into the main file stay in the WAL until a complete checkpoint,
    /// after which SQLite fsyncs the main file, and only then may the WAL restart; so a
    /// synced WAL means every commit so far is on disk, and the main file, which may hold
    /// many MB a checkpoint just copied, need not be synced here.)
    ///
    /// Call it while no entry is being applied (the state machine's own task), so that the
    /// view is that of one applied index.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Sqlite`].
    pub fn pin_snapshot(&self) -> Result<PinnedSnapshot, Error> {
        let handles: Vec<(String, Arc<DbHandle>)> = self
            .dbs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, h)| (n.clone(), h.clone()))
            .collect();
        let mut views = Vec::with_capacity(handles.len());
        for (name, h) in handles {
            // The writer's lock keeps a load or a drop of this database from running while
            // its view is pinned.
            let _writer = lock(&h.writer);
            let conn = Connection::open_with_flags(
                &h.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch("BEGIN DEFERRED")?;
            // The first read opens the read transaction: the view is fixed from here on.
            let applied = database::read_applied(&conn)?;
            match File::open(format!("{}-wal", h.path.display())) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            views.push(PinnedDb {
                name,
                conn,
                applied,
            });
        }
        Ok(PinnedSnapshot { views })
    }

    /// Replaces every database with the contents of snapshot `src` (written by
    /// [`Store::write_snapshot`]) and the metadata with `meta`, atomically: the archive is
    /// unpacked into a new generation directory with its own metadata file, everything is
    /// fsynced, and one rename of `CURRENT` switches to it (crash points
    /// `snapshot.unpacked`, `snapshot.swapped`). A corrupt archive changes nothing.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a malformed archive, [`Error::Io`], [`Error::Sqlite`].
    pub fn restore_snapshot(&self, src: &Path, meta: &[(&str, &[u8])]) -> Result<(), Error> {
        let old_dir = lock(&self.current).dir.clone();
        let next = next_generation(&self.root, &old_dir);
        let staging = self.root.join(&next);
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(staging.join("db"))?;
        if let Err(e) = unpack(src, &staging.join("db")) {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        {
            let mut m = open_meta(&staging)?;
            write_meta(&mut m, meta)?;
            m.pragma_update(None, "journal_mode", "DELETE")?;
        }
        sync_dir(&staging.join("db"))?;
        sync_dir(&staging)?;
        sync_dir(&self.root)?;
        crash_point("snapshot.unpacked");

        let mut map = self.dbs.write().unwrap_or_else(|e| e.into_inner());
        let tmp = self.root.join(format!("{CURRENT_FILE}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(next.as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.root.join(CURRENT_FILE))?;
        sync_dir(&self.root)?;
        crash_point("snapshot.swapped");

        map.clear();
        {
            let mut cur = lock(&self.current);
            cur.meta = open_meta(&staging)?;
            cur.dir = staging.clone();
        }
        drop(map);
        self.load_handles()?;
        remove_stale_generations(&self.root, &staging)?;
        Ok(())
    }
}

/// Closes every connection of a handle just removed from the store's map, once nothing
/// else holds it: a query or the checkpointer may, for a moment. Waits up to 5 s, then
/// gives the handle back (the caller puts it back and fails locally, to be retried).
///
/// Needed before the file is replaced or removed: the writer's connection, closed last,
/// checkpoints and deletes the WAL and shm files *by name*, which would then be the new
/// file's (SQLite's `sqlite3WalClose`).
fn close_handle(h: Arc<DbHandle>) -> Result<(), Arc<DbHandle>> {
    let mut h = h;
    for _ in 0..5000 {
        match Arc::try_unwrap(h) {
            Ok(only) => {
                drop(only);
                return Ok(());
            }
            Err(shared) => {
                h = shared;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
    Err(h)
}

/// WAL size above which the checkpointer copies it into the database file, in bytes (about
/// SQLite's own default of 1,000 pages of 4 KiB).
const CHECKPOINT_WAL_BYTES: u64 = 4 * 1024 * 1024;

/// How often the checkpointer looks at the WALs.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The checkpointer thread: every [`CHECKPOINT_EVERY`], each database whose WAL is over
/// [`CHECKPOINT_WAL_BYTES`] is checkpointed ([`DbHandle::checkpoint_passive`]). Ends when the
/// store is dropped. A failed checkpoint is logged and tried again next round: the WAL
/// only grows meanwhile.
fn checkpointer(dbs: &std::sync::Weak<RwLock<BTreeMap<String, Arc<DbHandle>>>>) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(map) = dbs.upgrade() else {
            return;
        };
        let names: Vec<String> = map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        // One handle at a time, looked up afresh and let go at once: a load or a drop
        // waits for the last holder of a handle (`close_handle`).
        for name in names {
            let Some(h) = map
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned()
            else {
                continue;
            };
            let wal = fs::metadata(format!("{}-wal", h.path.display())).map_or(0, |m| m.len());
            if wal > CHECKPOINT_WAL_BYTES {
                if let Err(e) = h.checkpoint_passive() {
                    tracing::warn!(db = %h.path.display(), error = %e, "checkpoint failed; will retry");
                }
            }
        }
    }
}

/// One database's pinned view: a read-only connection inside a read transaction.
struct PinnedDb {
    name: String,
    conn: Connection,
    /// The applied index the view holds.
    applied: u64,
}

/// A consistent view of every database, taken by [`Store::pin_snapshot`], that
/// [`PinnedSnapshot::write`] copies into a snapshot archive. Holding it keeps each
/// database's WAL from restarting (it grows while the copy runs); dropping it releases the
/// views.
pub struct PinnedSnapshot {
    views: Vec<PinnedDb>,
}

impl PinnedSnapshot {
    /// The databases in the view with the applied index each holds, sorted by name.
    pub fn applied(&self) -> Vec<(String, u64)> {
        self.views
            .iter()
            .map(|v| (v.name.clone(), v.applied))
            .collect()
    }

    /// Writes the view to `dest` as a snapshot archive (magic, then per database: name
    /// length u32 BE, name, size u64 BE, the file's bytes) and fsyncs it. Each database is
    /// copied page by page with SQLite's online backup API from its pinned read
    /// transaction, so writers are not blocked however long the copy takes. Meant for a
    /// blocking thread; it takes no lock of the store.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Sqlite`]; `dest` may then be left partly written.
    pub fn write(self, dest: &Path) -> Result<(), Error> {
        let mut out = File::create(dest)?;
        out.write_all(SNAPSHOT_MAGIC)?;
        for view in &self.views {
            let copy = PathBuf::from(format!("{}.{}.tmp", dest.display(), view.name));
            let result = copy_view(view, &copy, &mut out);
            let _ = fs::remove_file(&copy);
            result?;
        }
        out.sync_all()?;
        Ok(())
    }
}

/// Bytes a [`SyncingWriter`] writes between two `fdatasync`s.
const SYNC_EVERY_BYTES: u64 = 8 * 1024 * 1024;

/// A file writer that fsyncs (`fdatasync`) every [`SYNC_EVERY_BYTES`]: a snapshot archive
/// of hundreds of MB then never has more than a few MB waiting for the disk, so the final
/// fsync, and the Raft log's and SQLite's own fsyncs meanwhile (which on ext4 wait for
/// the journal, and so for whatever else is being flushed), stay short.
struct SyncingWriter {
    file: File,
    unsynced: u64,
}

impl SyncingWriter {
    fn new(file: File) -> Self {
        SyncingWriter { file, unsynced: 0 }
    }
}

impl Write for SyncingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY_BYTES {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Pages a snapshot copies per backup step (4 MiB of 4 KiB pages).
const BACKUP_STEP_PAGES: i32 = 1024;

/// Copies one pinned database into a file at `copy` (the backup API needs a database as
/// its destination), then appends that file to the archive `out`.
///
/// The backup runs in steps of [`BACKUP_STEP_PAGES`], each followed by a pause as long as
/// the step took (at most 5 ms): a copy of hundreds of MB then takes at most half of a
/// core, and the writes it runs beside keep the rest. Every step reads inside the pinned
/// read transaction, which the backup leaves open (it opens and closes one itself only
/// when the source has none: SQLite's `backup.c`), so all steps copy the one pinned view
/// whatever the writer commits meanwhile (tested by
/// `a_snapshot_copied_in_steps_is_of_the_pinned_view`).
fn copy_view(view: &PinnedDb, copy: &Path, out: &mut File) -> Result<(), Error> {
    use rusqlite::backup::StepResult;
    let _ = fs::remove_file(copy);
    {
        let mut dst = Connection::open(copy)?;
        // A scratch file: it is fsynced as part of the archive, never used as a database.
        dst.pragma_update(None, "journal_mode", "OFF")?;
        dst.pragma_update(None, "synchronous", "OFF")?;
        let backup = rusqlite::backup::Backup::new(&view.conn, &mut dst)?;
        let mut busy = 0u32;
        loop {
            let started = Instant::now();
            match backup.step(BACKUP_STEP_PAGES)? {
                StepResult::Done => break,
                StepResult::More => {
                    std::thread::sleep(started.elapsed().min(std::time::Duration::from_millis(5)));
                }
                // The scratch file is ours alone and the source is read inside a read
                // transaction: neither should be busy. A few retries, then give up.
                other if busy < 100 => {
                    busy += 1;
                    tracing::debug!(db = %view.name, step = ?other, "snapshot copy step busy; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => {
                    return Err(Error::Io(std::io::Error::other(format!(
                        "snapshot copy of {} did not finish: {other:?}",
                        view.name
                    ))))
                }
            }
        }
    }
    let len = fs::metadata(copy)?.len();
    let name = view.name.as_bytes();
    let mut head = Vec::with_capacity(12 + name.len());
    head.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_be_bytes());
    head.extend_from_slice(name);
    head.extend_from_slice(&len.to_be_bytes());
    out.write_all(&head)?;
    // File to file in pieces: the kernel copies (copy_file_range), and each piece is
    // fdatasynced, so that no more than a few MB wait for the disk at once (see
    // `SyncingWriter`).
    let mut src = File::open(copy)?;
    let mut copied = 0u64;
    loop {
        let n = std::io::copy(&mut (&mut src).take(SYNC_EVERY_BYTES), out)?;
        if n == 0 {
            break;
        }
        copied += n;
        out.sync_data()?;
    }
    if copied != len {
        return Err(Error::Io(std::io::Error::other(format!(
            "snapshot copy of {} changed size while being archived",
            view.name
        ))));
    }
    Ok(())
}

/// After SQLite itself ended the entry's transaction (an `OR ROLLBACK` conflict, a
/// `RAISE(ROLLBACK)`, an interrupted write: the same on every replica), the entry still
/// counts as applied, with nothing of it kept: a new transaction records the index, and
/// the results say so.
fn restart_rolled_back(
    w: &Db,
    index: u64,
    mut all: Vec<Vec<StatementResult>>,
) -> Result<Vec<Vec<StatementResult>>, Error> {
    w.exec("BEGIN IMMEDIATE")?;
    w.set_applied_index(index)?;
    let last = all.len().saturating_sub(1);
    for (b, batch) in all.iter_mut().enumerate() {
        let n = batch.len();
        for (i, r) in batch.iter_mut().enumerate() {
            let culprit = b == last && i + 1 == n;
            if !culprit {
                *r = StatementResult::error(
                    ErrorCode::SqlError,
                    "rolled back: a later statement of this request ended its transaction",
                );
            }
        }
    }
    Ok(all)
}

/// The name of the generation after `current` (`gen-1` after the store's own directory).
fn next_generation(root: &Path, current: &Path) -> String {
    let n = if current == root {
        0
    } else {
        current
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(GENERATION_PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    format!("{GENERATION_PREFIX}{}", n + 1)
}

/// Removes generations other than `keep` (an install interrupted before its switch, or
/// the one it replaced), and the store directory's own files once a generation replaced
/// them.
fn remove_stale_generations(root: &Path, keep: &Path) -> Result<(), Error> {
    for entry in fs::read_dir(root)? {
        let path = entry?.path();
        let is_gen = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(GENERATION_PREFIX));
        if is_gen && path != keep {
            fs::remove_dir_all(&path)?;
        }
    }
    if keep != root {
        let _ = fs::remove_dir_all(root.join("db"));
        for f in ["state.sqlite", "state.sqlite-wal", "state.sqlite-shm"] {
            let _ = fs::remove_file(root.join(f));
        }
    }
    Ok(())
}

fn finish<T>(w: &Db, r: Result<T, Error>) -> Result<T, Error> {
    match r {
        Ok(v) => {
            crash_point("sm.commit.before");
            if let Err(e) = crate::crash::fault("sm.commit") {
                let _ = w.exec("ROLLBACK");
                return Err(e.into());
            }
            match w.exec("COMMIT") {
                Ok(()) => {
                    crash_point("sm.commit.after");
                    Ok(v)
                }
                Err(e) => {
                    let _ = w.exec("ROLLBACK");
                    Err(e)
                }
            }
        }
        Err(e) => {
            let _ = w.exec("ROLLBACK");
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
    let mut r = BufReader::with_capacity(COPY_BUFFER_BYTES, File::open(src)?);
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
        let mut out = BufWriter::with_capacity(
            COPY_BUFFER_BYTES,
            SyncingWriter::new(File::create(dir.join(format!("{name}.sqlite")))?),
        );
        let copied = std::io::copy(&mut (&mut r).take(size), &mut out)?;
        let out = out.into_inner().map_err(|e| e.into_error())?.file;
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

    /// The first value of the first row `sql` returns on `db`.
    fn first_value(s: &Store, db: &str, sql: &str) -> crate::Value {
        let r = s.query(db, &stmts(&[sql]), None).expect("query");
        let Outcome::Rows(rows) = &r[0].outcome else {
            panic!("rows: {r:?}")
        };
        rows.values[0][0].clone()
    }

    const CTX: EntryContext = EntryContext {
        time_ms: 0,
        seed: 0,
        step_budget: crate::DEFAULT_STEP_BUDGET,
    };

    fn stmts(sqls: &[&str]) -> Vec<Statement> {
        sqls.iter().map(|s| Statement::new(*s)).collect()
    }

    #[test]
    fn replayed_entries_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE t (a)"]),
            false,
            None,
        )
        .expect("apply");
        s.apply_execute(
            2,
            &CTX,
            "main",
            &stmts(&["INSERT INTO t VALUES (1)"]),
            false,
            None,
        )
        .expect("apply");
        let again = s
            .apply_execute(
                2,
                &CTX,
                "main",
                &stmts(&["INSERT INTO t VALUES (1)"]),
                false,
                None,
            )
            .expect("replay");
        assert!(again.is_empty());
        assert_eq!(
            first_value(&s, "main", "SELECT count(*) FROM t"),
            crate::Value::Integer(1)
        );
    }

    #[test]
    fn every_batch_of_a_queued_entry_is_applied_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE t (a UNIQUE)"]),
            false,
            None,
        )
        .expect("apply");
        let one = stmts(&["INSERT INTO t VALUES (1)"]);
        let bad = stmts(&["INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (1)"]);
        let three = stmts(&["INSERT INTO t VALUES (3)"]);
        let batches: Vec<(&[Statement], bool)> = vec![(&one, false), (&bad, true), (&three, false)];
        let r = s.apply_batches(2, &CTX, "main", &batches).expect("apply");
        assert_eq!(r.len(), 3);
        assert!(s
            .apply_batches(2, &CTX, "main", &batches)
            .expect("replay")
            .is_empty());
        let r = s
            .query("main", &stmts(&["SELECT group_concat(a) FROM t"]), None)
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
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE t (a UNIQUE)"]),
            false,
            None,
        )
        .expect("apply");
        let r = s
            .apply_execute(
                2,
                &CTX,
                "main",
                &stmts(&["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"]),
                true,
                None,
            )
            .expect("apply");
        assert!(r[1].is_error());
        assert_eq!(s.applied_index("main").expect("index"), 2);
        assert_eq!(
            first_value(&s, "main", "SELECT count(*) FROM t"),
            crate::Value::Integer(0)
        );
    }

    #[test]
    fn queries_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE t (a)"]),
            false,
            None,
        )
        .expect("apply");
        let r = s
            .query("main", &stmts(&["INSERT INTO t VALUES (1)"]), None)
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
            &CTX,
            "school",
            &stmts(&["CREATE TABLE k (n)", "INSERT INTO k VALUES (7)"]),
            false,
            None,
        )
        .expect("apply");
        let snap = dir.path().join("snap.bin");
        s.write_snapshot(&snap).expect("snapshot");

        let dir2 = tempfile::tempdir().expect("tempdir");
        let s2 = Store::open(dir2.path()).expect("open");
        s2.restore_snapshot(&snap, &[("k", b"v")]).expect("restore");
        assert_eq!(s2.meta("k").expect("meta"), Some(b"v".to_vec()));
        drop(s2);
        let s2 = Store::open(dir2.path()).expect("reopen after restore");
        assert_eq!(s2.meta("k").expect("meta"), Some(b"v".to_vec()));
        assert!(dir2.path().join("gen-1").is_dir());
        assert!(
            !dir2.path().join("db").exists(),
            "the replaced files are gone"
        );
        let names: Vec<String> = s2.databases().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["main", "school"]);
        let r = s2
            .query("school", &stmts(&["SELECT n FROM k"]), None)
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
    fn a_pinned_snapshot_holds_its_view_while_writes_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE k (n)", "INSERT INTO k VALUES (1)"]),
            false,
            None,
        )
        .expect("apply");
        let pinned = s.pin_snapshot().expect("pin");
        assert_eq!(pinned.applied(), vec![("main".to_string(), 1)]);
        // Writes are not blocked by the pinned view, and it does not see them.
        for i in 2..=50u64 {
            s.apply_execute(
                i,
                &CTX,
                "main",
                &stmts(&["INSERT INTO k VALUES (2)"]),
                false,
                None,
            )
            .expect("apply while pinned");
        }
        let snap = dir.path().join("snap.bin");
        pinned.write(&snap).expect("write");
        assert_eq!(
            first_value(&s, "main", "SELECT count(*) FROM k"),
            crate::Value::Integer(50)
        );

        let dir2 = tempfile::tempdir().expect("tempdir");
        let s2 = Store::open(dir2.path()).expect("open");
        s2.restore_snapshot(&snap, &[]).expect("restore");
        assert_eq!(s2.applied_index("main").expect("index"), 1);
        assert_eq!(
            first_value(&s2, "main", "SELECT count(*) FROM k"),
            crate::Value::Integer(1)
        );
    }

    #[test]
    fn a_snapshot_copied_in_steps_is_of_the_pinned_view() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Arc::new(Store::open(dir.path()).expect("open"));
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE b (v INTEGER, data BLOB)"]),
            false,
            None,
        )
        .expect("apply");
        // 12 MB: several backup steps.
        for i in 2..=61u64 {
            s.apply_execute(
                i,
                &CTX,
                "main",
                &stmts(&["INSERT INTO b VALUES (0, randomblob(200000))"]),
                false,
                None,
            )
            .expect("apply");
        }
        let pinned = s.pin_snapshot().expect("pin");
        // Every row's pages are rewritten while the copy runs.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut index = 62u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && index < 10_000 {
                    s.apply_execute(index, &CTX, "main", &stmts(&["UPDATE b SET v = v + 1, data = randomblob(200000) WHERE rowid = 1 + abs(random()) % 60"]), false, None)
                        .expect("apply while copying");
                    index += 1;
                }
                index - 62
            })
        };
        let snap = dir.path().join("snap.bin");
        pinned.write(&snap).expect("write");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let updates = writer.join().expect("writer");
        assert!(updates > 0, "the writer ran while the copy did");

        let dir2 = tempfile::tempdir().expect("tempdir");
        let s2 = Store::open(dir2.path()).expect("open");
        s2.restore_snapshot(&snap, &[]).expect("restore");
        assert_eq!(s2.applied_index("main").expect("index"), 61);
        assert_eq!(
            first_value(&s2, "main", "SELECT count(*) FROM b"),
            crate::Value::Integer(60)
        );
        assert_eq!(
            first_value(&s2, "main", "SELECT max(v) FROM b"),
            crate::Value::Integer(0)
        );
        assert_eq!(
            first_value(&s2, "main", "PRAGMA integrity_check"),
            crate::Value::Text("ok".into())
        );
    }

    #[test]
    fn the_checkpointer_moves_the_wal_into_the_file_without_the_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE b (v)"]),
            false,
            None,
        )
        .expect("apply");
        for i in 2..=40u64 {
            s.apply_execute(
                i,
                &CTX,
                "main",
                &stmts(&["INSERT INTO b VALUES (randomblob(200000))"]),
                false,
                None,
            )
            .expect("apply");
        }
        let file = s.db_path("main");
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while fs::metadata(&file).map_or(0, |m| m.len()) < 6_000_000 {
            assert!(
                Instant::now() < deadline,
                "the WAL was not checkpointed within 20 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn load_rejects_garbage_and_keeps_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE t (a)"]),
            false,
            None,
        )
        .expect("apply");
        assert!(s
            .apply_load(2, "main", b"not a database at all, definitely not")
            .is_err());
        assert!(!s
            .query("main", &stmts(&["SELECT * FROM t"]), None)
            .expect("query")[0]
            .is_error());
        let backup = dir.path().join("b.sqlite");
        s.backup("main", &backup).expect("backup");
        s.apply_load(3, "main", &fs::read(&backup).expect("read"))
            .expect("load");
        assert_eq!(s.applied_index("main").expect("index"), 3);
    }

    #[test]
    fn a_request_id_applies_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE t (a)"]),
            false,
            None,
        )
        .expect("apply");
        let ins = stmts(&["INSERT INTO t VALUES (random())"]);
        let first = s
            .apply_execute(2, &CTX, "main", &ins, false, Some("req-1"))
            .expect("apply");
        let again = s
            .apply_execute(3, &CTX, "main", &ins, false, Some("req-1"))
            .expect("apply");
        assert_eq!(first, again, "the retry gets the first answer");
        s.apply_execute(4, &CTX, "main", &ins, false, Some("req-2"))
            .expect("apply");
        assert_eq!(
            first_value(&s, "main", "SELECT count(*) FROM t"),
            crate::Value::Integer(2)
        );
    }

    #[test]
    fn an_entry_ended_by_sqlite_is_applied_with_nothing_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.apply_execute(
            1,
            &CTX,
            "main",
            &stmts(&["CREATE TABLE t (a UNIQUE)", "INSERT INTO t VALUES (1)"]),
            false,
            None,
        )
        .expect("apply");
        let r = s
            .apply_execute(
                2,
                &CTX,
                "main",
                &stmts(&[
                    "INSERT INTO t VALUES (2)",
                    "INSERT OR ROLLBACK INTO t VALUES (1)",
                    "INSERT INTO t VALUES (3)",
                ]),
                false,
                None,
            )
            .expect("apply");
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(StatementResult::is_error), "{r:?}");
        assert_eq!(s.applied_index("main").expect("index"), 2);
        assert_eq!(
            first_value(&s, "main", "SELECT group_concat(a) FROM t"),
            crate::Value::Text("1".into())
        );
        s.apply_execute(
            3,
            &CTX,
            "main",
            &stmts(&["INSERT INTO t VALUES (4)"]),
            false,
            None,
        )
        .expect("the next entry applies");
    }

    #[test]
    fn scripts_run_in_the_sandbox_statement_by_statement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let r = s
            .apply_script(
                1,
                &CTX,
                "main",
                "CREATE TABLE t (a); INSERT INTO t VALUES (1); INSERT INTO t VALUES ('x;y');",
            )
            .expect("script");
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|x| !x.is_error()), "{r:?}");
        let outside = dir.path().join("x.db");
        let r = s
            .apply_script(
                2,
                &CTX,
                "main",
                &format!(
                    "INSERT INTO t VALUES (2); ATTACH '{}' AS e; CREATE TABLE e.t (a);",
                    outside.display()
                ),
            )
            .expect("script");
        assert_eq!(r.len(), 2, "stops at the refused statement");
        assert_eq!(r[1].err().map(|e| e.code), Some(ErrorCode::NotAuthorized));
        assert!(!outside.exists());
        let r = s
            .query("main", &stmts(&["SELECT count(*) FROM t"]), None)
            .expect("query");
        let Outcome::Rows(rows) = &r[0].outcome else {
            panic!("rows")
        };
        assert_eq!(
            rows.values[0][0],
            crate::Value::Integer(2),
            "the failed script changed nothing"
        );
    }

    #[test]
    fn a_dumps_transaction_and_foreign_keys_wrappers_are_left_out_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        // What `sqlite3 .dump` and `/db/backup?fmt=sql` write.
        let dump = "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n\
            CREATE TABLE t (a);\nINSERT INTO t VALUES(1);\nINSERT INTO t VALUES('x;y');\n\
            COMMIT;\n";
        let r = s.apply_script(1, &CTX, "main", dump).expect("script");
        assert_eq!(r.len(), 3, "the wrappers give no results: {r:?}");
        assert!(r.iter().all(|x| !x.is_error()), "{r:?}");
        let count = |s: &Store| {
            let r = s
                .query("main", &stmts(&["SELECT count(*) FROM t"]), None)
                .expect("query");
            let Outcome::Rows(rows) = &r[0].outcome else {
                panic!("rows")
            };
            rows.values[0][0].clone()
        };
        assert_eq!(count(&s), crate::Value::Integer(2));
        // Foreign keys stay on: the pragma was not run.
        let r = s
            .query("main", &stmts(&["PRAGMA foreign_keys"]), None)
            .expect("query");
        let Outcome::Rows(rows) = &r[0].outcome else {
            panic!("rows")
        };
        assert_eq!(rows.values[0][0], crate::Value::Integer(1), "{rows:?}");
        // Other transaction control is still refused, and in a write it all is.
        for (i, bad) in [
            "ROLLBACK;",
            "SAVEPOINT a;",
            "END; PRAGMA journal_mode=DELETE;",
        ]
        .iter()
        .enumerate()
        {
            let r = s
                .apply_script(
                    2 + i as u64,
                    &CTX,
                    "main",
                    &format!("INSERT INTO t VALUES (9); {bad}"),
                )
                .expect("script");
            assert!(r.iter().any(StatementResult::is_error), "{bad}: {r:?}");
        }
        let r = s
            .apply_execute(9, &CTX, "main", &stmts(&["BEGIN"]), false, None)
            .expect("execute");
        assert_eq!(r[0].err().map(|e| e.code), Some(ErrorCode::NotAuthorized));
        assert_eq!(
            count(&s),
            crate::Value::Integer(2),
            "the refused scripts changed nothing"
        );
    }
}
