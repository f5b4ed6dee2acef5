//! Polling a condition with a deadline, instead of sleeping for a guessed time.

use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How often [`poll_until`] checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A wait that ran out: how long it took and what the condition last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedOut {
    /// Seconds from the first check to giving up.
    pub secs: f64,
    /// The last "not yet" reason (`"never checked"` if there was none).
    pub last: String,
}

/// The one polling loop of the launcher and the test harness, whatever their error type:
/// checks `check` every [`POLL_INTERVAL`] until it returns `Ok(Ok(value))`. `Ok(Err(reason))`
/// means "not yet"; `Err(e)` ends the wait at once and is returned as is. When `timeout`
/// passes, the result is `Ok(Err(TimedOut))`.
///
/// Bounded twice: by `timeout`, and by twice the number of intervals in it plus ten
/// polls, so that a clock anomaly cannot make it spin forever. A single slow `check` can
/// overrun `timeout` by its own duration.
///
/// # Errors
/// Whatever `check` returns as `Err`.
pub fn poll<T, E>(
    timeout: Duration,
    mut check: impl FnMut() -> std::result::Result<std::result::Result<T, String>, E>,
) -> std::result::Result<std::result::Result<T, TimedOut>, E> {
    let start = Instant::now();
    let deadline = start + timeout;
    let intervals = timeout.as_millis() / POLL_INTERVAL.as_millis().max(1);
    let max_polls = u64::try_from(intervals)
        .unwrap_or(u64::MAX / 4)
        .saturating_mul(2)
        .saturating_add(10);
    let mut last = String::from("never checked");
    for _ in 0..max_polls {
        match check()? {
            Ok(v) => return Ok(Ok(v)),
            Err(reason) => last = reason,
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
    Ok(Err(TimedOut {
        secs: start.elapsed().as_secs_f64(),
        last,
    }))
}

/// [`poll`] with the launcher's [`Error::Timeout`], which names `what`.
///
/// # Errors
/// [`Error::Timeout`] when `timeout` passes; whatever `check` returns as `Err`.
pub fn poll_until<T>(
    timeout: Duration,
    what: &str,
    check: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<T> {
    poll(timeout, check)?.map_err(|t| Error::Timeout {
        what: what.to_string(),
        secs: t.secs,
        last: t.last,
    })
}
