//! The web console at `/console` (issue 14, item 3).
//!
//! Without a browser: every asset is served with its Content-Type, the strict
//! Content-Security-Policy and `nosniff`, revalidated by ETag; unknown assets are the
//! API's JSON 404; the assets need no credentials under `--auth`, and a 401 answered to
//! the console's own API calls carries no `WWW-Authenticate` (so the browser's login
//! dialog does not cover the page's).
//!
//! In a real headless browser (Debian's chromium through chromedriver, driven by
//! fantoccini over plain HTTP on 127.0.0.1) against a 3-node in-process cluster: the page
//! shows three nodes and which one leads, creates a table, inserts a row through the SQL
//! editor, shows an SQL error as the API reports it, pages and filters the row browser,
//! and loads nothing from anywhere but the node. It saves a screenshot to
//! `target/console.png` and copies it to `docs/images/console.png` for the README.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_testkit::{free_port, wait_for, Cluster, ClusterOptions, TestCluster};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to listen, and the page to show what a step expects
/// (the cluster panel refreshes every 2 s; debug builds on a loaded 2-core machine).
const UI_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a wait looks at the page again.
const UI_POLL: Duration = Duration::from_millis(100);

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

fn header<'a>(r: &'a reqwest::blocking::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Every asset: 200 with its type, the policy, `nosniff`, `no-cache` and an ETag that
/// answers 304; the page loads no script or style inline and nothing from another site.
#[test]
fn every_asset_is_served_with_its_type_and_policy() {
    let c = TestCluster::start(1).expect("a node starts");
    let base = c.url(0);
    let client = http();

    let r = client
        .get(format!("{base}/console"))
        .send()
        .expect("GET /console");
    assert_eq!(r.status(), 308, "/console redirects");
    assert_eq!(header(&r, "location"), "/console/");

    for (path, ty) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/index.html", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let r = client.get(format!("{base}{path}")).send().expect(path);
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), ty, "{path}");
        assert_eq!(
            header(&r, "content-security-policy"),
            cairn_api::console::CSP,
            "{path}"
        );
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
        let etag = header(&r, "etag").to_string();
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag:?}");
        let body = r.text().expect("a text asset");
        assert!(!body.is_empty(), "{path}");
        // Nothing from a CDN or any other site: no absolute URL but the SVG namespace.
        let foreign: Vec<&str> = body
            .split(['"', '\'', '(', ')', ' '])
            .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
            .filter(|w| *w != "http://www.w3.org/2000/svg")
            .collect();
        assert!(foreign.is_empty(), "{path} refers to {foreign:?}");
        if ty.starts_with("text/html") {
            // Every script is a file (the policy forbids inline ones, and so does this).
            for tag in body.split("<script").skip(1) {
                let open = tag.split('>').next().unwrap_or("");
                assert!(
                    open.contains("src="),
                    "{path}: inline script <script{open}>"
                );
            }
            assert!(
                !body.contains(" style="),
                "{path}: an inline style attribute"
            );
            assert!(!body.contains(" onclick="), "{path}: an inline handler");
        }

        let again = client
            .get(format!("{base}{path}"))
            .header("if-none-match", &etag)
            .send()
            .expect(path);
        assert_eq!(again.status(), 304, "{path} with its ETag");
    }

    // Unknown assets, and what is not an asset, get the API's JSON 404.
    for path in [
        "/console/nope.js",
        "/console/app.js.map",
        "/console/%2e%2e/Cargo.toml",
        "/console/..%2fsrc%2fconsole.rs",
    ] {
        let r = client.get(format!("{base}{path}")).send().expect(path);
        assert_eq!(r.status(), 404, "{path}");
        assert!(
            header(&r, "content-type").starts_with("application/json"),
            "{path}"
        );
        let body: Value = r.json().expect("a JSON error");
        assert_eq!(body["code"], "no_route", "{path}: {body}");
    }
    let r = client
        .post(format!("{base}/console/app.js"))
        .send()
        .expect("POST");
    assert_eq!(r.status(), 405);
    let body: Value = r.json().expect("a JSON error");
    assert_eq!(body["code"], "method_not_allowed", "{body}");
}

/// Under `--auth` the assets need no credentials (like a login page), the API still does,
/// and the console's own calls get their 401 without `WWW-Authenticate`.
#[test]
fn the_console_is_public_and_its_calls_get_no_browser_prompt() {
    let users = json!([{"username": "ada", "password": "lovelace", "perms": ["all"]}]);
    let c = TestCluster::start_with(ClusterOptions {
        nodes: 1,
        auth: Some(users.to_string()),
        ..ClusterOptions::default()
    })
    .expect("a node with --auth starts");
    let base = c.url(0);
    let client = http();
    for path in ["/console/", "/console/app.js", "/console/style.css"] {
        let r = client.get(format!("{base}{path}")).send().expect(path);
        assert_eq!(r.status(), 200, "{path} without credentials");
    }
    // A cross-site link to the page is harmless: the page holds no data.
    let r = client
        .get(format!("{base}/console/"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .expect("GET");
    assert_eq!(r.status(), 200);

    let r = client
        .get(format!("{base}/status"))
        .send()
        .expect("GET /status");
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").starts_with("Basic"));

    let r = client
        .get(format!("{base}/status"))
        .header(cairn_api::console::REQUEST_HEADER, "1")
        .send()
        .expect("GET /status");
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "www-authenticate"), "", "no browser prompt");
    let body: Value = r.json().expect("a JSON error");
    assert_eq!(body["code"], "unauthorized", "{body}");

    let r = client
        .get(format!("{base}/status"))
        .header(cairn_api::console::REQUEST_HEADER, "1")
        .basic_auth("ada", Some("lovelace"))
        .send()
        .expect("GET /status");
    assert_eq!(r.status(), 200, "the page's Basic credentials work");
}

/// chromedriver as a child process, killed when dropped (also when the test panics).
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    fn start(dir: &Path) -> Result<Driver> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                bail!(
                    "{bin} is missing: the console test needs Debian's chromium and \
                     chromium-driver; run scripts/test.sh, which installs them"
                );
            }
        }
        let port = free_port()?;
        let log = dir.join("chromedriver.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        let mut driver = Driver { child, port, log };
        let url = driver.url();
        let client = http();
        wait_for(UI_TIMEOUT, "chromedriver to listen", || {
            if let Ok(Some(status)) = driver.child.try_wait() {
                return Err(format!("chromedriver exited: {status}"));
            }
            match client.get(format!("{url}/status")).send() {
                Ok(r) => match r.json::<Value>() {
                    Ok(v) if v["value"]["ready"] == true => Ok(()),
                    Ok(v) => Err(format!("not ready: {v}")),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            }
        })
        .with_context(|| driver.log_tail())?;
        Ok(driver)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("chromedriver's log:\n{}", lines[from..].join("\n"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless chromium that talks to nothing but 127.0.0.1: every host name resolves to
/// nothing, and the background services that would call out are off.
fn capabilities(profile: &Path) -> serde_json::Map<String, Value> {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1400,1200",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            ],
        },
    });
    match caps {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// Waits until `check` of what `script` returns gives `Ok`, polling the page every
/// [`UI_POLL`] for at most [`UI_TIMEOUT`]; fails with the last thing seen.
async fn wait_page<T>(
    b: &Client,
    what: &str,
    script: &str,
    mut check: impl FnMut(&Value) -> std::result::Result<T, String>,
) -> Result<T> {
    let deadline = Instant::now() + UI_TIMEOUT;
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        match b.execute(script, vec![]).await {
            Ok(v) => match check(&v) {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(UI_POLL).await;
    }
    bail!("waited {UI_TIMEOUT:?} for {what}; last saw: {last}")
}

/// Waits until the text of the element `css` satisfies `ok`; returns it.
async fn wait_text(b: &Client, css: &str, ok: impl Fn(&str) -> bool) -> Result<String> {
    let script = format!(
        "const e = document.querySelector({}); return e ? e.textContent : null;",
        json!(css)
    );
    wait_page(b, &format!("the text of {css}"), &script, |v| match v {
        Value::String(s) if ok(s) => Ok(s.clone()),
        other => Err(other.to_string()),
    })
    .await
}

async fn fill(b: &Client, css: &str, text: &str) -> Result<()> {
    let e = b.find(Locator::Css(css)).await?;
    e.clear().await?;
    e.send_keys(text).await?;
    Ok(())
}

async fn click(b: &Client, css: &str) -> Result<()> {
    b.find(Locator::Css(css)).await?.click().await?;
    Ok(())
}

/// `[[id, role, reachable], ...]` of the nodes table.
const NODE_ROWS: &str = "return Array.from(document.querySelectorAll('#nodes tbody tr'))\
    .map(r => [r.dataset.nodeId, r.dataset.role, r.dataset.reachable]);";

/// The leader's node ID as node `base` reports it (`GET /leader`).
async fn api_leader(base: &str) -> Result<u64> {
    let v: Value = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(format!("{base}/leader"))
        .send()
        .await?
        .json()
        .await?;
    v["leader"]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("GET /leader: {v}"))
}

/// Waits until the nodes table shows `ids`, all reachable, with the leader the API names
/// (asked of `base`, again on each look: an election on a loaded machine may move it) as
/// the only leader, also in the summary line; returns that leader's ID.
async fn wait_cluster(b: &Client, ids: &[u64], base: &str) -> Result<u64> {
    let deadline = Instant::now() + UI_TIMEOUT;
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        let leader = match api_leader(base).await {
            Ok(l) => l,
            Err(e) => {
                last = format!("{e:#}");
                tokio::time::sleep(UI_POLL).await;
                continue;
            }
        };
        let mut want: Vec<Value> = ids
            .iter()
            .map(|id| {
                let role = if *id == leader { "leader" } else { "follower" };
                json!([id.to_string(), role, "true"])
            })
            .collect();
        want.sort_by_key(|v| v.to_string());
        let rows = b.execute(NODE_ROWS, vec![]).await?;
        let shown = b
            .execute(
                "const e = document.getElementById('leader-id'); return e ? e.textContent : null;",
                vec![],
            )
            .await?;
        let mut sorted = rows.as_array().cloned().unwrap_or_default();
        sorted.sort_by_key(|v| v.to_string());
        if sorted == want && shown == json!(leader.to_string()) {
            return Ok(leader);
        }
        last = format!("rows {rows}, leader shown {shown}; want {want:?}");
        tokio::time::sleep(UI_POLL).await;
    }
    bail!("waited {UI_TIMEOUT:?} for three reachable nodes and one leader; last saw: {last}")
}

/// The nodes a tour visits, found before it starts (the harness's calls block, the
/// browser's are async).
struct Nodes {
    ids: Vec<u64>,
    follower_id: u64,
    leader_url: String,
    follower_url: String,
}

/// A call of the rqlite API from the test itself (not the page), to check what the page
/// did and to add rows; an error unless it answers 200 with no statement error.
async fn rqlite(base: &str, path: &str, body: Value) -> Result<Value> {
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    let failed = v["results"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r.get("error").is_some());
    if status != 200 || failed {
        bail!("POST {path}: {status} {v}");
    }
    Ok(v)
}

/// The whole tour, on the leader's console, then on a follower's.
async fn tour(b: &Client, n: &Nodes, shot: &Path) -> Result<()> {
    let base = n.leader_url.as_str();

    b.goto(&format!("{base}/console")).await?;
    let url = b.current_url().await?;
    assert_eq!(url.path(), "/console/", "the redirect to /console/");
    wait_cluster(b, &n.ids, base).await?;
    // Nothing but the node was asked for anything.
    let resources = b
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await?;
    for r in resources.as_array().into_iter().flatten() {
        let r = r.as_str().unwrap_or("");
        assert!(r.starts_with(base), "the page loaded {r}");
    }

    // An API error is shown as the API reports it.
    fill(b, "#new-db-name", "no-dashes").await?;
    click(b, "#create-db-button").await?;
    let err = wait_text(b, "#db-error", |t| t.contains("bad_identifier")).await?;
    assert!(err.contains("HTTP 400"), "{err}");

    // A table through the form.
    fill(b, "#new-table-name", "pets").await?;
    fill(
        b,
        "#new-table-columns",
        "id INTEGER PRIMARY KEY, name TEXT NOT NULL",
    )
    .await?;
    click(b, "#create-table-button").await?;
    let cols = wait_text(b, "#table-list tr[data-table=pets] td:nth-child(2)", |t| {
        !t.is_empty()
    })
    .await?;
    assert_eq!(cols, "id INTEGER PK, name TEXT NOT NULL");

    // A row through the SQL editor, with characters that mean something in HTML.
    let name = "Rex <b>&amp;</b>";
    fill(
        b,
        "#sql-text",
        &format!("INSERT INTO pets(name) VALUES ('{name}'); -- a comment; not a statement"),
    )
    .await?;
    click(b, "#sql-run").await?;
    wait_text(b, "#sql-results .write", |t| {
        t.starts_with("rows affected 1 · last insert id 1")
    })
    .await?;
    let timing = wait_text(b, "#sql-timing", |t| t.contains("API time")).await?;
    assert!(timing.starts_with("HTTP 200 · "), "{timing}");
    let read = rqlite(
        base,
        "/db/query?level=strong",
        json!(["SELECT id, name FROM pets"]),
    )
    .await?;
    assert_eq!(read["results"][0]["values"], json!([[1, name]]), "{read}");

    // A syntax error, in its statement's slot, with its code.
    fill(b, "#sql-text", "SELEC name FROM pets;").await?;
    click(b, "#sql-run").await?;
    let err = wait_text(b, "#sql-results .statement-error", |t| !t.is_empty()).await?;
    assert!(err.starts_with("sql_error: "), "{err}");
    assert!(err.contains("syntax error"), "{err}");

    // More rows, for paging.
    let more: Vec<Value> = (1..=30)
        .map(|i| json!(["INSERT INTO pets(name) VALUES(?)", format!("pet {i:02}")]))
        .collect();
    rqlite(base, "/db/execute", Value::Array(more)).await?;

    // The row browser: first page, next page, a filter.
    click(b, "#table-list tr[data-table=pets] button.browse").await?;
    wait_text(b, "#page-info", |t| t == "rows 1–25").await?;
    let first = wait_text(b, "#rows tbody tr:first-child td:nth-child(2)", |t| {
        !t.is_empty()
    })
    .await?;
    assert_eq!(first, name, "the name is text, not markup");
    let markup = b
        .execute(
            "return document.querySelectorAll('#rows b').length;",
            vec![],
        )
        .await?;
    assert_eq!(markup, json!(0), "a value became an element");
    click(b, "#next-page").await?;
    wait_text(b, "#page-info", |t| t == "rows 26–31").await?;
    fill(b, "#filter-value", "pet 3%").await?;
    b.find(Locator::Css("#filter-column option[value=name]"))
        .await?
        .click()
        .await?;
    b.find(Locator::Css("#filter-op option[value=like]"))
        .await?
        .click()
        .await?;
    click(b, "#add-filter").await?;
    wait_text(b, "#page-info", |t| t == "rows 1–1").await?;
    wait_text(b, "#rows tbody", |t| t.contains("pet 30")).await?;
    wait_text(b, "#rows-timing", |t| t.ends_with("ms round trip")).await?;

    // A result table in the editor, for the picture.
    fill(
        b,
        "#sql-text",
        "SELECT id, name FROM pets WHERE id <= 3 ORDER BY id;\nSELECT COUNT(*) AS pets FROM pets;",
    )
    .await?;
    click(b, "#sql-run").await?;
    wait_text(b, "#sql-results [data-statement='1'] td", |t| t == "31").await?;
    wait_cluster(b, &n.ids, base).await?;
    let png = b.screenshot().await?;
    std::fs::write(shot, &png).with_context(|| format!("writing {}", shot.display()))?;

    // A follower's console shows the same cluster and sends to the leader for replication.
    b.goto(&format!("{}/console/", n.follower_url)).await?;
    let leader = wait_cluster(b, &n.ids, &n.follower_url).await?;
    if leader != n.follower_id {
        wait_text(b, "#replication-note", |t| {
            t.contains("reported by the leader")
        })
        .await?;

        // A database created through a follower (forwarded), which only the leader drops:
        // the follower's answer is shown with a link to the leader's console.
        fill(b, "#new-db-name", "school").await?;
        click(b, "#create-db-button").await?;
        wait_text(b, "#current-db", |t| t == "school").await?;
        // The list is this replica's: the follower shows it once it has applied the create.
        wait_text(b, "#db-list tbody", |t| t.contains("school")).await?;
        click(b, "#db-list tr[data-db=school] button.drop-db").await?;
        b.accept_alert().await?;
        let err = wait_text(b, "#db-error", |t| t.contains("not_leader")).await?;
        assert!(err.starts_with("drop database school: HTTP 403 "), "{err}");
        let link = b
            .execute(
                "const a = document.querySelector('#db-error a'); return a ? a.href : null;",
                vec![],
            )
            .await?;
        let link = link.as_str().context("a link to the leader")?.to_string();
        assert!(link.ends_with("/console/"), "{link}");
        // On the leader's console (through the link), the drop succeeds.
        click(b, "#db-error a").await?;
        wait_cluster(b, &n.ids, &n.follower_url).await?;
        wait_text(b, "#db-list tbody", |t| t.contains("school")).await?;
        click(b, "#db-list tr[data-db=school] button.drop-db").await?;
        b.accept_alert().await?;
        wait_text(b, "#db-list tbody", |t| !t.contains("school")).await?;
        // The leader that dropped it lists it no more.
        let dbs = api_get(link.trim_end_matches("/console/"), "/v1/databases").await?;
        assert!(!dbs.to_string().contains("school"), "{dbs}");
    }
    Ok(())
}

async fn api_get(base: &str, path: &str) -> Result<Value> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(format!("{base}{path}"))
        .send()
        .await?
        .json()
        .await?)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    std::fs::create_dir_all(&target).expect("the target directory");
    target
}

/// A headless chromium session through its own chromedriver, with the runtime its async
/// calls run on. Dropping it closes the session and kills chromedriver (and with it the
/// browser), also when the test panics.
struct Browser {
    client: Client,
    rt: tokio::runtime::Runtime,
    driver: Driver,
    /// Where a failed step's screenshot goes (`target/console-<name>-failure.png`).
    failure_shot: PathBuf,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser session; panics with what to install when
    /// chromium or chromedriver are missing (the test must not pass silently).
    fn start(name: &str) -> Browser {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let driver = match Driver::start(dir.path()) {
            Ok(d) => d,
            Err(e) => panic!("{e:#}"),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let profile = dir.path().join("chromium-profile");
        let client = rt
            .block_on(
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities(&profile))
                    .connect(&driver.url()),
            )
            .unwrap_or_else(|e| panic!("a chromium session: {e}\n{}", driver.log_tail()));
        Browser {
            client,
            rt,
            driver,
            failure_shot: target_dir().join(format!("console-{name}-failure.png")),
            _dir: dir,
        }
    }

    /// Runs one step of a test in the browser; on failure saves what the page looked like
    /// and panics with the error and chromedriver's log.
    fn run<T>(&self, step: impl std::future::Future<Output = Result<T>>) -> T {
        match self.rt.block_on(step) {
            Ok(t) => t,
            Err(e) => {
                if let Ok(png) = self.rt.block_on(self.client.screenshot()) {
                    let _ = std::fs::write(&self.failure_shot, png);
                }
                panic!(
                    "{e:#}\n(the page: {})\n{}",
                    self.failure_shot.display(),
                    self.driver.log_tail()
                )
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(UI_TIMEOUT, client.close()).await });
    }
}

/// Replaces `raft.replication` in every `/status` the page fetches from now on with
/// `replication`, the shape the leader reports (`[{"node_id", "matched_index",
/// "lag_entries", "last_ack_ms"}]`): what the page draws from it does not depend on the
/// lag a healthy loopback cluster happens to have.
async fn fake_replication(b: &Client, replication: &Value) -> Result<()> {
    b.execute(
        "const rep = arguments[0]; const real = window.fetch;
         window.fetch = async (path, init) => {
           const resp = await real(path, init);
           if (!String(path).startsWith('/status')) return resp;
           const body = await resp.json();
           body.raft.replication = rep;
           return new Response(JSON.stringify(body), {status: resp.status, headers: resp.headers});
         };
         return true;",
        vec![replication.clone()],
    )
    .await?;
    Ok(())
}

/// `[[id, matched, lag, ack], ...]` of the nodes table, sorted by id.
const REPLICATION_CELLS: &str = "return Array.from(document.querySelectorAll('#nodes tbody tr'))\
    .map(r => [r.dataset.nodeId, r.querySelector('.matched').textContent,\
               r.querySelector('.lag').textContent, r.querySelector('.ack').textContent]);";

/// The tour (see the module docs), then live updates: the leader's replication report
/// drawn per follower, and a stopped follower shown unreachable within a few refreshes.
#[test]
fn the_console_shows_the_cluster_and_edits_data_in_a_browser() {
    let browser = Browser::start("tour");
    let mut c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader");
    let followers = c.followers().expect("followers");
    let nodes = Nodes {
        ids: c.ids(),
        follower_id: c.id(followers[0]),
        leader_url: c.url(leader),
        follower_url: c.url(followers[0]),
    };
    let shot = target_dir().join("console.png");
    let b = &browser.client;
    browser.run(tour(b, &nodes, &shot));
    let docs = workspace_root().join("docs/images");
    std::fs::create_dir_all(&docs).expect("docs/images");
    std::fs::copy(&shot, docs.join("console.png")).expect("copying the screenshot");

    // Replication as the leader reports it, one cell per follower.
    browser.run(async {
        b.goto(&format!("{}/console/", nodes.leader_url)).await?;
        // The leader now (an election on a loaded machine may have moved it).
        let leader_id = wait_cluster(b, &nodes.ids, &nodes.leader_url).await?;
        let others: Vec<u64> = nodes
            .ids
            .iter()
            .copied()
            .filter(|&id| id != leader_id)
            .collect();
        let (f1, f2) = (others[0], others[1]);
        let replication = json!([
            {"node_id": f1, "matched_index": 41, "lag_entries": 0, "last_ack_ms": 12},
            {"node_id": f2, "matched_index": null, "lag_entries": 250, "last_ack_ms": null},
        ]);
        fake_replication(b, &replication).await?;
        let mut want = vec![
            json!([leader_id.to_string(), "—", "—", "—"]),
            json!([f1.to_string(), "41", "0", "12 ms ago"]),
            json!([f2.to_string(), "—", "250", "—"]),
        ];
        want.sort_by_key(|v| v.to_string());
        wait_page(b, "the replication columns", REPLICATION_CELLS, |v| {
            let mut rows = v.as_array().cloned().unwrap_or_default();
            rows.sort_by_key(|v| v.to_string());
            if rows == want {
                Ok(())
            } else {
                Err(format!("{v}, want {want:?}"))
            }
        })
        .await?;
        let lagging = b
            .execute(
                &format!(
                    "return document.querySelector('#nodes tr[data-node-id=\"{f2}\"] .lag')\
                     .classList.contains('lag-high');"
                ),
                vec![],
            )
            .await?;
        assert_eq!(lagging, json!(true), "250 entries behind is marked");
        Ok(())
    });

    // A stopped follower turns unreachable on the next refreshes, without reloading.
    let stopped = followers[1];
    c.stop(stopped).expect("the follower stops");
    let id = c.id(stopped).to_string();
    browser.run(async {
        let script = format!(
            "const r = document.querySelector('#nodes tr[data-node-id=\"{id}\"]');\
             return r ? [r.dataset.reachable, r.querySelector('.reachable').textContent] : null;"
        );
        wait_page(b, "the stopped node unreachable", &script, |v| {
            if *v == json!(["false", "no"]) {
                Ok(())
            } else {
                Err(v.to_string())
            }
        })
        .await
    });
}

/// Under `--auth` the page asks for credentials itself when the API answers 401, sends
/// them as HTTP Basic, keeps them in `sessionStorage` only, and forgets them on log-out.
#[test]
fn the_console_logs_in_with_basic_credentials_under_auth() {
    let browser = Browser::start("login");
    let users = json!([{"username": "ada", "password": "lovelace", "perms": ["all"]}]);
    let c = TestCluster::start_with(ClusterOptions {
        nodes: 1,
        auth: Some(users.to_string()),
        ..ClusterOptions::default()
    })
    .expect("a node with --auth starts");
    let base = c.url(0);
    let b = &browser.client;
    const LOGIN_OPEN: &str = "return [document.getElementById('login').open,\
        document.getElementById('login-message').textContent];";
    browser.run(async {
        b.goto(&format!("{base}/console/")).await?;
        wait_page(b, "the login form", LOGIN_OPEN, |v| match v {
            Value::Array(a) if a[0] == true && a[1].as_str().is_some_and(|m| !m.is_empty()) => {
                Ok(())
            }
            other => Err(other.to_string()),
        })
        .await?;

        // A wrong password: the form comes back with the API's message.
        fill(b, "#login-user", "ada").await?;
        fill(b, "#login-password", "babbage").await?;
        click(b, "#login-button").await?;
        wait_page(b, "the login form again", LOGIN_OPEN, |v| match v {
            Value::Array(a) if a[0] == true => Ok(()),
            other => Err(other.to_string()),
        })
        .await?;

        fill(b, "#login-user", "ada").await?;
        fill(b, "#login-password", "lovelace").await?;
        click(b, "#login-button").await?;
        wait_page(b, "the node, as ada", NODE_ROWS, |v| {
            if *v == json!([["1", "leader", "true"]]) {
                Ok(())
            } else {
                Err(v.to_string())
            }
        })
        .await?;
        wait_text(b, "#who", |t| t == "user: ada").await?;
        wait_text(b, "#db-list tbody", |t| t.contains("main")).await?;
        let kept = b
            .execute(
                "return [sessionStorage.length > 0, localStorage.length, document.cookie];",
                vec![],
            )
            .await?;
        assert_eq!(
            kept,
            json!([true, 0, ""]),
            "credentials in sessionStorage only"
        );

        click(b, "#logout").await?;
        wait_page(
            b,
            "the login form after logging out",
            LOGIN_OPEN,
            |v| match v {
                Value::Array(a) if a[0] == true => Ok(()),
                other => Err(other.to_string()),
            },
        )
        .await?;
        let kept = b.execute("return sessionStorage.length;", vec![]).await?;
        assert_eq!(kept, json!(0), "logging out forgets the credentials");
        Ok(())
    });
}
