//! A value built from files, built again when the files change.
//!
//! # Why on a handshake, not with a watcher
//! The files are looked at when the value is asked for (on a TLS handshake), at most once
//! per [`RELOAD_CHECK_INTERVAL`]: a `stat` of each file, and a rebuild only when one
//! changed. Nothing runs in the background, so there is no task or thread to own, to stop
//! at shutdown, or to keep alive without a runtime (rustls calls the resolvers from
//! synchronous code); a port nobody connects to costs nothing; and a new certificate is in
//! use from the first handshake more than a second after it was written.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::TlsError;

/// How often, at most, the files behind a TLS config are checked for changes.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a version of a file: its modification time, length and inode (a file
/// replaced by a rename has a new inode even when time and length match). `None`: the
/// file could not be looked at (missing while it is being replaced, say).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

type Loader<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// A value built by `load` from `files`, rebuilt when they change (see the module docs).
pub(crate) struct Reloading<T> {
    /// What the value is, for the logs ("HTTP server certificate").
    what: &'static str,
    files: Vec<PathBuf>,
    load: Loader<T>,
    interval: Duration,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: T,
    /// The stamps of the files at the last attempt to load them, good or failed: a failed
    /// reload is tried again only when a file changes again, not every second.
    stamps: Vec<Stamp>,
    checked: Instant,
}

impl<T: Clone> Reloading<T> {
    /// Builds the value once.
    ///
    /// # Errors
    /// Whatever `load` returns: nothing is served with files that do not load at start.
    pub(crate) fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        load: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, TlsError> {
        let stamps = files.iter().map(stamp).collect();
        let current = load()?;
        Ok(Reloading {
            what,
            files,
            load: Box::new(load),
            interval: RELOAD_CHECK_INTERVAL,
            state: Mutex::new(State {
                current,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// Checks the files at every call instead of once per interval (unit tests).
    #[cfg(test)]
    pub(crate) fn check_always(mut self) -> Self {
        self.interval = Duration::ZERO;
        self
    }

    /// The current value: rebuilt first when the last check is more than the interval ago
    /// and a file changed since; when the rebuild fails, the previous value, with a
    /// warning in the log.
    pub(crate) fn get(&self) -> T {
        // std Mutex, not tokio's: never held across an await; a reload (reading a few
        // small files) briefly holds up handshakes that arrive meanwhile.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() < self.interval {
            return state.current.clone();
        }
        state.checked = Instant::now();
        let stamps: Vec<Stamp> = self.files.iter().map(stamp).collect();
        if stamps == state.stamps {
            return state.current.clone();
        }
        state.stamps = stamps;
        match (self.load)() {
            Ok(v) => {
                tracing::info!(what = self.what, files = ?self.files, "TLS files changed: reloaded");
                state.current = v;
            }
            Err(e) => tracing::warn!(
                what = self.what,
                error = %e,
                "TLS files changed but do not load: keeping the previous ones"
            ),
        }
        state.current.clone()
    }
}
