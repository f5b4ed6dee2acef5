//! Determinism by construction: on the apply path, SQLite's non-deterministic functions
//! are replaced by application-defined functions of the same names
//! (<https://sqlite.org/appfunc.html>: they take precedence over built-ins), whose values
//! come from the log entry being applied: its leader-assigned time and a seed.
//!
//! This covers every place a function can be called from (column defaults, triggers,
//! views, nested expressions, bound arguments) because nothing depends on reading the SQL
//! text. Overridden: `random()`, `randomblob(N)`, `current_time`, `current_date`,
//! `current_timestamp`, and `date`, `time`, `datetime`, `julianday`, `unixepoch`,
//! `strftime`, `timediff` wherever their time value is `'now'` or missing. The date
//! functions keep SQLite's own arithmetic: they are evaluated by a private in-memory
//! connection with the entry's time in place of `'now'`. `'localtime'` and `'utc'`
//! depend on the node's time zone, so on the apply path they are an error.

use std::sync::{Arc, Mutex};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

use crate::sandbox::MAX_VALUE_BYTES;
use crate::Error;

/// What a log entry fixes for the statements it carries: the time they see as "now", the
/// seed of their random numbers and how much work they may do. Assigned once, by the
/// leader, when the entry is proposed; every replica applies the entry with the same
/// values, so every replica computes the same rows and aborts the same statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryContext {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Seed of `random()` and `randomblob()`; mixed with the entry's log index.
    pub seed: u64,
    /// Work budget of the whole entry, in progress-handler calls (each 1,000 SQLite
    /// virtual-machine steps); a statement that exhausts it fails with `budget_exceeded`.
    pub step_budget: u64,
}

/// Default [`EntryContext::step_budget`]: 200,000 calls, i.e. 200 million virtual-machine
/// steps, about a second of work on one core.
pub const DEFAULT_STEP_BUDGET: u64 = 200_000;

impl EntryContext {
    /// The context of an entry proposed now: this node's clock, a fresh random seed, the
    /// default budget.
    pub fn now() -> EntryContext {
        EntryContext {
            time_ms: chrono::Utc::now().timestamp_millis(),
            seed: rand::random(),
            step_budget: DEFAULT_STEP_BUDGET,
        }
    }
}

impl Default for EntryContext {
    /// The Unix epoch, seed 0, the default budget: for tests and replays of entries that
    /// carry no context.
    fn default() -> Self {
        EntryContext {
            time_ms: 0,
            seed: 0,
            step_budget: DEFAULT_STEP_BUDGET,
        }
    }
}

struct EntryState {
    julian_day: f64,
    rng: ChaCha20Rng,
}

/// The overrides installed on one writer connection, and the entry they now serve.
pub(crate) struct Overrides {
    state: Arc<Mutex<EntryState>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn julian_day(time_ms: i64) -> f64 {
    // SQLite's own conversion: the Unix epoch is Julian day 2440587.5.
    time_ms as f64 / 86_400_000.0 + 2_440_587.5
}

fn rng_for(index: u64, ctx: EntryContext) -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&ctx.seed.to_le_bytes());
    seed[8..16].copy_from_slice(&index.to_le_bytes());
    ChaCha20Rng::from_seed(seed)
}

impl Overrides {
    /// Sets the entry whose statements run next.
    pub(crate) fn begin_entry(&self, index: u64, ctx: EntryContext) {
        let mut s = lock(&self.state);
        s.julian_day = julian_day(ctx.time_ms);
        s.rng = rng_for(index, ctx);
    }
}

fn user_err(msg: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(msg.into().into())
}

/// How a date function takes its time values: which argument positions are time values,
/// and where a missing time value goes.
#[derive(Clone, Copy)]
enum TimeArgs {
    /// `f(time-value?, modifier...)`: date, time, datetime, julianday, unixepoch.
    First,
    /// `strftime(format, time-value?, modifier...)`.
    Second,
    /// `timediff(time-value, time-value)`.
    Both,
}

/// The text SQLite's date functions see in `v`: a TEXT or a BLOB read as text, up to its
/// first NUL, without surrounding spaces, lower-cased. Matching on this (and not on exact
/// TEXT) is what keeps `'now'` from hiding in a BLOB or behind a NUL.
fn date_text(v: &ValueRef<'_>) -> Option<String> {
    let bytes = match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => *t,
        _ => return None,
    };
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    Some(
        String::from_utf8_lossy(&bytes[..end])
            .trim()
            .to_ascii_lowercase(),
    )
}

fn is_now(v: &ValueRef<'_>) -> bool {
    date_text(v).is_some_and(|t| t == "now")
}

/// `'subsec'` (or `'subsecond'`) as the time value means "now, with milliseconds"
/// (<https://sqlite.org/lang_datefunc.html>).
fn is_subsec_now(v: &ValueRef<'_>) -> bool {
    date_text(v).is_some_and(|t| t == "subsec" || t == "subsecond")
}

fn is_zone_modifier(v: &ValueRef<'_>) -> bool {
    date_text(v).is_some_and(|t| t.starts_with("localtime") || t.starts_with("utc"))
}

/// Installs the overrides on `conn` (a writer).
///
/// # Errors
/// [`Error::Sqlite`] when a function cannot be registered.
pub(crate) fn install(conn: &Connection) -> Result<Overrides, Error> {
    let state = Arc::new(Mutex::new(EntryState {
        julian_day: julian_day(0),
        rng: rng_for(0, EntryContext::default()),
    }));
    // Not SQLITE_DETERMINISTIC: SQLite then refuses them where a value must never change
    // (index expressions, CHECK constraints, generated columns), as it refuses its own
    // date functions with 'now' there. Marked deterministic, an index over `'now'` would be
    // computed with one entry's time and looked up with another's: a corrupt index.
    let volatile = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_INNOCUOUS;

    let s = state.clone();
    conn.create_scalar_function("random", 0, volatile, move |_| {
        Ok(lock(&s).rng.next_u64() as i64)
    })?;
    let s = state.clone();
    conn.create_scalar_function("randomblob", 1, volatile, move |ctx| {
        let n = match ctx.get_raw(0) {
            ValueRef::Integer(i) => i,
            ValueRef::Real(r) => r as i64,
            ValueRef::Text(t) => std::str::from_utf8(t)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .unwrap_or(0),
            _ => 0,
        };
        let n = n.max(1);
        if n > i64::from(MAX_VALUE_BYTES) {
            return Err(user_err("string or blob too big"));
        }
        let mut bytes = vec![0u8; usize::try_from(n).unwrap_or(1)];
        lock(&s).rng.fill_bytes(&mut bytes);
        Ok(bytes)
    })?;

    let helper = Arc::new(Mutex::new(Connection::open_in_memory()?));
    for (name, args) in [
        ("date", TimeArgs::First),
        ("time", TimeArgs::First),
        ("datetime", TimeArgs::First),
        ("julianday", TimeArgs::First),
        ("unixepoch", TimeArgs::First),
        ("strftime", TimeArgs::Second),
        ("timediff", TimeArgs::Both),
    ] {
        let (s, h) = (state.clone(), helper.clone());
        conn.create_scalar_function(name, -1, volatile, move |ctx| {
            date_call(&h, name, args, lock(&s).julian_day, ctx)
        })?;
    }
    for (name, builtin) in [
        ("current_time", "time"),
        ("current_date", "date"),
        ("current_timestamp", "datetime"),
    ] {
        let (s, h) = (state.clone(), helper.clone());
        conn.create_scalar_function(name, 0, volatile, move |_| {
            let now = lock(&s).julian_day;
            let h = lock(&h);
            let mut stmt = h.prepare_cached(&format!("SELECT {builtin}(?1)"))?;
            stmt.query_row([now], |r| r.get::<_, SqlValue>(0))
        })?;
    }
    Ok(Overrides { state })
}

fn date_call(
    helper: &Mutex<Connection>,
    name: &str,
    shape: TimeArgs,
    now: f64,
    ctx: &Context<'_>,
) -> rusqlite::Result<SqlValue> {
    let n = ctx.len();
    let mut args: Vec<SqlValue> = Vec::with_capacity(n + 1);
    for i in 0..n {
        let v = ctx.get_raw(i);
        let (time_position, modifier_position) = match shape {
            TimeArgs::First => (i == 0, i >= 1),
            TimeArgs::Second => (i == 1, i >= 2),
            TimeArgs::Both => (i < 2, false),
        };
        if time_position && is_now(&v) {
            args.push(SqlValue::Real(now));
            continue;
        }
        if time_position && is_subsec_now(&v) {
            args.push(SqlValue::Real(now));
            args.push(SqlValue::Text("subsec".into()));
            continue;
        }
        if modifier_position && is_zone_modifier(&v) {
            return Err(user_err(format!(
                "{name}(): the 'localtime' and 'utc' modifiers depend on the node's time zone and are not allowed in writes"
            )));
        }
        args.push(SqlValue::from(v));
    }
    match shape {
        TimeArgs::First if n == 0 => args.push(SqlValue::Real(now)),
        TimeArgs::Second if n == 1 => args.push(SqlValue::Real(now)),
        _ => {}
    }
    let placeholders: Vec<String> = (1..=args.len()).map(|i| format!("?{i}")).collect();
    let h = lock(helper);
    let mut stmt = h.prepare_cached(&format!("SELECT {name}({})", placeholders.join(",")))?;
    stmt.query_row(rusqlite::params_from_iter(args), |r| {
        r.get::<_, SqlValue>(0)
    })
}
