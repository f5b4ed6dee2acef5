//! Throw-away security for local clusters (`cairn demo --tls --auth`, `cairn bench
//! --spawn-tls --spawn-auth`): a CA and a node certificate for HTTPS and node mutual TLS, and
//! an auth file with one administrator, all kept in the cluster's directory and reused by a
//! later run on it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_launch::{LaunchOptions, LaunchTls};
use cairn_tls::pki::{self, PkiFiles};

/// The administrator of a throw-away auth file.
pub const ADMIN: &str = "admin";

/// What a local cluster was given.
#[derive(Debug, Default)]
pub struct Secured {
    /// The CA clients must trust, with TLS.
    pub ca: Option<PathBuf>,
    /// The administrator's password (every permission), with auth.
    pub admin_password: Option<String>,
}

impl Secured {
    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.ca.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// A client for the cluster: trusting its CA, authenticating as the administrator.
    ///
    /// # Errors
    /// When the CA file cannot be read or the client cannot be built.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> anyhow::Result<reqwest::Client> {
        client(
            builder,
            self.ca.as_deref(),
            self.admin_password.as_deref().map(|p| (ADMIN, p)),
        )
    }
}

/// Sets `opts` up for HTTPS and node mutual TLS (`tls`) and users (`auth`) with files in
/// `root`, made on the first run and reused afterwards.
///
/// # Errors
/// When the certificates, the password or the auth file cannot be made or written.
pub fn secure(
    root: &Path,
    tls: bool,
    auth: bool,
    opts: &mut LaunchOptions,
) -> anyhow::Result<Secured> {
    let mut out = Secured::default();
    if tls {
        let files = local_pki(&root.join("tls"))?;
        opts.extra_args.extend(tls_flags(&files));
        opts.https = Some(LaunchTls {
            ca: files.ca.clone(),
            identity: None,
        });
        out.ca = Some(files.ca);
    }
    if auth {
        let (file, password) = local_auth(root)?;
        opts.extra_args
            .extend(["--auth".to_string(), file.display().to_string()]);
        out.admin_password = Some(password);
    }
    Ok(out)
}

/// A reqwest client trusting `ca` (when given, and nothing else) and sending HTTP Basic
/// credentials (when given) with every request.
///
/// # Errors
/// When the CA file cannot be read or the client cannot be built.
pub fn client(
    builder: reqwest::ClientBuilder,
    ca: Option<&Path>,
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = builder;
    if let Some(ca) = ca {
        let tls = cairn_tls::ClientTls::new(vec![ca.to_path_buf()], None)
            .and_then(|c| c.config())
            .with_context(|| format!("trusting {}", ca.display()))?;
        builder = builder.use_preconfigured_tls(tls);
    }
    if let Some((user, password)) = credentials {
        let authorization = cairn_auth::Credentials::new(user, password).authorization();
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&authorization)
            .context("credentials that fit a header")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    Ok(builder.build()?)
}

/// The CA and node certificate in `dir`: the ones a previous run left there, else new ones
/// (one CA for both ports; one certificate for every node, naming 127.0.0.1, ::1 and
/// localhost).
fn local_pki(dir: &Path) -> anyhow::Result<PkiFiles> {
    let kept = PkiFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
    };
    if kept.ca.exists() && kept.cert.exists() && kept.key.exists() {
        return Ok(kept);
    }
    pki::write_node_pki(dir, &pki::LOOPBACK_NAMES)
        .with_context(|| format!("generating certificates in {}", dir.display()))
}

/// `cairn start` flags for HTTPS and node mutual TLS with `files`.
fn tls_flags(files: &PkiFiles) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    [
        ("--http-cert", &files.cert),
        ("--http-key", &files.key),
        ("--http-ca-cert", &files.ca),
        ("--node-cert", &files.cert),
        ("--node-key", &files.key),
        ("--node-ca-cert", &files.ca),
    ]
    .into_iter()
    .flat_map(|(flag, p)| [flag.to_string(), path(p)])
    .collect()
}

/// `root/auth.json` with [`ADMIN`] (every permission, its password stored as an argon2id
/// hash) and `*` (`ready`, for health checks), and the administrator's password, kept in
/// `root/admin-password` (mode 0600) for the next run.
fn local_auth(root: &Path) -> anyhow::Result<(PathBuf, String)> {
    let file = root.join("auth.json");
    let kept = root.join("admin-password");
    if let (true, Ok(password)) = (file.exists(), std::fs::read_to_string(&kept)) {
        return Ok((file, password.trim().to_string()));
    }
    let password = format!("{:032x}", rand::random::<u128>());
    let hash = cairn_auth::hash_password(&password)?;
    let users = serde_json::json!([
        {"username": ADMIN, "password": hash, "perms": ["all"]},
        {"username": "*", "perms": ["ready"]},
    ]);
    write_private(&kept, &password)?;
    write_private(&file, &users.to_string())?;
    Ok((file, password))
}

/// [`cairn_server::write_private`], with the path in the error.
///
/// # Errors
/// When the file cannot be written.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    cairn_server::write_private(path, text).with_context(|| format!("writing {}", path.display()))
}
