//! The Raft log on disk, in redb.
//!
//! # Correctness
//! openraft's `RaftLogStorage` contract: entries are readable as soon as `append` returns,
//! and durable when its callback fires; all writes are applied in the order they are
//! issued; logs have no holes. We meet it like this:
//!
//! - `append` writes the entries in a redb transaction committed with
//!   `Durability::None`: visible to every reader at once, not yet fsynced;
//! - it then hands the callback to the flusher thread, which waits for whatever callbacks
//!   have queued up, commits one `Durability::Immediate` transaction (which makes every
//!   earlier non-durable commit durable too: redb's documented rule) and fires them all.
//!   Many appends, one fsync: group commit;
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
//! One `LogStore` serves one Raft group; the table names carry the group id so that
//! several groups can share a redb file later.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use cairn_sql::crash::crash_point;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::OptionalSend;
use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::TypeConfig;

type C = TypeConfig;

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
const KEY_FLUSH: &str = "flush_seq";

/// The Raft log of one group, stored in a redb file. Cheap to clone: clones share the
/// database and the flusher thread.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    logs: TableDefinition<'static, u64, &'static [u8]>,
    meta: TableDefinition<'static, &'static str, &'static [u8]>,
    flush_tx: mpsc::Sender<IOFlushed<C>>,
    /// The newest committed log id openraft handed to `save_committed`, encoded, not yet
    /// written: the flusher writes it in its next durable commit.
    committed: Arc<Mutex<Option<Vec<u8>>>>,
    /// Dropped after `db` (fields drop in declaration order); see [`LogClosed`].
    open: Arc<()>,
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
    /// Opens (creating when absent) the log of group `group` in the redb file at `path`.
    ///
    /// # Errors
    /// I/O errors from redb.
    pub fn open(path: &Path, group: u64) -> io::Result<LogStore> {
        let db = Arc::new(Database::create(path).map_err(io_err)?);
        // Leak the two table names once per store: redb table definitions borrow `&str`
        // for their whole life, and a store lives as long as the process.
        let logs_name: &'static str = Box::leak(format!("logs_g{group}").into_boxed_str());
        let meta_name: &'static str = Box::leak(format!("meta_g{group}").into_boxed_str());
        let logs = TableDefinition::new(logs_name);
        let meta = TableDefinition::new(meta_name);
        {
            let tx = db.begin_write().map_err(io_err)?;
            tx.open_table(logs).map_err(io_err)?;
            tx.open_table(meta).map_err(io_err)?;
            tx.commit().map_err(io_err)?;
        }
        let (flush_tx, flush_rx) = mpsc::channel::<IOFlushed<C>>();
        let fdb = db.clone();
        let committed = Arc::new(Mutex::new(None));
        let fcommitted = committed.clone();
        let open = Arc::new(());
        let flusher_open = open.clone();
        std::thread::Builder::new()
            .name(format!("raft-log-flush-g{group}"))
            .spawn(move || {
                // `flusher` drops its database handle when it returns; only then is this
                // thread's share of `open` let go.
                flusher(fdb, meta, flush_rx, &fcommitted);
                drop(flusher_open);
            })?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                db,
                logs,
                meta,
                flush_tx,
                committed,
                open,
            }),
        })
    }

    /// A watch on this log's file: it reports closed once every clone of the store and
    /// the flusher thread have let go of it, i.e. when the file may be opened again (redb
    /// holds an exclusive lock while open). For restarting a node in the same process.
    pub fn closed_watch(&self) -> LogClosed {
        LogClosed(Arc::downgrade(&self.inner.open))
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let tx = self.inner.db.begin_read().map_err(io_err)?;
        let t = tx.open_table(self.inner.meta).map_err(io_err)?;
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
        let mut tx = self.inner.db.begin_write().map_err(io_err)?;
        tx.set_durability(durability);
        {
            let mut t = tx.open_table(self.inner.meta).map_err(io_err)?;
            t.insert(key, bytes.as_slice()).map_err(io_err)?;
        }
        tx.commit().map_err(io_err)
    }
}

/// See [`LogStore::closed_watch`]. Every holder of the database (each store's shared
/// state and the flusher thread) also holds a share of one token and lets go of it only
/// after its database handle is dropped, so once no share is left the file is closed and
/// unlocked: a count of the database handles themselves would reach zero while the last
/// one is still being dropped.
#[derive(Debug, Clone)]
pub struct LogClosed(std::sync::Weak<()>);

impl LogClosed {
    /// Whether the log's file is closed.
    pub fn is_closed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// The flusher thread: one durable commit for every group of queued callbacks, which also
/// records the newest committed log id. Ends when every `LogStore` clone is dropped.
fn flusher(
    db: Arc<Database>,
    meta: TableDefinition<'static, &'static str, &'static [u8]>,
    rx: mpsc::Receiver<IOFlushed<C>>,
    committed: &Mutex<Option<Vec<u8>>>,
) {
    let mut seq: u64 = 0;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        seq += 1;
        crash_point("log.flush.before");
        let result = (|| -> Result<(), String> {
            let mut tx = db.begin_write().map_err(|e| e.to_string())?;
            tx.set_durability(Durability::Immediate);
            {
                let mut t = tx.open_table(meta).map_err(|e| e.to_string())?;
                t.insert(KEY_FLUSH, seq.to_be_bytes().as_slice())
                    .map_err(|e| e.to_string())?;
                let pending = committed.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(c) = pending {
                    t.insert(KEY_COMMITTED, c.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
            tx.commit().map_err(|e| e.to_string())
        })();
        if result.is_ok() {
            crash_point("log.flush.after");
        }
        for cb in batch {
            cb.io_completed(result.clone().map_err(io::Error::other));
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
        let tx = self.inner.db.begin_read().map_err(io_err)?;
        let t = tx.open_table(self.inner.logs).map_err(io_err)?;
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
        let tx = self.inner.db.begin_read().map_err(io_err)?;
        let t = tx.open_table(self.inner.logs).map_err(io_err)?;
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

    /// Keeps `committed` in memory; the flusher writes it in its next durable commit, with
    /// the appends that follow (no redb transaction of its own for each commit index).
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
        let mut tx = self.inner.db.begin_write().map_err(io_err)?;
        tx.set_durability(Durability::None);
        {
            let mut t = tx.open_table(self.inner.logs).map_err(io_err)?;
            for e in entries {
                let bytes = encode_entry(&e)?;
                t.insert(e.index(), bytes.as_slice()).map_err(io_err)?;
            }
        }
        tx.commit().map_err(io_err)?;
        crash_point("log.append.after");
        self.inner
            .flush_tx
            .send(callback)
            .map_err(|_| io_err("log flusher thread has stopped"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map(|l| l.index() + 1).unwrap_or(0);
        crash_point("log.truncate.before");
        let mut tx = self.inner.db.begin_write().map_err(io_err)?;
        tx.set_durability(Durability::Immediate);
        {
            let mut t = tx.open_table(self.inner.logs).map_err(io_err)?;
            t.retain_in(from.., |_, _| false).map_err(io_err)?;
        }
        tx.commit().map_err(io_err)?;
        crash_point("log.truncate.after");
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let bytes = encode(&Some(log_id))?;
        crash_point("log.purge.before");
        let mut tx = self.inner.db.begin_write().map_err(io_err)?;
        // Not fsynced: it rides on the flusher's next durable commit. Lost in a crash, it
        // only leaves entries the snapshot already covers (and the older purge mark with
        // them, in the same transaction), which openraft purges again.
        tx.set_durability(Durability::None);
        {
            let mut m = tx.open_table(self.inner.meta).map_err(io_err)?;
            m.insert(KEY_PURGED, bytes.as_slice()).map_err(io_err)?;
            let mut t = tx.open_table(self.inner.logs).map_err(io_err)?;
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
        let tx = store.inner.db.begin_write().expect("begin");
        {
            let mut t = tx.open_table(store.inner.logs).expect("table");
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
}
