//! Linear-time replacements for SQLite's `instr`, `replace`, `trim`, `ltrim` and `rtrim`
//! (with their second argument), on every connection.
//!
//! The built-ins compare naively, O(n·m), inside one virtual-machine step, where neither
//! the deterministic step budget nor a read's deadline can stop them: one
//! `instr(printf('%.*c', 1200000, 'a'), ...)` froze the apply path of every replica for
//! minutes. These give the same results (<https://sqlite.org/lang_corefunc.html>) in
//! linear time. Numeric arguments, whose text SQLite formats itself, go to the built-in on
//! a private connection: their text is short.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use memchr::memmem;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

use crate::sandbox::MAX_VALUE_BYTES;
use crate::Error;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bytes of a TEXT or BLOB argument; `None` for NULL and numbers.
fn bytes<'a>(v: &ValueRef<'a>) -> Option<&'a [u8]> {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(t),
        _ => None,
    }
}

/// Characters in UTF-8 `b`, counted as SQLite counts them (by lead bytes).
fn chars(b: &[u8]) -> usize {
    b.iter().filter(|&&x| x & 0xC0 != 0x80).count()
}

/// Splits UTF-8 `b` into its characters' byte runs, as SQLite does.
fn char_runs(b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=b.len() {
        if i == b.len() || b[i] & 0xC0 != 0x80 {
            out.push(&b[start..i]);
            start = i;
        }
    }
    out
}

fn too_big() -> rusqlite::Error {
    rusqlite::Error::UserFunctionError("string or blob too big".into())
}

fn text(b: Vec<u8>) -> SqlValue {
    SqlValue::Text(
        String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Runs the built-in `name` on the private connection.
fn builtin(
    helper: &Mutex<Connection>,
    name: &str,
    ctx: &Context<'_>,
) -> rusqlite::Result<SqlValue> {
    let args: Vec<SqlValue> = (0..ctx.len())
        .map(|i| SqlValue::from(ctx.get_raw(i)))
        .collect();
    let placeholders: Vec<String> = (1..=args.len()).map(|i| format!("?{i}")).collect();
    let h = lock(helper);
    let mut stmt = h.prepare_cached(&format!("SELECT {name}({})", placeholders.join(",")))?;
    stmt.query_row(rusqlite::params_from_iter(args), |r| {
        r.get::<_, SqlValue>(0)
    })
}

fn has_null(ctx: &Context<'_>) -> bool {
    (0..ctx.len()).any(|i| matches!(ctx.get_raw(i), ValueRef::Null))
}

fn instr(helper: &Mutex<Connection>, ctx: &Context<'_>) -> rusqlite::Result<SqlValue> {
    if has_null(ctx) {
        return Ok(SqlValue::Null);
    }
    let (h, n) = (ctx.get_raw(0), ctx.get_raw(1));
    let (Some(hb), Some(nb)) = (bytes(&h), bytes(&n)) else {
        return builtin(helper, "instr", ctx);
    };
    let found = memmem::find(hb, nb);
    let both_blobs = matches!((h, n), (ValueRef::Blob(_), ValueRef::Blob(_)));
    let pos = match found {
        None => 0,
        Some(p) if both_blobs => p + 1,
        Some(p) => chars(&hb[..p]) + 1,
    };
    Ok(SqlValue::Integer(i64::try_from(pos).unwrap_or(i64::MAX)))
}

fn replace(helper: &Mutex<Connection>, ctx: &Context<'_>) -> rusqlite::Result<SqlValue> {
    if has_null(ctx) {
        return Ok(SqlValue::Null);
    }
    let (x, y, z) = (ctx.get_raw(0), ctx.get_raw(1), ctx.get_raw(2));
    let (Some(xb), Some(yb), Some(zb)) = (bytes(&x), bytes(&y), bytes(&z)) else {
        return builtin(helper, "replace", ctx);
    };
    if yb.is_empty() {
        return Ok(SqlValue::from(x));
    }
    let limit = usize::try_from(MAX_VALUE_BYTES).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(xb.len());
    let mut rest = xb;
    let finder = memmem::Finder::new(yb);
    while let Some(p) = finder.find(rest) {
        out.extend_from_slice(&rest[..p]);
        out.extend_from_slice(zb);
        if out.len() > limit {
            return Err(too_big());
        }
        rest = &rest[p + yb.len()..];
    }
    out.extend_from_slice(rest);
    if out.len() > limit {
        return Err(too_big());
    }
    Ok(text(out))
}

#[derive(Clone, Copy)]
enum Side {
    Left,
    Right,
    Both,
}

fn trim(
    helper: &Mutex<Connection>,
    name: &str,
    side: Side,
    ctx: &Context<'_>,
) -> rusqlite::Result<SqlValue> {
    if has_null(ctx) {
        return Ok(SqlValue::Null);
    }
    let (x, y) = (ctx.get_raw(0), ctx.get_raw(1));
    let (Some(xb), Some(yb)) = (bytes(&x), bytes(&y)) else {
        return builtin(helper, name, ctx);
    };
    let set: HashSet<&[u8]> = char_runs(yb).into_iter().collect();
    let runs = char_runs(xb);
    let (mut lo, mut hi) = (0, runs.len());
    if matches!(side, Side::Left | Side::Both) {
        while lo < hi && set.contains(runs[lo]) {
            lo += 1;
        }
    }
    if matches!(side, Side::Right | Side::Both) {
        while hi > lo && set.contains(runs[hi - 1]) {
            hi -= 1;
        }
    }
    Ok(text(runs[lo..hi].concat()))
}

/// Installs the replacements on `conn`.
///
/// # Errors
/// [`Error::Sqlite`] when a function cannot be registered.
pub(crate) fn install(conn: &Connection) -> Result<(), Error> {
    let helper = Arc::new(Mutex::new(Connection::open_in_memory()?));
    let pure = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    let h = helper.clone();
    conn.create_scalar_function("instr", 2, pure, move |ctx| instr(&h, ctx))?;
    let h = helper.clone();
    conn.create_scalar_function("replace", 3, pure, move |ctx| replace(&h, ctx))?;
    for (name, side) in [
        ("trim", Side::Both),
        ("ltrim", Side::Left),
        ("rtrim", Side::Right),
    ] {
        let h = helper.clone();
        conn.create_scalar_function(name, 2, pure, move |ctx| trim(&h, name, side, ctx))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_results_as_sqlite() {
        let ours = Connection::open_in_memory().expect("db");
        install(&ours).expect("install");
        let theirs = Connection::open_in_memory().expect("db");
        for sql in [
            "SELECT instr('héllo wörld', 'wö'), instr('abc', ''), instr('abc', 'x'), instr(NULL, 'a'), instr(12345, 34), instr(x'00ff01', x'ff01'), instr('a1.5b', 1.5)",
            "SELECT replace('aaaa', 'aa', 'b'), replace('abc', '', 'x'), replace('héé', 'é', 'e'), replace(NULL, 'a', 'b'), replace(1.5, '.', ','), replace('abc', 'b', NULL)",
            "SELECT trim('xxhixx', 'x'), ltrim('ééab', 'é'), rtrim('abyy', 'xy'), trim('abc', ''), trim(NULL, 'a'), trim(1200, '0'), trim('  a  ')",
        ] {
            let row = |c: &Connection| -> Vec<SqlValue> {
                let mut stmt = c.prepare(sql).expect("prepare");
                let n = stmt.column_count();
                stmt.query_row([], |r| (0..n).map(|i| r.get(i)).collect::<rusqlite::Result<_>>())
                    .expect("row")
            };
            let (a, b) = (row(&ours), row(&theirs));
            assert_eq!(a, b, "{sql}");
        }
        // Quadratic for the built-ins (hours at these sizes), linear here.
        let n: i64 = ours
            .query_row(
                "SELECT instr(printf('%.*c', 1200000, 'a'), printf('%.*c', 600000, 'a') || 'b')",
                [],
                |r| r.get(0),
            )
            .expect("instr");
        assert_eq!(n, 0);
    }
}
