//! Replica-divergence fuzz test (issue 7): random statements from a small grammar full of
//! hostile forms (pragmas of every kind, temp objects, ATTACH and VACUUM INTO, defaults
//! and triggers calling random()/randomblob()/CURRENT_TIMESTAMP, date functions with and
//! without 'now', huge values, deep nesting, comments and `;` before keywords,
//! multi-statement strings, with and without `transaction`), sent to random nodes and
//! interleaved with SIGKILL and SIGTERM restarts of random nodes. After each round every
//! replica must hold the same data, and again after every node was restarted.
//!
//! Replay: the seed is printed at the start and in the summary; run
//! `CAIRN_FUZZ_SEED=<seed> CAIRN_FUZZ_ROUNDS=<n> cargo test -p cairn --test divergence_fuzz -- --nocapture`.
//! The same seed gives the same statements, target nodes and restart schedule; which node
//! leads, and so the exact interleaving, can still differ between runs.
//!
//! Knobs: `CAIRN_FUZZ_SEED` (default: from the clock, always printed),
//! `CAIRN_FUZZ_ROUNDS` (default 5), `CAIRN_FUZZ_STATEMENTS` (requests per round,
//! default 40, at most 1000).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn_testkit::{
    check_replicas_identical, find_files, Cluster, Level, ProcessCluster, REPLICA_TIMEOUT,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

const DEFAULT_ROUNDS: u64 = 5;
const DEFAULT_STATEMENTS: u64 = 40;
const MAX_STATEMENTS: u64 = 1000;
const MAX_ROUNDS: u64 = 1000;
/// Restarts of a single node during one round, at most.
const MAX_RESTARTS_PER_ROUND: u32 = 2;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

const SETUP: &[&str] = &[
    "CREATE TABLE f1 (id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c BLOB)",
    "CREATE TABLE f2 (id INTEGER PRIMARY KEY, r INTEGER DEFAULT (random()), \
     rb BLOB DEFAULT (randomblob(4)), ts TEXT DEFAULT CURRENT_TIMESTAMP, n INTEGER)",
    "CREATE TABLE f3 (k TEXT PRIMARY KEY, v) WITHOUT ROWID",
];

/// Every pragma form the grammar uses: read-only ones, allowed `user_version`, and ones
/// that change connection state or the schema's safety.
const PRAGMAS: &[&str] = &[
    "PRAGMA table_info(f1)",
    "PRAGMA index_list(f2)",
    "PRAGMA foreign_key_list(f1)",
    "PRAGMA integrity_check",
    "PRAGMA user_version",
    "PRAGMA user_version=2000000000",
    "PRAGMA user_version=7",
    "PRAGMA application_id=42",
    "PRAGMA schema_version=1",
    "PRAGMA writable_schema=ON",
    "PRAGMA writable_schema=RESET",
    "PRAGMA locking_mode=EXCLUSIVE",
    "PRAGMA locking_mode=NORMAL",
    "PRAGMA query_only=1",
    "PRAGMA query_only=0",
    "PRAGMA journal_mode=DELETE",
    "PRAGMA journal_mode=MEMORY",
    "PRAGMA synchronous=OFF",
    "PRAGMA foreign_keys=ON",
    "PRAGMA recursive_triggers=ON",
    "PRAGMA reverse_unordered_selects=ON",
    "PRAGMA case_sensitive_like=ON",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=5",
    "PRAGMA secure_delete=ON",
    "PRAGMA automatic_index=OFF",
];

/// Prefixes that hide a statement's first keyword from a naive check.
const DISGUISES: &[&str] = &["/**/", "-- c\n", ";", " /* x */ ", "\n\t", ";;"];

/// Expressions whose value is not deterministic unless the server makes it so.
const NONDET: &[&str] = &[
    "random()",
    "random() % 1000",
    "length(randomblob(7))",
    "unixepoch()",
    "unixepoch('now')",
    "unixepoch('subsec')",
    "julianday()",
    "julianday('now')",
    "strftime('%s', 'now')",
    "CAST(strftime('%f') AS REAL)",
    "abs(random()) % 5",
];

const TEXTS: &[&str] = &[
    "datetime()",
    "datetime('now')",
    "date()",
    "time('now', 'localtime')",
    "CURRENT_TIMESTAMP",
    "CURRENT_TIME",
    "CURRENT_DATE",
    "hex(randomblob(8))",
    "'plain'",
    "printf('%.*c', 5000, 'x')",
    "sqlite_version()",
];

const BLOBS: &[&str] = &[
    "randomblob(8)",
    "randomblob(100000)",
    "zeroblob(16)",
    "x'00ff'",
    "NULL",
];

struct Gen {
    rng: StdRng,
    dir: PathBuf,
    paths: Vec<PathBuf>,
}

/// One request: where it goes, how, and what.
#[derive(Debug)]
enum Request {
    Execute { transaction: bool, body: Value },
    Query { level: Level, sql: String },
}

impl Gen {
    fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs.choose(&mut self.rng).copied().unwrap_or("NULL")
    }

    fn path(&mut self, what: &str) -> String {
        let p = self.dir.join(format!("{what}-{}.db", self.paths.len()));
        self.paths.push(p.clone());
        p.display().to_string()
    }

    fn deep(&mut self) -> String {
        let d = self.rng.gen_range(20..80);
        format!("{}random(){}", "(".repeat(d), ")".repeat(d))
    }

    fn int_expr(&mut self) -> String {
        match self.rng.gen_range(0..5) {
            0 => self.rng.gen_range(-5..1000).to_string(),
            1 => self.deep(),
            _ => self.pick(NONDET).to_string(),
        }
    }

    /// One statement of the grammar, as SQL text or a `[sql, params...]` array.
    fn statement(&mut self) -> Value {
        let k = self.rng.gen_range(0..3);
        let m = self.rng.gen_range(2..6);
        let r = self.rng.gen_range(0..m);
        let sql = match self.rng.gen_range(0..24) {
            0..=2 => format!(
                "INSERT INTO f1(a, b, c) VALUES ({}, {}, {})",
                self.int_expr(),
                self.pick(TEXTS),
                self.pick(BLOBS)
            ),
            3 => "INSERT INTO f2 DEFAULT VALUES".to_string(),
            4 => format!("INSERT INTO f2(n) VALUES ({})", self.int_expr()),
            5 => format!(
                "UPDATE f1 SET a = {}, b = {} WHERE id % {m} = {r}",
                self.int_expr(),
                self.pick(TEXTS)
            ),
            6 => format!("DELETE FROM f1 WHERE id % {m} = {r}"),
            7 => "DELETE FROM f2 WHERE id IN (SELECT id FROM f2 ORDER BY random() LIMIT 2)"
                .to_string(),
            8 => format!(
                "INSERT INTO f2(n) SELECT a FROM f1 ORDER BY random() LIMIT {}",
                self.rng.gen_range(1..4)
            ),
            9 | 10 => self.pick(PRAGMAS).to_string(),
            11 => match self.rng.gen_range(0..4) {
                0 => format!("CREATE TEMP TABLE tt{k} (x)"),
                1 => format!("CREATE TEMP VIEW tv{k} AS SELECT random()"),
                2 => format!(
                    "CREATE TEMP TRIGGER ttr{k} AFTER INSERT ON f1 BEGIN \
                     INSERT INTO f2(n) VALUES (new.id); END"
                ),
                _ => format!("INSERT INTO temp.tt{k} VALUES (1)"),
            },
            12 => format!(
                "ATTACH DATABASE '{}' AS e{k}",
                self.path("attach")
            ),
            13 => format!("VACUUM INTO '{}'", self.path("vacuum")),
            14 => match self.rng.gen_range(0..3) {
                0 => format!(
                    "CREATE TRIGGER IF NOT EXISTS trg{k} AFTER INSERT ON f1 BEGIN \
                     INSERT INTO f2(n, ts) VALUES (random(), julianday()); END"
                ),
                1 => format!(
                    "CREATE TRIGGER IF NOT EXISTS utrg{k} AFTER UPDATE ON f1 BEGIN \
                     INSERT OR REPLACE INTO f3(k, v) VALUES ('u' || new.id, unixepoch('subsec')); END"
                ),
                _ => format!("DROP TRIGGER IF EXISTS trg{k}"),
            },
            15 => match self.rng.gen_range(0..3) {
                0 => format!(
                    "CREATE TABLE IF NOT EXISTS g{k} (id INTEGER PRIMARY KEY, \
                     v BLOB DEFAULT (randomblob(3)), w REAL DEFAULT (julianday()), \
                     x TEXT DEFAULT CURRENT_TIMESTAMP)"
                ),
                1 => format!("INSERT INTO g{k} DEFAULT VALUES"),
                _ => format!("DROP TABLE IF EXISTS g{k}"),
            },
            16 => match self.rng.gen_range(0..4) {
                0 => "INSERT INTO f1(c) VALUES (zeroblob(2000000))".to_string(),
                1 => "DELETE FROM f1 WHERE length(c) > 50000".to_string(),
                2 => {
                    return json!([
                        "INSERT INTO f1(b) VALUES (?)",
                        "y".repeat(self.rng.gen_range(1000..100_000))
                    ])
                }
                _ => {
                    return json!([
                        "INSERT INTO f1(c) VALUES (randomblob(?))",
                        self.rng.gen_range(0..5000)
                    ])
                }
            },
            17 => format!(
                "INSERT OR REPLACE INTO f3(k, v) VALUES ('{k}', {})",
                self.int_expr()
            ),
            18 => format!(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {}) \
                 INSERT INTO f2(n) SELECT n * {} FROM s",
                self.rng.gen_range(1..50),
                self.int_expr()
            ),
            19 => format!(
                "INSERT INTO f1(a) VALUES (1); DELETE FROM f1 WHERE id % {m} = {r}"
            ),
            20 => match self.rng.gen_range(0..3) {
                0 => "UPDATE sqlite_master SET sql = 'CREATE TABLE f3 (broken' WHERE name = 'f3'"
                    .to_string(),
                1 => "DETACH DATABASE e0".to_string(),
                _ => "DELETE FROM sqlite_master WHERE name = 'f2'".to_string(),
            },
            21 => format!("CREATE INDEX IF NOT EXISTS i{k} ON f1(a)"),
            22 => "VACUUM".to_string(),
            _ => {
                return json!([
                    "INSERT INTO f2(n, rb) VALUES (?, randomblob(?))",
                    self.rng.gen_range(0..100),
                    self.rng.gen_range(1..64)
                ])
            }
        };
        let disguised = if self.rng.gen_bool(0.25) {
            format!("{}{sql}", self.pick(DISGUISES))
        } else {
            sql
        };
        Value::String(disguised)
    }

    fn request(&mut self) -> Request {
        if self.rng.gen_bool(0.2) {
            let level = *Level::ALL.choose(&mut self.rng).unwrap_or(&Level::None);
            let sql = match self.rng.gen_range(0..5) {
                0 => format!("VACUUM INTO '{}'", self.path("qvacuum")),
                1 => format!("ATTACH DATABASE '{}' AS q", self.path("qattach")),
                2 => self.pick(PRAGMAS).to_string(),
                3 => format!("SELECT {}, count(*) FROM f1", self.deep()),
                _ => "SELECT 1; DELETE FROM f1".to_string(),
            };
            return Request::Query { level, sql };
        }
        let n = self.rng.gen_range(1..=3);
        let body = Value::Array((0..n).map(|_| self.statement()).collect());
        Request::Execute {
            transaction: self.rng.gen_bool(0.5),
            body,
        }
    }
}

/// How the requests came back, by slot error code (or HTTP status, or client error).
#[derive(Default)]
struct Outcomes(BTreeMap<String, u64>);

impl Outcomes {
    fn add(&mut self, key: String) {
        *self.0.entry(key).or_default() += 1;
    }
}

/// Brings node `i` down: SIGKILL or SIGTERM.
fn take_down(c: &mut ProcessCluster, i: usize, kill: bool) -> Result<(), String> {
    if kill {
        c.kill(i).map_err(|e| format!("{e:#}"))
    } else {
        c.stop(i).map(|_| ()).map_err(|e| format!("{e:#}"))
    }
}

fn bring_up(c: &mut ProcessCluster, i: usize) -> Result<(), String> {
    c.restart(i).map_err(|e| format!("{e:#}"))?;
    c.wait_ready(i)
        .map_err(|e| format!("node {} does not restart: {e:#}", c.id(i)))
}

fn leftover_files(paths: &[PathBuf], roots: &[&Path]) -> Vec<String> {
    let mut found = Vec::new();
    for p in paths {
        if p.exists() {
            found.push(p.display().to_string());
        }
        if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
            for root in roots {
                found.extend(
                    find_files(root, name)
                        .into_iter()
                        .map(|f| f.display().to_string()),
                );
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn replicas_stay_identical_under_hostile_sql_and_restarts() {
    let seed = env_u64("CAIRN_FUZZ_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let rounds = env_u64("CAIRN_FUZZ_ROUNDS")
        .unwrap_or(DEFAULT_ROUNDS)
        .min(MAX_ROUNDS);
    let per_round = env_u64("CAIRN_FUZZ_STATEMENTS")
        .unwrap_or(DEFAULT_STATEMENTS)
        .min(MAX_STATEMENTS);
    eprintln!(
        "divergence_fuzz: CAIRN_FUZZ_SEED={seed} CAIRN_FUZZ_ROUNDS={rounds} \
         CAIRN_FUZZ_STATEMENTS={per_round}"
    );

    let fuzz_dir = tempfile::Builder::new()
        .prefix("cairn-fuzz-")
        .tempdir()
        .expect("a temp dir for ATTACH and VACUUM INTO targets");
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        dir: fuzz_dir.path().to_path_buf(),
        paths: Vec::new(),
    };
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let l = c.leader().expect("a leader");
    c.execute_ok(l, &json!(SETUP)).expect("setup");

    let started = Instant::now();
    let (mut sent, mut statements, mut restarts, mut done_rounds) = (0u64, 0u64, 0u64, 0u64);
    let mut outcomes = Outcomes::default();
    let mut failures: Vec<String> = Vec::new();

    'rounds: for round in 1..=rounds {
        // A node taken down mid-round and the request count at which it comes back.
        let mut down: Option<(usize, u64)> = None;
        let mut round_restarts = 0;
        for s in 0..per_round {
            if let Some((i, back_at)) = down {
                if s >= back_at {
                    if let Err(e) = bring_up(&mut c, i) {
                        failures.push(format!("round {round}: {e}"));
                        break 'rounds;
                    }
                    down = None;
                }
            }
            if down.is_none() && round_restarts < MAX_RESTARTS_PER_ROUND && g.rng.gen_bool(0.08) {
                let i = g.rng.gen_range(0..c.node_count());
                let kill = g.rng.gen_bool(0.5);
                let back_at = s + g.rng.gen_range(1..6);
                if let Err(e) = take_down(&mut c, i, kill) {
                    failures.push(format!("round {round}: taking node {} down: {e}", c.id(i)));
                }
                down = Some((i, back_at));
                round_restarts += 1;
                restarts += 1;
            }
            let running = c.running();
            let Some(&node) = running.choose(&mut g.rng) else {
                failures.push(format!("round {round}: no node runs"));
                break 'rounds;
            };
            let req = g.request();
            statements += match &req {
                Request::Execute { body, .. } => body.as_array().map_or(1, |b| b.len() as u64),
                Request::Query { .. } => 1,
            };
            let reply = match &req {
                Request::Execute { transaction, body } => {
                    let params: &[(&str, &str)] = if *transaction {
                        &[("transaction", "")]
                    } else {
                        &[]
                    };
                    c.execute_with(node, params, body)
                }
                Request::Query { level, sql } => c.query(node, sql, *level),
            };
            sent += 1;
            match reply {
                Ok(r) if r.status == 200 => {
                    let codes: Vec<String> = r
                        .results()
                        .iter()
                        .map(|x| match (x.get("error"), x.get("code")) {
                            (None, _) => "ok".to_string(),
                            (Some(_), Some(code)) => code.as_str().unwrap_or("?").to_string(),
                            (Some(_), None) => "error without code".to_string(),
                        })
                        .collect();
                    for code in codes {
                        outcomes.add(code);
                    }
                    if r.results().is_empty() {
                        outcomes.add("HTTP 200 without results".to_string());
                    }
                }
                Ok(r) => outcomes.add(format!(
                    "HTTP {} {}",
                    r.status,
                    r.code().unwrap_or("(no code)")
                )),
                Err(_) => outcomes.add("client error (timeout or connection)".to_string()),
            }
        }
        if let Some((i, _)) = down {
            if let Err(e) = bring_up(&mut c, i) {
                failures.push(format!("round {round}: {e}"));
                break 'rounds;
            }
        }

        if let Err(e) = check_replicas_identical(&c, "main", REPLICA_TIMEOUT) {
            eprintln!("divergence_fuzz: round {round}: DIVERGENCE: {e:#}");
            failures.push(format!(
                "round {round}: replicas differ after the round: {e:#}"
            ));
        }
        // Every node restarts (one at a time, so a quorum stays up), and the replicas
        // still agree afterwards.
        for i in 0..c.node_count() {
            let kill = g.rng.gen_bool(0.5);
            if let Err(e) = take_down(&mut c, i, kill) {
                failures.push(format!("round {round}: taking node {} down: {e}", c.id(i)));
            }
            restarts += 1;
            if let Err(e) = bring_up(&mut c, i) {
                failures.push(format!("round {round}: {e}"));
                break 'rounds;
            }
        }
        if let Err(e) = check_replicas_identical(&c, "main", REPLICA_TIMEOUT) {
            eprintln!("divergence_fuzz: round {round}, after restarts: DIVERGENCE: {e:#}");
            failures.push(format!(
                "round {round}: replicas differ after restarting every node: {e:#}"
            ));
        }
        let left = leftover_files(&g.paths, &[fuzz_dir.path(), c.dir()]);
        if !left.is_empty() {
            failures.push(format!(
                "round {round}: ATTACH/VACUUM INTO created {left:?}"
            ));
        }
        done_rounds = round;
        eprintln!(
            "divergence_fuzz: round {round} done after {:.1?}",
            started.elapsed()
        );
        if !failures.is_empty() {
            // The seed replays it; later rounds would only pile up on the first damage.
            break;
        }
    }

    let divergences = failures.iter().filter(|f| f.contains("differ")).count();
    eprintln!(
        "divergence_fuzz summary: seed {seed}, rounds {done_rounds}/{rounds}, requests {sent}, \
         statements sent {statements}, restarts {restarts}, divergences {divergences}, failures {}, took {:.1?}",
        failures.len(),
        started.elapsed()
    );
    eprintln!("divergence_fuzz outcomes by slot code: {:?}", outcomes.0);
    assert!(
        failures.is_empty(),
        "replay with CAIRN_FUZZ_SEED={seed} CAIRN_FUZZ_ROUNDS={rounds} \
         CAIRN_FUZZ_STATEMENTS={per_round}:\n{}",
        failures.join("\n")
    );
}
