//! The client side: a rustls `ClientConfig` whose trusted CAs and presented certificate
//! are read again when their files change. The config itself is fixed (reqwest keeps the
//! one it is built with), so the reloading lives in its certificate resolver and server
//! verifier, which ask the shared [`Reloading`] material on every handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::files;
use crate::reload::Reloading;
use crate::{provider, HttpTls, NodeTls, TlsError};

/// What the client trusts and presents, as last loaded.
#[derive(Clone)]
struct Material {
    verifier: Arc<WebPkiServerVerifier>,
    identity: Option<Arc<CertifiedKey>>,
}

type Shared = Arc<Reloading<Material>>;

/// A client TLS config that trusts the given CA files and optionally presents a
/// certificate, all reloaded when the files change (checked at most once per
/// [`RELOAD_CHECK_INTERVAL`](crate::RELOAD_CHECK_INTERVAL), on a handshake). The server's
/// certificate must name the host or IP address dialled (a SAN).
pub struct ClientTls {
    material: Shared,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts every certificate in the `trust` PEM files; presents `identity`
    /// (certificate chain file, key file) when a server asks for a client certificate.
    ///
    /// # Errors
    /// [`TlsError::Config`] for an empty `trust`; the file errors of [`TlsError`] when a
    /// file does not load now.
    pub fn new(
        trust: Vec<PathBuf>,
        identity: Option<(PathBuf, PathBuf)>,
    ) -> Result<ClientTls, TlsError> {
        if trust.is_empty() {
            return Err(TlsError::Config(
                "a TLS client needs at least one CA to trust".into(),
            ));
        }
        let mut watched = trust.clone();
        if let Some((cert, key)) = &identity {
            watched.extend([cert.clone(), key.clone()]);
        }
        let material = Reloading::new("TLS client trust and certificate", watched, move || {
            load(&trust, identity.as_ref())
        })?;
        Ok(ClientTls {
            material: Arc::new(material),
        })
    }

    /// A node's client, for node-to-node traffic and its calls to peers' public APIs:
    /// trusts the node CA and the HTTP CA (`http.client_ca`), presents the node
    /// certificate (without node TLS, the HTTP certificate: a peer started with
    /// `verify_client` checks it against the HTTP CA). `None` when there is neither a node
    /// CA nor an HTTP CA: the node then speaks plain HTTP only.
    ///
    /// # Errors
    /// As [`ClientTls::new`].
    pub fn for_node(
        node: Option<&NodeTls>,
        http: Option<&HttpTls>,
    ) -> Result<Option<ClientTls>, TlsError> {
        let mut trust: Vec<PathBuf> = node.map(|n| n.ca.clone()).into_iter().collect();
        if let Some(ca) = http.and_then(|h| h.client_ca.clone()) {
            if !trust.contains(&ca) {
                trust.push(ca);
            }
        }
        if trust.is_empty() {
            return Ok(None);
        }
        let identity = node
            .map(|n| (n.cert.clone(), n.key.clone()))
            .or_else(|| http.map(|h| (h.cert.clone(), h.key.clone())));
        ClientTls::new(trust, identity).map(Some)
    }

    /// A rustls config sharing this client's reloading material, for reqwest's
    /// `use_preconfigured_tls` (HTTP/1.1 only).
    ///
    /// # Errors
    /// [`TlsError::Config`] if the provider has no usable protocol version (it has).
    pub fn config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            // Not a weakened check: `Verifier` hands every call to webpki's own verifier,
            // built from the CA files as they are now.
            .with_custom_certificate_verifier(Arc::new(Verifier(self.material.clone())))
            .with_client_cert_resolver(Arc::new(Identity(self.material.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn load(trust: &[PathBuf], identity: Option<&(PathBuf, PathBuf)>) -> Result<Material, TlsError> {
    let provider = provider();
    let cas: Vec<&Path> = trust.iter().map(PathBuf::as_path).collect();
    let verifier =
        WebPkiServerVerifier::builder_with_provider(files::roots(&cas)?, provider.clone())
            .build()
            .map_err(|e| TlsError::Pem {
                path: trust.first().cloned().unwrap_or_default(),
                reason: format!("not a usable CA: {e}"),
            })?;
    let identity = match identity {
        Some((cert, key)) => Some(Arc::new(files::certified_key(cert, key, &provider)?)),
        None => None,
    };
    Ok(Material { verifier, identity })
}

/// Presents the current certificate.
struct Identity(Shared);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.get().identity
    }

    fn has_certs(&self) -> bool {
        self.0.get().identity.is_some()
    }
}

/// Verifies servers with webpki's verifier over the current CAs.
struct Verifier(Shared);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.get().verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().verifier.supported_verify_schemes()
    }
}
