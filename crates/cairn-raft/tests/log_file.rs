//! Many Raft groups in one redb log file: each group reads back exactly its own log, vote and
//! committed log id, across a reopen; a group is open once at a time; the file closes only
//! when every group has let go of it.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_raft::{Command, LogClosed, LogFile, LogStore, TypeConfig};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::log_id;
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::type_config::TypeConfigExt;

type C = TypeConfig;

/// Entry `index` of group `group`: its payload and leader id name the group, so an entry
/// read from the wrong group's table cannot pass for the right one.
fn entry(group: u64, index: u64) -> EntryOf<C> {
    EntryOf::<C>::new_normal(
        log_id::<C>(1, group, index),
        Command::CreateDatabase {
            name: format!("g{group}-e{index}"),
        },
    )
}

/// Appends `entries` and waits until the flusher reports them durable.
async fn append_durably(store: &mut LogStore, entries: Vec<EntryOf<C>>) -> anyhow::Result<()> {
    let (tx, rx) = C::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await?;
    rx.await??;
    Ok(())
}

/// Waits, up to 10 s, for the file behind `closed` to be closed.
async fn wait_closed(closed: &LogClosed) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !closed.is_closed() {
        anyhow::ensure!(Instant::now() < deadline, "the log file is still open");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn vote_of(group: u64) -> VoteOf<C> {
    VoteOf::<C>::new(3 + group, group)
}

fn committed_of(group: u64, last: u64) -> Option<LogIdOf<C>> {
    Some(log_id::<C>(1, group, last - group))
}

async fn read_all(store: &mut LogStore) -> anyhow::Result<Vec<EntryOf<C>>> {
    Ok(store.try_get_log_entries(0..).await?)
}

/// 300 entries per group, appended by both groups at once in batches of 1 to 7 entries.
const ENTRIES: u64 = 300;

async fn fill(mut store: LogStore) -> anyhow::Result<LogStore> {
    let group = store.group();
    let mut next = 1;
    while next <= ENTRIES {
        let len = (next % 7 + 1).min(ENTRIES + 1 - next);
        let batch = (next..next + len).map(|i| entry(group, i)).collect();
        append_durably(&mut store, batch).await?;
        next += len;
    }
    store.save_vote(&vote_of(group)).await?;
    store.save_committed(committed_of(group, ENTRIES)).await?;
    // One more append, so that the committed log id rides on a durable commit.
    append_durably(&mut store, vec![entry(group, ENTRIES + 1)]).await?;
    Ok(store)
}

async fn check(store: &mut LogStore) -> anyhow::Result<()> {
    let group = store.group();
    let expected: Vec<_> = (1..=ENTRIES + 1).map(|i| entry(group, i)).collect();
    assert_eq!(read_all(store).await?, expected, "group {group}'s entries");
    assert_eq!(store.read_vote().await?, Some(vote_of(group)));
    assert_eq!(
        store.read_committed().await?,
        committed_of(group, ENTRIES),
        "group {group}'s committed log id"
    );
    let state = store.get_log_state().await?;
    assert_eq!(state.last_log_id, Some(entry(group, ENTRIES + 1).log_id()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_appending_at_once_keep_their_own_logs_across_a_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.redb");
    let file = LogFile::open(&path)?;
    assert_eq!(file.groups()?, Vec::<u64>::new());
    let a = tokio::spawn(fill(file.group(0)?));
    let b = tokio::spawn(fill(file.group(7)?));
    let (mut a, mut b) = (a.await??, b.await??);
    check(&mut a).await?;
    check(&mut b).await?;
    assert_eq!(file.groups()?, vec![0, 7]);

    let closed = file.closed_watch();
    drop((a, b, file));
    wait_closed(&closed).await?;

    let file = LogFile::open(&path)?;
    assert_eq!(
        file.groups()?,
        vec![0, 7],
        "a restarted node finds both groups"
    );
    check(&mut file.group(0)?).await?;
    check(&mut file.group(7)?).await?;
    Ok(())
}

fn refused_as(r: io::Result<LogStore>, kind: io::ErrorKind) -> anyhow::Result<()> {
    match r {
        Ok(s) => anyhow::bail!("group {} opened a second time", s.group()),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_group_is_open_once_at_a_time() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = LogFile::open(&dir.path().join("log.redb"))?;
    let mut first = file.group(3)?;
    append_durably(&mut first, vec![entry(3, 1)]).await?;
    refused_as(file.group(3), io::ErrorKind::AlreadyExists)?;
    refused_as(file.clone().group(3), io::ErrorKind::AlreadyExists)?;
    let other = file.group(4)?;

    let clone = first.clone();
    drop(first);
    refused_as(file.group(3), io::ErrorKind::AlreadyExists)?;
    drop(clone);
    let mut again = file.group(3)?;
    assert_eq!(read_all(&mut again).await?, vec![entry(3, 1)]);

    // A group is dropped from the file only once it is closed, and comes back empty.
    let busy = file.drop_group(3).expect_err("group 3 is open");
    assert_eq!(busy.kind(), io::ErrorKind::ResourceBusy, "{busy}");
    drop(again);
    assert!(file.drop_group(3)?, "group 3 had a log");
    assert!(!file.drop_group(3)?, "and has none now");
    assert_eq!(file.groups()?, vec![4]);
    let mut fresh = file.group(3)?;
    assert_eq!(read_all(&mut fresh).await?, Vec::new());
    assert_eq!(fresh.read_vote().await?, None);
    drop(other);
    Ok(())
}

#[tokio::test]
async fn the_file_closes_only_after_every_groups_stores_are_dropped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.redb");
    let file = LogFile::open(&path)?;
    let mut a = file.group(0)?;
    let b = file.group(1)?;
    let b_clone = b.clone();
    let closed = a.closed_watch();
    append_durably(&mut a, vec![entry(0, 1)]).await?;

    drop(file);
    drop(a);
    drop(b);
    assert!(!closed.is_closed(), "group 1 still has a store");
    assert!(
        LogFile::open(&path).is_err(),
        "the file is still locked while a store is open"
    );
    drop(b_clone);
    wait_closed(&closed).await?;
    let reopened = LogFile::open(&path)?;
    assert_eq!(reopened.groups()?, vec![0, 1]);
    Ok(())
}

/// The shortcut opens a file for one group; the file closes with that group's store.
#[tokio::test]
async fn log_store_open_is_a_file_of_one_group() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log.redb");
    let mut store = LogStore::open(&path, 5)?;
    append_durably(&mut store, vec![entry(5, 1)]).await?;
    refused_as(store.file().group(5), io::ErrorKind::AlreadyExists)?;
    let closed = store.closed_watch();
    drop(store);
    wait_closed(&closed).await?;
    reopen_and_read(&path, 5, vec![entry(5, 1)]).await
}

async fn reopen_and_read(path: &Path, group: u64, want: Vec<EntryOf<C>>) -> anyhow::Result<()> {
    let mut store = LogStore::open(path, group)?;
    assert_eq!(read_all(&mut store).await?, want);
    Ok(())
}
