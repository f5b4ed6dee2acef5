//! Failpoints: named durable steps at which a test can make the process die (crash points)
//! or a write fail as if the disk were full (faults), to check that recovery from exactly
//! there is correct.
//!
//! # Compiled in only for tests
//! The points exist only when the `failpoints` cargo feature of `cairn-sql` is on (the
//! feature of the same name on `cairn-raft` turns it on). Without it, [`crash_point`] and
//! [`fault`] are empty inline functions: the binary reads no environment and has no
//! failpoints. Nothing in the `cairn` binary's own dependency tree enables the feature, so
//! `cargo build --release -p cairn` builds without it, as do `cargo build` and `cargo run`
//! at the workspace root (its `default-members` is the binary alone). `cairn-testkit`
//! depends on `cairn-sql` with `features = ["failpoints"]` and is a dev-dependency of
//! `cairn`; when `cargo test` builds cairn's tests (`cargo test --workspace`,
//! `cargo test -p cairn`), Cargo's feature unification builds the `cairn` binary those tests
//! spawn with the feature on. So does any build that includes cairn-testkit
//! (`cargo build --workspace`): a node built that way logs a warning at start. The
//! crash-point tests (`crates/cairn/tests/crash_points.rs`) fail if a point is never
//! reached, so a binary built without the feature is noticed.
//!
//! # Crash points
//! A process started with `CAIRN_CRASH_AT=<point>` aborts (no destructors, no flushes: as
//! close to a power cut as a process can get) when it reaches that point:
//!
//! | point | where |
//! |---|---|
//! | `log.append.before` / `log.append.after` | `LogStore::append`, around the (not yet fsynced) redb write of the entries |
//! | `log.flush.before` / `log.flush.after` | the log flusher, around the fsyncing redb commit; `after` is before the append callbacks fire |
//! | `vote.save.before` / `vote.save.after` | `LogStore::save_vote`, around the durable write of the vote |
//! | `log.truncate.before` / `log.truncate.after` | `LogStore::truncate_after`, around deleting a conflicting suffix |
//! | `log.purge.before` / `log.purge.after` | `LogStore::purge`, around deleting entries a snapshot covers |
//! | `sm.commit.before` / `sm.commit.after` | `Store`, around the SQLite `COMMIT` of an applied entry (its data and the database's applied index) |
//! | `sm.applied.before` / `sm.applied.after` | `Store::set_meta`, around saving the state machine's `last_applied` and membership |
//! | `snapshot.recorded`, `snapshot.unpacked`, `snapshot.swapped` | installing a snapshot |
//! | `load.written`, `load.swapped` | `/db/load` of a database file |
//!
//! # Faults
//! A process started with `CAIRN_FAULT_AT=<point>` fails the write at that point with an
//! `ENOSPC`-like error (`io::ErrorKind::StorageFull`), as a full disk would. With
//! `CAIRN_FAULT_WHILE=<path>` as well, only while the file `path` exists: a test lifts the
//! fault by deleting the file, without restarting the node. Points: `sm.commit` (before the
//! SQLite `COMMIT` of an applied entry, which is then rolled back).

/// Environment variable naming the crash point.
pub const CRASH_ENV: &str = "CAIRN_CRASH_AT";

/// Environment variable naming the point that fails as if the disk were full.
pub const FAULT_ENV: &str = "CAIRN_FAULT_AT";

/// Environment variable naming a file: the fault of [`FAULT_ENV`] is active only while it
/// exists.
pub const FAULT_WHILE_ENV: &str = "CAIRN_FAULT_WHILE";

/// Whether this build has failpoints (the `failpoints` feature).
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Aborts the process if `CAIRN_CRASH_AT` names `point`; otherwise does nothing. Does
/// nothing at all without the `failpoints` feature.
#[inline]
pub fn crash_point(point: &str) {
    #[cfg(feature = "failpoints")]
    imp::crash_point(point);
    #[cfg(not(feature = "failpoints"))]
    let _ = point;
}

/// Fails with a `StorageFull` I/O error naming `point` if `CAIRN_FAULT_AT` names it (and
/// the `CAIRN_FAULT_WHILE` file, when set, exists); otherwise `Ok`. Always `Ok` without
/// the `failpoints` feature.
///
/// # Errors
/// The injected `StorageFull` error.
#[inline]
pub fn fault(point: &str) -> std::io::Result<()> {
    #[cfg(feature = "failpoints")]
    return imp::fault(point);
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = point;
        Ok(())
    }
}

#[cfg(feature = "failpoints")]
mod imp {
    use std::io;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use super::{CRASH_ENV, FAULT_ENV, FAULT_WHILE_ENV};

    fn env(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    pub(super) fn crash_point(point: &str) {
        static AT: OnceLock<Option<String>> = OnceLock::new();
        if AT.get_or_init(|| env(CRASH_ENV)).as_deref() == Some(point) {
            eprintln!("{CRASH_ENV}={point}: aborting at this crash point");
            std::process::abort();
        }
    }

    pub(super) fn fault(point: &str) -> io::Result<()> {
        static AT: OnceLock<Option<(String, Option<PathBuf>)>> = OnceLock::new();
        let at =
            AT.get_or_init(|| Some((env(FAULT_ENV)?, env(FAULT_WHILE_ENV).map(PathBuf::from))));
        let Some((name, while_file)) = at else {
            return Ok(());
        };
        if name != point || while_file.as_ref().is_some_and(|f| !f.exists()) {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("no space left on device (injected by {FAULT_ENV}={point})"),
        ))
    }
}
