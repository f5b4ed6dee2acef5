//! A small synchronous HTTP client for the rqlite-compatible API, and the replies it
//! returns.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use reqwest::Url;
use serde_json::Value;

/// How long a request may take before the client gives up. Writes during an election may
/// wait for a leader, so this is generous.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a connection attempt may take. Loopback connections are refused at once
/// when nothing listens, so this only matters for a wedged process.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

static NULL: Value = Value::Null;

/// A read consistency level, rqlite's `level` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Read the node's local database, whatever its state.
    None,
    /// Read on the node that believes it is the leader.
    Weak,
    /// Read on the leader after it confirms leadership with a quorum (Raft §6.4).
    Linearizable,
    /// Read through the Raft log.
    Strong,
}

impl Level {
    /// The query parameter value: `none`, `weak`, `linearizable` or `strong`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Weak => "weak",
            Level::Linearizable => "linearizable",
            Level::Strong => "strong",
        }
    }

    /// Every level, weakest first.
    pub const ALL: [Level; 4] = [Level::None, Level::Weak, Level::Linearizable, Level::Strong];
}

/// An HTTP reply: status, headers, the raw text, and the body parsed as JSON
/// (`Value::Null` when it is not JSON, e.g. `/readyz`).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code, e.g. 200.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body parsed as JSON, or `Value::Null`.
    pub body: Value,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A header's value, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `results` array of an execute/query reply, empty when absent.
    pub fn results(&self) -> &[Value] {
        self.body
            .get("results")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The result in `slot` (one per statement), `Value::Null` when absent.
    pub fn result(&self, slot: usize) -> &Value {
        self.results().get(slot).unwrap_or(&NULL)
    }

    /// The rows of the first result: its `values`, or an empty array when the result
    /// has none (rqlite omits `values` when no row matched).
    pub fn rows(&self) -> Value {
        self.result(0)
            .get("values")
            .cloned()
            .unwrap_or_else(|| Value::Array(Vec::new()))
    }

    /// The stable error `code` of an error reply, e.g. `database_not_found`.
    pub fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }

    /// The `error` message of an error reply.
    pub fn error(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    /// The `error` of every result slot that has one, as `(slot, message)`.
    pub fn slot_errors(&self) -> Vec<(usize, String)> {
        self.results()
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.get("error")
                    .map(|e| (i, e.as_str().map_or_else(|| e.to_string(), str::to_string)))
            })
            .collect()
    }

    /// Whether this is a 200 reply without any per-statement error.
    pub fn is_clean(&self) -> bool {
        self.status == 200 && self.slot_errors().is_empty() && self.error().is_none()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.text.trim_end())
    }
}

/// An `Authorization: Basic` header for `user` and `password` (RFC 7617), for
/// [`HttpClient::configured`].
///
/// # Errors
/// When the credentials cannot form a header value.
pub fn basic_auth(user: &str, password: &str) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        cairn_auth::Credentials::new(user, password)
            .authorization()
            .parse()
            .context("an Authorization header")?,
    );
    Ok(headers)
}

/// A blocking HTTP client with short timeouts that neither follows redirects (so tests
/// see a 301 as a 301), nor uses a proxy, nor keeps idle connections (a restarted node
/// reuses its port, and a pooled connection to the old process would fail).
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client,
}

impl HttpClient {
    /// A client with [`REQUEST_TIMEOUT`] and [`CONNECT_TIMEOUT`].
    pub fn new() -> Result<Self> {
        Self::with_timeout(REQUEST_TIMEOUT)
    }

    /// A client whose requests give up after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Result<Self> {
        Self::build(timeout, None, HeaderMap::new())
    }

    /// A client that authenticates every request as `user` with HTTP Basic, as rqlite's
    /// clients do against a node started with `--auth`.
    pub fn as_user(user: &str, password: &str) -> Result<Self> {
        Self::build(REQUEST_TIMEOUT, None, basic_auth(user, password)?)
    }

    /// A client like [`HttpClient::new`] for HTTPS: trusts the CA certificates in the PEM
    /// file `ca` (and nothing else), and presents `identity` (certificate file, key file)
    /// when a server asks for a client certificate. Both are read again when they change.
    pub fn with_ca(ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> Result<Self> {
        Self::with_ca_and_timeout(ca, identity, REQUEST_TIMEOUT)
    }

    /// [`HttpClient::with_ca`] whose requests give up after `timeout`.
    pub fn with_ca_and_timeout(
        ca: &Path,
        identity: Option<(PathBuf, PathBuf)>,
        timeout: Duration,
    ) -> Result<Self> {
        Self::configured(timeout, Some((ca, identity)), HeaderMap::new())
    }

    /// A client whose requests give up after `timeout`, trust `tls`'s CA (presenting its
    /// identity) when given, and carry `headers` (a request's own header of the same name
    /// wins), e.g. [`basic_auth`] credentials.
    pub fn configured(
        timeout: Duration,
        tls: Option<(&Path, Option<(PathBuf, PathBuf)>)>,
        headers: HeaderMap,
    ) -> Result<Self> {
        let tls = match tls {
            Some((ca, identity)) => Some(
                cairn_tls::ClientTls::new(vec![ca.to_path_buf()], identity)
                    .and_then(|c| c.config())
                    .with_context(|| format!("a TLS client trusting {}", ca.display()))?,
            ),
            None => None,
        };
        Self::build(timeout, tls, headers)
    }

    fn build(
        timeout: Duration,
        tls: Option<rustls::ClientConfig>,
        headers: HeaderMap,
    ) -> Result<Self> {
        let mut builder = Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .redirect(Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0);
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls(tls);
        }
        let client = builder.build().context("building the HTTP client")?;
        Ok(HttpClient { client })
    }

    /// `base` + `path` with `params` appended to the query string. A param with an empty
    /// value is appended as a bare key (`?transaction`, `&redirect`), the way rqlite's
    /// flags are written; others are form-encoded (`q=SELECT+1`).
    pub fn url(base: &str, path: &str, params: &[(&str, &str)]) -> Result<Url> {
        let mut url = Url::parse(&format!("{base}{path}"))
            .with_context(|| format!("bad URL {base}{path}"))?;
        if !params.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                if v.is_empty() {
                    q.append_key_only(k);
                } else {
                    q.append_pair(k, v);
                }
            }
        }
        Ok(url)
    }

    /// `GET base+path?params`.
    pub fn get(&self, base: &str, path: &str, params: &[(&str, &str)]) -> Result<Reply> {
        let url = Self::url(base, path, params)?;
        send(self.client.get(url.clone()), "GET", &url)
    }

    /// `POST base+path?params` with `body` as JSON.
    pub fn post(
        &self,
        base: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &Value,
    ) -> Result<Reply> {
        let url = Self::url(base, path, params)?;
        send(self.client.post(url.clone()).json(body), "POST", &url)
    }

    /// `PATCH base+path?params` with `body` as JSON.
    pub fn patch(
        &self,
        base: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &Value,
    ) -> Result<Reply> {
        let url = Self::url(base, path, params)?;
        send(self.client.patch(url.clone()).json(body), "PATCH", &url)
    }

    /// `POST base+path?params` with `body` sent as is, labelled `application/json`
    /// (to send malformed JSON).
    pub fn post_raw(
        &self,
        base: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply> {
        let url = Self::url(base, path, params)?;
        let req = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        send(req, "POST", &url)
    }

    /// `POST base+path?params` with `body` sent as is under `content_type`.
    pub fn post_bytes(
        &self,
        base: &str,
        path: &str,
        params: &[(&str, &str)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Reply> {
        let url = Self::url(base, path, params)?;
        let req = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        send(req, "POST", &url)
    }

    /// `GET base+path?params`, returning the status and the body's raw bytes.
    pub fn get_bytes(
        &self,
        base: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>)> {
        let url = Self::url(base, path, params)?;
        let resp = self
            .client
            .get(url.clone())
            .send()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .with_context(|| format!("reading the body of GET {url}"))?;
        Ok((status, bytes.to_vec()))
    }

    /// `POST base+path` with extra request headers and a JSON body.
    pub fn post_with_headers(
        &self,
        base: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<Reply> {
        let url = Self::url(base, path, &[])?;
        let mut req = self.client.post(url.clone()).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send(req, "POST", &url)
    }

    /// `DELETE base+path`, with `body` as JSON when given.
    pub fn delete(&self, base: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        let url = Self::url(base, path, &[])?;
        let mut req = self.client.delete(url.clone());
        if let Some(b) = body {
            req = req.json(b);
        }
        send(req, "DELETE", &url)
    }
}

fn send(req: RequestBuilder, method: &str, url: &Url) -> Result<Reply> {
    let resp = req.send().with_context(|| format!("{method} {url}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp
        .text()
        .with_context(|| format!("reading the body of {method} {url}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        headers,
        text,
        body,
    })
}
