//! Reading PEM files into what rustls needs, with errors that name the file. PEM parsing
//! is rustls-pki-types' (`PemObject`).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Every certificate in a PEM file, in file order.
///
/// # Errors
/// [`TlsError::Read`], or [`TlsError::Pem`] for bad PEM or a file without a certificate.
pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no CERTIFICATE section"));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`TlsError::Read`], or [`TlsError::Pem`] for bad PEM or a file without a key.
pub(crate) fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => pem_err(path, "no PRIVATE KEY section"),
        e => pem_err(path, e),
    })
}

/// A certificate chain and its key, checked to belong together.
///
/// # Errors
/// Those of [`certs`] and [`key`]; [`TlsError::Rejected`] (naming the key file) for a key
/// the provider cannot load or that does not match the certificate.
pub(crate) fn certified_key(
    cert: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = certs(cert)?;
    let key = key(key_path)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Rejected {
        path: key_path.to_path_buf(),
        source,
    })
}

/// A root store of every certificate in the given CA files.
///
/// # Errors
/// Those of [`certs`]; [`TlsError::Rejected`] for a certificate that is not a usable
/// trust anchor.
pub(crate) fn roots(cas: &[&Path]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for ca in cas {
        for cert in certs(ca)? {
            store.add(cert).map_err(|source| TlsError::Rejected {
                path: ca.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(Arc::new(store))
}
