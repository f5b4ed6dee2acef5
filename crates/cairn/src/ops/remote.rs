//! [`Remote`]: one HTTP client for a cluster that follows the leader, shared by `cairn sql`,
//! `cairn status`, `cairn backup` and `cairn restore`.
//!
//! A request goes to the node the client currently talks to. It is sent again, once, to
//! the leader when the first attempt certainly did not run:
//!
//! - the connection was refused (or could not be made): nothing was sent;
//! - a 301/307/308 named another node (a follower asked with `?redirect`);
//! - the API answered `no_leader`, `not_applied` (503) or `not_leader` (403): the README's
//!   table says the write was certainly not applied;
//! - for a request marked [`Retry::Idempotent`] (a read), also any other transport failure
//!   and 503 `unavailable`.
//!
//! A write that reached a node and whose answer was lost (503 `outcome_unknown`, a timeout or
//! a reset connection after sending) is not sent again: it may have been applied, and only
//! the user can tell whether running it twice is harmless. The caller reports it.
//!
//! The leader is found by asking every node the client knows of (the one it was given, the
//! ones `GET /nodes` listed, the leader a `/status` names) for `GET /status` until one says
//! `Leader`, for at most the client's timeout.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde_json::Value;

use crate::client::{base_url, ClientArgs};

/// How long one `/status` or `/nodes` poll of the leader search may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The pause between two rounds of the leader search (an election takes a few hundred ms).
const SEARCH_PAUSE: Duration = Duration::from_millis(150);

/// How long the leader search goes on while no known node answers at all (an election
/// among live nodes takes well under this; dead nodes do not come back by waiting).
const UNREACHABLE_GIVE_UP: Duration = Duration::from_secs(3);

/// The most nodes a client remembers: a hostile `/nodes` cannot make it poll thousands.
const MAX_KNOWN: usize = 64;

/// The most an answer read whole ([`Answer::bytes`], [`Answer::json`]) may hold: a node's
/// results are at most 32 MiB of rows (`cairn_sql::MAX_RESULT_BYTES`) and a dump to stdout
/// at most its database; a node sending more is not believed, and memory stays bounded.
const MAX_ANSWER_BYTES: usize = 1024 * 1024 * 1024;

/// The most of an error answer (403, 503) that is read: its JSON is a line or two.
const MAX_ERROR_BYTES: usize = 1024 * 1024;

/// Whether a failed request may be sent again when its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice is harmless (a read, a status request): retried once after any
    /// transport failure.
    Idempotent,
    /// A write: retried once only when it certainly did not run (see the module docs).
    WhenNotApplied,
}

/// An error a node answered, as `{"error": ..., "code": ...}` (or an HTTP status without
/// such a body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// The HTTP status.
    pub status: u16,
    /// The API's stable `code` (`no_leader`, `database_not_found`, ...), or `http_<status>`
    /// when the body has none.
    pub code: String,
    /// The API's `error` text (or the start of the body), on one line.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// Reads an error answer: the JSON `code` and `error` when the body has them, else the
    /// status and the body's first 200 characters.
    pub fn from_body(status: StatusCode, body: &[u8]) -> Self {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|j| j.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let code = field("code").unwrap_or_else(|| format!("http_{}", status.as_u16()));
        let message = field("error").unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            match text.trim() {
                "" => status.canonical_reason().unwrap_or("error").to_string(),
                t => t.to_string(),
            }
        });
        ApiFailure {
            status: status.as_u16(),
            code,
            message: one_line(&message),
        }
    }
}

/// `text` on one line: newlines and other control characters become spaces.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// A node's answer. Error answers that decide a retry (403, 503) were read already; any
/// other body is read on demand, so a large backup can be streamed.
#[derive(Debug)]
pub struct Answer {
    /// The node that answered.
    pub node: Url,
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Unread(reqwest::Response),
    Read(Option<Vec<u8>>),
}

impl Answer {
    /// The body's length when the node gave one (`Content-Length`), in bytes.
    pub fn content_length(&self) -> Option<u64> {
        match &self.body {
            Body::Unread(r) => r.content_length(),
            Body::Read(b) => b.as_ref().map(|b| b.len() as u64),
        }
    }

    /// The next piece of the body, `None` at its end.
    ///
    /// # Errors
    /// When the connection fails while reading.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>> {
        match &mut self.body {
            Body::Unread(r) => Ok(r
                .chunk()
                .await
                .with_context(|| format!("reading the answer of {}", self.node))?
                .map(|b| b.to_vec())),
            Body::Read(b) => Ok(b.take()),
        }
    }

    /// The whole body, up to 1 GiB.
    ///
    /// # Errors
    /// When the connection fails while reading, or the body is larger.
    pub async fn bytes(mut self) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(piece) = self.chunk().await? {
            if all.len() + piece.len() > MAX_ANSWER_BYTES {
                bail!(
                    "{} answered more than {} MiB; not read further",
                    self.node,
                    MAX_ANSWER_BYTES >> 20
                );
            }
            all.extend_from_slice(&piece);
        }
        Ok(all)
    }

    /// The body as JSON when the status is 2xx, else the node's error.
    ///
    /// # Errors
    /// [`ApiFailure`] for a non-2xx answer; an error when the body is not JSON.
    pub async fn json(self) -> Result<Value> {
        let status = self.status;
        let node = self.node.clone();
        let body = self.bytes().await?;
        if !status.is_success() {
            return Err(ApiFailure::from_body(status, &body).into());
        }
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "{node} answered {status} with a body that is not JSON: {}",
                one_line(&String::from_utf8_lossy(&body[..body.len().min(200)]))
            )
        })
    }
}

/// A client of one cluster that follows the leader; see the module docs.
#[derive(Debug)]
pub struct Remote {
    client: reqwest::Client,
    /// The node requests go to.
    current: Url,
    /// Every node heard of, `current` included, in the order learned.
    known: Vec<Url>,
    /// How long the leader search may take.
    search_timeout: Duration,
}

impl Remote {
    /// A client of the node `--addr` names, with `--user`, `--cacert` and `--timeout-secs`.
    /// Sends nothing yet.
    ///
    /// # Errors
    /// A bad `--addr`, `--user` or CA file.
    pub fn new(args: &ClientArgs) -> Result<Self> {
        let current = args.base_url()?;
        Ok(Remote {
            client: args.client()?,
            known: vec![current.clone()],
            current,
            search_timeout: Duration::from_secs(args.timeout_secs.clamp(1, 120)),
        })
    }

    /// The node requests go to, e.g. `http://127.0.0.1:4001/`.
    pub fn current(&self) -> &Url {
        &self.current
    }

    /// Makes `node` the one requests go to (and remembers it).
    pub fn set_current(&mut self, node: Url) {
        self.learn(node.clone());
        self.current = node;
    }

    /// The HTTP client (credentials, CA and timeout of the flags).
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    fn learn(&mut self, node: Url) {
        if !self.known.contains(&node) && self.known.len() < MAX_KNOWN {
            self.known.push(node);
        }
    }

    /// Learns every node of the cluster from `GET /nodes` of the current node (their
    /// `api_addr`). Returns the `/nodes` body.
    ///
    /// # Errors
    /// When the node does not answer or answers an error.
    pub async fn refresh_nodes(&mut self) -> Result<Value> {
        let url = self.current.join("nodes")?;
        let answer = self
            .send_once(self.client.get(url).timeout(PROBE_TIMEOUT))
            .await?;
        let nodes = answer.json().await?;
        for addr in api_addrs(&nodes) {
            if let Ok(url) = base_url(&addr) {
                self.learn(url);
            }
        }
        Ok(nodes)
    }

    async fn send_once(&self, request: RequestBuilder) -> Result<Answer> {
        let response = request.send().await?;
        let node = origin(response.url());
        let status = response.status();
        let headers = response.headers().clone();
        let body = if matches!(status.as_u16(), 403 | 503) {
            let mut response = response;
            let mut head = Vec::new();
            while let Some(piece) = response.chunk().await? {
                let room = MAX_ERROR_BYTES.saturating_sub(head.len());
                head.extend_from_slice(&piece[..piece.len().min(room)]);
                if head.len() >= MAX_ERROR_BYTES {
                    break;
                }
            }
            Body::Read(Some(head))
        } else {
            Body::Unread(response)
        };
        Ok(Answer {
            node,
            status,
            headers,
            body,
        })
    }

    /// Finds the leader and makes it the current node: asks every known node's
    /// `GET /status` until one says `Leader`, for at most the client's timeout (3 s when
    /// no node answers at all). Nodes a `/status` names as leader are added to the known
    /// ones.
    ///
    /// # Errors
    /// [`ApiFailure`] `no_leader` when no node says `Leader` in time (with what each node
    /// last said).
    pub async fn find_leader(&mut self) -> Result<Url> {
        let deadline = Instant::now() + self.search_timeout;
        // Bounded by the deadline, and by a count in case the clock misbehaves.
        let rounds = self.search_timeout.as_millis() / SEARCH_PAUSE.as_millis() + 2;
        let mut last = Vec::new();
        let started = Instant::now();
        for _ in 0..rounds {
            last.clear();
            let mut answered = false;
            let mut i = 0;
            while i < self.known.len() {
                // The deadline holds within a round too: many unreachable nodes, each
                // probed for seconds, must not stretch the search.
                if Instant::now() >= deadline {
                    break;
                }
                let node = self.known[i].clone();
                i += 1;
                match self.probe(&node).await {
                    Ok((true, _)) => {
                        self.set_current(node.clone());
                        let _ = self.refresh_nodes().await;
                        return Ok(node);
                    }
                    Ok((false, named)) => {
                        answered = true;
                        last.push(format!("{node}: follower"));
                        if let Some(leader) = named {
                            self.learn(leader);
                        }
                    }
                    Err(e) => last.push(format!("{node}: {}", one_line(&format!("{e:#}")))),
                }
            }
            // No node answering at all for a while: they are down, not electing.
            if Instant::now() + SEARCH_PAUSE > deadline
                || (!answered && started.elapsed() >= UNREACHABLE_GIVE_UP)
            {
                break;
            }
            tokio::time::sleep(SEARCH_PAUSE).await;
        }
        bail!(ApiFailure {
            status: 0,
            code: "no_leader".to_string(),
            message: format!(
                "no leader found in {:.1} s ({})",
                started.elapsed().as_secs_f64(),
                last.join("; ")
            ),
        })
    }

    /// Whether `node` says it leads, and the leader it names.
    async fn probe(&self, node: &Url) -> Result<(bool, Option<Url>)> {
        let request = self.client.get(node.join("status")?).timeout(PROBE_TIMEOUT);
        let status = self.send_once(request).await?.json().await?;
        let raft = status.get("raft").unwrap_or(&Value::Null);
        let leads = raft.get("state").and_then(Value::as_str) == Some("Leader");
        let named = raft
            .get("leader_api_addr")
            .and_then(Value::as_str)
            .and_then(|a| base_url(a).ok());
        Ok((leads, named))
    }

    /// Sends the request `build` makes for a node (given its base URL) to the current
    /// node, and once more to the leader when the first attempt certainly did not run
    /// (any failure for [`Retry::Idempotent`]); see the module docs. Returns the answer,
    /// whatever its status, except those that led to the retry.
    ///
    /// # Errors
    /// [`ApiFailure`]s made on this side: `unavailable` when neither attempt got an
    /// answer, `no_leader` when no leader is found for the retry, `outcome_unknown` when a
    /// write's answer was lost (the message says it may have been applied).
    pub async fn send(
        &mut self,
        retry: Retry,
        build: impl Fn(&reqwest::Client, &Url) -> Result<RequestBuilder>,
    ) -> Result<Answer> {
        let first = self.attempt(retry, &build).await?;
        let why = match first {
            Attempt::Answered(answer) => return Ok(*answer),
            Attempt::Moved(node) => {
                self.set_current(node);
                None
            }
            Attempt::Again(why) => Some(why),
        };
        if let Some(why) = why {
            self.find_leader()
                .await
                .with_context(|| format!("after {why}"))?;
        }
        match self.attempt(retry, &build).await? {
            Attempt::Answered(answer) => Ok(*answer),
            Attempt::Moved(node) => bail!("{} redirected again, to {node}", self.current),
            Attempt::Again(why) => Err(ApiFailure {
                status: 0,
                code: "unavailable".to_string(),
                message: format!("tried twice: {why}"),
            }
            .into()),
        }
    }

    async fn attempt(
        &self,
        retry: Retry,
        build: &impl Fn(&reqwest::Client, &Url) -> Result<RequestBuilder>,
    ) -> Result<Attempt> {
        let node = self.current.clone();
        let answer = match self.send_once(build(&self.client, &node)?).await {
            Ok(answer) => answer,
            Err(e) => {
                let connect = e
                    .downcast_ref::<reqwest::Error>()
                    .is_some_and(reqwest::Error::is_connect);
                let text = one_line(&format!("{e:#}"));
                if connect || retry == Retry::Idempotent {
                    return Ok(Attempt::Again(format!("{node} failed: {text}")));
                }
                bail!(ApiFailure {
                    status: 0,
                    code: "outcome_unknown".to_string(),
                    message: format!(
                        "the request reached {node} and its answer was lost ({text}): it may \
                         have been applied; not retried (read to find out)"
                    ),
                });
            }
        };
        if answer.status.is_redirection() {
            let moved = answer
                .headers
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| node.join(l).ok())
                .map(|l| origin(&l));
            return Ok(match moved {
                Some(to) if to != node => Attempt::Moved(to),
                _ => Attempt::Answered(Box::new(answer)),
            });
        }
        if matches!(answer.status.as_u16(), 403 | 503) {
            let Body::Read(Some(body)) = &answer.body else {
                return Ok(Attempt::Answered(Box::new(answer)));
            };
            let failure = ApiFailure::from_body(answer.status, body);
            let not_run = matches!(
                failure.code.as_str(),
                "no_leader" | "not_applied" | "not_leader"
            );
            let unavailable = failure.code == "unavailable" && retry == Retry::Idempotent;
            if not_run || unavailable {
                return Ok(Attempt::Again(format!("{node} answered {failure}")));
            }
        }
        Ok(Attempt::Answered(Box::new(answer)))
    }
}

enum Attempt {
    Answered(Box<Answer>),
    Moved(Url),
    Again(String),
}

/// `url` without its path, query and fragment: the node's base URL.
fn origin(url: &Url) -> Url {
    let mut base = url.clone();
    base.set_path("/");
    base.set_query(None);
    base.set_fragment(None);
    base
}

/// The `api_addr` of every node in a `GET /nodes` body (an object keyed by node ID, or
/// `?ver=2`'s `{"nodes": [...]}`).
pub fn api_addrs(nodes: &Value) -> Vec<String> {
    let list: Vec<&Value> = match nodes.get("nodes").and_then(Value::as_array) {
        Some(array) => array.iter().collect(),
        None => nodes
            .as_object()
            .map(|o| o.values().collect())
            .unwrap_or_default(),
    };
    list.iter()
        .filter_map(|n| n.get("api_addr").and_then(Value::as_str))
        .map(str::to_string)
        .take(MAX_KNOWN)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn an_error_body_gives_its_code_and_message_on_one_line() {
        let f = ApiFailure::from_body(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"error": "no leader\nknown", "code": "no_leader"}"#,
        );
        assert_eq!(f.to_string(), "no_leader: no leader known");
        let f = ApiFailure::from_body(StatusCode::BAD_GATEWAY, b"upstream\r\nbroke");
        assert_eq!(f.to_string(), "http_502: upstream  broke");
        let f = ApiFailure::from_body(StatusCode::NOT_FOUND, b"");
        assert_eq!(f.to_string(), "http_404: Not Found");
    }

    /// What a fake node does with one request.
    #[derive(Clone)]
    enum Reply {
        /// Answers with this status and JSON body.
        Json(u16, Value),
        /// Reads the request and closes the connection without answering.
        Hang,
    }

    type Routes = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

    /// A fake node on 127.0.0.1: answers each request by `routes(method, path)` and
    /// records `METHOD path` of every request it read.
    struct Fake {
        url: Url,
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        async fn start(routes: Routes) -> Fake {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&seen);
            tokio::spawn(async move {
                // Ends with the test's runtime.
                while let Ok((socket, _)) = listener.accept().await {
                    let routes = Arc::clone(&routes);
                    let log = Arc::clone(&log);
                    tokio::spawn(serve(socket, routes, log));
                }
            });
            Fake {
                url: base_url(&addr.to_string()).expect("url"),
                seen,
            }
        }

        fn seen(&self, what: &str) -> usize {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.iter().filter(|s| s.as_str() == what).count()
        }
    }

    async fn serve(mut socket: TcpStream, routes: Routes, log: Arc<Mutex<Vec<String>>>) {
        let mut buf = Vec::new();
        let mut piece = [0u8; 4096];
        // One request per connection; bounded by its size.
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match socket.read(&mut piece).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&piece[..n]),
            }
            if buf.len() > 1 << 20 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match socket.read(&mut piece).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&piece[..n]),
            }
        }
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let target = words.next().unwrap_or("");
        let path = target.split('?').next().unwrap_or("").to_string();
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{method} {path}"));
        match routes(&method, &path) {
            Reply::Hang => {}
            Reply::Json(status, body) => {
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        }
    }

    fn leader_node() -> Routes {
        Arc::new(|method, path| match (method, path) {
            ("GET", "/status") => Reply::Json(200, json!({"raft": {"state": "Leader"}})),
            ("GET", "/nodes") => Reply::Json(200, json!({})),
            ("POST", "/db/request") => Reply::Json(200, json!({"results": [{"rows_affected": 1}]})),
            _ => Reply::Json(404, json!({"error": "no route", "code": "no_route"})),
        })
    }

    /// A follower that answers `/db/request` with `answer` and names `leader`.
    fn follower_node(leader: &Url, answer: Reply) -> Routes {
        let leader = leader.to_string();
        Arc::new(move |method, path| match (method, path) {
            ("GET", "/status") => Reply::Json(
                200,
                json!({"raft": {"state": "Follower", "leader_api_addr": leader}}),
            ),
            ("GET", "/nodes") => Reply::Json(200, json!({})),
            ("POST", "/db/request") => answer.clone(),
            _ => Reply::Json(404, json!({"error": "no route", "code": "no_route"})),
        })
    }

    fn remote_of(url: &Url) -> Remote {
        let args = ClientArgs {
            addr: url.to_string(),
            user: None,
            cacert: None,
            timeout_secs: 5,
        };
        Remote::new(&args).expect("a client")
    }

    fn write() -> impl Fn(&reqwest::Client, &Url) -> Result<RequestBuilder> {
        |c, n| {
            Ok(c.post(n.join("db/request")?)
                .json(&json!(["INSERT INTO t VALUES (1)"])))
        }
    }

    #[tokio::test]
    async fn a_write_refused_for_want_of_a_leader_is_sent_once_more_to_the_leader() {
        let leader = Fake::start(leader_node()).await;
        let no_leader = json!({"error": "no leader", "code": "no_leader"});
        let follower = Fake::start(follower_node(&leader.url, Reply::Json(503, no_leader))).await;
        let mut remote = remote_of(&follower.url);
        let answer = remote
            .send(Retry::WhenNotApplied, write())
            .await
            .expect("sent");
        assert_eq!(answer.node, leader.url);
        assert_eq!(
            answer.json().await.expect("JSON")["results"][0]["rows_affected"],
            1
        );
        assert_eq!(follower.seen("POST /db/request"), 1);
        assert_eq!(leader.seen("POST /db/request"), 1);
        assert_eq!(
            remote.current(),
            &leader.url,
            "later requests go to the leader"
        );
    }

    #[tokio::test]
    async fn a_write_whose_answer_was_lost_is_not_sent_again() {
        let leader = Fake::start(leader_node()).await;
        let unknown = json!({"error": "lost", "code": "outcome_unknown"});
        let follower = Fake::start(follower_node(&leader.url, Reply::Json(503, unknown))).await;
        let mut remote = remote_of(&follower.url);
        let answer = remote
            .send(Retry::WhenNotApplied, write())
            .await
            .expect("answered");
        let failure = answer.json().await.expect_err("an error");
        assert_eq!(
            failure
                .downcast_ref::<ApiFailure>()
                .map(|f| f.code.as_str()),
            Some("outcome_unknown")
        );

        // The connection closed after the request was sent: the same, on the client side.
        let hanging = Fake::start(follower_node(&leader.url, Reply::Hang)).await;
        let mut remote = remote_of(&hanging.url);
        let e = remote
            .send(Retry::WhenNotApplied, write())
            .await
            .expect_err("lost");
        let f = e.downcast_ref::<ApiFailure>().expect("an API failure");
        assert_eq!(f.code, "outcome_unknown", "{f}");
        assert!(f.message.contains("may have been applied"), "{f}");
        assert_eq!(follower.seen("POST /db/request"), 1);
        assert_eq!(hanging.seen("POST /db/request"), 1);
        assert_eq!(leader.seen("POST /db/request"), 0, "never sent again");

        // A read may be asked again: it goes to the leader.
        let mut remote = remote_of(&hanging.url);
        let answer = remote
            .send(Retry::Idempotent, |c, n| Ok(c.post(n.join("db/request")?)))
            .await
            .expect("the read is retried");
        assert_eq!(answer.node, leader.url);
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_on_a_node_that_answers() {
        let leader = Fake::start(leader_node()).await;
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            base_url(&l.local_addr().expect("address").to_string()).expect("url")
        };
        let mut remote = remote_of(&leader.url);
        remote.set_current(dead.clone());
        let answer = remote
            .send(Retry::WhenNotApplied, write())
            .await
            .expect("sent");
        assert_eq!(answer.node, leader.url);
        assert_eq!(leader.seen("POST /db/request"), 1);

        // No node answering at all: an error soon, not after the whole timeout.
        let mut alone = remote_of(&dead);
        let started = Instant::now();
        let e = alone
            .send(Retry::WhenNotApplied, write())
            .await
            .expect_err("no node");
        assert!(format!("{e:#}").contains("no leader found"), "{e:#}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn nodes_bodies_of_both_versions_give_their_addresses() {
        let v1 = json!({"1": {"api_addr": "http://a:1"}, "2": {"api_addr": "http://b:2"}});
        assert_eq!(api_addrs(&v1), vec!["http://a:1", "http://b:2"]);
        let v2 = json!({"nodes": [{"id": "1", "api_addr": "http://c:3"}]});
        assert_eq!(api_addrs(&v2), vec!["http://c:3"]);
        assert!(api_addrs(&json!("hostile")).is_empty());
    }
}
