//! openraft's storage conformance suite against the redb log store and the SQLite state
//! machine: for a store alone in its file, and for one sharing its file (and its flusher)
//! with another group that appends all the while.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use cairn_raft::{Command, LogFile, LogStore, StateMachine, TypeConfig};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::testing::log_id;
use openraft::type_config::alias::EntryOf;
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;

fn se(e: std::io::Error) -> StorageError<TypeConfig> {
    StorageError::write(TypeConfig::err_from_error(&e))
}

fn state_machine(dir: &Path) -> Result<StateMachine, StorageError<TypeConfig>> {
    let store =
        cairn_sql::Store::open(&dir.join("sm")).map_err(|e| se(std::io::Error::other(e)))?;
    StateMachine::open(Arc::new(store), &dir.join("snapshots")).map_err(se)
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(se)?;
        let log = LogStore::open(&dir.path().join("log.redb"), 0).map_err(se)?;
        let sm = state_machine(dir.path())?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder).await
}

/// Appends the busy groups of all the suite's stores made, over the whole run.
static BUSY_APPENDS: AtomicU64 = AtomicU64::new(0);

/// Group 0 of a shared file, appending (each append awaited durable, then read back) and
/// purging on its own thread until dropped. Dropping it stops and joins the thread and
/// fails the test if group 0 ever read back something it had not written.
struct BusyGroup {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<u64, String>>>,
}

fn busy_entry(index: u64) -> EntryOf<TypeConfig> {
    EntryOf::<TypeConfig>::new_normal(
        log_id::<TypeConfig>(9, 9, index),
        Command::CreateDatabase {
            name: format!("busy{index}"),
        },
    )
}

fn run_busy(mut store: LogStore, stop: &AtomicBool) -> Result<u64, String> {
    let e = |e: std::io::Error| e.to_string();
    let mut index = 0;
    while !stop.load(Ordering::Relaxed) {
        index += 1;
        let (tx, rx) = TypeConfig::oneshot();
        futures::executor::block_on(async {
            store
                .append([busy_entry(index)], IOFlushed::signal(tx))
                .await
                .map_err(e)?;
            rx.await.map_err(|e| e.to_string())?.map_err(e)?;
            let read = store.try_get_log_entries(index..=index).await.map_err(e)?;
            if read != [busy_entry(index)] {
                return Err(format!("group 0 read back {read:?} at {index}"));
            }
            let state = store.get_log_state().await.map_err(e)?;
            if state.last_log_id != Some(busy_entry(index).log_id()) {
                return Err(format!("group 0's last log id is {:?}", state.last_log_id));
            }
            if index % 32 == 0 {
                store
                    .purge(log_id::<TypeConfig>(9, 9, index - 16))
                    .await
                    .map_err(e)?;
            }
            Ok(())
        })?;
    }
    Ok(index)
}

impl BusyGroup {
    fn start(store: LogStore) -> std::io::Result<BusyGroup> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("busy-group-0".to_string())
            .spawn(move || run_busy(store, &flag))?;
        Ok(BusyGroup {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for BusyGroup {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let outcome = thread.join();
        if std::thread::panicking() {
            return;
        }
        match outcome {
            Ok(Ok(appended)) => {
                BUSY_APPENDS.fetch_add(appended, Ordering::Relaxed);
            }
            Ok(Err(e)) => panic!("the busy group 0 failed: {e}"),
            Err(_) => panic!("the busy group 0 panicked"),
        }
    }
}

/// The busy group and the directory; fields drop in order, so the group stops before the
/// directory goes.
struct SharedFile {
    _busy: BusyGroup,
    _dir: tempfile::TempDir,
}

struct SharedBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, SharedFile> for SharedBuilder {
    async fn build(
        &self,
    ) -> Result<(SharedFile, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(se)?;
        let file = LogFile::open(&dir.path().join("log.redb")).map_err(se)?;
        let busy = BusyGroup::start(file.group(0).map_err(se)?).map_err(se)?;
        let log = file.group(7).map_err(se)?;
        let sm = state_machine(dir.path())?;
        Ok((
            SharedFile {
                _busy: busy,
                _dir: dir,
            },
            log,
            sm,
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_sharing_its_file_with_a_busy_group_passes_openraft_suite(
) -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(SharedBuilder).await?;
    let appended = BUSY_APPENDS.load(Ordering::Relaxed);
    assert!(
        appended > 0,
        "group 0 appended while the suite ran on group 7"
    );
    eprintln!("group 0 made {appended} durable appends beside the suite");
    Ok(())
}
