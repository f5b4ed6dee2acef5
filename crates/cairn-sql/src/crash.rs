//! Crash points: named durable steps at which a test can make the process die, to check
//! that recovery from a crash exactly there is correct.
//!
//! A process started with `CAIRN_CRASH_AT=<point>` aborts (no destructors, no flushes: as
//! close to a power cut as a process can get) when it reaches that point. Points:
//! `snapshot.recorded`, `snapshot.unpacked`, `snapshot.swapped` (installing a snapshot),
//! `load.written`, `load.swapped` (`/db/load` of a database file).

use std::sync::OnceLock;

/// Environment variable naming the crash point.
pub const CRASH_ENV: &str = "CAIRN_CRASH_AT";

/// Aborts the process if `CAIRN_CRASH_AT` names `point`; otherwise does nothing.
pub fn crash_point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(CRASH_ENV).ok().filter(|v| !v.is_empty()));
    if at.as_deref() == Some(point) {
        eprintln!("{CRASH_ENV}={point}: aborting at this crash point");
        std::process::abort();
    }
}
