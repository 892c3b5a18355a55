//! `--tls-cert F --tls-key F`: HTTPS with rustls and the `ring` provider (no OpenSSL, no C
//! toolchain). The files are read and checked before the server starts, so a bad file is a
//! configuration error (exit 2) naming its flag, not a failed handshake later.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::error::UsageError;

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, UsageError> {
    let flag = |flag: &str, path: &Path, msg: String| UsageError(format!("{flag} {}: {msg}", path.display()));
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| flag("--tls-cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(flag("--tls-cert", cert, "no PEM CERTIFICATE in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| flag("--tls-key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UsageError(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| flag("--tls-key", key, format!("does not fit --tls-cert {}: {e}", cert.display())))?;
    // The server speaks HTTP/1.1 only (see `super::start`).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        assert!(server_config(&cert, &key).is_ok());
    }

    #[test]
    fn bad_files_name_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem file\n").unwrap();
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = write_pair(other.path());
        for (cert, key, flag) in [
            (&garbage, &key, "--tls-cert"),
            (&dir.path().join("absent.pem"), &key, "--tls-cert"),
            (&cert, &garbage, "--tls-key"),
            (&cert, &cert, "--tls-key"),
            (&cert, &other_key, "--tls-key"),
        ] {
            let err = server_config(cert, key).err().unwrap();
            assert!(err.0.starts_with(flag), "{cert:?} {key:?}: {}", err.0);
        }
    }
}
