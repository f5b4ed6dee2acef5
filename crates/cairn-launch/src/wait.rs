//! Polling a condition with a deadline, instead of sleeping for a guessed time.

use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How often [`poll_until`] checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Checks `check` every [`POLL_INTERVAL`] until it returns `Ok(Ok(value))`, and returns
/// the value. `Ok(Err(reason))` means "not yet" (the last reason goes into the
/// [`Error::Timeout`] returned when `timeout` passes); `Err(e)` ends the wait at once
/// (say, the process exited).
///
/// Bounded twice: by `timeout`, and by twice the number of intervals in it plus ten
/// polls, so that a clock anomaly cannot make it spin forever.
pub fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<T> {
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
            Ok(v) => return Ok(v),
            Err(reason) => last = reason,
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
    Err(Error::Timeout {
        what: what.to_string(),
        secs: start.elapsed().as_secs_f64(),
        last,
    })
}
