//! The server side of a port: a rustls `ServerConfig` rebuilt from its files when they
//! change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use tokio_rustls::TlsAcceptor;

use crate::files;
use crate::reload::Reloading;
use crate::{provider, HttpTls, NodeTls, TlsError};

/// The TLS server config of one port, reloaded from its files.
///
/// # Reloading
/// [`ServerTls::config`] (and so [`ServerTls::acceptor`], called once per accepted
/// connection) looks at the certificate, key and CA files at most once per
/// [`RELOAD_CHECK_INTERVAL`](crate::RELOAD_CHECK_INTERVAL) and builds a new config when
/// one of them changed; connections already open keep the config they were accepted with.
/// Replace a certificate and its key by writing new files and renaming them over the old
/// ones (the key first: a new certificate with the old key does not load, and is retried
/// when the key changes). A change that does not load is logged and the old config stays.
pub struct ServerTls {
    config: Reloading<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The public HTTP API's config: `cert` and `key`, and client certificates required
    /// (signed by `client_ca`) only when `verify_client` is set.
    ///
    /// # Errors
    /// [`TlsError::Config`] for `verify_client` without `client_ca`; the file errors of
    /// [`TlsError`] when a file does not load now.
    pub fn http(tls: &HttpTls) -> Result<ServerTls, TlsError> {
        let client_ca = match (tls.verify_client, &tls.client_ca) {
            (true, None) => {
                return Err(TlsError::Config(
                    "verifying HTTP clients needs the CA that signs their certificates".into(),
                ))
            }
            (true, Some(ca)) => Some(ca.clone()),
            (false, _) => None,
        };
        ServerTls::new(
            "HTTP server certificate",
            tls.cert.clone(),
            tls.key.clone(),
            client_ca,
            &[b"http/1.1"],
        )
    }

    /// The raft port's config: the node certificate and key, and a client certificate
    /// signed by the node CA required from every peer. It offers HTTP/2 (peers' RPCs) and
    /// HTTP/1.1 (their snapshot transfers).
    ///
    /// # Errors
    /// The file errors of [`TlsError`] when a file does not load now.
    pub fn node(tls: &NodeTls) -> Result<ServerTls, TlsError> {
        ServerTls::new(
            "node server certificate",
            tls.cert.clone(),
            tls.key.clone(),
            Some(tls.ca.clone()),
            &[b"h2", b"http/1.1"],
        )
    }

    fn new(
        what: &'static str,
        cert: PathBuf,
        key: PathBuf,
        client_ca: Option<PathBuf>,
        alpn: &'static [&'static [u8]],
    ) -> Result<ServerTls, TlsError> {
        let mut watched = vec![cert.clone(), key.clone()];
        watched.extend(client_ca.clone());
        let config = Reloading::new(what, watched, move || {
            build(&cert, &key, client_ca.as_deref(), alpn)
        })?;
        Ok(ServerTls { config })
    }

    /// The current config (see [Reloading](ServerTls#reloading)).
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.get()
    }

    /// An acceptor with the current config, for one connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }

    #[cfg(test)]
    pub(crate) fn check_always(self) -> Self {
        ServerTls {
            config: self.config.check_always(),
        }
    }
}

fn build(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let certified = files::certified_key(cert, key, &provider)?;
    let verifier = match client_ca {
        Some(ca) => {
            WebPkiClientVerifier::builder_with_provider(files::roots(&[ca])?, provider.clone())
                .build()
                .map_err(|e| TlsError::Pem {
                    path: ca.to_path_buf(),
                    reason: format!("not a usable client CA: {e}"),
                })?
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    // The public port speaks HTTP/1.1 only; the raft port HTTP/2 too (`cairn-server`'s
    // `ServeLimits::http2`).
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
