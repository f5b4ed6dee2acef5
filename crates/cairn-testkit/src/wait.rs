//! Waiting for a condition with a deadline, instead of sleeping for a guessed time.

use std::time::Duration;

use anyhow::{bail, Result};

/// How often [`wait_until`], [`wait_for`] and [`try_wait_for`] poll their condition.
pub const POLL_INTERVAL: Duration = cairn_launch::POLL_INTERVAL;

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Ok(Ok(value))`, and returns
/// that value. `Ok(Err(reason))` means "not yet": the last reason is part of the error
/// returned when `timeout` passes, so a failing test says what it last saw. `Err(e)`
/// means waiting is pointless (say, the process being waited on exited) and is returned
/// at once.
///
/// The loop is bounded twice: by `timeout`, and by a poll count of twice the number of
/// intervals in `timeout` (plus a few), so a clock anomaly cannot make it spin forever.
/// A single slow `check` can overrun `timeout` by its own duration.
pub fn try_wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<T> {
    match cairn_launch::poll(timeout, || {
        check().map_err(|e| e.context(format!("while waiting for {what}")))
    })? {
        Ok(v) => Ok(v),
        Err(t) => bail!(
            "timed out after {:.1}s waiting for {what}; last seen: {}",
            t.secs,
            t.last
        ),
    }
}

/// Like [`try_wait_for`] for checks that cannot fail: `Err(reason)` means "not yet".
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> std::result::Result<T, String>,
) -> Result<T> {
    try_wait_for(timeout, what, || Ok(check()))
}

/// Polls `cond` every [`POLL_INTERVAL`] until it returns true; returns an error naming
/// `what` when `timeout` passes first. Bounded like [`try_wait_for`].
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    wait_for(timeout, what, || {
        if cond() {
            Ok(())
        } else {
            Err("condition false".to_string())
        }
    })
}
