//! TLS for test clusters: certificates the harness generates with `cairn_tls::pki`, one CA
//! for both ports, one certificate per node and port, and a client certificate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cairn_tls::pki::{CertificateAuthority, LOOPBACK_NAMES};
use cairn_tls::{HttpTls, NodeTls};

use crate::http::HttpClient;

/// Which TLS every node of a test cluster gets. Default: none (plain HTTP on both ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// HTTPS on every node's public port (`--http-cert`, `--http-key`, `--http-ca-cert`);
    /// the harness's clients trust the test CA.
    pub https: bool,
    /// `--http-verify-client` too (needs `https`): the harness's clients present
    /// [`TestPki::client_identity`].
    pub verify_client: bool,
    /// Mutual TLS between the nodes (`--node-cert`, `--node-key`, `--node-ca-cert`).
    pub node_mtls: bool,
}

impl TlsOptions {
    /// Whether any TLS is on.
    pub fn any(&self) -> bool {
        self.https || self.node_mtls
    }
}

/// A test CA (its key only in memory) and the files it issued under one directory:
/// `ca.pem`; `node-<id>-http.{pem,key}` and `node-<id>-raft.{pem,key}` per node (separate
/// pairs, so that a test can replace one port's certificate); `client.{pem,key}`.
/// Certificates name 127.0.0.1, ::1 and localhost.
pub struct TestPki {
    ca: CertificateAuthority,
    dir: PathBuf,
    opts: TlsOptions,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// A new CA in `dir` (created), with a client certificate.
    pub fn new(dir: &Path, opts: TlsOptions) -> Result<TestPki> {
        if opts.verify_client && !opts.https {
            anyhow::bail!("verify_client needs https");
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = CertificateAuthority::new("Cairn test CA")?;
        let pki = TestPki {
            ca,
            dir: dir.to_path_buf(),
            opts,
        };
        pki.ca.write_cert(&pki.ca_path())?;
        let (cert, key) = pki.client_identity();
        pki.issue_to(&cert, &key)?;
        Ok(pki)
    }

    /// The options the certificates were made for.
    pub fn options(&self) -> TlsOptions {
        self.opts
    }

    /// The CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA itself, to issue more certificates.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The client certificate and key files the CA issued.
    pub fn client_identity(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.pem"), self.dir.join("client.key"))
    }

    /// Writes a new certificate for the loopback names, signed by this CA, to `cert` and
    /// `key` (replacing them through a rename).
    pub fn issue_to(&self, cert: &Path, key: &Path) -> Result<()> {
        self.ca.issue(&LOOPBACK_NAMES)?.write(cert, key)?;
        Ok(())
    }

    fn pair(&self, id: u64, port: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = self.dir.join(format!("node-{id}-{port}.pem"));
        let key = self.dir.join(format!("node-{id}-{port}.key"));
        if !cert.exists() || !key.exists() {
            self.issue_to(&cert, &key)?;
        }
        Ok((cert, key))
    }

    /// Node `id`'s HTTPS settings (its files issued on first use), when the options ask
    /// for HTTPS.
    pub fn http_tls(&self, id: u64) -> Result<Option<HttpTls>> {
        if !self.opts.https {
            return Ok(None);
        }
        let (cert, key) = self.pair(id, "http")?;
        Ok(Some(HttpTls {
            cert,
            key,
            client_ca: Some(self.ca_path()),
            verify_client: self.opts.verify_client,
        }))
    }

    /// Node `id`'s node-TLS settings (its files issued on first use), when the options
    /// ask for node mTLS.
    pub fn node_tls(&self, id: u64) -> Result<Option<NodeTls>> {
        if !self.opts.node_mtls {
            return Ok(None);
        }
        let (cert, key) = self.pair(id, "raft")?;
        Ok(Some(NodeTls {
            cert,
            key,
            ca: self.ca_path(),
        }))
    }

    /// `cairn start` flags for node `id`'s TLS.
    pub fn flags(&self, id: u64) -> Result<Vec<String>> {
        let mut flags = Vec::new();
        let path = |p: &Path| p.display().to_string();
        if let Some(h) = self.http_tls(id)? {
            flags.extend(["--http-cert".into(), path(&h.cert)]);
            flags.extend(["--http-key".into(), path(&h.key)]);
            flags.extend(["--http-ca-cert".into(), path(&self.ca_path())]);
            if h.verify_client {
                flags.push("--http-verify-client".into());
            }
        }
        if let Some(n) = self.node_tls(id)? {
            flags.extend(["--node-cert".into(), path(&n.cert)]);
            flags.extend(["--node-key".into(), path(&n.key)]);
            flags.extend(["--node-ca-cert".into(), path(&n.ca)]);
        }
        Ok(flags)
    }

    /// The identity the harness's clients present: the client certificate with
    /// `verify_client`, none otherwise.
    pub fn harness_identity(&self) -> Option<(PathBuf, PathBuf)> {
        self.opts.verify_client.then(|| self.client_identity())
    }
}

/// The harness's request and poll clients: plain, or trusting the PKI's CA (and presenting
/// its client certificate with `verify_client`); both send `headers` (the harness user's
/// credentials on a cluster with `--auth`).
pub(crate) fn clients(
    pki: Option<&TestPki>,
    poll_timeout: std::time::Duration,
    headers: &reqwest::header::HeaderMap,
) -> Result<(HttpClient, HttpClient)> {
    let tls = pki
        .filter(|p| p.opts.https)
        .map(|p| (p.ca_path(), p.harness_identity()));
    let tls = || tls.as_ref().map(|(ca, id)| (ca.as_path(), id.clone()));
    Ok((
        HttpClient::configured(crate::http::REQUEST_TIMEOUT, tls(), headers.clone())?,
        HttpClient::configured(poll_timeout, tls(), headers.clone())?,
    ))
}

/// The harness's own user, added to a test's auth file: every permission, a random
/// password. Returns the file with it, and its credentials as headers.
pub(crate) fn with_harness_user(json: &str) -> Result<(String, reqwest::header::HeaderMap)> {
    let mut users: Vec<serde_json::Value> =
        serde_json::from_str(json).context("the auth file must be a JSON array")?;
    let password = format!("{:032x}", rand::random::<u128>());
    users.push(serde_json::json!({
        "username": HARNESS_USER, "password": password, "perms": ["all"],
    }));
    let headers = crate::http::basic_auth(HARNESS_USER, &password)?;
    Ok((serde_json::Value::Array(users).to_string(), headers))
}

/// The username of the harness's own user on clusters started with an auth file.
pub const HARNESS_USER: &str = "cairn-test-harness";
