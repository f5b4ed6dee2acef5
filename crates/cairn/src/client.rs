//! What every client command (`cairn sql`, `cairn top`, `cairn status`, `cairn backup`,
//! `cairn restore`) needs to reach a node: its URL, credentials, the CA to trust, and a
//! bound on each request.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use reqwest::Url;

/// How to reach one node of a cluster, shared by the client commands.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// HTTP(S) URL of any node of the cluster; `http://` is assumed without a scheme.
    #[arg(long, default_value = "http://127.0.0.1:4001", env = "CAIRN_ADDR")]
    pub addr: String,
    /// HTTP Basic credentials (`USER:PASSWORD`) for nodes started with --auth.
    #[arg(long, short = 'u', env = "CAIRN_USER", hide_env_values = true)]
    pub user: Option<String>,
    /// The CA to trust for an https:// node (PEM).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// How long one HTTP request may take, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

impl ClientArgs {
    /// The node's base URL, e.g. `http://127.0.0.1:4001/`.
    ///
    /// # Errors
    /// When `--addr` is not an http:// or https:// URL.
    pub fn base_url(&self) -> anyhow::Result<Url> {
        base_url(&self.addr)
    }

    /// A client that trusts `--cacert`, sends `--user` with every request and gives up on
    /// a request after `--timeout-secs`. Redirects are not followed (a follower's 301 names
    /// the leader; callers decide). With an `https://` `--addr` it speaks HTTPS only.
    ///
    /// # Errors
    /// When `--addr` is not a URL, `--user` is not `USER:PASSWORD`, or the CA cannot be
    /// read.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let timeout = Duration::from_secs(self.timeout_secs.max(1));
        let credentials = match self.user.as_deref().map(|u| u.split_once(':')) {
            Some(Some(pair)) => Some(pair),
            Some(None) => bail!("--user takes USER:PASSWORD"),
            None => None,
        };
        // Given an https:// node, never send anything (credentials above all) over plain
        // HTTP to an address learned from the cluster (`/nodes`, a redirect).
        let https_only = self.base_url()?.scheme() == "https";
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(https_only)
            .no_proxy();
        crate::secure::client(builder, self.cacert.as_deref(), credentials)
            .context("building the HTTP client")
    }
}

/// The body of `response`, or `None` when it is longer than `max` bytes (read no further):
/// what a client command reads of a node's answer, so that a hostile or broken node cannot
/// fill memory within a timeout.
///
/// # Errors
/// When the connection fails while reading.
pub async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> reqwest::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(piece) = response.chunk().await? {
        if body.len() + piece.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&piece);
    }
    Ok(Some(body))
}

/// `addr` as a base URL (`http://` assumed without a scheme; a trailing `/` added).
///
/// # Errors
/// When it is not an http:// or https:// URL.
pub fn base_url(addr: &str) -> anyhow::Result<Url> {
    let with_scheme = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let mut url = Url::parse(&with_scheme).with_context(|| format!("{addr:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("{addr:?}: only http:// and https:// URLs are supported");
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_scheme_is_http() {
        assert_eq!(
            base_url("127.0.0.1:4001").expect("a URL").as_str(),
            "http://127.0.0.1:4001/"
        );
        assert!(base_url("ftp://x").is_err());
    }

    #[tokio::test]
    async fn given_an_https_node_the_client_never_speaks_plain_http() {
        let args = ClientArgs {
            addr: "https://127.0.0.1:4001".into(),
            user: Some("admin:secret".into()),
            cacert: None,
            timeout_secs: 1,
        };
        let client = args.client().expect("a client");
        // An address a hostile `/nodes` answer or redirect could name: refused before any
        // connection, so the credentials go nowhere.
        let err = client
            .get("http://127.0.0.1:9/status")
            .send()
            .await
            .expect_err("plain HTTP refused");
        assert!(err.is_builder(), "{err:?}");
    }
}
