//! One client operation against the system under test: Cairn through its rqlite-compatible
//! HTTP API, one SQLite file in this process, or etcd through its JSON gateway or (with the
//! `etcd-grpc` feature) its gRPC API; and the bulk load of `--rows` rows.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use base64::Engine as _;
use serde_json::{json, Value};

#[cfg(feature = "etcd-grpc")]
use super::etcd_grpc::EtcdGrpc;
use super::{Workload, BATCH_ROWS, PRELOAD};

/// Rows per transaction of the bulk load (`--rows`).
pub(super) const LOAD_TXN_ROWS: u64 = 1000;
/// Concurrent loaders of the bulk load.
pub(super) const LOADERS: usize = 4;

/// One client operation against the system under test.
#[derive(Clone)]
pub(super) enum Driver {
    Cairn {
        http: reqwest::Client,
        urls: Arc<Vec<String>>,
    },
    Sqlite {
        path: PathBuf,
    },
    Etcd {
        http: reqwest::Client,
        urls: Arc<Vec<String>>,
    },
    #[cfg(feature = "etcd-grpc")]
    EtcdGrpc(EtcdGrpc),
}

thread_local! {
    static SQLITE: std::cell::RefCell<Option<rusqlite::Connection>> = const { std::cell::RefCell::new(None) };
}

pub(super) fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Driver {
    pub(super) fn url(&self, client: usize) -> String {
        match self {
            Driver::Cairn { urls, .. } | Driver::Etcd { urls, .. } => {
                urls[client % urls.len()].clone()
            }
            Driver::Sqlite { .. } => String::new(),
            #[cfg(feature = "etcd-grpc")]
            Driver::EtcdGrpc(_) => String::new(),
        }
    }

    pub(super) async fn setup(&self, value: &str, preload: bool) -> anyhow::Result<()> {
        match self {
            Driver::Cairn { .. } => {
                self.cairn_exec(
                    0,
                    json!(["CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, v TEXT)"]),
                    "",
                )
                .await?;
                if preload {
                    for chunk in (1..=PRELOAD).collect::<Vec<_>>().chunks(BATCH_ROWS) {
                        let stmts: Vec<Value> = chunk
                            .iter()
                            .map(|id| {
                                json!([
                                    "INSERT OR REPLACE INTO bench(id, v) VALUES(?, ?)",
                                    id,
                                    value
                                ])
                            })
                            .collect();
                        self.cairn_exec(0, Value::Array(stmts), "transaction")
                            .await?;
                    }
                }
                Ok(())
            }
            Driver::Sqlite { path } => {
                let c = rusqlite::Connection::open(path)?;
                c.pragma_update(None, "journal_mode", "WAL")?;
                c.pragma_update(None, "synchronous", "FULL")?;
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, v TEXT)",
                )?;
                if preload {
                    let tx = c.unchecked_transaction()?;
                    for id in 1..=PRELOAD {
                        tx.execute(
                            "INSERT OR REPLACE INTO bench(id, v) VALUES(?1, ?2)",
                            rusqlite::params![id, value],
                        )?;
                    }
                    tx.commit()?;
                }
                Ok(())
            }
            Driver::Etcd { .. } => {
                if preload {
                    for id in 1..=PRELOAD {
                        self.etcd_put(0, &format!("bench/{id}"), value).await?;
                    }
                }
                Ok(())
            }
            #[cfg(feature = "etcd-grpc")]
            Driver::EtcdGrpc(etcd) => {
                if preload {
                    for id in 1..=PRELOAD {
                        etcd.put(0, &format!("bench/{id}"), value).await?;
                    }
                }
                Ok(())
            }
        }
    }

    async fn cairn_exec(&self, client: usize, body: Value, flags: &str) -> anyhow::Result<()> {
        self.cairn_exec_at(&self.url(client), body, flags).await
    }

    /// Posts `body` to `/db/execute` on the node at `url`; fails on an HTTP or SQL error.
    async fn cairn_exec_at(&self, url: &str, body: Value, flags: &str) -> anyhow::Result<()> {
        let Driver::Cairn { http, .. } = self else {
            bail!("not cairn")
        };
        let resp = http
            .post(format!("{url}/db/execute?{flags}"))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {v}");
        }
        if let Some(e) = v["results"]
            .as_array()
            .and_then(|r| r.iter().find_map(|x| x["error"].as_str()))
        {
            bail!("SQL error: {e}");
        }
        Ok(())
    }

    async fn cairn_read(&self, client: usize, id: u64, level: &str) -> anyhow::Result<()> {
        let Driver::Cairn { http, .. } = self else {
            bail!("not cairn")
        };
        let resp = http
            .post(format!("{}/db/query?level={level}", self.url(client)))
            .json(&json!([["SELECT v FROM bench WHERE id = ?", id]]))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("HTTP {}", resp.status());
        }
        let v: Value = resp.json().await?;
        if v["results"][0]["values"]
            .as_array()
            .is_none_or(|r| r.is_empty())
        {
            bail!("row {id} not found: {v}");
        }
        Ok(())
    }

    async fn etcd_put(&self, client: usize, key: &str, value: &str) -> anyhow::Result<()> {
        let Driver::Etcd { http, .. } = self else {
            bail!("not etcd")
        };
        let resp = http
            .post(format!("{}/v3/kv/put", self.url(client)))
            .json(&json!({"key": b64(key), "value": b64(value)}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "HTTP {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn etcd_get(&self, client: usize, key: &str, serializable: bool) -> anyhow::Result<()> {
        let Driver::Etcd { http, .. } = self else {
            bail!("not etcd")
        };
        let resp = http
            .post(format!("{}/v3/kv/range", self.url(client)))
            .json(&json!({"key": b64(key), "serializable": serializable}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("HTTP {}", resp.status());
        }
        let v: Value = resp.json().await?;
        if v["kvs"].as_array().is_none_or(|k| k.is_empty()) {
            bail!("key {key} not found");
        }
        Ok(())
    }

    fn sqlite_op(
        path: &PathBuf,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>,
    ) -> anyhow::Result<()> {
        SQLITE.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                let c = rusqlite::Connection::open(path)?;
                c.busy_timeout(Duration::from_secs(30))?;
                c.pragma_update(None, "synchronous", "FULL")?;
                *slot = Some(c);
            }
            match slot.as_ref() {
                Some(c) => Ok(f(c)?),
                None => bail!("no connection"),
            }
        })
    }

    /// One operation of `workload` by client `client`; `seq` is unique per write.
    pub(super) async fn op(
        &self,
        workload: Workload,
        client: usize,
        seq: u64,
        value: &str,
    ) -> anyhow::Result<()> {
        let read_id = 1 + rand::random::<u64>() % PRELOAD;
        let workload = match workload {
            Workload::Mixed if !rand::random::<u8>().is_multiple_of(10) => Workload::ReadWeak,
            Workload::Mixed | Workload::Failover => Workload::Insert,
            w => w,
        };
        let id = PRELOAD + 1 + seq;
        match (self, workload) {
            (Driver::Cairn { .. }, Workload::Insert) => {
                self.cairn_exec(
                    client,
                    json!([["INSERT INTO bench(id, v) VALUES(?, ?)", id, value]]),
                    "",
                )
                .await
            }
            (Driver::Cairn { .. }, Workload::Batch) => {
                let stmts: Vec<Value> = (0..BATCH_ROWS as u64)
                    .map(|k| {
                        json!([
                            "INSERT INTO bench(id, v) VALUES(?, ?)",
                            id * BATCH_ROWS as u64 + k,
                            value
                        ])
                    })
                    .collect();
                self.cairn_exec(client, Value::Array(stmts), "transaction")
                    .await
            }
            (Driver::Cairn { .. }, Workload::ReadNone) => {
                self.cairn_read(client, read_id, "none").await
            }
            (Driver::Cairn { .. }, Workload::ReadWeak) => {
                self.cairn_read(client, read_id, "weak").await
            }
            (Driver::Cairn { .. }, _) => self.cairn_read(client, read_id, "linearizable").await,
            (Driver::Sqlite { path }, w) => {
                let path = path.clone();
                let value = value.to_string();
                tokio::task::spawn_blocking(move || {
                    Driver::sqlite_op(&path, |c| match w {
                        Workload::Insert => c
                            .execute(
                                "INSERT INTO bench(id, v) VALUES(?1, ?2)",
                                rusqlite::params![id, value],
                            )
                            .map(|_| ()),
                        Workload::Batch => {
                            let tx = c.unchecked_transaction()?;
                            for k in 0..BATCH_ROWS as u64 {
                                tx.execute(
                                    "INSERT INTO bench(id, v) VALUES(?1, ?2)",
                                    rusqlite::params![id * BATCH_ROWS as u64 + k, value],
                                )?;
                            }
                            tx.commit()
                        }
                        _ => {
                            c.query_row("SELECT v FROM bench WHERE id = ?1", [read_id], |_| Ok(()))
                        }
                    })
                })
                .await?
            }
            (Driver::Etcd { .. }, Workload::Insert) => {
                self.etcd_put(client, &format!("bench/{id}"), value).await
            }
            (Driver::Etcd { http, .. }, Workload::Batch) => {
                // 100 puts in one transaction, as the Cairn batch is 100 rows in one.
                let puts: Vec<Value> = (0..BATCH_ROWS as u64)
                    .map(|k| {
                        let key = format!("bench/{}", id * BATCH_ROWS as u64 + k);
                        json!({"requestPut": {"key": b64(&key), "value": b64(value)}})
                    })
                    .collect();
                let resp = http
                    .post(format!("{}/v3/kv/txn", self.url(client)))
                    .json(&json!({"success": puts}))
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!(
                        "HTTP {}: {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    );
                }
                Ok(())
            }
            (Driver::Etcd { .. }, Workload::ReadNone | Workload::ReadWeak) => {
                self.etcd_get(client, &format!("bench/{read_id}"), true)
                    .await
            }
            (Driver::Etcd { .. }, _) => {
                self.etcd_get(client, &format!("bench/{read_id}"), false)
                    .await
            }
            #[cfg(feature = "etcd-grpc")]
            (Driver::EtcdGrpc(etcd), Workload::Insert) => {
                etcd.put(client, &format!("bench/{id}"), value).await
            }
            #[cfg(feature = "etcd-grpc")]
            (Driver::EtcdGrpc(etcd), Workload::Batch) => {
                // 100 puts in one transaction, as the Cairn batch is 100 rows in one.
                let kvs = (0..BATCH_ROWS as u64).map(|k| {
                    (
                        format!("bench/{}", id * BATCH_ROWS as u64 + k),
                        value.to_string(),
                    )
                });
                etcd.put_all(client, kvs).await
            }
            #[cfg(feature = "etcd-grpc")]
            (Driver::EtcdGrpc(etcd), Workload::ReadNone | Workload::ReadWeak) => {
                etcd.get(client, &format!("bench/{read_id}"), true).await
            }
            #[cfg(feature = "etcd-grpc")]
            (Driver::EtcdGrpc(etcd), _) => {
                etcd.get(client, &format!("bench/{read_id}"), false).await
            }
        }
    }

    /// Inserts row `id` of the bench table through the node at `url` (Cairn) or into the
    /// file (SQLite): one statement, one request.
    pub(super) async fn insert_at(&self, url: &str, id: u64, value: &str) -> anyhow::Result<()> {
        match self {
            Driver::Cairn { .. } => {
                self.cairn_exec_at(
                    url,
                    json!([["INSERT INTO bench(id, v) VALUES(?, ?)", id, value]]),
                    "",
                )
                .await
            }
            Driver::Sqlite { path } => {
                let (path, value) = (path.clone(), value.to_string());
                tokio::task::spawn_blocking(move || {
                    Driver::sqlite_op(&path, |c| {
                        c.execute(
                            "INSERT INTO bench(id, v) VALUES(?1, ?2)",
                            rusqlite::params![id, value],
                        )
                        .map(|_| ())
                    })
                })
                .await?
            }
            _ => bail!("single-row inserts by id are for Cairn and SQLite"),
        }
    }

    /// Loads rows `1..=rows` of the bench table in transactions of [`LOAD_TXN_ROWS`] rows
    /// from [`LOADERS`] concurrent loaders (Cairn: through the node at `url`, ideally the
    /// leader; SQLite: one connection each, `BEGIN IMMEDIATE`). Returns how long it took.
    pub(super) async fn load(&self, url: &str, rows: u64, value: &str) -> anyhow::Result<Duration> {
        let next = Arc::new(AtomicU64::new(0));
        let chunks = rows.div_ceil(LOAD_TXN_ROWS);
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..LOADERS {
            let (driver, next, url, value) = (
                self.clone(),
                next.clone(),
                url.to_string(),
                value.to_string(),
            );
            tasks.spawn(async move {
                loop {
                    let chunk = next.fetch_add(1, Ordering::Relaxed);
                    if chunk >= chunks {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let first = 1 + chunk * LOAD_TXN_ROWS;
                    let last = (first + LOAD_TXN_ROWS - 1).min(rows);
                    driver.load_chunk(&url, first..=last, &value).await?;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok(start.elapsed())
    }

    /// One transaction of the bulk load: rows `ids`.
    async fn load_chunk(
        &self,
        url: &str,
        ids: std::ops::RangeInclusive<u64>,
        value: &str,
    ) -> anyhow::Result<()> {
        match self {
            Driver::Cairn { .. } => {
                let stmts: Vec<Value> = ids
                    .map(|id| json!(["INSERT INTO bench(id, v) VALUES(?, ?)", id, value]))
                    .collect();
                self.cairn_exec_at(url, Value::Array(stmts), "transaction")
                    .await
            }
            Driver::Sqlite { path } => {
                let (path, value) = (path.clone(), value.to_string());
                tokio::task::spawn_blocking(move || {
                    Driver::sqlite_op(&path, |c| {
                        let tx = rusqlite::Transaction::new_unchecked(
                            c,
                            rusqlite::TransactionBehavior::Immediate,
                        )?;
                        {
                            let mut insert =
                                tx.prepare_cached("INSERT INTO bench(id, v) VALUES(?1, ?2)")?;
                            for id in ids {
                                insert.execute(rusqlite::params![id, value])?;
                            }
                        }
                        tx.commit()
                    })
                })
                .await?
            }
            _ => bail!("the bulk load is for Cairn and SQLite"),
        }
    }
}
