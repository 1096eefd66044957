//! Which HTTPS git server the agent trusts.
//!
//! Without a CA file, libgit2's OpenSSL verifies the server against the system's CA store
//! (a forge with a public certificate). With one (`repo.caFile`, `--git-ca-file`: a
//! self-hosted forge behind a private CA, as the PVE API is behind the cluster's), the
//! server's certificate must chain to a certificate in that file and name the host, and
//! the system store plays no part: the check is made here, with rustls's WebPKI
//! verifier, from libgit2's certificate callback.
//!
//! libgit2 hands the callback the server's own certificate only, not the intermediates
//! it sent, so the file must hold the certificate that issued the server's (an
//! intermediate is fine as the anchor). The TLS handshake itself (OpenSSL) has already
//! proven the server holds the certificate's key.

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The CA certificates an HTTPS remote is verified against.
#[derive(Clone)]
pub(crate) struct CaTrust {
    verifier: Arc<WebPkiServerVerifier>,
    file: PathBuf,
}

impl std::fmt::Debug for CaTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaTrust")
    }
}

impl CaTrust {
    /// Every certificate of the PEM file `path` as a trust anchor; the message says what
    /// is wrong with the file (an empty bundle would refuse every server less clearly).
    pub fn load(path: &Path) -> Result<Self, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let bad = |detail: String| format!("CA file {}: {detail}", path.display());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("no PEM certificate found".into()));
        }
        // The `ring` provider, passed explicitly as the PVE client does: nothing depends
        // on a process-wide default.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            verifier,
            file: path.to_path_buf(),
        })
    }

    /// Whether the DER certificate `der` chains to the CA file and is valid now for `host`
    /// (a name or an IP address); `Err` says why not.
    pub fn verify(&self, der: &[u8], host: &str) -> Result<(), String> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| format!("`{host}` is not a host name or address: {e}"))?;
        self.verifier
            .verify_server_cert(&CertificateDer::from(der), &[], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "{e} (checked against {}, which must hold the certificate that issued \
                     the server's)",
                    self.file.display()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let err = CaTrust::load(&empty).unwrap_err();
        assert!(err.contains("no PEM certificate found"), "{err}");
        let err = CaTrust::load(&dir.path().join("missing.pem")).unwrap_err();
        assert!(err.contains("cannot read CA file"), "{err}");
    }
}
