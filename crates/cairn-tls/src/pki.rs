//! A throw-away PKI for `cairn demo --tls` and tests: a CA generated in memory and
//! certificates it signs for a list of names, written as PEM files (keys mode 0600).
//! Keys are ECDSA P-256 (rcgen with ring); certificates are valid from 1975 to 4096
//! (rcgen's defaults: nothing here expires during a demo or a test run) and allow both
//! server and client use, as a node's certificate must.
//!
//! Not for production: the CA's key lives only in memory and is gone with the value.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Names a node certificate for a loopback cluster carries: `127.0.0.1`, `::1`,
/// `localhost`.
pub const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed (a name that is not a valid DNS name or IP address, for instance).
    #[error("generating {what}: {source}")]
    Generate {
        /// The certificate or key being made.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

fn generate(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Generate { what, source }
}

/// A certificate authority whose key lives only in this value.
pub struct CertificateAuthority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate (the leaf alone: the CA is the trust anchor).
    pub cert_pem: String,
    /// Its private key, PKCS#8.
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new CA whose certificate's common name is `name`.
    ///
    /// # Errors
    /// [`PkiError::Generate`].
    pub fn new(name: &str) -> Result<CertificateAuthority, PkiError> {
        let key = KeyPair::generate().map_err(generate("the CA key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(generate("the CA"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(generate("the CA"))?;
        Ok(CertificateAuthority { cert, key })
    }

    /// The CA certificate, PEM: what clients and peers trust.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate to `path` (mode 0644).
    ///
    /// # Errors
    /// [`PkiError::Write`].
    pub fn write_cert(&self, path: &Path) -> Result<(), PkiError> {
        write_file(path, self.cert_pem().as_bytes(), 0o644)
    }

    /// A certificate for `names` (IP addresses become IP SANs, anything else DNS SANs;
    /// the first is also the common name), usable as a server and as a client.
    ///
    /// # Errors
    /// [`PkiError::Generate`], e.g. for a name that is neither an IP nor a DNS name.
    pub fn issue(&self, names: &[&str]) -> Result<Issued, PkiError> {
        let what = format!("a certificate for {names:?}");
        let key = KeyPair::generate().map_err(generate(what.clone()))?;
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(generate(what.clone()))?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(generate(what))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Issued {
    /// Writes the certificate to `cert` (mode 0644) and the key to `key` (mode 0600), each
    /// through a temporary file renamed over the target, so that a reader (a reloading
    /// server) never sees half a file. The key is written first.
    ///
    /// # Errors
    /// [`PkiError::Write`].
    pub fn write(&self, cert: &Path, key: &Path) -> Result<(), PkiError> {
        write_file(key, self.key_pem.as_bytes(), 0o600)?;
        write_file(cert, self.cert_pem.as_bytes(), 0o644)
    }
}

/// The files [`write_node_pki`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFiles {
    /// The CA certificate, `DIR/ca.pem`.
    pub ca: PathBuf,
    /// The node certificate, `DIR/node.pem`.
    pub cert: PathBuf,
    /// Its key, `DIR/node.key` (mode 0600).
    pub key: PathBuf,
}

/// Writes a new CA (`ca.pem`) and one certificate it signs for `names` (`node.pem`,
/// `node.key`) into `dir`, created if missing. The CA's key is not kept.
///
/// # Errors
/// [`PkiError`].
pub fn write_node_pki(dir: &Path, names: &[&str]) -> Result<PkiFiles, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = CertificateAuthority::new("Cairn throw-away CA")?;
    let files = PkiFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
    };
    ca.write_cert(&files.ca)?;
    ca.issue(names)?.write(&files.cert, &files.key)?;
    Ok(files)
}

/// Writes `bytes` to a temporary file beside `path` with `mode`, fsyncs it and renames it
/// over `path`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    // `mode` applies only to a file created now; a leftover temporary file keeps its own.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}
