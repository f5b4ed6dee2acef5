//! The Raft state machine: applies committed [`Command`]s to the node's SQLite [`Store`].
//!
//! # Correctness
//! - Each database records the index of the last entry applied to it in the same SQLite
//!   transaction as the entry's changes, so re-applying an entry after a crash is a no-op
//!   (see `cairn_sql::Store`). Creating and dropping databases replays deterministically.
//! - `last_applied` and the membership are saved durably when a membership entry is
//!   applied and when a snapshot is taken or installed. After a restart openraft re-applies
//!   the log from the saved `last_applied` up to the saved commit index; the log is only
//!   purged up to a snapshot, whose index is saved, so the entries needed are always there.
//! - A snapshot is pinned on the state machine's own task (in `get_snapshot_builder`, while
//!   no entry is being applied): a read transaction on every database
//!   (`Store::pin_snapshot`), so its contents are exactly those of its `last_log_id`. The
//!   copy itself runs in openraft's snapshot task (`SnapshotBuilder::build_snapshot`, on the
//!   blocking pool) while entries go on being applied: its cost grows with the data, and
//!   writes must not wait for it.
//! - Snapshot files are recorded as current (`current.json`) under one lock, and only when
//!   newer than the current one: a slow build that finishes after a newer snapshot was
//!   installed is thrown away.
//! - SQLite work is blocking: it runs on tokio's blocking pool (`spawn_blocking`), the
//!   entries that are ready together in one task, each in its own SQLite transaction, in
//!   log order, awaited before the next ones are taken, so the order of applying is the
//!   log's and the runtime may be single- or multi-threaded. (No `block_in_place`, which
//!   needs a multi-threaded runtime.)

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_sql::Store;
use futures::{FutureExt, Stream, TryStreamExt};
use openraft::storage::{ApplyResponder, EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError, Response};
use crate::TypeConfig;

type C = TypeConfig;

/// One queued request's statements and its `transaction` flag.
type Batch<'a> = (&'a [cairn_sql::Statement], bool);

const KEY_APPLIED: &str = "raft_last_applied";

/// Most normal entries applied in one trip to the blocking pool.
const APPLY_BATCH: usize = 256;

/// How long an entry is retried after local failures before the state machine stops.
const LOCAL_RETRY_LIMIT: Duration = Duration::from_secs(600);
const KEY_MEMBERSHIP: &str = "raft_membership";
const CURRENT_SNAPSHOT: &str = "current.json";

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The snapshot that [`RaftStateMachine::get_current_snapshot`] serves: its metadata and the
/// archive file written by `Store::write_snapshot`.
#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    meta: SnapshotMetaOf<C>,
    file: String,
}

/// What the state machine reports about snapshots, to [`StateMachine::with_observer`]'s
/// callback (the node turns these into metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotEvent {
    /// This node built a snapshot; how long writing its archive took.
    Built(std::time::Duration),
    /// This node installed a snapshot received from the leader.
    Installed,
}

/// A callback told of every [`SnapshotEvent`]; it must not block.
pub type SnapshotObserver = Arc<dyn Fn(SnapshotEvent) + Send + Sync>;

/// Applies the log to the node's databases. Queries do not go through here: the node reads
/// the shared [`Store`] directly.
pub struct StateMachine {
    store: Arc<Store>,
    observer: Option<SnapshotObserver>,
    snapshot_dir: PathBuf,
    /// Held while `current.json` is read and replaced (builds finish on other tasks).
    current_lock: Arc<std::sync::Mutex<()>>,
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
}

impl StateMachine {
    /// Opens the state machine over `store`, keeping snapshots in `snapshot_dir`.
    ///
    /// # Errors
    /// I/O errors, or saved metadata that cannot be decoded.
    pub fn open(store: Arc<Store>, snapshot_dir: &Path) -> io::Result<StateMachine> {
        std::fs::create_dir_all(snapshot_dir)?;
        // Leftovers of a build or a receive that a crash interrupted.
        for entry in std::fs::read_dir(snapshot_dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".building")
                || name.ends_with(".snap.tmp")
                || name.contains(".snap.building.")
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        let last_applied = match store.meta(KEY_APPLIED).map_err(io_err)? {
            Some(b) => serde_json::from_slice(&b).map_err(io_err)?,
            None => None,
        };
        let membership = match store.meta(KEY_MEMBERSHIP).map_err(io_err)? {
            Some(b) => serde_json::from_slice(&b).map_err(io_err)?,
            None => StoredMembership::default(),
        };
        Ok(StateMachine {
            store,
            observer: None,
            snapshot_dir: snapshot_dir.to_path_buf(),
            current_lock: Arc::new(std::sync::Mutex::new(())),
            last_applied,
            membership,
        })
    }

    /// Tells `observer` of every snapshot built or installed from now on.
    #[must_use]
    pub fn with_observer(mut self, observer: SnapshotObserver) -> StateMachine {
        self.observer = Some(observer);
        self
    }

    /// The encoded `last_applied` and membership, as [`save_state`] stores them.
    fn state(&self) -> io::Result<State> {
        Ok(State {
            applied: serde_json::to_vec(&self.last_applied).map_err(io_err)?,
            membership: serde_json::to_vec(&self.membership).map_err(io_err)?,
        })
    }

    fn meta(&self) -> SnapshotMetaOf<C> {
        SnapshotMetaOf::<C> {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
        }
    }

    /// Applies normal entries in log order on one blocking task, then answers each (none:
    /// nothing to do).
    async fn apply_normal(
        &mut self,
        batch: Vec<(LogIdOf<C>, Command, Option<ApplyResponder<C>>)>,
    ) -> io::Result<()> {
        let Some(last) = batch.last().map(|(id, _, _)| *id) else {
            return Ok(());
        };
        let store = self.store.clone();
        let answered = blocking(move || {
            let mut out = Vec::with_capacity(batch.len());
            for (id, cmd, responder) in batch {
                let response = apply_until_done(&store, id.index, &cmd, responder.is_some())?;
                out.push((response, responder));
            }
            Ok(out)
        })
        .await?;
        self.last_applied = Some(last);
        for (response, responder) in answered {
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    fn snapshot_file_name(meta: &SnapshotMetaOf<C>) -> String {
        match &meta.last_log_id {
            Some(l) => format!("snapshot-{}-{}.snap", l.leader_id.term, l.index),
            None => "snapshot-0-0.snap".to_string(),
        }
    }
}

/// Applies one command. `Ok` is the command's outcome, the same on every replica
/// (a failed statement or a missing database included); `Err` is a failure of this
/// replica (I/O, a lock) after which nothing of the entry was kept.
fn apply_command(
    s: &Store,
    index: u64,
    cmd: &Command,
    proposer: bool,
) -> Result<Response, cairn_sql::Error> {
    let outcome: Result<Vec<cairn_sql::StatementResult>, cairn_sql::Error> = match cmd {
        Command::Execute {
            db,
            stmts,
            transaction,
            ctx,
            request_id,
        } => s.apply_execute(index, ctx, db, stmts, *transaction, request_id.as_deref()),
        Command::Queued { batches, ctx } => {
            // Group by database (each file is independent), keeping each database's
            // batches in their queued order; the entry's index is recorded once per file.
            let mut by_db: Vec<(&str, Vec<Batch<'_>>)> = Vec::new();
            for (db, stmts, transaction) in batches {
                match by_db.iter_mut().find(|(d, _)| d == db) {
                    Some((_, list)) => list.push((stmts, *transaction)),
                    None => by_db.push((db, vec![(stmts, *transaction)])),
                }
            }
            let mut all = Vec::new();
            for (db, list) in by_db {
                match s.apply_batches(index, ctx, db, &list) {
                    Ok(r) => all.extend(r.into_iter().flatten()),
                    Err(e) if e.is_local() => return Err(e),
                    Err(e) => all.push(cairn_sql::StatementResult::error(
                        cairn_sql::ErrorCode::SqlError,
                        e.to_string(),
                    )),
                }
            }
            Ok(all)
        }
        Command::Script { db, sql, ctx } => s.apply_script(index, ctx, db, sql),
        Command::Load { db, bytes } => s.apply_load(index, db, bytes).map(|_| Vec::new()),
        // Only the leader that proposed a read has a client to answer; a read changes
        // nothing, so the others skip it.
        Command::Query { db, stmts, ctx } if proposer => {
            return Ok(match s.query_in_log(ctx, db, stmts) {
                Ok(results) => Response {
                    results,
                    error: None,
                },
                Err(e) => Response {
                    results: Vec::new(),
                    error: Some(CommandError::from(e)),
                },
            })
        }
        Command::Query { .. } => Ok(Vec::new()),
        Command::CreateDatabase { name } => s.create_database(index, name).map(|_| Vec::new()),
        Command::DropDatabase { name } => s.drop_database(name).map(|_| Vec::new()),
    };
    match outcome {
        Ok(results) => Ok(Response {
            results,
            error: None,
        }),
        Err(e) if e.is_local() => Err(e),
        Err(e) => Ok(Response {
            results: Vec::new(),
            error: Some(CommandError::from(e)),
        }),
    }
}

/// Applies `cmd`, retrying while this replica fails locally (fail-stop: an entry is
/// never answered with, or skipped for, a failure of this node's own). Gives up, and
/// stops the state machine, after [`LOCAL_RETRY_LIMIT`].
fn apply_until_done(
    store: &Store,
    index: u64,
    cmd: &Command,
    proposer: bool,
) -> io::Result<Response> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(10);
    for attempt in 1u32.. {
        match apply_command(store, index, cmd, proposer) {
            Ok(r) => {
                if attempt > 1 {
                    tracing::info!(index, attempt, "entry applied after local failures");
                }
                return Ok(r);
            }
            Err(e) if started.elapsed() >= LOCAL_RETRY_LIMIT => {
                tracing::error!(index, error = %e, "applying the entry keeps failing; stopping");
                return Err(io_err(e));
            }
            Err(e) => {
                tracing::warn!(index, attempt, error = %e, "applying the entry failed on this node; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    Err(io::Error::other("retry loop ended"))
}

/// The current snapshot's record in the snapshot directory `dir`, if any.
fn current_snapshot_record(dir: &Path) -> io::Result<Option<SnapshotRecord>> {
    match std::fs::read(dir.join(CURRENT_SNAPSHOT)) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(io_err)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The current snapshot's record and its file, opened; the caller holds `current_lock`, so
/// the file cannot be replaced between the two.
fn open_current_snapshot(dir: &Path) -> io::Result<Option<(SnapshotRecord, std::fs::File)>> {
    match current_snapshot_record(dir)? {
        Some(rec) => {
            let f = std::fs::File::open(dir.join(&rec.file))?;
            Ok(Some((rec, f)))
        }
        None => Ok(None),
    }
}

/// Records `file` (inside the snapshot directory `dir`) as the current snapshot and deletes
/// older snapshot files; the caller holds the state machine's `current_lock`.
fn set_current_snapshot(dir: &Path, meta: &SnapshotMetaOf<C>, file: &str) -> io::Result<()> {
    let rec = SnapshotRecord {
        meta: meta.clone(),
        file: file.to_string(),
    };
    let tmp = dir.join("current.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&rec).map_err(io_err)?)?;
    std::fs::rename(&tmp, dir.join(CURRENT_SNAPSHOT))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".snap") && name != file {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Gives the open file `file` a second name, `to` (a hard link), when the OS can say where
/// it is (Linux: `/proc/self/fd`) and `to` is on the same file system; the link is checked
/// to be the very same file (device and inode). Any failure leaves `to` absent, and the
/// caller copies instead.
fn link_open_file(file: &tokio::fs::File, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let from = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let open = std::fs::metadata(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        std::fs::hard_link(&from, to)?;
        let linked = std::fs::metadata(to)?;
        if linked.dev() != open.dev() || linked.ino() != open.ino() {
            let _ = std::fs::remove_file(to);
            return Err(io::Error::other("the linked name is another file"));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, to);
        Err(io::Error::other("linking an open file needs Linux"))
    }
}

/// The state machine's saved state, encoded: `last_applied` and the membership.
struct State {
    applied: Vec<u8>,
    membership: Vec<u8>,
}

/// Saves `state` durably in the store's `state.sqlite`.
fn save_state(store: &Store, state: &State) -> io::Result<()> {
    store
        .set_meta(&[
            (KEY_APPLIED, &state.applied),
            (KEY_MEMBERSHIP, &state.membership),
        ])
        .map_err(io_err)
}

/// Runs blocking SQLite or file work on tokio's blocking pool and waits for it.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io_err(format!("the state machine's blocking task failed: {e}")))?
}

/// Copies a snapshot pinned on the state machine's task into a file, in openraft's snapshot
/// task, while entries go on being applied.
pub struct SnapshotBuilder {
    /// In a mutex only because openraft wants the builder `Sync`; taken once.
    pinned: std::sync::Mutex<Option<cairn_sql::PinnedSnapshot>>,
    meta: SnapshotMetaOf<C>,
    dir: PathBuf,
    current_lock: Arc<std::sync::Mutex<()>>,
    /// Why pinning failed, reported by `build_snapshot`.
    error: Option<String>,
    observer: Option<SnapshotObserver>,
}

impl RaftSnapshotBuilder<C> for SnapshotBuilder {
    type SnapshotData = tokio::fs::File;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, tokio::fs::File>, io::Error> {
        let pinned = self
            .pinned
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(pinned) = pinned else {
            return Err(io::Error::other(
                self.error
                    .take()
                    .unwrap_or_else(|| "snapshot already built".to_string()),
            ));
        };
        let started = Instant::now();
        let name = StateMachine::snapshot_file_name(&self.meta);
        let (dir, meta, lock) = (
            self.dir.clone(),
            self.meta.clone(),
            self.current_lock.clone(),
        );
        let file = name;
        let current = blocking(move || {
            // Written under a name openraft and `set_current_snapshot` never look at, then
            // renamed: a file named `.snap` is always whole.
            let building = dir.join(format!("{file}.building"));
            if let Err(e) = pinned.write(&building) {
                let _ = std::fs::remove_file(&building);
                return Err(io_err(e));
            }
            // Named, recorded and opened under the lock: no install or other build can
            // delete the file in between.
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let newer = match current_snapshot_record(&dir)? {
                Some(rec) => rec.meta.last_log_id < meta.last_log_id,
                None => true,
            };
            if !newer {
                let _ = std::fs::remove_file(&building);
                return open_current_snapshot(&dir).map(|c| c.map(|(rec, f)| (rec, f, false)));
            }
            std::fs::rename(&building, dir.join(&file))?;
            set_current_snapshot(&dir, &meta, &file)?;
            let f = std::fs::File::open(dir.join(&file))?;
            Ok(Some((SnapshotRecord { meta, file }, f, true)))
        })
        .await
        .inspect_err(|e| tracing::error!(error = %e, "building snapshot failed"))?;
        let Some((rec, file, ours)) = current else {
            return Err(io::Error::other("no current snapshot after building one"));
        };
        if ours {
            let took = started.elapsed();
            tracing::info!(
                last_log_id = ?self.meta.last_log_id,
                ms = took.as_millis() as u64,
                "built snapshot"
            );
            if let Some(observe) = &self.observer {
                observe(SnapshotEvent::Built(took));
            }
        } else {
            tracing::info!(
                last_log_id = ?self.meta.last_log_id,
                "a newer snapshot was installed while this one was built; serving that one"
            );
        }
        Ok(Snapshot {
            meta: rec.meta,
            snapshot: tokio::fs::File::from_std(file),
        })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = tokio::fs::File;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        // Entries that are ready together are applied in one trip to the blocking pool
        // (each still in its own SQLite transaction, in log order): one thread hand-off
        // per batch, not per entry.
        let mut normal: Vec<(LogIdOf<C>, Command, Option<ApplyResponder<C>>)> = Vec::new();
        loop {
            let next = match entries.try_next().now_or_never() {
                Some(n) => n?,
                None if !normal.is_empty() => {
                    self.apply_normal(std::mem::take(&mut normal)).await?;
                    continue;
                }
                None => entries.try_next().await?,
            };
            let Some((entry, responder)) = next else {
                break;
            };
            let normal_entry = matches!(entry.payload, EntryPayload::Normal(_));
            if !normal_entry || normal.len() >= APPLY_BATCH {
                self.apply_normal(std::mem::take(&mut normal)).await?;
            }
            match entry.payload {
                EntryPayload::Normal(cmd) => {
                    normal.push((entry.log_id, cmd, responder));
                    continue;
                }
                EntryPayload::Blank => {}
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    self.last_applied = Some(entry.log_id);
                    let (store, state) = (self.store.clone(), self.state()?);
                    blocking(move || save_state(&store, &state)).await?;
                }
            }
            self.last_applied = Some(entry.log_id);
            if let Some(r) = responder {
                r.send(Response::default());
            }
        }
        self.apply_normal(normal).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let meta = self.meta();
        let pinned = match self.state() {
            Ok(state) => {
                let store = self.store.clone();
                let started = Instant::now();
                blocking(move || {
                    // Pinning also makes what was applied durable, so `last_applied` may be
                    // saved now: a restart then starts from here, not from an older
                    // snapshot (see `Store::pin_snapshot`).
                    let pinned = store.pin_snapshot().map_err(io_err)?;
                    save_state(&store, &state)?;
                    tracing::info!(
                        ms = started.elapsed().as_millis() as u64,
                        "pinned a snapshot; building it while entries go on being applied"
                    );
                    Ok(pinned)
                })
                .await
            }
            Err(e) => Err(e),
        };
        let (pinned, error) = match pinned {
            Ok(p) => (Some(p), None),
            Err(e) => {
                tracing::error!(error = %e, "pinning a snapshot failed");
                (None, Some(e.to_string()))
            }
        };
        SnapshotBuilder {
            pinned: std::sync::Mutex::new(pinned),
            meta,
            dir: self.snapshot_dir.clone(),
            current_lock: self.current_lock.clone(),
            error,
            observer: self.observer.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        mut snapshot: tokio::fs::File,
    ) -> Result<(), io::Error> {
        let name = Self::snapshot_file_name(meta);
        let path = self.snapshot_dir.join(&name);
        let tmp = self.snapshot_dir.join(format!("{name}.tmp"));
        let _ = tokio::fs::remove_file(&tmp).await;
        if link_open_file(&snapshot, &tmp).is_ok() {
            // The received file itself becomes the snapshot: no copy of the data.
            snapshot.sync_all().await?;
        } else {
            let mut out = tokio::fs::File::create(&tmp).await?;
            tokio::io::copy(&mut snapshot, &mut out).await?;
            out.sync_all().await?;
        }
        let (store, dir, owned_meta) =
            (self.store.clone(), self.snapshot_dir.clone(), meta.clone());
        let current_lock = self.current_lock.clone();
        blocking(move || {
            // Renamed under the lock: a build finishing now cannot delete it as an old file.
            let _guard = current_lock.lock().unwrap_or_else(|e| e.into_inner());
            std::fs::rename(&tmp, &path)?;
            // The snapshot is recorded first: openraft purges the log up to it, and at
            // start-up it installs a current snapshot newer than the applied state, so a
            // crash after this line is repaired by installing it again. The databases and
            // the applied state then switch together, in one rename (see
            // `Store::restore_snapshot`).
            set_current_snapshot(&dir, &owned_meta, &name)?;
            cairn_sql::crash::crash_point("snapshot.recorded");
            let applied = serde_json::to_vec(&owned_meta.last_log_id).map_err(io_err)?;
            let membership = serde_json::to_vec(&owned_meta.last_membership).map_err(io_err)?;
            store
                .restore_snapshot(
                    &path,
                    &[(KEY_APPLIED, &applied), (KEY_MEMBERSHIP, &membership)],
                )
                .map_err(io_err)
        })
        .await?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        if let Some(observe) = &self.observer {
            observe(SnapshotEvent::Installed);
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, tokio::fs::File>>, io::Error> {
        let current = {
            let _guard = self.current_lock.lock().unwrap_or_else(|e| e.into_inner());
            open_current_snapshot(&self.snapshot_dir)?
        };
        Ok(current.map(|(rec, f)| Snapshot {
            meta: rec.meta,
            snapshot: tokio::fs::File::from_std(f),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_sql::{EntryContext, Statement};
    use openraft::entry::RaftEntry;
    use openraft::testing::log_id;
    use openraft::type_config::alias::EntryOf;

    fn open(dir: &Path) -> (Arc<Store>, StateMachine) {
        let store = Arc::new(Store::open(&dir.join("sm")).expect("store"));
        let sm = StateMachine::open(store.clone(), &dir.join("snapshots")).expect("sm");
        (store, sm)
    }

    fn execute(index: u64, sql: &str) -> EntryOf<C> {
        EntryOf::<C>::new_normal(
            log_id::<C>(1, 1, index),
            Command::Execute {
                db: cairn_sql::DEFAULT_DATABASE.to_string(),
                stmts: vec![Statement::new(sql)],
                transaction: false,
                ctx: EntryContext::default(),
                request_id: None,
            },
        )
    }

    /// Applies the entries (none proposed here, so no responders).
    async fn apply_all(sm: &mut StateMachine, entries: Vec<EntryOf<C>>) {
        let stream = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
        sm.apply(stream).await.expect("apply");
    }

    /// `#[tokio::test]` runs on a current-thread runtime, where `block_in_place` panics:
    /// applying, building a snapshot and installing it must not need a multi-thread one.
    #[tokio::test]
    async fn applies_snapshots_and_installs_on_a_current_thread_runtime() {
        let a = tempfile::tempdir().expect("tempdir");
        let (store, mut sm) = open(a.path());
        apply_all(
            &mut sm,
            vec![
                execute(1, "CREATE TABLE t (v)"),
                execute(2, "INSERT INTO t VALUES (7)"),
            ],
        )
        .await;
        assert_eq!(
            sm.applied_state().await.expect("state").0,
            Some(log_id::<C>(1, 1, 2))
        );
        assert_eq!(
            store
                .applied_index(cairn_sql::DEFAULT_DATABASE)
                .expect("index"),
            2
        );

        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        let b = tempfile::tempdir().expect("tempdir");
        let (store_b, mut sm_b) = open(b.path());
        sm_b.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .expect("install");
        assert_eq!(
            sm_b.applied_state().await.expect("state").0,
            Some(log_id::<C>(1, 1, 2))
        );
        assert_eq!(
            store_b
                .applied_index(cairn_sql::DEFAULT_DATABASE)
                .expect("index"),
            2,
            "the installed snapshot holds the applied entries"
        );
    }

    /// The snapshot is pinned when openraft asks for the builder; entries applied while it is
    /// being built are not in it, and applying them does not wait for it.
    #[tokio::test]
    async fn a_snapshot_holds_what_was_applied_when_it_was_asked_for() {
        let a = tempfile::tempdir().expect("tempdir");
        let (store, mut sm) = open(a.path());
        apply_all(
            &mut sm,
            vec![
                execute(1, "CREATE TABLE t (v)"),
                execute(2, "INSERT INTO t VALUES (7)"),
            ],
        )
        .await;
        let mut builder = sm.get_snapshot_builder().await;
        apply_all(
            &mut sm,
            vec![
                execute(3, "INSERT INTO t VALUES (8)"),
                execute(4, "INSERT INTO t VALUES (9)"),
            ],
        )
        .await;
        assert_eq!(
            store
                .applied_index(cairn_sql::DEFAULT_DATABASE)
                .expect("index"),
            4
        );
        let snap = builder.build_snapshot().await.expect("snapshot");
        assert_eq!(snap.meta.last_log_id, Some(log_id::<C>(1, 1, 2)));
        let current = sm
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        assert_eq!(current.meta.last_log_id, Some(log_id::<C>(1, 1, 2)));

        let b = tempfile::tempdir().expect("tempdir");
        let (store_b, mut sm_b) = open(b.path());
        sm_b.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .expect("install");
        assert_eq!(
            store_b
                .applied_index(cairn_sql::DEFAULT_DATABASE)
                .expect("index"),
            2
        );
        // A build that finishes after a newer snapshot was recorded is thrown away.
        let mut old = sm.get_snapshot_builder().await;
        apply_all(&mut sm, vec![execute(5, "INSERT INTO t VALUES (10)")]).await;
        let new = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("newer");
        assert_eq!(new.meta.last_log_id, Some(log_id::<C>(1, 1, 5)));
        let served = old.build_snapshot().await.expect("older");
        assert_eq!(
            served.meta.last_log_id,
            Some(log_id::<C>(1, 1, 5)),
            "the newer one is served"
        );
        let current = sm
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        assert_eq!(current.meta.last_log_id, Some(log_id::<C>(1, 1, 5)));
    }
}
