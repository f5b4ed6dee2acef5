//! The Raft logs on disk, in one redb file shared by every Raft group of a node.
//!
//! # Correctness
//! openraft's `RaftLogStorage` contract: entries are readable as soon as `append` returns,
//! and durable when its callback fires; all writes are applied in the order they are
//! issued; logs have no holes. We meet it like this:
//!
//! - `append` writes the entries in a redb transaction committed with
//!   `Durability::None`: visible to every reader at once, not yet fsynced;
//! - it then hands the callback to the file's one flusher thread, which waits for whatever
//!   callbacks have queued up, from every group of the file, commits one
//!   `Durability::Immediate` transaction (which makes every earlier non-durable commit in
//!   the file durable too, whichever tables it wrote: redb's documented rule) and fires
//!   them all. Many appends of many groups, one fsync: group commit across groups;
//! - votes are committed with `Durability::Immediate` directly (rare, and a vote must be
//!   on disk before the node answers a vote request: Raft §5.2, Figure 2 "persistent state");
//! - every entry is stored as one format-version byte ([`LOG_FORMAT_VERSION`]) followed by
//!   its postcard encoding (whose command carries its own version, see `command.rs`). A
//!   record of another version, or one that does not decode exactly (truncated, trailing
//!   bytes), is refused with an error naming the index and the version: openraft then
//!   stops this node's Raft (a storage error is fatal), so nothing at or after it is
//!   applied, and nothing is misread.
//!
//! Crash points (`cairn_sql::crash`, test builds only) sit around each durable write:
//! `log.append.*`, `log.flush.*`, `vote.save.*`, `log.truncate.*`, `log.purge.*`.
//!
//! # Groups
//! A [`LogFile`] is one redb file and its flusher; [`LogFile::group`] gives the
//! [`LogStore`] of one group, whose entries live in table `logs_g{group}` and whose vote,
//! committed log id, purge mark and flush sequence live in `meta_g{group}` (names fixed:
//! existing data directories hold group 0 under them). A group is open at most once per
//! file at a time, so two openraft instances never share one log; it can be opened again
//! once every clone of its store is dropped. Each group keeps its own pending committed log
//! id, and the flusher writes every open group's into that group's meta table in its
//! durable commit.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_sql::crash::crash_point;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::OptionalSend;
use redb::{Database, Durability, ReadableTable, TableDefinition, TableHandle};

use crate::TypeConfig;

type C = TypeConfig;

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
const KEY_FLUSH: &str = "flush_seq";

const LOGS_PREFIX: &str = "logs_g";
const META_PREFIX: &str = "meta_g";

type LogsTable<'a> = TableDefinition<'a, u64, &'static [u8]>;
type MetaTable<'a> = TableDefinition<'a, &'static str, &'static [u8]>;

/// A group's committed log id as openraft last handed it to `save_committed`, encoded, while
/// it is not yet written: the flusher writes it in its next durable commit.
type PendingCommitted = Mutex<Option<Vec<u8>>>;

/// std Mutex, not tokio's: no lock here is held across an await. A poisoned lock only
/// means a panic elsewhere; the data it guards is a plain value, still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One redb file holding the Raft logs of any number of groups, and the one flusher thread
/// that makes all their appends durable (see the module's `# Correctness`). Cheap to clone:
/// clones share the file and the flusher.
///
/// The file stays open (redb holds an exclusive lock on it) until every clone of the
/// `LogFile`, every [`LogStore`] of every group and the flusher have let go of it; see
/// [`LogFile::closed_watch`].
#[derive(Clone)]
pub struct LogFile {
    shared: Arc<FileShared>,
}

struct FileShared {
    /// Dropped first: the flusher sees the channel close, finishes what is queued and ends.
    flush_tx: mpsc::Sender<Flush>,
    db: Arc<Database>,
    groups: Arc<Groups>,
    /// Dropped after `db` (fields drop in declaration order); see [`LogClosed`].
    open: Arc<()>,
}

/// What a file's stores share with its flusher.
struct Groups {
    /// The groups open in this process, each with its pending committed log id.
    open: Mutex<HashMap<u64, Arc<PendingCommitted>>>,
    /// Durable commits the flusher has made, for tests of group commit.
    flushes: AtomicU64,
    /// Held by a test to keep the flusher from taking its next batch, so that appends
    /// queue up behind it.
    #[cfg(test)]
    gate: Mutex<()>,
}

/// One append waiting for the flusher.
struct Flush {
    group: u64,
    callback: IOFlushed<C>,
}

fn logs_name(group: u64) -> String {
    format!("{LOGS_PREFIX}{group}")
}

fn meta_name(group: u64) -> String {
    format!("{META_PREFIX}{group}")
}

impl LogFile {
    /// Opens (creating when absent) the redb log file at `path` and starts its flusher
    /// thread (`raft-log-flush`). Groups already in the file are not opened: ask for each
    /// with [`LogFile::group`] (and find them with [`LogFile::groups`]).
    ///
    /// # Errors
    /// I/O errors from redb, among them the file being open already (in this process or
    /// another: redb locks it), and a failure to start the thread.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        let db = Arc::new(Database::create(path).map_err(io_err)?);
        let groups = Arc::new(Groups {
            open: Mutex::new(HashMap::new()),
            flushes: AtomicU64::new(0),
            #[cfg(test)]
            gate: Mutex::new(()),
        });
        let (flush_tx, flush_rx) = mpsc::channel::<Flush>();
        let open = Arc::new(());
        let (fdb, fgroups, flusher_open) = (db.clone(), groups.clone(), open.clone());
        std::thread::Builder::new()
            .name("raft-log-flush".to_string())
            .spawn(move || {
                // `flusher` drops its database handle when it returns; only then is this
                // thread's share of `open` let go.
                flusher(fdb, &fgroups, flush_rx);
                drop(flusher_open);
            })?;
        Ok(LogFile {
            shared: Arc::new(FileShared {
                flush_tx,
                db,
                groups,
                open,
            }),
        })
    }

    /// The log of group `group`, creating its two tables (`logs_g{group}`,
    /// `meta_g{group}`) when absent, with a durable commit.
    ///
    /// A group is open at most once at a time: openraft's `RaftLogStorage` assumes it is
    /// the only writer of its log, so two Raft instances must never share one. The group
    /// becomes available again once every clone of the returned store is dropped (there is
    /// no explicit close: the store closes with its last clone, as openraft drops it when
    /// its Raft shuts down). Appends of the old store still queued for the flusher are made
    /// durable and their callbacks fired as usual; a committed log id it had not yet
    /// written is dropped (openraft does not need it, see `LogStore::save_committed`).
    ///
    /// # Errors
    /// `io::ErrorKind::AlreadyExists` when the group is open in this process already; I/O
    /// errors from redb.
    pub fn group(&self, group: u64) -> io::Result<LogStore> {
        let committed = Arc::new(Mutex::new(None));
        {
            let mut open = lock(&self.shared.groups.open);
            if open.contains_key(&group) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("Raft group {group} is already open in this log file"),
                ));
            }
            open.insert(group, committed.clone());
        }
        // From here on, dropping `store` (on an error below too) gives the group back.
        let store = LogStore {
            inner: Arc::new(Inner {
                group,
                logs: logs_name(group),
                meta: meta_name(group),
                committed,
                file: self.clone(),
            }),
        };
        let tx = self.db().begin_write().map_err(io_err)?;
        tx.open_table(store.logs()).map_err(io_err)?;
        tx.open_table(store.meta()).map_err(io_err)?;
        tx.commit().map_err(io_err)?;
        Ok(store)
    }

    /// The groups that have a log in this file (a `logs_g{N}` table), open or not, in
    /// ascending order: what a restarted node finds on its disk.
    ///
    /// # Errors
    /// I/O errors from redb.
    pub fn groups(&self) -> io::Result<Vec<u64>> {
        let tx = self.db().begin_read().map_err(io_err)?;
        let mut out: Vec<u64> = tx
            .list_tables()
            .map_err(io_err)?
            .filter_map(|t| {
                let n = t.name().strip_prefix(LOGS_PREFIX)?.parse::<u64>().ok()?;
                // Only the name `logs_g{n}` itself: not `logs_g007` or `logs_g+7`.
                (logs_name(n) == t.name()).then_some(n)
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Deletes group `group`'s log and meta tables (entries, vote, committed log id, purge
    /// mark) with a durable commit, for a group this node no longer hosts. Returns whether
    /// the group had a log in the file.
    ///
    /// A later [`LogFile::group`] for the same id starts an empty log.
    ///
    /// # Errors
    /// `io::ErrorKind::ResourceBusy` while the group is open in this process; I/O errors
    /// from redb.
    pub fn drop_group(&self, group: u64) -> io::Result<bool> {
        // The write transaction first, then the check: the flusher looks at the open groups
        // only while it holds the write transaction, so no group it writes to can lose its
        // tables under it. A `group` call that gets in after the check creates the tables
        // again once this commits, which is what it would get after the drop anyway.
        let mut tx = self.db().begin_write().map_err(io_err)?;
        tx.set_durability(Durability::Immediate);
        if lock(&self.shared.groups.open).contains_key(&group) {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!("Raft group {group} is open: drop every clone of its store first"),
            ));
        }
        let (logs, meta) = (logs_name(group), meta_name(group));
        let had_log = tx.delete_table(LogsTable::new(&logs)).map_err(io_err)?;
        tx.delete_table(MetaTable::new(&meta)).map_err(io_err)?;
        tx.commit().map_err(io_err)?;
        Ok(had_log)
    }

    /// A watch on this file: it reports closed once every clone of this `LogFile`, every
    /// store of every group and the flusher thread have let go of it, i.e. when the file
    /// may be opened again (redb holds an exclusive lock while open). For restarting a node
    /// in the same process.
    pub fn closed_watch(&self) -> LogClosed {
        LogClosed(Arc::downgrade(&self.shared.open))
    }

    /// Durable commits the flusher has made since the file was opened.
    #[cfg(test)]
    pub(crate) fn flushes(&self) -> u64 {
        self.shared.groups.flushes.load(Ordering::SeqCst)
    }

    fn db(&self) -> &Database {
        &self.shared.db
    }
}

/// The Raft log of one group in a [`LogFile`]: openraft's `RaftLogStorage` and
/// `RaftLogReader`. Cheap to clone: clones share the group (and the file and its flusher).
/// The group is open until the last clone is dropped (see [`LogFile::group`]).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    group: u64,
    /// The table names, `logs_g{group}` and `meta_g{group}`.
    logs: String,
    meta: String,
    /// Shared with the flusher through the file's open groups.
    committed: Arc<PendingCommitted>,
    file: LogFile,
}

impl Drop for Inner {
    fn drop(&mut self) {
        lock(&self.file.shared.groups.open).remove(&self.group);
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn encode<T: serde::Serialize>(v: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(io_err)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    serde_json::from_slice(b).map_err(io_err)
}

/// The format of a stored log entry: this byte, then the entry's postcard encoding. A
/// different first byte is a format this node does not know.
pub(crate) const LOG_FORMAT_VERSION: u8 = 1;

fn encode_entry(e: &EntryOf<C>) -> io::Result<Vec<u8>> {
    postcard::to_extend(e, vec![LOG_FORMAT_VERSION]).map_err(io_err)
}

/// Decodes the record stored at `index`, refusing (with a logged error) one of an unknown
/// format version or one that is not exactly one entry.
fn decode_entry(index: u64, b: &[u8]) -> io::Result<EntryOf<C>> {
    let refuse = |why: String| {
        tracing::error!(index, "refusing to read the log entry: {why}");
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("log entry {index}: {why}"),
        )
    };
    match b.split_first() {
        Some((&LOG_FORMAT_VERSION, rest)) => match postcard::take_from_bytes::<EntryOf<C>>(rest) {
            Ok((e, [])) if e.index() == index => Ok(e),
            Ok((e, [])) => Err(refuse(format!("the record holds entry {}", e.index()))),
            Ok((_, tail)) => Err(refuse(format!("{} bytes after the entry", tail.len()))),
            Err(e) => Err(refuse(format!(
                "cannot decode format version {LOG_FORMAT_VERSION}: {e} (truncated or corrupt, \
                 or a command of an unknown format version)"
            ))),
        },
        // Records were JSON objects before the format byte existed.
        Some((b'{', _)) => Err(refuse(format!(
            "a JSON record from a Cairn older than log format version {LOG_FORMAT_VERSION}, \
             which this node cannot read: start it on a new data directory and load the \
             databases from a backup"
        ))),
        Some((v, _)) => Err(refuse(format!(
            "format version {v}, this node reads version {LOG_FORMAT_VERSION} only"
        ))),
        None => Err(refuse("empty record".to_string())),
    }
}

impl LogStore {
    /// Opens (creating when absent) the log of group `group` in the redb file at `path`:
    /// `LogFile::open(path)?.group(group)`, for a file that holds this one group open. The
    /// file closes when the store's last clone is dropped.
    ///
    /// # Errors
    /// Those of [`LogFile::open`] and [`LogFile::group`].
    pub fn open(path: &Path, group: u64) -> io::Result<LogStore> {
        LogFile::open(path)?.group(group)
    }

    /// The group this log belongs to.
    pub fn group(&self) -> u64 {
        self.inner.group
    }

    /// The file this log is in.
    pub fn file(&self) -> &LogFile {
        &self.inner.file
    }

    /// The file's [`LogFile::closed_watch`]: closed once every group's stores (this one
    /// among them), the `LogFile` clones and the flusher have let go of the file.
    pub fn closed_watch(&self) -> LogClosed {
        self.inner.file.closed_watch()
    }

    fn db(&self) -> &Database {
        self.inner.file.db()
    }

    fn logs(&self) -> LogsTable<'_> {
        TableDefinition::new(&self.inner.logs)
    }

    fn meta(&self) -> MetaTable<'_> {
        TableDefinition::new(&self.inner.meta)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let tx = self.db().begin_read().map_err(io_err)?;
        let t = tx.open_table(self.meta()).map_err(io_err)?;
        match t.get(key).map_err(io_err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &str,
        v: &T,
        durability: Durability,
    ) -> io::Result<()> {
        let bytes = encode(v)?;
        let mut tx = self.db().begin_write().map_err(io_err)?;
        tx.set_durability(durability);
        {
            let mut t = tx.open_table(self.meta()).map_err(io_err)?;
            t.insert(key, bytes.as_slice()).map_err(io_err)?;
        }
        tx.commit().map_err(io_err)
    }
}

/// See [`LogFile::closed_watch`]. Every holder of the database (the file's shared state and
/// the flusher thread) also holds a share of one token and lets go of it only after its
/// database handle is dropped, so once no share is left the file is closed and unlocked: a
/// count of the database handles themselves would reach zero while the last one is still
/// being dropped. Stores hold the file's shared state, so they keep it open too.
#[derive(Debug, Clone)]
pub struct LogClosed(std::sync::Weak<()>);

impl LogClosed {
    /// Whether the log's file is closed.
    pub fn is_closed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// The flusher thread of a file: one durable commit for every batch of queued callbacks,
/// of whichever groups, which also records each open group's newest committed log id and,
/// for each group with an append in the batch (and still open), the flush sequence number
/// (counted from 1 each time the file is opened). Ends when every `LogFile` clone and every
/// store of the file are dropped, after the callbacks already queued.
fn flusher(db: Arc<Database>, groups: &Groups, rx: mpsc::Receiver<Flush>) {
    let mut seq: u64 = 0;
    while let Ok(first) = rx.recv() {
        #[cfg(test)]
        drop(lock(&groups.gate));
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        seq += 1;
        crash_point("log.flush.before");
        // The committed values written, to forget once they are on disk (not before: until
        // then `read_committed` reads them from memory).
        let mut written: Vec<(Arc<PendingCommitted>, Vec<u8>)> = Vec::new();
        let result = (|| -> Result<(), String> {
            let mut tx = db.begin_write().map_err(|e| e.to_string())?;
            tx.set_durability(Durability::Immediate);
            // The open groups are read while this holds the write transaction, which
            // `LogFile::drop_group` needs too: none of them loses its tables before this
            // commits, and a group closed and dropped meanwhile is not written (its table
            // is not created again).
            let open: Vec<(u64, Arc<PendingCommitted>)> = lock(&groups.open)
                .iter()
                .map(|(g, p)| (*g, p.clone()))
                .collect();
            let batched: BTreeSet<u64> = batch.iter().map(|f| f.group).collect();
            for (group, pending) in open {
                let value = lock(&pending).clone();
                let flushed = batched.contains(&group);
                if value.is_none() && !flushed {
                    continue;
                }
                let name = meta_name(group);
                let mut t = tx
                    .open_table(MetaTable::new(&name))
                    .map_err(|e| e.to_string())?;
                if flushed {
                    t.insert(KEY_FLUSH, seq.to_be_bytes().as_slice())
                        .map_err(|e| e.to_string())?;
                }
                if let Some(c) = value {
                    t.insert(KEY_COMMITTED, c.as_slice())
                        .map_err(|e| e.to_string())?;
                    written.push((pending, c));
                }
            }
            tx.commit().map_err(|e| e.to_string())
        })();
        if result.is_ok() {
            crash_point("log.flush.after");
            groups.flushes.fetch_add(1, Ordering::SeqCst);
            for (pending, c) in written {
                let mut p = lock(&pending);
                // Unless `save_committed` has put a newer one there meanwhile.
                if p.as_deref() == Some(c.as_slice()) {
                    *p = None;
                }
            }
        }
        for f in batch {
            f.callback
                .io_completed(result.clone().map_err(io::Error::other));
        }
    }
}

fn range_bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => Some(e.saturating_add(1)),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let (start, end) = range_bounds(&range);
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let tx = self.db().begin_read().map_err(io_err)?;
        let t = tx.open_table(self.logs()).map_err(io_err)?;
        let iter = match end {
            Some(e) => t.range(start..e),
            None => t.range(start..),
        }
        .map_err(io_err)?;
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(io_err)?;
            out.push(decode_entry(k.value(), v.value())?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        self.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged: Option<LogIdOf<C>> = self.get_meta(KEY_PURGED)?;
        let tx = self.db().begin_read().map_err(io_err)?;
        let t = tx.open_table(self.logs()).map_err(io_err)?;
        let last = match t.last().map_err(io_err)? {
            Some((k, v)) => Some(decode_entry(k.value(), v.value())?.log_id()),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        crash_point("vote.save.before");
        self.put_meta(KEY_VOTE, vote, Durability::Immediate)?;
        crash_point("vote.save.after");
        Ok(())
    }

    /// Keeps `committed` in memory; the file's flusher writes it into this group's meta
    /// table in its next durable commit, with the appends (of any group) that follow (no redb transaction of its own for each commit index).
    /// openraft does not need it persisted (a committed index that is lost is re-learned
    /// from the leader, and applying resumes from the state machine's own applied index);
    /// it only saves work after a restart.
    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let bytes = encode(&committed)?;
        *self
            .inner
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        let pending = self
            .inner
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match pending {
            Some(b) => Ok(decode::<Option<LogIdOf<C>>>(&b)?),
            None => Ok(self
                .get_meta::<Option<LogIdOf<C>>>(KEY_COMMITTED)?
                .flatten()),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        crash_point("log.append.before");
        let mut tx = self.db().begin_write().map_err(io_err)?;
        tx.set_durability(Durability::None);
        {
            let mut t = tx.open_table(self.logs()).map_err(io_err)?;
            for e in entries {
                let bytes = encode_entry(&e)?;
                t.insert(e.index(), bytes.as_slice()).map_err(io_err)?;
            }
        }
        tx.commit().map_err(io_err)?;
        crash_point("log.append.after");
        let flush = Flush {
            group: self.inner.group,
            callback,
        };
        self.inner
            .file
            .shared
            .flush_tx
            .send(flush)
            .map_err(|_| io_err("log flusher thread has stopped"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map(|l| l.index() + 1).unwrap_or(0);
        crash_point("log.truncate.before");
        let mut tx = self.db().begin_write().map_err(io_err)?;
        tx.set_durability(Durability::Immediate);
        {
            let mut t = tx.open_table(self.logs()).map_err(io_err)?;
            t.retain_in(from.., |_, _| false).map_err(io_err)?;
        }
        tx.commit().map_err(io_err)?;
        crash_point("log.truncate.after");
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let bytes = encode(&Some(log_id))?;
        crash_point("log.purge.before");
        let mut tx = self.db().begin_write().map_err(io_err)?;
        // Not fsynced: it rides on the flusher's next durable commit. Lost in a crash, it
        // only leaves entries the snapshot already covers (and the older purge mark with
        // them, in the same transaction), which openraft purges again.
        tx.set_durability(Durability::None);
        {
            let mut m = tx.open_table(self.meta()).map_err(io_err)?;
            m.insert(KEY_PURGED, bytes.as_slice()).map_err(io_err)?;
            let mut t = tx.open_table(self.logs()).map_err(io_err)?;
            t.retain_in(..=log_id.index(), |_, _| false)
                .map_err(io_err)?;
        }
        tx.commit().map_err(io_err)?;
        crash_point("log.purge.after");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;
    use openraft::testing::log_id;
    use openraft::type_config::TypeConfigExt;

    fn normal(index: u64) -> EntryOf<C> {
        EntryOf::<C>::new_normal(
            log_id::<C>(1, 1, index),
            Command::CreateDatabase {
                name: format!("db{index}"),
            },
        )
    }

    /// Writes `bytes` as the record of `index`, bypassing the encoder.
    fn put_raw(store: &LogStore, index: u64, bytes: &[u8]) {
        let tx = store.db().begin_write().expect("begin");
        {
            let mut t = tx.open_table(store.logs()).expect("table");
            t.insert(index, bytes).expect("insert");
        }
        tx.commit().expect("commit");
    }

    fn open() -> (tempfile::TempDir, LogStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(&dir.path().join("log.redb"), 0).expect("open");
        (dir, store)
    }

    #[test]
    fn a_record_round_trips_behind_its_format_version() {
        let e = normal(3);
        let bytes = encode_entry(&e).expect("encode");
        assert_eq!(bytes.first(), Some(&LOG_FORMAT_VERSION));
        assert_eq!(decode_entry(3, &bytes).expect("decode"), e);
    }

    #[test]
    fn a_record_that_is_not_exactly_one_entry_is_refused() {
        let bytes = encode_entry(&normal(3)).expect("encode");
        for len in 0..bytes.len() {
            assert!(
                decode_entry(3, &bytes[..len]).is_err(),
                "a record cut to {len} of {} bytes is refused",
                bytes.len()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_entry(3, &longer).is_err(), "trailing bytes");
        assert!(
            decode_entry(4, &bytes).is_err(),
            "stored under another index"
        );
    }

    #[tokio::test]
    async fn entries_of_an_unknown_format_version_are_refused_not_misread() {
        let (_dir, mut store) = open();
        let good = encode_entry(&normal(1)).expect("encode");
        put_raw(&store, 1, &good);

        // The same entry under log format version 2.
        let mut v2 = encode_entry(&normal(2)).expect("encode");
        v2[0] = 2;
        put_raw(&store, 2, &v2);
        let err = store
            .try_get_log_entries(1..3)
            .await
            .expect_err("a range holding a version-2 record is refused");
        assert!(
            err.to_string().contains("format version 2"),
            "the error names the version: {err}"
        );
        assert_eq!(
            store.try_get_log_entries(1..2).await.expect("read"),
            vec![normal(1)]
        );

        // Log format 1 holding a command of format version 2: the command's version is the
        // byte after the record's version, the entry's log id and payload tag.
        let mut cmd_v2 = encode_entry(&normal(2)).expect("encode");
        let cmd =
            postcard::to_allocvec(&Command::CreateDatabase { name: "db2".into() }).expect("encode");
        let at = cmd_v2.len() - cmd.len();
        assert_eq!(&cmd_v2[at..], cmd.as_slice(), "the command ends the record");
        cmd_v2[at] = 2;
        put_raw(&store, 2, &cmd_v2);
        assert!(store.try_get_log_entries(2..3).await.is_err());
        assert!(
            store.get_log_state().await.is_err(),
            "the last entry is refused too"
        );
    }

    /// Appends `normal(index)` to `store` and returns the receiver its callback fires.
    fn append_one(
        store: &mut LogStore,
        index: u64,
    ) -> openraft::type_config::alias::OneshotReceiverOf<C, Result<(), io::Error>> {
        let (tx, rx) = C::oneshot();
        futures::executor::block_on(store.append([normal(index)], IOFlushed::signal(tx)))
            .expect("append");
        rx
    }

    fn flush_seq(store: &LogStore) -> Option<u64> {
        let tx = store.db().begin_read().expect("begin");
        let t = tx.open_table(store.meta()).expect("table");
        let v = t.get(KEY_FLUSH).expect("get")?;
        Some(u64::from_be_bytes(v.value().try_into().expect("8 bytes")))
    }

    /// Synchronous (no await while the gate is held): appends only queue their callbacks.
    #[test]
    fn appends_of_two_groups_queued_together_take_one_durable_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.redb");
        let file = LogFile::open(&path).expect("open");
        let mut a = file.group(0).expect("group 0");
        let mut b = file.group(7).expect("group 7");
        let before = file.flushes();

        // The flusher takes the first callback and waits at the gate; the rest queue.
        let gate = lock(&file.shared.groups.gate);
        let mut waits = Vec::new();
        for i in 1..=10 {
            waits.push(append_one(&mut a, i));
            waits.push(append_one(&mut b, i));
        }
        futures::executor::block_on(b.save_committed(Some(log_id::<C>(1, 1, 10))))
            .expect("save committed");
        drop(gate);
        for w in waits {
            futures::executor::block_on(w)
                .expect("the callback fires")
                .expect("the append is durable");
        }
        assert_eq!(
            file.flushes() - before,
            1,
            "20 appends over 2 groups, one durable commit"
        );
        let seq = flush_seq(&a);
        assert!(seq.is_some(), "group 0's meta records the flush");
        assert_eq!(seq, flush_seq(&b), "both groups rode on the same flush");

        // The same commit wrote group 7's committed log id, and only group 7's.
        let closed = file.closed_watch();
        drop((a, b, file));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !closed.is_closed() {
            assert!(std::time::Instant::now() < deadline, "the file closes");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let file = LogFile::open(&path).expect("reopen");
        let mut a = file.group(0).expect("group 0");
        let mut b = file.group(7).expect("group 7");
        let read = |s: &mut LogStore| futures::executor::block_on(s.read_committed());
        assert_eq!(read(&mut b).expect("read"), Some(log_id::<C>(1, 1, 10)));
        assert_eq!(read(&mut a).expect("read"), None);
    }
}
