//! Comparing replicas: every user table of a database, read at level `none` on each
//! running node, compared as JSON with a readable diff.
//!
//! The contents are what a client can see: the schema (`sqlite_master` rows other than
//! SQLite's and Cairn's own, `sqlite_%` and `_cairn%`), `PRAGMA user_version`, and every
//! table's columns and rows, ordered by all columns (so that the physical order of rows on
//! a replica does not matter; hidden rowids of tables without an `INTEGER PRIMARY KEY`
//! are not compared).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::client::Cluster;
use crate::wait::try_wait_for;

/// How long [`assert_replicas_identical`] waits for the replicas to agree: each node must
/// first apply the leader's commit index (up to [`crate::CATCH_UP_TIMEOUT`]), then their
/// contents must be equal within this.
pub const REPLICA_TIMEOUT: Duration = Duration::from_secs(20);

/// How many differing rows per table and side a diff shows.
const DIFF_ROWS: usize = 5;

/// How many characters of one row a diff shows.
const DIFF_ROW_CHARS: usize = 200;

/// What one node holds in one database, as read at level `none`.
#[derive(Debug, Clone)]
pub struct ReplicaContents {
    /// The node's index in the cluster.
    pub node: usize,
    /// `PRAGMA user_version` (one row of one value), as JSON.
    pub user_version: Value,
    /// The schema: `[type, name, tbl_name, sql]` rows of `sqlite_master`, sorted by type
    /// and name, without `sqlite_%` and `_cairn%` objects.
    pub schema: Vec<Value>,
    /// Per table name: `{"columns": [...], "rows": [[...], ...]}`, rows ordered by every
    /// column.
    pub tables: BTreeMap<String, Value>,
}

impl ReplicaContents {
    /// Whether `self` and `other` hold the same data (the node index is ignored).
    pub fn same_data(&self, other: &ReplicaContents) -> bool {
        self.user_version == other.user_version
            && self.schema == other.schema
            && self.tables == other.tables
    }

    /// A readable description of how `self` differs from `reference`, or `None` when they
    /// hold the same data. Lists schema objects and rows found on one side only (a few
    /// rows per table, each cut to a few hundred characters).
    pub fn diff(&self, reference: &ReplicaContents) -> Option<String> {
        self.diff_as(
            reference,
            &format!("node index {}", self.node),
            &format!("node index {}", reference.node),
        )
    }

    /// Like [`Self::diff`], naming the two sides `me` and `other` (say, "after" and
    /// "before" when comparing one node's data over time).
    pub fn diff_as(&self, reference: &ReplicaContents, me: &str, other: &str) -> Option<String> {
        if self.same_data(reference) {
            return None;
        }
        let (me, other) = (me.to_string(), other.to_string());
        let mut out = vec![format!("{me} differs from {other}:")];
        if self.user_version != reference.user_version {
            out.push(format!(
                "  PRAGMA user_version: {} on {me}, {} on {other}",
                self.user_version, reference.user_version
            ));
        }
        for (only, side) in [
            (one_sided(&self.schema, &reference.schema), &me),
            (one_sided(&reference.schema, &self.schema), &other),
        ] {
            for obj in only.iter().take(DIFF_ROWS) {
                out.push(format!("  schema object only on {side}: {}", cut(obj)));
            }
        }
        let names: std::collections::BTreeSet<&String> =
            self.tables.keys().chain(reference.tables.keys()).collect();
        for name in names {
            let (a, b) = (self.tables.get(name), reference.tables.get(name));
            let (Some(a), Some(b)) = (a, b) else {
                let side = if a.is_some() { &me } else { &other };
                out.push(format!("  table {name:?} only on {side}"));
                continue;
            };
            if a == b {
                continue;
            }
            if a["columns"] != b["columns"] {
                out.push(format!(
                    "  table {name:?}: columns {} on {me}, {} on {other}",
                    a["columns"], b["columns"]
                ));
            }
            let rows = |v: &Value| v["rows"].as_array().cloned().unwrap_or_default();
            let (ra, rb) = (rows(a), rows(b));
            out.push(format!(
                "  table {name:?}: {} rows on {me}, {} rows on {other}",
                ra.len(),
                rb.len()
            ));
            for (only, side) in [(one_sided(&ra, &rb), &me), (one_sided(&rb, &ra), &other)] {
                for row in only.iter().take(DIFF_ROWS) {
                    out.push(format!("    only on {side}: {}", cut(row)));
                }
                if only.len() > DIFF_ROWS {
                    out.push(format!(
                        "    ... and {} more only on {side}",
                        only.len() - DIFF_ROWS
                    ));
                }
            }
        }
        Some(out.join("\n"))
    }
}

/// The items of `a` not matched by an equal item of `b` (as multisets).
fn one_sided(a: &[Value], b: &[Value]) -> Vec<Value> {
    let mut left: BTreeMap<String, usize> = BTreeMap::new();
    for v in b {
        *left.entry(v.to_string()).or_default() += 1;
    }
    let mut only = Vec::new();
    for v in a {
        match left.get_mut(&v.to_string()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => only.push(v.clone()),
        }
    }
    only
}

fn cut(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= DIFF_ROW_CHARS {
        s
    } else {
        let head: String = s.chars().take(DIFF_ROW_CHARS).collect();
        format!("{head}... ({} bytes)", s.len())
    }
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs one read at level `none` on node `i` in database `db` and returns its first
/// result; an error unless the reply is clean.
fn read_local<C: Cluster + ?Sized>(c: &C, i: usize, db: &str, sql: &str) -> Result<Value> {
    let r = c.query_with(i, &[("q", sql), ("level", "none"), ("db", db)])?;
    if !r.is_clean() {
        bail!("{sql:?} at level none on node {}: {r}", c.id(i));
    }
    Ok(r.result(0).clone())
}

/// Reads every user table of database `db` on node `i` at level `none`; see
/// [`ReplicaContents`] for what is read. An error when a read fails.
pub fn replica_contents<C: Cluster + ?Sized>(c: &C, i: usize, db: &str) -> Result<ReplicaContents> {
    let values = |v: &Value| v.get("values").cloned().unwrap_or(Value::Array(Vec::new()));
    let user_version = values(&read_local(c, i, db, "PRAGMA user_version")?);
    let schema_sql = "SELECT type, name, tbl_name, sql FROM sqlite_master \
         WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cairn%' ESCAPE '\\' \
         ORDER BY type, name";
    let schema = values(&read_local(c, i, db, schema_sql)?)
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut tables = BTreeMap::new();
    for obj in &schema {
        if obj[0] != "table" {
            continue;
        }
        let name = obj[1]
            .as_str()
            .with_context(|| format!("a table name that is not text: {obj}"))?;
        let q = quote_ident(name);
        let head = read_local(c, i, db, &format!("SELECT * FROM {q} LIMIT 0"))?;
        let columns = head.get("columns").cloned().unwrap_or(Value::Null);
        let n = columns.as_array().map_or(0, Vec::len);
        let order: Vec<String> = (1..=n.max(1)).map(|k| k.to_string()).collect();
        let all = read_local(
            c,
            i,
            db,
            &format!("SELECT * FROM {q} ORDER BY {}", order.join(", ")),
        )?;
        tables.insert(
            name.to_string(),
            serde_json::json!({"columns": columns, "rows": values(&all)}),
        );
    }
    Ok(ReplicaContents {
        node: i,
        user_version,
        schema,
        tables,
    })
}

/// Waits until every running node has applied the leader's commit index (see
/// [`Cluster::wait_all_applied`]) and then, up to `timeout`, until every running node
/// holds the same data in database `db` as the leader. Returns the contents per running
/// node (the leader's first). The error names the nodes and shows the last diff.
pub fn check_replicas_identical<C: Cluster + ?Sized>(
    c: &C,
    db: &str,
    timeout: Duration,
) -> Result<Vec<ReplicaContents>> {
    c.wait_all_applied()
        .context("waiting for every node to apply before comparing replicas")?;
    let what = format!("every replica of database {db:?} to hold the same data");
    try_wait_for(timeout, &what, || {
        let leader = match c.leader() {
            Ok(l) => l,
            Err(e) => return Ok(Err(format!("{e:#}"))),
        };
        let mut order = vec![leader];
        order.extend(c.running().into_iter().filter(|&i| i != leader));
        let mut all = Vec::new();
        for i in order {
            match replica_contents(c, i, db) {
                Ok(r) => all.push(r),
                Err(e) => return Ok(Err(format!("reading node {}: {e:#}", c.id(i)))),
            }
        }
        let diffs: Vec<String> = all[1..].iter().filter_map(|r| r.diff(&all[0])).collect();
        if diffs.is_empty() {
            Ok(Ok(all))
        } else {
            Ok(Err(format!(
                "(node index {} is the leader)\n{}",
                all[0].node,
                diffs.join("\n")
            )))
        }
    })
}

/// [`check_replicas_identical`] with [`REPLICA_TIMEOUT`], panicking with the diff when the
/// replicas do not agree. Returns the contents per running node (the leader's first).
///
/// # Panics
/// When the replicas differ, a node does not catch up, or a read fails.
pub fn assert_replicas_identical<C: Cluster + ?Sized>(c: &C, db: &str) -> Vec<ReplicaContents> {
    match check_replicas_identical(c, db, REPLICA_TIMEOUT) {
        Ok(all) => all,
        Err(e) => panic!("replicas of database {db:?} are not identical: {e:#}"),
    }
}
