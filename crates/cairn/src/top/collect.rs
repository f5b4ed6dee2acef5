//! Fetching one refresh: `/nodes` from one node, `/status` and `/metrics` from every node
//! at once, each request bounded by a timeout shorter than the refresh interval, and the
//! tables of each database now and then. What it remembers between refreshes (members,
//! the previous metrics sample, when a node last answered) lives in [`Collector`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use std::future::Future;

use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

use super::load::OpMetrics;
use super::model::{self, NodeInput, Reach, Snapshot, StatusView};
use crate::client::base_url;

/// Tables are read this often (they change rarely, and each database costs a query).
const TABLES_EVERY: Duration = Duration::from_secs(5);

/// Membership (`/nodes`, which makes the node asked contact every other) is read this
/// often once known; until then, at every refresh.
const MEMBERSHIP_EVERY: Duration = Duration::from_secs(5);

/// The timeout of `GET /nodes`, whatever the interval: the node checks each member with a
/// 1 s bound before it answers.
const NODES_TIMEOUT: Duration = Duration::from_millis(2500);

/// At most this many databases have their tables listed at each tables refresh.
const MAX_TABLE_LISTS: usize = 32;

/// The shortest per-request timeout, whatever the interval.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(100);

/// How long a leader step-down may take before the dashboard reports a timeout.
const STEP_DOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The tables of a database, as `/db/query?level=none` returns them on one node.
const TABLES_SQL: &str = "SELECT name FROM sqlite_master WHERE type = 'table' \
                          AND substr(name, 1, 7) <> 'sqlite_' ORDER BY name";

/// What the collector remembers about one node, by its API URL.
#[derive(Default)]
struct Memory {
    /// When `/status` last answered.
    last_ok: Option<Instant>,
    /// The previous `/metrics` sample and when it arrived.
    metrics: Option<(Instant, OpMetrics)>,
    /// The id it reported.
    id: Option<u64>,
    /// Whether it answered `/status` in the last refresh.
    up: bool,
}

/// One node's answers in one refresh.
struct Fetched {
    status: Result<Value, (Reach, String)>,
    metrics: Option<(Instant, OpMetrics)>,
}

/// Collects snapshots of a cluster, starting from one node's address.
pub struct Collector {
    client: reqwest::Client,
    source: String,
    seed: Url,
    /// The last successful `/nodes` listing: `(id, API URL)`.
    members: Vec<(u64, Url)>,
    /// When `members` was read.
    members_at: Option<Instant>,
    memory: HashMap<Url, Memory>,
    /// The leader's URL as the last refresh saw it (asked for `/nodes` first).
    leader: Option<Url>,
    /// Where the last refresh read databases (the leader, or the first node that answered)
    /// and their names: where tables are read next.
    database_source: Option<(Url, Vec<String>)>,
    tables: BTreeMap<String, Vec<String>>,
    tables_at: Option<Instant>,
}

impl Collector {
    /// A collector that starts from the node at `seed` (`source` is how the user wrote
    /// it, for the header) and talks through `client`.
    pub fn new(client: reqwest::Client, source: &str, seed: Url) -> Collector {
        Collector {
            client,
            source: source.to_string(),
            seed,
            members: Vec::new(),
            members_at: None,
            memory: HashMap::new(),
            leader: None,
            database_source: None,
            tables: BTreeMap::new(),
            tables_at: None,
        }
    }

    /// One refresh: every request bounded by `request_timeout`; the snapshot says
    /// `interval` in its header.
    pub async fn collect(&mut self, interval: Duration, request_timeout: Duration) -> Snapshot {
        let timeout = request_timeout.max(MIN_REQUEST_TIMEOUT);
        let targets: Vec<(Option<u64>, Url)> = if self.members.is_empty() {
            let id = self.memory.get(&self.seed).and_then(|m| m.id);
            vec![(id, self.seed.clone())]
        } else {
            self.members
                .iter()
                .map(|(id, url)| (Some(*id), url.clone()))
                .collect()
        };
        let nodes_from = self
            .leader
            .clone()
            .or_else(|| {
                targets
                    .iter()
                    .find(|(_, u)| self.memory.get(u).is_some_and(|m| m.up))
                    .map(|(_, u)| u.clone())
            })
            .unwrap_or_else(|| self.seed.clone());
        let members_due = self.members.is_empty()
            || self
                .members_at
                .is_none_or(|at| at.elapsed() >= MEMBERSHIP_EVERY);
        let tables_due = self.tables_at.is_none_or(|at| at.elapsed() >= TABLES_EVERY);
        let tables_from = self.database_source.clone().filter(|_| tables_due);

        let (listing, fetched, tables) = tokio::join!(
            async {
                if members_due {
                    let path = "nodes?ver=2&nonvoters";
                    // `/nodes` asks every member in turn (1 s each at most): a shorter
                    // timeout would never learn the members while one is a black hole.
                    let t = timeout.max(NODES_TIMEOUT);
                    Some(get_json(&self.client, &nodes_from, path, t).await)
                } else {
                    None
                }
            },
            fetch_nodes(
                &self.client,
                targets.iter().map(|(_, u)| u.clone()),
                timeout
            ),
            async {
                match &tables_from {
                    Some((url, names)) => {
                        Some(fetch_tables(&self.client, url, names, timeout).await)
                    }
                    None => None,
                }
            },
        );
        let mut answers: Vec<(Option<u64>, Url, Fetched)> = targets
            .into_iter()
            .zip(fetched)
            .map(|((id, url), f)| (id, url, f))
            .collect();
        if let Some(tables) = tables {
            self.tables_at = Some(Instant::now());
            for (name, list) in tables {
                self.tables.insert(name, list);
            }
        }

        // Members from /nodes; those not fetched yet (the first refresh) are fetched now.
        let mut membership_error = None;
        let listing = match listing {
            Some(Ok(v)) => Some(v),
            Some(Err((_, why))) => {
                let from = nodes_from.as_str().trim_end_matches('/');
                membership_error = Some(format!("membership (/nodes from {from}): {why}"));
                None
            }
            None => None,
        };
        let listed: Vec<(u64, Url)> = listing
            .map(|v| {
                model::members(&v)
                    .into_iter()
                    .filter_map(|(id, addr)| Some((id, base_url(&addr).ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        if !listed.is_empty() {
            let missing: Vec<(u64, Url)> = listed
                .iter()
                .filter(|(_, u)| !answers.iter().any(|(_, a, _)| a == u))
                .cloned()
                .collect();
            let more = fetch_nodes(
                &self.client,
                missing.iter().map(|(_, u)| u.clone()),
                timeout,
            )
            .await;
            answers.extend(
                missing
                    .into_iter()
                    .zip(more)
                    .map(|((id, url), f)| (Some(id), url, f)),
            );
            answers.retain(|(_, u, _)| listed.iter().any(|(_, l)| l == u));
            for (id, url, _) in &mut answers {
                if let Some((listed_id, _)) = listed.iter().find(|(_, l)| l == url) {
                    *id = Some(*listed_id);
                }
            }
            self.members = listed;
            self.members_at = Some(Instant::now());
        }

        let now = Instant::now();
        let mut inputs = Vec::with_capacity(answers.len());
        let mut leader = None;
        let mut database_source = None;
        for (id, url, fetched) in answers {
            let memory = self.memory.entry(url.clone()).or_default();
            memory.up = fetched.status.is_ok();
            if let Ok(status) = &fetched.status {
                memory.last_ok = Some(now);
                let view = StatusView::read(status);
                memory.id = view.id.or(memory.id);
                let names = view.databases.iter().map(|(n, _)| n.clone()).collect();
                if view.leads() {
                    leader = Some(url.clone());
                    database_source = Some((url.clone(), names));
                } else if database_source.is_none() {
                    database_source = Some((url.clone(), names));
                }
            }
            let load = match (&fetched.metrics, &memory.metrics) {
                (Some((at, now_m)), Some((then, then_m))) => {
                    Some(now_m.since(then_m, at.saturating_duration_since(*then)))
                }
                _ => None,
            };
            if fetched.metrics.is_some() {
                memory.metrics = fetched.metrics;
            }
            inputs.push(NodeInput {
                id: id.or(memory.id),
                api_addr: url.as_str().trim_end_matches('/').to_string(),
                status: fetched.status,
                load,
                last_seen: memory.last_ok.map(|t| now.saturating_duration_since(t)),
            });
        }
        self.leader = leader;
        if database_source.is_some() {
            self.database_source = database_source;
        }
        let mut snapshot = model::assemble(&self.source, interval, clock(), inputs, &self.tables);
        if self.members.is_empty() {
            snapshot.errors.extend(membership_error);
        }
        snapshot
    }
}

/// Now as `HH:MM:SS UTC`.
fn clock() -> String {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    stamp
        .get(11..19)
        .map_or(stamp.clone(), |t| format!("{t} UTC"))
}

/// [`fetch_node`] for every URL at once, in their order.
async fn fetch_nodes(
    client: &reqwest::Client,
    urls: impl Iterator<Item = Url>,
    timeout: Duration,
) -> Vec<Fetched> {
    let fetches = urls.map(|url| {
        let client = client.clone();
        async move { fetch_node(&client, &url, timeout).await }
    });
    all(fetches, || Fetched {
        status: Err((Reach::Error, "internal: the fetch task failed".into())),
        metrics: None,
    })
    .await
}

/// Runs `futures` concurrently and returns their outputs in order; `failed()` stands in
/// for one whose task panicked.
async fn all<T, F>(futures: impl Iterator<Item = F>, failed: impl Fn() -> T) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut n = 0;
    for (i, f) in futures.enumerate() {
        set.spawn(async move { (i, f.await) });
        n = i + 1;
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, value)) = joined {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(value);
            }
        }
    }
    out.into_iter().map(|v| v.unwrap_or_else(&failed)).collect()
}

/// `/status` and `/metrics` of one node, at once.
async fn fetch_node(client: &reqwest::Client, url: &Url, timeout: Duration) -> Fetched {
    let (status, metrics) = tokio::join!(
        get_json(client, url, "status", timeout),
        get_text(client, url, "metrics", timeout),
    );
    Fetched {
        status,
        metrics: metrics.map(|text| (Instant::now(), OpMetrics::parse(&text))),
    }
}

/// `GET base/path` as JSON, or why not: unreachable (no answer) or an error answer.
async fn get_json(
    client: &reqwest::Client,
    base: &Url,
    path: &str,
    timeout: Duration,
) -> Result<Value, (Reach, String)> {
    let url = base
        .join(path)
        .map_err(|e| (Reach::Error, format!("bad URL: {e}")))?;
    let response = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| (Reach::Unreachable, describe(&e, timeout)))?;
    let status = response.status();
    let body = crate::client::read_bounded(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| (Reach::Unreachable, describe(&e, timeout)))?
        .ok_or_else(|| {
            (
                Reach::Error,
                format!("the answer is over {MAX_ANSWER_BYTES} bytes"),
            )
        })?;
    if !status.is_success() {
        return Err((Reach::Error, api_error(status, &body)));
    }
    serde_json::from_slice(&body)
        .map_err(|e| (Reach::Error, format!("the answer is not JSON: {e}")))
}

/// `GET base/path` as text when it answers 200; `None` otherwise (`/metrics` is optional).
async fn get_text(
    client: &reqwest::Client,
    base: &Url,
    path: &str,
    timeout: Duration,
) -> Option<String> {
    let response = client
        .get(base.join(path).ok()?)
        .timeout(timeout)
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let body = crate::client::read_bounded(response, MAX_ANSWER_BYTES)
        .await
        .ok()??;
    String::from_utf8(body).ok()
}

/// The most of one answer the dashboard reads (`/status`, `/nodes` and `/metrics` are a
/// few KiB each): a node sending more is shown as an error, not held in memory.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// The tables of each database in `names` (the first [`MAX_TABLE_LISTS`]), read on the
/// node at `base`; databases whose query fails are left out (their last list stays).
async fn fetch_tables(
    client: &reqwest::Client,
    base: &Url,
    names: &[String],
    timeout: Duration,
) -> Vec<(String, Vec<String>)> {
    // The dashboard shows a screenful of databases: more would only add load to the node.
    let queries = names.iter().take(MAX_TABLE_LISTS).map(|name| {
        let (client, base, name) = (client.clone(), base.clone(), name.clone());
        async move { fetch_table_list(&client, &base, name, timeout).await }
    });
    all(queries, || None).await.into_iter().flatten().collect()
}

/// One database's tables, or `None` when the query fails.
async fn fetch_table_list(
    client: &reqwest::Client,
    base: &Url,
    name: String,
    timeout: Duration,
) -> Option<(String, Vec<String>)> {
    let mut url = base.join("db/query").ok()?;
    url.query_pairs_mut()
        .append_pair("db", &name)
        .append_pair("level", "none");
    let response = client
        .post(url)
        .timeout(timeout)
        .json(&json!([TABLES_SQL]))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    let values = body["results"][0]["values"].as_array()?;
    let tables = values
        .iter()
        .filter_map(|row| row[0].as_str().map(str::to_string))
        .collect();
    Some((name, tables))
}

/// Asks the leader at `leader` to hand leadership to another voter (`POST /leader`);
/// returns a line for the footer either way.
pub async fn step_down(client: &reqwest::Client, leader: &Url) -> String {
    let url = match leader.join("leader") {
        Ok(u) => u,
        Err(e) => return format!("step down failed: bad URL: {e}"),
    };
    let answer = client.post(url).timeout(STEP_DOWN_TIMEOUT).send().await;
    let response = match answer {
        Ok(r) => r,
        Err(e) => return format!("step down failed: {}", describe(&e, STEP_DOWN_TIMEOUT)),
    };
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    if !status.is_success() {
        return format!("step down failed: {}", api_error(status, &body));
    }
    let new_leader: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match new_leader["leader"]["id"].as_str() {
        Some(id) => format!("leadership handed to node {id}"),
        None => "the leader stepped down".to_string(),
    }
}

/// An error answer as one line: the API's `{"error", "code"}` when it sent one.
fn api_error(status: StatusCode, body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match parsed.as_ref().and_then(|v| v["error"].as_str()) {
        Some(error) => match parsed.as_ref().and_then(|v| v["code"].as_str()) {
            Some(code) => format!("HTTP {}: {error} ({code})", status.as_u16()),
            None => format!("HTTP {}: {error}", status.as_u16()),
        },
        None => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(120).collect();
            format!("HTTP {} {text}", status.as_u16())
        }
    }
}

/// A transport error as one line: the innermost cause (`Connection refused (os error
/// 111)`), or the timeout.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} ms", timeout.as_millis());
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_read_as_one_line() {
        let body = br#"{"error": "no other voter to hand leadership to", "code": "bad_request"}"#;
        assert_eq!(
            api_error(StatusCode::BAD_REQUEST, body),
            "HTTP 400: no other voter to hand leadership to (bad_request)"
        );
        assert_eq!(
            api_error(StatusCode::BAD_GATEWAY, b"  upstream\n"),
            "HTTP 502 upstream"
        );
    }
}
