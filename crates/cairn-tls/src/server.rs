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
        )
    }

    /// The raft port's config: the node certificate and key, and a client certificate
    /// signed by the node CA required from every peer.
    ///
    /// # Errors
    /// The file errors of [`TlsError`] when a file does not load now.
    pub fn node(tls: &NodeTls) -> Result<ServerTls, TlsError> {
        ServerTls::new(
            "node server certificate",
            tls.cert.clone(),
            tls.key.clone(),
            Some(tls.ca.clone()),
        )
    }

    fn new(
        what: &'static str,
        cert: PathBuf,
        key: PathBuf,
        client_ca: Option<PathBuf>,
    ) -> Result<ServerTls, TlsError> {
        let mut watched = vec![cert.clone(), key.clone()];
        watched.extend(client_ca.clone());
        let config = Reloading::new(what, watched, move || {
            build(&cert, &key, client_ca.as_deref())
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
    // Both ports speak HTTP/1.1 only (hyper's http1 server).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
