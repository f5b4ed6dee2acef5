//! Handshakes between the configs this crate builds, over in-memory pipes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::pki::{CertificateAuthority, Issued, LOOPBACK_NAMES};
use crate::{ClientTls, HttpTls, NodeTls, ServerTls, TlsError};

struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateAuthority,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::new("test CA").expect("CA");
        ca.write_cert(&dir.path().join("ca.pem")).expect("write CA");
        Pki { dir, ca }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a loopback certificate and writes `<name>.pem` and `<name>.key`.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        self.ca
            .issue(&LOOPBACK_NAMES)
            .expect("issue")
            .write(&cert, &key)
            .expect("write");
        (cert, key)
    }
}

fn leaf_der(cert: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(cert).expect("a certificate")
}

/// One handshake of `client` with `server` (dialling 127.0.0.1), then a byte each way.
/// Returns the certificate the server presented, or the handshake's error in words.
async fn handshake(
    server: &ServerTls,
    client: rustls::ClientConfig,
) -> Result<CertificateDer<'static>, String> {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let acceptor = server.acceptor();
    let serving = tokio::spawn(async move {
        let mut tls = acceptor.accept(s).await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        tls.write_all(&b).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    });
    let connector = TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let result = async {
        let mut tls = connector
            .connect(name, c)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"x").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        // TLS 1.3: a refused client certificate shows up here, after the client's side
        // of the handshake completed.
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
            .ok_or_else(|| "no server certificate".to_string())
    }
    .await;
    let served = serving.await.map_err(|e| e.to_string())?;
    match (result, served) {
        (Ok(cert), Ok(())) => Ok(cert),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

fn trusting(ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> rustls::ClientConfig {
    ClientTls::new(vec![ca.to_path_buf()], identity)
        .expect("client")
        .config()
        .expect("config")
}

#[tokio::test]
async fn https_without_client_certificates() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("http");
    let server = ServerTls::http(&HttpTls {
        cert: cert.clone(),
        key,
        client_ca: None,
        verify_client: false,
    })
    .expect("server");
    let served = handshake(&server, trusting(&pki.path("ca.pem"), None)).await;
    assert_eq!(served, Ok(leaf_der(&cert)));

    let other = Pki::new();
    let refused = handshake(&server, trusting(&other.path("ca.pem"), None)).await;
    assert!(
        refused.is_err(),
        "a client trusting another CA refuses the server"
    );
}

#[tokio::test]
async fn verify_client_needs_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("http");
    let (client_cert, client_key) = pki.issue("client");
    let ca = pki.path("ca.pem");
    let server = ServerTls::http(&HttpTls {
        cert,
        key,
        client_ca: Some(ca.clone()),
        verify_client: true,
    })
    .expect("server");
    assert!(handshake(&server, trusting(&ca, None)).await.is_err());
    let rogue = Pki::new();
    let (rogue_cert, rogue_key) = rogue.issue("rogue");
    assert!(
        handshake(&server, trusting(&ca, Some((rogue_cert, rogue_key))))
            .await
            .is_err()
    );
    assert!(
        handshake(&server, trusting(&ca, Some((client_cert, client_key))))
            .await
            .is_ok()
    );
}

#[test]
fn verify_client_without_a_ca_is_refused() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("http");
    let e = ServerTls::http(&HttpTls {
        cert,
        key,
        client_ca: None,
        verify_client: true,
    })
    .expect_err("no CA");
    assert!(matches!(e, TlsError::Config(_)), "{e}");
}

#[tokio::test]
async fn node_tls_is_always_mutual() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("node1");
    let node = NodeTls {
        cert: cert.clone(),
        key: key.clone(),
        ca: pki.path("ca.pem"),
    };
    let server = ServerTls::node(&node).expect("server");
    let peer = ClientTls::for_node(Some(&node), None)
        .expect("client")
        .expect("node TLS gives a client");
    assert_eq!(
        handshake(&server, peer.config().expect("config")).await,
        Ok(leaf_der(&cert))
    );
    assert!(
        handshake(&server, trusting(&pki.path("ca.pem"), None))
            .await
            .is_err(),
        "no client certificate"
    );
    let rogue = Pki::new();
    let (rogue_cert, rogue_key) = rogue.issue("rogue");
    let rogue_node = NodeTls {
        cert: rogue_cert,
        key: rogue_key,
        // It even trusts the real CA: its own certificate is what gives it away.
        ca: pki.path("ca.pem"),
    };
    let rogue_client = ClientTls::for_node(Some(&rogue_node), None)
        .expect("client")
        .expect("client");
    assert!(handshake(&server, rogue_client.config().expect("config"))
        .await
        .is_err());
}

#[tokio::test]
async fn a_changed_certificate_is_served_without_a_restart() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("http");
    let server = ServerTls::http(&HttpTls {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
        verify_client: false,
    })
    .expect("server")
    .check_always();
    let first = leaf_der(&cert);
    assert_eq!(
        handshake(&server, trusting(&pki.path("ca.pem"), None)).await,
        Ok(first.clone())
    );
    let next = Pki::new();
    next.ca
        .issue(&LOOPBACK_NAMES)
        .expect("issue")
        .write(&cert, &key)
        .expect("write");
    let second = leaf_der(&cert);
    assert_ne!(first, second);
    assert_eq!(
        handshake(&server, trusting(&next.path("ca.pem"), None)).await,
        Ok(second)
    );
}

#[tokio::test]
async fn a_half_written_certificate_keeps_the_old_one() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("http");
    let server = ServerTls::http(&HttpTls {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
        verify_client: false,
    })
    .expect("server")
    .check_always();
    let old = leaf_der(&cert);
    let client = || trusting(&pki.path("ca.pem"), None);
    // Half of a new certificate, as a writer that is not done yet leaves it.
    let next: Issued = Pki::new().ca.issue(&LOOPBACK_NAMES).expect("issue");
    let half = &next.cert_pem[..next.cert_pem.len() / 2];
    std::fs::write(&cert, half).expect("write half");
    assert_eq!(handshake(&server, client()).await, Ok(old.clone()));
    std::fs::write(&cert, "garbage, not PEM\n").expect("write garbage");
    assert_eq!(handshake(&server, client()).await, Ok(old.clone()));
    // A whole new certificate with the old key does not match it: still the old pair.
    std::fs::write(&cert, &next.cert_pem).expect("write cert");
    assert_eq!(handshake(&server, client()).await, Ok(old.clone()));
    // The file removed (mid-rename, say): still served.
    std::fs::remove_file(&cert).expect("remove");
    assert_eq!(handshake(&server, client()).await, Ok(old));
}

#[tokio::test]
async fn a_changed_ca_is_trusted_without_a_restart() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("node");
    let ca = pki.path("ca.pem");
    let node = NodeTls {
        cert,
        key,
        ca: ca.clone(),
    };
    let server = ServerTls::node(&node).expect("server").check_always();
    let next = Pki::new();
    let (next_cert, next_key) = next.issue("node");
    let client = trusting(&ca, Some((next_cert, next_key)));
    assert!(
        handshake(&server, client.clone()).await.is_err(),
        "not trusted yet"
    );
    // The CA file now holds both CAs: the new peer is trusted, the old one still is.
    let both = format!("{}{}", pki.ca.cert_pem(), next.ca.cert_pem());
    std::fs::write(&ca, both).expect("write CA");
    assert!(handshake(&server, client).await.is_ok());
}

#[test]
fn errors_name_the_file() {
    let pki = Pki::new();
    let (cert, _) = pki.issue("http");
    let missing = pki.path("missing.key");
    let e = ServerTls::http(&HttpTls {
        cert: cert.clone(),
        key: missing.clone(),
        client_ca: None,
        verify_client: false,
    })
    .expect_err("no key");
    assert!(e.to_string().contains("missing.key"), "{e}");
    assert!(matches!(e, TlsError::Read { ref path, .. } if *path == missing));
    // A certificate where the key should be.
    let e = ServerTls::http(&HttpTls {
        cert: cert.clone(),
        key: cert.clone(),
        client_ca: None,
        verify_client: false,
    })
    .expect_err("not a key");
    assert!(
        matches!(e, TlsError::Pem { ref path, .. } if *path == cert),
        "{e}"
    );
}

#[test]
fn keys_are_written_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let files = crate::pki::write_node_pki(&dir.path().join("tls"), &LOOPBACK_NAMES).expect("pki");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&files.key), 0o600);
    assert_eq!(mode(&files.cert), 0o644);
    let node = NodeTls {
        cert: files.cert,
        key: files.key,
        ca: files.ca,
    };
    assert!(ServerTls::node(&node).is_ok());
}
